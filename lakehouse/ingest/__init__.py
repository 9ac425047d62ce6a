"""Source readers that land raw records in bronze exactly once."""
