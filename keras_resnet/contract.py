"""The input contract of a network (what one input image must look like: pixel range, then
mean and std, channel order, layout, size) and the coercion of in-memory images into checked
arrays, shared by the trainer (:func:`keras_resnet.training.train`) and the exporter
(:func:`keras_resnet.export.export_model`). Needs numpy only; Keras and TensorFlow are
imported where a layer is built or a ``tf.data.Dataset`` is read.

Every data source yields RGB pixels 0..255; a contract maps them to what a network takes,
``(pixels * high / 255 - mean) / std`` for the range ``(0, high)``, and back.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from keras_resnet.console import UsageError

#: The ranges a contract may name (the pixel scale before any mean/std).
RANGES = {"0,255": (0.0, 255.0), "0,1": (0.0, 1.0)}


@dataclass(frozen=True)
class InputContract:
    """One input image: ``layout`` float32 of ``size``, channels in ``channels`` order,
    pixels scaled to ``range`` and then, when ``mean`` is given, ``(x - mean) / std``."""

    range: tuple[float, float] = (0.0, 255.0)
    channels: str = "RGB"
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    size: tuple[int, int] = (0, 0)
    layout: str = "NHWC"
    #: Where the contract was read from (or ``stated by the user``).
    read_from: str = ""

    @property
    def is_raw_pixels(self) -> bool:
        """RGB pixels 0..255, what every source name yields."""
        return self.range == (0.0, 255.0) and self.mean is None and self.channels == "RGB"

    def affine(self) -> tuple[np.ndarray, np.ndarray]:
        """``(a, b)`` per channel with ``pixel_0_255 = (x - a) / b`` for RGB input ``x``."""
        low, high = self.range
        mean = np.asarray(self.mean if self.mean is not None else [0.0] * 3, np.float64)
        std = np.asarray(self.std if self.std is not None else [1.0] * 3, np.float64)
        return (low - mean) / std, (high - low) / (255.0 * std)

    def to_pixels(self, x: Any) -> Any:
        """RGB input (numpy or tensor) -> RGB pixels 0..255."""
        a, b = self.affine()
        return (x - a.astype(np.float32)) / b.astype(np.float32)

    def to_data(self, pixels: Any) -> Any:
        """RGB pixels 0..255 (numpy or tensor) -> RGB input under this contract."""
        a, b = self.affine()
        return pixels * b.astype(np.float32) + a.astype(np.float32)

    def to_model(self, pixels: np.ndarray) -> np.ndarray:
        """Raw RGB pixels 0..255 (NHWC numpy) -> model input, channel order included."""
        x = np.asarray(pixels, np.float32)
        if self.channels == "BGR":
            x = x[..., ::-1]
        x = x * np.float32(self.range[1] / 255.0)
        if self.mean is not None:
            std = np.asarray(self.std if self.std is not None else [1.0], np.float32)
            x = (x - np.asarray(self.mean, np.float32)) / std
        return np.ascontiguousarray(x, np.float32)

    def layer(self, *, to_data: bool, name: str) -> Any:
        """A Keras ``Normalization`` layer (safe to load) mapping RGB pixels 0..255 to the
        input (``to_data``) or the input to pixels 0..255."""
        import keras

        a, b = self.affine()
        return keras.layers.Normalization(axis=-1, mean=a.tolist(), variance=(b**2).tolist(),
                                          invert=to_data, dtype="float32", name=name)

    def describe(self) -> str:
        """The whole contract in words (an export manifest's ``input.range``)."""
        low, high = (number(v) for v in self.range)
        text = f"{self.channels} pixels {low}..{high}"
        if self.mean is not None:
            text += f", then (x - mean {list(self.mean)}) / std {list(self.std or [1.0])}"
        return f"{text}, float32 {self.layout} {self.size[0]}x{self.size[1]}"

    def describe_values(self) -> str:
        """The values alone in words (a training run's labels.json)."""
        low, high = (f"{v:g}" for v in self.range)
        text = f"{self.channels} float32 {low}..{high}"
        if self.mean is not None:
            text += f", normalised (x - {list(self.mean)}) / {list(self.std)}"
        return text

    def to_json(self) -> dict[str, Any]:
        """An export manifest's ``input.contract``."""
        return {"range": [number(v) for v in self.range], "channels": self.channels,
                "mean": list(self.mean) if self.mean is not None else None,
                "std": list(self.std) if self.std is not None else None,
                "layout": self.layout, "size": list(self.size), "read_from": self.read_from,
                "description": self.describe()}

    def run_json(self) -> dict[str, Any]:
        """The ``input_range``/``mean``/``std`` keys of a run's labels.json and
        run_config.json."""
        return {"input_range": list(self.range),
                "mean": list(self.mean) if self.mean is not None else None,
                "std": list(self.std) if self.std is not None else None}

    @classmethod
    def recorded(cls, labels: dict[str, Any]) -> InputContract:
        """The contract a run's labels.json records (raw pixels 0..255 when it has none)."""
        found = labels.get("input_range")
        if not isinstance(found, list) or len(found) != 2:
            return cls()
        mean, std = labels.get("mean"), labels.get("std")
        return cls((float(found[0]), float(found[1])), mean=floats(mean), std=floats(std))


def number(value: float) -> int | float:
    """``255.0`` as ``255``, ``0.5`` as ``0.5`` (for JSON and messages)."""
    return int(value) if float(value).is_integer() else float(value)


def floats(value: Any) -> tuple[float, ...] | None:
    return None if value is None else tuple(float(v) for v in value)


def parse_range(value: Any, *, flag: bool = True) -> tuple[float, float] | None:
    """``input_range``: (0, 1), (0, 255), "0,1", "0..255" or None; UsageError otherwise
    (worded for a command line's ``--input-range`` too when ``flag``)."""
    if value is None:
        return None
    if isinstance(value, str):
        key = value.replace("..", ",").replace(" ", "")
    elif isinstance(value, tuple | list | np.ndarray) and len(value) == 2 and all(
            isinstance(v, int | float | np.number) and not isinstance(v, bool | np.bool_)
            for v in value):
        key = f"{number(value[0])},{number(value[1])}"
    else:
        key = None
    if key in RANGES:
        return RANGES[key]
    if flag:
        raise UsageError(f"input_range (--input-range) must be 0,1 or 0,255 (got {value!r})")
    raise UsageError(f"input_range must be (0, 1) or (0, 255), got {value!r}")


def parse_channel_stat(value: Any, name: str, *, flag: bool = True) -> tuple[float, ...] | None:
    """``mean``/``std``: one number, three (a sequence, an array or "a,b,c") or None, as
    three floats; UsageError otherwise (``std`` above 0)."""
    if value is None:
        return None
    items = value.split(",") if isinstance(value, str) else np.ravel(np.asarray(
        value, dtype=object)).tolist()
    try:
        numbers = tuple(float(v) for v in items if not isinstance(v, bool))
    except (TypeError, ValueError):
        numbers = ()
    if len(numbers) not in (1, 3) or len(numbers) != len(items) or not all(
            np.isfinite(numbers)) or (name == "std" and any(v <= 0 for v in numbers)):
        label = f"{name} (--{name})" if flag else name
        raise UsageError(f"{label} must be one or three finite numbers"
                         f"{', all above 0' if name == 'std' else ''} (got {value!r})")
    return numbers * 3 if len(numbers) == 1 else numbers


# --- in-memory images -------------------------------------------------------------------------

def read_images(value: Any, role: str, accepted: str, limit: int | None = None
                ) -> tuple[np.ndarray, np.ndarray | None, str]:
    """``(images, labels or None, description)`` of an array of images, an ``(images,
    labels)`` pair, a ``tf.data.Dataset`` (batched or not, with or without labels) or an
    iterable of batches; a Dataset or iterable is read up to ``limit`` images (None: all,
    and an infinite Dataset is refused), arrays are taken whole. ``accepted`` names what the caller takes, for the error on anything else."""
    if isinstance(value, np.ndarray) or _is_tensor(value):
        x = np.asarray(value)
        return x, None, f"array of {len(x)} images"
    if isinstance(value, tuple) and len(value) == 2 and _is_array(value[0]) and (
            _is_array(value[1]) and np.ndim(value[1]) <= 2 and np.ndim(value[0]) >= 3):
        return value[0], value[1], "(images, labels) arrays"
    what = "tf.data.Dataset" if type(value).__name__.endswith("Dataset") else "batches"
    if isinstance(value, bytes | bytearray | str | int | float | dict | set):
        raise UsageError(f"{role} must be {accepted} (got {type(value).__name__})")
    if limit is None and what == "tf.data.Dataset" and _is_infinite(value):
        raise UsageError(f"{role}: the tf.data.Dataset is infinite (drop .repeat())")
    try:
        items = iter(value)
    except TypeError:
        raise UsageError(f"{role} must be {accepted} (got {type(value).__name__})") from None
    images, labels, count = _batches(items, limit)
    if not images:
        raise UsageError(f"{role} {what} yielded no images")
    if any(y is None for y in labels) and not all(y is None for y in labels):
        raise UsageError(f"{role} {what}: some batches have labels and some do not")
    try:
        x_all = np.concatenate(images)
        y_all = None if labels[0] is None else np.concatenate(labels)
    except ValueError as exc:
        raise UsageError(f"{role} {what}: batches of different shapes ({exc})") from None
    shown = count if limit is None else min(count, limit)
    return x_all[:limit], (None if y_all is None else y_all[:limit]), f"{what} ({shown} images)"


def _batches(items: Any, limit: int | None) -> tuple[list, list, int]:
    """The image and label batches of an iterable, up to ``limit`` images."""
    images, labels, count = [], [], 0
    for item in items:
        x, y = (item[0], item[1]) if isinstance(item, tuple | list) and len(item) == 2 \
            and not _looks_like_image(item) else (item, None)
        x = np.asarray(x)
        if x.ndim == 3:  # an unbatched Dataset yields single images
            x, y = x[None], (None if y is None else np.asarray(y)[None])
        images.append(x)
        labels.append(None if y is None else np.asarray(y))
        count += len(x)
        if limit is not None and count >= limit:
            break
    return images, labels, count


#: ``tf.data.INFINITE_CARDINALITY``, read without importing TensorFlow.
INFINITE_CARDINALITY = -1


def _is_infinite(dataset: Any) -> bool:
    return int(dataset.cardinality()) == INFINITE_CARDINALITY


def _is_tensor(value: Any) -> bool:
    return hasattr(value, "shape") and hasattr(value, "dtype") and hasattr(value, "numpy")


def _is_array(value: Any) -> bool:
    return isinstance(value, np.ndarray) or _is_tensor(value) or isinstance(value, list)


def _looks_like_image(item: Any) -> bool:
    """A pair of images of equal shape (two images of a batch list) is not (x, y)."""
    return np.ndim(item[0]) == np.ndim(item[1]) and np.ndim(item[0]) >= 3


def check_images(images: Any, labels: Any, role: str) -> tuple[np.ndarray, np.ndarray | None]:
    """Images: a non-empty numeric (N, H, W, C) array without NaN or infinity, as float32;
    labels (when given): N integers 0..classes-1, as int64. UsageError with one line
    otherwise."""
    try:
        x = np.asarray(images)
    except (ValueError, TypeError):
        raise UsageError(f"{role} images are not one array (ragged or mixed)") from None
    if x.dtype.kind not in "uif":
        raise UsageError(f"{role} images must be numbers (uint8, int or float), got dtype "
                         f"{x.dtype}")
    if x.ndim != 4:
        raise UsageError(f"{role} images must be 4-D (N, H, W, C), got shape {list(x.shape)}")
    if len(x) == 0:
        raise UsageError(f"{role} has no images (shape {list(x.shape)})")
    x = x.astype(np.float32)
    if not np.all(np.isfinite(x)):
        raise UsageError(f"{role} images contain NaN or infinite values")
    if labels is None:
        return x, None
    y = np.asarray(labels)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1 or len(y) != len(x):
        raise UsageError(f"{role} labels must be one integer per image: {len(x)} images, "
                         f"labels of shape {list(y.shape)}")
    if y.dtype.kind == "f" and np.all(np.isfinite(y)) and np.all(y == np.round(y)):
        y = y.astype(np.int64)
    if y.dtype.kind not in "iu" or np.any(y < 0):
        raise UsageError(f"{role} labels must be integers 0..classes-1 (class indices; got "
                         f"dtype {y.dtype}{', negative values' if y.dtype.kind in 'iu' else ''})")
    return x, y.astype(np.int64)
