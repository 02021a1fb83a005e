"""A seeded sample of one split as numpy arrays: what the exporter calibrates on (the
training split) and evaluates on (the test split), drawn by the trainer's split rules."""

from __future__ import annotations

import numpy as np
from keras_resnet.training.data.sources import Source, open_source
from keras_resnet.training.errors import UsageError

SPLITS = ("train", "test")


def _chosen(source: Source, split: str, count: int, seed: int):
    """The raw examples of the sample: a sorted seeded choice of ``count`` positions of the
    split, or its first ``count`` examples where the source has no random access."""
    import tensorflow as tf

    if not source.random_access:
        return source.examples(split, 0, 1, count)
    n = source.shard_size(split, 0, 1, None)
    keep = tf.constant(np.sort(np.random.default_rng(seed).permutation(n)[:count]), tf.int64)
    picked = source.examples(split, 0, 1, None).enumerate().filter(
        lambda i, _: tf.reduce_any(tf.equal(i, keep)))
    return picked.map(lambda _, example: example)


def load_split(spec: str, split: str, count: int, size: tuple[int, int], *, seed: int = 0,
               role: str = "data") -> tuple[np.ndarray, np.ndarray | None]:
    """Up to ``count`` images of ``split`` (``train`` or ``test``) of the source ``spec``,
    float32 NHWC RGB pixels 0..255 resized (bilinear) to ``size``, and their labels where
    the source has meaningful ones (else None). ``role`` names the flag in errors."""
    import tensorflow as tf

    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS} (got {split!r})")
    if count < 1:
        raise UsageError(f"sample count must be at least 1 (got {count})")
    source = open_source(spec, input_size=size[0], seed=seed, role=role, labelled=False)

    def prepare(raw, label):
        image = source.decode(raw)
        if tuple(image.shape[:2]) != tuple(size):
            image = tf.image.resize(image, size, method="bilinear")
        return tf.clip_by_value(image, 0.0, 255.0), label

    batches = _chosen(source, split, count, seed).map(prepare).batch(256)
    try:
        pairs = list(batches.as_numpy_iterator())
    except tf.errors.InvalidArgumentError as exc:
        raise UsageError(f"an image of {spec} cannot be decoded: "
                         f"{str(exc.message).strip().splitlines()[0]}") from None
    if not pairs:
        raise UsageError(f"{role} source {spec!r} has no {split} images")
    images = np.concatenate([x for x, _ in pairs]).astype(np.float32)
    labels = np.concatenate([y for _, y in pairs]) if source.labelled else None
    return images, labels
