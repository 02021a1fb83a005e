"""ONNX export through tf2onnx, onnxruntime static int8 quantization, and an
onnxruntime runner."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

INPUT_NAME = "input"
MIN_OPSET = 13  # per-channel QuantizeLinear/DequantizeLinear need opset 13
#: Ops quantized in the int8 model. Softmax stays float so the output keeps full
#: probability resolution; everything heavy (Conv, MatMul/Gemm, Add) is int8.
QUANTIZED_OPS = ["Conv", "MatMul", "Gemm", "Add", "MaxPool", "GlobalAveragePool",
                 "AveragePool", "Relu", "Clip", "Mul", "Pad", "Concat", "Reshape", "Squeeze",
                 "Transpose", "Flatten"]


def max_opset() -> int:
    """The highest opset both tf2onnx and onnxruntime support."""
    from tf2onnx import constants

    return int(max(constants.OPSET_TO_IR_VERSION))


def convert_onnx(model: Any, path: Path, input_shape: tuple[int, int, int], opset: int,
                 nchw: bool, metadata: dict[str, str]) -> dict[str, Any]:
    """Convert a Keras model with tf2onnx (dynamic batch; NCHW input when ``nchw``)."""
    import onnx
    import tensorflow as tf
    import tf2onnx

    spec = (tf.TensorSpec((None, *input_shape), tf.float32, name=INPUT_NAME),)
    proto, _ = tf2onnx.convert.from_keras(
        model, input_signature=spec, opset=opset,
        inputs_as_nchw=[INPUT_NAME] if nchw else None)
    set_metadata(proto, metadata)
    onnx.save(proto, str(path))
    return describe_onnx(path)


def set_metadata(proto: Any, metadata: dict[str, str]) -> None:
    """Replace the model's ``metadata_props`` with ``metadata``."""
    del proto.metadata_props[:]
    for key, value in metadata.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value


def describe_onnx(path: Path) -> dict[str, Any]:
    """Input/output names and shapes, opset, metadata and op counts of an ONNX file."""
    import onnx

    proto = onnx.load(str(path), load_external_data=False)

    def dims(value: Any) -> list[int | str]:
        return [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]

    ops: dict[str, int] = {}
    for node in proto.graph.node:
        ops[node.op_type] = ops.get(node.op_type, 0) + 1
    opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), None)
    return {"input": {"name": proto.graph.input[0].name, "shape": dims(proto.graph.input[0])},
            "output": {"name": proto.graph.output[0].name, "shape": dims(proto.graph.output[0])},
            "opset": opset, "ops": dict(sorted(ops.items())),
            "metadata_props": {p.key: p.value for p in proto.metadata_props}}


def quantize_onnx_int8(float_path: Path, out_path: Path, calibration: np.ndarray,
                       metadata: dict[str, str]) -> None:
    """Static int8 quantization with onnxruntime, tuned for x86/ARM CPU kernels.

    QDQ format, uint8 activations (asymmetric) and int8 per-channel weights: onnxruntime
    fuses each DequantizeLinear -> Conv -> QuantizeLinear into a QLinearConv that runs on
    its u8s8 (VNNI / dot-product) kernels. int8 activations, the default, fall back to
    slower s8s8 kernels; see docs/export.md.
    ``calibration`` is already in the model's layout (NHWC, or NCHW for --nchw).
    """
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    samples = np.asarray(calibration, np.float32)
    input_name = onnx.load(str(float_path), load_external_data=False).graph.input[0].name

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._batches = iter(range(0, len(samples), 8))

        def get_next(self) -> dict[str, np.ndarray] | None:
            start = next(self._batches, None)
            return None if start is None else {input_name: samples[start:start + 8]}

    quantize_static(
        str(float_path), str(out_path), Reader(),
        quant_format=QuantFormat.QDQ,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        per_channel=True,
        op_types_to_quantize=QUANTIZED_OPS,
        calibrate_method=CalibrationMethod.MinMax,
    )
    proto = onnx.load(str(out_path))
    set_metadata(proto, metadata)
    onnx.save(proto, str(out_path))


class OnnxRunner:
    """Runs an ONNX file with ``onnxruntime.InferenceSession`` on the CPU; takes NHWC input
    and transposes it when the model was exported with NCHW input."""

    def __init__(self, path: Path, threads: int | None = None, nchw: bool = False) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or 2
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        self._session = ort.InferenceSession(str(path), options,
                                             providers=["CPUExecutionProvider"])
        self._input = self._session.get_inputs()[0].name
        self._nchw = nchw

    def __call__(self, x: np.ndarray) -> np.ndarray:
        if self._nchw:
            x = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
        return self._session.run(None, {self._input: np.asarray(x, np.float32)})[0]
