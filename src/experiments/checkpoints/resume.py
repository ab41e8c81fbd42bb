"""`python train.py resume=<run dir>` (or `resume=last`): continue an interrupted run in its own directory.

Hydra picks the run directory before any of our code runs, so two resolvers (see conf/hydra/default.yaml)
point `hydra.run.dir` at <run dir> and put Hydra's copy of this invocation into
`.hydra/resume-<time>/`, leaving the original `.hydra/overrides.yaml` in place. `prepare` then swaps the
freshly composed config for the run's own `config.yaml` and starts from `checkpoints/last.ckpt`, so the
run continues with the same config, the same run.json and the same TensorBoard event directory.
The line a user pastes to do so is experiments.console.resume_command.

`ResumeCheck`, a Hydra callback, runs `prepare`'s checks before Hydra writes anything into the run (its
`.hydra/resume-<time>/` copy, train.log) and takes the run's lock (RunDir.acquire) there: a resume that
is refused (a live run, an override it cannot honour, a completed run) leaves the run as it was, and of
two resumes started together one wins and the other is refused in one line.
"""

from __future__ import annotations

import copy
import os
import shutil
import sys
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from experiments.console import argument, shown, this_program, tool
from experiments.errors import CheckpointError, ConfigError, ExperimentError
from experiments.rundir import CHECKPOINTS, COMPLETED, CONFIG, LAST_FILE, RUNNING, RunBusy, RunDir, checkpoint_problem

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
# Keys that name where things are, compared by their overrides only: the saved values name the run's
# original folders, the composed ones today's defaults.
_WHERE = ("paths", "data.data_dir", "data.cache_dir", "resume", "ckpt_path")
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


class NothingToResume(ConfigError):
    """The run stopped before its first checkpoint: there is no state to continue from."""


@dataclass
class Resumed:
    cfg: DictConfig
    overrides: list[str]  # the original run's command-line overrides, for run.json


def override_key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def replace_prefix(node: Any, old: str, new: str) -> Any:
    """Every string (and dict key) under `node` that starts with the old directory now starts with the new one."""
    if isinstance(node, dict):
        return {replace_prefix(k, old, new): replace_prefix(v, old, new) for k, v in node.items()}
    if isinstance(node, list):
        return [replace_prefix(v, old, new) for v in node]
    if isinstance(node, str) and (node == old or node.startswith(old + "/")):
        return new + node[len(old) :]
    return node


def _original_overrides(run: RunDir) -> list[str]:
    overrides_file = run.path / ".hydra" / "overrides.yaml"
    if overrides_file.is_file():
        return [str(o) for o in OmegaConf.load(overrides_file)]
    return [str(o) for o in run.record().get("overrides", [])]


