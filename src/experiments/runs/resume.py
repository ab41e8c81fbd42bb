"""`python train.py resume=<run dir>` (or `resume=last`): continue an interrupted run in its own directory.

Hydra picks the run directory before any of our code runs, so two resolvers (see conf/hydra/default.yaml)
point `hydra.run.dir` at <run dir> and put Hydra's copy of this invocation into
`.hydra/resume-<time>/`, leaving the original `.hydra/overrides.yaml` in place. `prepare` then swaps the
freshly composed config for the run's own `config.yaml` and starts from `checkpoints/last.ckpt`, so the
run continues with the same config, the same run.json and the same TensorBoard event directory.
`command` is the line a user pastes to do so.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import sys
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from experiments.errors import ConfigError

RUN_CONFIG = "config.yaml"
LAST_CHECKPOINT = Path("checkpoints") / "last.ckpt"

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
LAST = "last"  # resume=last: the newest interrupted run under paths.log_dir
_RESUMABLE = ("interrupted", "running")  # run.json statuses; "running" after the end: killed hard


def is_run_dir(path: Any) -> bool:
    return bool(path) and (Path(str(path)) / RUN_CONFIG).is_file()


def _status(run_dir: Path) -> str | None:
    try:
        return json.loads((run_dir / "run.json").read_text()).get("status")
    except (OSError, ValueError, AttributeError):
        return None


def find_last(log_dir: Any) -> Path | None:
    """The most recently modified interrupted run under log_dir (runs/ and sweeps/*/ jobs): a run directory
    with checkpoints/last.ckpt whose run.json says interrupted or running (killed hard)."""
    root = Path(str(log_dir))
    runs = [
        path
        for path in (*root.glob("runs/*"), *root.glob("sweeps/*/*"))
        if is_run_dir(path) and (path / LAST_CHECKPOINT).is_file() and _status(path) in _RESUMABLE
    ]
    return max(runs, key=_modified, default=None)


def _modified(run_dir: Path) -> float:
    # run.json is rewritten after every epoch and when the run is interrupted; last.ckpt at every save.
    return max((run_dir / "run.json").stat().st_mtime, (run_dir / LAST_CHECKPOINT).stat().st_mtime)


def hydra_run_dir(resume: Any, log_dir: Any, new_run_dir: str) -> str:
    """Resolver for hydra.run.dir: the run being resumed, else a new directory.

    A `resume` value that is not a run directory (or `last` with no interrupted run) also gets a new
    directory: `prepare` then reports the mistake and the failed start is cleaned up like any other,
    never touching what `resume` points at.
    """
    if str(resume) == LAST:
        return str(find_last(log_dir) or new_run_dir)
    return str(resume) if is_run_dir(resume) else new_run_dir


def hydra_output_subdir(resume: Any, output_dir: str) -> str:
    """Resolver for hydra.output_subdir: a resumed run keeps its original .hydra/ files."""
    resuming = resume is not None and is_run_dir(output_dir)
    return f".hydra/resume-{datetime.now():%Y-%m-%d_%H-%M-%S}" if resuming else ".hydra"


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


def _argument(key: str, value: str) -> str:
    """`key=value` for Hydra and the shell: bare when the value needs no quotes (run directory names are
    made so, see experiments.config.names), else a Hydra-quoted string (older names hold `=` and `,`)."""
    if re.fullmatch(r"[A-Za-z0-9_./+-]+", value) and "/" in value:  # a path: never read as a number
        return f"{key}={value}"
    hydra_quoted = re.sub(r'(\\*)(?="|$)', r"\1\1", value).replace('"', '\\"')
    return shlex.quote(f'{key}="{hydra_quoted}"')


def command(run_dir: Path) -> str:
    """The command that continues the run in `run_dir`, to paste into the shell this run was started from."""
    return " ".join([*this_program(), _argument("resume", shown(run_dir))])


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


def _original_overrides(run_dir: Path) -> list[str]:
    overrides_file = run_dir / ".hydra" / "overrides.yaml"
    if overrides_file.is_file():
        return [str(o) for o in OmegaConf.load(overrides_file)]
    record = run_dir / "run.json"
    return list(json.loads(record.read_text()).get("overrides", [])) if record.is_file() else []


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
                f"{override}: a resumed run keeps its saved config ({run_dir / RUN_CONFIG} has {key}={kept}); "
                "only paths.* and trainer.accelerator/devices may change. Start a new run to change anything else"
            )


def prepare(cfg: DictConfig, output_dir: Path, task_overrides: list[str]) -> Resumed:
    """The config to continue `cfg.resume` with, or ConfigError saying why it cannot be resumed."""
    spec = str(cfg.resume)
    if spec == LAST:  # hydra_run_dir already picked the run, or a new directory when there is none
        if not is_run_dir(output_dir):
            raise ConfigError(
                f"resume=last: no interrupted run under {cfg.paths.log_dir}/ (runs/ or sweeps/*/ with "
                f"{LAST_CHECKPOINT} and run.json status interrupted or running); start one with: "
                + " ".join(this_program())
            )
        spec = shown(output_dir)
    run_dir = Path(spec)
    if not is_run_dir(run_dir) or output_dir.resolve() != run_dir.resolve():
        raise ConfigError(
            f"resume={spec}: not a run directory (no {RUN_CONFIG} in it); pass the 'Run directory:' a run printed"
        )
    saved = OmegaConf.load(run_dir / RUN_CONFIG)
    assert isinstance(saved, DictConfig)
    container = OmegaConf.to_container(saved, resolve=True)
    # Paths inside the saved config name the directory the run was started in; it may have moved since.
    old_dir = str(saved.paths.output_dir)
    resumed = OmegaConf.create(_replace_prefix(container, old_dir, str(output_dir)))
    _reject_changes(cfg, resumed, task_overrides, run_dir)
    record_file = run_dir / "run.json"
    status = json.loads(record_file.read_text()).get("status") if record_file.is_file() else None
    if status == "completed":
        raise ConfigError(
            f"resume={spec}: the run already completed; evaluate it with: "
            f"{tool('experiments-evaluate')} {_argument('ckpt_path', shown(run_dir))}"
        )
    if cfg.get("ckpt_path") not in (None, "last"):
        raise ConfigError(
            f"ckpt_path={cfg.ckpt_path}: a resumed run continues from its own {LAST_CHECKPOINT}; drop ckpt_path"
        )
    last = run_dir / LAST_CHECKPOINT
    if not last.is_file():
        raise ConfigError(
            f"resume={spec}: nothing to resume, {last} does not exist (the run stopped before its first "
            "checkpoint); start the run again without resume"
        )
    for override in task_overrides:
        for key in ENVIRONMENT_OVERRIDES.get(override_key(override), ()):
            OmegaConf.update(resumed, key, OmegaConf.select(cfg, key), force_add=True)
    resumed.resume = str(run_dir)
    resumed.ckpt_path = str(output_dir / LAST_CHECKPOINT)
    return Resumed(resumed, _original_overrides(run_dir))
