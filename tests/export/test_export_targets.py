"""Edge targets (``--target tensorrt | gpu | npu``), static batches and calibration methods:
each target's files are written, verified in their runtime and pass their structural check,
read back from the files themselves; a wrong file fails its check naming the tensor; a
combination a target cannot serve is refused before any work."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from keras_resnet.export import export_model
from keras_resnet.export.cli import export_main

TRT_RULES_OPS = {"QuantizeLinear", "DequantizeLinear", "Conv", "Relu", "Add", "MatMul",
                 "GlobalAveragePool", "MaxPool", "Pad", "Softmax", "Transpose", "Reshape",
                 "Squeeze", "Mul", "Sub", "Div", "Exp", "ReduceMax", "ReduceSum", "Flatten",
                 "Identity", "Gemm", "Cast"}


def _manifest(directory: Path) -> dict:
    return json.loads((directory / "manifest.json").read_text())


@pytest.fixture(scope="module")
def tensorrt(trained_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("targets") / "tensorrt"
    export_model(str(trained_model), out, target="tensorrt", calibration="digits", samples=120)
    return out


@pytest.fixture(scope="module")
def npu(trained_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("targets") / "npu"
    export_model(str(trained_model), out, target="npu", int8_io="uint8", calibration="digits",
                 samples=120)
    return out


def test_tensorrt_target_writes_float32_float16_and_symmetric_int8_onnx(tensorrt: Path) -> None:
    import onnx
    from onnx import numpy_helper

    manifest = _manifest(tensorrt)
    assert manifest["target"] == "tensorrt" and manifest["status"] == "passed"
    assert sorted(a["path"] for a in manifest["artifacts"]) == [
        "model.onnx", "model_float16.onnx", "model_int8.onnx"]
    int8 = onnx.load(str(tensorrt / "model_int8.onnx"))
    inits = {i.name: numpy_helper.to_array(i) for i in int8.graph.initializer}
    qdq = [n for n in int8.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    zeros = [inits[n.input[2]] for n in qdq]
    assert qdq and all(z.dtype == np.int8 and not z.any() for z in zeros)  # symmetric
    assert {n.op_type for n in int8.graph.node} <= TRT_RULES_OPS
    for value in (*int8.graph.input, *int8.graph.output):
        assert value.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    artifact = next(a for a in manifest["artifacts"] if a["precision"] == "int8")
    assert artifact["checks"]["tensorrt"] == {"passed": True, "problems": [],
                                              "rules": artifact["checks"]["tensorrt"]["rules"]}
    assert artifact["int8"]["scheme"] == "s8s8-sym"
    # Checked as TensorRT computes (int32 sums), not with x86 kernels that saturate without VNNI.
    assert artifact["int8"]["checked_with"].startswith("exact integer arithmetic")
    assert artifact["parity"]["top1_agreement"] >= 0.98


def test_float16_onnx_holds_float16_weights_with_float32_input_and_output(
        tensorrt: Path) -> None:
    import onnx

    proto = onnx.load(str(tensorrt / "model_float16.onnx"))
    types = {i.data_type for i in proto.graph.initializer if len(i.dims) >= 2}
    assert types == {onnx.TensorProto.FLOAT16}
    assert proto.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert proto.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    parity = next(a for a in _manifest(tensorrt)["artifacts"]
                  if a["path"] == "model_float16.onnx")["parity"]
    assert parity["passed"] and parity["max_abs_diff"] <= 1e-2


def test_npu_target_is_static_batch_1_integer_only_with_uint8_input(npu: Path) -> None:
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    manifest = _manifest(npu)
    assert manifest["status"] == "passed" and manifest["input"]["shape"] == [1, 32, 32, 3]
    interpreter = Interpreter(model_path=str(npu / "model_int8.tflite"),
                              experimental_op_resolver_type=(
                                  OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES))
    tensors = interpreter.get_tensor_details()
    assert all(-1 not in list(t["shape_signature"]) for t in tensors)
    assert {np.dtype(t["dtype"]).name for t in tensors} <= {"int8", "uint8", "int32"}
    assert interpreter.get_input_details()[0]["dtype"] == np.uint8
    assert interpreter.get_output_details()[0]["dtype"] == np.uint8
    artifact = next(a for a in manifest["artifacts"] if a["precision"] == "int8")
    assert artifact["batch"] == 1 and artifact["checks"]["npu"]["passed"]
    assert artifact["parity"]["top1_agreement"] >= 0.98


def test_wrong_files_fail_their_checks_naming_the_tensor(tensorrt: Path, npu: Path,
                                                         tmp_path: Path) -> None:
    import onnx
    from keras_resnet.export.onnx_int8 import tensorrt_check
    from keras_resnet.export.tflite import npu_check
    from onnx import numpy_helper

    proto = onnx.load(str(tensorrt / "model_int8.onnx"))
    target = next(n for n in proto.graph.node if n.op_type == "QuantizeLinear").input[2]
    for init in proto.graph.initializer:
        if init.name == target:
            init.CopyFrom(numpy_helper.from_array(np.array(3, np.int8), target))
    onnx.save(proto, str(tmp_path / "asymmetric.onnx"))
    report = tensorrt_check(tmp_path / "asymmetric.onnx")
    assert not report["passed"]
    assert report["problems"] == [f"tensor {target!r}: zero point 3 is not 0 (asymmetric)"]

    from keras_resnet.export.saved_model import build_saved_model
    from keras_resnet.export.tflite import convert_tflite

    import keras_resnet

    model = keras_resnet.load_model(npu / "model.keras")
    build_saved_model(model, tmp_path / "sm", (32, 32, 3))  # dynamic batch
    (tmp_path / "dynamic.tflite").write_bytes(convert_tflite(tmp_path / "sm", "float32"))
    report = npu_check(tmp_path / "dynamic.tflite")
    assert not report["passed"]
    assert any("has a dynamic shape [-1, 32, 32, 3]" in p for p in report["problems"])
    assert any("is float32" in p for p in report["problems"])


def test_static_batch_and_percentile_calibration_for_any_format(trained_model: Path,
                                                                tmp_path: Path) -> None:
    import onnx
    from keras_resnet.export import verify_dir

    out = tmp_path / "batch2"
    manifest = export_model(str(trained_model), out, formats=["saved_model", "onnx"],
                            quantize=["int8"], calibration="digits", samples=40, batch=2,
                            calibration_method="percentile")
    assert manifest["status"] == "passed"
    assert all(a["batch"] == 2 for a in manifest["artifacts"])
    saved = next(a for a in manifest["artifacts"] if a["format"] == "saved_model")
    assert saved["inputs"]["input"] == [2, 32, 32, 3]
    for name in ("model.onnx", "model_int8.onnx"):
        dim = onnx.load(str(out / name)).graph.input[0].type.tensor_type.shape.dim[0]
        assert dim.dim_value == 2, name
    int8 = next(a for a in manifest["artifacts"] if a["path"] == "model_int8.onnx")
    assert int8["int8"]["calibration_method"] == "percentile"
    assert int8["parity"]["agreement_samples"] == 40  # 20 static batches of 2
    assert verify_dir(out, samples=9)["passed"]  # 8 + 9 = 17 inputs: the last batch padded


@pytest.mark.parametrize("argv, expected", [
    (["--target", "npu", "--formats", "onnx"],
     "error: --target npu writes tflite files; --formats onnx cannot serve it"),
    (["--target", "tensorrt", "--onnx-int8-scheme", "u8s8"],
     "error: --target tensorrt needs zero points 0: --onnx-int8-scheme s8s8-sym (got u8s8)"),
    (["--target", "gpu", "--formats", "tflite"],
     "error: --target gpu writes ONNX files; --formats tflite cannot serve it"),
    (["--batch", "0"], "error: --batch must be in 1..1024 (got 0)"),
    (["--target", "npu", "--quantize", "float16"],
     "error: --target npu needs --quantize int8 (npu check)"),
    (["--int8-io", "uint8", "--formats", "onnx", "--quantize", "int8"],
     "error: --int8-io applies to the TFLite int8 file"),
    (["--quantize", "int8", "--batch", "64", "--samples", "10"],
     "error: --samples 10 is less than --batch 64"),
])
def test_combinations_a_target_cannot_serve_are_refused_before_any_work(
        trained_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture,
        argv: list[str], expected: str) -> None:
    out = tmp_path / "never"
    code = export_main([str(trained_model), "-o", str(out), "--calibration", "digits", *argv])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith(expected) and len(err.strip().splitlines()) == 1
    assert not out.exists() and list(tmp_path.iterdir()) == []
