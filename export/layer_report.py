"""Per-layer quantization report: how far each quantized layer of an int8 file has drifted
from the float model, on real images, named by the Keras layer it came from.

For every weighted layer the int8 file computes in integers (ONNX ``Conv``/``MatMul``/
``Gemm`` with dequantized weights; TFLite ``CONV_2D``/``DEPTHWISE_CONV_2D``/
``FULLY_CONNECTED``) the report compares the layer's output, as the next layer receives it
(dequantized), with the same tensor of the float32 file of the same format, which the
export verified against the Keras model to 1e-4. The error is the accumulated one (every
quantized layer before it contributes), as onnxruntime's ``qdq_loss_debug`` measures it
(``xmodel_err``): signal-to-quantization-noise ratio ``SQNR = 10 log10(sum f^2 / sum
(f - q)^2)`` in dB and the relative RMS error ``sqrt(sum (f - q)^2 / sum f^2)``.
Rows are sorted worst (lowest SQNR) first.
"""

from __future__ import annotations

import math
import re
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

#: ONNX ops whose weights are quantized and that ``--keep-float`` can keep in float.
ONNX_WEIGHTED_OPS = ("Conv", "MatMul", "Gemm")
#: The same for TFLite builtin ops.
TFLITE_WEIGHTED_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")
#: Default number of evaluation images the report runs.
DEFAULT_REPORT_IMAGES = 64
_SUFFIX = re.compile(r"_\d+$")


def keras_layer_classes(model: Any) -> dict[str, str]:
    """Every layer name of ``model`` (nested models included) -> its class name."""
    names: dict[str, str] = {}
    for layer in model.layers:
        names[layer.name] = type(layer).__name__
        if hasattr(layer, "layers"):
            names.update(keras_layer_classes(layer))
    return names


def keras_layer_of(tensor_name: str, layers: dict[str, str]) -> str | None:
    """The Keras layer a converter's tensor or node name comes from, preferring one with
    weights. tf2onnx and the TFLite converter name tensors by TensorFlow scope
    (``outer_1/resnet8_1/conv1_conv_1/convolution``; fused ops join names with ``;``): each
    scope part is tried as is, then without the ``_N`` suffix Keras 3 adds to call scopes."""
    found = []
    for part in re.split(r"[/;:]", tensor_name):
        for candidate in (part, _SUFFIX.sub("", part)):
            if candidate in layers:
                found.append(candidate)
                break
    weighted = [n for n in found if layers[n] in ("Conv2D", "DepthwiseConv2D", "Dense")]
    return (weighted or found or [None])[0]


class _ErrorSums:
    """Running sums of squared signal and squared error per layer, over batches."""

    def __init__(self) -> None:
        self.signal: dict[str, float] = {}
        self.noise: dict[str, float] = {}

    def add(self, key: str, reference: np.ndarray, quantized: np.ndarray) -> None:
        reference = np.asarray(reference, np.float64)
        error = reference - np.asarray(quantized, np.float64)
        self.signal[key] = self.signal.get(key, 0.0) + float(np.sum(reference ** 2))
        self.noise[key] = self.noise.get(key, 0.0) + float(np.sum(error ** 2))

    def figures(self, key: str) -> dict[str, float]:
        signal, noise = self.signal[key], self.noise[key]
        rel = math.sqrt(noise / signal) if signal > 0 else float("inf")
        sqnr = 10 * math.log10(signal / noise) if noise > 0 and signal > 0 else float("inf")
        return {"sqnr_db": round(sqnr, 2) if math.isfinite(sqnr) else 999.0,
                "rel_rms": round(rel, 5) if math.isfinite(rel) else 999.0}


def _rows(sums: _ErrorSums, entries: list[dict[str, str]]) -> list[dict[str, Any]]:
    """One row per layer: its output's error, its input's SQNR and the dB the layer itself
    lost (input SQNR - output SQNR), sorted by that loss, largest first."""
    rows = []
    for entry in entries:
        if entry["tensor"] not in sums.signal:
            continue
        row = {**entry, **sums.figures(entry["tensor"])}
        if entry["input"] in sums.signal:
            row["input_sqnr_db"] = sums.figures(entry["input"])["sqnr_db"]
            row["lost_db"] = round(row["input_sqnr_db"] - row["sqnr_db"], 2)
        rows.append(row)
    return sorted(rows, key=lambda r: (-r.get("lost_db", 0.0), r["sqnr_db"]))


