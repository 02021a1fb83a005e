"""int8 files of a quantization-aware model (:mod:`keras_resnet.quantization`): the ranges
were learned in training, so nothing is calibrated.

- TFLite: the converter reads each ``FakeQuantWithMinMaxVars`` op's range as its tensor's
  int8 range (no representative dataset); it rounds weights to 8 bits per channel, so a
  model trained on the 7-bit grid (``u8s8-7bit``) gets its weights put back on that grid.
- ONNX: tf2onnx turns each fake-quant op into a uint8 QuantizeLinear/DequantizeLinear pair
  and folds the rounded weights into float initializers; :func:`int8_weight_pass` stores
  those weights as int8 per output channel (and biases as int32) behind DequantizeLinear
  nodes, and for ``s8s8-sym`` makes every activation pair int8 with zero point 0
  (TensorRT's explicit quantization).

Every file of such a model computes what the quantization-aware model computes, and is
judged by top-1 agreement with it (:data:`QAT_MIN_AGREEMENT`), never with a float model.
"""

from __future__ import annotations

import os
import zipfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from keras_resnet.export.errors import UsageError

from keras_resnet.safefiles import check_archive, loads_bounded

#: Least top-1 agreement of every file of a quantization-aware model with that model.
QAT_MIN_AGREEMENT = 0.995
#: Ops whose second input is a weight the pass stores as int8.
WEIGHTED_OPS = ("Conv", "MatMul", "Gemm")
#: Ops whose output lies on their input's grid (a per-tensor scale passes through them).
_GRID_KEEPING = ("Transpose", "Reshape", "Squeeze", "Unsqueeze", "Flatten", "MaxPool")
#: The smallest weight scale, as the quantization-aware layers use.
_TINY = 1e-8
INT32_LIMIT = 2**31 - 1


def model_qat_scheme(model: Any) -> str | None:
    """The quantization scheme a ``keras.Model`` or a ``.keras`` file simulates (a key of
    ``QAT_SCHEMES``), read without building the model for a file; None for a float model
    or anything that is not a readable model (checked later)."""
    from keras_resnet.qat_schemes import scheme_named_by
    from keras_resnet.quantization import qat_scheme_of

    if hasattr(model, "_flatten_layers"):
        try:
            return qat_scheme_of(model)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
    if not isinstance(model, str | Path) or not str(model).endswith(".keras"):
        return None
    if not os.path.isfile(model):  # a FIFO or device would block: refused when loaded
        return None
    try:
        check_archive(str(model))  # no inflating beyond its bound
        with zipfile.ZipFile(model) as archive:
            config = loads_bounded(archive.read("config.json").decode(), "model config")
    except (OSError, KeyError, ValueError, zipfile.BadZipFile, RecursionError):
        return None  # refused with its own message when the model is loaded
    layer = _first_quantized_layer(config)
    if layer is None:
        return None
    try:
        return scheme_named_by(layer.get("weight_qmax", 127), layer.get("symmetric", False),
                               f"{model}: its quantization-aware layers")
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def _first_quantized_layer(config: Any) -> dict[str, Any] | None:
    """The config of the first QuantConv2D/QuantDense in a saved model's config tree."""
    if isinstance(config, dict):
        if config.get("class_name") in ("QuantConv2D", "QuantDense") and isinstance(
                config.get("config"), dict):
            return config["config"]
        children = config.values()
    elif isinstance(config, list):
        children = config
    else:
        return None
    for child in children:
        found = _first_quantized_layer(child)
        if found is not None:
            return found
    return None


