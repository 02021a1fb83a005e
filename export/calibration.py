"""Image sources for int8 calibration and parity checks.

A source is one of ``digits``, ``synthetic``, ``folder:PATH`` or ``tfds:NAME[:SPLIT]``.
Every source yields raw RGB pixels, float32 NHWC in 0..255, resized to the model's input.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import UsageError

KINDS = ("digits", "synthetic", "folder", "tfds")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif")


@dataclass(frozen=True)
class Source:
    """A parsed image source specification."""

    kind: str
    arg: str | None = None

    def __str__(self) -> str:
        return self.kind if self.arg is None else f"{self.kind}:{self.arg}"


def parse_source(spec: str) -> Source:
    """Parse and cheaply validate ``spec`` (no data is read beyond a directory listing)."""
    kind, _, arg = spec.partition(":")
    if kind not in KINDS:
        raise UsageError(f"unknown data source {spec!r}; expected one of digits, synthetic, "
                         "folder:PATH, tfds:NAME[:SPLIT]")
    if kind in ("digits", "synthetic"):
        if arg:
            raise UsageError(f"data source {kind!r} takes no argument (got {spec!r})")
        return Source(kind)
    if not arg:
        raise UsageError(f"data source {kind!r} needs an argument: {kind}:"
                         + ("PATH" if kind == "folder" else "NAME[:SPLIT]"))
    if kind == "folder":
        folder = Path(arg)
        if not folder.is_dir():
            raise UsageError(f"calibration folder {arg} does not exist")
        if not _image_files(folder):
            raise UsageError(f"calibration folder {arg} contains no images "
                             f"({', '.join(IMAGE_SUFFIXES)})")
    return Source(kind, arg)


def _image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)


def _resize(images: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of NHWC images; grey images become RGB."""
    import tensorflow as tf

    if images.shape[-1] == 1:
        images = np.repeat(images, 3, axis=-1)
    if images.shape[1:3] != tuple(size):
        images = tf.image.resize(images, size, method="bilinear").numpy()
    return np.clip(images, 0.0, 255.0).astype(np.float32)


def digits_arrays(size: int = 32, split: str = "test") -> tuple[np.ndarray, np.ndarray]:
    """One split of the bundled digits (``keras_resnet.datasets.load_digits``, the split the
    trainer uses): RGB pixels 0..255 at ``size`` and labels 0..9."""
    from keras_resnet.datasets import load_digits

    train, test = load_digits(size)
    return train if split == "train" else test


def load_labeled(source: Source | str, count: int, size: tuple[int, int], seed: int = 0,
                 split: str = "test") -> tuple[np.ndarray, np.ndarray | None]:
    """Up to ``count`` images from ``source`` (float32 NHWC RGB pixels in 0..255) and their
    labels where the source has them (digits, class subfolders, tfds ``label``), else None.

    ``split`` picks the digits split and the folder's ``train/``/``val/`` subfolder:
    calibrate on "train", evaluate on "test".
    """
    if isinstance(source, str):
        source = parse_source(source)
    if count < 1:
        raise UsageError(f"sample count must be at least 1 (got {count})")
    rng = np.random.default_rng(seed)
    if source.kind == "synthetic":
        return rng.uniform(0.0, 255.0, (count, *size, 3)).astype(np.float32), None
    if source.kind == "digits":
        if size[0] == size[1]:
            images, labels = digits_arrays(size[0], split)
        else:
            images, labels = digits_arrays(8, split)
            images = _resize(images, size)
        order = np.sort(rng.permutation(len(images))[:count])
        return images[order], labels[order]
    if source.kind == "folder":
        return _folder_images(Path(source.arg or ""), count, size, rng, split)
    return _tfds_images(source.arg or "", count, size)


def load_images(source: Source | str, count: int, size: tuple[int, int], seed: int = 0,
                split: str = "test") -> np.ndarray:
    """The images of :func:`load_labeled`."""
    return load_labeled(source, count, size, seed, split)[0]


def _folder_images(folder: Path, count: int, size: tuple[int, int],
                   rng: np.random.Generator, split: str = "test"
                   ) -> tuple[np.ndarray, np.ndarray | None]:
    """Images of ``folder`` (its ``train/`` or ``val/`` part when it has them); labels are
    the sorted class-subfolder indices when every image sits in one, else None."""
    import tensorflow as tf

    part = folder / ("train" if split == "train" else "val")
    if part.is_dir():
        folder = part
    files = _image_files(folder)
    if not files:
        raise UsageError(f"folder {folder} contains no images")
    classes = sorted({p.relative_to(folder).parts[0] for p in files
                      if len(p.relative_to(folder).parts) > 1})
    labelled = classes and all(len(p.relative_to(folder).parts) > 1 for p in files)
    chosen = [files[i] for i in sorted(rng.permutation(len(files))[:count])]
    labels = (np.array([classes.index(p.relative_to(folder).parts[0]) for p in chosen])
              if labelled else None)
    images = []
    for path in chosen:
        try:
            image = tf.io.decode_image(path.read_bytes(), channels=3, expand_animations=False)
        except (tf.errors.InvalidArgumentError, ValueError) as exc:
            raise UsageError(f"cannot decode image {path}: {exc}") from None
        images.append(tf.image.resize(tf.cast(image, tf.float32), size).numpy())
    return np.clip(np.stack(images), 0, 255).astype(np.float32), labels


def _tfds_images(arg: str, count: int, size: tuple[int, int]
                 ) -> tuple[np.ndarray, np.ndarray | None]:
    import tensorflow_datasets as tfds

    name, _, split = arg.partition(":")
    split = split or "train"
    try:
        dataset = tfds.load(name, split=f"{split}[:{count}]", download=False, shuffle_files=False)
    except Exception as exc:  # tfds raises many types for a missing or unprepared dataset
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UsageError(f"tfds dataset {arg!r} is not available offline: {first}") from None
    images, labels = [], []
    for example in dataset.take(count):
        image = example["image"].numpy().astype(np.float32)
        images.append(_resize(image[None], size)[0])
        if "label" in example:
            labels.append(int(example["label"].numpy()))
    if not images:
        raise UsageError(f"tfds dataset {arg!r} yielded no images")
    return np.stack(images), (np.array(labels) if len(labels) == len(images) else None)
