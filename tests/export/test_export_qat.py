"""Export of quantization-aware models: int8 TFLite and ONNX files from the learned ranges
(no calibration) whose top-1 equals the quantization-aware Keras model's, int8 weights on
the scheme's grid, TensorRT's symmetric file, and refusals of what makes no sense."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from keras_resnet.export import UsageError, export_model, verify_dir
from keras_resnet.export.cli import export_main, verify_main
from keras_resnet.export.onnx_export import OnnxRunner
from keras_resnet.export.onnx_int8 import int8_structure, tensorrt_check
from keras_resnet.export.tflite import TFLiteRunner
from keras_resnet.export.verify import compare
from keras_resnet.training.data import load_digits_arrays

SIZE = 16
EVAL = 200
BAR = 0.995


@pytest.fixture(scope="module")
def digits() -> dict:
    """A ResNet-8 trained two epochs on digits (0..1 inputs), and its test images."""
    import keras

    import keras_resnet

    keras.utils.set_random_seed(0)
    x, y, x_test, y_test = load_digits_arrays(SIZE)
    x, x_test = (x / 255.0).astype(np.float32), (x_test / 255.0).astype(np.float32)
    model = keras_resnet.build_resnet(8, family="cifar", input_shape=(SIZE, SIZE, 3),
                                      classes=10)
    model.compile(optimizer=keras.optimizers.Adam(3e-3),
                  loss="sparse_categorical_crossentropy")
    model.fit(x, y, batch_size=32, epochs=2, verbose=0)
    return {"model": model, "x": x, "x_test": x_test[:EVAL], "y_test": y_test[:EVAL]}


def _qat(digits: dict, scheme: str):
    """The quantization-aware copy, its ranges observed on four batches, then frozen."""
    from keras_resnet.quantization import freeze_observers, quantize_model

    qat = quantize_model(digits["model"], scheme)
    for start in range(0, 256, 64):
        qat(digits["x"][start:start + 64], training=True)
    freeze_observers(qat)
    return qat


def _agreement(reference: np.ndarray, output: np.ndarray) -> float:
    return float(np.mean(reference.argmax(1) == output.argmax(1)))


@pytest.fixture(scope="module")
def seven_bit(digits: dict, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A u8s8-7bit model exported from memory with no calibration source."""
    qat = _qat(digits, "u8s8-7bit")
    out = tmp_path_factory.mktemp("qat") / "u8s8-7bit"
    manifest = export_model(qat, out, formats="tflite,onnx",
                            data=(digits["x_test"], digits["y_test"]), input_range=(0, 1))
    return {"qat": qat, "out": out, "manifest": manifest,
            "keras": qat.predict(digits["x_test"], verbose=0)}


def test_int8_files_agree_with_the_qat_model_without_calibration(seven_bit: dict,
                                                                 digits: dict) -> None:
    manifest, out = seven_bit["manifest"], seven_bit["out"]
    assert manifest["status"] == "passed"
    assert manifest["options"]["calibration"] is None and manifest["options"]["quantize"] == [
        "int8"]
    assert manifest["qat"]["scheme"] == "u8s8-7bit" and manifest["qat"]["min_agreement"] == BAR
    int8 = {a["format"]: a for a in manifest["artifacts"] if a["precision"] == "int8"}
    assert set(int8) == {"tflite", "onnx"}
    runners = {"tflite": TFLiteRunner(out / "model_int8.tflite"),
               "onnx": OnnxRunner(out / "model_int8.onnx")}
    for fmt, artifact in int8.items():
        assert artifact["int8"]["source"] == "qat" and artifact["int8"]["scheme"] == "u8s8-7bit"
        assert artifact["parity"]["agreement_samples"] == EVAL
        own = _agreement(seven_bit["keras"], runners[fmt](digits["x_test"]))
        assert own >= BAR, (fmt, own)
        assert artifact["parity"]["top1_agreement"] == pytest.approx(own, abs=1 / EVAL)
    # the float32 files keep the rounding: judged by agreement too
    floats = [a for a in manifest["artifacts"] if a["precision"] == "float32"]
    assert floats and all(a["parity"]["top1_agreement"] >= BAR for a in floats)
    assert all(a["parity"]["min_agreement"] == BAR for a in manifest["artifacts"])


