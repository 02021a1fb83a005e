"""OpenVINO IR files (``model.xml`` + ``model.bin`` in one directory per precision): the
``openvino`` row's converter, runner and option check, and an OpenVINO runner for ONNX files.

The IR is converted by ``openvino.convert_model`` from the export's NHWC ONNX file (the
``onnx`` row's, or a hidden one when that row is not written or is NCHW): the IR then holds
the same graph, and int8 holds the same calibration, as the ONNX files. float16 is the
float32 graph saved with float16 weights (decompressed to the inference precision when
compiled); int8 is the QDQ int8 ONNX file converted (its QuantizeLinear/DequantizeLinear
pairs become FakeQuantize nodes that OpenVINO's CPU plugin runs with int8 kernels).

OpenVINO computes float models in bfloat16 by default on CPUs with native bfloat16
(``avx512_bf16`` or AMX), in float32 elsewhere; ``--ov-precision`` pins it. Like the other
runner modules, this file imports nothing of its package at load time (keras_resnet/tools/emulation.py
loads runner files alone).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from keras_resnet.export.formats import ExportJob, Written

#: ``--ov-precision`` words -> OpenVINO's INFERENCE_PRECISION_HINT (None: the plugin's).
OV_PRECISIONS = {"auto": None, "f32": "f32", "bf16": "bf16"}
#: CPU flags with which OpenVINO's CPU plugin computes bfloat16 natively.
BF16_FLAGS = ("avx512_bf16", "amx_bf16")
XML_NAME, BIN_NAME = "model.xml", "model.bin"


def bf16_supported() -> bool:
    """True when OpenVINO's CPU plugin lists BF16 among this CPU's capabilities."""
    import openvino as ov

    return "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


def check_options(options: Any) -> None:
    """The ``openvino`` row's option check: ``--ov-precision`` is a known word, and bf16
    only on a CPU that computes it (refused naming the flag it lacks)."""
    from keras_resnet.export.errors import UsageError

    from keras_resnet.cpu import cpu_info

    value = options.ov_precision
    if value not in OV_PRECISIONS:
        raise UsageError(f"--ov-precision must be one of {', '.join(OV_PRECISIONS)} "
                         f"(got {value!r})")
    if value == "bf16" and not bf16_supported():
        info = cpu_info()
        raise UsageError(f"--ov-precision bf16: this CPU ({info['model']}) has no "
                         f"{' or '.join(BF16_FLAGS)} flag, so OpenVINO cannot compute in "
                         "bfloat16; use f32 or auto")


class OpenVinoRunner:
    """Runs an IR (``model.xml`` in ``path``) or an ONNX file on OpenVINO's CPU plugin with
    ``threads`` threads and one stream. ``inference_precision`` is what the plugin computes
    float layers in (``f32`` or ``bf16``), read back from the compiled model."""

    def __init__(self, path: Path, threads: int | None = None, precision: str = "auto",
                 nchw: bool = False) -> None:
        import openvino as ov

        path = Path(path)
        model = path / XML_NAME if path.is_dir() else path
        config: dict[str, Any] = {"INFERENCE_NUM_THREADS": threads or 2, "NUM_STREAMS": 1,
                                  "PERFORMANCE_HINT": "LATENCY"}
        if OV_PRECISIONS.get(precision):
            config["INFERENCE_PRECISION_HINT"] = OV_PRECISIONS[precision]
        self._compiled = ov.Core().compile_model(str(model), "CPU", config)
        self._request = self._compiled.create_infer_request()
        hint = self._compiled.get_property("INFERENCE_PRECISION_HINT")
        self.inference_precision = hint.to_string()  # "f32" or "bf16"
        self._nchw = nchw

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, np.float32)
        if self._nchw:
            x = x.transpose(0, 3, 1, 2)
        return np.array(self._request.infer([np.ascontiguousarray(x)])[0], np.float32)


def open_runner(path: Path, threads: int | None, artifact: dict[str, Any]) -> OpenVinoRunner:
    """The runner of the ``openvino`` row, at the inference precision the export asked for."""
    return OpenVinoRunner(path, threads, str(artifact.get("ov_precision", "auto")))


def open_onnx_runner(path: Path, threads: int | None, artifact: dict[str, Any]
                     ) -> OpenVinoRunner:
    """An ONNX file of the ``onnx`` row run by OpenVINO (the plugin's default precision)."""
    return OpenVinoRunner(path, threads, "auto", nchw=artifact.get("layout") == "NCHW")


def _source_onnx(job: ExportJob, precision: str) -> Path:
    """The NHWC ONNX file the IR of ``precision`` converts from: the ``onnx`` row's own
    (written before this row), else one written once into a hidden scratch directory."""
    from keras_resnet.export.formats import FORMATS

    onnx_row, options = FORMATS["onnx"], job.options
    wanted = "int8" if precision == "int8" else "float32"
    if "onnx" in options.formats and not options.nchw:
        return job.staging / onnx_row.file_name(wanted)
    scratch = job.staging / ".onnx_for_openvino"
    path = scratch / onnx_row.file_name(wanted)
    if not path.exists():
        from keras_resnet.export.onnx_export import convert_onnx, onnx_metadata

        float_path = scratch / onnx_row.file_name("float32")
        if not float_path.exists():
            scratch.mkdir()
            job.scratch.append(scratch)
            convert_onnx(job.source.model, float_path, job.source.input_shape, options.opset,
                         False, onnx_metadata(job.source), options.batch)
        from keras_resnet.export.qat_int8 import job_qat_scheme, write_onnx_qat_int8

        if wanted == "int8" and job_qat_scheme(job) is not None:
            write_onnx_qat_int8(float_path, path, job_qat_scheme(job),
                                onnx_metadata(job.source))
        elif wanted == "int8":
            from keras_resnet.export.onnx_int8 import quantize_onnx_int8

            quantize_onnx_int8(float_path, path, job.calib, onnx_metadata(job.source),
                               options.int8_scheme, options.calibration_method, options.batch)
    return path


def write_artifact(job: ExportJob, precision: str) -> Written:
    """The converter of the ``openvino`` row: ``openvino.convert_model`` of the NHWC ONNX
    file, saved with float16 weights for float16."""
    import openvino as ov
    from keras_resnet.export.formats import FORMATS, Written

    rel = FORMATS["openvino"].file_name(precision)
    source = _source_onnx(job, precision)
    model = ov.convert_model(str(source))
    (job.staging / rel).mkdir()
    ov.save_model(model, str(job.staging / rel / XML_NAME),
                  compress_to_fp16=precision == "float16")
    requested = job.options.ov_precision
    compiled = OpenVinoRunner(job.staging / rel, job.options.threads, requested)
    info: dict[str, Any] = {
        "layout": "NHWC", "files": [XML_NAME, BIN_NAME],
        "converted_from": "int8 QDQ ONNX" if precision == "int8" else "float32 ONNX",
        "ov_precision": requested, "inference_precision": compiled.inference_precision,
        "input": {"name": model.inputs[0].get_any_name(),
                  "shape": _dims(model.inputs[0].get_partial_shape())},
        "output": {"shape": _dims(model.outputs[0].get_partial_shape())}}
    from keras_resnet.export.qat_int8 import job_qat_scheme, qat_file_record, qat_record

    qat = job_qat_scheme(job)
    if qat is not None:
        info["qat"] = qat_file_record(qat)
    if precision == "int8":
        info["int8"] = {**({"scheme": job.options.int8_scheme,
                            "calibration_method": job.options.calibration_method}
                           if qat is None else qat_record(qat)),
                        "fake_quantize_nodes": sum(op.get_type_name() == "FakeQuantize"
                                                   for op in model.get_ops())}
    return Written(rel, info)


def _dims(shape: Any) -> list[int | None]:
    """A partial shape as a list, None for a dynamic dimension."""
    return [d.get_length() if d.is_static else None for d in shape]
