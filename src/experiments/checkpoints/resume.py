"""`python train.py resume=<run dir>` (or `resume=last`): continue an interrupted run in its own directory.

Hydra picks the run directory before any of our code runs, so two resolvers (see conf/hydra/default.yaml)
point `hydra.run.dir` at <run dir> and put Hydra's copy of this invocation into
`.hydra/resume-<time>/`, leaving the original `.hydra/overrides.yaml` in place. `prepare` then swaps the
freshly composed config for the run's own `config.yaml` and starts from `checkpoints/last.ckpt`, so the
run continues with the same config, the same run.json and the same TensorBoard event directory.
The line a user pastes to do so is experiments.console.resume_command.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from experiments.console import argument, shown, this_program, tool
from experiments.errors import ConfigError
from experiments.rundir import CHECKPOINTS, COMPLETED, CONFIG, LAST_FILE, RunDir

# The overrides a resumed run accepts: where things are and what runs them, never what is learned (a
# changed schedule or model would not match the checkpoint). Each maps to the config keys it sets.
ENVIRONMENT_OVERRIDES: dict[str, tuple[str, ...]] = {
    "paths.data_dir": ("paths.data_dir", "data.data_dir"),
    "paths.log_dir": ("paths.log_dir", "paths.cache_dir", "data.cache_dir"),
    "paths.cache_dir": ("paths.cache_dir", "data.cache_dir"),
    "trainer.accelerator": ("trainer.accelerator",),
    "trainer.devices": ("trainer.devices",),
    "trainer.enable_progress_bar": ("trainer.enable_progress_bar",),
    "trainer.enable_model_summary": ("trainer.enable_model_summary",),
    "callbacks.progress_bar.refresh_rate": ("callbacks.progress_bar.refresh_rate",),
}
_ALWAYS_ALLOWED = ("resume", "ckpt_path")
LAST = "last"  # resume=last: the newest resumable run under paths.log_dir


def _is_run_dir(path: Any) -> bool:
    return bool(path) and RunDir(Path(str(path))).exists()


def hydra_run_dir(resume: Any, log_dir: Any, new_run_dir: str) -> str:
    """Resolver for hydra.run.dir: the run being resumed, else a new directory.

    A `resume` value that is not a run directory (or `last` with no interrupted run) also gets a new
    directory: `prepare` then reports the mistake and the failed start is cleaned up like any other,
    never touching what `resume` points at.
    """
    if str(resume) == LAST:
        newest = RunDir.newest_resumable(log_dir)
        return str(newest.path) if newest else new_run_dir
    return str(resume) if _is_run_dir(resume) else new_run_dir


def register() -> None:
    """The resolvers conf/hydra/default.yaml uses to pick the run directory of a resume."""
    OmegaConf.register_new_resolver("experiments.run_dir", hydra_run_dir, replace=True)
    OmegaConf.register_new_resolver("experiments.hydra_subdir", hydra_output_subdir, replace=True)


def hydra_output_subdir(resume: Any, output_dir: str) -> str:
    """Resolver for hydra.output_subdir: a resumed run keeps its original .hydra/ files."""
    resuming = resume is not None and _is_run_dir(output_dir)
    return f".hydra/resume-{datetime.now():%Y-%m-%d_%H-%M-%S}" if resuming else ".hydra"


@dataclass
class Resumed:
    cfg: DictConfig
    overrides: list[str]  # the original run's command-line overrides, for run.json


def override_key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def _replace_prefix(node: Any, old: str, new: str) -> Any:
    """Every string under `node` that starts with the old run directory now starts with the new one."""
    if isinstance(node, dict):
        return {k: _replace_prefix(v, old, new) for k, v in node.items()}
    if isinstance(node, list):
        return [_replace_prefix(v, old, new) for v in node]
    if isinstance(node, str) and (node == old or node.startswith(old + "/")):
        return new + node[len(old) :]
    return node


def _original_overrides(run: RunDir) -> list[str]:
    overrides_file = run.path / ".hydra" / "overrides.yaml"
    if overrides_file.is_file():
        return [str(o) for o in OmegaConf.load(overrides_file)]
    return [str(o) for o in run.record().get("overrides", [])]


def _reject_changes(cfg: DictConfig, saved: DictConfig, task_overrides: list[str], run_dir: Path) -> None:
    """ConfigError for the first override that would change what the run learns. Repeating the original
    command with resume=... added is fine: overrides that give the saved value are accepted."""
    for override in task_overrides:
        key = override_key(override)
        if key in (*_ALWAYS_ALLOWED, *ENVIRONMENT_OVERRIDES) or key.startswith("hydra."):
            continue
        given = OmegaConf.select(cfg, key, default=None)
        given = OmegaConf.to_container(given, resolve=True) if OmegaConf.is_config(given) else given
        kept = OmegaConf.select(saved, key, default=None)
        kept = OmegaConf.to_container(kept, resolve=True) if OmegaConf.is_config(kept) else kept
        if given != kept:
            raise ConfigError(
                f"{override}: a resumed run keeps its saved config ({run_dir / CONFIG} has {key}={kept}); "
                "only paths.* and trainer.accelerator/devices may change. Start a new run to change anything else"
            )


def prepare(cfg: DictConfig, output_dir: Path, task_overrides: list[str]) -> Resumed:
    """The config to continue `cfg.resume` with, or ConfigError saying why it cannot be resumed."""
    spec = str(cfg.resume)
    last_file = Path(CHECKPOINTS) / LAST_FILE
    if spec == LAST:  # hydra_run_dir already picked the run, or a new directory when there is none
        if not _is_run_dir(output_dir):
            raise ConfigError(
                f"resume=last: no interrupted run under {cfg.paths.log_dir}/ (runs/ or sweeps/*/ with "
                f"{last_file} and run.json status interrupted or running); start one with: " + " ".join(this_program())
            )
        spec = shown(output_dir)
    run_dir = Path(spec)
    run = RunDir(run_dir)
    if not run.exists() or output_dir.resolve() != run_dir.resolve():
        raise ConfigError(
            f"resume={spec}: not a run directory (no {CONFIG} in it); pass the 'Run directory:' a run printed"
        )
    saved = OmegaConf.load(run.config)
    assert isinstance(saved, DictConfig)
    container = OmegaConf.to_container(saved, resolve=True)
    # Paths inside the saved config name the directory the run was started in; it may have moved since.
    old_dir = str(saved.paths.output_dir)
    resumed = OmegaConf.create(_replace_prefix(container, old_dir, str(output_dir)))
    _reject_changes(cfg, resumed, task_overrides, run_dir)
    if run.status() == COMPLETED:
        raise ConfigError(
            f"resume={spec}: the run already completed; evaluate it with: "
            f"{tool('experiments-evaluate')} {argument('ckpt_path', shown(run_dir))}"
        )
    if cfg.get("ckpt_path") not in (None, "last"):
        raise ConfigError(
            f"ckpt_path={cfg.ckpt_path}: a resumed run continues from its own {last_file}; drop ckpt_path"
        )
    last = run.last_checkpoint
    if not last.is_file():
        raise ConfigError(
            f"resume={spec}: nothing to resume, {last} does not exist (the run stopped before its first "
            "checkpoint); start the run again without resume"
        )
    for override in task_overrides:
        for key in ENVIRONMENT_OVERRIDES.get(override_key(override), ()):
            OmegaConf.update(resumed, key, OmegaConf.select(cfg, key), force_add=True)
    resumed.resume = str(run_dir)
    resumed.ckpt_path = str(RunDir(output_dir).last_checkpoint)
    return Resumed(resumed, _original_overrides(run))
