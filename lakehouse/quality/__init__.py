"""Data quality: contracts with per-rule policies, PII masking, reconciliation, freshness."""
