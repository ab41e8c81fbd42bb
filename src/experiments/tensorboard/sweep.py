"""A sweep's own TensorBoard runs, next to its jobs': `<sweep dir>/zz_report/` holds the HParams experiment
(the sweep's columns, written when the multirun starts: experiments.tensorboard.hparams.SweepHParamsCallback),
the report's bar chart, and one run per configuration, `zz_report/<rank>_<configuration>/`, with its seed band:
mean, mean - std and mean + std of val/acc and train/loss per epoch, drawn by Custom Scalars' margin charts.

TensorBoard lists runs and tag groups in name order (Time Series also opens the first two tag groups): `zz_`
puts the report after the jobs, whose directories start with their job number, and its tags after the
jobs' train/ and val/. One run per configuration because TensorBoard colours a chart's lines by run:
so each configuration has one colour. The step of a band is the epoch (from 1), so that configurations
with different batch sizes line up.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

REPORT_DIR = "zz_report"
# The report's event files end in this, so a rebuilt report replaces exactly them (the experiment stays).
SUFFIX = ".report"
BAND_TAGS = {"val/acc": f"{REPORT_DIR}/val_acc", "train/loss": f"{REPORT_DIR}/train_loss"}
BARS_TAG = f"{REPORT_DIR}/bars"
LAYOUT = {
    "seed bands: mean ± 1 std over seeds (runs zz_report/<configuration>)": {
        key: ["Margin", [f"{tag}_mean", f"{tag}_lower", f"{tag}_upper"]] for key, tag in BAND_TAGS.items()
    }
}

Band = list[tuple[int, float, float]]  # (epoch from 1, mean, std)


def clear(report_dir: Path) -> None:
    """Remove what an earlier report of this sweep wrote: its event files, and the folders left empty."""
    if not report_dir.is_dir():
        return
    for old in report_dir.rglob(f"events.out.tfevents.*{SUFFIX}"):
        old.unlink()
    for folder in sorted((p for p in report_dir.iterdir() if p.is_dir()), reverse=True):
        if not any(folder.iterdir()):
            folder.rmdir()


def write_report_runs(report_dir: Path, bars: np.ndarray | None, bands: dict[str, dict[str, Band]]) -> None:
    """The bar chart (an RGB array) as image `zz_report/bars` and the layout in `report_dir`; the seed bands
    of each configuration (run name -> curve key -> band) in `report_dir/<run name>`."""
    from torch.utils.tensorboard import SummaryWriter

    clear(report_dir)
    with SummaryWriter(log_dir=str(report_dir), filename_suffix=SUFFIX) as writer:
        writer.add_custom_scalars(LAYOUT)
        if bars is not None:
            writer.add_image(BARS_TAG, bars, dataformats="HWC")
    for name, curves in bands.items():
        with SummaryWriter(log_dir=str(report_dir / name), filename_suffix=SUFFIX) as writer:
            for key, band in curves.items():
                tag = BAND_TAGS[key]
                for epoch, mean, std in band:
                    writer.add_scalar(f"{tag}_mean", mean, epoch)
                    writer.add_scalar(f"{tag}_lower", mean - std, epoch)
                    writer.add_scalar(f"{tag}_upper", mean + std, epoch)
