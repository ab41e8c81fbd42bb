"""MNIST-family LightningDataModule with a device-resident fast path.

MNIST fits in memory many times over, so by default each split is decoded and normalised once into one
tensor on the training device and batches are index slices of a seeded per-epoch permutation. That
removes per-sample Python (PIL conversion, ToTensor, collate) from the hot loop. The classic
torchvision + ToTensor + DataLoader path stays available as `loader: dataloader` for per-sample transforms.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterator
from pathlib import Path

import lightning as L
import torch
from torch.utils.data import DataLoader, Subset
from torchvision import transforms
from torchvision.datasets import MNIST

from experiments.data.files import dataset_class, image_shape, load_split, prepare_root, split_file_names
from experiments.errors import ConfigError, DataError

LOADERS = ("resident", "dataloader")


class ResidentBatches:
    """Mini-batches sliced from tensors that already live on the target device.

    Each epoch draws a permutation from `seed + epoch` (so shuffling is reproducible and a resumed run
    sees the same order), keeps this rank's shard of it and yields `(inputs[idx], targets[idx])`.
    Every rank gets the same number of batches, which DDP needs to avoid hanging on the last step.
    """

    def __init__(
        self,
        inputs: torch.Tensor,
        targets: torch.Tensor,
        batch_size: int,
        shuffle: bool = False,
        drop_last: bool = False,
        seed: int = 0,
        epoch: Callable[[], int] | None = None,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        self.inputs, self.targets = inputs, targets
        self.batch_size, self.shuffle, self.drop_last = batch_size, shuffle, drop_last
        self.seed, self.rank, self.world_size = seed, rank, world_size
        self._epoch = epoch
        self._iterations = 0  # epoch counter when no epoch source is given
        # Shards are truncated to equal length: at most world_size - 1 samples are skipped per epoch.
        self.shard_size = len(inputs) // world_size if world_size > 1 else len(inputs)
        whole, rest = divmod(self.shard_size, batch_size)
        self.num_batches = whole + (1 if rest and not drop_last else 0)

    def __len__(self) -> int:
        return self.num_batches

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        epoch = self._epoch() if self._epoch is not None else self._iterations
        self._iterations += 1
        device = self.inputs.device
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed + epoch)
            order = torch.randperm(len(self.inputs), generator=generator).to(device)
        else:
            order = torch.arange(len(self.inputs), device=device)
        if self.world_size > 1:
            order = order[self.rank :: self.world_size][: self.shard_size]
        samples = min(self.num_batches * self.batch_size, self.shard_size)
        for start in range(0, samples, self.batch_size):
            index = order[start : min(start + self.batch_size, samples)]
            yield self.inputs[index], self.targets[index]


# A sweep runs many jobs in one worker process (experiments.launch), mostly on the same files and split:
# each is decoded, and each split normalised onto its device, once per process rather than once per job.
# The cached tensors are shared by those jobs and never written to (batches are index copies). One entry
# each: a job on other files, another split or device replaces it. `stamp` changes when a file does.


def files_stamp(cls: type[MNIST], root: Path) -> tuple[tuple[str, int, int, int], ...]:
    """What identifies the four IDX files' contents for the cache: path, inode, size and modification time."""
    raw = root / cls.__name__ / "raw"
    paths = [raw / name for train in (True, False) for name in split_file_names(cls, train)]
    return tuple((str(p), (st := p.stat()).st_ino, st.st_size, st.st_mtime_ns) for p in paths)


@functools.lru_cache(maxsize=1)
def decoded(cls: type[MNIST], root: Path, stamp: tuple) -> tuple[torch.Tensor, ...]:
    """Train images and labels, test images and labels, as load_split reads them (checked by prepare_root)."""
    return (*load_split(cls, root, train=True), *load_split(cls, root, train=False))


