"""The tf.data input pipelines and the image transforms of the trainer.

Pipelines are sharded per input pipeline (worker), decode and augment in parallel, prefetch,
and are a pure function of ``(seed, step)``: the shuffle order of epoch ``e`` uses seed
``seed + e`` and every augmentation draws from a stateless RNG keyed by the example's position
in the stream, so a resumed run sees exactly the batches an uninterrupted run would.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from keras_resnet.training.data.sources import Source
from keras_resnet.training.errors import UsageError

# ----------------------------------------------------------------------------- transforms

@dataclass(frozen=True)
class Augmentation:
    """How training images are augmented and evaluation images resized.

    ``pad_crop_flip``: He et al. 2015 sec. 4.2 (pad 4, random crop, horizontal flip).
    ``scale_crop_flip``: sec. 3.4 (shorter side uniformly in [256, 480], random 224 crop, flip);
    evaluation resizes the shorter side to 256 and takes the centre 224 crop. Side lengths scale
    with ``input_size / 224``.
    ``color: {"type": "pca_lighting", "std": 0.1}``: sec. 3.4's "standard color augmentation"
    of Krizhevsky et al. 2012: each training image gets ``P (alpha * lambda)`` added to every
    pixel, ``P``/``lambda`` the eigenvectors/eigenvalues of the RGB covariance of the training
    images (values scaled to [0, 1], then the shift times 255), ``alpha ~ N(0, std)`` per image.
    ``with_lighting`` supplies ``P`` and ``lambda`` once :func:`image_statistics` measured them.
    """

    kind: str
    input_size: int
    flip: bool
    pad: int = 4
    min_side: int = 256
    max_side: int = 480
    eval_side: int = 256
    lighting_std: float = 0.0
    eigval: tuple[float, ...] = ()
    eigvec: tuple[tuple[float, ...], ...] = ()

    def with_lighting(self, eigval: np.ndarray, eigvec: np.ndarray) -> Augmentation:
        """This augmentation with the RGB principal components (``eigvec`` columns)."""
        return replace(self, eigval=tuple(float(v) for v in eigval),
                       eigvec=tuple(tuple(float(v) for v in row) for row in eigvec))

    @classmethod
    def from_recipe(cls, spec: dict[str, Any], input_size: int, flip: bool) -> Augmentation:
        kind = spec.get("type", "auto")
        color = spec.get("color") or {"type": "none"}
        if color.get("type") not in ("none", "pca_lighting"):
            raise UsageError(f"unknown color augmentation {color.get('type')!r} in recipe "
                             "(allowed: none, pca_lighting)")
        lighting = float(color.get("std", 0.1)) if color["type"] == "pca_lighting" else 0.0
        if lighting < 0:
            raise UsageError(f"color augmentation std must not be negative, got {lighting}")
        return replace(cls._geometry(spec, kind, input_size, flip), lighting_std=lighting)

    @classmethod
    def _geometry(cls, spec: dict[str, Any], kind: str, input_size: int,
                  flip: bool) -> Augmentation:
        if kind == "auto":
            kind = "pad_crop_flip" if input_size <= 64 else "scale_crop_flip"
        if kind == "pad_crop_flip":
            return cls(kind, input_size, flip, pad=int(spec.get("pad", 4)))
        if kind == "scale_crop_flip":
            ratio = input_size / 224.0
            return cls(kind, input_size, flip,
                       min_side=round(spec.get("min_side", 256) * ratio),
                       max_side=round(spec.get("max_side", 480) * ratio),
                       eval_side=round(spec.get("eval_side", 256) * ratio))
        if kind == "none":
            return cls(kind, input_size, flip)
        raise UsageError(f"unknown augmentation type {kind!r} in recipe")


def _resize_shorter(image, side):
    import tensorflow as tf

    shape = tf.shape(image)
    h, w = tf.cast(shape[0], tf.float32), tf.cast(shape[1], tf.float32)
    scale = tf.cast(side, tf.float32) / tf.minimum(h, w)
    new = tf.cast(tf.round(tf.stack([h * scale, w * scale])), tf.int32)
    return tf.image.resize(image, tf.maximum(new, side))


def eval_transform(image, aug: Augmentation):
    """Deterministic evaluation view of an HWC float32 image (0..255)."""
    import tensorflow as tf

    size = aug.input_size
    if aug.kind == "scale_crop_flip":
        image = _resize_shorter(image, aug.eval_side)
        return tf.image.resize_with_crop_or_pad(image, size, size)
    return tf.ensure_shape(_resize_to(image, size), (size, size, 3))


def _resize_to(image, size: int):
    """Resize to ``size`` x ``size`` unless the image already has that static shape."""
    import tensorflow as tf

    if tuple(image.shape[:2]) == (size, size):
        return image
    return tf.image.resize(image, (size, size))


def train_transform(image, aug: Augmentation, seed):
    """Random training view; ``seed`` is a stateless RNG seed (shape [2], int)."""
    import tensorflow as tf

    size = aug.input_size
    seeds = tf.random.experimental.stateless_split(seed, 3)
    if aug.kind == "scale_crop_flip":
        side = tf.random.stateless_uniform([], seeds[0], aug.min_side, aug.max_side + 1, tf.int32)
        image = _resize_shorter(image, side)
        image = tf.image.stateless_random_crop(image, (size, size, 3), seeds[1])
    else:
        image = _resize_to(image, size)
        if aug.kind == "pad_crop_flip" and aug.pad:
            image = tf.image.pad_to_bounding_box(image, aug.pad, aug.pad, size + 2 * aug.pad,
                                                 size + 2 * aug.pad)
            image = tf.image.stateless_random_crop(image, (size, size, 3), seeds[1])
    if aug.flip and aug.kind != "none":
        image = tf.image.stateless_random_flip_left_right(image, seeds[2])
    if aug.lighting_std and aug.kind != "none":
        image = image + pca_lighting_shift(aug, tf.random.experimental.stateless_fold_in(seed, 3))
    return tf.ensure_shape(image, (size, size, 3))


def pca_lighting_shift(aug: Augmentation, seed):
    """The RGB shift ``255 * P (alpha * lambda)`` of Krizhevsky et al. 2012, one per image."""
    import tensorflow as tf

    if len(aug.eigval) != 3:
        raise ValueError("pca_lighting needs the RGB principal components: call with_lighting")
    alpha = tf.random.stateless_normal([3], seed, stddev=aug.lighting_std)
    eigvec = tf.constant(aug.eigvec, tf.float32)
    return 255.0 * tf.linalg.matvec(eigvec, alpha * tf.constant(aug.eigval, tf.float32))


# ----------------------------------------------------------------------------- pipelines

def train_dataset(source: Source, aug: Augmentation, *, pipeline_id: int, num_pipelines: int,
                  per_replica_batch: int, per_pipeline_batch: int, seed: int, start_step: int,
                  cache: bool = False, shuffle_buffer: int = 10000):
    """The infinite, resumable training stream of one input pipeline (worker).

    Batches are ``per_replica_batch``; the pipeline feeds ``per_pipeline_batch`` examples per
    step (all its local replicas), so resuming at ``start_step`` skips
    ``start_step * per_pipeline_batch`` examples of the deterministic stream.
    """
    import tensorflow as tf

    autotune = tf.data.AUTOTUNE
    n = source.shard_size("train", pipeline_id, num_pipelines, None)
    if n <= 0:
        raise UsageError(f"dataset {source.name!r} has no training examples for "
                         f"input pipeline {pipeline_id}")
    base = source.examples("train", pipeline_id, num_pipelines, None)
    if cache:
        base = base.cache()
    consumed = start_step * per_pipeline_batch
    first_epoch, offset = divmod(consumed, n)
    buffer = min(shuffle_buffer, n)
    stream_seed = seed * 7919 + pipeline_id

    def epoch(e):
        # Pin the traced function's graph seed: the order then depends on the stream seed
        # alone, and TF's get_seed no longer compares this symbolic op seed with 0 in Python
        # (it does when the global seed is 0, e.g. --seed 0, and raises).
        tf.compat.v1.get_default_graph().seed = 1
        return base.shuffle(buffer, seed=stream_seed * 1000003 + e, reshuffle_each_iteration=False)

    ds = tf.data.Dataset.range(first_epoch, 2**62).flat_map(epoch).skip(offset)
    ds = ds.enumerate(start=consumed)

    def prepare(index, example):
        raw, label = example
        key = tf.stack([tf.cast(stream_seed, tf.int64), index])
        return train_transform(source.decode(raw), aug, key), label

    ds = ds.map(prepare, num_parallel_calls=autotune, deterministic=True)
    return ds.batch(per_replica_batch, drop_remainder=True).prefetch(autotune)


def eval_steps(source: Source, num_pipelines: int, per_pipeline_batch: int,
               limit: int | None) -> int:
    """Evaluation steps so every pipeline covers its shard (the largest one) exactly once."""
    largest = max(source.shard_size("test", i, num_pipelines, limit) for i in range(num_pipelines))
    return max(1, math.ceil(largest / per_pipeline_batch))


def eval_dataset(source: Source, aug: Augmentation, *, pipeline_id: int, num_pipelines: int,
                 per_replica_batch: int, per_pipeline_batch: int, steps: int,
                 limit: int | None = None):
    """The test shard of one pipeline as ``(image, label, weight)``, padded with weight-0
    examples to exactly ``steps`` steps so every replica runs the same number of batches."""
    import tensorflow as tf

    size = aug.input_size
    ds = source.examples("test", pipeline_id, num_pipelines, limit)
    ds = ds.map(lambda raw, y: (eval_transform(source.decode(raw), aug), y, tf.constant(1.0)),
                num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    pad = tf.data.Dataset.from_tensors((tf.zeros((size, size, 3)), tf.constant(0, tf.int64),
                                        tf.constant(0.0))).repeat()
    ds = ds.concatenate(pad).take(steps * per_pipeline_batch)
    return ds.batch(per_replica_batch, drop_remainder=True).prefetch(tf.data.AUTOTUNE)


@dataclass(frozen=True)
class ImageStatistics:
    """What :func:`image_statistics` measures on the training images."""

    pixel_mean: np.ndarray  #: HWC, 0..255
    channel_std: np.ndarray  #: (3,), 0..255
    rgb_eigval: np.ndarray  #: (3,), descending: eigenvalues of the RGB covariance (0..1 scale)
    rgb_eigvec: np.ndarray  #: (3, 3), columns: the matching unit eigenvectors


def image_statistics(source: Source, aug: Augmentation, max_images: int) -> ImageStatistics:
    """Per-pixel mean (HWC), per-channel std and RGB principal components of up to
    ``max_images`` training images, in the evaluation view (He et al. 2015 sec. 3.4/4.2:
    per-pixel mean subtraction; the components drive the colour augmentation)."""
    import tensorflow as tf

    ds = source.examples("train", 0, 1, max_images)
    ds = ds.map(lambda raw, y: eval_transform(source.decode(raw), aug),
                num_parallel_calls=tf.data.AUTOTUNE).batch(256)
    total, count = None, 0
    rgb_sum, rgb_outer = np.zeros(3), np.zeros((3, 3))
    for batch in ds.as_numpy_iterator():
        batch = batch.astype(np.float64)
        total = batch.sum(0) if total is None else total + batch.sum(0)
        count += len(batch)
        rgb = batch.reshape(-1, 3) / 255.0
        rgb_sum += rgb.sum(0)
        rgb_outer += rgb.T @ rgb
    if not count:
        raise UsageError(f"dataset {source.name!r} has no training images")
    mean = total / count
    pixels = count * mean.shape[0] * mean.shape[1]
    rgb_mean = rgb_sum / pixels
    covariance = rgb_outer / pixels - np.outer(rgb_mean, rgb_mean)  # of values in [0, 1]
    channel_var = np.diag(covariance) * 255.0**2
    eigval, eigvec = np.linalg.eigh(covariance)  # ascending
    order = np.argsort(eigval)[::-1]
    return ImageStatistics(mean.astype(np.float32),
                           np.sqrt(np.maximum(channel_var, 1e-6)).astype(np.float32),
                           np.maximum(eigval[order], 0.0).astype(np.float32),
                           eigvec[:, order].astype(np.float32))
