"""Kafka ingestion: the reader (offsets, polling, commits) and the record decoding."""
