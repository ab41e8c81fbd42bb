"""Training speed: the classic tutorial loop, a hand-written resident loop, and this project's Trainer.

    python scripts/benchmark.py data_dir=../shared/datasets              # CPU, real MNIST
    python scripts/benchmark.py data_dir=../shared/datasets device=both  # and a GPU
    python scripts/benchmark.py sections=[startup]                       # only the start-up table

Options: conf/benchmark.yaml (`--help` lists them).

Three tables.

Start-up: wall seconds of `python train.py --help`, `--cfg job` and config mistakes (no training).

Whole epoch (what a user waits for), median seconds per epoch at each of epoch_batch_sizes, the three
contenders in alternating rounds:
- plain loop + eval: plain PyTorch over resident tensors, the default network, optimizer and one-cycle
  schedule, evaluating the 5,000 held-out images every epoch;
- bare LightningModule: the same under a Trainer (automatic optimization, validation loss/accuracy,
  Lightning's checkpointing, TensorBoard, a progress bar): what Lightning itself costs;
- project default: `python train.py` as configured (run record, guards, LR monitor, test figures...).

Training throughput: all four contenders train the same 784-128-128-10 ReLU MLP with the project's SGD
(conf/model/optimizer/sgd.yaml) at a constant lr of 0.1 at the same batch size, in one process. Each
runs warm-up epochs that are not counted, then the median over the measured epochs is reported
(training only: validation is excluded).

1. classic:  torchvision MNIST + ToTensor + Normalize + DataLoader, plain PyTorch loop
2. resident: plain PyTorch loop over one pre-normalised tensor, randperm batches (the practical floor)
3. trainer (dataloader): `train.py` with data.loader=dataloader
4. trainer (resident):   `train.py` with the default resident loader

`device=both` adds a CPU-vs-GPU comparison: 15 batches of 128 and a full epoch on each device.
Results go to stdout (a table), and to --out as benchmark.md, benchmark.json and PNG bar charts.
"""

from __future__ import annotations

import functools
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import hydra
import lightning as L
import torch
import torch.nn.functional as F
from hydra import compose
from omegaconf import DictConfig
from torch.utils.data import DataLoader, Subset
from torchvision import transforms

from experiments.commands import one_line_errors
from experiments.config import schema
from experiments.data.files import dataset_class, load_split, prepare_root
from experiments.data.synthetic import write_dataset
from experiments.models.mlp import MLP
from experiments.rundir import RunDir
from experiments.train import CONFIG_DIR, train

MEAN, STD, LR, VAL_SIZE, SEED = 0.1307, 0.3081, 0.1, 5000, 42


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def project_config(overrides: list[str]) -> DictConfig:
    """The config `python train.py <overrides>` runs with (this app shares the project's config folder)."""
    return compose(config_name="train", overrides=overrides)


# The throughput table compares bare training loops: no learning-rate schedule, a fixed lr.
CONSTANT_LR = ["model/scheduler=none", f"model.optimizer.lr={LR}"]


def make_model(device: torch.device) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    """The project's network and optimizer (conf/model/optimizer/sgd.yaml), for the plain loops."""
    torch.manual_seed(SEED)
    model = MLP().to(device)
    return model, hydra.utils.instantiate(project_config(CONSTANT_LR).model.optimizer)(model.parameters())


def train_epoch(
    model: torch.nn.Module, optimizer: torch.optim.Optimizer, batches: Iterable, device: torch.device
) -> int:
    samples = 0
    for x, y in batches:
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        samples += len(y)
    sync(device)
    return samples


def timed_epochs(run_epoch: Callable[[], int], epochs: int, warmup: int, device: torch.device) -> list[float]:
    """samples/s of each measured epoch."""
    rates = []
    for epoch in range(warmup + epochs):
        sync(device)
        start = time.perf_counter()
        samples = run_epoch()
        seconds = time.perf_counter() - start
        if epoch >= warmup:
            rates.append(samples / seconds)
    return rates


