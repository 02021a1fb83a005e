"""Console scripts: ``keras-resnet-export``, ``keras-resnet-verify``, ``keras-resnet-bench``.

Bad input ends with one ``error: ...`` line on stderr and exit code 2; a failed
verification with exit code 1.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import warnings
from collections.abc import Callable, Sequence
from typing import Any

from keras_resnet.export.api import DEFAULT_SAMPLES, ExportOptions
from keras_resnet.export.errors import VerificationFailed
from keras_resnet.export.formats import FORMATS, quantize_help
from keras_resnet.export.onnx_int8 import CALIBRATION_METHODS, DEFAULT_INT8_SCHEME, INT8_SCHEMES
from keras_resnet.export.openvino_ir import OV_PRECISIONS
from keras_resnet.export.targets import INT8_IO_TYPES, TARGETS

from keras_resnet.console import (
    Parser,
    native_stderr_silenced,
    require_extra,
    run_command,
    text_table,
)


def _quiet_runtimes() -> None:
    """Keep TensorFlow, absl and tf2onnx chatter off stderr (before they are imported)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    warnings.filterwarnings("ignore")
    for name in ("tensorflow", "tf2onnx", "absl", "onnxruntime", "keras"):
        logging.getLogger(name).setLevel(logging.ERROR)


def _csv(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]


def _run(body: Callable[[], int], command: str) -> int:
    """Run a command body, mapping errors to one stderr line and an exit code."""
    _quiet_runtimes()
    previous = signal.getsignal(signal.SIGTERM)
    if previous in (signal.SIG_DFL, None):  # let a killed export clean up its staging dir
        signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    def silenced() -> int:
        require_extra(command, "export", "tensorflow", "onnxruntime", "tf2onnx", "openvino")
        with native_stderr_silenced():
            return body()

    try:
        return run_command(silenced)
    finally:
        if previous in (signal.SIG_DFL, None):
            signal.signal(signal.SIGTERM, signal.SIG_DFL)


def export_parser() -> argparse.ArgumentParser:
    """The argument parser of ``keras-resnet-export`` (defaults: ``ExportOptions``'s)."""
    d = ExportOptions()
    p = Parser(prog="keras-resnet-export",
                description="Export a zoo model or a .keras file to "
                            f"{', '.join(row.title for row in FORMATS.values())}, verifying "
                            "every artifact in its own runtime.")
    p.add_argument("model", metavar="MODEL", help="zoo name (resnet50, resnet20, ...) or a "
                   ".keras file (labels.json next to it is read)")
    p.add_argument("-o", "--output", required=True, metavar="DIR", help="output directory")
    p.add_argument("--target", choices=list(TARGETS), default=d.target,
                   help="what the files are for: " + "; ".join(
                       f"{name}: {row.summary}" for name, row in TARGETS.items()))
    p.add_argument("--formats", type=_csv, default=None,
                   help=f"comma list of {','.join(FORMATS)} (default: the target's)")
    p.add_argument("--quantize", type=_csv, default=None,
                   help=f"extra precisions: {quantize_help()} (default: the target's)")
    p.add_argument("--calibration", metavar="SOURCE", help="int8 calibration set (its "
                   "training split): digits | tfds:NAME | folder:PATH | synthetic, or a .npy "
                   "file of model-ready images (.npz: x, and labels y)")
    p.add_argument("--data", metavar="SOURCE", help="evaluation set (its test split) for "
                   "parity, int8 agreement and test top-1, or a .npy/.npz file (default: the "
                   "calibration set, else synthetic)")
    p.add_argument("--samples", type=int, default=d.samples, help="limit the evaluation "
                   "images (default: the whole test split) and the calibration images "
                   f"(default {DEFAULT_SAMPLES})")
    p.add_argument("--seed", type=int, default=d.seed, help="seed of a zoo model's random "
                   f"weights (without --weights) and of the drawn images (default {d.seed})")
    p.add_argument("--labels", metavar="FILE", help="class names: JSON list or text lines")
    p.add_argument("--force", action="store_true", help="replace a non-empty output directory")
    p.add_argument("--threads", type=int, default=d.threads,
                   help=f"threads for the runtimes (default {d.threads})")
    p.add_argument("--json", action="store_true", help="print the manifest instead of a table")
    _add_contract_arguments(p.add_argument_group("input contract"), d)
    _add_format_arguments(p.add_argument_group("format options"), d)
    _add_int8_lever_arguments(p.add_argument_group("when int8 loses accuracy"))
    _add_zoo_arguments(p.add_argument_group("zoo models"))
    return p


