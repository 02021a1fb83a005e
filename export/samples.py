"""The exporter's images, from the trainer's data layer (:mod:`keras_resnet.training.data`):
int8 calibration draws a seeded sample of a source's ``train`` split, parity and top-1 one of
its ``test`` split, so evaluation images are never calibration or training images."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from keras_resnet.export.errors import UsageError, as_export_errors

from keras_resnet.contract import check_images, read_images


def check_source(spec: str, role: str) -> None:
    """Cheap check of ``--calibration``/``--data`` (a folder's file lists included)."""
    from keras_resnet.training.data import check_source as check

    with as_export_errors():
        check(spec, role, labelled=False)


def load_samples(spec: str, split: str, count: int, size: tuple[int, int], seed: int = 0,
                 role: str = "data") -> tuple[np.ndarray, np.ndarray | None]:
    """Up to ``count`` images (float32 NHWC RGB 0..255 at ``size``) of ``split`` and their
    labels where the source has them (see :func:`keras_resnet.training.data.load_split`)."""
    from keras_resnet.training.data import load_split

    with as_export_errors():
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
    with as_export_errors():
        images, labels, what = read_images(value, role, ACCEPTED, limit)
        return InMemory(*check_images(images, labels, role), description=what)


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
    with as_export_errors():
        x, y = check_images(images, labels, role)
    return InMemory(x, y, f"file:{path}")
