"""OmegaConf resolvers used by the configs; registered when `experiments.train` is imported.

Run directory names are typed back on the command line (`resume=<run dir>`), so the part made from the
overrides holds only characters that both a shell and Hydra's override grammar take unquoted: each
override's last key part and its value joined by `-`, overrides joined by `_`, list values joined by `x`:

    data.batch_size=32 model.optimizer.lr=0.1    -> <time>_batch_size-32_lr-0.1
    model.hidden_sizes=[256,128]                 -> <time>_hidden_sizes-256x128
    sweep job 3 of data.batch_size=64,...        -> <sweep time>/003_batch_size-64_lr-0.03

A `run_name` is kept as given (letters of any script), with other characters replaced by `-`; Hydra reads
non-ASCII letters only in quotes, which the printed resume command then has (experiments.console).
"""

from __future__ import annotations

import re

from omegaconf import OmegaConf

# Bytes of the name after the time stamp or job number: far below the 255-byte limit of file names, and
# short, for TensorBoard's HParams table, which cuts long trial names.
MAX_NAME_BYTES = 80
# conf/hydra/default.yaml joins the overrides in hydra.job.override_dirname with this, a character no
# override contains, so list values like [256,128] are never split.
ITEM_SEP = "\x1f"


def short_overrides(overrides: str) -> str:
    """'data.batch_size=32,model.optimizer.lr=0.1' -> 'batch_size=32,lr=0.1' (last key part only): labels
    for the sweep plots."""
    return re.sub(r"(^|,)[+~]*(?:[\w-]+[./])*([\w-]+)=", r"\1\2=", overrides)


def _short_floats(text: str) -> str:
    # Optuna proposes values like lr=0.02038415671047589; 4 significant digits keep names readable and
    # the job number in front of a sweep's names keeps them unique.
    return re.sub(r"(?<![\w.])\d+\.\d{5,}(?:e-?\d+)?", lambda m: f"{float(m.group()):.4g}", text)


def _item(override: str) -> str:
    """'data.batch_size=32' -> 'batch_size-32', 'model.hidden_sizes=[256,128]' -> 'hidden_sizes-256x128'."""
    key, _, value = override.partition("=")
    key = re.sub(r"[^A-Za-z0-9_-]+", "-", re.split(r"[./]", key.lstrip("+~"))[-1])
    value = re.sub(r"[\[\](){}'\"]", "", re.sub(r"\s*,\s*", "x", _short_floats(value)))
    value = "-".join(part for part in re.split(r"[^A-Za-z0-9.+-]+", value) if part)  # /tmp/x -> tmp-x
    return f"{key}-{value}" if value else key


def cut(name: str, max_bytes: int = MAX_NAME_BYTES) -> str:
    """At most max_bytes of UTF-8, never half a character."""
    return name.encode()[:max_bytes].decode(errors="ignore")


def name(run_name: str, override_dirname: str) -> str:
    """The run's name: the explicit run_name, else its shortened overrides (whole ones, as many as fit)."""
    if run_name:
        return cut(re.sub(r"[^\w.+-]+", "-", run_name).strip("-"))
    items = [_item(o) for o in override_dirname.split(ITEM_SEP) if o]
    joined = ""
    for item in items:
        longer = f"{joined}_{item}" if joined else item
        if len(longer.encode()) > MAX_NAME_BYTES:
            break
        joined = longer
    return (joined or cut(items[0])) if items else ""


def run_suffix(run_name: str, override_dirname: str) -> str:
    """'_<name>' for a run directory, or '' for a run without run_name and overrides."""
    text = name(str(run_name or ""), str(override_dirname or ""))
    return f"_{text}" if text else ""


def job_subdir(num: int, run_name: str, override_dirname: str) -> str:
    """A sweep job's directory: its job number, zero-padded so `ls` and TensorBoard list jobs in order."""
    return f"{int(num):03d}{run_suffix(run_name, override_dirname)}"


def register() -> None:
    OmegaConf.register_new_resolver("experiments.run_suffix", run_suffix, replace=True)
    OmegaConf.register_new_resolver("experiments.job_subdir", job_subdir, replace=True)
