"""What a run prints and what its train.log keeps (Hydra's job logging, conf/hydra/default.yaml).

Lightning prints its info lines on its own handler of the `lightning` logger (added when Lightning is
imported); they also reach the root logger, whose handlers Hydra's job logging sets up: the file handler
keeps them in train.log, and the console handler skips them (`OtherLoggers`) so the console shows each
line once. Python's warnings are filtered here, each for a reason written next to it.
"""

from __future__ import annotations

import logging
import re
import warnings
from pathlib import Path


class OtherLoggers(logging.Filter):
    """Passes the records of every logger except `name` and its children (logging.Filter's complement)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not super().filter(record)


class DropMessages(logging.Filter):
    """Drops the records whose message matches `pattern`."""

    def __init__(self, pattern: str) -> None:
        super().__init__()
        self.pattern = re.compile(pattern)

    def filter(self, record: logging.LogRecord) -> bool:
        return not self.pattern.search(record.getMessage())


def ignore_spurious_warnings(checkpoint_dir: Path | None = None) -> None:
    """Called by every run (not at import: pytest and warnings.catch_warnings restore the filters), with
    the checkpoint directory of a run being resumed."""
    # Lightning 2.6's own pytree helper (lightning.pytorch.utilities._pytree) builds torch's LeafSpec,
    # which torch >= 2.10 deprecates: nothing this project calls or can change.
    warnings.filterwarnings("ignore", r"`isinstance\(treespec, LeafSpec\)` is deprecated", FutureWarning)
    # Lightning counts log_every_n_steps in optimizer steps across epochs (and so does
    # experiments.models.classifier.logs_step_metrics): an epoch shorter than the interval still logs
    # train/loss, every log_every_n_steps steps, contrary to what this warning says.
    warnings.filterwarnings(
        "ignore", r"The number of training batches \(\d+\) is smaller than the logging interval", UserWarning
    )
    if checkpoint_dir is not None:
        # A resumed run's ModelCheckpoint goes on with the files it wrote itself (its state is restored
        # from last.ckpt); only another directory's checkpoints would be a reason to warn (Lightning names
        # the directory by its real path).
        own = re.escape(str(checkpoint_dir.resolve()))
        warnings.filterwarnings("ignore", rf"Checkpoint directory {own} exists and is not empty", UserWarning)
