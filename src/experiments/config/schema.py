"""The config's schema: a dataclass per yaml file, its types enforced by OmegaConf and its ranges next to its fields.

Each yaml file names its schema first in its defaults list (`- /schema/sgd@_here_`; Hydra's "extending
configs" pattern), so Hydra refuses a value of the wrong type (`seed=abc`, `train=maybe`,
`data.batch_size=2.5`) or an unknown key (`model.hiden=3`) while it composes, before our code runs.
Values come from the yaml files; the dataclasses say only what each value may be. `validate` then turns
the composed config into these dataclasses (`OmegaConf.to_object`), which runs each `__post_init__`: the
range checks. No torch or Lightning here, so a config mistake is reported before they are imported.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any, ClassVar

from hydra.core.config_store import ConfigStore
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import MISSING, DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from experiments.errors import ConfigError

# Light copies of names defined next to torch imports (a test checks that they agree): models/classifier.py
# NETWORKS, models/mlp.py ACTIVATIONS, data/files.py DATASETS, data/datamodule.py LOADERS.
NETWORKS = ("linear", "mlp", "cnn")
ACTIVATIONS = ("relu", "tanh", "sigmoid", "leaky_relu", "gelu")
DATASETS = ("mnist", "fashion_mnist")
LOADERS = ("resident", "dataloader")

# Above this a learning rate is a typo (a missing minus sign in an exponent), not a setting.
MAX_LR = 10.0
# Wider layers are a typo: one 784 x 65536 float32 layer already takes 200 MB.
MAX_WIDTH = 65536
# numpy and Lightning take 32-bit seeds (Lightning refuses others only once training starts).
MAX_SEED = 2**32 - 1
# Above this a penalty (model.l1, weight_decay) outweighs any loss: the weights only shrink, or overflow.
MAX_PENALTY = 1.0
# Above this the focal loss leaves nothing to learn from: (1 - p) ** gamma is ~0 for every p.
MAX_GAMMA = 10.0
# DataLoader worker processes: more than a few per core only competes for the cores (and a typo forks thousands).
MAX_WORKERS = 4 * (os.cpu_count() or 1)
# Pixels are read into [0, 1]: a normalisation mean or std outside that range is not one of these images.
PIXEL_RANGE = "in [0, 1] (pixels are read into [0, 1])"
# Both datasets: ten classes of 28x28 images (experiments.data.files).
NUM_CLASSES = {"mnist": 10, "fashion_mnist": 10}
IMAGE_PIXELS = 28 * 28
# What train() returns for multirun searches to optimise (experiments.train).
METRICS = ("val/acc_best", "val/acc", "test/acc", "test/loss")
# Lightning's own format for a duration (lightning.pytorch.callbacks.Timer).
DURATION = re.compile(r"\d+:\d\d:\d\d:\d\d")


class Schema:
    """Base of the schemas: KEY is where the node sits in the composed config, for the error messages."""

    KEY: ClassVar[str] = ""
    # Whether `+<key>.<name>=...` may add keys the schema does not declare (the trainer: any Trainer argument).
    OPEN: ClassVar[bool] = False

    def require(self, name: str, ok: bool, rule: str) -> None:
        """ConfigError `<key>=<value> <rule>` unless ok. Comparisons with NaN are false, so a range refuses it."""
        if not ok:
            raise ConfigError(f"{_join(self.KEY, name)}={_show(getattr(self, name))} {rule}")


def _join(key: str, name: str) -> str:
    return f"{key}.{name}" if key else name


def _show(value: Any) -> str:
    """A value as a command line writes it: `true`, `null`, `0`, `relu` (not `True`, `None`, `0.0`, `'relu'`)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:  # OmegaConf made `0` a float
        return str(int(value))
    return repr(value) if value == "" else str(value)


def _one_of(choices: Sequence[str]) -> str:
    return "is not supported; choose " + " | ".join(choices)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_fraction(value: Any) -> bool:
    return isinstance(value, float) and 0 <= value <= 1


