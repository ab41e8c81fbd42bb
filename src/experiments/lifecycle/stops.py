"""Ctrl-C / SIGTERM in a process that runs one job after another: a parallel sweep's worker.

In a single run a signal outside training ends the process (Python's KeyboardInterrupt). A sweep's worker
must not die of it: between jobs the worker waits for the next one, and a KeyboardInterrupt there breaks
the whole worker pool. So each job of a parallel sweep starts with `hold_between_jobs`, and a signal that
arrives outside a run's training (between jobs, while a job is set up or tested) is only noted here. The
next run that starts training stops at its first batch (GracefulStop takes the note up), and the jobs that
had not started yet do not start. A run that gets the signal while training notes it too, so its worker
starts no further job. The note belongs to one sweep: the worker may run the next sweep's jobs later.
"""

from __future__ import annotations

import os
import signal
import threading
from types import FrameType

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)

_sweep: str | None = None
_noted: int | None = None
_parent: int | None = None  # the launching process, while it lives


def hold_between_jobs(sweep: str) -> None:
    """Before a parallel sweep's job: signals are noted (not raised) until a run's training takes them."""
    global _sweep, _noted, _parent
    if sweep != _sweep:
        _sweep, _noted = sweep, None
    _parent = os.getppid()
    if threading.current_thread() is threading.main_thread():
        for signum in STOP_SIGNALS:
            signal.signal(signum, _note)


def _note(signum: int, frame: FrameType | None) -> None:
    if os.getppid() != _parent:  # the sweep was killed (SIGKILL): nothing waits for this worker any more
        raise SystemExit(128 + signum)
    note(signum)


def note(signum: int) -> None:
    global _noted
    if _noted is None:
        _noted = signum


def noted() -> int | None:
    """The signal that asked this process to stop, if one did."""
    return _noted