def settle_qat_options(options: Any, scheme: str, given: Any) -> Any:
    """The options of an export of a model that simulates ``scheme``, with ``given`` the
    options as the user gave them (before the target filled them in); UsageError, one line,
    for what makes no sense with learned int8 ranges."""
    from keras_resnet.quantization import QAT_SCHEMES

    what = f"this quantization-aware model simulates {scheme}"
    if given.calibration is not None:
        raise UsageError(f"--calibration: {what} with int8 ranges learned in training; no "
                         "calibration set is read (--data gives the evaluation images)")
    if given.calibration_method != "minmax":
        raise UsageError(f"--calibration-method: {what}; its int8 ranges were learned, "
                         "not calibrated")
    if given.keep_float:
        raise UsageError(f"--keep-float: {what} with every layer int8; a layer kept float "
                         "would compute what it was not trained for (export the float "
                         "model to keep layers float)")
    if given.layer_report:
        raise UsageError(f"--layer-report compares int8 files with a float model; {what}, "
                         "so its files have no float reference (report on the float model)")
    if given.int8_scheme is not None and given.int8_scheme != scheme:
        raise UsageError(f"--onnx-int8-scheme {given.int8_scheme}: {what}; its int8 files "
                         f"can only be {scheme}")
    symmetric = QAT_SCHEMES[scheme].symmetric_activations
    if options.target == "tensorrt" and not symmetric:
        raise UsageError(f"--target tensorrt needs symmetric int8 (s8s8-sym); {what}: "
                         "train it with the s8s8-sym scheme")
    if options.target == "gpu":
        raise UsageError(f"--target gpu writes float16 files; {what}: use --target cpu, "
                         "npu or tensorrt (or export the float model)")
    float_words = [w for w in (given.quantize or []) if w != "int8"]
    if float_words:
        raise UsageError(f"--quantize {','.join(float_words)}: {what}, whose arithmetic is "
                         "int8; only --quantize int8 applies (export the float model for "
                         "float16 or dynamic files)")
    quantize = ["int8"] if given.quantize is None else list(given.quantize)
    return replace(options, quantize=quantize,
                   int8_scheme=scheme if "onnx" in options.formats else options.int8_scheme,
                   min_agreement=max(float(options.min_agreement), QAT_MIN_AGREEMENT))


def job_qat_scheme(job: Any) -> str | None:
    """The scheme the job's model simulates (None for a float model), found once."""
    if "qat_scheme" not in job.shared:
        job.shared["qat_scheme"] = model_qat_scheme(job.source.model)
    return job.shared["qat_scheme"]


def qat_record(scheme: str) -> dict[str, Any]:
    """What the manifest says of the int8 ranges of a quantization-aware model's file."""
    return {"source": "qat", "scheme": scheme,
            "ranges": "learned in quantization-aware training (no calibration)"}


#: How a file is checked where onnxruntime's fused kernels would not compute what the
#: file says (the QDQ pairs run as written: exact integer arithmetic).
EXACT_ARITHMETIC = "exact integer arithmetic (onnxruntime, QDQ pairs unfused)"


def qat_file_record(scheme: str, exact: bool = False) -> dict[str, Any]:
    """The ``qat`` entry of each file of a quantization-aware model: its scheme and the
    arithmetic it was checked with."""
    return {"scheme": scheme,
            "checked_with": EXACT_ARITHMETIC if exact else "the runtime's own kernels"}


def checked_exactly(artifact: dict[str, Any]) -> bool:
    """Whether a manifest entry of a quantization-aware model's file is run unfused."""
    qat = artifact.get("qat")
    return isinstance(qat, dict) and qat.get("checked_with") == EXACT_ARITHMETIC


def qat_manifest(scheme: str, options: Any) -> dict[str, Any]:
    """The manifest's ``qat`` section: what the files of a quantization-aware model are and
    what they were judged against."""
    return {"scheme": scheme, "reference": "model.keras, the quantization-aware model",
            "min_agreement": float(options.min_agreement),
            "judged_by": "top-1 agreement with the quantization-aware model (every file)",
            "float32_files": "compute what the quantization-aware model computes: its "
                             "rounding kept as quantize/dequantize pairs in float arithmetic",
            "calibration": None}


def refuse_qat_dir(directory: str | Path, flag: str, why: str) -> None:
    """UsageError naming ``flag`` where ``directory`` holds a quantization-aware model's
    export (whose files all round as the model does: there is no float file to compare
    with, and nothing to calibrate)."""
    from keras_resnet.export.manifest import read_manifest

    qat = read_manifest(Path(directory)).get("qat")
    if isinstance(qat, dict):
        raise UsageError(f"{flag}: {directory} holds the export of a quantization-aware model "
                         f"({qat.get('scheme')}); {why}")


