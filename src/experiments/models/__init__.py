"""Models: the networks and the LightningModule that trains them."""
