"""Top-1/top-5 accuracy of a saved ``model.keras`` (raw 0..255 RGB in, probabilities out)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
from keras_resnet.training import data as data_lib
from keras_resnet.training.errors import UsageError


def evaluate_model(model_path: Path, dataset: str, *, data_dir: str | None = None,
                   input_size: int | None = None, batch_size: int = 100,
                   limit: int | None = None,
                   augmentation: dict[str, Any] | None = None,
                   contract: Any = None, split: str = "test") -> dict[str, Any]:
    """Evaluate ``model_path`` on the ``split`` (``test`` or ``train``) of ``dataset`` with
    the evaluation view (resize, or shorter side 256 + centre crop for ImageNet-style
    augmentation; no random augmentation, the model in inference mode), the pixels
    converted to the model's input ``contract``
    (:class:`keras_resnet.training.in_memory.Contract`; None: pixels 0..255)."""
    if split not in ("test", "train"):
        raise UsageError(f"split must be test or train, got {split!r}")
    import tensorflow as tf

    import keras_resnet

    try:
        model = keras_resnet.load_model(model_path)  # safe_mode, headroom for deep graphs
    except Exception as exc:
        raise UsageError(f"cannot load {str(model_path)!r}: {str(exc).splitlines()[0]}") from None
    size = input_size or int(model.input_shape[1])
    source = _split_as_test(data_lib.open_source(dataset, input_size=size, data_dir=data_dir),
                            split)
    aug = data_lib.Augmentation.from_recipe(augmentation or {"type": "auto"}, size, False)
    steps = data_lib.eval_steps(source, 1, batch_size, limit)
    ds = data_lib.eval_dataset(source, aug, pipeline_id=0, num_pipelines=1,
                               per_replica_batch=batch_size, per_pipeline_batch=batch_size,
                               steps=steps, limit=limit)
    classes = int(model.output_shape[-1])
    if classes != source.num_classes:
        raise UsageError(f"the model predicts {classes} classes, {dataset} has "
                         f"{source.num_classes}")
    k = min(5, classes)

    @tf.function
    def step(images, labels, weights):
        if contract is not None and not contract.is_raw_pixels:
            images = contract.to_data(images)
        probs = tf.cast(model(images, training=False), tf.float32)
        top1 = tf.cast(tf.math.in_top_k(labels, probs, 1), tf.float32) * weights
        top5 = tf.cast(tf.math.in_top_k(labels, probs, k), tf.float32) * weights
        return tf.reduce_sum(top1), tf.reduce_sum(top5), tf.reduce_sum(weights)

    sums = np.zeros(3)
    for images, labels, weights in ds:
        sums += np.array([float(v) for v in step(images, labels, weights)])
    count = max(sums[2], 1.0)
    return {"top1": float(sums[0] / count), "top5": float(sums[1] / count),
            "examples": int(sums[2])}


def _split_as_test(source: Any, split: str) -> Any:
    """``source`` with ``split`` read where the evaluation pipeline reads ``test``."""
    if split == "test":
        return source
    return dataclasses.replace(
        source, examples=lambda _s, i, n, limit: source.examples(split, i, n, limit),
        shard_size=lambda _s, i, n, limit: source.shard_size(split, i, n, limit))
