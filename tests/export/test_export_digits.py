"""End to end: train a small zoo ResNet on digits, export every format and precision, and
check parity, int8 agreement, the manifest, verify (with tampering) and bench."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from keras_resnet.export import bench_dir, verify_dir
from keras_resnet.export.cli import bench_main, verify_main
from keras_resnet.export.manifest import sha256_path
from keras_resnet.training.data import load_digits_arrays

from keras_resnet.cpu import cpu_info, cpu_line

LABELS = [str(i) for i in range(10)]
#: Trains the shared ResNet-8 and makes the shared export when it runs first (conftest.py).
pytestmark = pytest.mark.slow(seconds=500)


@pytest.fixture(scope="module")
def exported(digits_export: Path) -> Path:
    """The digits ResNet-8 in every format and precision (tests/export/conftest.py)."""
    return digits_export


def _manifest(directory: Path) -> dict:
    return json.loads((directory / "manifest.json").read_text())


def _artifact(manifest: dict, fmt: str, precision: str) -> dict:
    return next(a for a in manifest["artifacts"]
                if a["format"] == fmt and a["precision"] == precision)


def test_every_format_and_precision_is_exported_and_passes(exported: Path) -> None:
    manifest = _manifest(exported)
    kinds = {(a["format"], a["precision"]) for a in manifest["artifacts"]}
    assert kinds == {("saved_model", "float32"), ("tflite", "float32"), ("tflite", "float16"),
                     ("tflite", "dynamic_int8"), ("tflite", "int8"), ("onnx", "float32"),
                     ("onnx", "float16"), ("onnx", "int8"), ("openvino", "float32"),
                     ("openvino", "float16"), ("openvino", "int8")}
    assert manifest["status"] == "passed"
    for artifact in manifest["artifacts"]:
        parity = artifact["parity"]
        assert parity["passed"], artifact["path"]
        if artifact.get("inference_precision") == "bf16":  # OpenVINO on a BF16 CPU
            assert parity["max_abs_diff"] <= 5e-2, artifact["path"]
        elif artifact["precision"] == "float32":
            assert parity["max_abs_diff"] <= 1e-4, artifact["path"]
        elif artifact["precision"] == "float16":
            assert parity["max_abs_diff"] <= 1e-2
        assert artifact["latency_ms"] > 0
        assert artifact["bytes"] == sum(
            p.stat().st_size for p in [exported / artifact["path"],
                                       *(exported / artifact["path"]).rglob("*")]
            if p.is_file())
        assert artifact["sha256"] == sha256_path(exported / artifact["path"])


def test_int8_models_agree_with_float_model_on_digits(exported: Path) -> None:
    manifest = _manifest(exported)
    for fmt in ("tflite", "onnx", "openvino"):
        parity = _artifact(manifest, fmt, "int8")["parity"]
        assert parity["agreement_samples"] == 300
        assert parity["top1_agreement"] >= 0.99, (fmt, parity)


def test_cpu_export_runs_no_other_targets_checks(exported: Path) -> None:
    """The int8 files of a CPU export are not meant for TensorRT or an NPU: the manifest
    carries no file check (and so no failed one); an npu export keeps its own (see
    test_export_targets.py)."""
    manifest = _manifest(exported)
    assert manifest["target"] == "cpu"
    assert {(a["format"], a["precision"]) for a in manifest["artifacts"]} >= {
        ("tflite", "int8"), ("onnx", "int8")}
    assert [a["path"] for a in manifest["artifacts"] if "checks" in a] == []
    assert all(a["parity"]["passed"] and "error" not in a["parity"]
               for a in manifest["artifacts"])


def test_manifest_records_model_input_labels_and_tools(exported: Path) -> None:
    manifest = _manifest(exported)
    assert manifest["model"]["name"] == "digits_resnet8"
    assert manifest["input"]["shape"] == [None, 32, 32, 3]
    assert manifest["input"]["dtype"] == "float32"
    assert manifest["input"]["layout"] == "NHWC"
    assert manifest["input"]["contract"]["range"] == [0, 255]
    assert manifest["input"]["contract"]["read_from"] == "labels.json beside the model"
    assert manifest["labels"] == LABELS
    assert {"tensorflow", "keras", "tf2onnx", "onnxruntime", "ai-edge-litert"} <= set(
        manifest["tools"])
    assert manifest["cpu"] == cpu_info()  # where the parity and latency figures come from
    evaluation = dict(manifest["evaluation"])
    assert evaluation.pop("keras_top1") > 0.9
    assert evaluation.pop("keras_top1_samples") == 300
    assert evaluation == {"source": "digits", "split": "test", "samples": 300, "seed": 0,
                          "labelled": True, "whole_split": False, "in_memory": False}


def test_every_artifact_reports_its_test_accuracy_on_labelled_digits(exported: Path) -> None:
    manifest = _manifest(exported)
    keras_top1 = manifest["evaluation"]["keras_top1"]
    for artifact in manifest["artifacts"]:
        top1 = artifact["parity"]["test_top1"]
        assert top1 > 0.9, artifact["path"]
        if artifact["precision"] in ("float32", "float16"):
            flips = 2 if artifact.get("inference_precision") == "bf16" else 1
            assert top1 == pytest.approx(keras_top1, abs=flips / 300), artifact["path"]
        else:
            assert abs(top1 - keras_top1) <= 0.02, artifact["path"]


def test_tflite_int8_is_full_integer_with_builtin_ops_only(exported: Path) -> None:
    from ai_edge_litert.interpreter import Interpreter

    manifest = _manifest(exported)
    for artifact in manifest["artifacts"]:
        if artifact["format"] == "tflite":
            assert artifact["ops"], artifact["path"]
            assert all(op.isupper() and not op.startswith("FLEX") for op in artifact["ops"])
    interpreter = Interpreter(model_path=str(exported / "model_int8.tflite"))
    assert interpreter.get_input_details()[0]["dtype"] == np.int8
    assert interpreter.get_output_details()[0]["dtype"] == np.int8
    assert list(interpreter.get_input_details()[0]["shape_signature"]) == [-1, 32, 32, 3]


def test_saved_model_and_onnx_take_any_batch(exported: Path) -> None:
    import onnxruntime as ort
    import tensorflow as tf

    x = load_digits_arrays(32)[2][:3]
    loaded = tf.saved_model.load(str(exported / "saved_model"))
    fn = loaded.signatures["serving_default"]
    assert fn.structured_input_signature[1]["input"].shape.as_list() == [None, 32, 32, 3]
    assert fn(input=tf.constant(x))["output"].shape == (3, 10)
    session = ort.InferenceSession(str(exported / "model.onnx"))
    assert not isinstance(session.get_inputs()[0].shape[0], int)
    assert session.run(None, {session.get_inputs()[0].name: x})[0].shape == (3, 10)


def test_onnx_metadata_props_carry_labels_and_preprocessing(exported: Path) -> None:
    import onnx

    for name in ("model.onnx", "model_int8.onnx"):
        props = {p.key: p.value for p in onnx.load(str(exported / name)).metadata_props}
        assert json.loads(props["labels"]) == LABELS
        assert props["preprocessing"].startswith("RGB pixels 0..255")
        assert json.loads(props["input_contract"])["range"] == [0, 255]


def test_onnx_int8_is_per_channel_u8s8_qdq_that_fuses_to_qlinearconv(
        exported: Path, tmp_path: Path) -> None:
    """The fix for slow int8 ONNX: uint8 activations, per-channel int8 weights, and a graph
    onnxruntime turns into QLinearConv (not Conv between Dequantize/Quantize pairs)."""
    import onnx
    import onnxruntime as ort
    from onnx import numpy_helper

    model = onnx.load(str(exported / "model_int8.onnx"))
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    weight_dq = [n for n in model.graph.node if n.op_type == "DequantizeLinear"
                 and n.input[0] in inits and inits[n.input[0]].ndim == 4]
    assert weight_dq and all(inits[n.input[0]].dtype == np.int8 for n in weight_dq)
    assert all(inits[n.input[1]].size > 1 for n in weight_dq)  # one scale per channel
    act_q = [n for n in model.graph.node if n.op_type == "QuantizeLinear"]
    assert act_q and all(inits[n.input[2]].dtype == np.uint8 for n in act_q)
    options = ort.SessionOptions()
    options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    ort.InferenceSession(str(exported / "model_int8.onnx"), options)
    ops = [n.op_type for n in onnx.load(str(tmp_path / "optimized.onnx")).graph.node]
    assert ops.count("QLinearConv") == sum(1 for n in model.graph.node if n.op_type == "Conv")
    assert "Conv" not in ops


def test_onnx_int8_cannot_saturate_16_bit_sums_on_any_cpu(exported: Path) -> None:
    """Read from the file, whatever CPU runs the test: every weight is 7-bit (|w| <= 64), so
    the u8s8 kernels of CPUs without VNNI (VPMADDUBSW: two uint8 x int8 products summed in a
    saturating int16) stay within 2 * 255 * 64 = 32640 <= 32767; the manifest says so."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(exported / "model_int8.onnx"))
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    weights = [inits[n.input[0]] for n in model.graph.node if n.op_type == "DequantizeLinear"
               and n.input[0] in inits and inits[n.input[0]].ndim >= 2]
    assert len(weights) == sum(1 for n in model.graph.node if n.op_type in ("Conv", "MatMul",
                                                                             "Gemm"))
    largest = max(int(np.abs(w.astype(np.int32)).max()) for w in weights)
    assert all(w.dtype == np.int8 for w in weights) and largest <= 64
    assert 2 * 255 * largest <= 32767
    info = _artifact(_manifest(exported), "onnx", "int8")["int8"]
    assert info == {"scheme": "u8s8-7bit", "calibration_method": "minmax",
                    "quantized_layers": len(weights),
                    "activation_types": ["uint8"], "weight_types": ["int8"],
                    "max_abs_weight": largest, "vpmaddubsw_worst_sum": 2 * 255 * largest,
                    "saturation_free": True}
    props = {p.key: p.value for p in model.metadata_props}
    assert props["int8_scheme"] == "u8s8-7bit"