@functools.lru_cache(maxsize=1)
def normalised(
    cls: type[MNIST], root: Path, stamp: tuple, mean: float, std: float, device: torch.device
) -> tuple[torch.Tensor, ...]:
    """All 60,000 training and the 10,000 test (inputs, targets), normalised and flattened, on `device`."""

    def to_device(images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        inputs = images.to(device=device, dtype=torch.float32).div_(255).sub_(mean).div_(std)
        return inputs.flatten(1), labels.to(device)

    train_images, train_labels, test_images, test_labels = decoded(cls, root, stamp)
    return (*to_device(train_images, train_labels), *to_device(test_images, test_labels))


@functools.lru_cache(maxsize=1)
def resident_splits(
    cls: type[MNIST],
    root: Path,
    stamp: tuple,
    split: tuple[int, int, int],  # val_size, seed, train_size
    mean: float,
    std: float,
    device: torch.device,
) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """(inputs, targets) of train, val and test on `device`: the split is a gather from `normalised`."""
    train_inputs, train_targets, test_inputs, test_targets = normalised(cls, root, stamp, mean, std, device)
    train_index, val_index = (i.to(device) for i in split_indices(len(train_inputs), *split))
    return {
        "train": (train_inputs[train_index], train_targets[train_index]),
        "val": (train_inputs[val_index], train_targets[val_index]),
        "test": (test_inputs, test_targets),
    }


def split_indices(total: int, val_size: int, seed: int, train_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Positions of the training and the validation images among the `total` training images: validation
    the first `val_size` of a permutation seeded by `seed`, training the next `train_size`."""
    order = torch.randperm(total, generator=torch.Generator().manual_seed(seed))
    return order[val_size : val_size + train_size], order[:val_size]


class MNISTDataModule(L.LightningDataModule):
    """MNIST or Fashion-MNIST: official 10k test set, validation carved from the 60k training images."""

    def __init__(
        self,
        dataset: str = "mnist",
        data_dir: str = "data",
        batch_size: int = 64,
        eval_batch_size: int = 1000,
        val_size: int = 5000,
        train_size: int | None = None,
        normalize: bool = True,
        mean: float = 0.1307,
        std: float = 0.3081,
        seed: int = 42,
        loader: str = "resident",
        drop_last: bool = False,
        num_workers: int = 0,
        pin_memory: bool = False,
        persistent_workers: bool = False,
        search_dirs: list[str] | tuple[str, ...] = (),
        cache_dir: str = "outputs/.cache",
    ) -> None:
        super().__init__()
        if loader not in LOADERS:
            raise ConfigError(f"data.loader={loader!r} is not supported; choose one of {list(LOADERS)}")
        self.dataset_cls = dataset_class(dataset)
        self.data_dir, self.cache_dir = Path(data_dir), Path(cache_dir)
        self.search_dirs = [Path(d) for d in search_dirs]
        self.batch_size, self.val_size, self.seed = batch_size, val_size, seed
        self.train_size = train_size
        if eval_batch_size < 1:
            raise ConfigError(f"data.eval_batch_size={eval_batch_size} must be >= 1")
        # Validation and test only: no gradients, so a larger batch changes no result and costs fewer calls.
        self.eval_batch_size = eval_batch_size
        self.mean, self.std = (mean, std) if normalize else (0.0, 1.0)
        self.loader, self.drop_last = loader, drop_last
        self.num_workers, self.pin_memory = num_workers, pin_memory
        self.persistent_workers = persistent_workers and num_workers > 0
        self.root: Path | None = None
        self.indices: dict[str, torch.Tensor] = {}  # train/val positions within the 60k training images
        self.splits: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}  # resident (inputs, targets)

    @property
    def classes(self) -> list[str]:
        return list(self.dataset_cls.classes)

    def prepare_data(self) -> None:
        # Runs on one process per node: the only place that may extract or download files. The files are
        # checked there, once: train.py calls this before building anything, Lightning again in fit().
        if self.root is None:
            self.root = prepare_root(self.dataset_cls, self.data_dir, self.search_dirs, self.cache_dir)

    @property
    def image_shape(self) -> tuple[int, int]:
        """(rows, columns) of the dataset's images, as its files say (28x28 for MNIST and Fashion-MNIST)."""
        if self.root is None:
            self.prepare_data()
        assert self.root is not None
        return image_shape(self.dataset_cls, self.root)

    def check_model(self, model: torch.nn.Module) -> None:
        """DataError naming the images file when `model` cannot take its images (its `input_shape`: rows and
        columns, or a number of pixels for the networks that flatten) or has fewer outputs than the dataset
        has classes: once, before fit or test, rather than an error from inside the first step. A model
        that states neither (one of your own) is not checked."""
        shape, expected = self.image_shape, getattr(model, "input_shape", None)
        assert self.root is not None
        raw = self.root / self.dataset_cls.__name__ / "raw"
        outputs = dict(getattr(model, "hparams", {})).get("num_classes")
        if isinstance(outputs, int) and outputs < len(self.classes):
            labels = raw / split_file_names(self.dataset_cls, train=True)[1]
            raise DataError(
                f"{labels} holds labels 0-{len(self.classes) - 1} but the model has {outputs} outputs "
                f"(model.num_classes={outputs}); set model.num_classes={len(self.classes)}"
            )
        if expected is None or tuple(expected) in (shape, (math.prod(shape),)):
            return
        expected = tuple(expected)
        images = raw / split_file_names(self.dataset_cls, train=True)[0]
        takes = f"{expected[0]}-pixel images" if len(expected) == 1 else "x".join(map(str, expected)) + " images"
        raise DataError(
            f"{images} holds {shape[0]}x{shape[1]} images but the model takes {takes}: use MNIST-format files of "
            f"images that size, or a model built for {shape[0]}x{shape[1]} ones (model.input_size={math.prod(shape)} "
            "for mlp and linear; cnn takes 28x28 only)"
        )

    def setup(self, stage: str | None = None) -> None:
        if self.indices:
            return
        if self.root is None:
            self.prepare_data()
        assert self.root is not None
        stamp = files_stamp(self.dataset_cls, self.root)
        train_images, _, _, _ = decoded(self.dataset_cls, self.root, stamp)
        train_index, val_index = self._split_indices(len(train_images))
        self.indices = {"train": train_index, "val": val_index}
        if self.loader == "resident":
            split = (self.val_size, self.seed, len(train_index))
            self.splits = resident_splits(
                self.dataset_cls, self.root, stamp, split, self.mean, self.std, self._device()
            )

    def _split_indices(self, total: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Validation: the first `val_size` of a permutation seeded by `seed`; training: the rest, or its first
        `train_size` (a seeded subset whose validation set is the same as the full run's)."""
        if not 0 <= self.val_size < total:
            raise ConfigError(
                f"data.val_size={self.val_size} must be >= 0 and smaller than the {total} training images"
            )
        available = total - self.val_size
        if self.train_size is not None and self.train_size > available:
            raise ConfigError(
                f"data.train_size={self.train_size} is more than the {available} training images left after "
                f"data.val_size={self.val_size}: use at most {available}, or null for all of them"
            )
        train_size = available if self.train_size is None else self.train_size
        if self.batch_size > train_size:
            raise ConfigError(f"data.batch_size={self.batch_size} is larger than the {train_size} training samples")
        return split_indices(total, self.val_size, self.seed, train_size)

    def _device(self) -> torch.device:
        # Resident data lives where the model trains.
        return self.trainer.strategy.root_device if self.trainer is not None else torch.device("cpu")

    def _batches(self, split: str, shuffle: bool) -> ResidentBatches | DataLoader:
        if self.loader == "dataloader":
            return self._dataloader(split, shuffle)
        inputs, targets = self.splits[split]
        trainer = self.trainer
        return ResidentBatches(
            inputs,
            targets,
            self.batch_size if split == "train" else self.eval_batch_size,
            shuffle=shuffle,
            drop_last=self.drop_last and shuffle,
            seed=self.seed,
            epoch=(lambda: trainer.current_epoch) if trainer is not None else None,
            rank=trainer.global_rank if trainer is not None else 0,
            world_size=trainer.world_size if trainer is not None else 1,
        )

    def _dataloader(self, split: str, shuffle: bool) -> DataLoader:
        """The classic path: a torchvision dataset with per-sample ToTensor + Normalize."""
        assert self.root is not None
        transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize((self.mean,), (self.std,))])
        dataset = self.dataset_cls(str(self.root), train=split != "test", transform=transform)
        subset = Subset(dataset, self.indices[split].tolist()) if split != "test" else dataset
        return DataLoader(
            subset,
            batch_size=self.batch_size if split == "train" else self.eval_batch_size,
            shuffle=shuffle,
            drop_last=self.drop_last and shuffle,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            persistent_workers=self.persistent_workers,
            generator=torch.Generator().manual_seed(self.seed) if shuffle else None,
        )

    def train_dataloader(self) -> ResidentBatches | DataLoader:
        # overfit_batches must see the same batches every epoch; Lightning can only switch off the
        # shuffling of a DataLoader's sampler, so the resident path asks the trainer itself.
        overfitting = self.trainer is not None and bool(self.trainer.overfit_batches)
        batches = self._batches("train", shuffle=not overfitting)
        self._check_last_batch(len(batches), overfitting)
        return batches

    def _check_last_batch(self, count: int, overfitting: bool) -> None:
        """ConfigError before the first step when an epoch would end with a batch of one image and the model
        has batch norm, which cannot normalise a single sample in training (torch raises in the forward
        pass, after a whole epoch of work)."""
        trainer = self.trainer
        if trainer is None or self.drop_last or overfitting or trainer.world_size != 1:
            return
        norms = (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d, torch.nn.BatchNorm3d, torch.nn.SyncBatchNorm)
        model = trainer.lightning_module
        if model is None or not any(isinstance(m, norms) for m in model.modules()):
            return
        samples = len(self.indices["train"])
        if samples % self.batch_size != 1:
            return
        limit = trainer.limit_train_batches
        used = count if limit is None else limit if isinstance(limit, int) else int(count * limit)
        if used < count:  # the epoch stops before its last batch
            return
        raise ConfigError(
            f"data.batch_size={self.batch_size}: the {samples} training images leave a last batch of one image "
            "each epoch, which batch norm cannot train on; set data.drop_last=true, or another data.batch_size "
            f"(e.g. {self.batch_size + 1}) or data.val_size"
        )

    def val_dataloader(self) -> ResidentBatches | DataLoader:
        return self._batches("val", shuffle=False)

    def test_dataloader(self) -> ResidentBatches | DataLoader:
        return self._batches("test", shuffle=False)
