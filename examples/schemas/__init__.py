"""Reference schemas of real datasets (each a complete schema.py)."""