@pytest.mark.parametrize("scheme, largest, safe", [("u8s8", 127, False), ("u8u8", None, True),
                                                   ("s8s8", 127, False)])
def test_int8_structure_reads_each_scheme_from_the_file(exported: Path, tmp_path: Path,
                                                        scheme: str, largest: int | None,
                                                        safe: bool) -> None:
    """The other schemes, quantized from the same float file: full-range int8 weights are
    flagged as able to saturate; uint8 weights use kernels without 16-bit sums."""
    from keras_resnet.export.onnx_int8 import int8_structure, quantize_onnx_int8

    calib = load_digits_arrays(32)[0]
    path = tmp_path / f"{scheme}.onnx"
    quantize_onnx_int8(exported / "model.onnx", path, calib[:32], {}, scheme)
    info = int8_structure(path)
    assert info["saturation_free"] is safe
    if largest is not None:
        assert info["max_abs_weight"] == largest  # per-channel symmetric: some weight is +-127
    expected = {"u8s8": (["uint8"], ["int8"]), "u8u8": (["uint8"], ["uint8"]),
                "s8s8": (["int8"], ["int8"])}[scheme]
    assert (info["activation_types"], info["weight_types"]) == expected


@pytest.fixture(scope="module")
def avx2_emulator() -> str:
    from keras_resnet.tools.emulation import emulator

    path = emulator()
    if path is None:
        pytest.skip("qemu-x86_64 not installed (Debian qemu-user; .ci/run installs it): "
                    "cannot emulate a CPU without VNNI")
    return path