def _finite_at_least(value: float, low: float) -> bool:
    return math.isfinite(value) and value >= low


def _in(value: float, low: float, high: float) -> bool:
    """low <= value <= high; false for NaN."""
    return low <= value <= high


# --- top level: conf/train.yaml ---


@dataclass
class TrainConfig(Schema):
    # Groups: each option's yaml file brings its own schema.
    data: Any = MISSING
    model: Any = MISSING
    trainer: Any = MISSING
    logger: Any = None
    callbacks: Any = None
    paths: Any = MISSING
    run_name: str = MISSING
    seed: int = MISSING
    flush_denormal: bool = MISSING
    train: bool = MISSING
    test: bool = MISSING
    test_figures: int = MISSING
    ckpt_path: str | None = MISSING
    resume: str | None = MISSING
    optimized_metric: str = MISSING
    # Set by `hparams_search=optuna` (SearchConfig); absent otherwise.
    hparams_search: Any = None

    def __post_init__(self) -> None:
        for group in ("data", "model", "trainer", "paths"):
            self.require(
                group,
                isinstance(getattr(self, group), Schema),
                f"must be a config group; pick one with {group}=<option>",
            )
        for group in ("logger", "callbacks"):
            nodes = getattr(self, group)
            self.require(
                group, isinstance(nodes, (dict, type(None))), f"must be a config group; pick one with {group}=<option>"
            )
            for name, node in (nodes or {}).items():
                # Each entry is an object to build (`_target_: ...`), or empty to switch one off.
                if not (node is None or node == {} or (isinstance(node, dict) and "_target_" in node)):
                    raise ConfigError(
                        f"{group}.{name}={_show(node)} is not an object to build (a node with _target_); "
                        f"`python train.py --cfg job` lists the {group}"
                    )
        self.require("seed", 0 <= self.seed <= MAX_SEED, f"must be in [0, {MAX_SEED}]")
        self.require("test_figures", self.test_figures >= 0, "must be >= 0 (0: no figures)")
        self.require("optimized_metric", self.optimized_metric in METRICS, _one_of(METRICS))
        self.require(
            "optimized_metric",
            self.test or not self.optimized_metric.startswith("test/"),
            "needs test=true (the test metrics exist only after testing)",
        )
        # Checked across groups: each knows only its own keys.
        classes = NUM_CLASSES[self.data.dataset]
        if self.model.num_classes != classes:
            raise ConfigError(
                f"model.num_classes={self.model.num_classes} must be {classes}: "
                f"data={self.data.dataset} has {classes} classes"
            )
        size = getattr(self.model, "input_size", IMAGE_PIXELS)
        if size != IMAGE_PIXELS:
            raise ConfigError(
                f"model.input_size={size} must be {IMAGE_PIXELS}: data={self.data.dataset} images are 28x28 pixels"
            )


# --- hparams_search: conf/hparams_search/optuna.yaml (what the jobs of a search need) ---

PRUNERS = ("median", "hyperband", "none")


@dataclass
class SearchConfig(Schema):
    KEY: ClassVar[str] = "hparams_search"
    # Which trials stop early on their per-epoch val/acc (experiments.search.study.make_pruner).
    pruner: str = MISSING

    def __post_init__(self) -> None:
        self.require("pruner", self.pruner in PRUNERS, _one_of(PRUNERS))


# --- paths: conf/paths/default.yaml (where things are; Hydra makes the run directories under log_dir) ---


@dataclass
class PathsConfig(Schema):
    KEY: ClassVar[str] = "paths"
    data_dir: str = MISSING
    log_dir: str = MISSING
    cache_dir: str = MISSING
    output_dir: str = MISSING


# --- data: conf/data/*.yaml, the arguments of experiments.data.datamodule.MNISTDataModule ---


