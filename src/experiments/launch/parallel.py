"""Placement of sweep jobs that run side by side on one machine (`hydra/launcher=joblib`).

Each job claims one GPU for its whole life through a lock file in the sweep directory, so two jobs
never share a GPU even when joblib starts a job while an earlier one on "its" GPU is still running;
a job that finds every GPU busy waits for one. CPU threads are split between concurrent jobs so they
do not oversubscribe the cores. Other launchers (basic, submitit: one machine slot per job) are left
alone.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

_GPU_ACCELERATORS = ("auto", "gpu", "cuda")


def _runs_in_parallel() -> bool:
    if not HydraConfig.initialized():
        return False
    return "joblib" in str(HydraConfig.get().launcher.get("_target_", ""))


def _concurrent_jobs() -> int:
    from joblib import effective_n_jobs

    return max(1, effective_n_jobs(HydraConfig.get().launcher.get("n_jobs", -1)))


@contextmanager
def claim_gpu(lock_dir: Path, count: int, preferred: int) -> Iterator[int]:
    """Hold an exclusive lock on one of `count` GPUs (trying `preferred` first) until the block ends."""
    lock_dir.mkdir(parents=True, exist_ok=True)
    order = [(preferred + i) % count for i in range(count)]
    handles = {i: (lock_dir / f".gpu{i}.lock").open("w") for i in order}
    try:
        claimed = next((i for i in order if _try_lock(handles[i])), None)
        if claimed is None:  # all busy: wait for our preferred one
            claimed = order[0]
            fcntl.flock(handles[claimed], fcntl.LOCK_EX)
        yield claimed
    finally:
        for handle in handles.values():
            handle.close()  # closing releases the lock


def _try_lock(handle: object) -> bool:
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)  # type: ignore[arg-type]
    except BlockingIOError:
        return False
    return True


def _wants_one_gpu(cfg: DictConfig) -> bool:
    trainer = cfg.trainer
    return str(trainer.accelerator) in _GPU_ACCELERATORS and str(trainer.devices) in ("auto", "1")


@contextmanager
def place_job(cfg: DictConfig) -> Iterator[None]:
    """Around one job of a joblib sweep: a fair share of CPU threads and, with several GPUs, one of them."""
    if not _runs_in_parallel():
        yield
        return
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // _concurrent_jobs()))
    gpus = torch.cuda.device_count()
    if gpus < 2 or not _wants_one_gpu(cfg):
        yield
        return
    hydra_cfg = HydraConfig.get()
    with claim_gpu(Path(hydra_cfg.sweep.dir), gpus, preferred=int(hydra_cfg.job.num) % gpus) as gpu:
        with open_dict(cfg):
            cfg.trainer.accelerator = "gpu"
            cfg.trainer.devices = [gpu]
        yield
