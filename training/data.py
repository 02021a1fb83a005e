"""Datasets and the tf.data input pipelines.

Sources: ``digits`` (scikit-learn's bundled handwritten digits, offline), ``synthetic``,
``folder:PATH`` and tensorflow-datasets sets (``cifar10``, ``cifar100``, ``imagenet2012``,
``imagenette``, ``tfds:NAME``). Every source yields raw RGB pixels in 0..255; the
normalisation is part of the model (see :mod:`training.model`).

Pipelines are sharded per input pipeline (worker), decode and augment in parallel, prefetch,
and are a pure function of ``(seed, step)``: the shuffle order of epoch ``e`` uses seed
``seed + e`` and every augmentation draws from a stateless RNG keyed by the example's position
in the stream, so a resumed run sees exactly the batches an uninterrupted run would.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from keras_resnet.training.errors import UsageError

TFDS_ALIASES = {"cifar10": "cifar10", "cifar100": "cifar100", "imagenet2012": "imagenet2012",
                "imagenette": "imagenette"}
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif")


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
    """

    name: str
    labels: list[str]
    allow_flip: bool
    description: str
    examples: Callable[[str, int, int, int | None], Any]
    shard_size: Callable[[str, int, int, int | None], int]
    decode: Callable[[Any], Any] = field(default=lambda raw: raw)
    augment: bool = True  # False for synthetic data: benchmarks time the model, not the CPU

    @property
    def num_classes(self) -> int:
        return len(self.labels)


def _shard_len(n: int, index: int, count: int) -> int:
    return len(range(index, n, count))


def _array_source(name: str, x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray,
                  y_test: np.ndarray, labels: list[str], allow_flip: bool,
                  description: str) -> Source:
    import tensorflow as tf

    arrays = {"train": (x_train, y_train), "test": (x_test, y_test)}

    def examples(split: str, index: int, count: int, limit: int | None):
        x, y = arrays[split]
        x, y = x[:limit], y[:limit]
        return tf.data.Dataset.from_tensor_slices((x[index::count], y[index::count].astype(np.int64)))

    def shard_size(split: str, index: int, count: int, limit: int | None) -> int:
        return _shard_len(len(arrays[split][1][:limit]), index, count)

    return Source(name, labels, allow_flip, description, examples, shard_size)


def _folder_files(root: Path, classes: list[str]) -> tuple[list[str], list[int]]:
    files, labels = [], []
    for label, cls in enumerate(classes):
        for path in sorted((root / cls).rglob("*")):
            if path.suffix.lower() in IMAGE_EXTENSIONS and path.is_file():
                files.append(str(path))
                labels.append(label)
    return files, labels


#: First bytes of each accepted image format, and the bytes a complete file ends with.
_SIGNATURES = ((b"\x89PNG\r\n\x1a\n", b"IEND\xaeB`\x82"), (b"\xff\xd8\xff", b"\xff\xd9"),
               (b"GIF87a", b";"), (b"GIF89a", b";"), (b"BM", b""))


def image_file_problem(path: Path) -> str | None:
    """Why ``path`` is not a complete PNG, JPEG, GIF or BMP file, or None: an empty or
    foreign file, or one whose end marker is not within its last KiB (truncated). Damage
    inside a file is found when it is decoded."""
    try:
        size = path.stat().st_size
        with path.open("rb") as f:
            head = f.read(16)
            f.seek(max(0, size - 1024))
            tail = f.read(1024)
    except OSError as exc:
        return f"unreadable: {exc.strerror}"
    if not size:
        return "empty file"
    for start, end in _SIGNATURES:
        if head.startswith(start):
            if start == b"BM":
                declared = int.from_bytes(head[2:6], "little")
                return None if declared <= size else "truncated (shorter than its header says)"
            return None if end in tail else "truncated (no end marker)"
    return "not a PNG, JPEG, GIF or BMP file"


def _check_folder(root: Path, classes: list[str], lists: dict[str, tuple[list[str], list[int]]]
                  ) -> None:
    """Every class has training images and every image file is complete; else UsageError."""
    present = set(lists["train"][1])
    empty = [cls for label, cls in enumerate(classes) if label not in present]
    if empty:
        raise UsageError(f"dataset folder {str(root)!r}: class folder {empty[0]!r} has no "
                         f"training images{f' (and {len(empty) - 1} more)' if len(empty) > 1 else ''}"
                         "; remove it or add images")
    bad = [(f, problem) for files, _ in lists.values() for f in files
           if (problem := image_file_problem(Path(f)))]
    if bad:
        more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
        raise UsageError(f"dataset image {bad[0][0]!r} is {bad[0][1]}{more}; fix or remove it")


