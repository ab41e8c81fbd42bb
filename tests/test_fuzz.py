"""Fuzz: hundreds of generated bad inputs, each held to the promise of README "Errors".

The promise: a non-zero exit, exactly one `error:` line, no traceback, and nothing new under
paths.log_dir unless a run had started (then it is marked failed); a bad value is refused, never trained
with. Mistakes in Hydra's own domain (override grammar, unknown options, a value of the wrong type) get
Hydra's message instead of an `error:` line; it names the input and carries no traceback.

The values are generated from the schema itself (experiments.config.schema): every numeric, boolean,
list and enum-like key of every option of every config group gets NaN, infinities, negative, huge and
wrong-type values. They go through Hydra's override parser and OmegaConf's typed merge, as on the command
line, then through `schema.validate` (a sample is composed by Hydra too, to keep that path honest). Paths,
environments (read-only, full, a file where a folder goes), run names, checkpoints, the other commands and
the benchmark's config run in-process through the real entry points; a few run in real processes.
"""

from __future__ import annotations

import collections
import copy
import errno
import json
import os
import shutil
import subprocess
import sys
import typing
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path
from typing import Any

import lightning as L
import pytest
from hydra import compose, initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import ConfigCompositionException, HydraException
from lightning.pytorch.callbacks import Callback
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from experiments.config import schema
from experiments.errors import ConfigError
from experiments.train import CONFIG_DIR
from tests.conftest import REPO_ROOT, CliResult, call_main

# --- values: generated from the schema --------------------------------------------------------------

# The groups whose options each bring a schema; the trainer's other options (cpu, gpu, ddp) share its schema.
GROUPS = ("data", "model", "model/optimizer", "model/scheduler", "model/loss")
FLOAT_BAD = ("nan", "-inf", "-1e300", "1e300", "abc")
INT_BAD = ("-2", "abc")
BOOL_BAD = ("maybe", "yes")
ENUM_BAD = ("bogus",)
INT_LIST_BAD = ("[]", "[0]", "[abc]")
FLOAT_LIST_BAD = ("[nan,0.9]", "[0.9,inf]", "[-0.1,0.9]", "[0.9]")
# Keys typed `Any` in the schema (Lightning's unions): what each must refuse.
ANY_BAD = {
    "devices": ("-2", "0", "[]", "''"),
    "precision": ("1.5",),
    "limit_train_batches": ("-1", "1.5", "nan"),
    "limit_val_batches": ("-1", "1.5", "nan"),
    "limit_test_batches": ("-1", "1.5", "nan"),
    "val_check_interval": ("0", "1.5", "nan", "1h"),
    "fast_dev_run": ("-1", "1.5"),
    "overfit_batches": ("-1", "2.5", "nan"),
    "deterministic": ("maybe", "2"),
}
ENUMS = ("dataset", "loader", "activation", "net", "optimized_metric", "gradient_clip_algorithm", "device", "pruner")
OTHER_STRINGS = {"max_time": ("1h", "00:01:00", "-1:00:00:00")}
# Generated values that are valid on purpose: Lightning clips gradients at any finite norm.
VALID = {"trainer.gradient_clip_val=1e300"}


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (Path(CONFIG_DIR) / group).glob("*.yaml") if p.stem != "none")


def bad_values(name: str, hint: Any) -> tuple[str, ...]:
    """The values of a schema field that must be refused, by its type."""
    if name in ANY_BAD:
        return ANY_BAD[name]
    if name in ENUMS:
        return ENUM_BAD
    if name in OTHER_STRINGS:
        return OTHER_STRINGS[name]
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    kind = args[0] if len(args) == 1 and typing.get_origin(hint) is not list else hint
    if kind is bool:
        return BOOL_BAD
    if kind is int:
        return INT_BAD
    if kind is float:
        return FLOAT_BAD
    if typing.get_origin(kind) is list and typing.get_args(kind) == (int,):
        return INT_LIST_BAD
    if typing.get_origin(kind) is list and typing.get_args(kind) == (float,):
        return FLOAT_LIST_BAD
    return ()  # paths, names, Lightning's registries (accelerator, strategy, profiler), groups: below


# Keys with no generated values: paths and names (the run cases below), Lightning's registries (unknown
# names are Lightning's to refuse when it builds the Trainer) and groups (the last value cases).
NOT_GENERATED = {"run_name", "ckpt_path", "resume", "data_dir", "log_dir", "cache_dir", "output_dir"}
NOT_GENERATED |= {"search_dirs", "default_root_dir", "accelerator", "strategy", "profiler"}
NOT_GENERATED |= {"data", "model", "trainer", "logger", "callbacks", "paths", "optimizer", "scheduler", "loss"}
NOT_GENERATED |= {"hparams_search"}  # a group too: its schema's keys are generated through hparams_search=optuna


def targets() -> list[tuple[tuple[str, ...], str, type[schema.Schema]]]:
    """(group selection, key, schema) of one option per schema of every group."""
    found: list[tuple[tuple[str, ...], str, type[schema.Schema]]] = [
        ((), "", schema.TrainConfig),
        ((), "trainer", schema.TrainerConfig),
        ((), "paths", schema.PathsConfig),
        (("hparams_search=optuna",), "hparams_search", schema.SearchConfig),
    ]
    for group in GROUPS:
        key = group.replace("/", ".")
        for option in options(group):
            node_schema = schema.SCHEMAS["data" if group == "data" else "adam" if option == "adamw" else option]
            if all(node_schema is not seen for _, _, seen in found):  # one option per schema (adam, adamw)
                found.append(((f"{group}={option}",), key, node_schema))
    return found


