"""OpenVINO IR files of the digits ResNet-8: parity and top-1 in OpenVINO, int8 agreement on
held-out digits, tampering caught by verify, --ov-precision refused where the CPU cannot run
it, bfloat16 judged by its own tolerance, and the bench's fastest choices."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from keras_resnet.export import export_model, verify_dir
from keras_resnet.export.bench import fastest, fastest_lines
from keras_resnet.export.cli import bench_main, export_main
from keras_resnet.export.openvino_ir import OpenVinoRunner, bf16_supported
from keras_resnet.export.verify import MAX_ABS_DIFF, compare, judged_precision
from keras_resnet.training.data import load_digits_arrays

from keras_resnet.cpu import cpu_info


@pytest.fixture(scope="module")
def exported(digits_export: Path) -> Path:
    """The digits ResNet-8 in every format and precision, OpenVINO IR among them
    (tests/export/conftest.py: one export for this file and test_export_digits.py)."""
    return digits_export


def _artifacts(directory: Path) -> dict[str, dict]:
    manifest = json.loads((directory / "manifest.json").read_text())
    return {a["precision"]: a for a in manifest["artifacts"] if a["format"] == "openvino"}


def test_openvino_files_pass_parity_and_top1_in_openvino(exported: Path) -> None:
    manifest = json.loads((exported / "manifest.json").read_text())
    keras_top1 = manifest["evaluation"]["keras_top1"]
    computed = "bf16" if bf16_supported() else "f32"
    artifacts = _artifacts(exported)
    assert sorted(artifacts) == ["float16", "float32", "int8"]
    for precision, artifact in artifacts.items():
        folder = exported / artifact["path"]
        assert sorted(p.name for p in folder.iterdir()) == ["model.bin", "model.xml"]
        assert artifact["ov_precision"] == "auto"
        assert artifact["inference_precision"] == computed
        parity = artifact["parity"]
        assert parity["passed"], (precision, parity)
        if precision != "int8":
            limit = MAX_ABS_DIFF["float32" if precision == "float32" and computed == "f32"
                                 else ("float16" if computed == "f32" else "bfloat16")]
            assert parity["max_abs_diff"] <= limit, (precision, parity)
            assert parity["test_top1"] == pytest.approx(keras_top1, abs=2 / 300)
    assert artifacts["int8"]["int8"]["fake_quantize_nodes"] > 0
    # float16 IR holds float16 weights: about half the float32 file.
    assert artifacts["float16"]["bytes"] < 0.6 * artifacts["float32"]["bytes"]


def test_int8_openvino_agrees_with_keras_on_held_out_digits(exported: Path) -> None:
    import keras

    import keras_resnet

    x_test = load_digits_arrays(32)[2][:300]
    model = keras_resnet.load_model(exported / "model.keras")
    reference = np.argmax(keras.ops.convert_to_numpy(model(x_test, training=False)), axis=1)
    runner = OpenVinoRunner(exported / _artifacts(exported)["int8"]["path"], threads=2)
    agreement = float(np.mean(np.argmax(runner(x_test), axis=1) == reference))
    assert agreement >= 0.98, agreement
    assert _artifacts(exported)["int8"]["parity"]["top1_agreement"] >= 0.98


def test_tampered_bin_is_caught_by_verify(exported: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(exported, copy)
    assert verify_dir(copy)["passed"]
    weights = copy / _artifacts(copy)["int8"]["path"] / "model.bin"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF
    weights.write_bytes(bytes(data))
    report = verify_dir(copy)
    assert not report["passed"]
    assert any(p.startswith("openvino/int8 (model_int8_openvino): SHA-256 mismatch")
               for p in report["problems"]), report["problems"]


def test_an_ov_precision_the_cpu_cannot_run_is_refused_with_one_line(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    from keras_resnet.export import openvino_ir

    if bf16_supported():  # on a BF16 CPU, stand in a CPU without it
        monkeypatch.setattr(openvino_ir, "bf16_supported", lambda: False)
    out = tmp_path / "out"
    code = export_main(["resnet20", "-o", str(out), "--formats", "openvino",
                        "--ov-precision", "bf16"])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and not out.exists()
    assert lines == [f"error: --ov-precision bf16: this CPU ({cpu_info()['model']}) has no "
                     "avx512_bf16 or amx_bf16 flag, so OpenVINO cannot compute in bfloat16; "
                     "use f32 or auto"]
    assert export_main(["resnet20", "-o", str(out), "--formats", "onnx",
                        "--ov-precision", "f32"]) == 2
    assert capsys.readouterr().err.strip() == \
        "error: --ov-precision applies to the openvino format only"


class _Bf16Runner:
    inference_precision = "bf16"


def test_bfloat16_inference_is_judged_by_its_stated_tolerance() -> None:
    ref = np.array([[0.70, 0.20, 0.10], [0.10, 0.30, 0.60]], np.float32)
    out = ref + np.array([[0.03, -0.03, 0.0], [0.0, 0.02, -0.02]], np.float32)
    assert judged_precision("float32", _Bf16Runner()) == "bfloat16"
    assert judged_precision("int8", _Bf16Runner()) == "int8"  # judged by agreement
    assert judged_precision("float32", object()) == "float32"
    assert compare(ref, out, judged_precision("float32", _Bf16Runner()))["passed"]
    assert not compare(ref, out, "float32")["passed"]
    assert not compare(ref, ref + 0.06 * np.eye(2, 3, dtype=np.float32), "bfloat16")["passed"]


@pytest.mark.skipif(not bf16_supported(), reason="needs a CPU on which OpenVINO computes "
                    "bfloat16 (avx512_bf16 or amx_bf16)")
def test_bf16_inference_stays_within_its_tolerance(trained_model: Path, tmp_path: Path) -> None:
    manifest = export_model(str(trained_model), tmp_path / "bf16", formats=["openvino"],
                            calibration="digits", samples=300, ov_precision="bf16")
    [artifact] = manifest["artifacts"]
    assert artifact["inference_precision"] == "bf16"
    assert artifact["parity"]["max_abs_diff"] <= MAX_ABS_DIFF["bfloat16"]
    assert artifact["parity"]["top1_agreement"] >= 0.98


def _row(name: str, runtime: str, precision: str, ms: float, per_s: float) -> dict:
    return {"name": name, "format": name.rsplit(".", 1)[-1], "precision": precision,
            "runtime": runtime, "latency_ms": ms, "batch": 16, "throughput": per_s}


def test_fastest_choices_are_computed_from_the_rows() -> None:
    rows = [_row("keras", "keras", "float32", 1.0, 9999.0),  # the reference: never chosen
            _row("model.onnx", "onnxruntime", "float32", 37.2, 30.0),
            _row("model.onnx", "openvino", "float32", 18.9, 60.0),
            _row("model_float32.tflite", "litert", "float32", 38.8, 70.0),
            _row("model_int8.onnx", "onnxruntime", "int8", 13.4, 90.0),
            _row("model_int8.tflite", "litert", "int8", 11.3, 85.0)]
    best = fastest(rows)
    assert list(best) == ["float32", "int8"]
    assert (best["float32"]["latency"]["name"], best["float32"]["latency"]["runtime"]) == (
        "model.onnx", "openvino")
    assert best["float32"]["throughput"]["name"] == "model_float32.tflite"
    assert best["int8"]["latency"]["runtime"] == "litert"
    assert best["int8"]["throughput"]["runtime"] == "onnxruntime"
    cpu = {"machine": "x86_64", "model": "Test CPU", "flags": ["avx2", "fma"]}
    assert fastest_lines(rows, cpu)[1] == (
        "fastest int8 on Test CPU (x86_64; avx2 fma): model_int8.tflite in litert 11.30 ms at "
        "batch 1; model_int8.onnx in onnxruntime 90.0 img/s at batch 16")


def test_bench_runs_onnx_in_both_runtimes_and_names_the_fastest_from_its_rows(
        exported: Path, capsys: pytest.CaptureFixture) -> None:
    assert bench_main([str(exported), "--batch", "2", "--runs", "2", "--no-keras",
                       "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    pairs = {(r["name"], r["runtime"]) for r in report["rows"]
             if r["format"] in ("onnx", "openvino")}
    assert pairs == {("model.onnx", "onnxruntime"), ("model.onnx", "openvino"),
                     ("model_float16.onnx", "onnxruntime"), ("model_float16.onnx", "openvino"),
                     ("model_int8.onnx", "onnxruntime"), ("model_int8.onnx", "openvino"),
                     ("model_float32_openvino", "openvino"),
                     ("model_float16_openvino", "openvino"),
                     ("model_int8_openvino", "openvino")}
    assert report["fastest"] == fastest(report["rows"])
    assert report["cpu"] == cpu_info()
