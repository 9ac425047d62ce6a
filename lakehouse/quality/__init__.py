"""Data quality rules without Dagster: contracts with per-rule policies, the SCD2 history
contract, check scopes (what changed since a check last passed), quarantine, replay.

The asset checks built from them live with the assets they check (``lakehouse.defs``).
"""
