"""Checkpoints: loading and checking them, writing them atomically, resuming from them."""
