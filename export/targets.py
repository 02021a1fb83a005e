"""What each deployment target asks of an export (``keras-resnet-export --target``): the
formats, precisions, int8 scheme and batch it sets where the user gave none, and the file
checks that must pass. Flags the user gives still override; combinations a target cannot
serve are refused before any work."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from keras_resnet.export.errors import UsageError
from keras_resnet.export.formats import FORMATS
from keras_resnet.export.onnx_int8 import CALIBRATION_METHODS, DEFAULT_INT8_SCHEME, INT8_SCHEMES

MAX_BATCH = 1024
INT8_IO_TYPES = ("int8", "uint8")


@dataclass(frozen=True)
class Target:
    """One row of TARGETS."""

    #: The formats it writes; None: every row of the table of formats.
    formats: tuple[str, ...] | None
    quantize: tuple[str, ...]
    int8_scheme: str
    batch: int | None
    #: (artifact ``format/precision``, check name) pairs that must pass.
    checks: tuple[tuple[str, str], ...]
    summary: str


TARGETS: dict[str, Target] = {
    "cpu": Target(None, (), DEFAULT_INT8_SCHEME, None, (),
                  f"every format ({', '.join(row.title for row in FORMATS.values())}) for "
                  "x86 and ARM CPUs (the default)"),
    "tensorrt": Target(("onnx",), ("float16", "int8"), "s8s8-sym", None,
                       (("onnx/int8", "tensorrt"),),
                       "ONNX float32, float16 and int8 with symmetric Q/DQ (zero points 0) "
                       "for TensorRT on Jetson and DRIVE"),
    "gpu": Target(("onnx",), ("float16",), DEFAULT_INT8_SCHEME, None, (),
                  "ONNX float32 and float16 (float32 input and output)"),
    "npu": Target(("tflite",), ("int8",), DEFAULT_INT8_SCHEME, 1, (("tflite/int8", "npu"),),
                  "full-integer TFLite, static batch 1, builtin integer ops (Edge TPU, NPUs)"),
}


def requires_check(target: str, artifact: str, check: str) -> bool:
    """Whether ``target`` requires file check ``check`` of ``artifact`` (``format/precision``):
    a converter runs a check only then, so a manifest never lists another target's checks."""
    return (artifact, check) in TARGETS[target].checks


def apply_target(options: Any) -> Any:
    """``options`` with every field the user left as None taken from its target's row."""
    if options.target not in TARGETS:
        raise UsageError(f"unknown --target {options.target!r}; choose from "
                         f"{', '.join(TARGETS)}")
    row = TARGETS[options.target]
    batch = options.batch if options.batch is not None else (1 if options.static else row.batch)
    return replace(
        options,
        formats=list(row.formats or FORMATS) if options.formats is None else options.formats,
        quantize=list(row.quantize) if options.quantize is None else options.quantize,
        int8_scheme=row.int8_scheme if options.int8_scheme is None else options.int8_scheme,
        batch=batch)


def check_target(options: Any) -> None:
    """Refuse what the target, batch, int8 input type and calibration method cannot do."""
    row, name = TARGETS[options.target], options.target
    if options.int8_scheme not in INT8_SCHEMES:
        raise UsageError(f"unknown --onnx-int8-scheme {options.int8_scheme!r}; choose from "
                         f"{', '.join(INT8_SCHEMES)}")
    for artifact, check in row.checks:
        fmt, precision = artifact.split("/")
        if fmt not in options.formats:
            raise UsageError(f"--target {name} writes {fmt} files; --formats "
                             f"{','.join(options.formats)} cannot serve it")
        if precision == "int8" and "int8" not in options.quantize:
            raise UsageError(f"--target {name} needs --quantize int8 ({check} check)")
    if name == "tensorrt" and not INT8_SCHEMES[options.int8_scheme].symmetric_activations:
        raise UsageError("--target tensorrt needs zero points 0: --onnx-int8-scheme s8s8-sym "
                         f"(got {options.int8_scheme})")
    if row.formats is not None and not set(row.formats) & set(options.formats):
        raise UsageError(f"--target {name} writes "
                         f"{' or '.join(FORMATS[f].title for f in row.formats)} files; "
                         f"--formats {','.join(options.formats)} cannot serve it")
    if options.batch is not None and not 1 <= options.batch <= MAX_BATCH:
        raise UsageError(f"--batch must be in 1..{MAX_BATCH} (got {options.batch})")
    if name == "npu" and options.batch is None:
        raise UsageError("--target npu needs a static batch (--batch N or --static)")
    if options.int8_io not in INT8_IO_TYPES:
        raise UsageError(f"--int8-io must be one of {', '.join(INT8_IO_TYPES)} "
                         f"(got {options.int8_io!r})")
    if options.int8_io != "int8" and not ("tflite" in options.formats
                                          and "int8" in options.quantize):
        raise UsageError("--int8-io applies to the TFLite int8 file: add --formats tflite "
                         "and --quantize int8")
    if options.calibration_method not in CALIBRATION_METHODS:
        raise UsageError(f"--calibration-method must be one of {', '.join(CALIBRATION_METHODS)}"
                         f" (got {options.calibration_method!r})")
    if (options.batch and "int8" in options.quantize and options.samples is not None
            and options.samples < options.batch):
        raise UsageError(f"--samples {options.samples} is less than --batch {options.batch}: "
                         "int8 calibration needs at least one whole batch")
