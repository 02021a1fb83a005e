"""Bad input: one ``error: ...`` line on stderr, exit code 2, nothing written. A failed
parity check: exit code 1 and a manifest marked failed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from keras_resnet.export import verify
from keras_resnet.export.cli import export_main, verify_main

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tiny_keras_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small untrained CNN taking raw pixels 0..255 at 32x32, saved with labels.json."""
    import keras

    keras.utils.set_random_seed(0)
    inputs = keras.Input((32, 32, 3), name="pixels")
    x = keras.layers.Rescaling(1.0 / 255.0)(inputs)
    x = keras.layers.Conv2D(8, 3, strides=2, activation="relu")(x)
    x = keras.layers.Conv2D(16, 3, strides=2, activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(3, activation="softmax")(x)
    model = keras.Model(inputs, outputs, name="tiny")
    folder = tmp_path_factory.mktemp("tiny")
    path = folder / "model.keras"
    model.save(path)
    (folder / "labels.json").write_text(json.dumps(
        {"labels": ["a", "b", "c"], "input_size": 32, "preprocessing": "raw RGB 0..255"}))
    return path


def _fails(argv: list[str], capsys: pytest.CaptureFixture, expected: str,
           code: int = 2) -> str:
    assert export_main(argv) == code
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ") and expected in lines[0], lines[0]
    return lines[0]


def _nothing_written(parent: Path, out: Path) -> None:
    assert not out.exists()
    assert not [p for p in parent.iterdir() if ".partial-" in p.name]


@pytest.fixture()
def out(tmp_path: Path) -> Path:
    return tmp_path / "sub" / "out"


@pytest.mark.parametrize(("argv", "expected"), [
    (["resnet5000"], "unknown model 'resnet5000'"),
    (["resnet20", "--weights", "missing.weights.h5"], "weights file missing.weights.h5 not found"),
    (["resnet20", "--formats", "tflite,coreml"], "unknown format 'coreml'"),
    (["resnet20", "--quantize", "int4"], "unknown quantize mode 'int4'"),
    (["resnet50", "--input-size", "16"], "too small"),
    (["resnet20", "--opset", "7"], "opset 7 out of range"),
    (["resnet20", "--opset", "99"], "opset 99 out of range"),
    (["resnet20", "--quantize", "int8"], "--quantize int8 needs a calibration set"),
    (["resnet20", "--quantize", "int8", "--calibration", "imagenet"], "unknown data source"),
    (["resnet20", "--quantize", "int8", "--calibration", "folder:/nonexistent/images"],
     "calibration folder /nonexistent/images does not exist"),
    (["resnet20", "--quantize", "int8", "--calibration", "tfds:no_such_dataset_xyz"],
     "not available offline"),
    (["missing/model.keras"], "model file missing/model.keras not found"),
    (["resnet20", "--samples", "0"], "--samples must be in 1..10000 (got 0)"),
    (["resnet20", "--bogus"], "unrecognized arguments: --bogus"),
])
def test_bad_input_is_one_error_line_exit_2_and_writes_nothing(
        argv: list[str], expected: str, out: Path, capsys: pytest.CaptureFixture) -> None:
    _fails([*argv, "-o", str(out)], capsys, expected)
    assert not out.parent.exists()


def test_corrupt_keras_file_is_refused(tmp_path: Path, out: Path,
                                       capsys: pytest.CaptureFixture) -> None:
    bad = tmp_path / "model.keras"
    bad.write_bytes(b"not a zip archive at all")
    _fails([str(bad), "-o", str(out)], capsys, "is corrupt")
    truncated = tmp_path / "truncated.keras"
    truncated.write_bytes(b"PK\x03\x04" + b"\0" * 64)
    _fails([str(truncated), "-o", str(out)], capsys, "truncated.keras")
    _nothing_written(tmp_path, tmp_path / "out")


def test_corrupt_weights_file_is_refused(tmp_path: Path, out: Path,
                                         capsys: pytest.CaptureFixture) -> None:
    bad = tmp_path / "bad.weights.h5"
    bad.write_bytes(b"garbage")
    _fails(["resnet20", "--weights", str(bad), "-o", str(out)], capsys, "bad.weights.h5")
    assert not out.parent.exists()


def test_keras_file_with_lambda_layer_is_refused(tmp_path: Path, out: Path,
                                                 capsys: pytest.CaptureFixture) -> None:
    import keras

    inputs = keras.Input((8, 8, 3))
    outputs = keras.layers.Lambda(lambda t: t * 2.0)(inputs)
    path = tmp_path / "lambda.keras"
    keras.Model(inputs, outputs).save(path)
    line = _fails([str(path), "-o", str(out)], capsys, "contains a Lambda layer")
    assert "refusing unsafe deserialization (safe_mode)" in line
    assert not out.parent.exists()


def test_zoo_options_on_a_keras_file_are_refused(tiny_keras_file: Path, out: Path,
                                                 capsys: pytest.CaptureFixture) -> None:
    _fails([str(tiny_keras_file), "-o", str(out), "--input-size", "64"], capsys,
           "--input-size only apply to zoo models")


def test_non_empty_output_needs_force(tiny_keras_file: Path, tmp_path: Path,
                                      capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    _fails([str(tiny_keras_file), "-o", str(out), "--formats", "onnx"], capsys,
           "is not empty; use --force")
    assert (out / "keep.txt").read_text() == "mine"
    assert export_main([str(tiny_keras_file), "-o", str(out), "--formats", "onnx",
                        "--force"]) == 0
    assert not (out / "keep.txt").exists()
    manifest = json.loads((out / "manifest.json").read_text())
    assert [a["path"] for a in manifest["artifacts"]] == ["model.onnx"]
    assert manifest["labels"] == ["a", "b", "c"]
    _nothing_written(tmp_path, tmp_path / "absent")


def test_nchw_onnx_export(tiny_keras_file: Path, tmp_path: Path) -> None:
    import onnxruntime as ort

    out = tmp_path / "nchw"
    assert export_main([str(tiny_keras_file), "-o", str(out), "--formats", "onnx", "--nchw",
                        "--quantize", "int8", "--calibration", "synthetic",
                        "--samples", "16", "--min-agreement", "0.5"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert {a["layout"] for a in manifest["artifacts"]} == {"NCHW"}
    assert manifest["artifacts"][0]["parity"]["max_abs_diff"] <= 1e-4
    session = ort.InferenceSession(str(out / "model.onnx"))
    assert session.get_inputs()[0].shape[1:] == [3, 32, 32]
    assert verify_main([str(out)]) == 0


def test_failed_parity_exits_1_and_marks_manifest(tiny_keras_file: Path, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setitem(verify.MAX_ABS_DIFF, "float32", -1.0)  # nothing can pass
    out = tmp_path / "failed"
    line = _fails([str(tiny_keras_file), "-o", str(out), "--formats", "tflite"], capsys,
                  "parity check failed for tflite/float32", code=1)
    assert "manifest.json" in line
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "failed"
    assert manifest["artifacts"][0]["parity"]["passed"] is False


def test_verify_rejects_a_directory_without_manifest(tmp_path: Path,
                                                     capsys: pytest.CaptureFixture) -> None:
    assert verify_main([str(tmp_path)]) == 2
    assert capsys.readouterr().err.startswith("error: ")
    assert verify_main([str(tmp_path / "nope")]) == 2


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"}


def test_console_error_has_no_traceback_or_runtime_noise(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "keras_resnet.export", "resnet5000", "-o", str(tmp_path / "o")],
        capture_output=True, text=True, env=_env(), cwd=tmp_path, timeout=600)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]
    assert result.stderr.startswith("error: unknown model 'resnet5000'")
    assert "Traceback" not in result.stdout + result.stderr


def test_killed_export_leaves_no_partial_artifacts(tiny_keras_file: Path,
                                                   tmp_path: Path) -> None:
    out = tmp_path / "killed"
    process = subprocess.Popen(
        [sys.executable, "-m", "keras_resnet.export", str(tiny_keras_file), "-o", str(out)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=_env(), cwd=tmp_path)
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and process.poll() is None:
        staging = [p for p in tmp_path.iterdir() if ".partial-" in p.name]
        if staging and any(staging[0].iterdir()):
            break
        time.sleep(0.05)
    assert process.poll() is None, "export finished before it could be interrupted"
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=600)
    assert process.returncode != 0
    _nothing_written(tmp_path, out)
