"""Dataset sources: the one parser of a source name and the :class:`Source` of each kind.

The split rule of each source is in the package docstring (:mod:`keras_resnet.training.data`).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from keras_resnet.training.data.folders import IMAGE_EXTENSIONS, folder_splits
from keras_resnet.training.errors import UsageError

TFDS_ALIASES = {"cifar10": "cifar10", "cifar100": "cifar100", "imagenet2012": "imagenet2012",
                "imagenette": "imagenette"}
#: Images of the ``synthetic`` source's training and test splits (distinct random draws).
SYNTHETIC_TRAIN, SYNTHETIC_TEST = 256, 64
SOURCE_NAMES = ("digits, synthetic, cifar10, cifar100, imagenet2012, imagenette, tfds:NAME "
                "or folder:PATH")


def load_digits_arrays(input_size: int = 32) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """scikit-learn's bundled digits as RGB images: ``(x_train, y_train, x_test, y_test)``.

    float32 NHWC in 0..255, labels int64 0..9, the fixed split of
    ``keras_resnet.datasets.load_digits`` (a ``RandomState(0)`` permutation of the 1797
    images; the last 360 are the test set), which the exporter evaluates on too.
    """
    from keras_resnet.datasets import load_digits

    (x_train, y_train), (x_test, y_test) = load_digits(input_size)
    return x_train, y_train, x_test, y_test


@dataclass
class Source:
    """A dataset: class names, split sizes, and per-shard raw example datasets.

    ``examples(split, index, count, limit)`` returns a finite dataset of ``(raw, label)`` in a
    fixed order; ``decode(raw)`` turns ``raw`` into an HWC float32 image in 0..255.
    ``labelled`` is False where the labels mean nothing (synthetic data, a folder without
    class subfolders); ``random_access`` is False where drawing a sample means reading the
    whole split (tensorflow-datasets: samples are the split's first examples).
    """

    name: str
    labels: list[str]
    allow_flip: bool
    description: str
    examples: Callable[[str, int, int, int | None], Any]
    shard_size: Callable[[str, int, int, int | None], int]
    decode: Callable[[Any], Any] = field(default=lambda raw: raw)
    augment: bool = True  # False for synthetic data: benchmarks time the model, not the CPU
    labelled: bool = True
    random_access: bool = True

    @property
    def num_classes(self) -> int:
        return len(self.labels)


def _shard_len(n: int, index: int, count: int) -> int:
    return len(range(index, n, count))


def _list_source(name: str, lists: dict[str, tuple[Any, Any]], labels: list[str],
                 description: str) -> Source:
    """A source over in-memory ``{split: (raws, labels)}`` (arrays or file names)."""
    import tensorflow as tf

    def examples(split: str, index: int, count: int, limit: int | None):
        x, y = lists[split]
        x, y = x[:limit][index::count], np.asarray(y[:limit][index::count], np.int64)
        return tf.data.Dataset.from_tensor_slices((x, y))

    def shard_size(split: str, index: int, count: int, limit: int | None) -> int:
        return _shard_len(len(lists[split][1][:limit]), index, count)

    return Source(name, labels, True, description, examples, shard_size)


def _digits_source(input_size: int) -> Source:
    x_train, y_train, x_test, y_test = load_digits_arrays(input_size)
    source = _list_source("digits", {"train": (x_train, y_train), "test": (x_test, y_test)},
                          [str(i) for i in range(10)],
                          "scikit-learn digits (1437 train / 360 test, upscaled to RGB)")
    source.allow_flip = False
    return source


def _folder_source(path: str, role: str, labelled: bool) -> Source:
    import tensorflow as tf

    splits = folder_splits(path, role, labelled)
    root = splits.root

    def decode(raw):
        image = tf.io.decode_image(tf.io.read_file(raw), channels=3, expand_animations=False)
        return tf.cast(image, tf.float32)

    n_train, n_test = (len(splits.lists[s][0]) for s in ("train", "test"))
    source = _list_source(f"folder:{root}", splits.lists, splits.classes,
                          f"image folder {root} ({n_train} train / {n_test} test images)")
    source.decode, source.labelled = decode, bool(splits.classes)
    return source


def _synthetic_source(input_size: int, classes: int, seed: int) -> Source:
    import tensorflow as tf

    rng = np.random.RandomState(seed)
    n = SYNTHETIC_TRAIN + SYNTHETIC_TEST
    x = rng.randint(0, 256, size=(n, input_size, input_size, 3)).astype(np.uint8)
    y = rng.randint(0, classes, size=n)
    lists = {"train": (x[:SYNTHETIC_TRAIN], y[:SYNTHETIC_TRAIN]),
             "test": (x[SYNTHETIC_TRAIN:], y[SYNTHETIC_TRAIN:])}
    src = _list_source("synthetic", lists, [f"class_{i}" for i in range(classes)],
                       f"synthetic random images ({SYNTHETIC_TRAIN} repeated, {classes} classes)")
    src.decode = lambda raw: tf.cast(raw, tf.float32)
    src.augment = src.labelled = False
    return src


def _tfds_builder(name: str, data_dir: str | None, download: bool) -> Any:
    """The prepared tfds builder of ``name``; UsageError when it cannot be had offline."""
    import tensorflow_datasets as tfds

    family = name.split(":")[0].split("/")[0]
    if family not in tfds.list_builders(with_community_datasets=False):  # offline, no lookup
        raise UsageError(f"unknown tensorflow-datasets set {name!r} (not available offline): "
                         f"{family!r} is not in tensorflow-datasets' catalogue")
    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except Exception as exc:  # tfds raises several types for unknown names
        raise UsageError(f"unknown tensorflow-datasets set {name!r} (not available offline): "
                         f"{str(exc).splitlines()[0]}") from None
    where = data_dir or os.path.join("~", "tensorflow_datasets")
    if builder.is_prepared():
        return builder
    manual = getattr(builder, "MANUAL_DOWNLOAD_INSTRUCTIONS", None)
    manual_dir = Path(builder._data_dir_root) / "downloads" / "manual"  # noqa: SLF001
    if manual and not (manual_dir.is_dir() and any(manual_dir.iterdir())):
        raise UsageError(
            f"dataset {name!r} is not prepared in {where} and needs a manual download: put "
            f"its archives (for ImageNet: ILSVRC2012_img_train.tar and ILSVRC2012_img_val.tar) "
            f"in {manual_dir} and run again with --data-dir {builder._data_dir_root}")  # noqa: SLF001
    if not manual and not download:
        raise UsageError(
            f"dataset {name!r} is not available offline in {where}; run once with --download "
            f"on a machine with internet (or `tfds build {name} --data_dir DIR`) and pass "
            "--data-dir DIR")
    try:
        builder.download_and_prepare()
    except Exception as exc:
        raise UsageError(f"cannot prepare dataset {name!r}: {str(exc).splitlines()[0]}") from None
    return builder


def _tfds_splits(name: str, builder: Any) -> dict[str, str]:
    """``train`` for training; ``test``, else ``validation``, for evaluation."""
    features = builder.info.features
    if "image" not in features or "label" not in features:
        raise UsageError(f"tfds:{name} is not an image classification set "
                         "('image' and 'label' features)")
    split_names = set(builder.info.splits.keys())
    splits = {"train": "train",
              "test": "test" if "test" in split_names or not split_names else "validation"}
    if split_names and not {"train", splits["test"]} <= split_names:
        raise UsageError(f"tfds:{name} lacks a train and a test/validation split")
    return splits


def _tfds_source(name: str, data_dir: str | None, download: bool) -> Source:
    import tensorflow as tf
    import tensorflow_datasets as tfds

    builder = _tfds_builder(name, data_dir, download)
    splits = _tfds_splits(name, builder)

    def spec(split: str, index: int, count: int, limit: int | None) -> str:
        base = splits[split] if limit is None else f"{splits[split]}[:{limit}]"
        return tfds.even_splits(base, n=count)[index] if count > 1 else base

    def examples(split: str, index: int, count: int, limit: int | None):
        ds = builder.as_dataset(split=spec(split, index, count, limit), shuffle_files=False,
                                as_supervised=True)
        return ds.map(lambda x, y: (x, tf.cast(y, tf.int64)))

    def shard_size(split: str, index: int, count: int, limit: int | None) -> int:
        try:
            n = builder.info.splits[spec(split, index, count, limit)].num_examples
        except (KeyError, ValueError):
            n = 0
        if not n:  # metadata without counts: count once
            n = int(examples(split, index, count, limit).reduce(0, lambda c, _: c + 1))
        return n

    def decode(raw):
        image = tf.cast(raw, tf.float32)
        return tf.image.grayscale_to_rgb(image) if image.shape[-1] == 1 else image

    where = data_dir or os.path.join("~", "tensorflow_datasets")
    return Source(name, list(builder.info.features["label"].names), True,
                  f"tensorflow-datasets {name} ({where})", examples, shard_size, decode,
                  random_access=False)


def check_dataset_name(spec: str, role: str = "dataset") -> None:
    """Cheap validation of a source name (no loading): ``role`` names the flag that gave it
    (``dataset``, ``calibration``, ``data``) in the error."""
    if spec in ("digits", "synthetic") or spec in TFDS_ALIASES:
        return
    if spec.startswith("folder:") and spec[len("folder:"):]:
        folder = spec[len("folder:"):]
        if not Path(os.path.expanduser(folder)).is_dir():
            raise UsageError(f"{role} folder {folder} does not exist")
        return
    if spec.startswith("tfds:") and spec[len("tfds:"):]:
        return
    what = "dataset" if role == "dataset" else f"data source for --{role}"
    raise UsageError(f"unknown {what} {spec!r}; use {SOURCE_NAMES}")


def check_source(spec: str, role: str = "dataset", labelled: bool = True) -> None:
    """:func:`check_dataset_name`, and for a folder its file lists (no decoding, no
    TensorFlow): what a command checks before heavy work."""
    check_dataset_name(spec, role)
    if spec.startswith("folder:"):
        folder_splits(spec[len("folder:"):], role, labelled)


def open_source(spec: str, *, input_size: int, data_dir: str | None = None,
                download: bool = False, synthetic_classes: int = 1000, seed: int = 0,
                role: str = "dataset", labelled: bool = True) -> Source:
    """Open the dataset named by ``spec``; raises :class:`UsageError` when unavailable.
    ``labelled=False`` also accepts a folder of images without class subfolders."""
    check_dataset_name(spec, role)
    if spec == "digits":
        return _digits_source(input_size)
    if spec == "synthetic":
        return _synthetic_source(input_size, synthetic_classes, seed)
    if spec.startswith("folder:"):
        return _folder_source(spec[len("folder:"):], role, labelled)
    name = TFDS_ALIASES.get(spec, spec[len("tfds:"):] if spec.startswith("tfds:") else spec)
    return _tfds_source(name, data_dir, download)


__all__ = ["IMAGE_EXTENSIONS", "SOURCE_NAMES", "TFDS_ALIASES", "Source", "check_dataset_name",
           "check_source", "load_digits_arrays", "open_source"]
