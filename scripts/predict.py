"""Run from the repository root: `python scripts/predict.py key=value ...` (see README.md, or --help)."""

from experiments.predict import main

if __name__ == "__main__":
    main()