def onnx_weighted_nodes(path: Path, layers: dict[str, str], quantized_only: bool = True
                        ) -> list[dict[str, str]]:
    """Each Conv/MatMul/Gemm node of an ONNX file (with ``quantized_only``, those whose
    weights are dequantized int8): its name, op, Keras layer (read from the node's weight
    input, where tf2onnx keeps the layer's scope), input and output tensors (without the
    quantizer's suffixes) and the weighted layer that feeds it, if any."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    producers = {out: node for node in graph.node for out in node.output}
    nodes = []
    for node in graph.node:
        weight = producers.get(node.input[1]) if len(node.input) > 1 else None
        if node.op_type in ONNX_WEIGHTED_OPS and (quantized_only is False or (
                weight is not None and weight.op_type == "DequantizeLinear")):
            layer = keras_layer_of(node.input[1], layers) or keras_layer_of(node.name, layers)
            feeder = _feeding_node(producers, node.input[0], _ONNX_PASS_THROUGH,
                                   lambda n: n.op_type, lambda n: n.input[0])
            nodes.append({"node": node.name, "op": node.op_type, "layer": layer or node.name,
                          "input": _onnx_base(node.input[0]), "tensor": _onnx_base(node.output[0]),
                          "fed_by": feeder.name if feeder is not None else ""})
    return _name_feeders(nodes)


#: Ops that pass a tensor on without mixing channels or tensors (walked through when
#: looking for the layer that feeds another).
_ONNX_PASS_THROUGH = ("Relu", "Clip", "Pad", "QuantizeLinear", "DequantizeLinear")
_TFLITE_PASS_THROUGH = ("RELU", "RELU6", "PAD", "QUANTIZE", "DEQUANTIZE")


def _feeding_node(producers: dict[Any, Any], tensor: Any, through: tuple[str, ...],
                  op_of: Any, input_of: Any) -> Any:
    """The weighted node whose output reaches ``tensor`` through pass-through ops only."""
    node = producers.get(tensor)
    while node is not None and op_of(node) in through:
        node = producers.get(input_of(node))
    weighted = (*ONNX_WEIGHTED_OPS, *TFLITE_WEIGHTED_OPS)
    return node if node is not None and op_of(node) in weighted else None


def _onnx_base(name: str) -> str:
    """The float file's name of a tensor the quantizer renamed."""
    for suffix in ("_DequantizeLinear_Output", "_QuantizeLinear_Input"):
        name = name.removesuffix(suffix)
    return name


def onnx_layer_errors(float_path: Path, int8_path: Path, x: np.ndarray,
                      layers: dict[str, str], batch: int = 16) -> list[dict[str, Any]]:
    """Per weighted layer of the int8 ONNX file, its output's error against the float32
    file's (``x`` in the files' layout). Both files get every intermediate tensor as an
    output with onnxruntime's ``qdq_loss_debug.modify_model_output_intermediate_tensors``."""
    import onnxruntime as ort
    from onnxruntime.quantization.qdq_loss_debug import modify_model_output_intermediate_tensors

    entries = onnx_weighted_nodes(int8_path, layers)
    sums = _ErrorSums()
    with tempfile.TemporaryDirectory(prefix="layer-report-") as scratch:
        sessions = []
        for name, path in (("float", float_path), ("int8", int8_path)):
            augmented = Path(scratch) / f"{name}.onnx"
            modify_model_output_intermediate_tensors(str(path), str(augmented))
            options = ort.SessionOptions()
            options.intra_op_num_threads = 2
            sessions.append(ort.InferenceSession(str(augmented), options,
                                                 providers=["CPUExecutionProvider"]))
        for start in range(0, len(x), batch):
            chunk = np.ascontiguousarray(x[start:start + batch], np.float32)
            float_out, int8_out = (_named_outputs(s, chunk) for s in sessions)
            for base in {t for entry in entries for t in (entry["input"], entry["tensor"])}:
                seen = int8_out.get(base + "_DequantizeLinear_Output", int8_out.get(base))
                if base in float_out and seen is not None:
                    sums.add(base, float_out[base], seen)
    return _rows(sums, entries)