@dataclass
class DataConfig(Schema):
    KEY: ClassVar[str] = "data"
    _target_: str = MISSING
    dataset: str = MISSING
    data_dir: str = MISSING
    batch_size: int = MISSING
    eval_batch_size: int = MISSING
    val_size: int = MISSING
    train_size: int | None = MISSING
    normalize: bool = MISSING
    mean: float = MISSING
    std: float = MISSING
    seed: int = MISSING
    loader: str = MISSING
    drop_last: bool = MISSING
    num_workers: int = MISSING
    pin_memory: bool = MISSING
    persistent_workers: bool = MISSING
    search_dirs: list[str] = MISSING
    cache_dir: str = MISSING

    def __post_init__(self) -> None:
        self.require("dataset", self.dataset in DATASETS, _one_of(DATASETS))
        self.require("batch_size", self.batch_size >= 1, "must be >= 1")
        self.require("eval_batch_size", self.eval_batch_size >= 1, "must be >= 1")
        # The upper bounds depend on the dataset's size: the DataModule checks them once it has read the files.
        self.require(
            "val_size", self.val_size >= 1, "must be >= 1 (for no validation at all: trainer.limit_val_batches=0)"
        )
        self.require(
            "train_size",
            self.train_size is None or self.train_size >= 1,
            "must be >= 1 (a seeded subset of the training images) or null (all of them)",
        )
        self.require("mean", _in(self.mean, 0, 1), f"must be {PIXEL_RANGE}")
        self.require("std", _in(self.std, 0, 1) and self.std > 0, f"must be > 0 and {PIXEL_RANGE}")
        self.require("seed", 0 <= self.seed <= MAX_SEED, f"must be in [0, {MAX_SEED}]")
        self.require("loader", self.loader in LOADERS, _one_of(LOADERS))
        self.require(
            "num_workers",
            0 <= self.num_workers <= MAX_WORKERS,
            f"must be in [0, {MAX_WORKERS}] (0: load in the main process; at most 4 per CPU core)",
        )


# --- model: conf/model/{linear,mlp,cnn}.yaml, the arguments of experiments.models.classifier.MNISTClassifier ---


@dataclass
class ModelConfig(Schema):
    """What every network's config has: the training settings; each network adds its own arguments."""

    KEY: ClassVar[str] = "model"
    NET: ClassVar[str] = ""  # the network this yaml file describes
    _target_: str = MISSING
    net: str = MISSING
    # Groups: each option's yaml file brings its own schema; model/scheduler=none leaves an empty node.
    optimizer: Any = None
    scheduler: Any = None
    loss: Any = None
    num_classes: int = MISSING
    l1: float = MISSING
    compile: bool = MISSING

    def __post_init__(self) -> None:
        self.require(
            "net",
            self.net == self.NET,
            f"is not the network model={self.NET} configures; pick a network with model={'|'.join(NETWORKS)}",
        )
        # A schema instance: a value typed in place of the group (`model.loss=abc`) is not one.
        self.require(
            "optimizer",
            isinstance(self.optimizer, OptimizerConfig),
            "must be set; pick one with model/optimizer=sgd|adam|adamw|rmsprop|adagrad",
        )
        self.require(
            "loss", isinstance(self.loss, LossConfig), "must be set; pick one with model/loss=cross_entropy|focal|mse"
        )
        self.require(
            "scheduler",
            self.scheduler in (None, {}) or isinstance(self.scheduler, (OneCycleConfig, CosineConfig)),
            "must be a schedule; pick one with model/scheduler=onecycle|cosine|none",
        )
        self.require("num_classes", self.num_classes >= 2, "must be >= 2")
        self.require("l1", _in(self.l1, 0, MAX_PENALTY), f"must be in [0, {MAX_PENALTY:g}]: a larger penalty is a typo")
        if isinstance(self.scheduler, CosineConfig) and isinstance(self.optimizer, OptimizerConfig):
            eta_min, lr = self.scheduler.eta_min, self.optimizer.lr
            if not eta_min <= lr:
                raise ConfigError(
                    f"model.scheduler.eta_min={_show(eta_min)} must be <= model.optimizer.lr={_show(lr)}: "
                    "the cosine schedule decays from the learning rate down to eta_min"
                )

    def require_widths(self, name: str, example: str) -> None:
        widths = getattr(self, name)
        self.require(
            name,
            len(widths) > 0 and all(1 <= width <= MAX_WIDTH for width in widths),
            f"must be a non-empty list of layer widths in [1, {MAX_WIDTH}], e.g. {example}",
        )


