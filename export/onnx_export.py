"""ONNX export through tf2onnx, float16 conversion, and an onnxruntime runner (int8
quantization: :mod:`export.onnx_int8`); the ``onnx`` row's converter, runner and option
check. It imports nothing of this package at load time: keras_resnet/tools/emulation.py loads this
file alone on emulated CPUs."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from keras_resnet.export.formats import ExportJob, Written


INPUT_NAME = "input"
MIN_OPSET = 13  # per-channel QuantizeLinear/DequantizeLinear need opset 13


def max_opset() -> int:
    """The highest opset both tf2onnx and onnxruntime support."""
    from tf2onnx import constants

    return int(max(constants.OPSET_TO_IR_VERSION))


def convert_onnx(model: Any, path: Path, input_shape: tuple[int, int, int], opset: int,
                 nchw: bool, metadata: dict[str, str], batch: int | None = None
                 ) -> dict[str, Any]:
    """Convert a Keras model with tf2onnx (dynamic batch unless ``batch``; NCHW input when
    ``nchw``)."""
    import onnx
    import tensorflow as tf
    import tf2onnx

    spec = (tf.TensorSpec((batch, *input_shape), tf.float32, name=INPUT_NAME),)
    proto, _ = tf2onnx.convert.from_keras(
        model, input_signature=spec, opset=opset,
        inputs_as_nchw=[INPUT_NAME] if nchw else None)
    renumber_names(proto.graph)
    onnx.helper.set_model_props(proto, metadata)  # replaces metadata_props
    onnx.save(proto, str(path))
    return describe_onnx(path)


_NUMBERED = re.compile(r"__(\d+)(?=(:\d+)?$)")


def renumber_names(graph: Any) -> None:
    """tf2onnx suffixes the names it makes (nodes, tensors, symbolic dimensions) with a
    process-wide counter (``name__N``): number them 1, 2, ... in the counter's order, so the same model gives the same file however
    many conversions the process made before."""
    infos = (*graph.value_info, *graph.input, *graph.output)
    fields = [(node, "name") for node in graph.node]
    fields += [(v, "name") for v in (*graph.initializer, *infos)]
    fields += [(dim, "dim_param") for v in infos if v.type.HasField("tensor_type")
               for dim in v.type.tensor_type.shape.dim if dim.HasField("dim_param")]
    lists = [node.input for node in graph.node] + [node.output for node in graph.node]
    names = [getattr(owner, attr) for owner, attr in fields] + [n for lst in lists for n in lst]
    numbers = sorted({int(m[1]) for name in names for m in [_NUMBERED.search(name)] if m})
    rank = {number: index + 1 for index, number in enumerate(numbers)}

    def rename(name: str) -> str:
        return _NUMBERED.sub(lambda m: f"__{rank[int(m[1])]}", name)

    for owner, attr in fields:
        setattr(owner, attr, rename(getattr(owner, attr)))
    for lst in lists:
        lst[:] = [rename(name) for name in lst]


def convert_onnx_float16(float_path: Path, out_path: Path) -> dict[str, Any]:
    """The float32 file with float16 weights and arithmetic, float32 input and output kept
    (onnxruntime's converter, as GPUs and TensorRT's fp16 mode take it)."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    proto = convert_float_to_float16(onnx.load(str(float_path)), keep_io_types=True)
    onnx.save(proto, str(out_path))
    return describe_onnx(out_path)


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


class OnnxRunner:
    """Runs an ONNX file with ``onnxruntime.InferenceSession`` on the CPU; takes NHWC input
    and transposes it when the model was exported with NCHW input.

    ``unfused`` turns graph optimisation off, so each QuantizeLinear/DequantizeLinear pair
    runs as written around a float operator: the exact integer arithmetic that int32
    accumulation computes. A file meant for TensorRT is checked that way, because
    onnxruntime's fused x86 kernels for int8 activations add products into saturating
    16-bit sums on CPUs without VNNI, which TensorRT never does.
    """

    def __init__(self, path: Path, threads: int | None = None, nchw: bool = False,
                 unfused: bool = False) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or 2
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        if unfused:
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        self.arithmetic = "reference (QDQ unfused)" if unfused else "onnxruntime kernels"
        self._session = ort.InferenceSession(str(path), options,
                                             providers=["CPUExecutionProvider"])
        self._input = self._session.get_inputs()[0].name
        self._nchw = nchw

    def __call__(self, x: np.ndarray) -> np.ndarray:
        if self._nchw:
            x = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
        return self._session.run(None, {self._input: np.asarray(x, np.float32)})[0]


def check_options(options: Any) -> None:
    """The ``onnx`` row's option check: ``--opset`` within what tf2onnx and the int8
    quantizer support."""
    from keras_resnet.export.errors import UsageError

    if not MIN_OPSET <= options.opset <= max_opset():
        raise UsageError(f"--opset {options.opset} out of range; tf2onnx and the int8 "
                         f"quantizer support {MIN_OPSET}..{max_opset()}")


