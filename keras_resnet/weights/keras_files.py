"""Keras weight files: keras.applications' published ImageNet files and local ones.

Accepted files:

* the legacy Keras HDF5 layout of keras.applications' published files
  (``resnet50_weights_tf_dim_ordering_tf_kernels.h5``): loaded by layer name,
  so ``*_notop.h5`` files load into ``include_top=False`` models;
* Keras 3 ``.weights.h5`` files and whole ``.keras`` files: loaded by Keras,
  which matches layers by their order in the model.

Nothing is unpickled; HDF5 is read as plain arrays.
"""

from __future__ import annotations

import warnings
import zipfile
from typing import Any

import h5py
import numpy as np

from keras_resnet.safefiles import check_archive
from keras_resnet.specs import NetSpec
from keras_resnet.weights.table import imagenet_row, published_imagenet_models

BASE_URL = "https://storage.googleapis.com/tensorflow/keras-applications/resnet/"
#: Keras weight files: legacy HDF5, Keras 3 ``.weights.h5``, whole ``.keras`` models.
WEIGHT_SUFFIXES = (".h5", ".hdf5", ".keras")


def check_header(path: str) -> None:
    """A Keras weights file by its name and header (zip or HDF5), before it is opened."""
    if not path.endswith(WEIGHT_SUFFIXES):
        raise ValueError(f"weights={path!r}: expected a .h5, .weights.h5 or .keras file, "
                         "or a timm .safetensors file")
    readable = zipfile.is_zipfile(path) if path.endswith(".keras") else h5py.is_hdf5(path)
    if not readable:
        raise ValueError(f"weights={path!r} is corrupt or not a weights file "
                         f"({'zip' if path.endswith('.keras') else 'HDF5'} header not found)")
    if path.endswith(".keras"):
        check_archive(path)


def _imagenet_available(spec: NetSpec, weights_name: str | None, shortcut: str,
                        residual: bool) -> bool:
    standard = (spec.family == "imagenet" and spec.groups == 1 and spec.width_per_group == 64
                and shortcut == "B" and residual)
    if not standard or imagenet_row(weights_name) is None:
        return False
    return spec.variant == ("v2" if weights_name.endswith("v2") else "v1")


def check_imagenet(*, spec: NetSpec, weights_name: str | None, include_top: bool,
                   classes: int, classifier_activation: Any, shortcut: str,
                   residual: bool) -> None:
    """``weights="imagenet"`` against the network to build, before anything is downloaded."""
    if not _imagenet_available(spec, weights_name, shortcut, residual):
        names = ", ".join(published_imagenet_models())
        raise ValueError(
            f"weights='imagenet' is published only for {names} with their default "
            f"options (variant v1 / v2, shortcut 'B', residual); got "
            f"{weights_name or 'a custom network'}. Pass weights=None, a file path, or timm "
            f"weights (keras_resnet.list_weights(), e.g. 'timm/resnet18.a1_in1k')"
        )
    if include_top and classes != 1000:
        raise ValueError(f"classes={classes} does not fit weights='imagenet' with "
                         "include_top=True: use classes=1000 or include_top=False")
    if include_top and classifier_activation not in (None, "softmax"):
        raise ValueError(f"classifier_activation={classifier_activation!r}: with "
                         "weights='imagenet' only None or 'softmax' is allowed")


def fetch_imagenet(weights_name: str, include_top: bool) -> str:
    """Download (once, into ``~/.keras/models``) and hash-check a published file."""
    import keras

    top_hash, notop_hash = imagenet_row(weights_name).digests
    suffix = "" if include_top else "_notop"
    fname = f"{weights_name}_weights_tf_dim_ordering_tf_kernels{suffix}.h5"
    try:
        return keras.utils.get_file(fname, BASE_URL + fname, cache_subdir="models",
                                    file_hash=top_hash if include_top else notop_hash)
    except ValueError:
        raise  # Keras' "corrupted file" on a hash mismatch: already clear
    except Exception as err:  # no network: urllib / socket errors
        raise OSError(f"weights='imagenet': could not download {BASE_URL + fname} ({err}); "
                      f"copy that file here and pass weights=PATH") from err


def _legacy_root(f: h5py.File):
    if "layer_names" in f.attrs:
        return f
    if "model_weights" in f and "layer_names" in f["model_weights"].attrs:
        return f["model_weights"]
    return None


def _decode(names) -> list[str]:
    return [n.decode("utf8") if isinstance(n, bytes) else str(n) for n in names]


def load_legacy_h5(model, path: str) -> None:
    """Load a legacy Keras HDF5 weights file by layer name.

    Every layer of ``model`` that has weights must be found in the file with the
    same shapes; layers of the file that the model lacks (a classifier, when
    loading into ``include_top=False``) are ignored.
    """
    with h5py.File(path, "r") as f:
        root = _legacy_root(f)
        if root is None:
            raise ValueError(f"weights={path!r} is not in the legacy Keras HDF5 layout "
                             "(no 'layer_names' attribute)")
        stored = {}
        for layer_name in _decode(root.attrs["layer_names"]):
            group = root[layer_name]
            names = _decode(group.attrs.get("weight_names", []))
            if names:
                stored[layer_name] = [np.asarray(group[n]) for n in names]
    wanted = [layer for layer in model.layers if layer.weights]
    missing = [layer.name for layer in wanted if layer.name not in stored]
    if missing:
        shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise ValueError(f"weights={path!r} has no weights for {len(missing)} layer(s) of "
                         f"{model.name}: {shown}")
    for layer in wanted:
        arrays = stored[layer.name]
        expected = [tuple(w.shape) for w in layer.weights]
        got = [tuple(a.shape) for a in arrays]
        if expected != got:
            raise ValueError(f"weights={path!r}: layer {layer.name!r} expects shapes "
                             f"{expected}, the file has {got}")
        layer.set_weights(arrays)


def load_file(model, path: str) -> None:
    """Load a checked Keras weights file into ``model``: a legacy HDF5 file by layer name,
    a ``.weights.h5`` or ``.keras`` file by Keras."""
    if not path.endswith(".keras"):
        try:
            with h5py.File(path, "r") as f:
                legacy = _legacy_root(f) is not None
        except OSError as err:  # a truncated or damaged HDF5 body behind a valid header
            raise ValueError(f"weights={path!r} is corrupt or truncated: {err}") from err
        if legacy:
            load_legacy_h5(model, path)
            return
        if not path.endswith(".weights.h5"):
            raise ValueError(f"weights={path!r} is neither a legacy Keras HDF5 file nor a "
                             "Keras 3 file ending in .weights.h5")
    try:
        with warnings.catch_warnings():
            # A mismatched file raises below; Keras also warns once per skipped container.
            warnings.simplefilter("ignore", UserWarning)
            model.load_weights(path)
    except Exception as err:  # Keras raises several types for a mismatched file
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ValueError(f"weights={path!r} does not fit {model.name}: {first}") from err
