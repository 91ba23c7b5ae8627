"""Market data: sources, validation, cache."""