def _flat(node: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(node, dict):
        return {k: v for key, value in node.items() for k, v in _flat(value, f"{prefix}{key}.").items()}
    return {prefix.rstrip("."): node}


def _is_group(cfg: DictConfig, key: str) -> bool:
    """Whether an override chooses a config group or preset (`model/optimizer=adam`, `experiment=x`,
    `model=cnn`, `~trainer.x`) rather than setting one value: what it changes is found by comparing configs."""
    return "/" in key or isinstance(OmegaConf.select(cfg, key, default=None), DictConfig) or key not in _keys(cfg)


def _keys(cfg: DictConfig) -> set[str]:
    return set(_flat(OmegaConf.to_container(cfg, resolve=False))) | {str(k) for k in cfg}


def _reject_changes(cfg: DictConfig, saved: DictConfig, task_overrides: list[str], run_dir: Path) -> None:
    """ConfigError naming the first override that would change what the run learns: a value (compared
    with the saved one), or a group or preset (the whole composed config compared with the saved one).
    Repeating the original command with resume=... added is fine: overrides that give the saved values
    are accepted."""
    groups = []
    for override in task_overrides:
        key = override_key(override)
        if key in (*_ALWAYS_ALLOWED, *ENVIRONMENT_OVERRIDES) or key.startswith("hydra.") or key == "hydra":
            continue
        if _is_group(cfg, key) or override.startswith("~"):
            groups.append(override)
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
    if not groups:
        return
    changed = {o for o in task_overrides if override_key(o) in ENVIRONMENT_OVERRIDES}
    ignored = (*_WHERE, *(k for o in changed for k in ENVIRONMENT_OVERRIDES[override_key(o)]))
    given_flat = _flat(OmegaConf.to_container(cfg, resolve=True))
    kept_flat = _flat(OmegaConf.to_container(saved, resolve=True))
    differences = [
        key
        for key in sorted(set(given_flat) | set(kept_flat))
        if not any(key == i or key.startswith(i + ".") for i in ignored)
        and given_flat.get(key, "<unset>") != kept_flat.get(key, "<unset>")
    ]
    if differences:
        key = differences[0]
        more = f" (and {len(differences) - 1} more keys)" if len(differences) > 1 else ""
        raise ConfigError(
            f"{' '.join(groups)}: a resumed run keeps its saved config, and this changes {key} from "
            f"{kept_flat.get(key, '<unset>')} to {given_flat.get(key, '<unset>')}{more} ({run_dir / CONFIG}); "
            "drop it, or start a new run to change it"
        )


def prepare(cfg: DictConfig, output_dir: Path, task_overrides: list[str]) -> Resumed:
    """The config to continue `cfg.resume` with, or ConfigError saying why it cannot be resumed."""
    spec = str(cfg.resume)
    last_file = Path(CHECKPOINTS) / LAST_FILE
    if spec == LAST:  # hydra_run_dir already picked the run, or a new directory when there is none
        if not _is_run_dir(output_dir):
            raise ConfigError(
                f"resume=last: no interrupted run under {cfg.paths.log_dir}/ (runs/ or sweeps/*/ with "
                f"{last_file}, run.json status interrupted or running, and no live process training it); "
                "start one with: " + " ".join(this_program())
            )
        spec = shown(output_dir)
    run_dir = Path(spec)
    run = RunDir(run_dir)
    if not run.exists() or output_dir.resolve() != run_dir.resolve():
        raise ConfigError(
            f"resume={spec}: not a run directory (no {CONFIG} in it); pass the 'Run directory:' a run printed"
        )
    writer = run.writer()
    if writer is not None:
        raise ConfigError(_busy(spec, writer))
    try:
        saved = OmegaConf.load(run.config)
    except Exception as exc:  # yaml's and OmegaConf's errors: the file is damaged, not our code
        raise ConfigError(
            f"resume={spec}: {run.config} is not a readable config ({' '.join(str(exc).split())[:160]}); "
            "it was damaged after the run wrote it: restore it, or start a new run"
        ) from None
    if not isinstance(saved, DictConfig) or not isinstance(saved.get("paths"), DictConfig):
        raise ConfigError(
            f"resume={spec}: {run.config} is not the config a run wrote (no paths section); restore it, or "
            "start a new run"
        )
    container = OmegaConf.to_container(saved, resolve=True)
    # Paths inside the saved config name the directory the run was started in; it may have moved since.
    old_dir = str(saved.paths.output_dir)
    resumed = OmegaConf.create(replace_prefix(container, old_dir, str(output_dir)))
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
        raise NothingToResume(
            f"resume={spec}: nothing to resume, {last} does not exist (the run stopped before its first "
            "checkpoint); start the run again without resume"
        )
    problem = checkpoint_problem(last)
    if problem:  # checked here too, so that the refusal comes before Hydra writes into the run
        raise CheckpointError(
            f"resume={spec}: {last} is truncated or corrupt: {problem}; it was damaged after it was written, "
            "and the run cannot continue from it: start a new run"
        )
    for override in task_overrides:
        for key in ENVIRONMENT_OVERRIDES.get(override_key(override), ()):
            OmegaConf.update(resumed, key, OmegaConf.select(cfg, key), force_add=True)
    resumed.resume = str(run_dir)
    resumed.ckpt_path = str(RunDir(output_dir).last_checkpoint)
    return Resumed(resumed, _original_overrides(run))


def _busy(spec: str, pid: int) -> str:
    who = f"process {pid}" if pid > 0 else "another process"
    stop = f"kill -INT {pid}" if pid > 0 else "Ctrl-C"
    return (
        f"resume={spec}: the run is still training ({who} holds {Path(spec) / '.lock'}); wait for it to end, "
        f"or stop it ({stop}) and resume it then"
    )


def _child_rank() -> bool:
    """A DDP child rank (started by Lightning, torchrun or SLURM): rank 0 checked and locked the run."""
    return any(os.environ.get(name, "0") not in ("", "0") for name in ("RANK", "LOCAL_RANK", "SLURM_PROCID"))


class ResumeCheck(Callback):
    """A Hydra callback (conf/hydra/default.yaml): `resume=` is checked and the run's lock taken before
    Hydra writes into the run directory. Like LogDirCheck it prints its one line and exits itself: Hydra
    turns an exception in a callback into a warning and goes on."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        if OmegaConf.select(config, "resume", default=None) is None or _child_rank():
            return
        run_dir = Path(os.path.abspath(str(OmegaConf.select(config, "hydra.run.dir"))))
        if not RunDir(run_dir).exists():
            return  # not a run directory: the run reports it (and cleans up its new directory) as before
        # The task's config resolves against Hydra's runtime settings, which Hydra sets only when the job
        # starts: a copy of them, pointing at the run being resumed, for the time of the check.
        hydra_copy = copy.deepcopy(config)
        with read_write(hydra_copy.hydra.runtime), open_dict(hydra_copy.hydra.runtime):
            hydra_copy.hydra.runtime.output_dir = str(run_dir)
        previous = HydraConfig.instance().cfg
        HydraConfig.instance().set_config(hydra_copy)
        try:
            task = copy.deepcopy(hydra_copy)
            with read_write(task), open_dict(task):
                del task["hydra"]
            prepare(task, run_dir, list(config.hydra.overrides.task))
            RunDir(run_dir).acquire()
        except RunBusy as busy:
            _fail(_busy(str(OmegaConf.select(config, "resume")), busy.pid or -1))
        except NothingToResume as exc:
            _fail(" ".join(str(exc).split()) + _remove_stray(RunDir(run_dir)))
        except ExperimentError as exc:
            _fail(" ".join(str(exc).split()))
        finally:
            HydraConfig.instance().cfg = previous  # type: ignore[misc]


def _remove_stray(run: RunDir) -> str:
    """A run killed before its first checkpoint (no last.ckpt, no live writer, never marked failed or
    completed) holds nothing a later run could use: its directory is removed rather than left as an
    orphan. Returns what to add to the refusal's line."""
    if run.last_checkpoint.exists() or run.writer() is not None or run.status() not in (None, RUNNING):
        return ""
    shutil.rmtree(run.path, ignore_errors=True)
    return f" (its directory, which held no checkpoint, is removed: {shown(run.path)})" if not run.path.exists() else ""


def _fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr, flush=True)
    sys.exit(1)
