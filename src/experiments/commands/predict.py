"""`experiments-predict ckpt_path=<run dir or .ckpt> inputs=<image, folder or [a.png,b.jpg]>`.

Reads PNG/JPEG (anything Pillow reads) of up to MAX_PIXELS pixels, turns each into a 28x28 grayscale digit
the way MNIST was made, and prints the top-k classes with softmax probabilities; `csv=` also writes them to
a file. The keys are in conf/predict.yaml (`experiments-predict --help`).
"""

from __future__ import annotations

import csv
import io
import struct
import sys
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import hydra
from omegaconf import DictConfig, ListConfig, OmegaConf

from experiments.atomic import write_text
from experiments.commands import CONFIG_DIR, one_line_errors, output_file, required
from experiments.config.mistakes import one_line_mistakes
from experiments.errors import CheckpointError, ConfigError, DataError

if TYPE_CHECKING:
    import numpy as np
    import torch

    from experiments.commands.checkpoint import RunFiles

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}
# The largest image predict decodes: a 48-megapixel photo fits, and decoding it takes a few hundred MB.
# Checked on the size in the file's header, before any pixel is decoded: a 20000x20000 PNG is a few KB.
# Stated in conf/predict.yaml's help too.
MAX_PIXELS = 64_000_000
# Below this contrast (of pixel values in [0, 1]) an image is one colour: nothing was written on it.
MIN_CONTRAST = 0.05
# Smaller images hold too little to be a digit (MNIST's digits are 20 pixels across).
MIN_SIDE = 8


def image_files(inputs: Any) -> list[Path]:
    """The image files named by `inputs`: files as given, folders expanded to the images they hold."""
    if inputs is None or inputs == []:
        raise ConfigError("inputs is required: inputs=<image file>, inputs=<folder> or inputs=[a.png,b.png]")
    files: list[Path] = []
    for item in inputs if isinstance(inputs, list) else [inputs]:
        path = Path(str(item))
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
            if not found:
                raise DataError(f"inputs={path}: no image files ({', '.join(sorted(IMAGE_SUFFIXES))}) in this folder")
            files += found
        elif path.is_file():
            files.append(path)
        else:
            raise DataError(f"inputs={path}: no such file or folder")
    return files


def _digit_box(image: np.ndarray) -> np.ndarray:
    """MNIST's own recipe: the ink's bounding box scaled to fit 20x20 (aspect kept), placed in a 28x28
    frame with its centre of mass at the centre."""
    import numpy as np
    from PIL import Image

    ink = image > 0.1 * image.max() if image.max() > 0 else np.zeros_like(image, dtype=bool)
    if not ink.any():
        return np.asarray(Image.fromarray(image).resize((28, 28), Image.Resampling.BILINEAR))
    rows, cols = np.flatnonzero(ink.any(1)), np.flatnonzero(ink.any(0))
    crop = image[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    scale = 20 / max(crop.shape)
    height, width = max(1, round(crop.shape[0] * scale)), max(1, round(crop.shape[1] * scale))
    small = np.asarray(Image.fromarray(crop).resize((width, height), Image.Resampling.LANCZOS)).clip(0, 1)
    frame = np.zeros((28, 28), dtype=np.float32)
    top, left = (28 - height) // 2, (28 - width) // 2
    frame[top : top + height, left : left + width] = small
    mass = frame.sum()
    if mass > 0:
        ys, xs = np.indices(frame.shape)
        shift_y = round(float(13.5 - (ys * frame).sum() / mass))
        shift_x = round(float(13.5 - (xs * frame).sum() / mass))
        # Only as far as the digit stays inside the frame.
        shift_y = max(-top, min(28 - top - height, shift_y))
        shift_x = max(-left, min(28 - left - width, shift_x))
        frame = np.roll(frame, (shift_y, shift_x), axis=(0, 1))
    return frame


def load_image(path: Path, invert: Any = "auto", digits: bool = True) -> np.ndarray:
    """A 28x28 float32 image in [0, 1], light ink on a dark background like MNIST."""
    import numpy as np
    from PIL import Image, ImageOps, UnidentifiedImageError

    too_large = f"predict reads images of up to {MAX_PIXELS:,} pixels (e.g. 8000x8000): scale it down"
    try:
        with warnings.catch_warnings():
            # Pillow warns about huge images, and refuses those over twice its own limit (which is above
            # ours): MAX_PIXELS is checked here instead, with a message of our own.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as opened:  # reads the header only
                width, height = opened.size
                if width * height > MAX_PIXELS:
                    raise DataError(f"{path}: the image is {width}x{height} ({width * height:,} pixels); {too_large}")
                opened.load()
                image = ImageOps.exif_transpose(opened)
    except Image.DecompressionBombError:
        raise DataError(f"{path}: the image has more than {MAX_PIXELS:,} pixels; {too_large}") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError, struct.error) as exc:
        # Pillow reports a damaged file as any of these, depending on the format and where the damage is.
        raise DataError(f"{path}: not an image Pillow can read (PNG/JPEG expected): {exc}") from None
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        background = Image.new("RGBA", image.size, (255, 255, 255, 255))  # transparent means paper
        image = Image.alpha_composite(background, image.convert("RGBA"))
    pixels = np.asarray(image.convert("L"), dtype=np.float32) / 255
    _warn_if_meaningless(path, pixels)
    if invert == "auto":
        border = np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]])
        invert = float(np.median(border)) > 0.5  # a light border is paper: dark ink on light paper
    elif not isinstance(invert, bool):
        raise ConfigError(f"invert={invert!r} must be auto, true or false")
    if invert:
        pixels = 1.0 - pixels
    if pixels.shape == (28, 28):
        return pixels
    if digits:
        return _digit_box(pixels)
    return np.asarray(Image.fromarray(pixels).resize((28, 28), Image.Resampling.LANCZOS), dtype=np.float32)


