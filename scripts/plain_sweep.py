"""The sweep benchmark's floor: a grid's trainings as plain PyTorch loops, one after another, in one process.

    python scripts/plain_sweep.py <root holding MNIST/raw/> batch_sizes=64,128 lrs=0.03,0.1 seeds=1,2 epochs=2

scripts/benchmark.py (`sections=[sweep]`) times this whole process beside `train.py -m` on the same grid.
Each training does what a default job does, by hand: the 784-128-128-10 MLP (experiments.models.mlp), SGD
with Nesterov momentum 0.9 and weight decay 5e-4, a one-cycle schedule stepped per batch, 55,000 training
images and 5,000 held out (split by the seed), validation every epoch, and the test set on the weights of
the best validation epoch. The data is decoded once. Only torch is imported: no Lightning, no Hydra.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from experiments.models.mlp import MLP

MEAN, STD, VAL_SIZE = 0.1307, 0.3081, 5000


def idx(path: Path) -> torch.Tensor:
    """An uncompressed IDX file (prepared by the benchmark): its header says how many dimensions."""
    dims = path.read_bytes()[3]
    header = np.fromfile(path, dtype=">u4", count=1 + dims)
    return torch.from_numpy(np.fromfile(path, dtype=np.uint8, offset=4 * (1 + dims)).reshape(header[1:].tolist()))


def normalised(images: torch.Tensor) -> torch.Tensor:
    return images.float().div_(255).sub_(MEAN).div_(STD).flatten(1)


def accuracy(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    with torch.no_grad():
        correct = sum(int((model(x[i : i + 1000]).argmax(-1) == y[i : i + 1000]).sum()) for i in range(0, len(x), 1000))
    return correct / len(x)


def train(data: dict[str, torch.Tensor], batch_size: int, lr: float, seed: int, epochs: int) -> dict[str, float]:
    order = torch.randperm(len(data["train_x"]), generator=torch.Generator().manual_seed(seed))
    train_x, train_y = data["train_x"][order[VAL_SIZE:]], data["train_y"][order[VAL_SIZE:]]
    val_x, val_y = data["train_x"][order[:VAL_SIZE]], data["train_y"][order[:VAL_SIZE]]
    torch.manual_seed(seed)
    model = MLP()
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, nesterov=True, weight_decay=5e-4, foreach=True)
    steps = -(-len(train_x) // batch_size) * epochs
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=lr, total_steps=steps, pct_start=0.25, cycle_momentum=False
    )
    best, best_state = -1.0, None
    for epoch in range(epochs):
        model.train()
        permutation = torch.randperm(len(train_x), generator=torch.Generator().manual_seed(seed + epoch))
        for start in range(0, len(train_x), batch_size):
            index = permutation[start : start + batch_size]
            loss = F.cross_entropy(model(train_x[index]), train_y[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
        val = accuracy(model, val_x, val_y)
        if val > best:
            best, best_state = val, {k: v.clone() for k, v in model.state_dict().items()}
    assert best_state is not None
    model.load_state_dict(best_state)
    return {"val_acc_best": best, "test_acc": accuracy(model, data["test_x"], data["test_y"])}


def main(argv: list[str]) -> None:
    raw = Path(argv[0]) / "MNIST" / "raw"
    options = dict(arg.split("=", 1) for arg in argv[1:])
    data = {
        "train_x": normalised(idx(raw / "train-images-idx3-ubyte")),
        "train_y": idx(raw / "train-labels-idx1-ubyte").long(),
        "test_x": normalised(idx(raw / "t10k-images-idx3-ubyte")),
        "test_y": idx(raw / "t10k-labels-idx1-ubyte").long(),
    }
    results = []
    for batch_size in map(int, options["batch_sizes"].split(",")):
        for lr in map(float, options["lrs"].split(",")):
            for seed in map(int, options["seeds"].split(",")):
                metrics = train(data, batch_size, lr, seed, int(options["epochs"]))
                results.append({"batch_size": batch_size, "lr": lr, "seed": seed, **metrics})
    print(json.dumps(results))


if __name__ == "__main__":
    main(sys.argv[1:])
