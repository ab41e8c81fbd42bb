"""Run from the repository root: `python scripts/evaluate.py key=value ...` (see README.md, or --help)."""

from experiments.evaluate import main

if __name__ == "__main__":
    main()