def _add_contract_arguments(p: argparse._ArgumentGroup, d: ExportOptions) -> None:
    """What the model takes, where the model does not record it (export/contract.py)."""
    p.add_argument("--input-range", metavar="0,1|0,255", help="the pixel range the model "
                   "takes, where the model does not record it (labels.json, a leading "
                   "Rescaling/Normalization layer)")
    p.add_argument("--mean", metavar="M[,M,M]", help="with --input-range: the model takes "
                   "(x - mean) / std, mean in units of that range")
    p.add_argument("--std", metavar="S[,S,S]", help="with --input-range and --mean")
    p.add_argument("--channel-order", choices=["RGB", "BGR"], default=d.channel_order,
                   help="with --input-range: channel order the model takes (default RGB)")


def _add_format_arguments(p: argparse._ArgumentGroup, d: ExportOptions) -> None:
    """Options that only some formats read (the table in export/formats.py)."""
    p.add_argument("--opset", type=int, default=d.opset, help=f"ONNX opset (default {d.opset})")
    p.add_argument("--nchw", action="store_true", help="ONNX input in NCHW layout")
    p.add_argument("--onnx-int8-scheme", choices=list(INT8_SCHEMES), default=None,
                   help=f"int8 ONNX types (default {DEFAULT_INT8_SCHEME}: cannot saturate on "
                        "any CPU; s8s8-sym for --target tensorrt; see docs/export.md)")
    p.add_argument("--calibration-method", choices=list(CALIBRATION_METHODS),
                   default=d.calibration_method,
                   help=f"int8 ONNX calibration (default {d.calibration_method})")
    p.add_argument("--batch", type=int, default=None,
                   help="static batch N in every file (default: dynamic; npu: 1)")
    p.add_argument("--static", action="store_true", help="static shapes: --batch 1 unless "
                   "--batch is given")
    p.add_argument("--int8-io", choices=list(INT8_IO_TYPES), default=d.int8_io,
                   help=f"input and output type of the TFLite int8 file (default {d.int8_io})")
    p.add_argument("--ov-precision", choices=list(OV_PRECISIONS), default=d.ov_precision,
                   help="what OpenVINO computes float IR files in (default auto: bf16 on "
                        "CPUs with avx512_bf16 or AMX, f32 elsewhere)")
    p.add_argument("--min-agreement", type=float, default=d.min_agreement,
                   help=f"least top-1 agreement of int8 models with Keras (default "
                        f"{d.min_agreement})")


def _add_int8_lever_arguments(p: argparse._ArgumentGroup) -> None:
    """The per-layer report and float fallback (export/layer_report.py, keep_float.py)."""
    p.add_argument("--keep-float", type=_csv, default=None, metavar="LAYER,...|auto",
                   help="keep these Keras layers (e.g. conv4_block6_2_conv) in float in the "
                        "int8 ONNX and TFLite files; auto: the fewest worst layers of the "
                        "per-layer report that reach --min-agreement (not with --target npu)")
    p.add_argument("--layer-report", action="store_true", help="record in the manifest each "
                   "quantized layer's error in every int8 file (see keras-resnet-verify --layers)")


def _add_zoo_arguments(zoo: argparse._ArgumentGroup) -> None:
    """The options that build a zoo model (refused for a ``.keras`` file)."""
    zoo.add_argument("--weights", help="None (default), 'imagenet', timm/NAME "
                     "(keras_resnet.list_weights()) or a .safetensors, .keras, .weights.h5 or "
                     ".h5 file; the manifest records its SHA-256")
    zoo.add_argument("--classes", type=int, help="number of classes")
    zoo.add_argument("--input-size", type=int, help="square input size in pixels")
    zoo.add_argument("--no-top", action="store_true", help="export the backbone (include_top="
                     "False)")
    zoo.add_argument("--pooling", choices=["avg", "max"], help="pooling with --no-top")
    zoo.add_argument("--classifier-activation", choices=["softmax", "none"],
                     help="classifier activation (default softmax)")
    zoo.add_argument("--shortcut", choices=["A", "B", "C"], help="shortcut type")
    zoo.add_argument("--variant", choices=["v1", "v1.5", "v2"], help="block variant")
    zoo.add_argument("--no-residual", action="store_true", help="the plain counterpart")


