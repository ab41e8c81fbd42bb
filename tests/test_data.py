"""The DataModule on generated IDX files: layouts, compression, splits, dtypes, batches and errors."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
import torch

from experiments.data.datamodule import MNISTDataModule, ResidentBatches
from experiments.data.synthetic import FILES, write_dataset
from experiments.errors import ConfigError, DataError


def make_datamodule(data_dir: Path, tmp_path: Path, **kwargs: object) -> MNISTDataModule:
    options = {"data_dir": str(data_dir), "cache_dir": str(tmp_path / "cache"), "val_size": 100, "batch_size": 32}
    return MNISTDataModule(**{**options, **kwargs})


@pytest.mark.parametrize("gz", [True, False], ids=["gzip", "raw"])
def test_loads_gzip_and_raw_files(gz: bool, tmp_path: Path) -> None:
    write_dataset(tmp_path / "data" / "MNIST" / "raw", n_train=300, n_test=50, gz=gz)
    dm = make_datamodule(tmp_path / "data", tmp_path)
    dm.setup("fit")
    sizes = {name: len(split[0]) for name, split in dm.splits.items()}
    assert sizes == {"train": 200, "val": 100, "test": 50}
    inputs, targets = dm.splits["train"]
    assert inputs.dtype == torch.float32 and inputs.shape == (200, 784)
    assert targets.dtype == torch.int64 and int(targets.min()) >= 0 and int(targets.max()) <= 9
    # Normalised with the MNIST mean/std: black pixels map to -mean/std.
    assert float(inputs.min()) == pytest.approx(-0.1307 / 0.3081, abs=1e-5)


def test_gzip_in_read_only_dir_is_extracted_to_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    raw = write_dataset(tmp_path / "data" / "MNIST" / "raw", n_train=150, n_test=20)
    # chmod does not stop root (CI), so declare the folder read-only the way the code asks about it.
    monkeypatch.setattr("experiments.data.files._writable", lambda directory: directory != raw)
    dm = make_datamodule(tmp_path / "data", tmp_path, val_size=50)
    dm.setup()
    assert sorted(p.name for p in raw.iterdir()) == sorted(f"{n}.gz" for n in FILES.values())
    assert dm.root is not None and str(dm.root).startswith(str(tmp_path / "cache"))
    assert len(dm.splits["train"][0]) == 100


def test_flat_layout_found_in_search_dirs(tmp_path: Path) -> None:
    """Debian's dataset packages install the four .gz files flat, with no <Name>/raw/ folders."""
    write_dataset(tmp_path / "debian", n_train=120, n_test=30, gz=True)
    dm = make_datamodule(
        tmp_path / "empty", tmp_path, dataset="fashion_mnist", search_dirs=[str(tmp_path / "debian")], val_size=20
    )
    dm.setup()
    assert len(dm.splits["test"][0]) == 30
    assert dm.classes[0] == "T-shirt/top"


def test_validation_split_is_seeded_and_disjoint(tmp_path: Path) -> None:
    write_dataset(tmp_path / "data" / "MNIST" / "raw", n_train=300, n_test=10)
    first, second = (make_datamodule(tmp_path / "data", tmp_path, seed=7) for _ in range(2))
    first.setup()
    second.setup()
    assert torch.equal(first.indices["val"], second.indices["val"])
    assert not set(first.indices["val"].tolist()) & set(first.indices["train"].tolist())
    other = make_datamodule(tmp_path / "data", tmp_path, seed=8)
    other.setup()
    assert not torch.equal(first.indices["val"], other.indices["val"])


def test_missing_files_error_names_files_and_directory(tmp_path: Path) -> None:
    dm = make_datamodule(tmp_path / "nowhere", tmp_path)
    with pytest.raises(DataError) as info:
        dm.prepare_data()
    message = str(info.value)
    assert "train-images-idx3-ubyte" in message and "t10k-labels-idx1-ubyte" in message
    assert str(tmp_path / "nowhere" / "MNIST" / "raw") in message and "paths.data_dir" in message
    assert not (tmp_path / "nowhere").exists(), "a failed download must not leave folders behind"


def test_truncated_file_is_reported(tmp_path: Path) -> None:
    raw = write_dataset(tmp_path / "data" / "MNIST" / "raw", n_train=100, n_test=10, gz=False)
    images = raw / FILES[("train", "images")]
    images.write_bytes(images.read_bytes()[:5000])
    dm = make_datamodule(tmp_path / "data", tmp_path, val_size=10)
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte.*truncated or corrupt"):
        dm.setup()


def test_corrupt_gzip_is_reported(tmp_path: Path) -> None:
    raw = write_dataset(tmp_path / "data" / "MNIST" / "raw", n_train=100, n_test=10, gz=True)
    archive = raw / f"{FILES[('test', 'labels')]}.gz"
    archive.write_bytes(archive.read_bytes()[:20])
    dm = make_datamodule(tmp_path / "data", tmp_path, val_size=10)
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte\.gz"):
        dm.prepare_data()
    assert not (raw / FILES[("test", "labels")]).exists(), "no half-extracted file may remain"


