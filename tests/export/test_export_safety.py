"""What an export directory may make verify read, and what an export may remove: stale
staging folders of killed exports into the same place, nothing else."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest
from keras_resnet.export import samples
from keras_resnet.export.cli import export_main, verify_main


def _dead_pid() -> int:
    pid = 4_000_000
    while True:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return pid
        except PermissionError:
            pass
        pid += 1


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Path], list[Path]]:
    """An ONNX export of a tiny model into ``out``, next to which a killed export left
    staging folders; returns (out, stale folders, folders that must be kept)."""
    import keras

    root = tmp_path_factory.mktemp("safety")
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(4, 3, strides=2, activation="relu")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(x)).save(root / "m.keras")
    host = socket.gethostname()
    stale = [root / f".out.partial-{_dead_pid()}@{host}.k2j4_x", root / f".out.old-{_dead_pid()}@{host}.a1"]
    kept = [root / f".out.partial-{os.getpid()}@{host}.live1",  # a running export's
            root / f".out.partial-{_dead_pid()}@elsewhere.example.b2",  # another host's
            root / f".other.partial-{_dead_pid()}@{host}.c3",  # another output's
            root / ".out.partial-abcd1234"]  # no owner recorded
    for folder in stale + kept:
        folder.mkdir()
        (folder / "model.onnx").write_bytes(b"partial")
    assert export_main([str(root / "m.keras"), "-o", str(root / "out"), "--formats", "onnx",
                        "--samples", "8", "--input-range", "0,255"]) == 0
    return root / "out", stale, kept


def test_next_export_removes_stale_staging_only(exported) -> None:
    out, stale, kept = exported
    assert (out / "manifest.json").is_file()
    assert not [p for p in stale if p.exists()]
    assert all(p.is_dir() for p in kept)


def test_verify_passes_and_reads_no_recorded_folder(exported, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture) -> None:
    """A manifest recording ``folder:PATH`` as its evaluation source (a path outside the
    directory) is verified on the stored parity batch; the folder is not read."""
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(exported[0], copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["evaluation"]["source"] = f"folder:{tmp_path / 'elsewhere'}"
    (copy / "manifest.json").write_text(json.dumps(manifest))

    def forbidden(*args, **kwargs):
        raise AssertionError("read the recorded folder")

    monkeypatch.setattr(samples, "load_samples", forbidden)
    capsys.readouterr()
    assert verify_main([str(copy)]) == 0
    out = capsys.readouterr().out
    assert "ok     onnx/float32 (model.onnx)" in out
    assert "not read (outside the export directory; pass --data to use it)" in out