@dataclass
class LinearConfig(ModelConfig):
    NET: ClassVar[str] = "linear"
    input_size: int = MISSING

    def __post_init__(self) -> None:
        super().__post_init__()
        self.require("input_size", self.input_size >= 1, "must be >= 1")


@dataclass
class MLPConfig(ModelConfig):
    NET: ClassVar[str] = "mlp"
    input_size: int = MISSING
    hidden_sizes: list[int] = MISSING
    activation: str = MISSING
    dropout: float = MISSING
    batch_norm: bool = MISSING

    def __post_init__(self) -> None:
        super().__post_init__()
        self.require("input_size", self.input_size >= 1, "must be >= 1")
        self.require_widths("hidden_sizes", "[128,128]")
        self.require("activation", self.activation in ACTIVATIONS, _one_of(ACTIVATIONS))
        self.require("dropout", 0 <= self.dropout < 1, "must be in [0, 1)")


@dataclass
class CNNConfig(ModelConfig):
    NET: ClassVar[str] = "cnn"
    channels: list[int] = MISSING
    hidden_sizes: list[int] = MISSING
    activation: str = MISSING

    def __post_init__(self) -> None:
        super().__post_init__()
        self.require(
            "channels",
            len(self.channels) == 2 and all(1 <= width <= MAX_WIDTH for width in self.channels),
            f"must be the output channels of the two convolutions, each in [1, {MAX_WIDTH}], e.g. [6,16]",
        )
        self.require_widths("hidden_sizes", "[120,84]")
        self.require("activation", self.activation in ACTIVATIONS, _one_of(ACTIVATIONS))


# --- model.loss: conf/model/loss/*.yaml, partials of the functions in experiments.models.losses ---


@dataclass
class LossConfig(Schema):
    KEY: ClassVar[str] = "model.loss"
    _target_: str = MISSING
    _partial_: bool = MISSING


@dataclass
class CrossEntropyConfig(LossConfig):
    label_smoothing: float = MISSING

    def __post_init__(self) -> None:
        self.require("label_smoothing", 0 <= self.label_smoothing < 1, "must be in [0, 1)")


@dataclass
class FocalConfig(LossConfig):
    gamma: float = MISSING

    def __post_init__(self) -> None:
        self.require(
            "gamma", _in(self.gamma, 0, MAX_GAMMA), f"must be in [0, {MAX_GAMMA:g}]: a larger one leaves no loss"
        )


@dataclass
class MSEConfig(LossConfig):
    pass


# --- model.optimizer: conf/model/optimizer/*.yaml, partials of torch.optim classes ---


@dataclass
class OptimizerConfig(Schema):
    KEY: ClassVar[str] = "model.optimizer"
    _target_: str = MISSING
    _partial_: bool = MISSING
    foreach: bool | None = MISSING
    lr: float = MISSING
    weight_decay: float = MISSING

    def __post_init__(self) -> None:
        self.require("lr", self.lr > 0, "must be > 0")
        self.require("lr", self.lr <= MAX_LR, f"must be <= {MAX_LR:g}: a larger learning rate is a typo")
        self.require(
            "weight_decay",
            _in(self.weight_decay, 0, MAX_PENALTY),
            f"must be in [0, {MAX_PENALTY:g}]: a larger penalty is a typo",
        )


@dataclass
class SGDConfig(OptimizerConfig):
    momentum: float = MISSING
    nesterov: bool = MISSING

    def __post_init__(self) -> None:
        super().__post_init__()
        self.require("momentum", 0 <= self.momentum < 1, "must be in [0, 1)")
        self.require("nesterov", not self.nesterov or self.momentum > 0, "needs model.optimizer.momentum > 0")