def classic_loop(root: Path, batch_size: int, device: torch.device, epochs: int, warmup: int) -> list[float]:
    transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize((MEAN,), (STD,))])
    dataset = dataset_class("mnist")(str(root), train=True, transform=transform)
    order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(SEED))
    loader = DataLoader(Subset(dataset, order[VAL_SIZE:].tolist()), batch_size=batch_size, shuffle=True)
    model, optimizer = make_model(device)
    return timed_epochs(lambda: train_epoch(model, optimizer, loader, device), epochs, warmup, device)


def resident_tensors(root: Path, device: torch.device, split: str = "train") -> tuple[torch.Tensor, torch.Tensor]:
    """The 55,000 training images, or the 5,000 held out (`split="val"`), normalised, on the device."""
    images, labels = load_split(dataset_class("mnist"), root, train=True)
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(SEED))
    order = order[VAL_SIZE:] if split == "train" else order[:VAL_SIZE]
    inputs = images[order].to(device=device, dtype=torch.float32).div_(255).sub_(MEAN).div_(STD).flatten(1)
    return inputs, labels[order].to(device)


def resident_batches(inputs: torch.Tensor, targets: torch.Tensor, batch_size: int, limit: int | None = None):
    permutation = torch.randperm(len(inputs), device=inputs.device)
    for i, start in enumerate(range(0, len(inputs), batch_size)):
        if limit is not None and i >= limit:
            return
        index = permutation[start : start + batch_size]
        yield inputs[index], targets[index]


def resident_loop(root: Path, batch_size: int, device: torch.device, epochs: int, warmup: int) -> list[float]:
    inputs, targets = resident_tensors(root, device)
    model, optimizer = make_model(device)
    return timed_epochs(
        lambda: train_epoch(model, optimizer, resident_batches(inputs, targets, batch_size), device),
        epochs,
        warmup,
        device,
    )


def project_trainer(
    root: Path, batch_size: int, device: torch.device, epochs: int, warmup: int, loader: str, out: Path
) -> list[float]:
    """The real `train.py` path, composed from conf/ like a user's run; per-epoch rates come from run.json."""
    output_dir = Path(tempfile.mkdtemp(prefix=f"trainer-{loader}-", dir=out))
    overrides = [
        *CONSTANT_LR,
        f"paths.data_dir={root}",
        f"paths.output_dir={output_dir}",
        f"data.batch_size={batch_size}",
        f"data.loader={loader}",
        f"trainer.accelerator={'gpu' if device.type == 'cuda' else 'cpu'}",
        "trainer.devices=1",
        f"trainer.max_epochs={warmup + epochs}",
        "trainer.enable_model_summary=false",
        "callbacks.progress_bar.refresh_rate=0",
        "test=false",
    ]
    train(project_config(overrides), RunDir(output_dir), overrides)
    history = RunDir(output_dir).record()["history"]
    return [row["samples_per_sec"] for row in history[warmup:]]


