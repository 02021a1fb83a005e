"""Weights that load but cannot be used: found after loading, whatever the file's kind."""

from __future__ import annotations

import numpy as np


class InvalidWeights(ValueError):
    """Weights that load but cannot be used: a NaN or infinite value, or a negative batch
    norm variance (the normalisation would take the square root of it)."""


def check_values(model, source: str) -> None:
    """Every floating-point weight of ``model`` finite and every batch-norm moving variance
    non-negative, else :class:`InvalidWeights` naming the first bad tensor and ``source``."""
    import keras

    for variable in model.weights:
        if not str(variable.dtype).startswith(("float", "bfloat")):
            continue
        values = np.asarray(keras.ops.convert_to_numpy(variable), np.float32)
        if not np.isfinite(values).all():
            bad = int(np.size(values) - np.isfinite(values).sum())
            raise InvalidWeights(f"{source}: tensor {variable.path} has {bad} non-finite "
                                 "value(s) (NaN or infinity)")
        if "moving_variance" in variable.path and (values < 0).any():
            raise InvalidWeights(f"{source}: tensor {variable.path} (a batch norm variance) "
                                 f"has negative values (min {float(values.min()):g})")
