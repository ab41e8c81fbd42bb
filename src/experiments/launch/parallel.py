"""Placement of sweep jobs that run side by side on one machine (the default `hydra/launcher=parallel`, and
Hydra's plain `hydra/launcher=joblib`).

CPU threads are split between concurrent jobs so they do not oversubscribe the cores: the parallel launcher
says how many each job gets (experiments.launch.launcher). With GPUs, each job claims a slot on one GPU for
its whole life through a lock file in the sweep directory: `jobs_per_gpu` slots per GPU (one under the
plain joblib launcher), filled across the GPUs first; a job that finds every slot busy waits for one. A GPU
shared by several jobs is a memory guard too: each job may take only its share of the GPU's memory, so one
job that outgrows it fails alone (CUDA out of memory) instead of taking memory its neighbours need.
Side by side, a job's console output goes to its train.log (experiments.launch.progress), so its progress
bar is switched off. Other launchers (basic, submitit: one machine slot per job) are left alone.
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

from experiments.errors import JobNotStarted
from experiments.launch import progress
from experiments.launch.launcher import runs_in_parallel
from experiments.lifecycle import stops

_GPU_ACCELERATORS = ("auto", "gpu", "cuda")
# The part of a shared GPU's memory the jobs on it may take together; the rest is CUDA's own (contexts).
_SHARED_GPU_MEMORY = 0.95


def _side_by_side() -> str | None:
    """'parallel' or 'joblib' when this job runs beside others in a worker process, else None."""
    if not HydraConfig.initialized():
        return None
    hydra_cfg = HydraConfig.get()
    if runs_in_parallel(hydra_cfg):
        return "parallel"
    return "joblib" if "joblib" in str(hydra_cfg.launcher.get("_target_", "")) else None


def _concurrent_jobs() -> int:
    from joblib import effective_n_jobs

    return max(1, effective_n_jobs(HydraConfig.get().launcher.get("n_jobs", -1)))


@contextmanager
def claim_gpu(lock_dir: Path, count: int, preferred: int, slots: int = 1) -> Iterator[int]:
    """Hold one of `slots` places on one of `count` GPUs (trying `preferred` first, then every GPU's first
    place before any second one) until the block ends; when all are taken, wait for one on `preferred`."""
    lock_dir.mkdir(parents=True, exist_ok=True)
    order = [((preferred + i) % count, slot) for slot in range(slots) for i in range(count)]
    handles = {place: (lock_dir / _lock_name(*place)).open("w") for place in order}
    try:
        claimed = next((place for place in order if _try_lock(handles[place])), None)
        if claimed is None:  # all busy: wait for our preferred one
            claimed = order[0]
            fcntl.flock(handles[claimed], fcntl.LOCK_EX)
        yield claimed[0]
    finally:
        for handle in handles.values():
            handle.close()  # closing releases the lock


def _lock_name(gpu: int, slot: int) -> str:
    return f".gpu{gpu}.lock" if slot == 0 else f".gpu{gpu}.slot{slot}.lock"


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
    """Around one job of a sweep run side by side: a fair share of CPU threads and, with GPUs, a GPU slot."""
    launcher = _side_by_side()
    if launcher is None:
        yield
        return
    hydra_cfg = HydraConfig.get()
    if launcher == "parallel":
        if stops.noted() is not None:  # the sweep was stopped before this job began
            raise JobNotStarted("the sweep was stopped before this job started")
        placed = progress.placement(Path(hydra_cfg.sweep.dir))
        torch.set_num_threads(placed.threads if placed else 1)
        slots = placed.jobs_per_gpu if placed else 1
        with open_dict(cfg):  # its console is train.log: no progress bar redrawn into it
            cfg.trainer.enable_progress_bar = False
            if cfg.get("callbacks"):
                cfg.callbacks.progress_bar = None
    else:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // _concurrent_jobs()))
        slots = 1
    gpus = torch.cuda.device_count()
    wanted = gpus >= (1 if slots > 1 else 2) and _wants_one_gpu(cfg)
    if not wanted:
        yield
        return
    with claim_gpu(Path(hydra_cfg.sweep.dir), gpus, int(hydra_cfg.job.num) % gpus, slots) as gpu:
        if slots > 1:
            torch.cuda.set_per_process_memory_fraction(_SHARED_GPU_MEMORY / slots, gpu)
        with open_dict(cfg):
            cfg.trainer.accelerator = "gpu"
            cfg.trainer.devices = [gpu]
        yield
