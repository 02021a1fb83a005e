"""Training data held in memory: ``(x, y)`` numpy pairs and ``tf.data.Dataset`` objects for
:func:`keras_resnet.training.train`, as a :class:`~keras_resnet.training.data.Source`.

The input contract of such data is recorded, not assumed. ``input_range`` is the range of
the pixels the arrays hold (``(0, 1)`` or ``(0, 255)``); ``mean``/``std`` (per channel, in
that range) say the arrays were normalised as ``(pixel - mean) / std``. Left out, the range
is read from the values (all in 0..1: ``(0, 1)``; all in 0..255: ``(0, 255)``; anything else
is refused: state it). The source converts every image to RGB pixels 0..255, what the
trainer's pipelines, augmentation and statistics work in; the trained network takes the
arrays' own contract again (:class:`Contract`).

A ``tf.data.Dataset`` is read once into memory (it must be finite); without ``validation``
every 10th example (positions 9, 19, ...) is held out for evaluation, the rule of image
folders (:data:`keras_resnet.training.data.HOLD_OUT`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import numpy as np
from keras_resnet.training.data import HOLD_OUT, Source
from keras_resnet.training.errors import UsageError

RANGES = {(0.0, 1.0), (0.0, 255.0)}


@dataclass(frozen=True)
class Contract:
    """What the data (and so the trained network) hold: pixels in ``input_range``, then
    ``(x - mean) / std`` when ``mean`` is given."""

    input_range: tuple[float, float] = (0.0, 255.0)
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None

    @property
    def is_raw_pixels(self) -> bool:
        """RGB pixels 0..255, what every source name yields."""
        return self.input_range == (0.0, 255.0) and self.mean is None

    def affine(self) -> tuple[np.ndarray, np.ndarray]:
        """``(a, b)`` per channel with ``pixel_0_255 = (x - a) / b`` for data ``x``."""
        low, high = self.input_range
        mean = np.asarray(self.mean if self.mean is not None else [0.0] * 3, np.float64)
        std = np.asarray(self.std if self.std is not None else [1.0] * 3, np.float64)
        return (low - mean) / std, (high - low) / (255.0 * std)

    def to_pixels(self, x: Any) -> Any:
        """Data (numpy or tensor) -> RGB pixels 0..255."""
        a, b = self.affine()
        return (x - a.astype(np.float32)) / b.astype(np.float32)

    def to_data(self, pixels: Any) -> Any:
        """RGB pixels 0..255 (numpy or tensor) -> the data's contract."""
        a, b = self.affine()
        return pixels * b.astype(np.float32) + a.astype(np.float32)

    @classmethod
    def recorded(cls, labels: dict[str, Any]) -> Contract:
        """The contract a run's labels.json records (raw pixels 0..255 when it has none)."""
        found = labels.get("input_range")
        if not isinstance(found, list) or len(found) != 2:
            return cls()
        mean, std = labels.get("mean"), labels.get("std")
        return cls((float(found[0]), float(found[1])),
                   tuple(mean) if mean is not None else None,
                   tuple(std) if std is not None else None)

    def layer(self, *, to_data: bool, name: str) -> Any:
        """A Keras ``Normalization`` layer (safe to load) mapping pixels 0..255 to the data
        (``to_data``) or the data to pixels 0..255."""
        import keras

        a, b = self.affine()
        return keras.layers.Normalization(axis=-1, mean=a.tolist(), variance=(b**2).tolist(),
                                          invert=to_data, dtype="float32", name=name)

    def to_json(self) -> dict[str, Any]:
        """The ``input_range``/``mean``/``std`` keys of labels.json and run_config.json."""
        return {"input_range": list(self.input_range),
                "mean": list(self.mean) if self.mean is not None else None,
                "std": list(self.std) if self.std is not None else None}

    def describe(self) -> str:
        low, high = (f"{v:g}" for v in self.input_range)
        text = f"RGB float32 {low}..{high}"
        if self.mean is not None:
            text += f", normalised (x - {list(self.mean)}) / {list(self.std)}"
        return text


