"""Float fallback (``--keep-float LAYER,...|auto``): named Keras layers stay in float in the
int8 ONNX and TFLite files, everything else is int8.

ONNX: the layer's nodes (its Conv/MatMul/Gemm with the folded batch norm, and the Relu/Clip
that follows it) are onnxruntime's ``nodes_to_exclude``. TFLite: the layer's fused op is a
denylisted node of the MLIR quantizer, through LiteRT's public selective-quantization route
(``tf.lite.experimental.QuantizationDebugger`` with ``QuantizationDebugOptions(
denylisted_nodes=...)``); such a file takes and gives float32 (only a full-integer file has
int8 input and output). ``auto`` quantizes everything, then, while the file agrees with the
Keras model on fewer than ``--min-agreement`` of the calibration images, keeps float the
next layer of the per-layer report (most dB lost first) together with the conv feeding it,
if any (a float layer fed a rounded int8 input wins little back).
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from keras_resnet.export.errors import UsageError

AUTO = "auto"


def check_keep_float_options(options: Any) -> None:
    """Before any work: ``--keep-float`` needs an int8 file that may hold float ops."""
    if not options.keep_float:
        return
    if options.target == "npu":
        raise UsageError("--keep-float cannot be used with --target npu: NPUs run "
                         "full-integer files only, and a layer kept in float is not integer")
    if "int8" not in options.quantize or not {"onnx", "tflite"} & set(options.formats):
        raise UsageError("--keep-float acts on int8 files: add --quantize int8 (with the onnx "
                         "or tflite format)")
    if AUTO in options.keep_float and len(options.keep_float) > 1:
        raise UsageError("--keep-float takes either 'auto' or a list of layer names, not both")


def check_keep_float_names(names: list[str] | None, model: Any) -> None:
    """Every named layer exists in the Keras model (nested models included) and has weights
    to quantize; an unknown name is one line naming the close matches."""
    from keras_resnet.export.layer_report import keras_layer_classes

    if not names or names == [AUTO]:
        return
    layers = keras_layer_classes(model)
    weighted = [n for n, kind in layers.items()
                if kind in ("Conv2D", "DepthwiseConv2D", "Dense")]
    for name in names:
        if name in weighted:
            continue
        close = difflib.get_close_matches(name, weighted, n=3, cutoff=0.6)
        hint = f"close matches: {', '.join(close)}" if close else \
            f"layers with weights: {', '.join(weighted[:6])}, ..."
        what = "has no weights to quantize" if name in layers else "is not a layer of the model"
        raise UsageError(f"--keep-float {name!r} {what}; {hint}")


def onnx_nodes_of(float_path: Path, names: list[str], layers: dict[str, str]) -> list[str]:
    """The float ONNX file's nodes of the named Keras layers: each weighted node, the
    Relu/Clip and bias Add that consume its output."""
    import onnx
    from keras_resnet.export.layer_report import onnx_weighted_nodes

    graph = onnx.load(str(float_path), load_external_data=False).graph
    wanted = [entry for entry in onnx_weighted_nodes(float_path, layers, quantized_only=False)
              if entry["layer"] in names]
    nodes = [entry["node"] for entry in wanted]
    outputs = {entry["tensor"] for entry in wanted}
    for node in graph.node:
        follows = node.input and node.input[0] in outputs
        if follows and (node.op_type in ("Relu", "Clip")
                        or (node.op_type == "Add" and _is_bias(node, graph))):
            nodes.append(node.name)
    return nodes


def _is_bias(node: Any, graph: Any) -> bool:
    """An Add whose second input is a constant (a Dense layer's bias)."""
    return len(node.input) > 1 and node.input[1] in {t.name for t in graph.initializer}


def tflite_nodes_of(float_path: Path, names: list[str], layers: dict[str, str]) -> list[str]:
    """The float TFLite file's output tensor names of the named layers' (fused) ops: the
    names the MLIR quantizer's ``denylisted_nodes`` takes."""
    from keras_resnet.export.layer_report import tflite_weighted_ops

    return [entry["tensor"] for entry in tflite_weighted_ops(float_path, layers, False)
            if entry["layer"] in names]


def convert_tflite_keep_float(saved_model_dir: Path, representative: np.ndarray,
                              denylisted_nodes: list[str]) -> bytes:
    """The int8 TFLite file with ``denylisted_nodes`` (output tensor names) left in float,
    calibrated on ``representative``; float32 input and output."""
    import tensorflow as tf

    samples = np.asarray(representative, np.float32)
    loaded = tf.saved_model.load(str(saved_model_dir)).signatures["serving_default"]
    batch = next(iter(loaded.structured_input_signature[1].values())).shape[0] or 1

    def dataset():
        for start in range(0, len(samples) - batch + 1, batch):
            yield [samples[start:start + batch]]

    converter = tf.lite.TFLiteConverter.from_saved_model(
        str(saved_model_dir), signature_keys=["serving_default"])
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = dataset
    options = tf.lite.experimental.QuantizationDebugOptions(
        denylisted_nodes=list(denylisted_nodes), fully_quantize=True)
    debugger = tf.lite.experimental.QuantizationDebugger(
        converter=converter, debug_dataset=dataset, debug_options=options)
    return debugger.get_nondebug_quantized_model()


def choose_and_write(write: Callable[[list[str]], None], run_file: Callable[[], Any],
                     report: Callable[[], list[dict[str, Any]]], keras_model: Any,
                     images: np.ndarray, requested: list[str] | None,
                     min_agreement: float) -> dict[str, Any] | None:
    """Write the int8 file keeping ``requested`` layers float (``['auto']``: the fewest worst
    layers reaching ``min_agreement`` on ``images``; when none do, the fewest that did best);
    returns the manifest record of the choice, None when nothing was asked. ``write(layers)``
    writes the file, ``run_file()`` opens a runner of it, ``report()`` is the per-layer
    report of the all-int8 file."""
    from keras_resnet.export.bench import median_latency_ms
    from keras_resnet.export.verify import keras_predict, run_batched

    if not requested:
        write([])
        return None
    reference = np.argmax(keras_predict(keras_model, images), axis=1)

    def measured() -> tuple[float, float]:
        runner = run_file()
        agreement = float(np.mean(np.argmax(run_batched(runner, images), 1) == reference))
        return agreement, median_latency_ms(runner, images[:1], runs=7, warmup=2)

    write([])
    agreement, int8_ms = measured()
    record = {"requested": requested, "all_int8": {"agreement": agreement,
                                                    "latency_ms": round(int8_ms, 3)}}
    kept = [] if requested == [AUTO] else list(requested)
    if requested == [AUTO]:
        rows = report() if agreement < min_agreement else []
        record["report"] = [{k: row[k] for k in ("layer", "op", "lost_db", "sqnr_db", "fed_by")
                             if k in row} for row in rows]
        best = (agreement, [])
        for row in rows:
            if agreement >= min_agreement:
                break
            kept += [n for n in dict.fromkeys((row["layer"], row.get("fed_by"))) if n
                     and n not in kept]
            write(list(kept))
            agreement, _ = measured()
            if agreement > best[0]:
                best = (agreement, list(kept))
        record["reached"] = agreement >= min_agreement
        if not record["reached"]:  # the fewest layers that did best
            agreement, kept = best
            if not kept and rows:
                write([])
    if kept:
        write(list(kept))
        agreement, kept_ms = measured()
        record.update(layers=kept, agreement=agreement, latency_ms=round(kept_ms, 3),
                      latency_cost_ms=round(kept_ms - int8_ms, 3))
    else:
        record.update(layers=[], agreement=agreement)
    record["images"] = int(len(images))
    return record


def _runner(open_file: Callable[[], Any], batch: int | None) -> Callable[[], Any]:
    """``open_file`` wrapped to feed a static-batch file whole batches."""
    from keras_resnet.export.verify import StaticBatch

    return (lambda: StaticBatch(open_file(), batch)) if batch else open_file


def onnx_int8_with_fallback(job: Any, float_path: Path, path: Path,
                            quantize: Callable[[list[str]], None]) -> dict[str, Any] | None:
    """The int8 ONNX file of an export, keeping ``job.options.keep_float`` layers float;
    ``quantize(nodes_to_exclude)`` writes it. Returns the manifest record (or None)."""
    from keras_resnet.export.layer_report import keras_layer_classes, onnx_layer_errors
    from keras_resnet.export.onnx_export import OnnxRunner

    options, layers = job.options, keras_layer_classes(job.source.model)
    images = job.calib.transpose(0, 3, 1, 2) if options.nchw else job.calib
    return choose_and_write(
        lambda kept: quantize(onnx_nodes_of(float_path, kept, layers)),
        _runner(lambda: OnnxRunner(path, options.threads, nchw=options.nchw), options.batch),
        lambda: onnx_layer_errors(float_path, path, images[:64], layers),
        job.source.model, job.calib, options.keep_float, options.min_agreement)


def tflite_int8_with_fallback(job: Any, saved_model: Path, float_path: Path, path: Path,
                              write_int8: Callable[[], bytes]) -> dict[str, Any] | None:
    """The int8 TFLite file of an export, keeping ``job.options.keep_float`` layers float;
    ``write_int8()`` gives the all-int8 file's bytes. Returns the manifest record (or None)."""
    from keras_resnet.export.layer_report import keras_layer_classes, tflite_layer_errors
    from keras_resnet.export.tflite import TFLiteRunner

    options, layers = job.options, keras_layer_classes(job.source.model)

    def write(kept: list[str]) -> None:
        nodes = tflite_nodes_of(float_path, kept, layers)
        path.write_bytes(convert_tflite_keep_float(saved_model, job.calib, nodes) if kept
                         else write_int8())

    return choose_and_write(
        write, _runner(lambda: TFLiteRunner(path, options.threads), options.batch),
        lambda: tflite_layer_errors(float_path, path, job.calib[:64], layers),
        job.source.model, job.calib, options.keep_float, options.min_agreement)
