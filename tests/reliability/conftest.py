"""The sandbox the bad-input corpus runs in: a tiny model, a real export directory, a real
training run, image folders and a canary folder that no command may read.

Helpers are fixtures (conftest modules cannot be imported under ``--import-mode=importlib``).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

# Paths opened, listed or scanned while a recording is active (Python-level file access;
# the runtimes' native reads go through paths that export.manifest checks first).
_OPENED: list[list[str]] = []


def _audit(event: str, args: tuple) -> None:
    if _OPENED and event in ("open", "os.listdir", "os.scandir") and args:
        target = args[0]
        if isinstance(target, (str, bytes, os.PathLike)):
            _OPENED[-1].append(os.fsdecode(target))


sys.addaudithook(_audit)


@contextmanager
def recording() -> Iterator[list[str]]:
    """Record the files and folders Python opens or lists inside the block."""
    _OPENED.append([])
    try:
        yield _OPENED[-1]
    finally:
        _OPENED.pop()


def snapshot(root: Path) -> dict[str, tuple]:
    """Every path under ``root`` with its kind, size and modification time."""
    state = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(folder) / name
            info = path.lstat()
            state[str(path.relative_to(root))] = (path.is_symlink(), path.is_dir(),
                                                  info.st_size, info.st_mtime_ns)
    return state


def _png(seed: int) -> bytes:
    import tensorflow as tf

    pixels = np.random.default_rng(seed).integers(0, 255, (12, 12, 3), dtype=np.uint8)
    return tf.io.encode_png(pixels).numpy()


def _image_folders(root: Path) -> None:
    """folder datasets: ``good`` (two classes), ``empty_class`` (class ``b`` empty),
    ``corrupt`` (one garbage file), ``truncated`` (a PNG cut in half), ``flat`` (no class
    subfolders)."""
    for name in ("good", "empty_class", "corrupt", "truncated"):
        for cls in ("a", "b"):
            (root / name / cls).mkdir(parents=True)
            if name == "empty_class" and cls == "b":
                continue
            for i in range(12):
                (root / name / cls / f"{i}.png").write_bytes(_png(i + 100 * (cls == "b")))
    (root / "corrupt" / "b" / "bad.png").write_bytes(b"this is not an image")
    whole = _png(7)
    (root / "truncated" / "a" / "cut.png").write_bytes(whole[: len(whole) // 2])
    (root / "flat").mkdir()
    (root / "flat" / "only.png").write_bytes(_png(1))


def _tiny_keras(folder: Path) -> Path:
    import keras

    keras.utils.set_random_seed(0)
    inputs = keras.Input((16, 16, 3), name="pixels")
    x = keras.layers.Rescaling(1.0 / 255.0)(inputs)
    x = keras.layers.Conv2D(4, 3, strides=2, activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(3, activation="softmax")(x)
    folder.mkdir(parents=True)
    path = folder / "model.keras"
    keras.Model(inputs, outputs, name="tiny").save(path)
    (folder / "labels.json").write_text(json.dumps({"labels": ["a", "b", "c"]}))
    return path


def _train_run(run: Path) -> None:
    """A real (two-step) keras-resnet-train run with checkpoints, trained in-process."""
    from keras_resnet.training.cli import train_from_args

    train_from_args(["--model", "resnet20", "--input-size", "8", "--batch-size", "8",
                     "--steps", "2", "--checkpoint-every", "1", "--eval-examples", "8",
                     "--mean-images", "16", "--seed", "1", "--model-dir", str(run)])


def _bad_recipes(root: Path) -> None:
    base = json.loads((Path(__file__).resolve().parents[2] / "training" / "recipes" /
                       "cifar.json").read_text())
    root.mkdir()
    edits = {"batch_text": {"batch_size": "big"}, "lr_text": {"optimizer": {
        "name": "sgd", "learning_rate": "fast", "momentum": 0.9}},
             "boundaries_text": {"schedule": {"type": "step", "boundaries": ["a"]}},
             "nan_decay": {"weight_decay": float("nan")}, "preprocessing": {"preprocessing": 3},
             "warmup_list": {"warmup": [1, 2]}, "augmentation_type": {"augmentation": {
                 "type": "sideways"}}}
    for name, change in edits.items():
        (root / f"{name}.json").write_text(json.dumps({**base, **change}))
    (root / "list.json").write_text("[1, 2, 3]")
    (root / "broken.json").write_text("{not json")


@pytest.fixture(scope="session")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    """Built once: ``root`` holds every input of the corpus; ``outside`` is the canary
    folder a malicious manifest points to."""
    from keras_resnet.export.api import export_model

    root = tmp_path_factory.mktemp("corpus")
    tiny = _tiny_keras(root / "tiny")
    export = root / "export"
    export_model(str(tiny), export, formats=["onnx"], samples=8)
    outside = root / "outside"
    outside.mkdir()
    shutil.copyfile(export / "model.onnx", outside / "secret.onnx")
    shutil.copyfile(tiny, outside / "secret.keras")
    (outside / "secret.txt").write_text("canary")
    (root / "afile").write_text("a regular file")
    _image_folders(root / "images")
    _bad_recipes(root / "recipes")
    _train_run(root / "run")
    return SimpleNamespace(root=root, tiny=tiny, export=export, outside=outside,
                           run=root / "run", images=root / "images",
                           recipes=root / "recipes")


@pytest.fixture
def tools() -> SimpleNamespace:
    """``snapshot(root)`` and ``recording()`` for tests that check the promise themselves."""
    return SimpleNamespace(snapshot=snapshot, recording=recording)


@pytest.fixture
def promise(sandbox: SimpleNamespace, capfd: pytest.CaptureFixture,
            monkeypatch: pytest.MonkeyPatch) -> Callable[..., str]:
    """``promise(call, code=2, forbidden=())``: run ``call()`` (returns an exit code) in the
    sandbox and assert the promise: exit ``code``, exactly one ``error:`` line on stderr, no
    traceback, nothing written or removed in the sandbox, nothing opened under the canary
    folder or ``forbidden``. Returns the error line."""
    monkeypatch.chdir(sandbox.root)
    monkeypatch.delenv("TF_CONFIG", raising=False)

    def check(call: Callable[[], int], code: int = 2, forbidden: tuple = ()) -> str:
        capfd.readouterr()
        before = snapshot(sandbox.root)
        with recording() as opened:
            rc = call()
        out, err = capfd.readouterr()
        lines = [line for line in err.splitlines() if line.strip()]
        assert "Traceback" not in out + err, err
        assert rc == code, (rc, err)
        assert len(lines) == 1 and lines[0].startswith("error: "), err
        assert snapshot(sandbox.root) == before, "files were written or removed"
        fences = [os.path.realpath(sandbox.outside), *map(os.path.realpath, forbidden)]
        leaked = [p for p in opened if any(os.path.realpath(os.path.join(sandbox.root, p))
                                           .startswith(fence) for fence in fences)]
        assert not leaked, f"read outside the given paths: {leaked}"
        return lines[0]

    return check
