"""The input normalisation each weight set expects, as one per-channel affine map
``x * scale + offset`` of RGB pixels in [0, 255].

timm and torchvision weights want ``(x / 255 - mean) / std``; keras.applications'
V2 files want ``x / 127.5 - 1``. Built into a model (``include_preprocessing=True``)
it is a ``Rescaling`` layer, so the model takes raw pixels, as edge export wants.
keras.applications' V1 files want Caffe's BGR order, which no affine map gives:
for those use :func:`keras_resnet.preprocess_input` outside the model.
"""

from __future__ import annotations

from typing import Any

from keras_resnet.weights import timm
from keras_resnet.weights.resolver import WeightsRecord, resolve
from keras_resnet.weights.table import WeightsInfo, find, list_weights

Affine = tuple[tuple[float, ...], tuple[float, ...]]


def from_mean_std(mean, std) -> Affine:
    """``(x / 255 - mean) / std`` as ``x * scale + offset``."""
    scale = tuple(1.0 / (255.0 * s) for s in std)
    offset = tuple(-m / s for m, s in zip(mean, std, strict=True))
    return scale, offset


def mean_std(scale, offset) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The affine map ``x * scale + offset`` as ``(x - mean) / std`` (pixels in 0..255)."""
    return (tuple(-o / s for s, o in zip(scale, offset, strict=True)),
            tuple(1.0 / s for s in scale))


def _from_info(info: WeightsInfo) -> Affine | None:
    if info.mean is not None:
        return from_mean_std(info.mean, info.std)
    if info.preprocessing == "tf":
        return (1 / 127.5,) * 3, (-1.0,) * 3
    return None  # "caffe": a channel swap, not an affine map


def _from_config(config: dict) -> Affine | None:
    found = timm.normalisation(config)
    return from_mean_std(*found) if found else None


def affine(record: WeightsRecord) -> Affine:
    """The normalisation of resolved weights: the table's, else that of timm's config.json
    beside the file; ValueError where it is unknown or no affine map (Caffe's BGR)."""
    if record.known is not None:
        found = _from_info(record.known)
        if found is None:
            raise ValueError(f"weights={record.argument!r} use Caffe's BGR preprocessing "
                             "(mode='caffe'), which no per-channel scale and offset gives: call "
                             "keras_resnet.preprocess_input(x, mode='caffe') on the images")
        return found
    found = _from_config(record.config)
    if found is None:
        raise ValueError(f"weights={record.argument!r}: their input normalisation is unknown; "
                         f"known weights: {', '.join(list_weights())}, or a .safetensors "
                         "file with timm's config.json (pretrained_cfg mean and std) beside it")
    return found


def affine_for(weights: Any) -> Affine:
    """The normalisation of ``weights``: a name of :func:`keras_resnet.list_weights` (such
    as ``"imagenet:resnet50v2"``) or anything :func:`resolve` takes."""
    info = find(weights) if isinstance(weights, str) else None
    if info is not None:
        kind = "timm" if info.layout == "torch" else "keras_applications"
        return affine(WeightsRecord(weights, kind, weights, known=info))
    return affine(resolve(weights))


def check(include_preprocessing: Any, record: WeightsRecord | None, *,
          channels: int) -> Affine | None:
    """The affine map to build in front of the network, or ``None`` (``include_preprocessing``
    is checked to be a bool with the other options)."""
    if not include_preprocessing:
        return None
    if record is None:
        raise ValueError("include_preprocessing=True needs weights whose normalisation is "
                         "known (timm names, a .safetensors file with its config.json, or "
                         "weights='imagenet' on a V2 model); got weights=None")
    found = affine(record)
    if channels != len(found[0]):
        raise ValueError(f"include_preprocessing=True: the weights normalise "
                         f"{len(found[0])} channels, the input has {channels}")
    return found
