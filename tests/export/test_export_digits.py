"""End to end: train a small zoo ResNet on digits, export every format and precision, and
check parity, int8 agreement, the manifest, verify (with tampering) and bench."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from export import bench_dir, export_model, verify_dir
from export.calibration import digits_arrays
from export.cli import bench_main, verify_main
from export.manifest import sha256_path

LABELS = [str(i) for i in range(10)]


@pytest.fixture(scope="module")
def trained_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """ResNet-8 (CIFAR family) trained on digits for a few hundred steps, taking raw
    pixels 0..255, saved as the trainer does: model.keras + labels.json."""
    import keras

    import keras_resnet

    keras.utils.set_random_seed(1)
    x, y = digits_arrays(32, split="train")
    x_test, y_test = digits_arrays(32, split="test")
    inputs = keras.Input((32, 32, 3))
    scaled = keras.layers.Rescaling(1.0 / 255.0)(inputs)
    net = keras_resnet.build_resnet(8, family="cifar", input_shape=(32, 32, 3), classes=10)
    model = keras.Model(inputs, net(scaled), name="digits_resnet8")
    model.compile(optimizer=keras.optimizers.Adam(3e-3),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y, batch_size=32, epochs=5, verbose=0)
    accuracy = model.evaluate(x_test, y_test, verbose=0)[1]
    assert accuracy > 0.9, f"the test model did not learn digits (accuracy {accuracy:.3f})"
    folder = tmp_path_factory.mktemp("trained")
    model.save(folder / "model.keras")
    (folder / "labels.json").write_text(json.dumps(
        {"labels": LABELS, "input_size": 32, "preprocessing": "raw RGB 0..255, rescaled in "
         "the model"}))
    return folder / "model.keras"


@pytest.fixture(scope="module")
def exported(trained_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("exports") / "digits"
    export_model(str(trained_model), out, quantize=["float16", "dynamic", "int8"],
                 calibration="digits", samples=300)
    return out


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
                     ("onnx", "int8")}
    assert manifest["status"] == "passed"
    for artifact in manifest["artifacts"]:
        parity = artifact["parity"]
        assert parity["passed"], artifact["path"]
        if artifact["precision"] == "float32":
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
    for fmt in ("tflite", "onnx"):
        parity = _artifact(manifest, fmt, "int8")["parity"]
        assert parity["agreement_samples"] == 300
        assert parity["top1_agreement"] >= 0.99, (fmt, parity)


def test_manifest_records_model_input_labels_and_tools(exported: Path) -> None:
    manifest = _manifest(exported)
    assert manifest["model"]["name"] == "digits_resnet8"
    assert manifest["input"]["shape"] == [None, 32, 32, 3]
    assert manifest["input"]["dtype"] == "float32"
    assert manifest["input"]["layout"] == "NHWC"
    assert manifest["input"]["preprocessing"].startswith("raw RGB 0..255")
    assert manifest["labels"] == LABELS
    assert {"tensorflow", "keras", "tf2onnx", "onnxruntime", "ai-edge-litert"} <= set(
        manifest["tools"])
    evaluation = dict(manifest["evaluation"])
    assert evaluation.pop("keras_top1") > 0.9
    assert evaluation == {"source": "digits", "split": "test", "samples": 300, "seed": 0,
                          "labelled": True}


def test_every_artifact_reports_its_test_accuracy_on_labelled_digits(exported: Path) -> None:
    manifest = _manifest(exported)
    keras_top1 = manifest["evaluation"]["keras_top1"]
    for artifact in manifest["artifacts"]:
        top1 = artifact["parity"]["test_top1"]
        assert top1 > 0.9, artifact["path"]
        if artifact["precision"] in ("float32", "float16"):
            assert top1 == pytest.approx(keras_top1, abs=1 / 300), artifact["path"]
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

    x = digits_arrays(32)[0][:3]
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
        assert props["preprocessing"].startswith("raw RGB 0..255")


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


def test_verify_passes_on_untouched_export(exported: Path, capsys: pytest.CaptureFixture) -> None:
    report = verify_dir(exported, data="digits", samples=100)
    assert report["passed"], report["problems"]
    assert len(report["artifacts"]) == 7
    assert verify_main([str(exported), "--samples", "50"]) == 0
    assert "verified 7 artifacts" in capsys.readouterr().out


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
    assert len(rows) == 8
    assert all(r["latency_ms"] > 0 and r["throughput"] > 0 for r in rows)
    assert bench_main([str(exported), "--batch", "2", "--runs", "2", "--no-keras"]) == 0
    table = capsys.readouterr().out
    assert "model_int8.onnx" in table and "img/s @ batch 2" in table