# --- TFLite -------------------------------------------------------------------------------

def convert_tflite_qat(saved_model_dir: Path, scheme: str, io_type: str = "int8") -> bytes:
    """Full-integer TFLite from a quantization-aware SavedModel, its ranges the learned ones
    (``io_type`` input and output); 7-bit weights are put back on their grid."""
    import tensorflow as tf

    from keras_resnet.quantization import QAT_SCHEMES

    converter = tf.lite.TFLiteConverter.from_saved_model(
        str(saved_model_dir), signature_keys=["serving_default"])
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    converter.inference_input_type = tf.as_dtype(io_type)
    converter.inference_output_type = tf.as_dtype(io_type)
    flatbuffer = converter.convert()
    qmax = QAT_SCHEMES[scheme].weight_qmax
    return flatbuffer if qmax == 127 else regrid_tflite_weights(flatbuffer, qmax)


def regrid_tflite_weights(flatbuffer: bytes, qmax: int) -> bytes:
    """The converter stores weights as ``round(w / s)`` with ``s = max|w| / 127`` per
    channel. Weights trained on a ``qmax`` grid (``w = k * max|w| / qmax``) are recovered
    exactly as ``k = round(q * qmax / 127)`` (the converter's rounding error, at most half
    a step, shrinks to ``qmax / 254`` of one): stored back with scale ``s * 127 / qmax``,
    the bias's int32 scale following."""
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(flatbuffer))
    weighted = {schema.BuiltinOperator.CONV_2D, schema.BuiltinOperator.FULLY_CONNECTED,
                schema.BuiltinOperator.DEPTHWISE_CONV_2D}
    ratio = qmax / 127.0
    done: set[tuple[int, int]] = set()
    for index, graph in enumerate(model.subgraphs):
        for op in graph.operators:
            code = model.operatorCodes[op.opcodeIndex]
            if max(code.builtinCode, code.deprecatedBuiltinCode) not in weighted:
                continue
            for slot, dtype in ((1, np.int8), (2, np.int32)):
                if len(op.inputs) > slot and op.inputs[slot] >= 0 and (
                        index, op.inputs[slot]) not in done:
                    done.add((index, op.inputs[slot]))
                    _regrid_tensor(model, graph.tensors[op.inputs[slot]], dtype, ratio, qmax)
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def _regrid_tensor(model: Any, tensor: Any, dtype: type, ratio: float, qmax: int) -> None:
    """One weight (int8) or bias (int32) tensor moved from the 127-level grid to ``qmax``."""
    quantization = tensor.quantization
    if quantization is None or quantization.scale is None or len(quantization.scale) == 0:
        return
    buffer = model.buffers[tensor.buffer]
    values = np.frombuffer(bytes(bytearray(buffer.data)), dtype).astype(np.float64)
    limit = qmax if dtype is np.int8 else INT32_LIMIT
    regridded = np.clip(np.round(values * ratio), -limit, limit).astype(dtype)
    buffer.data = np.frombuffer(regridded.tobytes(), np.uint8)
    quantization.scale = (np.asarray(quantization.scale, np.float64) / ratio).astype(
        np.float32).tolist()


# --- ONNX ---------------------------------------------------------------------------------

def write_onnx_qat_int8(float_path: Path, out_path: Path, scheme: str,
                        metadata: dict[str, str]) -> dict[str, Any]:
    """The int8 ONNX file of a quantization-aware model from its float32 file (the tf2onnx
    conversion, whose activations already pass through the learned Q/DQ pairs)."""
    import onnx
    from keras_resnet.export.onnx_int8 import INT8_SCHEMES

    from keras_resnet.quantization import QAT_SCHEMES

    proto = onnx.load(str(float_path))
    facts = int8_weight_pass(proto, QAT_SCHEMES[scheme].weight_qmax,
                             INT8_SCHEMES[scheme].quantize_bias)
    if QAT_SCHEMES[scheme].symmetric_activations:
        facts["activation_pairs_made_int8"] = symmetric_int8_activations(proto)
    onnx.helper.set_model_props(proto, {**metadata, "int8_scheme": scheme,
                                        "int8_source": "qat"})
    onnx.checker.check_model(proto)
    onnx.save(proto, str(out_path))
    return facts


