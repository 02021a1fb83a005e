"""Loading saved models safely."""

from __future__ import annotations

import os

import keras

from .backbone import recursion_headroom


def load_model(path: str | os.PathLike, *, compile: bool = False) -> keras.Model:
    """``keras.models.load_model(path, safe_mode=True)``, with the recursion headroom
    that Keras needs to rebuild very deep graphs (ResNet-1202).

    Safe mode refuses files whose layers would run arbitrary code (``Lambda``); the
    zoo's models are built-in layers only and never need ``custom_objects``.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"path={path!r}: no such file")
    with recursion_headroom():
        return keras.models.load_model(path, compile=compile, safe_mode=True)
