"""What a run prints: paths and commands a user can paste back, and what the console and train.log show.

Paths and commands are printed as they are typed in the directory the run was started from: relative
inside it, else absolute; the interpreter or console script this process was started with; a tool by
name where PATH finds it. Run directory names need no quotes (experiments.config.names); older ones get
Hydra's and the shell's quotes.

Logging (Hydra's job logging, conf/hydra/job_logging/run.yaml):

Lightning prints its info lines on its own handler of the `lightning` logger (added when Lightning is
imported); they also reach the root logger, whose handlers Hydra's job logging sets up: the file handler
keeps them in train.log, and the console handler skips them (`OtherLoggers`) so the console shows each
line once. Python's warnings are filtered here, each for a reason written next to it.
"""

from __future__ import annotations

import logging
import os
import re
import shlex
import shutil
import sys
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


def tolerant_streams() -> None:
    """A console that cannot show a character (PYTHONIOENCODING=ascii, a C locale) gets an escape for it,
    `\\xfc`, instead of an exception in every logging call that prints a non-ASCII run name."""
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            reconfigure(errors="backslashreplace")


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


def shown(path: Path | str) -> str:
    """A path as it is best typed in the working directory: relative inside it, else absolute."""
    absolute = os.path.abspath(path)
    relative = os.path.relpath(absolute)
    return absolute if relative == ".." or relative.startswith(".." + os.sep) else relative


def executable(path: Path | str) -> str:
    """A program's path as the shell runs it from the working directory (never looked up on PATH)."""
    typed = shown(path)
    return shlex.quote(typed if os.sep in typed else f".{os.sep}{typed}")


def tool(name: str) -> str:
    """How to start the command-line tool `name` from this shell: by name where PATH finds it, else the
    one installed next to this Python (a virtual environment's bin/, not activated)."""
    return name if shutil.which(name) else executable(Path(sys.executable).parent / name)


def this_program() -> list[str]:
    """The start of the command line that started this process, as it can be typed again here:
    `<python> train.py`, or the console script (`experiments-train`)."""
    script = sys.argv[0]
    if script.endswith(".py"):
        return [executable(sys.executable), shlex.quote(script)]
    found = shutil.which(Path(script).name)
    if found and os.path.abspath(found) == os.path.abspath(script):
        return [Path(script).name]
    return [executable(script)]


def argument(key: str, value: str) -> str:
    """`key=value` for Hydra and the shell: bare when the value needs no quotes (run directory names are
    made so, see experiments.config.names), else a Hydra-quoted string (older names hold `=` and `,`)."""
    if re.fullmatch(r"[A-Za-z0-9_./+-]+", value) and "/" in value:  # a path: never read as a number
        return f"{key}={value}"
    hydra_quoted = re.sub(r'(\\*)(?="|$)', r"\1\1", value).replace('"', '\\"')
    return shlex.quote(f'{key}="{hydra_quoted}"')


def resume_command(run_dir: Path) -> str:
    """The command that continues the run in `run_dir`, to paste into the shell this run was started from."""
    return " ".join([*this_program(), argument("resume", shown(run_dir))])


def loading_line() -> str:
    """What a run says before importing torch and Lightning, which takes seconds: their versions, read from
    the installed packages' metadata (milliseconds), so the first line comes at once."""
    from importlib import metadata

    versions = []
    for name, shown_as in (("torch", "PyTorch"), ("lightning", "Lightning")):
        try:
            versions.append(f"{shown_as} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            versions.append(shown_as)
    return f"Loading {' and '.join(versions)} ..."