def test_onnx_weights_are_int8_per_channel_on_the_7_bit_grid(seven_bit: dict) -> None:
    import onnx
    from onnx import numpy_helper

    path = seven_bit["out"] / "model_int8.onnx"
    onnx.checker.check_model(str(path))
    structure = int8_structure(path)
    assert structure["weight_types"] == ["int8"] and structure["activation_types"] == ["uint8"]
    assert structure["max_abs_weight"] == 64 and structure["saturation_free"]
    graph = onnx.load(str(path)).graph
    initializers = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    assert not [n for n, v in initializers.items() if v.dtype == np.float32 and v.ndim == 4]
    weights = [n for n in graph.node if n.op_type == "DequantizeLinear"
               and n.name.endswith("_weight_dequantize")]
    assert len(weights) == 8  # 7 convolutions and the classifier
    for node in weights:
        values, scale = initializers[node.input[0]], initializers[node.input[1]]
        axis = 0 if values.ndim == 4 else 1
        assert scale.shape == (values.shape[axis],)  # one scale per output channel
        peak = np.max(np.abs(values), axis=tuple(i for i in range(values.ndim) if i != axis))
        assert np.all(peak == 64)
    int8 = next(a for a in seven_bit["manifest"]["artifacts"] if a["path"] == "model_int8.onnx")
    assert int8["int8"]["int32_biases"] == 8 and int8["int8"]["max_weight_rounding"] < 1e-3


def test_tflite_int8_weights_keep_the_7_bit_grid(seven_bit: dict) -> None:
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model(str(seven_bit["out"] / "model_int8.tflite"))
    graph, peaks = model.subgraphs[0], []
    for op in graph.operators:
        code = model.operatorCodes[op.opcodeIndex]
        if max(code.builtinCode, code.deprecatedBuiltinCode) in (
                schema.BuiltinOperator.CONV_2D, schema.BuiltinOperator.FULLY_CONNECTED):
            tensor = graph.tensors[op.inputs[1]]
            values = np.frombuffer(bytes(bytearray(model.buffers[tensor.buffer].data)), np.int8)
            peaks.append(np.abs(values.reshape(tensor.shape[0], -1)).max(axis=1))
    assert len(peaks) == 8 and all(np.all(p == 64) for p in peaks)


def test_verify_judges_the_files_against_the_qat_model(seven_bit: dict,
                                                       capsys: pytest.CaptureFixture) -> None:
    report = verify_dir(seven_bit["out"])
    assert report["passed"], report["problems"]
    assert all(r["min_agreement"] == BAR for r in report["artifacts"])
    assert verify_main([str(seven_bit["out"]), "--layers"]) == 2  # no float file to compare
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "--layers" in lines[0] and "quantization-aware" in lines[0]


def test_a_qat_file_below_the_bar_fails() -> None:
    reference = np.eye(10, dtype=np.float32)[np.arange(200) % 10]
    output = reference.copy()
    output[0] = np.roll(output[0], 1)  # one image of 200 answers another class: 99.5 %
    assert compare(reference, output, "float32", BAR, by_agreement=True)["passed"]
    output[1] = np.roll(output[1], 1)  # two: 99.0 %
    figures = compare(reference, output, "float32", BAR, by_agreement=True)
    assert not figures["passed"] and figures["top1_agreement"] == pytest.approx(0.99)