@dataclass
class AdamConfig(OptimizerConfig):
    """Adam and AdamW."""

    betas: list[float] = MISSING
    eps: float = MISSING

    def __post_init__(self) -> None:
        super().__post_init__()
        self.require(
            "betas",
            len(self.betas) == 2 and all(0 <= beta < 1 for beta in self.betas),
            "must be two numbers, each in [0, 1), e.g. [0.9,0.999]",
        )
        self.require("eps", 0 < self.eps <= 1, "must be in (0, 1]")


@dataclass
class RMSpropConfig(OptimizerConfig):
    alpha: float = MISSING
    momentum: float = MISSING
    eps: float = MISSING

    def __post_init__(self) -> None:
        super().__post_init__()
        self.require("alpha", 0 <= self.alpha < 1, "must be in [0, 1)")
        self.require("momentum", 0 <= self.momentum < 1, "must be in [0, 1)")
        self.require("eps", 0 < self.eps <= 1, "must be in (0, 1]")


@dataclass
class AdagradConfig(OptimizerConfig):
    eps: float = MISSING

    def __post_init__(self) -> None:
        super().__post_init__()
        self.require("eps", 0 < self.eps <= 1, "must be in (0, 1]")


# --- model.scheduler: conf/model/scheduler/*.yaml, partials of torch.optim.lr_scheduler classes ---


@dataclass
class OneCycleConfig(Schema):
    KEY: ClassVar[str] = "model.scheduler"
    _target_: str = MISSING
    _partial_: bool = MISSING
    max_lr: float = MISSING
    pct_start: float = MISSING
    cycle_momentum: bool = MISSING

    def __post_init__(self) -> None:
        self.require("max_lr", self.max_lr > 0, "must be > 0")
        self.require("max_lr", self.max_lr <= MAX_LR, f"must be <= {MAX_LR:g}: a larger learning rate is a typo")
        self.require("pct_start", 0 <= self.pct_start <= 1, "must be in [0, 1]")


@dataclass
class CosineConfig(Schema):
    KEY: ClassVar[str] = "model.scheduler"
    _target_: str = MISSING
    _partial_: bool = MISSING
    eta_min: float = MISSING

    def __post_init__(self) -> None:
        self.require("eta_min", _in(self.eta_min, 0, MAX_LR), f"must be in [0, {MAX_LR:g}]")


# --- trainer: conf/trainer/*.yaml, the arguments of lightning.pytorch.Trainer ---