def _channels(value: Any, name: str) -> tuple[float, ...] | None:
    if value is None:
        return None
    values = np.atleast_1d(np.asarray(value, np.float64)).reshape(-1)
    if values.size == 1:
        values = np.repeat(values, 3)
    if values.size != 3 or not np.all(np.isfinite(values)):
        raise UsageError(f"{name} must be one number or three (R, G, B), got {value!r}")
    if name == "std" and np.any(values <= 0):
        raise UsageError(f"std must be positive, got {value!r}")
    return tuple(float(v) for v in values)


def resolve_contract(images: np.ndarray, input_range: Any, mean: Any, std: Any) -> Contract:
    """The contract ``images`` hold: as stated, or (raw pixels) read from their values."""
    mean_c, std_c = _channels(mean, "mean"), _channels(std, "std")
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
    try:
        stated = tuple(float(v) for v in input_range)
    except (TypeError, ValueError):
        stated = ()
    if stated not in RANGES:
        raise UsageError(f"input_range must be (0, 1) or (0, 255), got {input_range!r}")
    if mean_c is None and (low < stated[0] or high > stated[1]):
        raise UsageError(f"input_range={input_range!r}, but the images hold values in "
                         f"[{low:g}, {high:g}]")
    return Contract(stated, mean_c, std_c)


def as_arrays(data: Any, role: str) -> tuple[np.ndarray, np.ndarray]:
    """``(images float32 NHWC with 3 channels, labels int64)`` of an ``(x, y)`` pair or a
    finite ``tf.data.Dataset`` of ``(image, label)`` (batched or not)."""
    if isinstance(data, tuple | list) and len(data) == 2:
        x, y = np.asarray(data[0]), np.asarray(data[1])
    else:
        x, y = _read_dataset(data, role)
    if x.ndim != 4 or x.shape[-1] != 3 or x.shape[1] != x.shape[2]:
        raise UsageError(f"{role}: images must be square RGB (N, H, W, 3), got shape "
                         f"{tuple(x.shape)}")
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1 or len(y) != len(x) or not len(x):
        raise UsageError(f"{role}: labels must be (N,) integers for N > 0 images, got shape "
                         f"{tuple(y.shape)} for {len(x)} images")
    if not np.issubdtype(y.dtype, np.integer) or (y < 0).any():
        raise UsageError(f"{role}: labels must be integers 0..classes-1 (class indices)")
    if not np.all(np.isfinite(x)):
        raise UsageError(f"{role}: the images hold NaN or infinite values")
    return x.astype(np.float32), y.astype(np.int64)


def _read_dataset(data: Any, role: str) -> tuple[np.ndarray, np.ndarray]:
    import tensorflow as tf

    if not isinstance(data, tf.data.Dataset):
        raise UsageError(f"{role} must be a source name (digits, synthetic, folder:PATH, "
                         "tfds:NAME, ...), an (x, y) pair of arrays or a tf.data.Dataset of "
                         f"(image, label); got {type(data).__name__}")
    if data.cardinality() == tf.data.INFINITE_CARDINALITY:
        raise UsageError(f"{role}: the tf.data.Dataset is infinite (drop .repeat())")
    spec = data.element_spec
    if not isinstance(spec, tuple) or len(spec) != 2:
        raise UsageError(f"{role}: the tf.data.Dataset must yield (image, label) pairs")
    if spec[0].shape.rank == 4:
        data = data.unbatch()
    pairs = list(data.batch(1024).as_numpy_iterator())
    if not pairs:
        raise UsageError(f"{role}: the tf.data.Dataset is empty")
    return np.concatenate([p[0] for p in pairs]), np.concatenate([p[1] for p in pairs])


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
                  f"{contract.describe()})", examples, shard_size,
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