def test_onnx_int8_gives_identical_outputs_on_an_emulated_avx2_cpu(
        exported: Path, avx2_emulator: str) -> None:
    """The exported int8 file on an emulated Haswell (AVX2, no AVX-512, no VNNI: onnxruntime
    takes its VPMADDUBSW kernels) gives this machine's outputs and >= 99 % top-1 agreement
    with the Keras model on 100 held-out digits (emulation is slow; this machine's own run
    covers all 300 in test_int8_models_agree_with_float_model_on_digits)."""
    from keras_resnet.export.onnx_export import OnnxRunner
    from keras_resnet.export.verify import keras_predict

    import keras_resnet
    from keras_resnet.tools.emulation import run_onnx_emulated

    x = load_digits_arrays(32)[2][:100]
    emulated = run_onnx_emulated(exported / "model_int8.onnx", x)
    native = OnnxRunner(exported / "model_int8.onnx", 1)(x)
    np.testing.assert_allclose(emulated, native, atol=1e-6)
    keras_out = keras_predict(keras_resnet.load_model(exported / "model.keras"), x)
    assert np.mean(emulated.argmax(1) == keras_out.argmax(1)) >= 0.99


def test_emulated_avx2_cpu_reproduces_saturation_of_8_bit_weights(
        exported: Path, avx2_emulator: str, tmp_path: Path) -> None:
    """The control for the test above: a full-range u8s8 file gives other outputs on the
    emulated AVX2 CPU than on a VNNI CPU, so the emulation really runs saturating kernels."""
    from keras_resnet.export.onnx_export import OnnxRunner
    from keras_resnet.export.onnx_int8 import quantize_onnx_int8

    from keras_resnet.cpu import cpu_info
    from keras_resnet.tools.emulation import run_onnx_emulated

    if not cpu_info()["int8_dot_product"]:
        pytest.skip("this CPU has no VNNI: its own u8s8 kernels saturate like the emulated one")
    calib = load_digits_arrays(32)[0]
    path = tmp_path / "u8s8.onnx"
    quantize_onnx_int8(exported / "model.onnx", path, calib[:300], {}, "u8s8")
    x = load_digits_arrays(32)[2]
    difference = np.abs(run_onnx_emulated(path, x[:100]) - OnnxRunner(path, 1)(x[:100]))
    assert difference.max() > 1e-3


