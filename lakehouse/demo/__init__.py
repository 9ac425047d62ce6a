"""Deterministic demo data for the online shop (a tool, not a product feature)."""