def value_cases() -> list[tuple[tuple[str, ...], str]]:
    """(group selection, override) for every bad value of every key of every option's schema."""
    cases = []
    for selection, key, node_schema in targets():
        hints = typing.get_type_hints(node_schema)
        for field in fields(node_schema):
            if field.name.startswith("_"):
                continue
            full = f"{key}.{field.name}" if key else field.name
            for value in bad_values(field.name, hints[field.name]):
                if f"{full}={value}" not in VALID:
                    cases.append((selection, f"{full}={value}"))
    # Keys that are not in the schema, in every node that has one, and values typed in place of a group.
    for selection, key, node_schema in targets():
        if not node_schema.OPEN:  # the trainer takes any Lightning argument: Lightning refuses `+trainer.bogus`
            cases.append((selection, f"+{key + '.' if key else ''}bogus=1"))
    for group in ("model.optimizer", "model.scheduler", "model.loss", "logger", "callbacks"):
        cases.append(((), f"{group}=abc" if group.startswith("model") else f"+{group}.bogus=1"))
    cases += [
        ((), "model.hiden=3"),
        ((), "+model.optimizer.lr=0.1"),  # `+` on a key that exists
        (("debug=fast",), "trainer.fast_dev_run=-1"),
        (("debug=overfit",), "trainer.overfit_batches=-1"),
        (("debug=limit",), "trainer.limit_train_batches=-5"),
        (("regularization=l1",), "model.l1=nan"),
        (("regularization=l2",), "model.optimizer.weight_decay=inf"),
        (("regularization=dropout",), "model.dropout=1.5"),
        (("experiment=mnist_adam",), "model.optimizer.betas=[0.9,2]"),
        (("experiment=mnist_cnn",), "model.channels=[6,0]"),
        (("experiment=fashion_mnist",), "data.dataset=cifar10"),
        (("model/scheduler=cosine",), "model.scheduler.eta_min=5"),  # above the learning rate it decays from
        ((), "model.num_classes=5"),  # the datasets have 10
        ((), "model.input_size=100"),  # 28x28 images
        ((), "trainer.min_epochs=20"),  # above max_epochs
        ((), "test=false optimized_metric=test/acc"),
    ]
    return cases


VALUE_CASES = value_cases()

# Group options that do not exist, and options that cannot go together: Hydra refuses them while composing.
COMPOSE_CASES = [
    *(
        [f"{group}=bogus"]
        for group in (
            *GROUPS,
            "trainer",
            "logger",
            "callbacks",
            "paths",
            "debug",
            "regularization",
            "experiment",
            "hparams_search",
        )
    ),
    ["model=linear", "regularization=dropout"],  # the linear model has no dropout
    ["model=cnn", "model.input_size=784"],  # nor does the CNN take an input size
    ["seed=abc"],
    ["seed=[1,2]"],
    ["run_name=[a"],  # the override grammar: a name with a bracket needs quotes
]


@pytest.fixture(scope="module")
def base_configs() -> Callable[[tuple[str, ...]], DictConfig]:
    """The composed config of a group selection, composed once per selection (composing is the slow part)."""
    cache: dict[tuple[str, ...], DictConfig] = {}

    def get(selection: tuple[str, ...]) -> DictConfig:
        if selection not in cache:
            with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
                cache[selection] = compose(config_name="train", overrides=["paths.output_dir=/tmp/run", *selection])
        return cache[selection]

    return get


PARSER = OverridesParser.create()


def apply(cfg: DictConfig, override: str) -> None:
    """An override as Hydra applies it to the composed config: its parser, then OmegaConf's typed merge
    (`+` adds a key)."""
    parsed = PARSER.parse_override(override)
    key = parsed.key_or_group
    if parsed.is_add() and OmegaConf.select(cfg, key, default=None) is not None:
        raise ConfigCompositionException(f"Could not append to config. An item is already at '{key}'.")
    OmegaConf.update(cfg, key, parsed.value(), merge=True, force_add=parsed.is_add())


def verdict(base: DictConfig, overrides: list[str]) -> tuple[str, str]:
    """('refused', message), ('accepted', '') or ('crashed', what): a crash would be a traceback."""
    cfg = copy.deepcopy(base)
    try:
        for override in overrides:
            apply(cfg, override)
    except (OmegaConfBaseException, HydraException) as exc:
        return "refused", str(exc)
    try:
        schema.validate(cfg, overrides)
    except ConfigError as exc:
        return "refused", str(exc)
    except Exception as exc:  # the point: anything else is a bug in the validation
        return "crashed", f"{type(exc).__name__}: {exc}"
    return "accepted", ""


def names_the_key(override: str, message: str) -> bool:
    key = override.lstrip("+").split("=", 1)[0]
    return key in message or key.rsplit(".", 1)[-1] in message


