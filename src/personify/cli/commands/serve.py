"""``personify serve``."""