def _builder_options(args: argparse.Namespace) -> dict[str, Any]:
    options: dict[str, Any] = {}
    if args.no_top:
        options["include_top"] = False
    if args.pooling:
        options["pooling"] = args.pooling
    if args.classifier_activation:
        options["classifier_activation"] = (None if args.classifier_activation == "none"
                                            else args.classifier_activation)
    if args.shortcut:
        options["shortcut"] = args.shortcut
    if args.variant:
        options["variant"] = args.variant
    if args.no_residual:
        options["residual"] = False
    return options


def export_main(argv: Sequence[str] | None = None) -> int:
    """``keras-resnet-export MODEL -o DIR [options]``; returns the exit code."""

    def body() -> int:
        args = export_parser().parse_args(argv)
        from keras_resnet.export.api import export_model

        options = ExportOptions(
            formats=args.formats, quantize=args.quantize, calibration=args.calibration,
            data=args.data, samples=args.samples, opset=args.opset, nchw=args.nchw,
            int8_scheme=args.onnx_int8_scheme, target=args.target, batch=args.batch,
            static=args.static, int8_io=args.int8_io, ov_precision=args.ov_precision,
            calibration_method=args.calibration_method,
            weights=args.weights, classes=args.classes, input_size=args.input_size,
            labels=args.labels, builder=_builder_options(args),
            min_agreement=args.min_agreement, force=args.force, threads=args.threads,
            seed=args.seed, input_range=args.input_range, mean=args.mean, std=args.std,
            channel_order=args.channel_order, layer_report=args.layer_report,
            keep_float=args.keep_float)
        log = (lambda message: None) if args.json else print
        manifest = export_model(args.model, args.output, options, log=log)
        if args.json:
            print(json.dumps(manifest, indent=2))
        else:
            from keras_resnet.cpu import cpu_line

            print(artifact_table(manifest))
            print(f"wrote {args.output} in {manifest['export_seconds']:.1f} s; figures measured "
                  f"on {cpu_line(manifest['cpu'])}")
        return 0

    return _run(body, "keras-resnet-export")


def artifact_table(manifest: dict[str, Any]) -> str:
    """The table ``keras-resnet-export`` prints, then the lines that qualify its figures:
    the input contract, the evaluation images, the sanity check and untrained weights."""
    from keras_resnet.export.verify import parity_text

    header = ("artifact", "format", "precision", "MB", "parity", "test top-1", "batch-1 ms",
              "check")
    evaluation = manifest.get("evaluation", {})
    keras_top1 = evaluation.get("keras_top1")
    sanity = manifest.get("sanity", {"passed": True})
    untrained = manifest.get("model", {}).get("untrained")
    keras_check = ("FAILED (sanity)" if not sanity.get("passed", True)
                   else "untrained" if untrained else "")
    rows = [("model.keras", "keras", "float32", "", "reference",
             _top1(keras_top1, evaluation.get("keras_top1_samples")), "", keras_check)]
    for a in manifest["artifacts"]:
        parity = a["parity"]
        rows.append((a["path"], a["format"], a["precision"], f"{a['bytes'] / 1e6:.1f}",
                     parity_text(parity), _top1(parity.get("test_top1"),
                                                parity.get("test_samples")),
                     f"{a['latency_ms']:.2f}", "ok" if parity["passed"] else "FAILED"))
    lines = [text_table(header, rows)]
    contract = manifest.get("input", {}).get("contract")
    if contract:
        lines.append(f"input: {contract['description']} ({contract['read_from']})")
    if evaluation:
        whole = ", the whole test split" if evaluation.get("whole_split") else ""
        lines.append(f"evaluation: {evaluation.get('samples')} images of "
                     f"{evaluation.get('source')}{whole}")
    qat = manifest.get("qat")
    if isinstance(qat, dict):
        lines.append(f"quantization-aware model ({qat.get('scheme')}): int8 ranges learned in "
                     "training, no calibration; every file judged by top-1 agreement with it "
                     f"(at least {float(qat.get('min_agreement', 0)) * 100:.1f}%)")
    for problem in sanity.get("problems", []):
        lines.append(f"sanity check FAILED: {problem}")
    if untrained:
        lines.append(f"model: {sanity.get('note', 'untrained weights')}")
    return "\n".join(lines)


