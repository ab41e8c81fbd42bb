"""README.md runs as written: every command in its bash blocks, tables and text is found here and checked.

Each command is classified and checked the cheapest real way: `train.py` runs in-process on generated
data, shortened to a few batches (a sweep to two jobs); what needs a GPU, several processes or a cluster
is composed and validated only; the console scripts run against one short reference run. A command this
file cannot classify fails, so README cannot gain an unchecked one. A mistake README shows on purpose says
so (an `exit` column in its table, or a `# exits 1` comment) and is checked to fail that way.
`python tests/test_readme.py` lists what each command gets.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import io
import itertools
import json
import re
import shlex
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from omegaconf import DictConfig, OmegaConf

from tests.conftest import REPO_ROOT, CliResult, call_main, compose_config

README = REPO_ROOT / "README.md"
# README calls the venv's binaries (`.venv/bin/...`); the suite runs with that venv's python.
VENV_BIN = Path(sys.executable).parent
# Where README's commands find real MNIST; here it stands for the generated data.
README_DATA = "../shared/datasets"

SHELL_HELPERS = {"mkdir", "printf", "echo", "cp", "touch"}
COMMAND_APPS = {f"experiments-{name}": name for name in ("evaluate", "predict", "doctor", "compare")}
TRAIN_APPS = ("train.py", "experiments-train")
# The learning-rate finder composes train.py's config: run in-process on the generated data, shortened.
LR_FIND = "experiments-lr-find"
LR_FIND_SHORT = {"lr_find.num_training": "20", "data.val_size": "100", "data.search_dirs": "[]"}
BENCHMARK = "scripts/benchmark.py"
# Inline code starting with one of these and an argument is a command (other inline code is prose).
PROGRAMS = (
    "python", "python3", "tensorboard", "mlflow", "optuna-dashboard", *TRAIN_APPS, BENCHMARK, *COMMAND_APPS, LR_FIND
)
INFO_FLAGS = {"--help", "-h", "--cfg", "--info", "--hydra-help"}

# Shortening, whatever the command says: one epoch (or two steps), the generated data, nothing drawn.
FORCED = {
    "trainer.max_epochs": "1",
    "data.val_size": "100",  # the generated training set has 600 images
    "data.search_dirs": "[]",  # never Debian's Fashion-MNIST: the generated one
    "test_figures": "0",
    "trainer.enable_model_summary": "false",
}
# Only where the command sets them: values that would make the shortened run long, or that it refuses.
IF_SET = {"trainer.max_steps": "2", "trainer.val_check_interval": "1", "trainer.overfit_batches": "2"}
# Only where the command leaves them out: its own value cannot make a run on 600 images long.
UNLESS_SET = {
    "trainer.limit_train_batches": "2",
    "trainer.limit_val_batches": "1",
    "trainer.limit_test_batches": "1",
    "trainer.accelerator": "cpu",
}
# Only where the composed config has them (a callbacks group without a progress bar, a sweeper without trials).
IF_PRESENT = {"callbacks.progress_bar.refresh_rate": "0", "hydra.sweeper.n_trials": "2"}
# A multirun's first comma list keeps this many values, every other list its first: the jobs it runs.
SWEEP_JOBS = 2
# scripts/benchmark.py shortened: one epoch of each contender at one batch size, and of the throughput
# table only the resident contenders (README's `data.loader=dataloader` command runs the DataLoader path).
BENCHMARK_SHORT = {
    "epochs": "1",
    "warmup": "0",
    "rounds": "1",
    "epoch_batch_sizes": "[128]",
    "only": "resident",
    # The sweep table: one one-epoch job each way; the fixed-cost table: two one-batch jobs.
    "sweep_batch_sizes": "[128]",
    "sweep_lrs": "[0.1]",
    "sweep_seeds": "[1]",
    "sweep_epochs": "1",
    "fixed_cost_jobs": "2",
}


def _compose_only_reason(key: str, value: str) -> str | None:
    """Why an override is composed and validated only: it needs what this machine lacks (a GPU), or starts
    processes of its own (DDP ranks, launcher workers: each imports torch for seconds; tests/test_sweeps.py
    runs DDP on CPU)."""
    if (key, value) in {("trainer.accelerator", "gpu"), ("trainer.accelerator", "cuda"), ("trainer", "gpu")}:
        return "needs a CUDA GPU"
    if (key, value) in {("trainer.accelerator", "mps"), ("trainer", "mps")}:
        return "needs Apple's MPS"
    if key == "trainer.precision" and value.startswith("16"):
        return "16-bit precision needs a GPU"
    if (key == "trainer" and value == "ddp") or (key == "trainer.strategy" and value.startswith("ddp")):
        return "DDP starts one process per device"
    if key == "hydra/launcher" and value != "basic":
        return {"slurm": "submits to a SLURM cluster"}.get(value, f"the {value} launcher starts worker processes")
    return None


# --- reading README ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Command:
    text: str  # one command as README writes it (one part of an `&&` chain)
    line: str  # the whole line it is part of, comment removed
    before: tuple[str, ...] = ()  # the commands before it in its code block (shell helpers it may need)
    exit_code: int = 0  # what README says it exits with: a table's `exit` column, a `# exits 1` comment

    @property
    def id(self) -> str:
        return re.sub(r"^\.venv/bin/(python (?=[^-]))?", "", self.text)


FENCE = re.compile(r"^```([\w-]*)[^\n]*\n(.*?)^```[ \t]*$", re.M | re.S)
INLINE = re.compile(r"(`+)(.+?)(?<!`)\1(?!`)", re.S)


def _cut(line: str) -> tuple[str, list[str], str]:
    """A shell line without its `#` comment, its `&&`-separated commands, and the comment; quotes respected."""
    quote, cuts, end = "", [], len(line)
    for i, char in enumerate(line):
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "#" and (i == 0 or line[i - 1].isspace()):
            end = i
            break
        elif line.startswith("&&", i):
            cuts.append(i)
    comment, line = line[end:], line[:end].strip()
    bounds = [0, *cuts, len(line)]
    parts = [line[a:b].removeprefix("&&").strip() for a, b in itertools.pairwise(bounds)]
    return line, [p for p in parts if p], comment


def _block_commands(body: str) -> Iterator[Command]:
    before: list[str] = []
    for raw in re.sub(r"\s*\\\n\s*", " ", body).splitlines():
        line, parts, comment = _cut(raw)
        exits = re.search(r"\bexits? (?:with )?(\d+)", comment)  # `# exits 1`: a mistake shown on purpose
        for part in parts:
            yield Command(part, line, tuple(before), int(exits.group(1)) if exits and part == parts[-1] else 0)
            before.append(part)


def _is_command(span: str) -> bool:
    words = span.split()
    return bool(re.match(r"\.venv/bin/[\w-]", span)) or (len(words) > 1 and words[0] in PROGRAMS)


def _inline_commands(prose: str) -> Iterator[Command]:
    """Inline code that is a command, in text and in tables (a table's `exit` column gives its exit code)."""

    def spans(text: str, exit_code: int = 0) -> Iterator[Command]:
        for match in INLINE.finditer(text):
            span = " ".join(match.group(2).split())
            if _is_command(span):
                yield Command(span, span, (), exit_code)

    paragraph: list[str] = []
    header: list[str] | None = None
    for line in [*prose.splitlines(), ""]:
        if not line.lstrip().startswith("|"):
            header = None
            paragraph.append(line)
            continue
        yield from spans("\n".join(paragraph))
        paragraph = []
        cells = [c.strip().lower() for c in line.strip().strip("|").split("|")]
        if header is None:
            header = cells
        elif all(re.fullmatch(r":?-+:?", c) for c in cells):
            continue
        exit_cell = cells[header.index("exit")] if "exit" in header and len(cells) == len(header) else "0"
        yield from spans(line, int(exit_cell) if exit_cell.isdigit() else 0)
    yield from spans("\n".join(paragraph))


def readme_commands(text: str) -> list[Command]:
    """Every command of README: each line of each bash block, lines of other blocks that call the venv's
    binaries, and inline code that is a command; the first of each text."""
    found: list[Command] = []
    for match in FENCE.finditer(text):
        language, body = match.groups()
        commands = _block_commands(body)
        found += [c for c in commands if language in ("bash", "sh", "shell") or c.text.startswith(".venv/bin/")]
    found += _inline_commands(FENCE.sub("", text))
    unique: dict[str, Command] = {}
    for command in found:
        unique.setdefault(command.text, command)
    return list(unique.values())


def _key(arg: str) -> str | None:
    """The key of a `key=value` override (without `+`/`~`); None for flags and their values."""
    if arg.startswith("-") or "=" not in arg:
        return None
    return arg.split("=", 1)[0].lstrip("+~")


def _value(args: list[str], key: str) -> str | None:
    return next((a.split("=", 1)[1] for a in args if _key(a) == key), None)


def _benchmark_sections(args: list[str]) -> list[str]:
    given = _value(args, "sections")
    return yaml.safe_load(given) if given else OmegaConf.load(REPO_ROOT / "conf" / "benchmark.yaml").sections


def _app(words: list[str]) -> tuple[str, list[str]]:
    """The program a command runs (`train.py`, `experiments-evaluate`, ...) and its arguments."""
    if words[0] in (".venv/bin/python", ".venv/bin/python3") and len(words) > 1 and not words[1].startswith("-"):
        return words[1], words[2:]
    return words[0].removeprefix(".venv/bin/"), words[1:]


def classify(command: Command) -> tuple[str, str]:
    """(kind, why) for a README command: which check_<kind> below checks it; "unclassified" fails."""
    text, words = command.text, shlex.split(command.text)
    if words[0] in SHELL_HELPERS:
        return "shell", "run with bash in the working directory of the commands after it"
    if text.startswith("python3 -m venv .venv"):
        return "skip", "creates the venv: CI runs it, and it was run by hand from a fresh clone"
    if text.startswith(".venv/bin/pip install "):
        return "install", "not re-run; the extras it names exist"
    if text.startswith((".venv/bin/ruff ", ".venv/bin/python -m pytest")):
        if "python3 -m venv" in command.line:  # README's test command
            return "ci", ".ci/run runs its line verbatim"
        return "suite", "not re-run (the suite runs it); the paths it names exist"
    if not text.startswith(".venv/bin/"):
        return "unclassified", "call the venv's binary (.venv/bin/...), as every README command does"
    app, args = _app(words)
    if app in (*TRAIN_APPS, *COMMAND_APPS, BENCHMARK, LR_FIND) and INFO_FLAGS & set(args):
        return "info", "exit 0 and output"
    if app == "tensorboard":
        return "tensorboard", "the binary exists and --logdir holds event files (no server started)"
    if app == "uv":
        return "lock", "changes the lock files: its flags are checked, the exports by tests/test_packaging.py"
    if app in ("mlflow", "optuna-dashboard"):
        return "viewer", "a web viewer: the binary answers --help (no server started)"
    if app == BENCHMARK:
        if set(_benchmark_sections(args)) <= {"startup"}:
            # The start-up table times fresh interpreters by design (5 commands x startup_runs processes);
            # those 5 commands are README's Performance table, each run in-process here.
            return "compose", "only the start-up table: fresh processes by design"
        return "benchmark", "run without the start-up table, one epoch of each contender"
    if app == LR_FIND:
        return "lr_find", "run in-process, shortened: a 20-step search"
    if app not in (*TRAIN_APPS, *COMMAND_APPS):
        return "unclassified", f"no check knows {app}"
    if command.exit_code:
        return "fails", f"README says it exits with {command.exit_code}"
    if app in COMMAND_APPS:
        return "command", "run in-process against the reference run"
    for arg in args:
        key = _key(arg)
        reason = key and _compose_only_reason(key, arg.split("=", 1)[1].split(",")[0])
        if reason:
            return "compose", reason
    if _value(args, "resume") is not None:
        return "resume", "resumes an interrupted short run"
    return "train", "run in-process, shortened"


COMMANDS = readme_commands(README.read_text())
SUMMARY = {
    "run": {"train", "resume", "info", "fails", "command", "shell", "benchmark", "lr_find"},
    "composed only": {"compose"},
    "checked without running": {"install", "ci", "suite", "tensorboard", "lock", "viewer"},
    "skipped": {"skip"},
}


# --- what the commands run against ---------------------------------------------------------------------


def _set(args: list[str], values: dict[str, str]) -> list[str]:
    """`args` with each key of `values` set to its value: in place where they set it, else appended."""
    done = {_key(a) for a in args} & set(values)
    return [f"{_key(a)}={values[_key(a)]}" if _key(a) in values else a for a in args] + [
        f"{k}={v}" for k, v in values.items() if k not in done
    ]


def _first_values(args: list[str]) -> list[str]:
    """The overrides of `args`, each comma list cut to its first value: what Hydra's compose API takes."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    overrides = [a for a in args if _key(a)]
    parsed = OverridesParser.create().parse_overrides(overrides)
    return [
        f"{o.get_key_element()}={next(iter(o.sweep_string_iterator()))}" if o.is_sweep_override() else text
        for o, text in zip(parsed, overrides, strict=True)
    ]


def shortened(args: list[str], data: Path, outputs: Path) -> tuple[list[str], DictConfig]:
    """A train command's arguments, on the generated data, writing into `outputs`, a few batches long; and
    the config they compose (a sweep's first job, with Hydra's own config)."""
    keys = {_key(a) for a in args}
    forced = {**FORCED, "paths.data_dir": str(data), "paths.log_dir": str(outputs)}
    if "trainer.max_steps" in keys:  # a run measured in steps keeps its max_epochs (often -1)
        del forced["trainer.max_epochs"]
    forced |= {k: v for k, v in IF_SET.items() if k in keys}
    forced |= {k: v for k, v in UNLESS_SET.items() if k not in keys}
    args = _set(args, forced)
    composed = compose_config(_first_values(args))
    present = {k: v for k, v in IF_PRESENT.items() if OmegaConf.select(composed, k) is not None}
    if OmegaConf.select(composed, "data.train_size") is not None:  # a subset (preset's or command's): of 500
        present["data.train_size"] = "200"
    return _set(args, present), composed


def few_jobs(args: list[str], hydra_cfg: DictConfig) -> tuple[list[str], int]:
    """A multirun cut to SWEEP_JOBS jobs: the first comma list (the command's, then its preset's) to its
    first values, every other list to its first value; an Optuna search to two trials (IF_PRESENT).
    Returns the arguments and the number of jobs they run."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    if "n_trials" in hydra_cfg.sweeper:
        return args, int(_value(args, "hydra.sweeper.n_trials") or hydra_cfg.sweeper.n_trials)
    preset = {str(k): str(v) for k, v in (hydra_cfg.sweeper.get("params") or {}).items()}
    args = [*args, *(f"{k}={v}" for k, v in preset.items() if k not in {_key(a) for a in args})]
    parser, out, jobs = OverridesParser.create(), [], 1
    for arg in args:
        override = parser.parse_overrides([arg])[0] if _key(arg) else None
        if override is None or not override.is_sweep_override():
            out.append(arg)
            continue
        values = list(override.sweep_string_iterator())[: SWEEP_JOBS if jobs == 1 else 1]
        out.append(f"{override.get_key_element()}={','.join(values)}")
        jobs *= len(values)
    return out, jobs


def _quietly(main: Callable[[], object], argv: list[str]) -> str:
    """Run a Hydra entry point in-process; its output, or an AssertionError with it if it failed."""
    from hydra.core.global_hydra import GlobalHydra

    out, saved = io.StringIO(), sys.argv
    sys.argv = argv
    GlobalHydra.instance().clear()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            main()
    except SystemExit as exc:
        assert exc.code in (0, None), out.getvalue()[-3000:]
    finally:
        sys.argv = saved
    return out.getvalue()


@pytest.fixture(scope="session")
def readme_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """What README's `../shared/datasets` stands for: generated MNIST and Fashion-MNIST."""
    from experiments.data.synthetic import write_dataset

    root = tmp_path_factory.mktemp("readme_data")
    write_dataset(root / "MNIST" / "raw")
    write_dataset(root / "FashionMNIST" / "raw", seed=1)
    return root


@pytest.fixture(scope="session")
def benchmark_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """scripts/benchmark.py holds out 5,000 training images, as the default run does: 5,256 leave two
    batches of 128."""
    from experiments.data.synthetic import write_dataset

    root = tmp_path_factory.mktemp("benchmark_data")
    write_dataset(root / "MNIST" / "raw", n_train=5256)
    return root


@pytest.fixture(scope="session")
def reference(readme_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`outputs/` with one short completed run (`runs/<time>_readme`) and a one-job sweep (`sweeps/<time>`),
    for the commands that read them."""
    from experiments.train import main

    outputs = tmp_path_factory.mktemp("reference") / "outputs"
    base, _ = shortened([], readme_data, outputs)
    _quietly(main, ["train.py", *base, "run_name=readme"])
    _quietly(main, ["train.py", "-m", *base])
    return outputs


def _interrupted_run(outputs: Path, data: Path) -> None:
    """A short run stopped by SIGTERM after its second step of eight (tests/faults.py): `interrupted`."""
    from experiments.train import main

    args, _ = shortened(["data.batch_size=32", "trainer.limit_train_batches=8", "run_name=interrupted"], data, outputs)
    fault = "+callbacks.fault"
    args += [f"{fault}._target_=tests.faults.SignalAt", f"{fault}.epoch=0", f"{fault}.batch=0"]
    args += [f"{fault}.signal_name=SIGTERM", f"{fault}.marker={outputs.parent / 'fired'}"]
    with pytest.raises(AssertionError, match="interrupted: SIGTERM"):
        _quietly(main, ["train.py", *args])


def _substitute(text: str, cwd: Path, data: Path) -> str:
    """README's placeholders made real: the data, and the one run or sweep under `cwd/outputs`."""
    text = text.replace(README_DATA, str(data))
    for placeholder, folder in (("<run dir>", "runs"), ("<run>", "runs"), ("<time>", "sweeps")):
        if placeholder in text:
            found = list((cwd / "outputs" / folder).iterdir())
            assert len(found) == 1, f"{placeholder}: no one run in {cwd / 'outputs' / folder} for {text}"
            text = text.replace(placeholder, f"outputs/runs/{found[0].name}" if " " in placeholder else found[0].name)
    text = text.replace("<p>", "readme_test")  # a SLURM partition
    assert not re.search(r"<[\w ]+>", text), f"a placeholder this test does not know: {text}"
    return text


def _run_shell(texts: list[str], cwd: Path) -> None:
    for text in texts:
        done = subprocess.run(["bash", "-c", text], cwd=cwd, capture_output=True, text=True, timeout=30)
        assert done.returncode == 0, f"{text}: {done.stderr}"


@functools.cache
def _entry_point(app: str) -> Callable[[], object]:
    """The function a program's console script (or script file) calls."""
    from importlib import import_module

    if app in TRAIN_APPS:
        return import_module("experiments.train").main
    if app in COMMAND_APPS:
        return import_module(f"experiments.commands.{COMMAND_APPS[app]}").main
    if app == LR_FIND:
        return import_module("experiments.commands.lr_find").main
    spec = importlib.util.spec_from_file_location("readme_" + Path(app).stem, REPO_ROOT / app)
    assert spec and spec.loader, app
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


def _only(folder: Path) -> Path:
    found = list(folder.iterdir()) if folder.is_dir() else []
    assert len(found) == 1, f"{folder}: {found}"
    return found[0]


def _completed(run_dir: Path) -> None:
    assert json.loads((run_dir / "run.json").read_text())["status"] == "completed", run_dir


def _write_digits(folder: Path, count: int = 3) -> None:
    import numpy as np
    from PIL import Image

    from experiments.data.synthetic import learnable_images

    folder.mkdir(parents=True, exist_ok=True)
    for i, image in enumerate(learnable_images(np.arange(count), np.random.default_rng(0))):
        Image.fromarray(image).save(folder / f"{i}.png")


# --- the tests -----------------------------------------------------------------------------------------


def test_readme_has_the_commands_this_test_knows() -> None:
    """The extraction finds README's commands (a broken fence or table would hide them)."""
    texts = {c.text for c in COMMANDS}
    assert ".venv/bin/python train.py" in texts and ".venv/bin/experiments-evaluate --help" in texts
    assert {".venv/bin/python train.py model.hiden=3", ".venv/bin/python train.py --help"} <= texts
    assert len(COMMANDS) > 40


def test_every_readme_command_is_classified() -> None:
    unknown = [f"{c.text}: {classify(c)[1]}" for c in COMMANDS if classify(c)[0] == "unclassified"]
    assert not unknown, "README commands no check knows:\n" + "\n".join(unknown)


@pytest.fixture(autouse=True)
def _restore_torch_flags() -> Iterator[None]:
    """`trainer.deterministic=true` switches torch's deterministic algorithms on for the whole process."""
    import torch

    deterministic = torch.are_deterministic_algorithms_enabled()
    yield
    torch.use_deterministic_algorithms(deterministic)


@dataclass
class Case:
    """One README command, ready to check: its program and arguments with the placeholders made real."""

    command: Command
    app: str
    args: list[str]
    cwd: Path
    data: Path
    request: pytest.FixtureRequest
    capsys: pytest.CaptureFixture[str]

    @property
    def paths(self) -> dict[str, str]:
        """The generated data, and a fresh outputs folder (or the one a resumed run lives in)."""
        return {"paths.data_dir": str(self.data), "paths.log_dir": str(self.cwd / "outputs")}

    def call(self, args: list[str]) -> CliResult:
        return call_main(_entry_point(self.app), [self.app, *args], self.capsys)


@pytest.mark.parametrize("command", COMMANDS, ids=[c.id for c in COMMANDS])
def test_readme_command(
    command: Command,
    request: pytest.FixtureRequest,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    kind, why = classify(command)
    if kind == "skip":
        pytest.skip(why)
    assert kind != "unclassified", why
    program = shlex.split(command.text)[0]
    if program.startswith(".venv/bin/"):
        assert (VENV_BIN / program.removeprefix(".venv/bin/")).is_file(), f"{program} is not installed"
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HYDRA_FULL_ERROR", "0")
    data: Path = request.getfixturevalue("readme_data")
    _run_shell([t for t in command.before if t.split()[0] in SHELL_HELPERS], tmp_path)
    if kind == "resume":
        _interrupted_run(tmp_path / "outputs", data)
    elif kind in ("command", "tensorboard") or re.search(r"<(run|run dir|time)>", command.text):
        (tmp_path / "outputs").symlink_to(request.getfixturevalue("reference"))
    app, args = _app(shlex.split(_substitute(command.text, tmp_path, data)))
    CHECKS[kind](Case(command, app, args, tmp_path, data, request, capsys))


def check_shell(case: Case) -> None:
    _run_shell([case.command.text], case.cwd)


def check_install(case: Case) -> None:
    """Local targets name extras pyproject.toml has; `-r` files are uv.lock's exports (tests/test_packaging.py
    checks that); a package pinned by name is pinned to the locked version."""
    import tomllib

    root = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    extras = set(root["project"].get("optional-dependencies", {}))
    locked = {p["name"]: p["version"] for p in tomllib.loads((REPO_ROOT / "uv.lock").read_text())["package"]}
    args = case.args[1:]
    valued = {"-r", "--index-url", "--extra-index-url"}  # options followed by their value
    values = [args[i + 1] for i, a in enumerate(args[:-1]) if a in valued]
    locks = [args[i + 1] for i, a in enumerate(args[:-1]) if a == "-r"]
    assert all((REPO_ROOT / lock).is_file() and lock.endswith(".lock") for lock in locks), locks
    for target in (a for a in args if not a.startswith("-") and a not in values):
        if "==" in target:  # a package by name, e.g. torch from another index
            name, _, version = target.partition("==")
            assert locked.get(name) == version, f"{target}: uv.lock has {name} {locked.get(name)}"
            continue
        path, _, wanted = target.partition("[")
        assert (REPO_ROOT / path / "pyproject.toml").is_file(), target
        missing = {e.strip() for e in wanted.rstrip("]").split(",") if e.strip()} - extras
        assert not missing, f"{target}: pyproject.toml has no extra {missing}"  # pip would only warn


def check_lock(case: Case) -> None:
    """`uv lock`/`uv export` change the lock files: not run here. The subcommand and its flags exist (uv
    rejects unknown ones), and the exports it writes are the ones tests/test_packaging.py checks."""
    help_text = subprocess.run([str(VENV_BIN / "uv"), case.args[0], "--help"], capture_output=True, text=True)
    assert help_text.returncode == 0, help_text.stderr
    for flag in (a.split("=")[0] for a in case.args[1:] if a.startswith("--")):
        assert flag in help_text.stdout, f"uv {case.args[0]} has no {flag}"
    if "-o" in case.args:
        assert (REPO_ROOT / case.args[case.args.index("-o") + 1]).is_file()


def check_viewer(case: Case) -> None:
    """A web viewer (mlflow ui, optuna-dashboard): the binary exists and answers --help; no server started.
    What it opens is made by tests/test_mlflow.py and tests/test_sweeps.py."""
    done = subprocess.run(
        [str(VENV_BIN / case.app), *case.args[: 1 if case.app == "mlflow" else 0], "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr


def check_ci(case: Case) -> None:
    lines = [line.strip() for line in (REPO_ROOT / ".ci" / "run").read_text().splitlines()]
    assert case.command.line in lines, f".ci/run does not run README's line verbatim: {case.command.line}"


def check_suite(case: Case) -> None:
    paths = [a.split("::")[0] for a in case.args if not a.startswith("-") and a not in ("pytest", "check")]
    assert paths and all((REPO_ROOT / p).exists() for p in paths), paths


def check_tensorboard(case: Case) -> None:
    import tensorboard.main  # noqa: F401  -- what the binary runs

    logdir = case.cwd / case.args[case.args.index("--logdir") + 1]
    assert any(logdir.rglob("events.out.tfevents.*")), f"no TensorBoard events under {logdir}"


def check_info(case: Case) -> None:
    result = case.call(case.args)
    assert result.code == 0 and result.out.strip(), result.err
    if "--cfg" in case.args:
        assert isinstance(yaml.safe_load(result.out), dict), result.out


def check_fails(case: Case) -> None:
    """A mistake README shows on purpose: its exit code, one readable message naming the key, no run left.
    Not composed first (composing refuses the mistake); were it accepted, the run would still be short."""
    outputs = case.cwd / "outputs"
    train = case.app in TRAIN_APPS
    result = case.call(_set(case.args, {**FORCED, **UNLESS_SET, **case.paths}) if train else case.args)
    assert result.code == case.command.exit_code, result.err
    assert len(result.error_lines) <= 1 and "Traceback" not in result.err, result.err
    assert any(arg.split("=", 1)[0].lstrip("+~") in result.err for arg in case.args if _key(arg)), result.err
    assert not train or not (outputs / "runs").is_dir() or not any((outputs / "runs").iterdir())


def check_train(case: Case) -> None:
    from hydra.types import RunMode

    args, composed = shortened(case.args, case.data, case.cwd / "outputs")
    multirun = "-m" in args or "--multirun" in args or composed.hydra.mode == RunMode.MULTIRUN
    if multirun:
        args, jobs = few_jobs(args, composed.hydra)
        if _value(args, "hydra/launcher") is None:  # in this process, one after another (test_parallel: side by side)
            # The parallel launcher's own keys (hydra.launcher.n_jobs) mean nothing to the basic one.
            args = [*[a for a in args if not a.startswith("hydra.launcher.")], "hydra/launcher=basic"]
    result = case.call(args)
    assert result.code == 0, result.err[-3000:]
    if multirun:
        from experiments.sweeps.results import COMPLETED, collect_jobs

        sweep_dir = _only(case.cwd / "outputs" / "sweeps")
        assert (sweep_dir / "summary.md").is_file()
        assert [job.status for job in collect_jobs(sweep_dir)] == [COMPLETED] * jobs
    else:
        _completed(_only(case.cwd / "outputs" / "runs"))


def check_resume(case: Case) -> None:
    outputs = case.cwd / "outputs"
    run_dir = _only(outputs / "runs")
    # Only what a resume may change (paths): the run's saved config is already the short one.
    result = case.call(_set(case.args, case.paths))
    assert result.code == 0, result.err[-3000:]
    assert _only(outputs / "runs") == run_dir, "resumed in place"
    _completed(run_dir)


def check_compose(case: Case) -> None:
    import hydra
    from hydra import compose, initialize_config_dir

    from experiments.config import schema
    from experiments.train import CONFIG_DIR

    if case.app == BENCHMARK:
        with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
            cfg = compose(config_name="benchmark", overrides=case.args)
        assert set(cfg.sections) <= {"startup", "epoch", "throughput", "sweep", "fixed_cost"}, cfg.sections
        return
    overrides = _first_values(case.args)
    # Composed only, never run: no Hydra run directory exists for ${hydra:runtime.output_dir} to name.
    cfg = compose_config([*overrides, "paths.output_dir=/tmp/composed-only"])
    if "launcher" in cfg.hydra:
        hydra.utils.get_class(cfg.hydra.launcher._target_)  # the launcher's plugin is installed
    schema.validate(OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"]), overrides)


def check_command(case: Case) -> None:
    inputs, csv, sweep = (_value(case.args, key) for key in ("inputs", "csv", "sweep_dir"))
    if inputs:
        _write_digits(case.cwd / inputs)
    if sweep:
        (case.cwd / sweep / "summary.md").unlink()
    result = case.call(case.args)
    assert result.code == 0 and result.out.strip(), result.err[-3000:]
    if csv:
        assert len((case.cwd / csv).read_text().splitlines()) == 1 + 3, "a header and one row per image"
    if sweep:
        assert (case.cwd / sweep / "summary.md").is_file(), "the report is rebuilt"


def check_benchmark(case: Case) -> None:
    values = {**BENCHMARK_SHORT, "out": str(case.cwd / "benchmark")}
    values["sections"] = f"[{','.join(s for s in _benchmark_sections(case.args) if s != 'startup')}]"
    if _value(case.args, "data_dir"):
        values["data_dir"] = str(case.request.getfixturevalue("benchmark_data"))
    result = case.call(_set(case.args, values))
    assert result.code == 0, result.err[-3000:]
    assert (case.cwd / "benchmark" / "benchmark.md").read_text().strip()


def check_lr_find(case: Case) -> None:
    values = {**LR_FIND_SHORT, **case.paths}
    values |= {k: v for k, v in UNLESS_SET.items() if k == "trainer.accelerator" and k not in map(_key, case.args)}
    result = case.call(_set(case.args, values))
    assert result.code == 0, result.err[-3000:]
    assert "Suggested learning rate:" in result.out, result.out
    assert (_only(case.cwd / "outputs" / "lr_find") / "lr_find.png").is_file()


CHECKS: dict[str, Callable[[Case], None]] = {
    "shell": check_shell,
    "install": check_install,
    "ci": check_ci,
    "lock": check_lock,
    "viewer": check_viewer,
    "suite": check_suite,
    "tensorboard": check_tensorboard,
    "info": check_info,
    "fails": check_fails,
    "train": check_train,
    "resume": check_resume,
    "compose": check_compose,
    "command": check_command,
    "benchmark": check_benchmark,
    "lr_find": check_lr_find,
}


if __name__ == "__main__":
    counts: dict[str, int] = {}
    for command in COMMANDS:
        kind, why = classify(command)
        group = next((g for g, kinds in SUMMARY.items() if kind in kinds), kind)
        counts[group] = counts.get(group, 0) + 1
        print(f"{kind:12} {command.id}  ({why})")
    print(f"{len(COMMANDS)} commands: " + ", ".join(f"{n} {g}" for g, n in counts.items()))
