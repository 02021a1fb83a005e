"""Training data held in memory: ``(x, y)`` numpy pairs and ``tf.data.Dataset`` objects for
:func:`keras_resnet.training.train`, as a :class:`~keras_resnet.training.data.Source`.

The input contract of such data is recorded, not assumed. ``input_range`` is the range of
the pixels the arrays hold (``(0, 1)`` or ``(0, 255)``); ``mean``/``std`` (per channel, in
that range) say the arrays were normalised as ``(pixel - mean) / std``. Left out, the range
is read from the values (all in 0..1: ``(0, 1)``; all in 0..255: ``(0, 255)``; anything else
is refused: state it). The source converts every image to RGB pixels 0..255, what the
trainer's pipelines, augmentation and statistics work in; the trained network takes the
arrays' own contract again (:class:`keras_resnet.contract.InputContract`, here ``Contract``).

A ``tf.data.Dataset`` is read once into memory (it must be finite); without ``validation``
every 10th example (positions 9, 19, ...) is held out for evaluation, the rule of image
folders (:data:`keras_resnet.training.data.HOLD_OUT`).
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
from keras_resnet.training.data import HOLD_OUT, Source
from keras_resnet.training.errors import UsageError

from keras_resnet.contract import InputContract as Contract
from keras_resnet.contract import check_images, parse_channel_stat, parse_range, read_images

__all__ = ["Contract", "array_source", "as_arrays", "combined", "digest", "hold_out",
           "resolve_contract"]

#: What ``train()`` takes as data (named in errors).
ACCEPTED = ("a source name (digits, synthetic, folder:PATH, tfds:NAME, ...), an (x, y) pair of "
            "arrays or a tf.data.Dataset of (image, label)")


def resolve_contract(images: np.ndarray, input_range: Any, mean: Any, std: Any) -> Contract:
    """The contract ``images`` hold: as stated, or (raw pixels) read from their values."""
    mean_c = parse_channel_stat(mean, "mean", flag=False)
    std_c = parse_channel_stat(std, "std", flag=False)
    if (mean_c is None) != (std_c is None):
        raise UsageError("give mean= and std= together (per channel, in input_range)")
    low, high = float(np.min(images)), float(np.max(images))
    if input_range is None:
        if mean_c is not None:
            raise UsageError("mean=/std= need input_range=(0, 1) or (0, 255): the range the "
                             "pixels had before normalisation")
        if low >= 0 and high <= 1:
            return Contract((0.0, 1.0))
        if low >= 0 and high <= 255:
            return Contract((0.0, 255.0))
        raise UsageError(f"the images hold values in [{low:g}, {high:g}]: state "
                         "input_range=(0, 1) or (0, 255), with mean=/std= when they are "
                         "normalised")
    stated = parse_range(input_range, flag=False)
    if mean_c is None and (low < stated[0] or high > stated[1]):
        raise UsageError(f"input_range={input_range!r}, but the images hold values in "
                         f"[{low:g}, {high:g}]")
    return Contract(stated, mean=mean_c, std=std_c)


def as_arrays(data: Any, role: str) -> tuple[np.ndarray, np.ndarray]:
    """``(images float32 NHWC with 3 channels, labels int64)`` of an ``(x, y)`` pair or a
    finite ``tf.data.Dataset`` of ``(image, label)`` (batched or not)."""
    if isinstance(data, tuple | list) and len(data) == 2:
        x, y = np.asarray(data[0]), np.asarray(data[1])
    else:
        import tensorflow as tf

        if not isinstance(data, tf.data.Dataset):
            raise UsageError(f"{role} must be {ACCEPTED}; got {type(data).__name__}")
        x, y, _ = read_images(data, role, ACCEPTED)
        if y is None:
            raise UsageError(f"{role}: the tf.data.Dataset must yield (image, label) pairs")
    if x.ndim != 4 or x.shape[-1] != 3 or x.shape[1] != x.shape[2]:
        raise UsageError(f"{role}: images must be square RGB (N, H, W, 3), got shape "
                         f"{tuple(x.shape)}")
    return check_images(x, y, role)


def digest(*arrays: np.ndarray) -> str:
    """A short SHA-256 of the arrays' shapes and bytes (the data's identity in a model dir)."""
    h = hashlib.sha256()
    for a in arrays:
        h.update(str(a.shape).encode())
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()[:16]


def array_source(name: str, splits: dict[str, tuple[np.ndarray, np.ndarray]],
                 labels: list[str], contract: Contract) -> Source:
    """A :class:`Source` over in-memory ``{split: (x, y)}``; decoding converts to 0..255."""
    import tensorflow as tf

    def examples(split: str, index: int, count: int, limit: int | None) -> Any:
        x, y = splits[split]
        return tf.data.Dataset.from_tensor_slices((x[:limit][index::count],
                                                   y[:limit][index::count]))

    def shard_size(split: str, index: int, count: int, limit: int | None) -> int:
        return len(range(index, len(splits[split][1][:limit]), count))

    n_train, n_test = (len(splits[s][1]) if s in splits else 0 for s in ("train", "test"))
    return Source(name, labels, True, f"in-memory images ({n_train} train / {n_test} test, "
                  f"{contract.describe_values()})", examples, shard_size,
                  decode=lambda raw: tf.cast(contract.to_pixels(raw), tf.float32))


def hold_out(x: np.ndarray, y: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Every :data:`HOLD_OUT`-th example (positions 9, 19, ...) as ``test``."""
    test = np.zeros(len(y), bool)
    test[HOLD_OUT - 1::HOLD_OUT] = True
    if test.all() or not test.any():
        raise UsageError(f"train(): {len(y)} images are too few to hold out every "
                         f"{HOLD_OUT}th for evaluation; pass validation=")
    return {"train": (x[~test], y[~test]), "test": (x[test], y[test])}


def predecoded(source: Source, split: str) -> Any:
    """``split`` of ``source`` with its images decoded (for a source of mixed parts)."""
    def examples(_split: str, index: int, count: int, limit: int | None) -> Any:
        return source.examples(split, index, count, limit).map(
            lambda raw, y: (source.decode(raw), y))

    def shard_size(_split: str, index: int, count: int, limit: int | None) -> int:
        return source.shard_size(split, index, count, limit)

    return examples, shard_size


def combined(train: Source, test: Source) -> Source:
    """``train``'s training split with ``test``'s test split (``validation=``)."""
    if train.num_classes != test.num_classes:
        raise UsageError(f"validation has {test.num_classes} classes, the training data "
                         f"{train.num_classes}")
    parts = {"train": predecoded(train, "train"), "test": predecoded(test, "test")}
    return Source(f"{train.name}+{test.name}", train.labels, train.allow_flip,
                  f"{train.description}; evaluated on {test.description}",
                  lambda split, *a: parts[split][0](split, *a),
                  lambda split, *a: parts[split][1](split, *a),
                  augment=train.augment, labelled=train.labelled and test.labelled)