def _top1(value: float | None, count: int | None) -> str:
    return "-" if value is None else f"{value * 100:.2f}% of {count}"


def verify_main(argv: Sequence[str] | None = None) -> int:
    """``keras-resnet-verify DIR [--data SOURCE]``: 0 passed, 1 failed, 2 bad input."""

    def body() -> int:
        p = Parser(prog="keras-resnet-verify",
                    description="Recompute SHA-256 of every artifact and rerun parity.")
        p.add_argument("directory", metavar="DIR")
        p.add_argument("--data", metavar="SOURCE", help="digits | tfds:NAME | folder:PATH | "
                       "synthetic, its test split (default: the export's evaluation source)")
        p.add_argument("--samples", type=int, help="images drawn from --data")
        p.add_argument("--threads", type=int, default=2, help="threads per runtime (2)")
        p.add_argument("--json", action="store_true", help="print the report as JSON")
        p.add_argument("--layers", action="store_true", help="also report, for every int8 "
                       "file, each quantized layer's error against the float file, worst first")
        args = p.parse_args(argv)
        from keras_resnet.export.verify import check_verify_arguments, verify_dir

        from keras_resnet.cpu import cpu_line

        check_verify_arguments(args.samples, args.threads)
        if args.layers:
            from keras_resnet.export.qat_int8 import refuse_qat_dir

            refuse_qat_dir(args.directory, "--layers", "its files all round as it does, so "
                           "no layer has a float reference (report on the float model)")

        report = verify_dir(args.directory, data=args.data, samples=args.samples,
                            threads=args.threads)
        if args.layers:
            from keras_resnet.export.layer_report import format_reports, report_dir

            report["layers"] = report_dir(args.directory)
        if args.json:
            print(json.dumps(report, indent=2))
        else:
            print(f"CPU: {cpu_line(report['cpu'])}")
            from keras_resnet.export.verify import parity_text

            for result in report["artifacts"]:
                state = "ok" if result["passed"] else "FAILED"
                print(f"{state:6} {result['artifact']} {parity_text(result)}")
            if args.layers:
                print(format_reports(report["layers"]))
        if not report["passed"]:  # raised, so the line is printed once stderr is back
            count = len(report["problems"])
            raise VerificationFailed(f"{args.directory} failed verification ({count} problem"
                                     f"{'s' if count > 1 else ''}): "
                                     + "; ".join(report["problems"]))
        print(f"verified {len(report['artifacts'])} artifacts in {args.directory} "
              f"(data: {report['data']})")
        return 0

    return _run(body, "keras-resnet-verify")


def bench_main(argv: Sequence[str] | None = None) -> int:
    """``keras-resnet-bench DIR``: latency at batch 1 and throughput at ``--batch``."""

    def body() -> int:
        p = Parser(prog="keras-resnet-bench",
                    description="Median batch-1 latency and batch throughput of every "
                                "artifact in every runtime that runs it ("
                                + ", ".join(dict.fromkeys(r for row in FORMATS.values()
                                                          for r in row.runtimes()))
                                + ") and of the Keras model, then the fastest file and "
                                "runtime per precision on this CPU.")
        p.add_argument("directory", metavar="DIR")
        p.add_argument("--batch", type=int, default=16, help="batch for throughput (16)")
        p.add_argument("--runs", type=int, default=20, help="timed batch-1 runs (20)")
        p.add_argument("--threads", type=int, default=2, help="threads per runtime (2)")
        p.add_argument("--no-keras", action="store_true", help="skip the Keras model")
        p.add_argument("--json", action="store_true",
                       help="print the CPU, the rows and the fastest choices as JSON")
        args = p.parse_args(argv)
        from keras_resnet.export.bench import (
            bench_dir,
            check_bench_arguments,
            fastest,
            fastest_lines,
            format_table,
        )

        from keras_resnet.cpu import cpu_info

        check_bench_arguments(args.batch, args.runs, args.threads)
        rows = bench_dir(args.directory, batch=args.batch, runs=args.runs,
                         threads=args.threads, include_keras=not args.no_keras)
        if args.json:
            print(json.dumps({"cpu": cpu_info(), "threads": args.threads, "rows": rows,
                              "fastest": fastest(rows)}, indent=2))
        else:
            print(format_table(rows, args.threads))
            print("\n".join(fastest_lines(rows, cpu_info())))
        return 0

    return _run(body, "keras-resnet-bench")