def test_the_generator_covers_every_key_of_every_schema() -> None:
    """A key added to a schema gets bad values generated, or is named in NOT_GENERATED with a reason."""
    covered = {node_schema for _, _, node_schema in targets()}
    # BENCHMARK_CASES and LR_FIND_CASES below; LRFindConfig is TrainConfig and LRFinderConfig.
    assert covered == set(schema.SCHEMAS.values()) - {schema.BenchmarkConfig, schema.LRFindConfig}
    for _, _, node_schema in targets():
        hints = typing.get_type_hints(node_schema)
        for field in fields(node_schema):
            if not field.name.startswith("_") and not bad_values(field.name, hints[field.name]):
                assert field.name in NOT_GENERATED, f"{node_schema.__name__}.{field.name}: no bad values"


def test_every_generated_value_is_refused_naming_its_key(base_configs) -> None:
    accepted, crashed, unnamed = [], [], []
    for selection, override in VALUE_CASES:
        overrides = override.split()
        outcome, message = verdict(base_configs(selection), overrides)
        case = f"{' '.join(selection)} {override}".strip()
        if outcome == "accepted":
            accepted.append(case)
        elif outcome == "crashed":
            crashed.append(f"{case}: {message}")
        elif not names_the_key(overrides[-1], message):
            unnamed.append(f"{case}: {message}")
    print(f"\nvalues: {len(VALUE_CASES)} generated, {len(accepted)} silently accepted, {len(crashed)} crashed")
    assert (accepted, crashed, unnamed) == ([], [], [])


def test_the_fast_path_agrees_with_hydras_compose(base_configs) -> None:
    """Every 40th value case composed by Hydra itself: refused there too, naming the key."""
    sample = VALUE_CASES[::40]
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        for selection, override in sample:
            overrides = ["paths.output_dir=/tmp/run", *selection, *override.split()]
            try:
                cfg = compose(config_name="train", overrides=overrides)
                schema.validate(cfg, override.split())
            except (HydraException, OmegaConfBaseException, ConfigError) as exc:
                assert names_the_key(override.split()[-1], str(exc)), (override, exc)
            else:
                pytest.fail(f"Hydra composed and validated {selection} {override}")


def test_unknown_options_and_grammar_are_refused_while_composing() -> None:
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        for overrides in COMPOSE_CASES:
            with pytest.raises((HydraException, OmegaConfBaseException)) as refused:
                schema.validate(compose(config_name="train", overrides=["paths.output_dir=/tmp/run", *overrides]))
            message = str(refused.value)
            assert "Traceback" not in message
            named = [o.split("=")[0].rsplit(".", 1)[-1] for o in overrides] + [o.split("=")[1] for o in overrides]
            assert any(name in message for name in named), message


# --- the benchmark script's config (conf/benchmark.yaml) -------------------------------------------

BENCHMARK_CASES = [
    "device=tpu",
    "device=''",
    "sections=[]",
    "sections=[speed]",
    "sections=startup",
    "startup_runs=0",
    "epochs=0",
    "epochs=abc",
    "warmup=-1",
    "rounds=0",
    "batch_size=0",
    "batch_size=nan",
    "epoch_batch_sizes=[]",
    "epoch_batch_sizes=[64,0]",
    "+bogus=1",
]


def test_benchmark_config_mistakes_are_refused() -> None:
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        base = compose(config_name="benchmark")
    schema.validate(base)  # as shipped
    verdicts = {case: verdict(base, [case]) for case in BENCHMARK_CASES}
    assert {c: v for c, v in verdicts.items() if v[0] != "refused" or not names_the_key(c, v[1])} == {}


# --- experiments-lr-find's config (conf/lr_find.yaml: train.yaml and lr_find.*) -------------------------


def lr_find_cases() -> list[str]:
    """Every bad value of every key of LRFinderConfig, generated as for the train config's schemas."""
    hints = typing.get_type_hints(schema.LRFinderConfig)
    cases = [
        f"lr_find.{f.name}={value}"
        for f in fields(schema.LRFinderConfig)
        for value in (("bogus",) if f.name == "mode" else bad_values(f.name, hints[f.name]))
    ]
    assert all(bad_values(f.name, hints[f.name]) or f.name == "mode" for f in fields(schema.LRFinderConfig))
    # Valid on purpose: a threshold no loss reaches never stops the search early, as null does.
    cases.remove("lr_find.early_stop_threshold=1e300")
    cases += ["lr_find.max_lr=1e-7", "lr_find.num_training=19", "lr_find.early_stop_threshold=0.5", "+lr_find.x=1"]
    return cases


LR_FIND_CASES = lr_find_cases()


def test_lr_find_config_mistakes_are_refused() -> None:
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        base = compose(config_name="lr_find", overrides=["paths.output_dir=/tmp/run"])
    schema.validate(base)  # as shipped
    verdicts = {case: verdict(base, [case]) for case in LR_FIND_CASES}
    assert {c: v for c, v in verdicts.items() if v[0] != "refused" or not names_the_key(c, v[1])} == {}


# --- runs: paths, environments, names, checkpoints, failures during a run ---------------------------

QUICK = ["trainer.max_epochs=1", "trainer.limit_train_batches=2", "trainer.limit_val_batches=1", "test=false"]
QUICK += ["test_figures=0", "data.val_size=100", "data.batch_size=16", "callbacks.progress_bar.refresh_rate=0"]
QUICK += ["trainer.enable_model_summary=false", "trainer.accelerator=cpu"]