def plain_epoch_with_eval(root: Path, batch_size: int, device: torch.device, epochs: int, warmup: int) -> list[float]:
    """Seconds per epoch of a plain loop doing what the default run does each epoch: train on 55,000
    images with the default optimizer and one-cycle schedule, then evaluate the 5,000 held-out ones."""
    (train_x, train_y), (val_x, val_y) = resident_tensors(root, device), resident_tensors(root, device, "val")
    cfg = project_config([f"data.batch_size={batch_size}"])
    torch.manual_seed(SEED)
    model = MLP().to(device)
    optimizer = hydra.utils.instantiate(cfg.model.optimizer)(model.parameters())
    steps = -(-len(train_x) // batch_size) * (warmup + epochs)
    scheduler = hydra.utils.instantiate(cfg.model.scheduler)(optimizer, total_steps=steps)
    seconds = []
    for epoch in range(warmup + epochs):
        sync(device)
        start = time.perf_counter()
        model.train()
        for x, y in resident_batches(train_x, train_y, batch_size):
            loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
        model.eval()
        with torch.no_grad():
            correct = sum(
                (model(val_x[i : i + 1000]).argmax(-1) == val_y[i : i + 1000]).sum() for i in range(0, VAL_SIZE, 1000)
            )
        float(correct)  # the accuracy reaches the host once per epoch, as a logged metric would
        sync(device)
        if epoch >= warmup:
            seconds.append(time.perf_counter() - start)
    return seconds


class BareModule(L.LightningModule):
    """The least a LightningModule does for the default run: automatic optimization, the default
    optimizer and one-cycle schedule, validation loss and accuracy logged once per epoch."""

    def __init__(self, cfg: DictConfig, total_steps: int) -> None:
        super().__init__()
        self.cfg, self.total_steps, self.net = cfg, total_steps, MLP()

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        return F.cross_entropy(self.net(batch[0]), batch[1])

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        logits = self.net(batch[0])
        self.log("val/loss", F.cross_entropy(logits, batch[1]))
        self.log("val/acc", (logits.argmax(-1) == batch[1]).float().mean())

    def configure_optimizers(self) -> dict:
        optimizer = hydra.utils.instantiate(self.cfg.model.optimizer)(self.parameters())
        scheduler = hydra.utils.instantiate(self.cfg.model.scheduler)(optimizer, total_steps=self.total_steps)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


class EpochClock(L.Callback):
    """Seconds from one training epoch's start to the next (training, validation, checkpoint, logging)."""

    def __init__(self) -> None:
        self.seconds: list[float] = []
        self.start = 0.0

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.start:
            self.seconds.append(time.perf_counter() - self.start)
        self.start = time.perf_counter()

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.seconds.append(time.perf_counter() - self.start)


def bare_lightning_epoch(
    root: Path, batch_size: int, device: torch.device, epochs: int, warmup: int, out: Path
) -> list[float]:
    """Seconds per epoch of a bare LightningModule (BareModule) under a Trainer with Lightning's own
    checkpointing, a TensorBoard logger and the project's progress bar setting: Lightning's floor."""
    from lightning.pytorch.callbacks import TQDMProgressBar
    from lightning.pytorch.loggers import TensorBoardLogger

    from experiments.data.datamodule import MNISTDataModule

    cfg = project_config([f"data.batch_size={batch_size}"])
    datamodule = MNISTDataModule(data_dir=str(root), batch_size=batch_size, cache_dir=str(out / ".cache"))
    torch.manual_seed(SEED)
    clock = EpochClock()
    folder = Path(tempfile.mkdtemp(prefix="bare-", dir=out))
    trainer = L.Trainer(
        max_epochs=warmup + epochs,
        accelerator="gpu" if device.type == "cuda" else "cpu",
        devices=1,
        logger=TensorBoardLogger(folder, name="", version=""),
        default_root_dir=folder,
        callbacks=[clock, TQDMProgressBar(refresh_rate=50)],
        num_sanity_val_steps=0,
        enable_model_summary=False,
    )
    steps = -(-(60000 - VAL_SIZE) // batch_size) * (warmup + epochs)
    trainer.fit(BareModule(cfg, steps), datamodule=datamodule)
    return clock.seconds[warmup:]


def project_epoch(
    root: Path, batch_size: int, device: torch.device, epochs: int, warmup: int, out: Path
) -> list[float]:
    """Seconds per whole epoch of the default `train.py` run (training, validation, checkpoints,
    logging, progress bar), from run.json's `epoch_seconds`."""
    output_dir = Path(tempfile.mkdtemp(prefix="epoch-", dir=out))
    overrides = [
        f"paths.data_dir={root}",
        f"paths.output_dir={output_dir}",
        f"data.batch_size={batch_size}",
        f"trainer.accelerator={'gpu' if device.type == 'cuda' else 'cpu'}",
        "trainer.devices=1",
        f"trainer.max_epochs={warmup + epochs}",
        "test=false",
    ]
    train(project_config(overrides), RunDir(output_dir), overrides)
    history = RunDir(output_dir).record()["history"]
    return [row["epoch_seconds"] for row in history[warmup:]]


def device_comparison(root: Path, devices: list[torch.device]) -> dict[str, dict[str, float]]:
    """Seconds for 15 batches of 128 and for a full epoch at 128, plain resident loop, per device."""
    results = {}
    for device in devices:
        inputs, targets = resident_tensors(root, device)
        model, optimizer = make_model(device)
        train_epoch(model, optimizer, resident_batches(inputs, targets, 128), device)  # warm-up
        timings = {}
        for name, limit in (("15 batches of 128", 15), ("1 epoch at 128", None)):
            samples = []
            for _ in range(3):
                start = time.perf_counter()
                train_epoch(model, optimizer, resident_batches(inputs, targets, 128, limit), device)
                samples.append(time.perf_counter() - start)
            timings[name] = statistics.median(samples)
        results[device.type] = timings
    return results


def bar_chart(path: Path, title: str, labels: list[str], values: list[float], unit: str) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 0.6 * len(labels) + 1.5), layout="constrained")
    ax = fig.add_subplot()
    bars = ax.barh(labels[::-1], values[::-1], color="#4c72b0")
    ax.bar_label(bars, labels=[f"{v:,.0f}" if v >= 100 else f"{v:.3f}" for v in values[::-1]], padding=3)
    ax.set_xlabel(unit)
    ax.set_title(title)
    ax.margins(x=0.2)
    fig.savefig(path, dpi=110)


