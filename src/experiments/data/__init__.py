"""Data: the MNIST-family DataModule, finding and parsing the IDX files, synthetic IDX data."""
