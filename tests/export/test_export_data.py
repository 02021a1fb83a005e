"""The exporter draws its images through the trainer's data layer: int8 calibration from the
training split, parity and top-1 from the held-out split, never overlapping."""

from __future__ import annotations

import hashlib
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from keras_resnet.export.api import ExportOptions, _load_data
from keras_resnet.training import data

from keras_resnet.console import UsageError

SIZE = 12


def _hashes(images: np.ndarray) -> list[str]:
    return [hashlib.sha256(np.asarray(x, np.uint8).tobytes()).hexdigest() for x in images]


def _trainer_split(spec: str, split: str) -> list[str]:
    """Pixel hashes of every image of the trainer's ``split``, in its order."""
    source = data.open_source(spec, input_size=SIZE)
    return _hashes([source.decode(raw).numpy() for raw, _ in source.examples(split, 0, 1, None)])


@pytest.fixture(scope="module")
def class_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three classes of 10 distinct random 12x12 PNGs, no train/ or val/ subfolders."""
    import tensorflow as tf

    root = tmp_path_factory.mktemp("flowers")
    rng = np.random.default_rng(3)
    for cls in ("iris", "lily", "rose"):
        (root / cls).mkdir()
        for i in range(10):
            pixels = rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)
            (root / cls / f"{i}.png").write_bytes(tf.io.encode_png(pixels).numpy())
    return root


def test_calibration_and_evaluation_images_are_the_trainers_disjoint_splits(
        class_folder: Path) -> None:
    spec = f"folder:{class_folder}"
    model = SimpleNamespace(input_shape=(SIZE, SIZE, 3), preprocess=lambda x: x)
    options = ExportOptions(quantize=["int8"], calibration=spec, samples=1000)
    calib, x_eval, y_eval, recorded = _load_data(model, options)
    train, test = _trainer_split(spec, "train"), _trainer_split(spec, "test")
    assert len(train) == 27 and len(test) == 3 and len(set(train + test)) == 30
    assert not set(_hashes(calib)) & set(_hashes(x_eval))
    assert _hashes(x_eval) == test  # the trainer's held-out split, all of it, in order
    assert sorted(_hashes(calib)) == sorted(train)
    # Every 10th file of the sorted list: iris/9, lily/9 and rose/9.
    assert y_eval.tolist() == [0, 1, 2]
    assert recorded == {"source": spec, "split": "test", "samples": 3, "seed": 0,
                        "labelled": True, "whole_split": False, "in_memory": False}


def test_samples_are_a_seeded_subset_of_one_split(class_folder: Path) -> None:
    spec = f"folder:{class_folder}"
    first, labels = data.load_split(spec, "train", 5, (SIZE, SIZE), seed=1)
    again, _ = data.load_split(spec, "train", 5, (SIZE, SIZE), seed=1)
    other, _ = data.load_split(spec, "train", 5, (SIZE, SIZE), seed=2)
    np.testing.assert_array_equal(first, again)
    assert set(_hashes(first)) <= set(_trainer_split(spec, "train"))
    assert _hashes(first) != _hashes(other) and labels.shape == (5,)
    resized, _ = data.load_split(spec, "test", 2, (20, 16))
    assert resized.shape == (2, 20, 16, 3) and resized.dtype == np.float32


def test_unlabelled_folder_is_split_by_the_same_rule(tmp_path: Path) -> None:
    import tensorflow as tf

    for i in range(20):
        pixels = np.full((SIZE, SIZE, 3), i * 10, np.uint8)
        (tmp_path / f"{i:02d}.png").write_bytes(tf.io.encode_png(pixels).numpy())
    spec = f"folder:{tmp_path}"
    test, labels = data.load_split(spec, "test", 100, (SIZE, SIZE))
    train, _ = data.load_split(spec, "train", 100, (SIZE, SIZE))
    assert labels is None and test[:, 0, 0, 0].tolist() == [90.0, 190.0]
    assert len(train) == 18 and not {90.0, 190.0} & set(train[:, 0, 0, 0].tolist())
    with pytest.raises(UsageError, match="has no class subfolders"):
        data.open_source(spec, input_size=SIZE)  # the trainer needs labels


def test_synthetic_splits_are_distinct_unlabelled_draws() -> None:
    train, labels = data.load_split("synthetic", "train", 1000, (8, 8), seed=4)
    test, _ = data.load_split("synthetic", "test", 1000, (8, 8), seed=4)
    assert (len(train), len(test), labels) == (data.sources.SYNTHETIC_TRAIN,
                                               data.sources.SYNTHETIC_TEST, None)
    assert not set(_hashes(train)) & set(_hashes(test))