def test_verify_passes_on_untouched_export(exported: Path, capsys: pytest.CaptureFixture) -> None:
    report = verify_dir(exported, data="digits", samples=100)
    assert report["passed"], report["problems"]
    assert len(report["artifacts"]) == 11
    assert report["cpu"] == report["exported_on"] == cpu_info()
    assert verify_main([str(exported), "--samples", "50"]) == 0
    out = capsys.readouterr().out
    assert "verified 11 artifacts" in out
    assert f"CPU: {cpu_line()}" in out and " ".join(cpu_info()["flags"]) in out


def test_verify_names_a_changed_or_missing_artifact(exported: Path, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(exported, copy)
    data = bytearray((copy / "model_int8.tflite").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (copy / "model_int8.tflite").write_bytes(bytes(data))
    (copy / "model_int8.onnx").unlink()
    assert verify_main([str(copy), "--samples", "20"]) == 1
    err = capsys.readouterr().err
    assert "tflite/int8 (model_int8.tflite): SHA-256 mismatch" in err
    assert "onnx/int8 (model_int8.onnx): file missing" in err
    assert "model.onnx)" not in err.replace("model_int8.onnx)", "")
    shutil.rmtree(copy / "saved_model" / "variables")
    report = verify_dir(copy, samples=20)
    assert any(p.startswith("saved_model/float32 (saved_model): SHA-256")
               for p in report["problems"])


def test_bench_reports_every_artifact_and_keras(exported: Path,
                                                capsys: pytest.CaptureFixture) -> None:
    rows = bench_dir(exported, batch=4, runs=3)
    assert [r["name"] for r in rows][0] == "keras"
    # keras, then each file in every runtime that runs it: ONNX in onnxruntime and OpenVINO.
    assert [(r["name"], r["runtime"]) for r in rows if r["format"] == "onnx"] == [
        (name, runtime) for name in ("model.onnx", "model_float16.onnx", "model_int8.onnx")
        for runtime in ("onnxruntime", "openvino")]
    assert len(rows) == 1 + 1 + 4 + 3 * 2 + 3
    assert all(r["latency_ms"] > 0 and r["throughput"] > 0 for r in rows)
    assert bench_main([str(exported), "--batch", "2", "--runs", "2", "--no-keras"]) == 0
    table = capsys.readouterr().out
    assert "model_int8.onnx" in table and "img/s @ batch 2" in table
    assert sum(line.startswith("fastest ") for line in table.splitlines()) == 4


@pytest.mark.skipif(os.environ.get("KERAS_RESNET_ARM64") != "1", reason=(
    "opt-in (KERAS_RESNET_ARM64=1): builds an arm64 Python from Debian's packages and PyPI's "
    "arm64 wheels (about 60 MB, once) and runs every TFLite/ONNX file under qemu-aarch64"))
@pytest.mark.parametrize("cpu", ["neoverse-n1", "cortex-a72"])
def test_every_file_agrees_with_keras_on_an_emulated_arm64_board(exported: Path,
                                                                  cpu: str) -> None:
    from keras_resnet.tools.arm64 import check_dir, prepare

    rows = check_dir(exported, prepare(cpu=cpu), samples=20)
    assert [r["artifact"].split(" ")[0] for r in rows] == [
        "tflite/float32", "tflite/float16", "tflite/dynamic_int8", "tflite/int8",
        "onnx/float32", "onnx/float16", "onnx/int8"]
    assert all(r["passed"] for r in rows), rows
