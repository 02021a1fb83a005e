"""TFLite conversion (builtin ops only) from the SavedModel, and a LiteRT runner; the
``tflite`` row's converter and runner. The runtime part imports nothing of this package at
load time: keras_resnet/tools/emulation.py loads this file alone on emulated CPUs."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from keras_resnet.export.formats import ExportJob, Written



def convert_tflite(saved_model_dir: Path, precision: str,
                   representative: np.ndarray | None = None, io_type: str = "int8") -> bytes:
    """Convert the SavedModel to a flatbuffer of builtin ops only.

    ``int8`` is full-integer (``io_type`` int8 or uint8 input and output) calibrated on
    ``representative`` (model-ready inputs, fed in the SavedModel's batch);
    ``dynamic_int8`` quantizes the weights only; ``float16`` stores float16 weights.
    """
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_saved_model(
        str(saved_model_dir), signature_keys=["serving_default"])
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if precision == "float16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif precision == "dynamic_int8":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    elif precision == "int8":
        if representative is None or len(representative) == 0:
            raise ValueError("int8 conversion needs a representative dataset")
        samples = np.asarray(representative, np.float32)
        loaded = tf.saved_model.load(str(saved_model_dir)).signatures["serving_default"]
        batch = next(iter(loaded.structured_input_signature[1].values())).shape[0] or 1

        def dataset():  # whole batches of the signature's (static) batch
            for start in range(0, len(samples) - batch + 1, batch):
                yield [samples[start:start + batch]]

        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = dataset
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.as_dtype(io_type)
        converter.inference_output_type = tf.as_dtype(io_type)
    elif precision != "float32":
        raise ValueError(f"unknown TFLite precision {precision!r}")
    return converter.convert()


def _interpreter(path: Path, threads: int | None) -> Any:
    from ai_edge_litert.interpreter import Interpreter

    return Interpreter(model_path=str(path), num_threads=threads or 2)


def describe_tflite(path: Path) -> dict[str, Any]:
    """Input/output tensors (with int8 quantization parameters) and the op list."""
    interpreter = _interpreter(path, 1)
    inp = interpreter.get_input_details()[0]
    out = interpreter.get_output_details()[0]

    def tensor(detail: dict[str, Any]) -> dict[str, Any]:
        scale, zero = detail["quantization"]
        info = {"name": detail["name"], "shape": [int(d) for d in detail["shape_signature"]],
                "dtype": np.dtype(detail["dtype"]).name}
        if scale:
            info["quantization"] = {"scale": float(scale), "zero_point": int(zero)}
        return info

    ops = sorted({op["op_name"] for op in interpreter._get_ops_details()})
    return {"input": tensor(inp), "output": tensor(out), "ops": ops}


class TFLiteRunner:
    """Runs a .tflite file with ``ai_edge_litert.interpreter.Interpreter``; quantizes int8
    input and dequantizes int8 output, so callers always see float32."""

    def __init__(self, path: Path, threads: int | None = None) -> None:
        self._interpreter = _interpreter(path, threads)
        self._input = self._interpreter.get_input_details()[0]
        self._output = self._interpreter.get_output_details()[0]
        self._batch = -1

    def __call__(self, x: np.ndarray) -> np.ndarray:
        it = self._interpreter
        if x.shape[0] != self._batch:
            it.resize_tensor_input(self._input["index"], list(x.shape))
            it.allocate_tensors()
            self._input = it.get_input_details()[0]
            self._output = it.get_output_details()[0]
            self._batch = x.shape[0]
        dtype = self._input["dtype"]
        if dtype != np.float32:
            scale, zero = self._input["quantization"]
            info = np.iinfo(dtype)
            x = np.clip(np.round(x / scale + zero), info.min, info.max).astype(dtype)
        it.set_tensor(self._input["index"], np.ascontiguousarray(x))
        it.invoke()
        y = it.get_tensor(self._output["index"])
        if y.dtype != np.float32:
            scale, zero = self._output["quantization"]
            y = (y.astype(np.float32) - zero) * scale
        return y


#: Tensor types of an integer-only TFLite file (int32 holds biases and shapes).
INTEGER_TYPES = ("int8", "uint8", "int16", "int32", "int64")


def npu_check(path: Path) -> dict[str, Any]:
    """What NPU compilers (the Edge TPU's among them) require, read from the file: every
    tensor's shape static (no -1) and every tensor of every op an integer type."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    interpreter = Interpreter(model_path=str(path), experimental_op_resolver_type=(
        OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES))
    tensors = {t["index"]: t for t in interpreter.get_tensor_details()}
    problems = [f"tensor {t['name']!r} has a dynamic shape {[int(d) for d in t['shape_signature']]}"
                for t in tensors.values() if any(d < 0 for d in t["shape_signature"])]
    for op in interpreter._get_ops_details():
        for index in (*op["inputs"], *op["outputs"]):
            tensor = tensors.get(int(index))
            if tensor is not None and np.dtype(tensor["dtype"]).name not in INTEGER_TYPES:
                problems.append(f"op {op['op_name']} (#{op['index']}): tensor "
                                f"{tensor['name']!r} is {np.dtype(tensor['dtype']).name}")
    return {"passed": not problems, "problems": problems,
            "rules": "every tensor shape static; every op's tensors integer"}


