"""Lightning + Hydra experiment framework: MNIST-family data, an MLP classifier, sweeps and reports."""
