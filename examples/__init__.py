"""Example handlers and templates."""