def grouped_chart(path: Path, results: dict[str, dict[str, float]]) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 3.5), layout="constrained")
    measures = list(next(iter(results.values())))
    for i, measure in enumerate(measures):
        ax = fig.add_subplot(1, len(measures), i + 1)
        devices = list(results)
        bars = ax.bar(devices, [results[d][measure] for d in devices], color=["#4c72b0", "#dd8452"][: len(devices)])
        ax.bar_label(bars, fmt="%.3f s")
        ax.set_title(measure)
        ax.set_ylabel("seconds")
        ax.margins(y=0.2)
    fig.savefig(path, dpi=110)


def ensure_data(data_dir: str | None, out: Path) -> tuple[Path, str]:
    cache = out / ".cache"
    if data_dir:
        return prepare_root(dataset_class("mnist"), Path(data_dir), [], cache), f"real MNIST from {data_dir}"
    generated = out / "generated"
    if not (generated / "MNIST" / "raw").is_dir():
        write_dataset(generated / "MNIST" / "raw", n_train=60000, n_test=10000, gz=False)
    return prepare_root(dataset_class("mnist"), generated, [], cache), "GENERATED data (no data_dir given)"


def startup_times(runs: int) -> list[str]:
    """Wall seconds of answers that need no training (`--help`, `--cfg job`, mistakes), median of `runs`,
    each a fresh `python train.py ...` process as a user starts it."""
    cases = [["--help"], ["--cfg", "job"], ["model.hiden=3"], ["seed=abc"], ["model.optimizer.lr=0"]]
    script = Path(__file__).resolve().parents[1] / "train.py"
    lines = ["### startup: answers without training", "", "| command | wall s (median) | exit |", "|---|---:|---:|"]
    for arguments in cases:
        seconds, code = [], 0
        for _ in range(runs):
            start = time.perf_counter()
            code = subprocess.run([sys.executable, str(script), *arguments], capture_output=True).returncode
            seconds.append(time.perf_counter() - start)
        lines.append(f"| `python train.py {' '.join(arguments)}` | {statistics.median(seconds):.2f} | {code} |")
        print(lines[-1], flush=True)
    return [*lines, ""]