def _named_outputs(session: Any, x: np.ndarray) -> dict[str, np.ndarray]:
    """Every intermediate tensor the augmented file outputs (flattened), by its own name."""
    from onnxruntime.quantization import qdq_loss_debug

    postfix = qdq_loss_debug._TENSOR_SAVE_POSTFIX
    names = [o.name for o in session.get_outputs() if o.name.endswith(postfix)]
    values = session.run(names, {session.get_inputs()[0].name: x})
    return {name.removesuffix(postfix): v for name, v in zip(names, values, strict=True)}


def tflite_weighted_ops(path: Path, layers: dict[str, str], quantized_only: bool = True
                        ) -> list[dict[str, str]]:
    """Each conv/fully-connected op of a TFLite file (with ``quantized_only``, those with an
    integer output): op, input and output tensors, Keras layer and the weighted op that
    feeds it, if any (named by their output tensors)."""
    interpreter = _debug_interpreter(path)
    tensors = {t["index"]: t["name"] for t in interpreter.get_tensor_details()}
    dtypes = {t["index"]: t["dtype"] for t in interpreter.get_tensor_details()}
    details = interpreter._get_ops_details()
    producers = {int(out): op for op in details for out in op["outputs"]}
    ops = []
    for op in details:
        if op["op_name"] in TFLITE_WEIGHTED_OPS and (
                quantized_only is False or dtypes[int(op["outputs"][0])] != np.float32):
            name = tensors[int(op["outputs"][0])]
            feeder = _feeding_node(producers, int(op["inputs"][0]), _TFLITE_PASS_THROUGH,
                                   lambda o: o["op_name"], lambda o: int(o["inputs"][0]))
            ops.append({"node": name, "op": op["op_name"], "tensor": name,
                        "input": tensors[int(op["inputs"][0])],
                        "layer": keras_layer_of(name, layers) or name,
                        "fed_by": tensors[int(feeder["outputs"][0])] if feeder else ""})
    return _name_feeders(ops)


def _name_feeders(entries: list[dict[str, str]]) -> list[dict[str, str]]:
    """``fed_by`` as the Keras layer of the weighted node feeding each entry ("" if none)."""
    layer_of = {entry["node"]: entry["layer"] for entry in entries}
    return [{**entry, "fed_by": layer_of.get(entry["fed_by"], "")} for entry in entries]


