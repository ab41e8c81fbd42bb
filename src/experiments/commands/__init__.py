"""The commands besides training: evaluate, predict, doctor, compare."""
