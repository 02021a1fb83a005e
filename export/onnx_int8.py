"""Static int8 ONNX files: the table of quantization schemes, onnxruntime's static
quantization, and checks that read a file's own tensors (16-bit saturation on x86 CPUs
without VNNI; TensorRT's explicit-quantization rules)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

#: Ops quantized in the int8 model. Softmax stays float so the output keeps full
#: probability resolution; everything heavy (Conv, MatMul/Gemm, Add) is int8.
QUANTIZED_OPS = ["Conv", "MatMul", "Gemm", "Add", "MaxPool", "GlobalAveragePool",
                 "AveragePool", "Relu", "Clip", "Mul", "Pad", "Concat", "Reshape", "Squeeze",
                 "Transpose", "Flatten"]


@dataclass(frozen=True)
class Int8Scheme:
    """One onnxruntime static-quantization setting: activation and weight types, and
    whether weights use 7 of their 8 bits (``reduce_range``)."""

    activations: str  # "uint8" or "int8"
    weights: str  # "int8" or "uint8"
    reduce_range: bool
    summary: str
    symmetric_activations: bool = False  # every zero point 0 (TensorRT)
    quantize_bias: bool = True  # int32 biases; TensorRT wants them float
    #: Checked with exact integer arithmetic (onnxruntime with the QDQ pairs left unfused)
    #: rather than onnxruntime's fused x86 kernels: for files meant for another runtime.
    reference_arithmetic: bool = False


#: The int8 ONNX schemes the exporter can write (docs/export.md, "int8 on every CPU").
#: u8s8 runs on onnxruntime's fastest x86 kernels, which multiply uint8 activations by int8
#: weights with VPMADDUBSW where the CPU has no VNNI: that instruction adds two products into
#: a saturating 16-bit sum, 2 * 255 * 127 > 32767. 7-bit weights (|w| <= 64) keep every such
#: sum within int16 (2 * 255 * 64 = 32640), so the default file gives the same outputs on
#: every x86 CPU; on VNNI and ARM dot-product kernels it costs one bit of weight precision.
INT8_SCHEMES: dict[str, Int8Scheme] = {
    "u8s8-7bit": Int8Scheme("uint8", "int8", True, "uint8 activations, 7-bit int8 per-channel "
                            "weights: cannot saturate on any CPU (default)"),
    "u8s8": Int8Scheme("uint8", "int8", False, "uint8 activations, 8-bit int8 weights: "
                       "saturates on x86 CPUs without VNNI"),
    "s8s8": Int8Scheme("int8", "int8", False, "int8 activations and weights (onnxruntime's "
                       "default types)"),
    "u8u8": Int8Scheme("uint8", "uint8", False, "uint8 activations and weights: no "
                       "saturation, but no VNNI kernel"),
    "s8s8-sym": Int8Scheme("int8", "int8", False, "symmetric int8 activations and weights, "
                           "every zero point 0, float biases: TensorRT's explicit quantization",
                           True, False, True),
}
DEFAULT_INT8_SCHEME = "u8s8-7bit"
#: The largest sum VPMADDUBSW can hold (signed 16-bit) and its uint8 operand's largest value.
INT16_MAX = 32767
UINT8_MAX = 255
#: onnxruntime's calibration methods by the name ``--calibration-method`` takes.
CALIBRATION_METHODS = ("minmax", "entropy", "percentile")
#: ONNX ops TensorRT's ONNX parser builds in an explicitly quantized ResNet (its operator
#: support matrix); anything else in the file is named by ``tensorrt_check``.
TENSORRT_OPS = frozenset({
    "QuantizeLinear", "DequantizeLinear", "Conv", "MatMul", "Gemm", "Add", "Mul", "Sub", "Div",
    "Relu", "Clip", "MaxPool", "AveragePool", "GlobalAveragePool", "ReduceMean", "ReduceMax",
    "ReduceSum", "Exp", "Softmax", "Transpose", "Reshape", "Flatten", "Squeeze", "Unsqueeze",
    "Pad", "Concat", "Identity", "Cast", "Shape", "Gather", "Slice", "Constant"})


def quantize_onnx_int8(float_path: Path, out_path: Path, calibration: np.ndarray,
                       metadata: dict[str, str], scheme: str = DEFAULT_INT8_SCHEME,
                       method: str = "minmax", batch: int | None = None,
                       nodes_to_exclude: list[str] | None = None) -> None:
    """Static int8 quantization with onnxruntime in QDQ form, per-channel weights,
    calibrated by ``method`` on ``calibration`` (model-ready inputs in the model's layout),
    fed ``batch`` at a time (the file's static batch, else 8; 1 for the histogram methods,
    which need equal batches); ``nodes_to_exclude`` stay float (``--keep-float``).

    onnxruntime fuses each DequantizeLinear -> Conv -> QuantizeLinear into a QLinearConv;
    ``scheme`` (a key of INT8_SCHEMES) picks the types, see docs/export.md.
    """
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    chosen = INT8_SCHEMES[scheme]
    types = {"uint8": QuantType.QUInt8, "int8": QuantType.QInt8}
    samples = np.asarray(calibration, np.float32)
    input_name = onnx.load(str(float_path), load_external_data=False).graph.input[0].name

    step = batch or (8 if method == "minmax" else 1)
    if len(samples) % step:  # a static batch takes whole batches only
        samples = np.concatenate([samples, samples[:step - len(samples) % step]])

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._batches = iter(range(0, len(samples), step))

        def get_next(self) -> dict[str, np.ndarray] | None:
            start = next(self._batches, None)
            return None if start is None else {input_name: samples[start:start + step]}

    quantize_static(
        str(float_path), str(out_path), Reader(),
        quant_format=QuantFormat.QDQ,
        activation_type=types[chosen.activations],
        weight_type=types[chosen.weights],
        per_channel=True,
        reduce_range=chosen.reduce_range,
        op_types_to_quantize=QUANTIZED_OPS,
        nodes_to_exclude=list(nodes_to_exclude or []),
        calibrate_method={"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
                          "percentile": CalibrationMethod.Percentile}[method],
        extra_options={"ActivationSymmetric": chosen.symmetric_activations,
                       "QuantizeBias": chosen.quantize_bias},
    )
    proto = onnx.load(str(out_path))
    onnx.helper.set_model_props(  # replaces metadata_props
        proto, {**metadata, "int8_scheme": scheme, "calibration_method": method})
    onnx.save(proto, str(out_path))


def int8_structure(path: Path) -> dict[str, Any]:
    """What the int8 file's own tensors say about 16-bit saturation, on any CPU.

    For every quantized Conv/MatMul/Gemm: the integer types of its activation and weight
    inputs and the largest |weight|. Where uint8 activations meet int8 weights (the u8s8
    kernels), the worst pair sum of VPMADDUBSW is 2 * 255 * max|w| and must be <= 32767.
    """
    import onnx
    from onnx import numpy_helper

    proto = onnx.load(str(path), load_external_data=False)
    graph = proto.graph
    initializers = {t.name: t for t in graph.initializer}
    dequantized = {n.output[0]: n for n in graph.node if n.op_type == "DequantizeLinear"}
    layers, activation_types, weight_types, max_abs = 0, set(), set(), 0
    for node in graph.node:
        if node.op_type not in ("Conv", "MatMul", "Gemm") or len(node.input) < 2:
            continue
        source, weight = dequantized.get(node.input[0]), dequantized.get(node.input[1])
        if source is None or weight is None or weight.input[0] not in initializers:
            continue
        values = numpy_helper.to_array(initializers[weight.input[0]])
        layers += 1
        weight_types.add(values.dtype.name)
        activation_types.add(_zero_point_type(source, initializers))
        centred = values.astype(np.int32) - _zero_points(weight, initializers, values.ndim)
        max_abs = max(max_abs, int(np.max(np.abs(centred))))
    u8s8 = activation_types == {"uint8"} and weight_types == {"int8"}
    worst = 2 * UINT8_MAX * max_abs if u8s8 else None
    return {"quantized_layers": layers, "activation_types": sorted(activation_types),
            "weight_types": sorted(weight_types), "max_abs_weight": max_abs,
            "vpmaddubsw_worst_sum": worst,
            "saturation_free": (worst is not None and worst <= INT16_MAX)
            or activation_types == weight_types == {"uint8"}}


def _zero_points(node: Any, initializers: dict[str, Any], ndim: int) -> np.ndarray:
    """A DequantizeLinear's zero points shaped to broadcast along its ``axis``."""
    from onnx import helper, numpy_helper

    if len(node.input) < 3 or node.input[2] not in initializers:
        return np.zeros((), np.int32)
    zero = numpy_helper.to_array(initializers[node.input[2]]).astype(np.int32)
    if zero.ndim == 0:
        return zero
    axis = next((helper.get_attribute_value(a) for a in node.attribute if a.name == "axis"), 1)
    shape = [1] * ndim
    shape[axis % ndim] = zero.size
    return zero.reshape(shape)


def _zero_point_type(node: Any, initializers: dict[str, Any]) -> str:
    """The integer type of a DequantizeLinear's input, read from its zero point."""
    from onnx import numpy_helper

    if len(node.input) > 2 and node.input[2] in initializers:
        return numpy_helper.to_array(initializers[node.input[2]]).dtype.name
    return "int8"  # ONNX: a missing zero point means int8 with zero point 0


def tensorrt_check(path: Path) -> dict[str, Any]:
    """TensorRT's rules for explicitly quantized ONNX, read from the file: float32 input and
    output, every QuantizeLinear/DequantizeLinear int8 with zero point 0 (symmetric) and a
    positive scale, and only ops TensorRT builds. Problems name the node or tensor."""
    import onnx
    from onnx import numpy_helper

    proto = onnx.load(str(path), load_external_data=False)
    graph = proto.graph
    initializers = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    problems = []
    for value in (*graph.input, *graph.output):
        if value.type.tensor_type.elem_type != onnx.TensorProto.FLOAT:
            problems.append(f"graph {value.name!r} is not float32")
    for node in graph.node:
        if node.op_type not in TENSORRT_OPS:
            problems.append(f"node {node.name!r}: op {node.op_type} is not built by TensorRT")
        if node.op_type in ("QuantizeLinear", "DequantizeLinear"):
            problems += _qdq_problems(node, initializers)
    problems = list(dict.fromkeys(problems))  # a Q/DQ pair shares its zero point
    return {"passed": not problems, "problems": problems,
            "rules": "float32 I/O; int8 Q/DQ with zero point 0 and scale > 0; TensorRT ops"}


def _qdq_problems(node: Any, initializers: dict[str, np.ndarray]) -> list[str]:
    """A Q/DQ node's zero point must be an int8 zero and its scale positive."""
    if len(node.input) < 3 or node.input[2] not in initializers:
        return [f"node {node.name!r}: no int8 zero point"]
    zero, scale = initializers[node.input[2]], initializers.get(node.input[1])
    problems = []
    if zero.dtype != np.int8:
        problems.append(f"tensor {node.input[2]!r}: zero point is {zero.dtype}, not int8")
    elif np.any(zero != 0):
        problems.append(f"tensor {node.input[2]!r}: zero point {int(zero.flat[np.argmax(zero != 0)])}"
                        " is not 0 (asymmetric)")
    if scale is None or np.any(scale <= 0):
        problems.append(f"tensor {node.input[1]!r}: scale is not a positive constant")
    return problems