@dataclass
class TrainerConfig(Schema):
    """The Trainer arguments the yaml files set. `+trainer.<name>=...` adds any other Trainer argument:
    Lightning checks those when it builds the Trainer. `Any` marks Lightning's unions that OmegaConf
    cannot express; __post_init__ checks their types."""

    KEY: ClassVar[str] = "trainer"
    OPEN: ClassVar[bool] = True
    _target_: str = MISSING
    default_root_dir: str | None = MISSING
    accelerator: str = MISSING
    devices: Any = MISSING  # int | str | list[int]
    strategy: str = MISSING
    precision: Any = MISSING  # str | int; Lightning checks the value
    max_epochs: int = MISSING
    min_epochs: int | None = MISSING
    max_steps: int = MISSING
    max_time: str | None = MISSING
    accumulate_grad_batches: int = MISSING
    gradient_clip_val: float | None = MISSING
    gradient_clip_algorithm: str | None = MISSING
    limit_train_batches: Any = MISSING  # int | float | None
    limit_val_batches: Any = MISSING  # int | float | None
    limit_test_batches: Any = MISSING  # int | float | None
    val_check_interval: Any = MISSING  # int | float | "DD:HH:MM:SS" | None
    check_val_every_n_epoch: int | None = MISSING
    num_sanity_val_steps: int | None = MISSING
    log_every_n_steps: int | None = MISSING
    fast_dev_run: Any = MISSING  # bool | int
    overfit_batches: Any = MISSING  # int | float
    deterministic: Any = MISSING  # bool | "warn" | None
    benchmark: bool | None = MISSING
    detect_anomaly: bool = MISSING
    profiler: str | None = MISSING
    enable_model_summary: bool | None = MISSING
    enable_progress_bar: bool | None = MISSING
    sync_batchnorm: bool = MISSING

    def __post_init__(self) -> None:
        devices = self.devices
        self.require(
            "devices",
            (_is_int(devices) and (devices >= 1 or devices == -1))
            or (isinstance(devices, str) and devices != "")
            or (isinstance(devices, list) and len(devices) > 0 and all(_is_int(d) and d >= 0 for d in devices)),
            "must be a number of devices >= 1, -1 (all), auto, or a list of device indices",
        )
        count = len(devices) if isinstance(devices, list) else devices if _is_int(devices) else 1
        # Lightning would quietly train on one device only.
        self.require(
            "devices",
            count <= 1 or self.strategy not in ("single_device", "single_xla"),
            f"needs a multi-device strategy, not trainer.strategy={self.strategy}; "
            "use trainer=ddp (or trainer.devices=1)",
        )
        self.require(
            "precision",
            _is_int(self.precision) or isinstance(self.precision, str),
            "must be a name such as 32-true or bf16-mixed",
        )
        self.require("max_epochs", self.max_epochs >= 1 or self.max_epochs == -1, "must be >= 1, or -1 (no limit)")
        self.require(
            "max_epochs",
            self.max_epochs != -1 or self.max_steps > 0 or self.max_time is not None,
            "trains forever; set trainer.max_steps > 0 or trainer.max_time",
        )
        self.require("min_epochs", self.min_epochs is None or self.min_epochs >= 0, "must be >= 0")
        self.require(
            "min_epochs",
            self.min_epochs is None or self.max_epochs == -1 or self.min_epochs <= self.max_epochs,
            f"must be <= trainer.max_epochs={self.max_epochs}",
        )
        self.require("max_steps", self.max_steps >= -1, "must be >= 0, or -1 (no limit)")
        self.require(
            "max_time", self.max_time is None or _duration(self.max_time), "must be DD:HH:MM:SS, e.g. 00:01:30:00"
        )
        self.require("accumulate_grad_batches", self.accumulate_grad_batches >= 1, "must be >= 1")
        clip = self.gradient_clip_val
        self.require("gradient_clip_val", clip is None or _finite_at_least(clip, 0), "must be a finite number >= 0")
        self.require(
            "gradient_clip_algorithm",
            self.gradient_clip_algorithm in (None, "norm", "value"),
            _one_of(("norm", "value")),
        )
        for name in ("limit_train_batches", "limit_val_batches", "limit_test_batches"):
            value = getattr(self, name)
            self.require(name, value is None or _batches(value), f"{_BATCHES}, or null (all)")
        interval = self.val_check_interval
        self.require(
            "val_check_interval",
            interval is None
            or (_is_int(interval) and interval >= 1)
            or (_is_fraction(interval) and interval > 0)
            or _duration(interval),
            "must be an int >= 1 (batches), a float in (0, 1] (a fraction of the epoch), a DD:HH:MM:SS duration, "
            "or null (after each epoch)",
        )
        every = self.check_val_every_n_epoch
        self.require("check_val_every_n_epoch", every is None or every >= 1, "must be >= 1, or null")
        sanity = self.num_sanity_val_steps
        self.require("num_sanity_val_steps", sanity is None or sanity >= -1, "must be >= 0, or -1 (all batches)")
        log_every = self.log_every_n_steps
        self.require("log_every_n_steps", log_every is None or log_every >= 0, "must be >= 0 (0: no per-step logs)")
        dev_run = self.fast_dev_run
        self.require(
            "fast_dev_run",
            isinstance(dev_run, bool) or (_is_int(dev_run) and dev_run >= 0),
            "must be true, false or a number of batches",
        )
        self.require("overfit_batches", _batches(self.overfit_batches), _BATCHES)
        deterministic = self.deterministic
        self.require(
            "deterministic",
            deterministic is None or isinstance(deterministic, bool) or deterministic == "warn",
            "must be true, false, warn or null",
        )


