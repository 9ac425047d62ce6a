"""Dagster building blocks every part of ``lakehouse.defs`` shares: step pod sizing and the
executor, the daily partitions, table metadata for the UI, freshness checks, bounded
retries, heap freezing.
"""
