"""Hydra's config mistakes as one line: `error: <what>; <did you mean ...>`, and exit status 1.

Hydra answers an unknown key, a wrong type, an unknown option or a malformed override with several lines of
its own, and for an unknown key it advises `+key=value`, which adds the typo to the config. The entry points
run under `one_line_mistakes(main)`: the exception Hydra raised is turned into one line, with the nearest key or
option (difflib) as the suggestion. HYDRA_FULL_ERROR=1 still shows Hydra's full text and traceback.

Hydra prints these exceptions itself unless HYDRA_FULL_ERROR=1 (hydra._internal.utils.run_and_report, the
only place they surface); so the wrapper sets it for Hydra and keeps the user's own choice in
EXPERIMENTS_FULL_ERROR, which experiments.errors.full_error() reads everywhere else.
"""

from __future__ import annotations

import difflib
import functools
import os
import sys
from collections.abc import Callable, Iterable
from typing import Any

from hydra.errors import ConfigCompositionException, HydraException, MissingConfigException, OverrideParseException
from omegaconf import DictConfig
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, OmegaConfBaseException, ValidationError

from experiments.errors import USER_FULL_ERROR as USER_SWITCH
from experiments.errors import full_error, is_bug, one_line

HYDRA_SWITCH = "HYDRA_FULL_ERROR"


def did_you_mean(name: str, candidates: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, sorted(set(candidates)), n=1, cutoff=0.5)
    return f"; did you mean {close[0]}?" if close else ""


def describe(exc: BaseException) -> str | None:
    """The one line for a config mistake Hydra raised; None for anything else."""
    cause = exc.__cause__
    if isinstance(exc, MissingConfigException) and exc.options is not None:  # unknown option of a group
        wanted = str(exc.missing_cfg_file or "")
        group, _, option = wanted.rpartition("/")
        hint = did_you_mean(option, exc.options).replace("mean ", f"mean {group}=")
        return f"{group}={option} is not an option of {group} (choose {' | '.join(exc.options)}){hint}"
    if isinstance(exc, OverrideParseException):
        reason = str(exc).splitlines()[0]
        grammar = "https://hydra.cc/docs/advanced/override_grammar/basic/"
        return f"cannot read the override {exc.override!r}: {reason}; the grammar: {grammar}"
    if isinstance(exc, ConfigCompositionException) and isinstance(cause, ConfigKeyError | ConfigAttributeError):
        key = str(cause.full_key)
        parent, _, name = key.rpartition(".")
        node = cause.parent_node
        keys = [str(k) for k in node] if isinstance(node, DictConfig) else []
        hint = did_you_mean(name, keys).replace("mean ", f"mean {parent}." if parent else "mean ")
        return f"{key} is not a key of {parent or 'the config'}" + (hint or "; `--cfg job` lists the keys")
    if isinstance(exc, ConfigCompositionException) and isinstance(cause, ValidationError):
        reason = str(cause).splitlines()[0]
        override = str(exc).removeprefix("Error merging override ").strip()
        return f"{override}: {reason}"
    return None


def other(exc: BaseException) -> str:
    """Anything else Hydra raised, in one line: its own first line (and its cause's), as it would print them;
    what is not Hydra's (a bug escaping a task) by type and message, as experiments.errors does."""
    if isinstance(exc, HydraException | OmegaConfBaseException):
        cause = exc.__cause__
        lines = [str(exc).strip().splitlines()[0]] + ([str(cause).strip().splitlines()[0]] if cause else [])
        return ": ".join(line.rstrip(".") for line in lines if line)
    return f"{one_line(exc)} (HYDRA_FULL_ERROR=1 prints the traceback)" if is_bug(exc) else one_line(exc)


def one_line_mistakes(main: Callable[[], Any]) -> Callable[[], Any]:
    """Wrap a `@hydra.main` entry point: a config mistake ends in one `error:` line and exit status 1."""

    @functools.wraps(main)
    def run() -> Any:
        if full_error():
            return main()
        saved = {name: os.environ.get(name) for name in (HYDRA_SWITCH, USER_SWITCH)}
        os.environ[USER_SWITCH] = saved[HYDRA_SWITCH] or ""
        os.environ[HYDRA_SWITCH] = "1"
        try:
            return main()
        except Exception as exc:
            print(f"error: {describe(exc) or other(exc)}", file=sys.stderr, flush=True)
            sys.exit(1)
        finally:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value

    return run
