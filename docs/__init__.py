"""Lookalike's documentation and the script that generates its references (not shipped)."""
