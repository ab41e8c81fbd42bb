"""Lightning + Hydra experiment framework: MNIST-family data, linear/MLP/CNN classifiers, sweeps and reports."""