class RaiseAt(Callback):
    """Test-only: fails the first training step as a bug (`bug`) or a full disk (`full`) would."""

    def __init__(self, kind: str) -> None:
        self.kind = kind

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        if self.kind == "bug":
            raise ZeroDivisionError("injected bug")
        target = Path(trainer.default_root_dir) / "checkpoints" / "last.ckpt"
        target.parent.mkdir(exist_ok=True)
        target.write_bytes(b"PK\x03\x04 half a checkpoint")  # what a write cut short by a full disk leaves
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(target))


def fault(kind: str) -> list[str]:
    return [f"+callbacks.fault._target_={__name__}.RaiseAt", f"+callbacks.fault.kind={kind}"]


def run_dirs(log_dir: Path) -> set[Path]:
    return {p for p in (log_dir / "runs").glob("*")} if (log_dir / "runs").is_dir() else set()


def broken_promises(result: CliResult, new_dirs: set[Path], expect: str) -> list[str]:
    """What `result` breaks of the promise; expect is `refused` (no run directory), `failed` (a started run,
    kept and marked failed) or `accepted` (a run that completes, inside the log dir)."""
    broken = []
    if "Traceback" in result.out + result.err:
        broken.append("a traceback")
    if expect == "accepted":
        if result.code != 0:
            broken.append(f"exit {result.code}: {result.err.strip()[-300:]}")
        return broken
    if result.code == 0:
        broken.append("exit status 0")
    if len(result.error_lines) != 1:
        broken.append(f"{len(result.error_lines)} error lines: {result.err.strip()[-300:]}")
    for run_dir in new_dirs:
        record = run_dir / "run.json"
        status = json.loads(record.read_text()).get("status") if record.is_file() else None
        if expect == "refused" or status != "failed":
            broken.append(f"orphan run directory {run_dir.name} (run.json status {status})")
    if expect == "failed" and not new_dirs:
        broken.append("the started run's directory is gone")
    return broken


