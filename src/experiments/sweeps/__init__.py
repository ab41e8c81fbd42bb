"""Multirun sweeps: the report, its results and plots, job placement and DDP inside jobs."""
