"""Test-side name for the synthetic IDX writer."""

from experiments.synthetic import FILES, idx_bytes, learnable_images, write_dataset

__all__ = ["FILES", "idx_bytes", "learnable_images", "write_dataset"]
