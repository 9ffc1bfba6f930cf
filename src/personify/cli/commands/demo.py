"""``personify demo``."""