@pytest.fixture
def train_cli(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Callable[..., CliResult]:
    from experiments.train import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HYDRA_FULL_ERROR", "0")
    return lambda *overrides: call_main(main, ["train.py", *overrides], capsys)


DiskUsage = collections.namedtuple("DiskUsage", "total used free")  # what shutil.disk_usage returns


def fake_statvfs(read_only: Path) -> Callable[[Any], Any]:
    real = os.statvfs

    def statvfs(path: Any) -> Any:
        result = real(path)
        if Path(path) == read_only:
            return os.statvfs_result((*result[:8], result.f_flag | os.ST_RDONLY, result.f_namemax))
        return result

    return statvfs


RUN_CASE_COUNT = 19
ACCEPTED = ""  # the expected error line of a case that must run (inside the log dir)


def run_cases(tmp: Path, mnist_dir: Path, checkpoint: Path) -> list[tuple[str, list[str], dict[str, Any], str]]:
    """(name, overrides, os-level fakes, expected outcome). Fakes stand in for what root cannot see: a
    read-only file system, a folder without write permission, a full disk."""
    logs, a_file = tmp / "outputs", tmp / "a_file.txt"
    data = f"paths.data_dir={mnist_dir}"
    log_dir = f"paths.log_dir={logs}"
    (tmp / "ro").mkdir()
    (tmp / "loop").symlink_to(tmp / "loop")
    full = tmp / "full"
    full.mkdir()
    ok = [data, log_dir, *QUICK]
    return [
        ("data_dir missing", [f"paths.data_dir={tmp / 'nowhere'}", log_dir, *QUICK], {}, "paths.data_dir"),
        ("data_dir a file", [f"paths.data_dir={a_file}", log_dir, *QUICK], {}, "a_file.txt"),
        ("log_dir a file", [data, f"paths.log_dir={a_file}", *QUICK], {}, "it is a file, not a folder"),
        ("log_dir inside a file", [data, f"paths.log_dir={a_file / 'logs'}", *QUICK], {}, "is inside"),
        ("log_dir a link loop", [data, f"paths.log_dir={tmp / 'loop'}", *QUICK], {}, "symbolic link"),
        (
            "log_dir read-only",
            [data, f"paths.log_dir={tmp / 'ro' / 'logs'}", *QUICK],
            {"statvfs": fake_statvfs(tmp / "ro")},
            "read-only file system",
        ),
        (
            "log_dir not writable",
            [data, f"paths.log_dir={tmp / 'ro' / 'logs'}", *QUICK],
            {"access": lambda path, mode, **kw: Path(path) != tmp / "ro"},
            "not writable for you",
        ),
        (
            "log_dir full",
            [data, f"paths.log_dir={full}", *QUICK],
            {"disk_usage": lambda path: DiskUsage(1 << 30, (1 << 30) - 4096, 4096)},
            "is full",
        ),
        ("run_name with a slash", [*ok, "run_name=a/../../b", "train=false"], {}, ACCEPTED),
        ("run_name ..", [*ok, "run_name=..", "train=false"], {}, ACCEPTED),
        ("run_name with a control character", [*ok, "run_name='a\\0b\x01'", "train=false"], {}, ACCEPTED),
        # Names are cut to fit, by bytes (experiments.config.names); a folder name too long is refused.
        ("run_name long non-ASCII", [*ok, "run_name='" + "é" * 200 + "'", "train=false"], {}, ACCEPTED),
        ("log_dir with a 300-byte name", [data, f"paths.log_dir={tmp / ('d' * 300)}", *QUICK], {}, "bytes"),
        ("ckpt_path missing", [*ok, f"ckpt_path={tmp / 'none.ckpt'}"], {}, "none.ckpt"),
        ("ckpt_path a folder", [*ok, f"ckpt_path={tmp}"], {}, "ckpt_path"),
        ("ckpt_path a text file", [*ok, f"ckpt_path={a_file}"], {}, "a_file.txt"),
        ("ckpt_path of another model", [*ok, f"ckpt_path={checkpoint}"], {}, "tiny.ckpt"),
        ("resume a missing folder", [*ok, f"resume={tmp / 'nowhere'}"], {}, "resume="),
        ("an object with an unknown argument", [*ok, "+callbacks.model_checkpoint.bogus=1"], {}, "bogus"),
    ]


def test_runs_keep_the_promise(
    train_cli, tmp_path: Path, mnist_dir: Path, tiny_checkpoint: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "a_file.txt").write_text("not a folder\n")
    cases = run_cases(tmp_path, mnist_dir, tiny_checkpoint)
    assert len(cases) == RUN_CASE_COUNT
    logs, broken, tracebacks, orphans = tmp_path / "outputs", {}, 0, 0
    for name, overrides, fakes, named in cases:
        before = run_dirs(logs)
        with monkeypatch.context() as patch:
            for attribute, fake in fakes.items():
                patch.setattr(shutil if attribute == "disk_usage" else os, attribute, fake)
            result = train_cli(*overrides)
        new = run_dirs(logs) - before
        problems = broken_promises(result, new, "accepted" if named == ACCEPTED else "refused")
        if named == ACCEPTED:
            problems += [f"{d} is outside {logs / 'runs'}" for d in new if d.resolve().parent != logs / "runs"]
            problems += [] if len(new) == 1 else [f"{len(new)} run directories"]
            problems += [f"{d.name} is longer than a file name may be" for d in new if len(d.name.encode()) > 255]
        elif not any(named in line for line in result.error_lines):
            problems.append(f"the error line does not say {named!r}: {result.error_lines}")
        tracebacks += any("traceback" in p for p in problems)
        orphans += sum("orphan" in p for p in problems)
        if problems:
            broken[name] = problems
    print(f"\nruns: {len(cases)} cases, {tracebacks} tracebacks, {orphans} orphan directories")
    assert broken == {}


def test_a_bug_during_training_leaves_its_traceback_in_train_log(train_cli, tmp_path: Path, mnist_dir: Path) -> None:
    logs = tmp_path / "outputs"
    result = train_cli(f"paths.data_dir={mnist_dir}", f"paths.log_dir={logs}", *QUICK, *fault("bug"))
    assert broken_promises(result, run_dirs(logs), "failed") == []
    (run_dir,) = run_dirs(logs)
    assert result.error_lines == [
        f"error: unexpected ZeroDivisionError: injected bug (traceback in {run_dir.resolve() / 'train.log'}; "
        "HYDRA_FULL_ERROR=1 prints it here)"
    ]
    log = (run_dir / "train.log").read_text()
    assert "Traceback (most recent call last)" in log and "ZeroDivisionError: injected bug" in log
    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "failed" and record["error"] == "unexpected ZeroDivisionError: injected bug"


def test_a_full_disk_during_training_names_the_file_and_the_errno(train_cli, tmp_path: Path, mnist_dir: Path) -> None:
    logs = tmp_path / "outputs"
    result = train_cli(f"paths.data_dir={mnist_dir}", f"paths.log_dir={logs}", *QUICK, *fault("full"))
    assert broken_promises(result, run_dirs(logs), "failed") == []
    (run_dir,) = run_dirs(logs)
    target = run_dir / "checkpoints" / "last.ckpt"
    assert result.error_lines == [
        f"error: {target}: No space left on device (ENOSPC); free some space on that disk, or set "
        "paths.log_dir to a folder on another one"
    ]
    assert json.loads((run_dir / "run.json").read_text())["status"] == "failed"
    assert not target.exists(), "a half-written checkpoint must not stay to be loaded"


def test_a_bug_before_training_leaves_nothing_and_says_how_to_see_it(
    train_cli, tmp_path: Path, mnist_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: Any) -> dict[str, Any]:
        raise KeyError("injected")

    monkeypatch.setattr("experiments.train.run_info", broken)
    logs = tmp_path / "outputs"
    result = train_cli(f"paths.data_dir={mnist_dir}", f"paths.log_dir={logs}", *QUICK)
    assert result.code == 1 and "Traceback" not in result.err
    assert result.error_lines == ["error: unexpected KeyError: 'injected' (HYDRA_FULL_ERROR=1 prints the traceback)"]
    assert run_dirs(logs) == set()
    monkeypatch.setenv("HYDRA_FULL_ERROR", "1")
    with pytest.raises(KeyError, match="injected"):
        train_cli(f"paths.data_dir={mnist_dir}", f"paths.log_dir={logs}", *QUICK)
    assert run_dirs(logs) == set()


# --- the other commands -----------------------------------------------------------------------------

COMMAND_CASES = [
    ("evaluate", []),
    ("evaluate", ["ckpt_path={tmp}/missing.ckpt"]),
    ("evaluate", ["ckpt_path={tmp}/a_file.txt"]),
    ("evaluate", ["ckpt_path={tiny}", "output={tmp}/nowhere/metrics.json"]),
    ("evaluate", ["ckpt_path={tiny}", "output={tmp}"]),
    ("evaluate", ["ckpt_path={tiny}", "output={tmp}/a_file.txt/metrics.json"]),
    ("evaluate", ["ckpt_path={tiny}", "batch_size=0"]),
    ("evaluate", ["ckpt_path={tiny}", "batch_size=abc"]),
    ("evaluate", ["ckpt_path={tiny}", "which=first"]),
    ("evaluate", ["ckpt_path={tiny}", "device=tpu"]),
    ("evaluate", ["ckpt_path={tiny}", "data_dir={tmp}/nowhere"]),
    ("evaluate", ["ckpt=x"]),
    ("predict", []),
    ("predict", ["ckpt_path={tiny}"]),
    ("predict", ["ckpt_path={tiny}", "inputs={tmp}/nowhere.png"]),
    ("predict", ["ckpt_path={tiny}", "inputs={tmp}/empty"]),
    ("predict", ["ckpt_path={tiny}", "inputs={tmp}/a_file.txt"]),
    ("predict", ["ckpt_path={tiny}", "inputs={tmp}/a_file.txt", "csv={tmp}/nowhere/p.csv"]),
    ("predict", ["ckpt_path={tiny}", "inputs={tmp}/a_file.txt", "csv={tmp}"]),
    ("predict", ["ckpt_path={tiny}", "inputs={tmp}/a_file.txt", "csv={tmp}/a_file.txt/p.csv"]),
    *(("predict", ["ckpt_path={tiny}", "inputs={tmp}/a_file.txt", f"top_k={k}"]) for k in ("0", "-1", "abc", "true")),
    ("predict", ["ckpt_path={tiny}", "inputs={tmp}/a_file.txt", "device=tpu"]),
    ("predict", ["ckpt_path={tiny}", "inputs={tmp}/a_file.txt", "which=first"]),
    ("predict", ["ckpt_path={tiny}", "inputs={tmp}/a_file.txt", "invert=maybe"]),
    ("doctor", ["data_dir={tmp}/a_file.txt"]),
    ("doctor", ["bogus=1"]),
    ("compare", []),
    ("compare", ["sweep_dir={tmp}/nowhere"]),
    ("compare", ["sweep_dir={tmp}/a_file.txt"]),
    ("compare", ["sweep_dir={tmp}/empty"]),
]


def test_commands_keep_the_promise(command, tmp_path: Path, tiny_checkpoint: Path) -> None:
    (tmp_path / "a_file.txt").write_text("not an image, a checkpoint or a folder\n")
    (tmp_path / "empty").mkdir()
    values = {"tmp": tmp_path, "tiny": tiny_checkpoint}
    broken = {}
    for name, args in COMMAND_CASES:
        before = sorted(tmp_path.rglob("*"))
        result = command(name, *[a.format(**values) for a in args])
        problems = [] if result.code != 0 else ["exit status 0"]
        problems += ["a traceback"] if "Traceback" in result.err + result.out else []
        hydras = any(a.split("=")[0] in ("ckpt", "bogus") or a.endswith("=abc") for a in args)
        if not hydras and len(result.error_lines) != 1:  # Hydra's own message for unknown keys and types
            problems.append(f"{len(result.error_lines)} error lines: {result.err.strip()[-300:]}")
        if result.out:
            problems.append(f"work done before the error: {result.out[:200]}")
        if sorted(tmp_path.rglob("*")) != before:
            problems.append("files written")
        if problems:
            broken[f"{name} {' '.join(args)}"] = problems
    assert broken == {}


# --- through real processes: exit status and stderr as a shell sees them ----------------------------

SUBPROCESS_CASES = ["log_dir a file", "data.std=nan", "evaluate output onto a folder", "a bug during training"]


def test_real_processes_keep_the_promise(tmp_path: Path, mnist_dir: Path, tiny_checkpoint: Path) -> None:
    (tmp_path / "a_file.txt").write_text("x\n")
    logs = tmp_path / "outputs"
    python, train = sys.executable, str(REPO_ROOT / "train.py")
    common = [f"paths.data_dir={mnist_dir}", *QUICK]
    commands = {
        "log_dir a file": [python, train, f"paths.log_dir={tmp_path / 'a_file.txt'}", *common],
        "data.std=nan": [python, train, f"paths.log_dir={logs}", *common, "data.std=nan"],
        "evaluate output onto a folder": [
            python,
            "-m",
            "experiments.commands.evaluate",
            f"ckpt_path={tiny_checkpoint}",
            f"output={tmp_path}",
        ],
        "a bug during training": [python, train, f"paths.log_dir={logs}", *common, *fault("bug")],
    }
    assert list(commands) == SUBPROCESS_CASES
    environment = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "HYDRA_FULL_ERROR": "0"}
    environment["PYTHONPATH"] = os.pathsep.join(
        [str(REPO_ROOT), str(REPO_ROOT / "src"), environment.get("PYTHONPATH", "")]
    )
    for name, argv in commands.items():
        done = subprocess.run(argv, cwd=tmp_path, env=environment, capture_output=True, text=True, timeout=300)
        errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
        assert done.returncode == 1, (name, done.stderr[-2000:])
        assert len(errors) == 1 and "Traceback" not in done.stderr + done.stdout, (name, done.stderr[-2000:])
    (run_dir,) = run_dirs(logs)  # the started run; the refused ones left nothing
    assert json.loads((run_dir / "run.json").read_text())["status"] == "failed"