def write_artifact(job: ExportJob, precision: str) -> Written:
    """The converter of the ``tflite`` row: one precision converted from the job's
    SavedModel; the int8 file is calibrated on the job's inputs (and checked for NPUs when the
    target is ``npu``)."""
    from keras_resnet.export.formats import FORMATS, Written
    from keras_resnet.export.saved_model import saved_model_dir

    rel = FORMATS["tflite"].file_name(precision)
    path = job.staging / rel
    saved_model, _ = saved_model_dir(job)
    source = job.staging / saved_model

    def convert() -> bytes:
        return convert_tflite(source, precision, job.calib if precision == "int8" else None,
                              job.options.int8_io)

    from keras_resnet.export.qat_int8 import job_qat_scheme

    qat = job_qat_scheme(job)
    if qat is not None:
        return _write_qat(job, precision, source, rel, qat)
    if precision != "int8":
        path.write_bytes(convert())
        return Written(rel, {"layout": "NHWC", **describe_tflite(path)})
    from keras_resnet.export.keep_float import tflite_int8_with_fallback

    fallback = tflite_int8_with_fallback(
        job, source, job.staging / FORMATS["tflite"].file_name("float32"), path, convert)
    info = {"layout": "NHWC", **describe_tflite(path),
            **({"keep_float": fallback} if fallback else {})}
    from keras_resnet.export.targets import requires_check

    wanted = requires_check(job.options.target, f"tflite/{precision}", "npu")
    return Written(rel, info, {"npu": npu_check(path)} if wanted else None)


def open_runner(path: Path, threads: int | None, artifact: dict[str, Any]) -> TFLiteRunner:
    """The runner of the ``tflite`` row."""
    return TFLiteRunner(path, threads)


def _write_qat(job: ExportJob, precision: str, saved_model: Path, rel: str,
               scheme: str) -> Written:
    """A quantization-aware model's file: float32 keeps its rounding as QUANTIZE/DEQUANTIZE
    ops; int8 takes the learned ranges (:mod:`.qat_int8`), with no calibration."""
    from keras_resnet.export.formats import Written
    from keras_resnet.export.qat_int8 import convert_tflite_qat, qat_file_record, qat_record
    from keras_resnet.export.targets import requires_check

    path = job.staging / rel
    if precision == "int8":
        path.write_bytes(convert_tflite_qat(saved_model, scheme, job.options.int8_io))
    else:
        path.write_bytes(convert_tflite(saved_model, precision))
    info = {"layout": "NHWC", **describe_tflite(path), "qat": qat_file_record(scheme),
            **({"int8": qat_record(scheme)} if precision == "int8" else {})}
    wanted = requires_check(job.options.target, f"tflite/{precision}", "npu")
    return Written(rel, info, {"npu": npu_check(path)} if wanted else None)
