"""The input contract of an exported model (:class:`keras_resnet.contract.InputContract`: pixel
range, mean and std, channel order, layout, size), read from what the model records or stated
by the user."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
from keras_resnet.export.errors import UsageError, as_export_errors

from keras_resnet import contract as shared
from keras_resnet.contract import RANGES, InputContract, floats

__all__ = ["RANGES", "InputContract", "contract_from_json", "parse_channels_stat",
           "parse_range", "recorded_contract", "stated_contract", "zoo_contract"]

#: The zoo's preprocessing modes (``keras_resnet.model_info(name)["preprocessing"]``).
ZOO_MODES = {
    "none": {"range": (0.0, 255.0), "channels": "RGB"},
    "caffe": {"range": (0.0, 255.0), "channels": "BGR", "mean": [103.939, 116.779, 123.68]},
    "tf": {"range": (0.0, 255.0), "channels": "RGB", "mean": [127.5] * 3, "std": [127.5] * 3},
    "torch": {"range": (0.0, 1.0), "channels": "RGB", "mean": [0.485, 0.456, 0.406],
              "std": [0.229, 0.224, 0.225]},
}
HOW_TO_STATE = ("state it: input_range=(0, 1) or (0, 255) in Python, --input-range 0,1 or "
                "0,255 on the command line (with mean=/std=, --mean/--std, when the model "
                "expects normalised inputs)")


def contract_from_json(data: Any) -> InputContract | None:
    """The contract a manifest records (None for a manifest written before contracts)."""
    if not isinstance(data, dict) or not isinstance(data.get("range"), list):
        return None
    try:
        return InputContract(range=tuple(float(v) for v in data["range"]),
                             channels=str(data.get("channels", "RGB")),
                             mean=floats(data.get("mean")), std=floats(data.get("std")),
                             size=tuple(int(v) for v in data.get("size", (0, 0))),
                             layout=str(data.get("layout", "NHWC")),
                             read_from=str(data.get("read_from", "")))
    except (TypeError, ValueError):
        raise UsageError(f"manifest 'input.contract' {data!r} is not a valid input "
                         "contract") from None


def parse_range(value: Any) -> tuple[float, float] | None:
    """``input_range``: (0, 1), (0, 255), "0,1", "0..255" or None; UsageError otherwise."""
    with as_export_errors():
        return shared.parse_range(value)


def parse_channels_stat(value: Any, name: str) -> tuple[float, ...] | None:
    """``mean``/``std``: one number, three numbers, or "a,b,c"; UsageError otherwise."""
    with as_export_errors():
        return shared.parse_channel_stat(value, name)


def stated_contract(options: Any, size: tuple[int, int]) -> InputContract | None:
    """The contract the user stated with ``input_range`` (and ``mean``/``std``), if any."""
    low_high = parse_range(options.input_range)
    mean = parse_channels_stat(options.mean, "mean")
    std = parse_channels_stat(options.std, "std")
    if low_high is None:
        if mean is not None or std is not None:
            raise UsageError("mean/std (--mean/--std) need input_range (--input-range 0,1 or "
                             "0,255): the range the mean and std are expressed in")
        return None
    if std is not None and mean is None:
        mean = (0.0, 0.0, 0.0)
    return InputContract(range=low_high, channels=options.channel_order, mean=mean, std=std,
                         size=size, read_from="stated by the user")


def zoo_contract(mode: str, size: tuple[int, int], read_from: str) -> InputContract:
    """The contract of a zoo preprocessing mode (a zoo model built by the exporter)."""
    row = ZOO_MODES.get(mode, ZOO_MODES["none"])
    return InputContract(range=row["range"], channels=row["channels"],
                         mean=floats(row.get("mean")), std=floats(row.get("std")),
                         size=size, read_from=read_from)


def recorded_contract(path: Path | None, model: Any, size: tuple[int, int]
                      ) -> InputContract | None:
    """The contract a ``.keras`` file's run records (labels.json or run_config.json beside
    it), else the one its leading Rescaling/Normalization layer implies; None if neither."""
    if path is not None:
        found = _from_run_files(Path(path), size)
        if found is not None:
            return found
    return _from_layers(model, size)


def _from_run_files(path: Path, size: tuple[int, int]) -> InputContract | None:
    labels = path.with_name("labels.json")
    if labels.is_file():
        try:
            meta = json.loads(labels.read_text())
        except (OSError, json.JSONDecodeError):
            meta = None
        text = str(meta.get("preprocessing", "")) if isinstance(meta, dict) else ""
        found = re.search(r"\b0\.\.(255|1)\b", text)
        if found:
            return InputContract(range=RANGES[f"0,{found[1]}"], size=size,
                                 read_from=f"{labels.name} beside the model")
    if path.with_name("run_config.json").is_file():  # the trainer's models take 0..255
        return InputContract(range=(0.0, 255.0), size=size,
                             read_from="run_config.json beside the model (a trainer run)")
    return None


def _from_layers(model: Any, size: tuple[int, int]) -> InputContract | None:
    """A leading Rescaling or Normalization layer tells which range it normalises: the one
    whose full span it maps to a span of 0.5..20 centred within that span."""
    layer = _first_layer(model)
    affine = _affine(layer) if layer is not None else None
    if affine is None:
        return None
    scale, offset = affine
    for low, high in RANGES.values():
        span = np.abs(scale) * (high - low)
        middle = scale * (high + low) / 2 + offset
        if np.all((span >= 0.5) & (span <= 20)) and np.all(np.abs(middle) <= span):
            return InputContract(range=(low, high), size=size,
                                 read_from=f"the model's leading {type(layer).__name__} layer "
                                           f"{layer.name!r} (normalisation in the model)")
    return None


def _first_layer(model: Any) -> Any:
    """The first layer after the input, looking inside nested models."""
    import keras

    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        if isinstance(layer, keras.Model):
            return _first_layer(layer)
        return layer
    return None


def _affine(layer: Any) -> tuple[np.ndarray, np.ndarray] | None:
    """``(scale, offset)`` of ``x * scale + offset`` for Rescaling and Normalization."""
    import keras

    if isinstance(layer, keras.layers.Rescaling):
        return (np.asarray(layer.scale, np.float64).reshape(-1),
                np.asarray(layer.offset, np.float64).reshape(-1))
    if isinstance(layer, keras.layers.Normalization) and not layer.invert:
        mean = np.asarray(keras.ops.convert_to_numpy(layer.mean), np.float64).reshape(-1)
        std = np.sqrt(np.maximum(np.asarray(keras.ops.convert_to_numpy(layer.variance),
                                            np.float64).reshape(-1), 1e-12))
        return 1.0 / std, -mean / std
    return None


def check_array_range(images: np.ndarray, contract: InputContract, role: str) -> None:
    """In-memory images are model input already: refuse those plainly in another range."""
    if contract.mean is not None:
        return
    low, high = float(np.min(images)), float(np.max(images))
    if contract.range[1] == 1.0 and high > 1.5:
        raise UsageError(f"{role} images reach {high:g} but the model's input range is 0..1 "
                         f"({contract.read_from}): scale them to 0..1 first")
    if contract.range[1] == 255.0 and high <= 1.0 and low >= 0.0 and high > 0.0:
        raise UsageError(f"{role} images lie in 0..1 but the model's input range is 0..255 "
                         f"({contract.read_from}): pass pixels 0..255 (or state "
                         "input_range=(0, 1) if the model takes 0..1)")
