"""The input normalisation each weight set expects, as one per-channel affine map
``x * scale + offset`` of RGB pixels in [0, 255].

timm and torchvision weights want ``(x / 255 - mean) / std``; keras.applications'
V2 files want ``x / 127.5 - 1``. Built into a model (``include_preprocessing=True``)
it is a ``Rescaling`` layer, so the model takes raw pixels, as edge export wants.
keras.applications' V1 files want Caffe's BGR order, which no affine map gives:
for those use :func:`keras_resnet.preprocess_input` outside the model.
"""

from __future__ import annotations

import os
from typing import Any

from keras import layers

from . import pretrained, timm_weights
from .specs import NetSpec

Affine = tuple[tuple[float, ...], tuple[float, ...]]


def from_mean_std(mean, std) -> Affine:
    scale = tuple(1.0 / (255.0 * s) for s in std)
    offset = tuple(-m / s for m, s in zip(mean, std, strict=True))
    return scale, offset


def _from_info(info: pretrained.WeightsInfo) -> Affine | None:
    if info.mean is not None:
        return from_mean_std(info.mean, info.std)
    if info.preprocessing == "tf":
        return (1 / 127.5,) * 3, (-1.0,) * 3
    return None  # "caffe": a channel swap, not an affine map


def affine_for(weights: Any, *, model: str | None = None) -> Affine:
    """The normalisation of ``weights``: a name of :func:`keras_resnet.list_weights`,
    ``"imagenet"`` with ``model``, a local ``.safetensors`` file with its config.json,
    or an opened :class:`~keras_resnet.timm_weights.Checkpoint`."""
    if isinstance(weights, timm_weights.Checkpoint):
        info = pretrained.find(weights.source)
        found = _from_info(info) if info else _from_config(weights.config)
        if found is None:
            raise ValueError(f"weights={weights.source!r}: their mean and std are unknown (no "
                             "pretrained_cfg in a config.json beside the file)")
        return found
    name = os.fspath(weights) if isinstance(weights, str | os.PathLike) else weights
    if name == "imagenet" and model:
        name = f"imagenet:{model}"
    info = pretrained.find(name) if isinstance(name, str) else None
    if info is not None:
        found = _from_info(info)
        if found is None:
            raise ValueError(f"weights={name!r} use Caffe's BGR preprocessing (mode='caffe'), "
                             "which no per-channel scale and offset gives: call "
                             "keras_resnet.preprocess_input(x, mode='caffe') on the images")
        return found
    if isinstance(name, str) and name.lower().endswith(timm_weights.SAFETENSORS_SUFFIX):
        found = _from_config(timm_weights.read_config_beside(name))
        if found is not None:
            return found
    raise ValueError(f"weights={weights!r}: their input normalisation is unknown; known "
                     f"weights: {', '.join(pretrained.list_weights())}, or a .safetensors "
                     "file with timm's config.json (pretrained_cfg mean and std) beside it")


def _from_config(config: dict) -> Affine | None:
    found = timm_weights.normalisation(config)
    return from_mean_std(*found) if found else None


def check(include_preprocessing: Any, weights: Any, spec: NetSpec, weights_name: str | None,
          *, channels: int) -> Affine | None:
    """The affine map to build in front of the network, or ``None``; checked early."""
    if not isinstance(include_preprocessing, bool):
        raise ValueError(f"include_preprocessing={include_preprocessing!r} must be True or False")
    if not include_preprocessing:
        return None
    if weights is None:
        raise ValueError("include_preprocessing=True needs weights whose normalisation is "
                         "known (timm names, a .safetensors file with its config.json, or "
                         "weights='imagenet' on a V2 model); got weights=None")
    if timm_weights.handles(weights) and not isinstance(weights, timm_weights.Checkpoint):
        return None  # decided once the checkpoint is open
    affine = affine_for(weights, model=weights_name)
    if channels != len(affine[0]):
        raise ValueError(f"include_preprocessing=True: the weights normalise "
                         f"{len(affine[0])} channels, the input has {channels}")
    return affine


def layer(scale, offset, *, axis: int) -> layers.Layer:
    """A ``Rescaling`` layer named ``preprocessing`` that broadcasts over ``axis``."""
    if axis == 1:  # channels_first: one value per channel, broadcast over (H, W)
        scale = [[[s]] for s in scale]
        offset = [[[o]] for o in offset]
    return layers.Rescaling(scale=list(scale), offset=list(offset), name="preprocessing")