def _debug_interpreter(path: Path) -> Any:
    """A LiteRT interpreter that keeps every intermediate tensor (no XNNPACK delegate,
    which would hide them)."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    return Interpreter(model_path=str(path), num_threads=2,
                       experimental_preserve_all_tensors=True,
                       experimental_op_resolver_type=(
                           OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES))


def tflite_layer_errors(float_path: Path, int8_path: Path, x: np.ndarray,
                        layers: dict[str, str], batch: int = 16) -> list[dict[str, Any]]:
    """Per conv/fully-connected op of the int8 TFLite file, its dequantized output's error
    against the same tensor (same name) of the float32 file."""
    entries = tflite_weighted_ops(int8_path, layers)
    interpreters = [_debug_interpreter(p) for p in (float_path, int8_path)]
    sums = _ErrorSums()
    for start in range(0, len(x), batch):
        chunk = np.asarray(x[start:start + batch], np.float32)
        float_out, int8_out = (_tflite_tensors(it, chunk) for it in interpreters)
        for name in {t for entry in entries for t in (entry["input"], entry["tensor"])}:
            if name in float_out and name in int8_out:
                sums.add(name, float_out[name], int8_out[name])
    return _rows(sums, entries)


def _tflite_tensors(interpreter: Any, x: np.ndarray) -> dict[str, np.ndarray]:
    """Run one batch; every float or dequantized intermediate tensor by name."""
    detail = interpreter.get_input_details()[0]
    interpreter.resize_tensor_input(detail["index"], list(x.shape))
    interpreter.allocate_tensors()
    detail = interpreter.get_input_details()[0]
    if detail["dtype"] != np.float32:
        scale, zero = detail["quantization"]
        info = np.iinfo(detail["dtype"])
        x = np.clip(np.round(x / scale + zero), info.min, info.max).astype(detail["dtype"])
    interpreter.set_tensor(detail["index"], np.ascontiguousarray(x))
    interpreter.invoke()
    out = {}
    for tensor in interpreter.get_tensor_details():
        try:
            value = interpreter.get_tensor(tensor["index"])
        except ValueError:  # a tensor with no data (weights folded away)
            continue
        if value.dtype == np.float32:
            out[tensor["name"]] = value
        elif tensor["quantization"][0] and value.dtype in (np.int8, np.uint8):
            scale, zero = tensor["quantization"]
            out[tensor["name"]] = (value.astype(np.float32) - zero) * scale
    return out


#: ``format`` -> the function measuring one int8 file against that format's float32 file.
_MEASURES = {"onnx": onnx_layer_errors, "tflite": tflite_layer_errors}


def layer_reports(directory: Path, artifacts: list[dict[str, Any]], x: np.ndarray,
                  layers: dict[str, str]) -> dict[str, dict[str, Any]]:
    """The report of every int8 artifact of ``artifacts`` (manifest entries in
    ``directory``) that has a float32 file of its format, run on the NHWC images ``x``;
    keyed ``format/precision``."""
    from keras_resnet.export.manifest import resolve_inside

    floats = {a["format"]: a for a in artifacts if a["precision"] == "float32"}
    reports = {}
    for artifact in artifacts:
        fmt = artifact["format"]
        if artifact["precision"] != "int8" or fmt not in _MEASURES or fmt not in floats:
            continue
        images = x.transpose(0, 3, 1, 2) if artifact.get("layout") == "NCHW" else x
        rows = _MEASURES[fmt](resolve_inside(directory, floats[fmt]["path"]),
                              resolve_inside(directory, artifact["path"]), images, layers)
        reports[f"{fmt}/int8"] = {"path": artifact["path"], "images": int(len(x)),
                                  "reference": floats[fmt]["path"], "layers": rows}
    return reports


def report_dir(directory: str | Path, images: int = DEFAULT_REPORT_IMAGES
               ) -> dict[str, dict[str, Any]]:
    """The per-layer report of every int8 file of an export directory, on the first
    ``images`` of the export's recorded evaluation images (``keras-resnet-verify DIR
    --layers``); a recorded ``folder:`` source lies outside DIR and is not read."""
    import keras
    from keras_resnet.export.errors import UsageError
    from keras_resnet.export.manifest import read_manifest, resolve_inside
    from keras_resnet.export.samples import load_samples
    from keras_resnet.export.verify import manifest_preprocess

    directory = Path(directory)
    manifest = read_manifest(directory)
    evaluation, spec = manifest.get("evaluation", {}), manifest["input"]
    source = evaluation.get("source")
    if (not isinstance(source, str) or source.startswith("folder:")
            or evaluation.get("in_memory")):
        raise UsageError(f"--layers runs the export's recorded evaluation images; {source!r} "
                         "is not a source verify reads (folders lie outside DIR; in-memory "
                         "images were not stored)")
    pixels, _ = load_samples(source, "test", int(evaluation.get("samples", images)),
                             tuple(spec["shape"][1:3]), int(evaluation.get("seed", 0)))
    x = manifest_preprocess(manifest)(pixels[:images])
    keras_path = resolve_inside(directory, manifest["reference"]["keras_model"]["path"])
    model = keras.saving.load_model(keras_path, compile=False, safe_mode=True)
    return layer_reports(directory, manifest["artifacts"], x, keras_layer_classes(model))


def format_reports(reports: dict[str, dict[str, Any]], top: int | None = None) -> str:
    """The reports as text tables, worst layer first."""
    from keras_resnet.console import text_table

    blocks = []
    for key, report in reports.items():
        rows = report["layers"][:top] if top else report["layers"]
        blocks.append(f"{key} ({report['path']}) against {report['reference']}, "
                      f"{report['images']} images, worst first:")
        blocks.append(text_table(
            ("layer", "op", "lost dB", "input SQNR dB", "output SQNR dB", "rel. RMS"),
            [(r["layer"], r["op"], f"{r.get('lost_db', float('nan')):.1f}",
              f"{r.get('input_sqnr_db', float('nan')):.1f}", f"{r['sqnr_db']:.1f}",
              f"{r['rel_rms']:.4f}") for r in rows]))
    return "\n".join(blocks) if blocks else "no int8 ONNX or TFLite file with a float32 twin"
