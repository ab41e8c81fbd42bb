"""What evaluate and predict share: a run's checkpoint, its saved data config, and the device to use."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf

from experiments.checkpoints.load import find_checkpoint
from experiments.errors import ConfigError
from experiments.rundir import RunDir

# Data settings a lone checkpoint (no run directory around it) is evaluated with: conf/data/mnist.yaml.
DEFAULT_DATA: dict[str, Any] = {"dataset": "mnist", "data_dir": "data", "mean": 0.1307, "std": 0.3081}


def resolve_device(name: str) -> torch.device:
    name = str(name).lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name in ("gpu", "cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"device={name}: no CUDA GPU visible; use device=cpu or auto")
        return torch.device("cuda")
    if name == "cpu":
        return torch.device("cpu")
    raise ConfigError(f"device={name!r} is not supported; choose auto, cpu or gpu")


class RunFiles:
    """A checkpoint (given as a file, a run directory or its checkpoints/ folder) and its run's data config."""

    def __init__(self, ckpt_path: Any, which: str = "best") -> None:
        if ckpt_path is None:
            raise ConfigError("ckpt_path is required: ckpt_path=<run dir> or ckpt_path=<file.ckpt>")
        self.checkpoint = find_checkpoint(str(ckpt_path), which=which)
        given = RunDir(Path(str(ckpt_path)))
        self.run_dir = RunDir.of_checkpoint(self.checkpoint) or (given if given.exists() else None)
        self.config_file = self.run_dir.config if self.run_dir else None
        data: dict[str, Any] = dict(DEFAULT_DATA)
        if self.config_file is not None:
            data = self._saved_data(self.config_file)
        self.data = data

    @staticmethod
    def _saved_data(config_file: Path) -> dict[str, Any]:
        """The `data` section of a run's config.yaml, or ConfigError naming the file when it is damaged."""
        fix = "restore it from a copy, or remove it to evaluate with the MNIST defaults"
        try:
            saved = OmegaConf.to_container(OmegaConf.load(config_file), resolve=False)
        except Exception as exc:  # yaml's and OmegaConf's errors alike: the file is damaged
            raise ConfigError(
                f"{config_file} is not a readable config ({' '.join(str(exc).split())[:160]}); {fix}"
            ) from None
        data = saved.get("data") if isinstance(saved, dict) else None
        if not isinstance(data, dict):
            raise ConfigError(f"{config_file} has no data section (a mapping), as every run's config does; {fix}")
        return {str(k): v for k, v in data.items() if not str(k).startswith("_")}

    def datamodule(self, data_dir: Any = None) -> Any:
        """The run's MNISTDataModule (same dataset, normalisation and validation split)."""
        from experiments.data.datamodule import MNISTDataModule

        settings = {**self.data, "loader": "resident"}
        if data_dir is not None:
            settings["data_dir"] = str(data_dir)
        known = MNISTDataModule.__init__.__code__.co_varnames
        return MNISTDataModule(**{k: v for k, v in settings.items() if k in known})
