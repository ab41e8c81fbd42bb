"""The config: run-directory names and the checks on composed values."""
