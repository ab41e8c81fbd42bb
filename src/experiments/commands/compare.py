"""`python scripts/compare_runs.py <sweep dir>`: (re)build the sweep report from the job directories.

Works on any sweep directory, finished, interrupted or still running: summary.csv, summary.md,
heatmap.png and curves.png are written into it and the best configuration is printed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from experiments.sweeps.report import describe, write_report
from experiments.sweeps.results import is_job_dir


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0].split(": ", 1)[1])
    parser.add_argument("sweep_dir", type=Path, help="a multirun directory, e.g. outputs/sweeps/<time>")
    args = parser.parse_args(argv)
    sweep_dir: Path = args.sweep_dir
    if not sweep_dir.is_dir():
        print(f"error: {sweep_dir} is not a directory", file=sys.stderr)
        return 1
    if not any(is_job_dir(p) for p in sweep_dir.iterdir()):
        print(
            f"error: {sweep_dir} holds no job directories (with .hydra/ or run.json); pass a sweep directory",
            file=sys.stderr,
        )
        return 1
    print(describe(write_report(sweep_dir)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
