"""The exporter's images, from the trainer's data layer (:mod:`keras_resnet.training.data`):
int8 calibration draws a seeded sample of a source's ``train`` split, parity and top-1 one of
its ``test`` split, so evaluation images are never calibration or training images."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

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
