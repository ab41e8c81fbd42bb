"""The default launcher of every multirun: Hydra's joblib launcher, sized to the machine.

`ParallelLauncher` (hydra_plugins.experiments_launcher: Hydra takes launchers from that namespace only) is
hydra-joblib-launcher's `JoblibLauncher` (loky worker processes, which stay alive and
keep their imports and decoded data from one job to the next) with three additions that its plain
configuration cannot express:

- **Size.** `n_jobs: null` runs as many jobs at once as the machine takes: on a CPU one per core (each
  job then gets `cores // workers` threads: these networks gain little from a second thread, and a
  second job on that core gains much more); with GPUs, `jobs_per_gpu` jobs share each GPU (one worker
  per job, at most one per core). Never more workers than jobs.
- **Ctrl-C / SIGTERM.** The first one reaches every running job (Ctrl-C through the terminal's process
  group, SIGTERM relayed here): each finishes its batch, saves `last.ckpt` and is marked interrupted;
  jobs not started yet stay unstarted; then the sweep exits 130 (143). A second one stops at once.
  Without this, joblib would turn the first Ctrl-C into a KeyboardInterrupt that kills the workers while
  they write their checkpoints.
- **Refusals before anything starts** (`LaunchCheck`, a Hydra callback): `trainer=ddp` (Lightning starts
  DDP ranks by re-running the command, which a worker process cannot do) is refused in one line; run it
  with `hydra/launcher=basic`.

The jobs learn their share (threads, GPU slots) from `<sweep dir>/.progress.json`, written here before the
first job starts (experiments.launch.parallel reads it; experiments.launch.progress keeps it).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from hydra.core.utils import JobReturn
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from hydra_plugins.hydra_joblib_launcher.joblib_launcher import JoblibLauncher
from omegaconf import DictConfig, OmegaConf

# The launching process: with one worker, joblib runs the jobs in it, one after another, as the basic
# launcher does (and they behave as under the basic launcher).
LAUNCHER_PID_ENV = "EXPERIMENTS_LAUNCHER_PID"
_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@dataclass(frozen=True)
class Placement:
    workers: int  # jobs running at once
    threads: int  # CPU threads per job
    gpus: int  # GPUs the jobs share (0: CPU jobs)
    jobs_per_gpu: int

    def describe(self) -> str:
        where = f", {self.jobs_per_gpu} per GPU on {self.gpus} GPU(s)" if self.gpus else ""
        threads = f"{self.threads} thread{'s' if self.threads > 1 else ''} each"
        return f"{self.workers} at a time ({threads}{where})"


def runs_in_parallel(hydra_cfg: DictConfig) -> bool:
    """Whether a job (Hydra's config node `hydra`) runs in a worker process of the parallel launcher."""
    return (
        hydra_cfg.mode == RunMode.MULTIRUN
        and str(hydra_cfg.launcher.get("_target_", "")).endswith(".ParallelLauncher")
        and os.environ.get(LAUNCHER_PID_ENV) not in (None, str(os.getpid()))
    )


def usable_cores() -> int:
    """The cores this process may run on (its affinity mask: a container's or taskset's share)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def visible_gpus() -> int:
    """CUDA GPUs the jobs will see. torch is imported only where an NVIDIA driver is loaded (it costs the
    sweep's start a second or two, before any worker can start)."""
    if not Path("/proc/driver/nvidia/gpus").is_dir() or os.environ.get("CUDA_VISIBLE_DEVICES") == "":
        return 0
    import torch

    return torch.cuda.device_count()


def place(jobs: int, n_jobs: int | None, jobs_per_gpu: int, cores: int, gpus: int) -> Placement:
    """How `jobs` jobs share `cores` cores and `gpus` GPUs; a positive `n_jobs` sets the jobs at once."""
    if n_jobs is not None and n_jobs > 0:
        workers = n_jobs
    elif gpus:
        workers = min(gpus * jobs_per_gpu, cores)
    else:
        workers = cores
    workers = max(1, min(workers, jobs))
    return Placement(workers, max(1, cores // workers), gpus, jobs_per_gpu)


def uses_ddp(values: Sequence[str]) -> bool:
    """Whether a config's trainer strategy, or a job's override of it, asks for DDP."""
    return any("ddp" in str(value).lower() for value in values)


def warm_up(launcher: JoblibLauncher, jobs_per_gpu: int, gpus_for: Sequence[str]) -> threading.Thread | None:
    """Start the workers while Hydra prepares the sweep (its callbacks, then a check of every job's config,
    which runs before any job can start), each importing what a job needs: seconds per worker, in parallel
    with that preparation. The same joblib settings as the launch, so that joblib reuses these workers."""
    config = launcher.config
    assert config is not None
    accelerator = str(config.trainer.get("accelerator", "auto")).lower()
    gpus = visible_gpus() if accelerator in gpus_for else 0
    workers = place(sys.maxsize, launcher.joblib.get("n_jobs"), jobs_per_gpu, usable_cores(), gpus).workers
    if workers < 2:
        return None
    from joblib import Parallel, delayed

    os.environ[LAUNCHER_PID_ENV] = str(os.getpid())  # inherited by the workers started here

    settings = {**launcher.joblib, "n_jobs": workers, "backend": "loky"}  # the joblib launcher's own settings
    thread = threading.Thread(
        target=lambda: Parallel(**settings)(delayed(_import_a_job)() for _ in range(workers)), daemon=True
    )
    thread.start()
    return thread


def _import_a_job() -> None:
    import logging

    # Lightning gives its loggers a console handler of their own when it is imported before logging is set
    # up (which each job's logging would then not replace): a job imports it after Hydra set up its logging.
    if not logging.getLogger().hasHandlers():
        logging.getLogger().addHandler(logging.NullHandler())
    import lightning  # noqa: F401  -- torch, torchmetrics, torchvision with it

    import experiments.train  # noqa: F401
    from experiments.tensorboard import figures  # noqa: F401  -- matplotlib's first figure comes at a job's end


def launch_side_by_side(
    launcher: JoblibLauncher,
    job_overrides: Sequence[Sequence[str]],
    initial_job_idx: int,
    jobs_per_gpu: int,
    gpus_for: Sequence[str],
    warming: threading.Thread | None = None,
) -> Sequence[JobReturn]:
    """ParallelLauncher.launch (hydra_plugins.experiments_launcher): size, refuse, run, stop cleanly."""
    config = launcher.config
    assert config is not None
    if jobs_per_gpu < 1:
        _fail(f"hydra.launcher.jobs_per_gpu={jobs_per_gpu} must be >= 1")
    accelerator = str(config.trainer.get("accelerator", "auto")).lower()
    gpus = visible_gpus() if accelerator in gpus_for else 0
    n_jobs = launcher.joblib.get("n_jobs")
    placement = place(len(job_overrides), n_jobs, jobs_per_gpu, usable_cores(), gpus)
    if warming is not None:
        warming.join()
    os.environ[LAUNCHER_PID_ENV] = str(os.getpid())  # inherited by the workers
    launcher.joblib["n_jobs"] = placement.workers
    if placement.workers == 1:  # joblib runs a single worker's jobs in this process: the basic launcher's way
        try:
            return JoblibLauncher.launch(launcher, job_overrides, initial_job_idx)
        finally:
            launcher.joblib["n_jobs"] = n_jobs
    from experiments.launch import progress  # it imports this module

    sweep_dir = Path(str(config.hydra.sweep.dir))
    progress.start(sweep_dir, len(job_overrides), initial_job_idx, placement)
    # joblib's launcher logs its Parallel(...) arguments and every job's overrides: the jobs' own start lines
    # (experiments.launch.progress) say which job runs, when.
    quiet = logging.getLogger("hydra_plugins.hydra_joblib_launcher")
    level = quiet.level
    quiet.setLevel(logging.WARNING)
    try:
        with _stops_reach_the_jobs() as stopped:
            results = JoblibLauncher.launch(launcher, job_overrides, initial_job_idx)
    finally:
        launcher.joblib["n_jobs"] = n_jobs
        quiet.setLevel(level)
    if stopped:
        print(progress.interrupted_line(sweep_dir), file=sys.stderr, flush=True)
        sys.exit(128 + stopped[0])
    return results


class LaunchCheck(Callback):
    """Hydra callback (conf/hydra/default.yaml, before anything is written): jobs the parallel launcher cannot
    run are refused in one line before the sweep starts. Hydra turns a callback's exception into a warning,
    so this prints and exits itself."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        if not str(config.hydra.launcher.get("_target_", "")).endswith(".ParallelLauncher"):
            return
        params = config.hydra.sweeper.get("params") or {}
        overrides = [*(f"{k}={v}" for k, v in params.items()), *(str(o) for o in config.hydra.overrides.task)]
        swept = [o.split("=", 1)[1] for o in overrides if "=" in o and o.split("=", 1)[0] in _STRATEGY_KEYS]
        if uses_ddp([str(OmegaConf.select(config, "trainer.strategy", default="")), *swept]):
            _fail(
                "trainer=ddp jobs cannot run side by side in the parallel launcher's worker processes (Lightning "
                "starts DDP ranks by re-running the command); add hydra/launcher=basic to run them one at a time"
            )


_STRATEGY_KEYS = {"trainer", "trainer.strategy", "+trainer.strategy", "++trainer.strategy"}


@contextmanager
def _stops_reach_the_jobs() -> Iterator[list[int]]:
    """While the jobs run: the first Ctrl-C/SIGTERM is left to the jobs (relayed to the workers when it
    reached only this process) and noted; a second one stops at once (KeyboardInterrupt)."""
    stopped: list[int] = []

    def handle(signum: int, frame: FrameType | None) -> None:
        if stopped:
            raise KeyboardInterrupt
        stopped.append(signum)
        if signum != signal.SIGINT:  # Ctrl-C reaches the workers through the terminal's process group
            for worker in multiprocessing.active_children():
                if worker.pid is not None:
                    os.kill(worker.pid, signum)
        name = signal.Signals(signum).name
        print(f"stopping: the running jobs save a checkpoint and end ({name} again stops at once)", file=sys.stderr)

    previous = {s: signal.signal(s, handle) for s in _STOP_SIGNALS}
    try:
        yield stopped
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr, flush=True)
    sys.exit(1)
