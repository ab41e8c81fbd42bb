"""The config: its schema (types and ranges), run-directory names, and the checks that need torch."""