def int8_weight_pass(proto: Any, qmax: int, quantize_bias: bool) -> dict[str, Any]:
    """Every float weight initializer of a Conv/MatMul/Gemm -> an int8 tensor per output
    channel (scale ``max|w| / qmax``: exact, the weights already lie on that grid) behind a
    DequantizeLinear; with ``quantize_bias``, each bias whose input scale is known (from a
    DequantizeLinear) -> int32 with scale ``input scale * weight scale``."""
    graph = proto.graph
    initializers = {t.name: t for t in graph.initializer}
    producers = {out: node for node in graph.node for out in node.output}
    consumers: dict[str, list[Any]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    inserted: dict[int, list[Any]] = {}
    facts = {"int8_weights": 0, "int32_biases": 0, "max_weight_rounding": 0.0}
    for node in list(graph.node):
        if node.op_type not in WEIGHTED_OPS or len(node.input) < 2 \
                or node.input[1] not in initializers:
            continue
        axis = _weight_axis(node)
        weight, scale, rounding = _int8_weight(initializers[node.input[1]], qmax, axis)
        facts["max_weight_rounding"] = max(facts["max_weight_rounding"], rounding)
        added = [_dequantize(graph, f"{node.name}_weight", weight, scale, np.int8, axis)]
        node.input[1] = added[0].output[0]
        facts["int8_weights"] += 1
        input_scale = _input_scale(node.input[0], producers, initializers)
        bias = _bias_of(node, consumers, initializers) if quantize_bias else None
        if bias is not None and input_scale is not None:
            owner, slot = bias
            made = _int32_bias(graph, f"{node.name}_bias", initializers[owner.input[slot]],
                               input_scale * scale)
            if made is not None:
                added.append(made)
                owner.input[slot] = made.output[0]
                facts["int32_biases"] += 1
        inserted[id(node)] = added
    _insert_before(graph, inserted)
    _drop_unused_initializers(graph)
    return facts


def _weight_axis(node: Any) -> int:
    """The output-channel axis of a weight: 0 for Conv (OIHW), 1 for MatMul ([in, out]),
    by ``transB`` for Gemm."""
    from onnx import helper

    if node.op_type == "Conv":
        return 0
    if node.op_type == "Gemm":
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        return 0 if attrs.get("transB", 0) else 1
    return 1


def _int8_weight(tensor: Any, qmax: int, axis: int) -> tuple[np.ndarray, np.ndarray, float]:
    """int8 values and per-channel scales of a weight, and its largest distance from the
    grid in steps (0 for a weight trained on it)."""
    from onnx import numpy_helper

    w = numpy_helper.to_array(tensor).astype(np.float32)
    reduce = tuple(i for i in range(w.ndim) if i != axis)
    scale = np.maximum(np.max(np.abs(w), axis=reduce) / np.float32(qmax), np.float32(_TINY))
    shape = [1] * w.ndim
    shape[axis] = -1
    steps = w / scale.reshape(shape)
    q = np.clip(np.round(steps), -qmax, qmax)
    return q.astype(np.int8), scale.astype(np.float32), float(np.max(np.abs(steps - q)))


def _dequantize(graph: Any, stem: str, values: np.ndarray, scale: np.ndarray, dtype: type,
                axis: int) -> Any:
    """A DequantizeLinear of a new integer initializer (explicit zero points 0, per
    ``axis``) whose output is ``{stem}_dequantized``."""
    from onnx import helper, numpy_helper

    graph.initializer.extend([
        numpy_helper.from_array(values.astype(dtype), f"{stem}_quantized"),
        numpy_helper.from_array(scale.astype(np.float32), f"{stem}_scale"),
        numpy_helper.from_array(np.zeros(scale.shape, dtype), f"{stem}_zero_point")])
    return helper.make_node("DequantizeLinear", [f"{stem}_quantized", f"{stem}_scale",
                                                 f"{stem}_zero_point"],
                            [f"{stem}_dequantized"], name=f"{stem}_dequantize", axis=axis)


def _input_scale(name: str, producers: dict[str, Any], initializers: dict[str, Any]
                 ) -> np.float32 | None:
    """The per-tensor scale of the DequantizeLinear ``name`` comes from (through ops that
    keep the grid), else None."""
    from onnx import numpy_helper

    node = producers.get(name)
    while node is not None and node.op_type in _GRID_KEEPING:
        node = producers.get(node.input[0])
    if node is None or node.op_type != "DequantizeLinear" or node.input[1] not in initializers:
        return None
    scale = numpy_helper.to_array(initializers[node.input[1]])
    return np.float32(scale) if scale.size == 1 else None


def _bias_of(node: Any, consumers: dict[str, list[Any]], initializers: dict[str, Any]
             ) -> tuple[Any, int] | None:
    """Where ``node``'s bias is: its third input (Conv, Gemm), or the constant operand of
    the one Add after a MatMul; as (node holding it, input slot)."""
    if node.op_type in ("Conv", "Gemm"):
        ok = len(node.input) > 2 and node.input[2] in initializers
        return (node, 2) if ok else None
    users = consumers.get(node.output[0], [])
    if len(users) != 1 or users[0].op_type != "Add":
        return None
    add = users[0]
    for slot, name in enumerate(add.input):
        if name != node.output[0] and name in initializers and \
                len(initializers[name].dims) == 1:
            return add, slot
    return None


def _int32_bias(graph: Any, stem: str, tensor: Any, scale: np.ndarray) -> Any | None:
    """The bias as int32 behind a DequantizeLinear (axis 0), or None where it would not
    fit int32."""
    from onnx import numpy_helper

    b = numpy_helper.to_array(tensor).astype(np.float64)
    scale = np.asarray(scale, np.float32).reshape(-1)
    if b.ndim != 1 or b.shape[0] != scale.shape[0] or np.any(scale <= 0):
        return None
    q = np.round(b / scale.astype(np.float64))
    if np.max(np.abs(q)) > INT32_LIMIT:
        return None
    return _dequantize(graph, stem, q, scale, np.int32, 0)


def _insert_before(graph: Any, inserted: dict[int, list[Any]]) -> None:
    """Put each node's new DequantizeLinear nodes right before it (topological order)."""
    nodes = []
    for node in graph.node:
        nodes.extend(inserted.get(id(node), []))
        nodes.append(node)
    del graph.node[:]
    graph.node.extend(nodes)


def _drop_unused_initializers(graph: Any) -> None:
    used = {name for node in graph.node for name in node.input}
    kept = [t for t in graph.initializer if t.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept)


def symmetric_int8_activations(proto: Any) -> int:
    """Every uint8 activation Q/DQ pair with zero point 128 (a symmetric range) -> int8
    with zero point 0: the same values (``q - 128``), in TensorRT's form. Returns how many
    nodes changed; ValueError where a zero point is not 128 (an asymmetric range)."""
    import onnx
    from onnx import numpy_helper

    graph = proto.graph
    initializers = {t.name: t for t in graph.initializer}
    qdq = [n for n in graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    zero_points = {n.input[2] for n in qdq if len(n.input) > 2}
    changed = 0
    for name in sorted(zero_points):
        tensor = initializers.get(name)
        if tensor is None or tensor.data_type != onnx.TensorProto.UINT8:
            continue
        zero = numpy_helper.to_array(tensor)
        if np.any(zero != 128):
            raise ValueError(f"tensor {name!r}: uint8 zero point {int(zero.flat[0])} is not "
                             "128: the range is not symmetric")
        tensor.CopyFrom(numpy_helper.from_array(np.zeros(zero.shape, np.int8), name))
        changed += sum(1 for n in qdq if len(n.input) > 2 and n.input[2] == name)
    kept = [v for v in graph.value_info
            if v.type.tensor_type.elem_type != onnx.TensorProto.UINT8]
    del graph.value_info[:]
    graph.value_info.extend(kept)
    return changed