_BATCHES = "must be an int >= 0 (batches) or a float in [0, 1] (a fraction of them)"


def _batches(value: Any) -> bool:
    """Lightning's rule for limit_*_batches and overfit_batches."""
    return (_is_int(value) and value >= 0) or _is_fraction(value)


def _duration(value: Any) -> bool:
    return isinstance(value, str) and DURATION.fullmatch(value) is not None


# --- scripts/benchmark.py: conf/benchmark.yaml ---

BENCHMARK_SECTIONS = ("startup", "epoch", "throughput", "sweep", "fixed_cost")
BENCHMARK_DEVICES = ("cpu", "cuda", "both")


@dataclass
class BenchmarkConfig(Schema):
    data_dir: str | None = MISSING
    device: str = MISSING
    sections: list[str] = MISSING
    startup_runs: int = MISSING
    epoch_batch_sizes: list[int] = MISSING
    rounds: int = MISSING
    batch_size: int = MISSING
    only: str | None = MISSING
    epochs: int = MISSING
    warmup: int = MISSING
    sweep_batch_sizes: list[int] = MISSING
    sweep_lrs: list[float] = MISSING
    sweep_seeds: list[int] = MISSING
    sweep_epochs: int = MISSING
    fixed_cost_jobs: int = MISSING
    out: str = MISSING

    def __post_init__(self) -> None:
        self.require("device", self.device in BENCHMARK_DEVICES, _one_of(BENCHMARK_DEVICES))
        for name in ("sweep_batch_sizes", "sweep_lrs", "sweep_seeds"):
            values = getattr(self, name)
            self.require(name, len(values) > 0 and all(v > 0 for v in values), "must be a non-empty list of values > 0")
        self.require("sweep_epochs", self.sweep_epochs >= 1, "must be >= 1")
        self.require("fixed_cost_jobs", self.fixed_cost_jobs >= 2, "must be >= 2 (the first job pays the imports)")
        self.require(
            "sections",
            len(self.sections) > 0 and all(s in BENCHMARK_SECTIONS for s in self.sections),
            f"must be a non-empty list of {' | '.join(BENCHMARK_SECTIONS)}, e.g. [startup]",
        )
        for name in ("startup_runs", "rounds", "batch_size", "epochs"):
            self.require(name, getattr(self, name) >= 1, "must be >= 1")
        self.require("warmup", self.warmup >= 0, "must be >= 0")
        self.require(
            "epoch_batch_sizes",
            len(self.epoch_batch_sizes) > 0 and all(b >= 1 for b in self.epoch_batch_sizes),
            "must be a non-empty list of batch sizes >= 1, e.g. [128,64]",
        )


# --- experiments-lr-find: conf/lr_find.yaml, the train config and the finder's settings ---

LR_FIND_MODES = ("exponential", "linear")


@dataclass
class LRFinderConfig(Schema):
    """The arguments of Lightning's `Tuner.lr_find` (experiments.commands.lr_find)."""

    KEY: ClassVar[str] = "lr_find"
    min_lr: float = MISSING
    max_lr: float = MISSING
    num_training: int = MISSING
    mode: str = MISSING
    early_stop_threshold: float | None = MISSING

    def __post_init__(self) -> None:
        self.require("min_lr", self.min_lr > 0, "must be > 0")
        self.require("max_lr", self.min_lr < self.max_lr, f"must be > lr_find.min_lr={_show(self.min_lr)}")
        self.require("max_lr", self.max_lr <= MAX_LR, f"must be <= {MAX_LR:g}: a larger learning rate is a typo")
        # Lightning's suggestion skips the first 10 and the last point of the curve.
        self.require("num_training", self.num_training >= 20, "must be >= 20 (the learning rates tried, one step each)")
        self.require("mode", self.mode in LR_FIND_MODES, _one_of(LR_FIND_MODES))
        self.require(
            "early_stop_threshold",
            self.early_stop_threshold is None or _finite_at_least(self.early_stop_threshold, 1),
            "must be >= 1 (stop once the loss exceeds this many times its best) or null (never stop early)",
        )


