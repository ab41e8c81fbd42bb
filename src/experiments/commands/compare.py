"""`experiments-compare sweep_dir=<sweep dir>`: (re)build the sweep report from the job directories.

Works on any sweep directory, finished, interrupted, killed or still running: summary.csv, summary.md,
heatmap.png (a grid) or scatter.png (a search) and curves.png are written into it, jobs of the sweep's plan
that have no directory listed as not started (for a sweep over seeds, per configuration: see
experiments.sweeps.report), and the best configuration is printed. The keys are in conf/compare.yaml.
"""

from __future__ import annotations

from pathlib import Path

import hydra
from omegaconf import DictConfig

from experiments.commands import CONFIG_DIR, one_line_errors, required
from experiments.config.mistakes import one_line_mistakes
from experiments.config.preflight import writable_problem
from experiments.errors import ConfigError


@one_line_mistakes  # Hydra's config mistakes as one line (experiments.config.mistakes)
@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="compare")
@one_line_errors
def main(cfg: DictConfig) -> None:
    sweep_dir = Path(str(required(cfg, "sweep_dir", "sweep_dir=outputs/sweeps/<time> (a multirun directory)")))
    if not sweep_dir.is_dir():
        raise ConfigError(f"sweep_dir={sweep_dir}: no such directory; pass a sweep directory (outputs/sweeps/<time>)")

    # Imported here, as in every command, so that --help and --cfg job start fast.
    from experiments.sweeps.plan import read_plan
    from experiments.sweeps.report import describe, write_report
    from experiments.sweeps.results import is_job_dir

    if not any(is_job_dir(p) for p in sweep_dir.iterdir()) and read_plan(sweep_dir) is None:
        raise ConfigError(
            f"sweep_dir={sweep_dir} holds no job directories (with .hydra/ or run.json) and no list of planned "
            "jobs; pass a sweep directory"
        )
    problem = writable_problem(sweep_dir, min_free=0)  # the report goes into it
    if problem:
        raise ConfigError(f"sweep_dir={sweep_dir}: {problem}; the report is written into the sweep directory")
    print(describe(write_report(sweep_dir)), flush=True)


if __name__ == "__main__":
    main()
