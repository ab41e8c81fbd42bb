"""Optuna searches: the study's storage and pruner (study.py), the job's report to its trial (pruning.py),
the verdict on a search without a completed trial (verdict.py). The sweeper that runs the trials is a Hydra
plugin, so it lives where Hydra looks for plugins: src/hydra_plugins/experiments_optuna/."""
