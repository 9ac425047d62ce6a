"""Iceberg table layouts and the exactly-once commit protocol."""