def test_extraction_is_atomic_with_normal_permissions_and_removes_stale_temps(tmp_path: Path) -> None:
    """A kill during an earlier extraction left a temporary file (atomic_write's name for it): the next start
    removes it, and what it extracts is complete and readable by everyone, whatever the umask."""
    raw = write_dataset(tmp_path / "data" / "MNIST" / "raw", n_train=100, n_test=10)
    stale = raw / f".{FILES[('train', 'images')]}.k9x2ab.tmp"
    stale.write_bytes(b"\0" * 100)
    old_umask = os.umask(0o077)
    try:
        make_datamodule(tmp_path / "data", tmp_path, val_size=10).prepare_data()
    finally:
        os.umask(old_umask)
    assert not stale.exists()
    for name in FILES.values():
        assert stat.S_IMODE((raw / name).stat().st_mode) == 0o644, name
    assert sorted(p.name for p in raw.iterdir()) == sorted([*FILES.values(), *(f"{n}.gz" for n in FILES.values())])


def _unreadable(monkeypatch: pytest.MonkeyPatch, *paths: Path) -> None:
    """Make `paths` unreadable the way the code asks about it (chmod does not stop root, which runs CI)."""
    access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: access(p, mode) and not (Path(p) in paths and mode == os.R_OK))


def test_unreadable_extracted_file_does_not_hide_a_readable_gz(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Someone else's 0600 extraction next to the published .gz: the .gz is extracted into the cache instead."""
    raw = write_dataset(tmp_path / "data" / "MNIST" / "raw", n_train=100, n_test=10)
    plain = raw / FILES[("train", "labels")]
    plain.write_bytes(b"someone else's")
    _unreadable(monkeypatch, plain)
    dm = make_datamodule(tmp_path / "data", tmp_path, val_size=10)
    dm.setup()
    assert dm.root is not None and str(dm.root).startswith(str(tmp_path / "cache"))
    assert len(dm.splits["train"][0]) == 90
    assert plain.read_bytes() == b"someone else's", "the other file is left alone"


def test_unreadable_file_without_a_gz_is_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    raw = write_dataset(tmp_path / "data" / "MNIST" / "raw", n_train=100, n_test=10, gz=False)
    _unreadable(monkeypatch, raw / FILES[("test", "labels")])
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte is not readable \(permission denied\)"):
        make_datamodule(tmp_path / "data", tmp_path, val_size=10).prepare_data()


def test_gz_holding_more_than_its_header_announces_is_refused(tmp_path: Path) -> None:
    """A .gz whose data runs past its header (a gzip bomb, or another file) is not inflated further."""
    import gzip

    raw = write_dataset(tmp_path / "data" / "MNIST" / "raw", n_train=100, n_test=10, gz=False)
    images = raw / FILES[("test", "images")]
    (raw / f"{images.name}.gz").write_bytes(gzip.compress(images.read_bytes() + b"\0" * (3 << 20)))
    images.unlink()
    with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte\.gz decompresses to more than 7840 bytes"):
        make_datamodule(tmp_path / "data", tmp_path, val_size=10).prepare_data()
    assert sorted(p.name for p in raw.iterdir() if p.name.startswith("t10k-images")) == [f"{images.name}.gz"]


def test_the_image_shape_and_the_model_input_shape(tmp_path: Path) -> None:
    from experiments.models.classifier import MNISTClassifier

    write_dataset(tmp_path / "data" / "MNIST" / "raw", n_train=100, n_test=10, size=32)
    dm = make_datamodule(tmp_path / "data", tmp_path, val_size=10)
    assert dm.image_shape == (32, 32)
    assert MNISTClassifier(net="cnn").input_shape == (28, 28)
    dm.check_model(MNISTClassifier(input_size=1024))
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte holds 32x32 images but the model takes 28x28"):
        dm.check_model(MNISTClassifier(net="cnn"))
    with pytest.raises(DataError, match=r"train-labels-idx1-ubyte holds labels 0-9 but the model has 5 outputs"):
        dm.check_model(MNISTClassifier(input_size=1024, num_classes=5))


def test_val_size_and_batch_size_are_checked_against_the_data(tmp_path: Path) -> None:
    write_dataset(tmp_path / "data" / "MNIST" / "raw", n_train=100, n_test=10)
    with pytest.raises(ConfigError, match=r"data\.val_size=100"):
        make_datamodule(tmp_path / "data", tmp_path, val_size=100).setup()
    with pytest.raises(ConfigError, match=r"data\.batch_size=500"):
        make_datamodule(tmp_path / "data", tmp_path, val_size=10, batch_size=500).setup()


@pytest.mark.parametrize("loader", ["resident", "dataloader"])
def test_train_size_is_a_seeded_subset_with_the_same_validation_and_test(tmp_path: Path, loader: str) -> None:
    write_dataset(tmp_path / "data" / "MNIST" / "raw", n_train=300, n_test=40)

    def sets(**kwargs: object) -> dict[str, set[int]]:
        dm = make_datamodule(tmp_path / "data", tmp_path, loader=loader, batch_size=16, **kwargs)
        dm.setup()
        # The images' own bytes identify them whichever loader serves them (ToTensor or the resident tensors).
        return {
            split: {hash(x.flatten().numpy().round(4).tobytes()) for batch, _ in loader_ for x in batch}
            for split, loader_ in (("train", dm.train_dataloader()), ("val", dm.val_dataloader()))
        }

    full, subset, again, other = sets(), sets(train_size=50), sets(train_size=50), sets(train_size=50, seed=7)
    assert len(full["train"]) == 200 and len(subset["train"]) == 50
    assert subset["train"] < full["train"] and subset["val"] == full["val"], "a subset of the training images only"
    assert again == subset, "the same seed picks the same images"
    assert other["train"] != subset["train"], "another seed picks others"
    dm = make_datamodule(tmp_path / "data", tmp_path, loader=loader, train_size=50)
    dm.setup()
    assert sum(len(y) for _, y in dm.test_dataloader()) == 40


def test_train_size_larger_than_the_data_is_one_clear_error(tmp_path: Path) -> None:
    write_dataset(tmp_path / "data" / "MNIST" / "raw", n_train=300, n_test=10)
    message = r"data\.train_size=201 is more than the 200 training images left after data\.val_size=100: use at most"
    with pytest.raises(ConfigError, match=message):
        make_datamodule(tmp_path / "data", tmp_path, train_size=201).setup()
    make_datamodule(tmp_path / "data", tmp_path, train_size=200).setup()  # all of them is fine
    with pytest.raises(ConfigError, match=r"data\.batch_size=32 is larger than the 20 training samples"):
        make_datamodule(tmp_path / "data", tmp_path, train_size=20).setup()


def test_resident_batches_cover_the_epoch_in_a_seeded_order() -> None:
    inputs, targets = torch.arange(10).float().unsqueeze(1), torch.arange(10)
    batches = ResidentBatches(inputs, targets, batch_size=4, shuffle=True, seed=1)
    assert len(batches) == 3
    epoch0 = torch.cat([y for _, y in batches])
    epoch1 = torch.cat([y for _, y in batches])
    assert sorted(epoch0.tolist()) == list(range(10)) and not torch.equal(epoch0, epoch1)
    again = ResidentBatches(inputs, targets, batch_size=4, shuffle=True, seed=1)
    assert torch.equal(torch.cat([y for _, y in again]), epoch0)
    for x, y in ResidentBatches(inputs, targets, batch_size=4, shuffle=True, seed=1):
        assert torch.equal(x.squeeze(1).long(), y), "inputs and targets stay paired"
    assert len(ResidentBatches(inputs, targets, batch_size=4, drop_last=True)) == 2


def test_resident_batches_shard_evenly_across_ranks() -> None:
    inputs, targets = torch.zeros(11, 1), torch.arange(11)
    shards = [ResidentBatches(inputs, targets, 2, shuffle=True, seed=3, rank=r, world_size=3) for r in range(3)]
    seen = [torch.cat([y for _, y in shard]).tolist() for shard in shards]
    assert {len(shard) for shard in shards} == {2}, "same number of batches on every rank"
    assert all(len(s) == 3 for s in seen)
    flat = [v for s in seen for v in s]
    assert len(set(flat)) == len(flat) == 9, "ranks see disjoint samples"


def test_dataloader_path_matches_the_resident_data(tmp_path: Path) -> None:
    write_dataset(tmp_path / "data" / "MNIST" / "raw", n_train=120, n_test=20)
    resident = make_datamodule(tmp_path / "data", tmp_path, val_size=20)
    classic = make_datamodule(tmp_path / "data", tmp_path, val_size=20, loader="dataloader")
    resident.setup()
    classic.setup()
    x, y = next(iter(classic.test_dataloader()))
    assert x.shape == (20, 1, 28, 28) and y.dtype == torch.int64
    assert torch.allclose(x.flatten(1), resident.splits["test"][0], atol=1e-6)
    assert len(classic.train_dataloader()) == len(resident.train_dataloader()) == 4


def test_eval_batches_use_the_eval_batch_size_and_cover_the_split(tmp_path: Path) -> None:
    write_dataset(tmp_path / "data" / "MNIST" / "raw", n_train=120, n_test=25)
    dm = make_datamodule(tmp_path / "data", tmp_path, val_size=20, batch_size=8, eval_batch_size=10)
    dm.setup()
    assert [len(y) for _, y in dm.train_dataloader()] == [8] * 12 + [4]
    assert [len(y) for _, y in dm.val_dataloader()] == [10, 10]
    assert [len(y) for _, y in dm.test_dataloader()] == [10, 10, 5]


def test_overfit_batches_switch_shuffling_off(tmp_path: Path) -> None:
    """Lightning cannot unshuffle a non-DataLoader iterable, so the datamodule must (debug=overfit)."""
    import lightning as L

    write_dataset(tmp_path / "data" / "MNIST" / "raw", n_train=120, n_test=10)
    dm = make_datamodule(tmp_path / "data", tmp_path, val_size=20)
    dm.setup()
    dm.trainer = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False)
    assert dm.train_dataloader().shuffle
    dm.trainer = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, overfit_batches=2)
    assert not dm.train_dataloader().shuffle