def onnx_metadata(source: Any) -> dict[str, str]:
    """``metadata_props`` of the ONNX files: labels, preprocessing and input spec."""
    h, w, c = source.input_shape
    return {"model_name": source.name,
            "labels": json.dumps(source.labels) if source.labels is not None else "null",
            "preprocessing": source.preprocessing,
            "preprocessing_in_model": str(source.preprocessing_in_model).lower(),
            "input_shape_nhwc": json.dumps([None, h, w, c]),
            "input_contract": json.dumps(source.contract.to_json()),
            "producer": "keras-resnet export"}


def write_artifact(job: ExportJob, precision: str) -> Written:
    """The converter of the ``onnx`` row: float32 from tf2onnx, float16 and int8 from the
    float32 file (written first)."""
    from keras_resnet.export.formats import FORMATS, Written

    row, options = FORMATS["onnx"], job.options
    rel = row.file_name(precision)
    path, float_path = job.staging / rel, job.staging / row.file_name("float32")
    layout = {"layout": "NCHW" if options.nchw else "NHWC"}
    if precision == "float32":
        info = convert_onnx(job.source.model, path, job.source.input_shape, options.opset,
                            options.nchw, onnx_metadata(job.source), options.batch)
        from keras_resnet.export.qat_int8 import job_qat_scheme, qat_file_record

        qat = job_qat_scheme(job)  # its Q/DQ pairs, which fused kernels would not keep
        return Written(rel, {**layout, **info, **(
            {"qat": qat_file_record(qat, exact=True)} if qat else {})})
    if precision == "float16":
        return Written(rel, {**layout, **convert_onnx_float16(float_path, path)})
    from keras_resnet.export.qat_int8 import job_qat_scheme

    if job_qat_scheme(job) is not None:
        return _write_qat_int8(job, float_path, path, rel, layout)
    from keras_resnet.export.keep_float import onnx_int8_with_fallback
    from keras_resnet.export.onnx_int8 import (
        INT8_SCHEMES,
        int8_structure,
        quantize_onnx_int8,
        tensorrt_check,
    )

    calib = job.calib.transpose(0, 3, 1, 2) if options.nchw else job.calib
    fallback = onnx_int8_with_fallback(job, float_path, path, lambda excluded: (
        quantize_onnx_int8(float_path, path, calib, onnx_metadata(job.source),
                           options.int8_scheme, options.calibration_method, options.batch,
                           excluded)))
    int8 = {"scheme": options.int8_scheme, "calibration_method": options.calibration_method,
            **int8_structure(path), **({"keep_float": fallback} if fallback else {})}
    if INT8_SCHEMES[options.int8_scheme].reference_arithmetic:
        int8["checked_with"] = "exact integer arithmetic (onnxruntime, QDQ pairs unfused)"
    from keras_resnet.export.targets import requires_check

    wanted = requires_check(options.target, "onnx/int8", "tensorrt")
    return Written(rel, {**layout, **describe_onnx(path), "int8": int8},
                   {"tensorrt": tensorrt_check(path)} if wanted else None)


def open_runner(path: Path, threads: int | None, artifact: dict[str, Any]) -> OnnxRunner:
    """The runner of the ``onnx`` row (NCHW files are fed transposed inputs; an int8 file
    whose scheme is meant for another runtime runs with exact integer arithmetic)."""
    from keras_resnet.export.onnx_int8 import INT8_SCHEMES
    from keras_resnet.export.qat_int8 import checked_exactly

    scheme = INT8_SCHEMES.get((artifact.get("int8") or {}).get("scheme", ""))
    return OnnxRunner(path, threads, nchw=artifact.get("layout") == "NCHW",
                      unfused=bool(scheme and scheme.reference_arithmetic)
                      or checked_exactly(artifact))


def _write_qat_int8(job: ExportJob, float_path: Path, path: Path, rel: str,
                    layout: dict[str, str]) -> Written:
    """The int8 file of a quantization-aware model: its float32 file's weights made int8,
    the learned Q/DQ pairs kept (:mod:`.qat_int8`); checked with exact arithmetic where
    its scheme is meant for another runtime or onnxruntime's x86 kernels could saturate."""
    from keras_resnet.export.formats import Written
    from keras_resnet.export.onnx_int8 import INT8_SCHEMES, int8_structure, tensorrt_check
    from keras_resnet.export.qat_int8 import (
        job_qat_scheme,
        qat_file_record,
        qat_record,
        write_onnx_qat_int8,
    )
    from keras_resnet.export.targets import requires_check

    scheme = job_qat_scheme(job)
    facts = write_onnx_qat_int8(float_path, path, scheme, onnx_metadata(job.source))
    structure = int8_structure(path)
    exact = INT8_SCHEMES[scheme].reference_arithmetic or not structure["saturation_free"]
    int8 = {**qat_record(scheme), **facts, **structure}
    wanted = requires_check(job.options.target, "onnx/int8", "tensorrt")
    return Written(rel, {**layout, **describe_onnx(path), "int8": int8,
                         "qat": qat_file_record(scheme, exact)},
                   {"tensorrt": tensorrt_check(path)} if wanted else None)