def whole_epoch_tables(root: Path, devices: list[torch.device], args: DictConfig, out: Path, report: dict) -> list[str]:
    lines = []
    for device in devices:
        lines += [
            f"### {device.type}: whole epoch, default config vs plain loop with evaluation",
            "",
            "| batch | plain loop + eval (s/epoch) | bare LightningModule (s/epoch) | project default (s/epoch) "
            "| bare x plain | project x plain | project time / bare time |",
            "|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for batch_size in args.epoch_batch_sizes:
            print(f"[{device.type}] whole epoch, batch {batch_size} ...", flush=True)
            # Alternating rounds, so a slow spell of a shared machine hits every contender alike.
            plain_epochs, bare_epochs, project_epochs = [], [], []
            for _ in range(args.rounds):
                plain_epochs += plain_epoch_with_eval(root, batch_size, device, args.epochs, args.warmup)
                bare_epochs += bare_lightning_epoch(root, batch_size, device, args.epochs, args.warmup, out)
                project_epochs += project_epoch(root, batch_size, device, args.epochs, args.warmup, out)
            plain, bare, ours = (statistics.median(e) for e in (plain_epochs, bare_epochs, project_epochs))
            report[f"{device.type}/{batch_size}"] = {"plain": plain, "bare": bare, "project": ours}
            lines.append(
                f"| {batch_size} | {plain:.3f} | {bare:.3f} | {ours:.3f} | {plain / bare:.2f} | {plain / ours:.2f} "
                f"| {ours / bare:.2f} |"
            )
        lines.append("")
    return lines


def throughput_tables(root: Path, devices: list[torch.device], args: DictConfig, out: Path, report: dict) -> list[str]:
    lines = []
    for device in devices:
        contenders: dict[str, Callable[[], list[float]]] = {
            "classic loop (torchvision + DataLoader)": lambda d=device: classic_loop(
                root, args.batch_size, d, args.epochs, args.warmup
            ),
            "plain loop, resident tensor": lambda d=device: resident_loop(
                root, args.batch_size, d, args.epochs, args.warmup
            ),
            "project Trainer, data.loader=dataloader": lambda d=device: project_trainer(
                root, args.batch_size, d, args.epochs, args.warmup, "dataloader", out
            ),
            "project Trainer, resident (default)": lambda d=device: project_trainer(
                root, args.batch_size, d, args.epochs, args.warmup, "resident", out
            ),
        }
        rates = {}
        for name, run in contenders.items():
            if not args.only or args.only in name:
                print(f"[{device.type}] {name} ...", flush=True)
                rates[name] = statistics.median(run())
        classic = rates.get("classic loop (torchvision + DataLoader)", float("nan"))
        floor = rates.get("plain loop, resident tensor", float("nan"))
        lines += [
            f"### {device.type}: training throughput at batch {args.batch_size}",
            "",
            "| contender | samples/s | x classic | x plain resident | s/epoch |",
            "|---|---:|---:|---:|---:|",
        ]
        for name, rate in rates.items():
            lines.append(f"| {name} | {rate:,.0f} | {rate / classic:.2f} | {rate / floor:.2f} | {55000 / rate:.3f} |")
        lines.append("")
        report[device.type] = rates
        bar_chart(
            out / f"benchmark_{device.type}.png",
            f"Training throughput on {device.type}, batch {args.batch_size}",
            list(rates),
            list(rates.values()),
            "samples/s (median)",
        )
    return lines


def sweep_times(root: Path, args: DictConfig, out: Path, report: dict) -> list[str]:
    """Whole-process wall seconds of one grid three ways: `train.py -m` with the default (parallel) launcher,
    with `hydra/launcher=basic`, and as plain loops in one process (scripts/plain_sweep.py), in alternating
    rounds; each process as a user starts it."""
    scripts, root = Path(__file__).resolve().parent, root.resolve()  # the processes run in `out`
    values = {k: ",".join(map(str, args[f"sweep_{k}"])) for k in ("batch_sizes", "lrs", "seeds")}
    grid = [
        f"data.batch_size={values['batch_sizes']}",
        f"model.optimizer.lr={values['lrs']}",
        f"seed={values['seeds']}",
        f"trainer.max_epochs={args.sweep_epochs}",
    ]
    jobs = len(args.sweep_batch_sizes) * len(args.sweep_lrs) * len(args.sweep_seeds)
    train_py = [sys.executable, str(scripts.parent / "train.py"), "-m", *grid, f"paths.data_dir={root}"]
    contenders = {
        "`train.py -m ...` (default: parallel launcher)": train_py,
        "`train.py -m ... hydra/launcher=basic`": [*train_py, "hydra/launcher=basic"],
        f"plain PyTorch loops, one process ({jobs} trainings one after another)": [
            sys.executable,
            str(scripts / "plain_sweep.py"),
            str(root),
            *(f"{k}={v}" for k, v in values.items()),
            f"epochs={args.sweep_epochs}",
        ],
    }
    seconds: dict[str, list[float]] = {name: [] for name in contenders}
    for round_ in range(args.rounds):
        for i, (name, command) in enumerate(contenders.items()):
            log_dir = out / f"sweep-{round_}-{i}"
            print(f"[sweep] round {round_ + 1}: {name} ...", flush=True)
            start = time.perf_counter()
            done = subprocess.run(
                [*command, f"paths.log_dir={log_dir}"] if "train.py" in command[1] else command,
                capture_output=True,
                text=True,
                cwd=out,
            )
            seconds[name].append(time.perf_counter() - start)
            if done.returncode != 0:
                raise SystemExit(f"error: {' '.join(command)} exited {done.returncode}: {done.stderr[-2000:]}")
            shutil.rmtree(log_dir, ignore_errors=True)
    medians = {name: statistics.median(s) for name, s in seconds.items()}
    plain = list(medians.values())[-1]
    report["sweep"] = {"grid": grid, "seconds": seconds}
    lines = [
        f"### sweep: {jobs} jobs, `{' '.join(grid)}`, whole process, median of {args.rounds}",
        "",
        "| how the trainings ran | wall s | x plain (speed) |",
        "|---|---:|---:|",
    ]
    lines += [f"| {name} | {m:.1f} | {plain / m:.2f} |" for name, m in medians.items()]
    return [*lines, ""]


def fixed_cost(root: Path, args: DictConfig, out: Path, report: dict) -> list[str]:
    """What a sweep job costs beyond its training: `fixed_cost_jobs` one-batch jobs (one batch of training,
    validation and test) run by one process under `hydra/launcher=basic`, as one worker runs its jobs;
    the mean of each part over every job but the first (which pays the imports), and the imports alone."""
    from hydra.core.global_hydra import GlobalHydra

    import experiments.train as app
    from experiments.checkpoints import io
    from experiments.config import schema as schema_module
    from experiments.data.datamodule import MNISTDataModule
    from experiments.rundir import RunDir
    from experiments.tensorboard import figures, hparams

    clock: dict[str, list[float]] = {}
    job = [-1]

    def timed(owner: Any, attr: str, name: str) -> None:
        function = getattr(owner, attr)

        @functools.wraps(function)  # the Trainer's signature stays readable: train checks arguments against it
        def wrapper(*a: Any, **k: Any) -> Any:
            start = time.perf_counter()
            try:
                return function(*a, **k)
            finally:
                if job[0] >= 1:
                    clock.setdefault(name, []).append(time.perf_counter() - start)

        setattr(owner, attr, wrapper)

    def task(cfg: DictConfig) -> Any:  # the job as Hydra runs it, counted
        job[0] += 1
        return app.run(cfg)

    parts = [
        (schema_module, "validate", "schema checks"),
        (MNISTDataModule, "prepare_data", "data files checked"),
        (MNISTDataModule, "setup", "data decoded, normalised (cached per process)"),
        (L.Trainer, "__init__", "Trainer built"),
        (hparams, "start_session", "HParams session start"),
        (L.Trainer, "fit", "fit: 1 batch, validation, 2 checkpoints"),
        (io.AtomicCheckpointIO, "save_checkpoint", "  of which checkpoint writes"),
        (L.Trainer, "test", "test: 1 batch"),
        (figures, "write_test_figures", "test figures (PNG + TensorBoard)"),
        (RunDir, "save_progress", "run.json while training"),
        (RunDir, "complete", "run.json completed, HParams session end"),
        (app, "train", "train(): all of the above and the rest"),
        (app, "run", "the job, as Hydra calls it"),
    ]
    saved = [(owner, attr, getattr(owner, attr)) for owner, attr, _ in parts]
    for owner, attr, name in parts:
        timed(owner, attr, name)
    n = args.fixed_cost_jobs
    argv = [
        "train.py", "-m", "hydra/launcher=basic", f"paths.data_dir={root}", f"paths.log_dir={out / 'fixed_cost'}",
        "trainer.max_epochs=1", "trainer.limit_train_batches=1", "trainer.limit_val_batches=1",
        "trainer.limit_test_batches=1", f"seed={','.join(str(i) for i in range(n))}",
    ]  # fmt: skip
    saved_argv, sys.argv = sys.argv, argv
    GlobalHydra.instance().clear()
    try:
        hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="train")(task)()
    except SystemExit as exc:
        if exc.code:
            raise
    finally:
        sys.argv = saved_argv
        for owner, attr, function in saved:
            setattr(owner, attr, function)
        GlobalHydra.instance().clear()
    # Hydra composes each job's config (the sweeper to check the batch first, the launcher again per job).
    GlobalHydra.instance().clear()
    with hydra.initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        compose(config_name="train", overrides=[f"paths.data_dir={root}"])
        start = time.perf_counter()
        for i in range(n):
            compose(config_name="train", overrides=[f"paths.data_dir={root}", f"seed={i}"], return_hydra_config=True)
        clock["Hydra composes the job's config (x2 per job)"] = [2 * (time.perf_counter() - start) / n]
    imports = "import experiments.train, lightning, torchvision, matplotlib.figure, experiments.tensorboard.figures"
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", imports], check=True)
    import_seconds = time.perf_counter() - start
    shutil.rmtree(out / "fixed_cost", ignore_errors=True)
    means = {name: sum(v) / (1 if "x2" in name else n - 1) for name, v in clock.items()}
    report["fixed_cost"] = {**means, "imports, once per worker process": import_seconds}
    lines = [
        f"### fixed cost per job: {n} one-batch jobs in one process, mean over jobs 2-{n}",
        "",
        "| part | s per job |",
        "|---|---:|",
    ]
    order = [name for _, _, name in parts] + ["Hydra composes the job's config (x2 per job)"]
    lines += [f"| {name} | {means[name]:.3f} |" for name in order if name in means]
    lines.append(f"| imports (Python, Lightning, torchvision, matplotlib): once per worker | {import_seconds:.2f} |")
    return [*lines, ""]


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="benchmark")
@one_line_errors
def main(args: DictConfig) -> None:
    schema.validate(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {}
    lines = startup_times(args.startup_runs) if "startup" in args.sections else []
    if {"epoch", "throughput", "sweep", "fixed_cost"} & set(args.sections):
        # Every contender runs with denormals flushed, as the project's train.py does (flush_denormal: true).
        torch.set_flush_denormal(True)
        root, source = ensure_data(args.data_dir, out)
        wanted = ["cpu", "cuda"] if args.device == "both" else [args.device]
        devices = [torch.device(d) for d in wanted if d == "cpu" or torch.cuda.is_available()]
        if len(devices) < len(wanted):
            print("cuda: no CUDA GPU visible, skipped")
        if not devices:
            raise SystemExit("error: device=cuda but no CUDA GPU is visible; use device=cpu")
        report["data"] = source
        lines += [
            f"Data: {source}; median of {args.epochs} epochs after {args.warmup} warm-up each"
            f" (whole epoch: {args.rounds} alternating rounds).",
            "",
        ]
        if "epoch" in args.sections:
            lines += whole_epoch_tables(root, devices, args, out, report.setdefault("whole_epoch", {}))
        if "throughput" in args.sections:
            lines += throughput_tables(root, devices, args, out, report.setdefault("throughput", {}))
        if "sweep" in args.sections:
            lines += sweep_times(root, args, out, report)
        if "fixed_cost" in args.sections:
            lines += fixed_cost(root, args, out, report)
        if args.device == "both" and len(devices) == 2:
            comparison = device_comparison(root, devices)
            report["devices"] = comparison
            lines += [
                "### CPU vs GPU (plain resident loop, batch 128)",
                "",
                "| measure | cpu (s) | cuda (s) |",
                "|---|---:|---:|",
            ]
            lines += [f"| {m} | {comparison['cpu'][m]:.4f} | {comparison['cuda'][m]:.4f} |" for m in comparison["cpu"]]
            grouped_chart(out / "devices.png", comparison)
    table = "\n".join(lines)
    print("\n" + table)
    (out / "benchmark.md").write_text(table + "\n")
    (out / "benchmark.json").write_text(json.dumps(report, indent=2))
    print(f"\nWrote {out / 'benchmark.md'} and benchmark.json (and charts) in {out}")


if __name__ == "__main__":
    main()
