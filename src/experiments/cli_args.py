"""`key=value` arguments for the small commands (evaluate, predict, doctor), the way train.py takes them.

A dozen plain keys do not need Hydra's composition, run directories and logging set-up; what they need
is the same spelling and one clear line for a mistake.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

import yaml

from experiments.errors import ConfigError, ExperimentError


def parse(argv: Sequence[str], defaults: dict[str, Any], aliases: dict[str, str] | None = None) -> dict[str, Any]:
    """`['ckpt_path=x', 'top_k=3']` -> dict over `defaults`; values are YAML (numbers, lists, booleans)."""
    aliases = aliases or {}
    values = dict(defaults)
    for argument in argv:
        key, sep, text = argument.partition("=")
        key = aliases.get(key, key)
        if not sep or key not in defaults:
            known = ", ".join(f"{k}=" for k in defaults)
            raise ConfigError(f"unknown argument {argument!r}; expected key=value with one of: {known}")
        values[key] = _value(text, defaults[key])
    return values


def _value(text: str, default: Any) -> Any:
    """Paths and names stay as written (YAML would turn `2026-11-24` into a date); numbers, booleans and
    `[a,b]` lists are parsed."""
    if not text:
        return None
    if isinstance(default, (str, type(None))) and not text.startswith("["):
        return text
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def run_command(body: Callable[[list[str]], int | None], usage: str, argv: Sequence[str] | None = None) -> NoReturn:
    """Run `body(args)`; `--help` prints usage; an ExperimentError becomes one `error:` line and exit 1."""
    args = list(sys.argv[1:] if argv is None else argv)
    if any(a in ("-h", "--help") for a in args):
        print(usage)
        sys.exit(0)
    try:
        code = body(args)
    except ExperimentError as exc:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":  # the same switch as train.py
            raise
        print(f"error: {' '.join(str(exc).split())}", file=sys.stderr, flush=True)
        sys.exit(1)
    sys.exit(code or 0)