def _warn_if_meaningless(path: Path, pixels: np.ndarray) -> None:
    """A word on stderr for an image the model will classify anyway, though it holds no digit: the
    probabilities printed for it mean nothing."""
    height, width = pixels.shape
    problem = None
    if min(height, width) < MIN_SIDE:
        problem = f"the image is {width}x{height} pixels, too small to hold a digit"
    elif float(pixels.max() - pixels.min()) < MIN_CONTRAST:
        problem = "the image is blank (one colour)"
    if problem:
        print(f"warning: {path}: {problem}; its prediction means nothing", file=sys.stderr, flush=True)


def class_labels(dataset: str) -> list[str]:
    from experiments.data.files import dataset_class

    # MNIST's classes read "0 - zero"; the digit alone is the answer.
    return [c.split(" - ")[0] for c in dataset_class(dataset).classes]


def predict(files: RunFiles, paths: list[Path], invert: Any, device: str) -> torch.Tensor:
    """Softmax probabilities, one row per image."""
    import numpy as np
    import torch

    from experiments.checkpoints.load import model_from_checkpoint
    from experiments.commands.checkpoint import resolve_device

    target = resolve_device(device)
    model = model_from_checkpoint(files.checkpoint).to(target)
    if model.input_shape not in ((28, 28), (784,)):
        raise CheckpointError(
            f"checkpoint {files.checkpoint}: its model takes {'x'.join(map(str, model.input_shape))}-pixel "
            "images, but predict turns every image into a 28x28 one (784 pixels), as MNIST's were made"
        )
    digits = files.data.get("dataset", "mnist") == "mnist"
    images = np.stack([load_image(p, invert, digits) for p in paths])
    mean, std = (files.data.get("mean", 0.1307), files.data.get("std", 0.3081))
    if not files.data.get("normalize", True):
        mean, std = 0.0, 1.0
    with torch.inference_mode():
        inputs = (torch.from_numpy(images).to(target) - mean) / std
        return model(inputs.flatten(1)).softmax(-1).cpu()


def write_csv(path: Path, rows: list[tuple[Path, list[tuple[str, float]]]]) -> None:
    top_k = len(rows[0][1]) if rows else 0
    header = ["path", "prediction", "probability"]
    header += [f"{name}{i}" for i in range(1, top_k + 1) for name in ("top", "probability_top")]
    text = io.StringIO(newline="")
    writer = csv.writer(text)
    writer.writerow(header)
    for file, ranked in rows:
        cells = [c for label, p in ranked for c in (label, f"{p:.6f}")]
        writer.writerow([str(file), ranked[0][0], f"{ranked[0][1]:.6f}", *cells])
    write_text(path, text.getvalue())


@one_line_mistakes  # Hydra's config mistakes as one line (experiments.config.mistakes)
@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="predict")
@one_line_errors
def main(cfg: DictConfig) -> None:
    ckpt_path = required(cfg, "ckpt_path", "ckpt_path=<run dir> or ckpt_path=<file.ckpt>")
    inputs = required(cfg, "inputs", "inputs=<image file>, inputs=<folder> or inputs=[a.png,b.png]")
    invert = {"true": True, "false": False, "auto": "auto"}.get(str(cfg.invert).lower())
    if invert is None:
        raise ConfigError(f"invert={cfg.invert!r} must be auto, true or false")
    top_k = cfg.top_k
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
        raise ConfigError(f"top_k={top_k!r} must be a positive integer")
    if cfg.which not in ("best", "last"):
        raise ConfigError(f"which={cfg.which!r} must be best or last")
    output_file(cfg, "csv", "predictions.csv")  # checked before the work, not after it

    from experiments.commands.checkpoint import RunFiles  # torch: only now that there is work to do

    files = RunFiles(ckpt_path, which=str(cfg.which))
    paths = image_files(OmegaConf.to_object(inputs) if isinstance(inputs, ListConfig) else inputs)
    probabilities = predict(files, paths, invert, str(cfg.device))
    labels = class_labels(str(files.data.get("dataset", "mnist")))
    top_k = min(top_k, len(labels))
    rows = []
    for path, probs in zip(paths, probabilities, strict=True):
        values, indices = probs.topk(top_k)
        ranked = [(labels[i], float(v)) for v, i in zip(values, indices, strict=True)]
        rows.append((path, ranked))
        print(f"{path}: " + "  ".join(f"{label} ({p:.1%})" for label, p in ranked), flush=True)
    if cfg.csv:
        write_csv(Path(str(cfg.csv)), rows)
        print(f"Wrote {cfg.csv}")


if __name__ == "__main__":
    main()
