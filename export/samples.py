"""The exporter's images, from the trainer's data layer (:mod:`keras_resnet.training.data`):
int8 calibration draws a seeded sample of a source's ``train`` split, parity and top-1 one of
its ``test`` split, so evaluation images are never calibration or training images."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from keras_resnet.console import UsageError as _ConsoleUsageError

from .errors import UsageError


@contextmanager
def _as_export_errors() -> Iterator[None]:
    """The data layer's usage errors as the export package's own."""
    try:
        yield
    except _ConsoleUsageError as exc:
        if isinstance(exc, UsageError):
            raise
        raise UsageError(str(exc)) from None


def check_source(spec: str, role: str) -> None:
    """Cheap check of ``--calibration``/``--data`` (a folder's file lists included)."""
    from keras_resnet.training.data import check_source as check

    with _as_export_errors():
        check(spec, role, labelled=False)


def load_samples(spec: str, split: str, count: int, size: tuple[int, int], seed: int = 0,
                 role: str = "data") -> tuple[np.ndarray, np.ndarray | None]:
    """Up to ``count`` images (float32 NHWC RGB 0..255 at ``size``) of ``split`` and their
    labels where the source has them (see :func:`keras_resnet.training.data.load_split`)."""
    from keras_resnet.training.data import load_split

    with _as_export_errors():
        return load_split(spec, split, count, size, seed=seed, role=role)


#: What ``calibration=``/``data=`` take (named in errors).
ACCEPTED = ("a source name (digits | tfds:NAME | folder:PATH | synthetic), a .npy/.npz file, "
            "an array of images, an (images, labels) pair, a tf.data.Dataset or an iterable "
            "of batches")


@dataclass(frozen=True)
class InMemory:
    """Images (model input already, NHWC) and their labels where given, with how they came."""

    images: np.ndarray
    labels: np.ndarray | None
    description: str


def as_samples(value: Any, role: str, limit: int) -> str | InMemory | None:
    """``calibration``/``data`` as a source name (checked) or in-memory images (at most
    ``limit`` of them, checked); UsageError with one line for anything else."""
    if value is None:
        return None
    if isinstance(value, os.PathLike) or (
            isinstance(value, str) and value.lower().endswith((".npy", ".npz"))):
        return _from_file(Path(value), role)
    if isinstance(value, str):
        if not value:
            raise UsageError(f"{role} is empty; pass {ACCEPTED}")
        check_source(value, role)
        return value
    if isinstance(value, bytes | bytearray | int | float | dict | set) or value is True:
        raise UsageError(f"{role} must be {ACCEPTED} (got {type(value).__name__})")
    images, labels, what = _arrays(value, role, limit)
    return InMemory(*check_arrays(images, labels, role), description=what)


def _arrays(value: Any, role: str, limit: int) -> tuple[Any, Any, str]:
    """The (images, labels, description) of an array, a pair, a Dataset or an iterable."""
    if isinstance(value, np.ndarray) or _is_tensor(value):
        return np.asarray(value), None, f"array of {len(np.asarray(value))} images"
    if isinstance(value, tuple) and len(value) == 2 and _is_array(value[0]) and (
            _is_array(value[1]) and np.ndim(value[1]) <= 2 and np.ndim(value[0]) >= 3):
        return value[0], value[1], "(images, labels) arrays"
    what = "tf.data.Dataset" if type(value).__name__.endswith("Dataset") else "batches"
    try:
        items = iter(value)
    except TypeError:
        raise UsageError(f"{role} must be {ACCEPTED} (got {type(value).__name__})") from None
    images, labels, count = [], [], 0
    for item in items:
        x, y = (item[0], item[1]) if isinstance(item, tuple | list) and len(item) == 2 \
            and not _looks_like_image(item) else (item, None)
        x = np.asarray(x)
        if x.ndim == 3:  # an unbatched Dataset yields single images
            x, y = x[None], (None if y is None else np.asarray(y)[None])
        images.append(x)
        labels.append(None if y is None else np.asarray(y))
        count += len(x)
        if count >= limit:
            break
    if not images:
        raise UsageError(f"{role} {what} yielded no images")
    if any(y is None for y in labels) and not all(y is None for y in labels):
        raise UsageError(f"{role} {what}: some batches have labels and some do not")
    try:
        x_all = np.concatenate(images)
        y_all = None if labels[0] is None else np.concatenate(labels)
    except ValueError as exc:
        raise UsageError(f"{role} {what}: batches of different shapes ({exc})") from None
    return x_all[:limit], (None if y_all is None else y_all[:limit]), \
        f"{what} ({min(count, limit)} images)"


def _is_tensor(value: Any) -> bool:
    return hasattr(value, "shape") and hasattr(value, "dtype") and hasattr(value, "numpy")


def _is_array(value: Any) -> bool:
    return isinstance(value, np.ndarray) or _is_tensor(value) or isinstance(value, list)


def _looks_like_image(item: Any) -> bool:
    """A pair of images of equal shape (two images of a batch list) is not (x, y)."""
    return np.ndim(item[0]) == np.ndim(item[1]) and np.ndim(item[0]) >= 3


def check_arrays(images: Any, labels: Any, role: str) -> tuple[np.ndarray, np.ndarray | None]:
    """Images: a non-empty numeric (N, H, W, C) array without NaN or infinity; labels: N
    non-negative integers. UsageError with one line otherwise."""
    try:
        x = np.asarray(images)
    except (ValueError, TypeError):
        raise UsageError(f"{role} images are not one array (ragged or mixed)") from None
    if x.dtype.kind not in "uif":
        raise UsageError(f"{role} images must be numbers (uint8, int or float), got dtype "
                         f"{x.dtype}")
    if x.ndim != 4:
        raise UsageError(f"{role} images must be 4-D (N, H, W, C), got shape {list(x.shape)}")
    if len(x) == 0:
        raise UsageError(f"{role} has no images (shape {list(x.shape)})")
    x = x.astype(np.float32)
    if not np.all(np.isfinite(x)):
        raise UsageError(f"{role} images contain NaN or infinite values")
    if labels is None:
        return x, None
    y = np.asarray(labels)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1 or len(y) != len(x):
        raise UsageError(f"{role} labels must be one integer per image: {len(x)} images, "
                         f"labels of shape {list(y.shape)}")
    if y.dtype.kind == "f" and np.all(np.isfinite(y)) and np.all(y == np.round(y)):
        y = y.astype(np.int64)
    if y.dtype.kind not in "iu" or np.any(y < 0):
        raise UsageError(f"{role} labels must be non-negative integers (got dtype {y.dtype})")
    return x, y.astype(np.int64)


def _from_file(path: Path, role: str) -> InMemory:
    """A ``.npy`` of images or a ``.npz`` with ``x`` (and optionally ``y``), never unpickled."""
    if not path.is_file():
        raise UsageError(f"{role} file {path} not found")
    try:
        loaded = np.load(path, allow_pickle=False)
        if isinstance(loaded, np.lib.npyio.NpzFile):
            with loaded:
                if "x" not in loaded.files:
                    raise UsageError(f"{role} file {path} has no array 'x' (it has "
                                     f"{', '.join(loaded.files) or 'none'}); save images as x "
                                     "and labels as y")
                images, labels = loaded["x"], loaded["y"] if "y" in loaded.files else None
        else:
            images, labels = loaded, None
    except UsageError:
        raise
    except (OSError, ValueError) as exc:
        raise UsageError(f"{role} file {path} is not a numpy file without pickled objects "
                         f"({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})"
                         ) from None
    x, y = check_arrays(images, labels, role)
    return InMemory(x, y, f"file:{path}")
