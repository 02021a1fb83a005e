"""Shared export fixtures: one digits-trained ResNet-8 and one export of it in every format
and precision, each made once per test run (under pytest-xdist the workers share them through
a lock)."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from keras_resnet.training.data import load_digits_arrays

LABELS = [str(i) for i in range(10)]


@pytest.fixture(scope="session")
def trained_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """ResNet-8 (CIFAR family) trained on digits to convergence (10 epochs, ~98.7 % test
    top-1), taking raw pixels 0..255, saved as the trainer does: model.keras + labels.json.
    (At 5 epochs, 96 %, the 7-bit int8 ONNX weights flip 5 of 300 low-margin answers.)"""
    return _shared(tmp_path_factory, "digits-resnet8", _train_digits_resnet8) / "model.keras"


@pytest.fixture(scope="session")
def digits_export(trained_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``trained_model`` exported in every format and precision (SavedModel; TFLite float32,
    float16, dynamic int8, int8; ONNX and OpenVINO float32, float16, int8), calibrated and
    evaluated on 300 digits. Tests read it; a test that alters files works on a copy."""
    from keras_resnet.export import export_model

    def export(folder: Path) -> None:
        export_model(str(trained_model), folder / "digits", quantize=["float16", "dynamic",
                                                                      "int8"],
                     calibration="digits", samples=300)

    return _shared(tmp_path_factory, "digits-export", export) / "digits"


def _shared(factory: pytest.TempPathFactory, name: str, make: Callable[[Path], None]) -> Path:
    """``name``: a folder made once by ``make`` for every xdist worker of this run, in a
    staging folder renamed when complete, under a lock."""
    from filelock import FileLock

    root = factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # the folder every worker's base temp lives in
    folder = root / name
    with FileLock(str(root / f"{name}.lock")):
        if not folder.is_dir():  # renamed into place complete, so present means done
            staging = root / f"{name}.partial"
            shutil.rmtree(staging, ignore_errors=True)
            staging.mkdir(parents=True)
            make(staging)
            staging.rename(folder)
    return folder


def _train_digits_resnet8(folder: Path) -> None:
    import keras

    import keras_resnet

    keras.utils.set_random_seed(1)
    x, y, x_test, y_test = load_digits_arrays(32)
    inputs = keras.Input((32, 32, 3))
    scaled = keras.layers.Rescaling(1.0 / 255.0)(inputs)
    net = keras_resnet.build_resnet(8, family="cifar", input_shape=(32, 32, 3), classes=10)
    model = keras.Model(inputs, net(scaled), name="digits_resnet8")
    model.compile(optimizer=keras.optimizers.Adam(3e-3),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y, batch_size=32, epochs=10, verbose=0)
    accuracy = model.evaluate(x_test, y_test, verbose=0)[1]
    assert accuracy > 0.9, f"the test model did not learn digits (accuracy {accuracy:.3f})"
    model.save(folder / "model.keras")
    (folder / "labels.json").write_text(json.dumps(
        {"labels": LABELS, "input_size": 32, "preprocessing": "raw RGB 0..255, rescaled in "
         "the model"}))
