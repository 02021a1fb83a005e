"""Shared helpers for the zoo tests (backend-agnostic: no tensorflow import)."""

import h5py
import numpy as np
import pytest


def save_legacy_h5(model, path, drop=()):
    """Write ``model``'s weights in the legacy Keras HDF5 layout of keras.applications'
    published files: root attr ``layer_names``; one group a layer with attr
    ``weight_names`` such as ``conv1_conv/kernel:0``."""
    with h5py.File(path, "w") as f:
        kept = [layer for layer in model.layers if layer.name not in drop]
        f.attrs["layer_names"] = [layer.name.encode() for layer in kept]
        f.attrs["backend"] = b"tensorflow"
        f.attrs["keras_version"] = b"2.2.4"
        for layer in kept:
            group = f.create_group(layer.name)
            names = [f"{layer.name}/{w.name}:0" for w in layer.weights]
            group.attrs["weight_names"] = [n.encode() for n in names]
            for n, w in zip(names, layer.weights, strict=True):
                group.create_dataset(n, data=np.asarray(w))


def randomize(model, seed=0):
    """Random weights everywhere, BN statistics included, so outputs are informative."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        values = []
        for w in layer.weights:
            shape = tuple(w.shape)
            if w.name == "moving_variance":
                values.append(rng.uniform(0.5, 1.5, shape))
            elif w.name == "gamma":
                values.append(rng.uniform(0.5, 1.0, shape))
            else:
                fan_in = int(np.prod(shape[:-1])) if len(shape) > 1 else 10
                values.append(rng.normal(0, (2.0 / fan_in) ** 0.5 * 0.5, shape))
        if values:
            layer.set_weights([v.astype("float32") for v in values])
    return model


@pytest.fixture
def images():
    def make(n, size, seed=1):
        return np.random.default_rng(seed).uniform(0, 255, (n, size, size, 3)).astype("float32")
    return make


@pytest.fixture(name="save_legacy_h5")
def _save_legacy_h5_fixture():
    return save_legacy_h5


@pytest.fixture(name="randomize")
def _randomize_fixture():
    return randomize
