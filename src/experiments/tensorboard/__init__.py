"""What TensorBoard shows beyond the scalars Lightning logs: HParams, Custom Scalars, continuity on resume."""