def _folder_source(path: str) -> Source:
    import tensorflow as tf

    root = Path(os.path.expanduser(path))
    if not root.is_dir():
        raise UsageError(f"dataset folder {str(root)!r} does not exist")
    split_dirs = {"train": root / "train", "test": root / "val"}
    has_splits = split_dirs["train"].is_dir() and split_dirs["test"].is_dir()
    class_root = split_dirs["train"] if has_splits else root
    classes = sorted(p.name for p in class_root.iterdir() if p.is_dir())
    if not classes:
        raise UsageError(f"dataset folder {str(root)!r} has no class subfolders")
    if has_splits:
        lists = {s: _folder_files(d, classes) for s, d in split_dirs.items()}
    else:
        files, labels = _folder_files(root, classes)
        # Fixed split: every 10th file of the sorted list is the test set.
        lists = {"train": ([f for i, f in enumerate(files) if i % 10 != 9],
                           [y for i, y in enumerate(labels) if i % 10 != 9]),
                 "test": ([f for i, f in enumerate(files) if i % 10 == 9],
                          [y for i, y in enumerate(labels) if i % 10 == 9])}
    for split, (files, _) in lists.items():
        if not files:
            raise UsageError(f"dataset folder {str(root)!r} has no {split} images "
                             f"({', '.join(IMAGE_EXTENSIONS)})")
    _check_folder(root, classes, lists)

    def examples(split: str, index: int, count: int, limit: int | None):
        files, labels = lists[split]
        files, labels = files[:limit][index::count], labels[:limit][index::count]
        return tf.data.Dataset.from_tensor_slices((files, np.asarray(labels, np.int64)))

    def shard_size(split: str, index: int, count: int, limit: int | None) -> int:
        return _shard_len(len(lists[split][0][:limit]), index, count)

    def decode(raw):
        image = tf.io.decode_image(tf.io.read_file(raw), channels=3, expand_animations=False)
        return tf.cast(image, tf.float32)

    n_train, n_test = len(lists["train"][0]), len(lists["test"][0])
    return Source(f"folder:{root}", classes, True,
                  f"image folder {root} ({n_train} train / {n_test} test images)",
                  examples, shard_size, decode)


def _synthetic_source(input_size: int, classes: int, seed: int) -> Source:
    rng = np.random.RandomState(seed)
    n = 256
    x = rng.randint(0, 256, size=(n, input_size, input_size, 3)).astype(np.uint8)
    y = rng.randint(0, classes, size=n)
    src = _array_source("synthetic", x, y, x[:64], y[:64], [f"class_{i}" for i in range(classes)],
                        True, f"synthetic random images ({n} repeated, {classes} classes)")
    import tensorflow as tf

    src.decode = lambda raw: tf.cast(raw, tf.float32)
    src.augment = False
    return src


def _tfds_source(name: str, data_dir: str | None, download: bool) -> Source:
    import tensorflow as tf
    import tensorflow_datasets as tfds

    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except Exception as exc:  # tfds raises several types for unknown names
        raise UsageError(f"unknown tensorflow-datasets set {name!r}: {str(exc).splitlines()[0]}") from None
    where = data_dir or os.path.join("~", "tensorflow_datasets")
    if not builder.is_prepared():
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
    features = builder.info.features
    if "image" not in features or "label" not in features:
        raise UsageError(f"tfds:{name} is not an image classification set "
                         "('image' and 'label' features)")
    labels = list(features["label"].names)
    split_names = set(builder.info.splits.keys())
    splits = {"train": "train",
              "test": "test" if "test" in split_names or not split_names else "validation"}
    if split_names and not {"train", splits["test"]} <= split_names:
        raise UsageError(f"tfds:{name} lacks a train and a test/validation split")

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

    return Source(name, labels, True, f"tensorflow-datasets {name} ({where})", examples,
                  shard_size, decode)


def check_dataset_name(spec: str) -> None:
    """Cheap validation of ``--dataset`` (no loading)."""
    if spec in ("digits", "synthetic") or spec in TFDS_ALIASES:
        return
    if spec.startswith("folder:") and spec[len("folder:"):]:
        if not Path(os.path.expanduser(spec[len("folder:"):])).is_dir():
            raise UsageError(f"dataset folder {spec[len('folder:'):]!r} does not exist")
        return
    if spec.startswith("tfds:") and spec[len("tfds:"):]:
        return
    raise UsageError(f"unknown dataset {spec!r}; use digits, synthetic, cifar10, cifar100, "
                     "imagenet2012, imagenette, tfds:NAME or folder:PATH")


def open_source(spec: str, *, input_size: int, data_dir: str | None = None,
                download: bool = False, synthetic_classes: int = 1000, seed: int = 0) -> Source:
    """Open the dataset named by ``--dataset``; raises :class:`UsageError` when unavailable."""
    check_dataset_name(spec)
    if spec == "digits":
        x_train, y_train, x_test, y_test = load_digits_arrays(input_size)
        return _array_source("digits", x_train, y_train, x_test, y_test,
                             [str(i) for i in range(10)], False,
                             "scikit-learn digits (1437 train / 360 test, upscaled to RGB)")
    if spec == "synthetic":
        return _synthetic_source(input_size, synthetic_classes, seed)
    if spec.startswith("folder:"):
        return _folder_source(spec[len("folder:"):])
    name = TFDS_ALIASES.get(spec, spec[len("tfds:"):] if spec.startswith("tfds:") else spec)
    return _tfds_source(name, data_dir, download)


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
