"""`experiments-doctor [data_dir=...]`: what this machine offers a run, before you start one.

Versions (torch, CUDA, cuDNN, Lightning, Hydra), the accelerators present, what `trainer.accelerator=auto`
picks, and where MNIST / Fashion-MNIST were found. The keys are in conf/doctor.yaml.
"""

from __future__ import annotations

import platform
from importlib import metadata
from pathlib import Path

import hydra
from omegaconf import DictConfig

from experiments.commands import CONFIG_DIR, one_line_errors
from experiments.config.mistakes import one_line_mistakes
from experiments.errors import ConfigError

# Lightning releases never to run: 2.6.2 and 2.6.3 on PyPI were credential-stealing malware (advisory
# GHSA-w37p-236h-pfx3, Lightning-AI/pytorch-lightning#21691); before 2.6.6, load_from_checkpoint could run
# arbitrary code (fixed by #21832, #21914). pyproject.toml admits neither; this names one found installed.
COMPROMISED = {"2.6.2", "2.6.3"}
FIXED = "2.6.6"
LIGHTNING_DISTRIBUTIONS = ("lightning", "pytorch-lightning")


def installed_version(distribution: str) -> str | None:
    """The installed version of a distribution, read from its metadata (None: not installed)."""
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def lightning_problems() -> list[str]:
    """One line per installed Lightning distribution that is compromised or vulnerable, with the fix."""
    from packaging.version import Version

    problems = []
    for name in LIGHTNING_DISTRIBUTIONS:
        version = installed_version(name)
        if version is None:
            continue
        fix = f"remove it and install {name}>={FIXED} (e.g. .venv/bin/pip install -r requirements.lock)"
        if Version(version).base_version in COMPROMISED:
            problems.append(
                f"{name} {version} is the COMPROMISED release (credential-stealing malware, advisory "
                f"GHSA-w37p-236h-pfx3): treat this machine's credentials as stolen; {fix}"
            )
        elif Version(version) < Version(FIXED):
            problems.append(
                f"{name} {version} is vulnerable: load_from_checkpoint can run arbitrary code "
                f"(fixed in {FIXED}, Lightning-AI/pytorch-lightning#21832); {fix}"
            )
    return problems


# Where conf/data/fashion_mnist.yaml also looks (Debian's dataset-fashion-mnist package).
EXTRA_SEARCH_DIRS = {"mnist": [], "fashion_mnist": ["/usr/share/datasets/fashion-mnist"]}


def auto_accelerator() -> str:
    """What Lightning resolves `accelerator="auto"` to on this machine: its own choice, not a guess, read
    from a Trainer built the way `trainer.accelerator=auto` builds one."""
    import logging

    import lightning as L

    quiet = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    level = quiet.level
    quiet.setLevel(logging.WARNING)  # the Trainer announces the devices it sees; doctor prints its own lines
    try:
        trainer = L.Trainer(accelerator="auto", devices=1, logger=False, enable_checkpointing=False)
    finally:
        quiet.setLevel(level)
    name = type(trainer.accelerator).__name__  # CPUAccelerator, CUDAAccelerator, MPSAccelerator, XLAAccelerator
    return name.removesuffix("Accelerator").lower()


def report(data_dir: str) -> list[str]:
    import lightning
    import torch

    from experiments.data.files import DATASETS, find_raw_dir, found_problem

    cuda = torch.cuda.is_available()
    mps = torch.backends.mps.is_available()
    lines = [
        f"Python:      {platform.python_version()} ({platform.platform()})",
        f"torch:       {torch.__version__}",
        f"CUDA:        {torch.version.cuda or 'not built with CUDA'} (available: {cuda})",
        f"cuDNN:       {torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else 'not available'}",
        f"MPS:         available: {mps}",
        f"Lightning:   {lightning.__version__}",
        *(f"WARNING:     {problem}" for problem in lightning_problems()),
        f"Hydra:       {hydra.__version__}",
        f"GPUs:        {torch.cuda.device_count() if cuda else 0}",
    ]
    if cuda:
        lines += [f"  cuda:{i}     {torch.cuda.get_device_name(i)}" for i in range(torch.cuda.device_count())]
    lines.append(f"trainer.accelerator=auto picks: {auto_accelerator()}")
    for name, cls in DATASETS.items():
        search = [Path(d) for d in EXTRA_SEARCH_DIRS.get(name, [])]
        found = find_raw_dir(cls, Path(data_dir), search)
        where = f"found in {found}" if found else f"not found (looked in {Path(data_dir) / cls.__name__ / 'raw'})"
        problem = found_problem(cls, found) if found else None
        if problem:  # the files are there, but a run would refuse them: say so, and why
            where = f"found in {found}, but unusable: {problem}"
        lines.append(f"{name + ':':<15}{where}")
    return lines


@one_line_mistakes  # Hydra's config mistakes as one line (experiments.config.mistakes)
@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="doctor")
@one_line_errors
def main(cfg: DictConfig) -> None:
    data_dir = Path(str(cfg.data_dir))
    # A missing folder is an answer ("not found"); a file where the folder should be is a mistake.
    if data_dir.exists() and not data_dir.is_dir():
        raise ConfigError(f"data_dir={data_dir} is a file; pass the folder that holds MNIST/raw/")
    print("\n".join(report(str(data_dir))), flush=True)


if __name__ == "__main__":
    main()
