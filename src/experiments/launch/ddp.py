"""Lightning DDP (`trainer=ddp`) inside a Hydra job, single run or multirun.

Lightning starts ranks 1..N-1 by re-running the script. Under Hydra it re-runs the *whole* command line
(`sys.argv`), which in a multirun would start the whole sweep again in every child, and points the
children at `hydra.run.dir`, which is not the job's directory in a multirun. We hand Lightning a command
for exactly this job instead: the job's own overrides, in RUN mode, writing into the job's directory
with no `.hydra/` copy of its own. Rank 0 (the Hydra process) stays the only writer of config.yaml,
run.json, hparams and the printed summary; see `is_global_zero`.

After a job, the parent forgets the job's process group and the launcher's environment variables
(LOCAL_RANK, MASTER_PORT, ...): left behind, they make Lightning believe the next job's processes are
started externally, and it would wait forever for ranks that never come.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
from hydra.core.hydra_config import HydraConfig
from hydra.utils import get_original_cwd, to_absolute_path
from lightning.fabric.strategies.launchers import subprocess_script as fabric_launcher
from lightning.fabric.utilities.rank_zero import rank_zero_only
from lightning.pytorch.strategies.launchers import subprocess_script as trainer_launcher
from omegaconf import DictConfig, OmegaConf

from experiments.errors import ConfigError

_LAUNCHER_ENV = ("MASTER_ADDR", "MASTER_PORT", "NODE_RANK", "LOCAL_RANK", "WORLD_SIZE")


def is_global_zero() -> bool:
    """True in the Hydra process (and in single-process runs); False in DDP child ranks. Valid before the
    Trainer exists: Lightning sets the rank from the environment the launcher gives its children."""
    return getattr(rank_zero_only, "rank", 0) == 0


def job_subprocess_command(local_rank: int) -> tuple[Sequence[str], str]:
    """The command that starts rank `local_rank` of the current Hydra job, and the directory to run it in."""
    import __main__

    hydra_cfg = HydraConfig.get()
    if __main__.__spec__ is None:
        command = [sys.executable, to_absolute_path(sys.argv[0])]
    else:
        command = [sys.executable, "-m", __main__.__spec__.name]
    command += list(hydra_cfg.overrides.task)
    command += [
        f'hydra.run.dir="{hydra_cfg.runtime.output_dir}"',
        "hydra.output_subdir=null",  # .hydra/ belongs to rank 0
        f"hydra.job.name=train_ddp_process_{local_rank}",
        "hydra.mode=RUN",  # experiment presets may set MULTIRUN; a child is one job
    ]
    return command, get_original_cwd()


def patch_lightning_launcher() -> None:
    """Make Lightning's script launcher start this job's command (`job_subprocess_command`).

    The one private Lightning name this project touches: Lightning builds the children's command in
    `_hydra_subprocess_cmd` from the whole `sys.argv`, which re-runs a whole multirun in every child and
    has no public hook. Upstream: Lightning-AI/pytorch-lightning#18175 (Hydra + DDP multirun, open) and
    facebookresearch/hydra#2070. If Lightning renames it, this fails loudly instead of silently
    starting whole sweeps in every child.
    """
    import lightning

    for module in (fabric_launcher, trainer_launcher):  # the Trainer's launcher imports Fabric's function
        if not callable(getattr(module, "_hydra_subprocess_cmd", None)):
            raise ConfigError(
                f"trainer.strategy=ddp under Hydra: Lightning {lightning.__version__} has no "
                f"{module.__name__}._hydra_subprocess_cmd, which this project replaces to start DDP ranks for "
                "one job; use the Lightning version pinned in pyproject.toml, or trainer.devices=1"
            )
        module._hydra_subprocess_cmd = job_subprocess_command


def uses_ddp(cfg: DictConfig) -> bool:
    return "ddp" in str(OmegaConf.select(cfg, "trainer.strategy", default="")).lower()


@contextmanager
def job_scope(cfg: DictConfig) -> Iterator[None]:
    """Around one Hydra job: its DDP children run this job only, and nothing of them outlives it."""
    if uses_ddp(cfg):
        patch_lightning_launcher()
    saved = {key: os.environ.get(key) for key in _LAUNCHER_ENV}
    try:
        yield
    finally:
        # Every rank: a child that exits with its gloo process group still up can die in std::terminate
        # (SIGABRT) while the group's threads shut down, and Lightning then kills rank 0 and the sweep.
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
        if is_global_zero():
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
