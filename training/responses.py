"""Layer responses (He et al. 2015, section 4.2, Figure 7): the standard deviation of the
output of every 3x3 convolutional layer after its batch normalisation and before the
nonlinearity (the ReLU, and the addition in a residual block), on the test images.

The statistic is the standard deviation over every element of the response (all images,
positions and channels) of the test set, accumulated in float64. Residual nets are expected to
respond less than plain ones (the residual functions are closer to zero, section 4.2).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
from keras_resnet.training import data as data_lib
from keras_resnet.training.errors import UsageError
from keras_resnet.training.outputs import read_json


def response_layers(backbone: Any) -> list[str]:
    """Names of the batch-norm layers right after each 3x3 convolution, in layer order:
    the zoo names a conv ``X_conv`` and its batch norm ``X_bn`` (the stem's ``conv1_bn``, then
    ``convS_blockB_1_bn``, ``convS_blockB_2_bn``, ...). Shortcut projections are 1x1, so
    they are not included."""
    import keras

    names = {layer.name for layer in backbone.layers}
    found = []
    for layer in backbone.layers:
        if (isinstance(layer, keras.layers.Conv2D) and tuple(layer.kernel_size) == (3, 3)
                and layer.name.endswith("_conv")):
            bn = layer.name[: -len("_conv")] + "_bn"
            if bn in names:
                found.append(bn)
    return found


def response_probe(model: Any) -> tuple[Any, list[str]]:
    """``(probe, names)``: ``probe(images)`` returns the responses of the layers ``names``.

    ``model`` is a trainer ``model.keras`` (raw pixels -> ``preprocessing`` -> zoo backbone ->
    softmax) or a bare zoo model."""
    import keras

    backbone = next((layer for layer in model.layers if isinstance(layer, keras.Model)), model)
    names = response_layers(backbone)
    if not names:
        raise UsageError(f"{model.name} has no 3x3 convolution followed by a batch norm "
                         "(pre-activation nets have none; Figure 7 uses the v1 nets)")
    inner = keras.Model(backbone.inputs, [backbone.get_layer(n).output for n in names])
    front = []
    if backbone is not model and "preprocessing" in {layer.name for layer in model.layers}:
        front.append(model.get_layer("preprocessing"))

    def probe(images: Any) -> list[np.ndarray]:
        x = images
        for layer in front:
            x = layer(x)
        outputs = inner(x, training=False)
        outputs = outputs if isinstance(outputs, list | tuple) else [outputs]
        return [np.asarray(o, np.float64) for o in outputs]

    return probe, names


def response_stds(probe: Any, names: list[str], batches: Any) -> list[dict[str, Any]]:
    """``[{"index": 1, "layer": name, "std": s}, ...]`` in layer order over ``batches`` of
    ``(images, labels, weights)``; examples with weight 0 (padding) are left out."""
    sums = np.zeros(len(names))
    squares = np.zeros(len(names))
    counts = np.zeros(len(names))
    for images, _labels, weights in batches:
        keep = np.asarray(weights) > 0
        if not keep.any():
            continue
        for i, response in enumerate(probe(images)):
            values = response[keep]
            sums[i] += values.sum()
            squares[i] += np.square(values).sum()
            counts[i] += values.size
    if not counts.all():
        raise UsageError("no test images to measure the layer responses on")
    means = sums / counts
    variances = np.maximum(squares / counts - means**2, 0.0)
    return [{"index": i + 1, "layer": name, "std": math.sqrt(v)}
            for i, (name, v) in enumerate(zip(names, variances, strict=True))]


def sorted_by_magnitude(stds: list[dict[str, Any]]) -> list[float]:
    """Figure 7 (bottom): the standard deviations in descending order."""
    return sorted((s["std"] for s in stds), reverse=True)


def run_responses(run_dir: Path, *, data_dir: str | None = None, limit: int | None = None,
                  batch_size: int = 100) -> list[dict[str, Any]]:
    """The layer responses of a finished trainer run (its ``model.keras``) on the test split
    of the dataset it was trained on, with the evaluation view of its recipe."""
    import keras_resnet

    config = read_json(run_dir / "run_config.json")["config"]
    model = keras_resnet.load_model(run_dir / "model.keras")  # safe_mode=True
    size = int(config["input_size"])
    source = data_lib.open_source(config["dataset"], input_size=size,
                                  data_dir=data_dir or config.get("data_dir"))
    aug = data_lib.Augmentation.from_recipe(config["augmentation"], size, False)
    steps = data_lib.eval_steps(source, 1, batch_size, limit)
    batches = data_lib.eval_dataset(source, aug, pipeline_id=0, num_pipelines=1,
                                    per_replica_batch=batch_size, per_pipeline_batch=batch_size,
                                    steps=steps, limit=limit)
    probe, names = response_probe(model)
    return response_stds(probe, names, batches)
