"""Loading saved models safely."""

from __future__ import annotations

import os
import zipfile

import keras

from keras_resnet.backbone import recursion_headroom
from keras_resnet.safefiles import RefusedFile, check_archive, check_regular
from keras_resnet.weights.values import check_values


def load_model(path: str | os.PathLike, *, compile: bool = False) -> keras.Model:
    """``keras.models.load_model(path, safe_mode=True)``, with the recursion headroom
    that Keras needs to rebuild very deep graphs (ResNet-1202).

    Safe mode refuses files whose layers would run arbitrary code (``Lambda``); the
    zoo's models are built-in layers only and never need ``custom_objects``. A FIFO or
    device, an archive that would inflate beyond its bound, a config nested too deeply
    (:mod:`keras_resnet.safefiles`) and weights that are not finite or hold a negative batch
    norm variance (:func:`keras_resnet.weights.check_values`) are refused with a ValueError.
    """
    path = os.fspath(path)
    check_regular(path, "model file")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"path={path!r}: no such file")
    if zipfile.is_zipfile(path):  # else Keras says what the file is not
        check_archive(path)
    from keras_resnet import quantization  # noqa: F401  (registers the quantization-aware layers)

    try:
        with recursion_headroom():
            model = keras.models.load_model(path, compile=compile, safe_mode=True)
    except RecursionError:
        raise RefusedFile(f"{path}: its config is nested too deeply to load; refused") from None
    check_values(model, path)
    return model