def test_8_bit_qat_files_are_checked_with_exact_arithmetic(digits: dict,
                                                          tmp_path: Path) -> None:
    """u8s8 weights reach 127: onnxruntime's x86 kernels without VNNI could saturate a
    16-bit sum, so the ONNX file is checked with the QDQ pairs unfused."""
    qat = _qat(digits, "u8s8")
    manifest = export_model(qat, tmp_path / "u8s8", formats="onnx",
                            data=(digits["x_test"], digits["y_test"]), input_range=(0, 1))
    assert manifest["status"] == "passed" and manifest["qat"]["scheme"] == "u8s8"
    onnx_int8 = next(a for a in manifest["artifacts"] if a["path"] == "model_int8.onnx")
    assert onnx_int8["int8"]["max_abs_weight"] == 127
    assert not onnx_int8["int8"]["saturation_free"]
    assert onnx_int8["qat"]["checked_with"].startswith("exact integer arithmetic")
    keras_out = qat.predict(digits["x_test"], verbose=0)
    exact = OnnxRunner(tmp_path / "u8s8" / "model_int8.onnx", unfused=True)(digits["x_test"])
    assert _agreement(keras_out, exact) >= BAR


@pytest.fixture(scope="module")
def symmetric_file(digits: dict, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """An s8s8-sym model saved as a .keras file (the trainer's output)."""
    qat = _qat(digits, "s8s8-sym")
    folder = tmp_path_factory.mktemp("qat-sym")
    qat.save(folder / "model.keras")
    np.save(folder / "test.npy", digits["x_test"])
    return {"path": folder / "model.keras", "data": folder / "test.npy",
            "keras": qat.predict(digits["x_test"], verbose=0)}


def test_tensorrt_file_of_a_symmetric_qat_model(symmetric_file: dict, digits: dict,
                                                tmp_path: Path) -> None:
    out = tmp_path / "trt"
    code = export_main([str(symmetric_file["path"]), "-o", str(out), "--target", "tensorrt",
                        "--input-range", "0,1", "--data", str(symmetric_file["data"])])
    assert code == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["options"]["int8_scheme"] == "s8s8-sym"
    assert [a["precision"] for a in manifest["artifacts"]] == ["float32", "int8"]
    path = out / "model_int8.onnx"
    check = tensorrt_check(path)
    assert check["passed"], check["problems"]
    assert int8_structure(path)["activation_types"] == ["int8"]
    int8 = manifest["artifacts"][1]
    assert int8["int8"]["source"] == "qat" and int8["int8"]["int32_biases"] == 0
    assert int8["checks"]["tensorrt"]["passed"]
    exact = OnnxRunner(path, unfused=True)(digits["x_test"])
    assert _agreement(symmetric_file["keras"], exact) >= BAR


@pytest.mark.parametrize(("flags", "expected"), [
    (["--calibration", "digits"], "--calibration: this quantization-aware model"),
    (["--calibration-method", "entropy"], "--calibration-method: this quantization-aware"),
    (["--onnx-int8-scheme", "u8s8-7bit"], "its int8 files can only be s8s8-sym"),
    (["--keep-float", "conv1_conv"], "--keep-float: this quantization-aware model"),
    (["--layer-report"], "--layer-report compares int8 files with a float model"),
    (["--quantize", "float16,int8"], "--quantize float16: this quantization-aware model"),
    (["--target", "gpu"], "--target gpu writes float16 files"),
])
def test_options_that_make_no_sense_for_a_qat_model_are_refused(
        symmetric_file: dict, flags: list[str], expected: str, tmp_path: Path,
        capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "out"
    assert export_main([str(symmetric_file["path"]), "-o", str(out), "--input-range", "0,1",
                        *flags]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], lines
    assert not out.exists()


def test_tensorrt_target_refuses_an_asymmetric_qat_model(seven_bit: dict,
                                                         tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="--target tensorrt needs symmetric int8"):
        export_model(seven_bit["qat"], tmp_path / "trt", target="tensorrt",
                     input_range=(0, 1))
    assert not (tmp_path / "trt").exists()