def test_the_fuzz_list_is_long() -> None:
    generated = len(VALUE_CASES) + len(COMPOSE_CASES) + len(BENCHMARK_CASES) + len(LR_FIND_CASES) + len(COMMAND_CASES)
    generated += RUN_CASE_COUNT + 3 + len(SUBPROCESS_CASES)  # 3: the failures during and before training
    generated += CHAOS_CASE_COUNT
    print(f"\nfuzz list: {generated} bad inputs")
    assert len(VALUE_CASES) >= 100 and generated >= 100


# --- the second chaos round: resume, checkpoints, Trainer additions, sweeps, consoles ----------------


def fingerprint(run_dir: Path) -> dict[str, tuple[int, int]]:
    """Every file of a run directory with its size and mtime: what a refused command must leave alone."""
    return {str(p.relative_to(run_dir)): (p.stat().st_size, p.stat().st_mtime_ns) for p in run_dir.rglob("*")}


def corrupt_in_place(path: Path) -> None:
    """Bytes overwritten in the middle of the file, its size unchanged: a bad disk block, not a truncation."""
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 64] = bytes(64)
    path.write_bytes(bytes(data))


def killed_run(train_cli, logs: Path, mnist_dir: Path, *extra: str) -> Path:
    """A finished quick run, put back as `kill -9` leaves one (run.json `running`)."""
    before = run_dirs(logs)
    result = train_cli(f"paths.data_dir={mnist_dir}", f"paths.log_dir={logs}", *QUICK, *extra)
    assert result.code == 0, result.err
    (run_dir,) = run_dirs(logs) - before
    record = json.loads((run_dir / "run.json").read_text())
    (run_dir / "run.json").write_text(json.dumps({**record, "status": "running"}))
    return run_dir