@dataclass
class LRFindConfig(TrainConfig):
    """conf/lr_find.yaml: everything train.py takes, and the finder's own settings. Merged after train.yaml
    (a subclass may refine its base's schema, not the reverse), so no field may have a default here: it would
    replace the value train.yaml composed (MISSING replaces nothing)."""

    logger: Any = MISSING
    callbacks: Any = MISSING
    lr_find: LRFinderConfig = MISSING


# --- registration and validation ---

# The schema of each yaml file, stored as `schema/<name>`: what its defaults list names.
SCHEMAS: dict[str, type[Schema]] = {
    "train": TrainConfig,
    "data": DataConfig,
    "paths": PathsConfig,
    "linear": LinearConfig,
    "mlp": MLPConfig,
    "cnn": CNNConfig,
    "cross_entropy": CrossEntropyConfig,
    "focal": FocalConfig,
    "mse": MSEConfig,
    "sgd": SGDConfig,
    "adam": AdamConfig,
    "rmsprop": RMSpropConfig,
    "adagrad": AdagradConfig,
    "onecycle": OneCycleConfig,
    "cosine": CosineConfig,
    "trainer": TrainerConfig,
    "benchmark": BenchmarkConfig,
    "search": SearchConfig,
    "lr_find": LRFindConfig,
}


def register() -> None:
    """Put the schemas in Hydra's ConfigStore, where the yaml files' defaults lists find them."""
    store = ConfigStore.instance()
    for name, node in SCHEMAS.items():
        store.store(group="schema", name=name, node=node)


def validate(cfg: DictConfig, overrides: Sequence[str] = ()) -> None:
    """Raise ConfigError for the first invalid value of a composed config.

    Types were enforced while Hydra composed it; this adds what OmegaConf lets through (booleans written
    as yes/1, keys added with `+`) and the ranges (each schema's __post_init__). `overrides` are the
    command line's, for the booleans.
    """
    _strict_booleans(cfg, overrides)
    _refuse_added_keys(cfg, "")
    try:
        OmegaConf.to_object(cfg)
    except OmegaConfBaseException as exc:  # an interpolation that does not resolve, e.g. `~model/optimizer`
        raise ConfigError(f"{exc.full_key}: {str(exc).splitlines()[0]}") from exc


def _strict_booleans(cfg: DictConfig, overrides: Sequence[str]) -> None:
    """OmegaConf reads yes/no/on/off/1/0 into a boolean; on the command line a boolean is true or false."""
    for override in OverridesParser.create().parse_overrides(list(overrides)):
        if override.is_delete() or override.is_sweep_override():
            continue
        value = OmegaConf.select(cfg, override.key_or_group, default=None)
        if isinstance(value, bool) and not isinstance(override.value(), bool):
            given = override.get_value_element_as_str()
            raise ConfigError(f"{override.key_or_group}={given} must be true or false")


def _refuse_added_keys(node: DictConfig, key: str) -> None:
    """`+<key>.<name>=...` inserts keys past the schema; only an open schema (the trainer's) takes them."""
    schema = OmegaConf.get_type(node)
    if isinstance(schema, type) and issubclass(schema, Schema) and not schema.OPEN:
        declared = {f.name for f in fields(schema)}
        for name in node:
            if name not in declared:
                raise ConfigError(
                    f"{_join(key, str(name))}={_show(node.get(name))} is not a key of {key or 'the config'} (only "
                    "trainer takes keys added with +); `python train.py --cfg job` lists the keys"
                )
    for name, child in node.items_ex(resolve=False):
        if isinstance(child, DictConfig):
            _refuse_added_keys(child, _join(key, str(name)))
