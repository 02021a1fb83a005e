"""Hostile inputs cost bounded work and end in one ``error:`` line with exit 2: FIFOs named
like models, inflating or deeply nested archives and manifests, duplicated manifest entries,
non-finite weights, malformed labels files, hidden and single-class image folders, empty
path strings. Run in-process through each console script's main (the promise fixture:
one line, no traceback, nothing written, nothing read outside the given paths)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import threading
import zipfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from keras_resnet.export.cli import bench_main, export_main, verify_main
from keras_resnet.training.cli import eval_main, train_main

TRAIN = ["--model", "resnet20", "--input-size", "8", "--batch-size", "8", "--mean-images", "16",
         "--steps", "2"]
EX = ["-o", "out", "--formats", "onnx", "--samples", "8"]


def _edit(folder: Path, change) -> None:
    manifest = json.loads((folder / "manifest.json").read_text())
    change(manifest)
    (folder / "manifest.json").write_text(json.dumps(manifest))


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def _manifests(s: SimpleNamespace, root: Path) -> None:
    """Export directories with a hostile manifest or a FIFO in place of a file."""
    fifo = _copy(s.export, root / "fifo")
    (fifo / "model.onnx").unlink()
    os.mkfifo(fifo / "model.onnx")
    _edit(_copy(s.export, root / "twice"), lambda m: m["artifacts"].append(m["artifacts"][0]))
    _edit(_copy(s.export, root / "many"),
          lambda m: m["artifacts"].extend([m["artifacts"][0]] * 300))
    deep = _copy(s.export, root / "deep")
    (deep / "manifest.json").write_text("[" * 100_000 + "]" * 100_000)
    big = _copy(s.export, root / "big")
    manifest = json.loads((big / "manifest.json").read_text())
    manifest["padding"] = "x" * (5 * 2**20)
    (big / "manifest.json").write_text(json.dumps(manifest))
    fifo_manifest = _copy(s.export, root / "fifo_manifest")
    (fifo_manifest / "manifest.json").unlink()
    os.mkfifo(fifo_manifest / "manifest.json")


def _keras_files(s: SimpleNamespace, root: Path) -> None:
    """``.keras`` files that must be refused before they are unpacked or loaded, and
    copies of the tiny model beside a malformed ``labels.json``."""
    with (zipfile.ZipFile(root / "bomb.keras", "w", zipfile.ZIP_DEFLATED) as archive,
          archive.open("config.json", "w") as member):
        for _ in range(80):
            member.write(b" " * 2**20)  # 80 MiB of spaces: about 80 KiB compressed
    with zipfile.ZipFile(root / "nested.keras", "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("config.json", "[" * 50_000 + "]" * 50_000)
        archive.writestr("metadata.json", "{}")
    os.mkfifo(root / "fifo.keras")
    os.mkfifo(root / "labels_fifo.txt")
    labels = {"numbers": "[1, 2, 3]", "string": '"abc"', "five": '{"labels": 5}',
              "short": '["a", "b"]', "latin1": b'["caf\xe9", "b", "c"]', "mixed": '["a", 2, "c"]'}
    for name, text in labels.items():
        folder = root / f"labels_{name}"
        folder.mkdir()
        shutil.copyfile(s.tiny, folder / "model.keras")
        data = text if isinstance(text, bytes) else text.encode()
        (folder / "labels.json").write_bytes(data)


def _weights(root: Path) -> None:
    """Weights of ResNet-20 (8x8) with a NaN or a negative batch-norm variance: a
    ``.weights.h5``, a ``.keras`` and a run directory (safetensors: test_zoo_timm_weights)."""

    import keras_resnet

    model = keras_resnet.ResNet20(input_shape=(8, 8, 3))
    kernel = next(w for w in model.weights if w.path.endswith("kernel"))
    kernel.assign(np.full(kernel.shape, np.nan, np.float32))
    model.save_weights(root / "nan.weights.h5")
    model.save(root / "nan.keras")
    run = root / "nan_run"
    run.mkdir()
    model.save(run / "model.keras")
    kernel.assign(np.zeros(kernel.shape, np.float32))
    variance = next(w for w in model.weights if w.path.endswith("moving_variance"))
    variance.assign(-np.ones(variance.shape, np.float32))
    model.save_weights(root / "negative_variance.weights.h5")


def _overflowing(tiny: Path, root: Path) -> None:
    """The tiny model with finite weights so large that its outputs are NaN."""
    import keras_resnet

    model = keras_resnet.load_model(tiny)
    for weight in model.weights:
        weight.assign(np.full(weight.shape, 1e30, np.float32))
    model.save(root / "overflow.keras")


def _folders(root: Path, images: Path) -> None:
    """Image folders: one class; two classes and a hidden thumbnails folder; a FIFO image."""
    one = root / "one_class"
    shutil.copytree(images / "good" / "a", one / "a")
    hidden = root / "hidden"
    shutil.copytree(images / "good", hidden)
    shutil.copytree(images / "good" / "a", hidden / ".thumbs")
    shutil.copyfile(images / "good" / "a" / "0.png", hidden / "a" / ".0.png")
    fifo = root / "fifo_image"
    shutil.copytree(images / "good", fifo)
    os.mkfifo(fifo / "b" / "pipe.png")


@pytest.fixture(scope="module")
def hostile(sandbox: SimpleNamespace) -> SimpleNamespace:
    root = sandbox.root / "hostile"
    root.mkdir()
    _manifests(sandbox, root)
    _keras_files(sandbox, root)
    _weights(root)
    _overflowing(sandbox.tiny, root)
    _folders(root, sandbox.images)
    return SimpleNamespace(**vars(sandbox), h=root)


@pytest.fixture
def unblock(hostile):
    """Opens every FIFO of the corpus for writing after a generous delay, so that a reader
    that wrongly opened one fails its test instead of hanging the run."""
    stop = threading.Event()

    def release() -> None:
        if stop.wait(300):
            return
        for fifo in hostile.h.rglob("*"):
            # succeeds only while a reader waits; it then reads end-of-file
            with contextlib.suppress(OSError):
                os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))

    thread = threading.Thread(target=release, daemon=True)
    thread.start()
    yield
    stop.set()


# (id, main, argv, words the error line must hold)
CASES = [
    ("bench-fifo-artifact", bench_main, ["{h}/fifo"], "FIFO"),
    ("bench-twice", bench_main, ["{h}/twice"], "listed twice"),
    ("verify-many", verify_main, ["{h}/many"], "more than 256"),
    ("verify-twice", verify_main, ["{h}/twice"], "listed twice"),
    ("verify-deep", verify_main, ["{h}/deep"], "nested more than"),
    ("verify-big", verify_main, ["{h}/big"], "larger than"),
    ("verify-fifo-manifest", verify_main, ["{h}/fifo_manifest"], "FIFO"),
    ("export-bomb", export_main, ["{h}/bomb.keras", *EX], "refused before unpacking"),
    ("export-nested-config", export_main, ["{h}/nested.keras", *EX], "nested more than"),
    ("export-fifo-model", export_main, ["{h}/fifo.keras", *EX], "FIFO"),
    ("export-fifo-labels", export_main, ["{tiny}", "--labels", "{h}/labels_fifo.txt", *EX],
     "FIFO"),
    ("export-nan-keras", export_main, ["{h}/nan.keras", *EX], "non-finite"),
    ("export-overflow", export_main, ["{h}/overflow.keras", *EX], "not finite"),
    ("eval-nan-run", eval_main, ["--model-dir", "{h}/nan_run", "--dataset", "digits"], "non-finite"),
    ("export-nan-weights", export_main,
     ["resnet20", "--input-size", "8", "--weights", "{h}/nan.weights.h5", *EX], "non-finite"),
    ("export-negative-variance", export_main,
     ["resnet20", "--input-size", "8", "--weights", "{h}/negative_variance.weights.h5", *EX],
     "moving_variance"),
    *[(f"export-labels-{name}", export_main, [f"{{h}}/labels_{name}/model.keras", *EX], words)
      for name, words in (("numbers", "must be a string"), ("string", "no list of labels"),
                          ("five", "no list of labels"), ("short", "2 labels"),
                          ("latin1", "not UTF-8"), ("mixed", "must be a string"))],
    ("export-empty-output", export_main, ["{tiny}", "-o", ""], "--output is an empty"),
    ("export-empty-data", export_main, ["{tiny}", *EX, "--data", ""], "--data is an empty"),
    ("export-empty-folder", export_main, ["{tiny}", *EX, "--data", "folder:"], "names no"),
    ("train-empty-model-dir", train_main, [*TRAIN, "--model-dir", ""], "--model-dir is an empty"),
    ("train-one-class", train_main,
     [*TRAIN, "--dataset", "folder:{h}/one_class", "--model-dir", "out"], "at least two"),
    ("train-fifo-image", train_main,
     [*TRAIN, "--dataset", "folder:{h}/fifo_image", "--model-dir", "out"], "FIFO"),
    ("train-nan-run-weights", train_main,
     [*TRAIN, "--weights", "{h}/nan_run", "--model-dir", "out"], "non-finite"),
    ("train-fifo-weights", train_main,
     [*TRAIN, "--weights", "{h}/fifo.keras", "--model-dir", "out"], "FIFO"),
]


@pytest.mark.parametrize(("main", "argv", "words"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_hostile_input_refused(hostile, promise, unblock, main, argv: list[str],
                               words: str) -> None:
    filled = [part.format(**vars(hostile)) for part in argv]
    line = promise(lambda: main(filled))
    assert words in line, line


def test_hidden_entries_are_never_classes(hostile) -> None:
    from keras_resnet.training.data.folders import folder_splits

    splits = folder_splits(str(hostile.h / "hidden"))
    good = folder_splits(str(hostile.images / "good"))
    assert splits.classes == good.classes == ["a", "b"]
    for split, (files, labels) in splits.lists.items():
        assert [Path(f).relative_to(hostile.h / "hidden") for f in files] == \
            [Path(f).relative_to(hostile.images / "good") for f in good.lists[split][0]]
        assert labels == good.lists[split][1]


def test_eval_outputs_not_finite_stop_the_trainer(hostile, tools, capfd, monkeypatch) -> None:
    """A run whose test-split outputs are NaN stops with one error line (exit 2), not with
    a NaN top-1, and writes no file."""
    from keras_resnet.training.trainer import Trainer

    forward = Trainer._replica_eval

    def poisoned(self, images, labels, weights):
        logits, labels, weights = forward(self, images, labels, weights)
        return logits * float("nan"), labels, weights

    monkeypatch.setattr(Trainer, "_replica_eval", poisoned)
    monkeypatch.delenv("TF_CONFIG", raising=False)
    argv = ["--model", "resnet20", "--input-size", "8", "--batch-size", "8", "--steps", "2",
            "--checkpoint-every", "1", "--eval-examples", "8", "--mean-images", "16",
            "--seed", "1", "--model-dir", str(hostile.run), "--eval-only"]
    before = tools.snapshot(hostile.root)
    capfd.readouterr()
    assert train_main(argv) == 2
    errors = [line for line in capfd.readouterr().err.splitlines() if line.startswith("error")]
    assert len(errors) == 1 and "not finite" in errors[0], errors
    after = tools.snapshot(hostile.root)
    assert after.keys() == before.keys()  # the run dir's own time changes (write probe)
    assert {k: v for k, v in after.items() if k != "run"} == \
        {k: v for k, v in before.items() if k != "run"}
