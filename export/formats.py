"""The one table of export formats (and of the precisions they can hold).

A row names everything the exporter knows about a format: its converter and its runtime
runner (``module:function``, ``.module`` being in this package, imported only when used so
that reading the table never starts TensorFlow), the precisions it can be written in, the
options it reads, its file names and an optional check of those options. ``export_model``, ``verify_dir``,
``bench_dir`` and the command line loop over the rows; adding a format is one module (a
converter and a runner) plus one row here.

A converter is ``convert(job, precision) -> Written``: it writes one file (or directory)
of ``job.staging`` named ``row.file_name(precision)``. A runner is ``open(path, threads,
artifact) -> callable`` taking NHWC float32 inputs and returning float32 outputs; a row
names its runner's runtime and any other runtimes that run its files (``keras-resnet-bench``
times every file in each).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from keras_resnet.export.errors import UsageError


@dataclass(frozen=True)
class Precision:
    """One precision an artifact can hold."""

    #: The ``--quantize`` word that asks for it; None: every format always writes it.
    quantize: str | None
    #: Judged by top-1 agreement with the Keras model (quantized weights) rather than by
    #: the largest output difference.
    by_agreement: bool
    #: Needs a calibration set (``--calibration``).
    calibrated: bool


PRECISIONS: dict[str, Precision] = {
    "float32": Precision(None, False, False),
    "float16": Precision("float16", False, False),
    "dynamic_int8": Precision("dynamic", True, False),
    "int8": Precision("int8", True, True),
}
#: ``--quantize`` word -> precision.
QUANTIZE_MODES = {p.quantize: name for name, p in PRECISIONS.items() if p.quantize}


@dataclass(frozen=True)
class ExportFormat:
    """One row of FORMATS."""

    name: str
    title: str
    #: Precisions it can be written in, float32 (always written) first.
    precisions: tuple[str, ...]
    #: ``ExportOptions`` fields that only the formats naming them read.
    options: tuple[str, ...]
    #: File name ending (a directory's, for formats written as one).
    suffix: str
    converter: str
    runner: str
    #: ``module:function(options)`` raising UsageError for option values it cannot take.
    check: str | None = None
    #: Name of the float32 file when it is not ``model_float32<suffix>``.
    float32_name: str | None = None
    #: The runtime its runner runs files in (``keras-resnet-bench`` names it).
    runtime: str = ""
    #: Other runtimes that run its files: (runtime, ``module:function`` runner) pairs.
    other_runtimes: tuple[tuple[str, str], ...] = ()

    def file_name(self, precision: str) -> str:
        """The artifact's path inside the export directory."""
        if precision not in self.precisions:
            raise UsageError(f"{self.name} has no precision {precision!r}; it has "
                             f"{', '.join(self.precisions)}")
        if precision == "float32" and self.float32_name:
            return self.float32_name
        return f"model_{precision}{self.suffix}"

    def written(self, quantize: list[str]) -> list[str]:
        """The precisions an export with ``--quantize`` writes: float32, then each asked
        precision this format has, in the order asked."""
        asked = [QUANTIZE_MODES[m] for m in dict.fromkeys(quantize)]
        return ["float32", *[p for p in asked if p in self.precisions and p != "float32"]]

    def skipped(self, quantize: list[str]) -> list[str]:
        """The ``--quantize`` words this format cannot write."""
        return [m for m in quantize if QUANTIZE_MODES[m] not in self.precisions]

    def convert(self, job: ExportJob, precision: str) -> Written:
        return _load(self.converter)(job, precision)

    def open_runner(self, path: Path, threads: int | None, artifact: dict[str, Any]) -> Any:
        if artifact.get("precision") not in self.precisions:
            raise UsageError(f"unknown {self.name} precision {artifact.get('precision')!r} "
                             f"in manifest; {self.name} has {', '.join(self.precisions)}")
        return _load(self.runner)(path, threads, artifact)

    def runtimes(self) -> list[str]:
        """Every runtime that runs its files, its own first."""
        return [self.runtime or self.name, *(name for name, _ in self.other_runtimes)]

    def open_in(self, runtime: str, path: Path, threads: int | None,
                artifact: dict[str, Any]) -> Any:
        """The runner of ``runtime`` (one of :meth:`runtimes`) for the file at ``path``."""
        if runtime == self.runtimes()[0]:
            return self.open_runner(path, threads, artifact)
        return _load(dict(self.other_runtimes)[runtime])(path, threads, artifact)

    def check_options(self, options: Any) -> None:
        if self.check:
            _load(self.check)(options)


FORMATS: dict[str, ExportFormat] = {
    row.name: row for row in (
        ExportFormat("saved_model", "SavedModel", ("float32",), (), "",
                     ".saved_model:write_artifact", ".saved_model:open_runner",
                     float32_name="saved_model", runtime="tensorflow"),
        ExportFormat("tflite", "TFLite", ("float32", "float16", "dynamic_int8", "int8"),
                     ("int8_io",), ".tflite", ".tflite:write_artifact", ".tflite:open_runner",
                     runtime="litert"),
        ExportFormat("onnx", "ONNX", ("float32", "float16", "int8"),
                     ("opset", "nchw", "int8_scheme", "calibration_method"), ".onnx",
                     ".onnx_export:write_artifact", ".onnx_export:open_runner",
                     check=".onnx_export:check_options", float32_name="model.onnx",
                     runtime="onnxruntime",
                     other_runtimes=(("openvino", ".openvino_ir:open_onnx_runner"),)),
        # After onnx: its IR files are converted from the ONNX files.
        ExportFormat("openvino", "OpenVINO IR", ("float32", "float16", "int8"),
                     ("ov_precision",), "_openvino", ".openvino_ir:write_artifact",
                     ".openvino_ir:open_runner", check=".openvino_ir:check_options",
                     runtime="openvino"),
    )
}


def quantizing_formats() -> list[str]:
    """The formats that write more than float32."""
    return [name for name, row in FORMATS.items() if len(row.precisions) > 1]


def format_row(name: str) -> ExportFormat:
    """The row of ``name``; UsageError naming the known formats otherwise."""
    if name not in FORMATS:
        raise UsageError(f"unknown format {name!r}; choose from {', '.join(FORMATS)}")
    return FORMATS[name]


def quantize_help() -> str:
    """What ``--quantize`` takes, and which format gets which precision."""
    per_format = "; ".join(
        f"{name}: {', '.join(PRECISIONS[p].quantize for p in row.precisions[1:])}"
        for name, row in FORMATS.items()
        if len(row.precisions) > 1)
    return f"{','.join(QUANTIZE_MODES)} ({per_format})"


class Written(NamedTuple):
    """What a converter wrote: its path in the staging directory, the manifest fields that
    describe it, and the file checks it ran (name -> result) or None."""

    path: str
    info: dict[str, Any]
    checks: dict[str, dict[str, Any]] | None = None


@dataclass
class ExportJob:
    """What every converter of one export reads: the model source, the staging directory,
    the options and the model-ready calibration inputs (int8 only)."""

    source: Any
    staging: Path
    options: Any
    calib: np.ndarray | None
    #: Intermediate results converters share, by name (e.g. the SavedModel TFLite reads).
    shared: dict[str, Any] = field(default_factory=dict)
    #: Intermediate paths removed once every artifact is written.
    scratch: list[Path] = field(default_factory=list)


def _load(reference: str) -> Any:
    """``module:name`` (``.module`` inside this package) imported on first use."""
    module, _, name = reference.partition(":")
    return getattr(importlib.import_module(module, __package__), name)
