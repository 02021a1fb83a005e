"""Console-script plumbing shared by ``keras-resnet-models``, the trainer and the exporter
(pure Python: importing it loads neither Keras nor TensorFlow)."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def native_stderr_silenced(unless_loaded: str | None = None) -> Iterator[None]:
    """File descriptor 2 to /dev/null for the block: TensorFlow 2.21 writes start-up lines
    through absl before ``TF_CPP_MIN_LOG_LEVEL`` applies, which would bury a one-line
    ``error:``. Nothing is silenced with ``KERAS_RESNET_VERBOSE=1``, nor when the module
    ``unless_loaded`` is already imported (its start-up lines are past)."""
    if os.environ.get("KERAS_RESNET_VERBOSE") or (unless_loaded and unless_loaded in sys.modules):
        yield
        return
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