# What a resume cannot honour: groups, presets, values and deletions, each named in the one line.
RESUME_REFUSED = [
    "model/optimizer=adam",
    "regularization=l1",
    "experiment=mnist_adam",
    "debug=fast",
    "model=cnn",
    "model/loss=focal",
    "logger=csv",
    "model.optimizer.lr=0.5",
    "model.hidden_sizes=[64]",
    "+trainer.gradient_clip_val=1",
]
# Bad additions to the Trainer: each is refused naming its key, whatever Lightning would have done.
TRAINER_REFUSED = [
    "+trainer.callbacks=[]",
    "+trainer.logger=false",
    "+trainer.inference_mode=[1]",
    "+trainer.use_distributed_sampler=maybe",
    "+trainer.plugins=abc",
    "+trainer.barebones=1",
    "+trainer.num_nodes=1.5",
    "+trainer.max_epoch=3",
    "+trainer.reload_dataloaders_every_n_epochs=x",
]
CHAOS_CASE_COUNT = len(RESUME_REFUSED) + len(TRAINER_REFUSED) + 12  # + the cases written out below


def test_second_round_keeps_the_promise(
    train_cli, command, tmp_path: Path, mnist_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each case: (what it is, its result, the word its one line must hold, what must stay unchanged)."""
    logs = tmp_path / "outputs"
    data, log_dir = f"paths.data_dir={mnist_dir}", f"paths.log_dir={logs}"
    counts = collections.Counter(dict.fromkeys(("tracebacks", "orphans", "silent accepts", "wrong exit codes"), 0))
    broken: dict[str, list[str]] = {}

    def check(name: str, result: CliResult, word: str, untouched: Path | None = None, before: Any = None) -> None:
        counts["cases"] += 1
        problems = []
        if "Traceback" in result.out + result.err or "Logging error" in result.err:
            problems.append("a traceback")
            counts["tracebacks"] += 1
        if result.code == 0:
            problems.append("exit status 0")
            counts["wrong exit codes"] += 1
        if len(result.error_lines) != 1 or word not in result.error_lines[0]:
            problems.append(f"not one error line saying {word!r}: {result.err.strip()[-400:]}")
            counts["silent accepts" if not result.error_lines else "unclear lines"] += 1
        if untouched is not None and fingerprint(untouched) != before:
            problems.append(f"{untouched.name} changed")
            counts["orphans"] += 1
        if problems:
            broken[name] = problems

    # Resume: every override it cannot honour is refused before anything is written into the run.
    run_dir = killed_run(train_cli, logs, mnist_dir)
    resume = f"resume={run_dir}"
    for override in RESUME_REFUSED:
        before = fingerprint(run_dir)
        check(f"resume {override}", train_cli(data, log_dir, *QUICK, resume, override), override, run_dir, before)
    # A truncated run.json is no reason to refuse: the checkpoint holds the history.
    record = (run_dir / "run.json").read_text()
    (run_dir / "run.json").write_text(record[:40])
    resumed = train_cli(data, log_dir, *QUICK, resume)
    assert resumed.code == 0 and json.loads((run_dir / "run.json").read_text())["status"] == "completed", resumed.err

    # Trainer additions, checked against Lightning's signature before anything is built.
    for override in TRAINER_REFUSED:
        before = run_dirs(logs)
        result = train_cli(data, log_dir, *QUICK, override)
        check(override, result, override.lstrip("+").split("=")[0])
        counts["orphans"] += len(run_dirs(logs) - before)

    # Checkpoints damaged in place: every reader says "corrupt", none blames a divergence.
    damaged = killed_run(train_cli, logs, mnist_dir)
    best = next(p for p in (damaged / "checkpoints").glob("*.ckpt") if p.name != "last.ckpt")
    corrupt_in_place(best)
    corrupt_in_place(damaged / "checkpoints" / "last.ckpt")
    loose = tmp_path / "loose.ckpt"  # a copy with no recorded checksum: its zip CRCs tell
    shutil.copy(damaged / "checkpoints" / "last.ckpt", loose)
    (tmp_path / "digit.png").write_bytes(b"")
    before = fingerprint(damaged)
    check("evaluate a corrupt best checkpoint", command("evaluate", f"ckpt_path={damaged}"), "corrupt")
    check("predict with it", command("predict", f"ckpt_path={damaged}", f"inputs={loose}"), "corrupt")
    check("evaluate a loose corrupt copy", command("evaluate", f"ckpt_path={loose}"), "corrupt")
    check("train from it", train_cli(data, log_dir, *QUICK, f"ckpt_path={loose}"), "corrupt")
    check(
        "resume a corrupt last.ckpt", train_cli(data, log_dir, *QUICK, f"resume={damaged}"), "corrupt", damaged, before
    )

    # Batch norm and a last batch of one image: refused before the first step (501 images, batches of 100).
    check(
        "batch norm, last batch of one",
        train_cli(
            data,
            log_dir,
            *QUICK,
            "model.batch_norm=true",
            "data.val_size=99",
            "data.batch_size=100",
            "trainer.limit_train_batches=null",
        ),
        "data.batch_size=100",
    )

    # evaluate on a run whose config.yaml is damaged.
    (damaged / "config.yaml").write_text("data: [unclosed\n")
    check("evaluate, malformed config.yaml", command("evaluate", f"ckpt_path={loose.parent / 'none'}"), "none")
    shutil.copy(best.with_name("last.ckpt"), best)  # any readable file; the config is what fails
    check("evaluate, malformed config.yaml", command("evaluate", f"ckpt_path={damaged}"), "config.yaml")

    # A lab given an override that one of its configurations lacks: one line, no sweep directory.
    lab = train_cli(data, log_dir, *QUICK, "experiment=compare_models", "model.hidden_sizes=[64]")
    check("lab with an override a configuration lacks", lab, "model.hidden_sizes")
    counts["orphans"] += int((logs / "sweeps").is_dir() and any((logs / "sweeps").iterdir()))

    # A sweep whose every job failed exits non-zero, after each job's line and the report.
    sweep = train_cli(data, log_dir, *QUICK, "experiment=compare_optimizers", "model.optimizer.lr=-1")
    counts["cases"] += 1
    if sweep.code == 0 or not sweep.error_lines or "all 12 jobs of the sweep failed" not in sweep.error_lines[-1]:
        broken["sweep whose every job failed"] = [f"exit {sweep.code}: {sweep.err.strip()[-300:]}"]
        counts["wrong exit codes"] += sweep.code == 0
    # experiments-compare on that sweep with malformed records: a report, the damage named, no traceback.
    (sweep_dir,) = (logs / "sweeps").iterdir()
    for job, junk in zip(
        sorted(p for p in sweep_dir.iterdir() if p.is_dir()), ([1, 2], {"history": "x"}, '{"st'), strict=False
    ):
        (job / "run.json").write_text(junk if isinstance(junk, str) else json.dumps(junk))
    compared = command("compare", f"sweep_dir={sweep_dir}")
    counts["cases"] += 1
    if compared.code != 0 or "Traceback" in compared.err or "malformed" not in (sweep_dir / "summary.md").read_text():
        broken["compare, malformed records"] = [f"exit {compared.code}: {compared.err.strip()[-300:]}"]
    # predict on a blank image and a 1x1 one: classified, with a word that the answer means nothing.
    from PIL import Image

    Image.new("L", (28, 28), 255).save(tmp_path / "blank.png")
    Image.new("L", (1, 1), 0).save(tmp_path / "dot.png")
    blank = command("predict", f"ckpt_path={run_dir}", f"inputs=[{tmp_path / 'blank.png'},{tmp_path / 'dot.png'}]")
    counts["cases"] += 1
    warnings_given = [line for line in blank.err.splitlines() if line.startswith("warning: ")]
    if blank.code != 0 or len(warnings_given) != 2:
        broken["predict, blank and 1x1 images"] = [f"exit {blank.code}: {blank.err.strip()[-300:]}"]
        counts["silent accepts"] += len(warnings_given) != 2

    print(f"\nsecond round: {dict(counts)}")
    assert counts["cases"] == CHAOS_CASE_COUNT
    assert broken == {}


def test_an_ascii_console_gets_escapes_not_logging_errors(tmp_path: Path, mnist_dir: Path) -> None:
    """PYTHONIOENCODING=ascii (a C locale, a pipe into an old tool) and a non-ASCII run name."""
    command = [sys.executable, str(REPO_ROOT / "train.py"), f"paths.log_dir={tmp_path / 'outputs'}"]
    command += [f"paths.data_dir={mnist_dir}", *QUICK, "train=false", "run_name='üñí漢'"]
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "PYTHONIOENCODING": "ascii"}
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Logging error" not in done.stderr and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert "\\xfc\\xf1\\xed" in done.stdout  # the name, escaped, in the lines that show it
    (run_dir,) = run_dirs(tmp_path / "outputs")
    assert "üñí漢" in (run_dir / "train.log").read_text(encoding="utf-8")
