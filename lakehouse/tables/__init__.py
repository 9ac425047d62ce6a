"""Iceberg tables: the exactly-once commit protocol, data files, schema evolution,
rebuild guards and maintenance; pyiceberg's private API only in ``pyiceberg_internals``.
"""
