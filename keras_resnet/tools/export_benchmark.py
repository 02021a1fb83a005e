"""``python -m keras_resnet.tools.export_benchmark``: the side-by-side figures of docs/export.md.

Exports a model (default ResNet-50 at 224) to every format and precision, timing the whole
export, then measures batch-1 latency with a fixed thread count for TFLite float32 vs int8
and ONNX float32 vs int8, and checks them against the export's speed targets (docs/export.md). With
``--naive-onnx`` it also times onnxruntime's default static quantization (QDQ, int8
activations, per-tensor weights) to show why the exporter does not use it.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

TARGETS = (
    ("TFLite int8 speed-up over TFLite float32", "tflite_speedup", ">=", 3.0),
    ("ONNX int8 speed-up over ONNX float32", "onnx_speedup", ">=", 1.5),
    ("TFLite / ONNX float32 latency ratio", "fp32_ratio", "within", 0.10),
    ("export wall time (s)", "export_seconds", "<=", 180.0),
)


def naive_onnx_int8(float_path: Path, out_path: Path, calibration: np.ndarray) -> None:
    """onnxruntime's defaults: QDQ, int8 activations, per-tensor int8 weights."""
    from onnxruntime.quantization import CalibrationDataReader, quantize_static

    samples = iter(calibration[i:i + 1] for i in range(len(calibration)))

    class Reader(CalibrationDataReader):
        def get_next(self) -> dict[str, np.ndarray] | None:
            batch = next(samples, None)
            return None if batch is None else {"input": batch}

    quantize_static(str(float_path), str(out_path), Reader())


def interleaved_latency_ms(runners: dict[str, Any], x: np.ndarray,
                           runs: int) -> dict[str, float]:
    """Median latency of each runner, timed round-robin (a few calls each per round) so
    that a change in machine load affects every runtime alike."""
    for fn in runners.values():
        for _ in range(3):
            fn(x)
    times: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(max(1, runs // 3)):
        for name, fn in runners.items():
            for _ in range(3):
                start = time.perf_counter()
                fn(x)
                times[name].append(time.perf_counter() - start)
    return {name: float(np.median(t) * 1000.0) for name, t in times.items()}


def run_benchmark(model: str, input_size: int | None, out: Path, threads: int, runs: int,
                  samples: int, naive: bool, log: Any = print) -> dict[str, Any]:
    """Export, then time the four headline runtimes; returns the figures."""
    from keras_resnet.export.api import ExportOptions, export_model
    from keras_resnet.export.bench import set_tf_threads
    from keras_resnet.export.verify import make_runner

    set_tf_threads(threads)
    options = ExportOptions(quantize=["float16", "dynamic", "int8"], calibration="synthetic",
                            samples=samples, input_size=input_size, min_agreement=0.0,
                            force=True, threads=threads)
    start = time.perf_counter()
    manifest = export_model(model, out, options, log=log)
    export_seconds = time.perf_counter() - start
    shape = tuple(manifest["input"]["shape"][1:])
    x = np.random.default_rng(0).uniform(0, 255, (1, *shape)).astype(np.float32)
    runners = {f"{a['format']} {a['precision']}": make_runner(out, a, threads)
               for a in manifest["artifacts"]}
    scratch = tempfile.TemporaryDirectory()
    if naive:
        from keras_resnet.export.onnx_export import OnnxRunner

        calib = np.random.default_rng(0).uniform(0, 255, (samples, *shape)).astype(np.float32)
        naive_path = Path(scratch.name) / "naive_int8.onnx"
        naive_onnx_int8(out / "model.onnx", naive_path, calib)
        runners["onnx int8 (naive QDQ s8s8 per-tensor)"] = OnnxRunner(naive_path, threads)
    latencies = interleaved_latency_ms(runners, x, runs)
    scratch.cleanup()
    figures = {
        "latency_ms": latencies,
        "tflite_speedup": latencies["tflite float32"] / latencies["tflite int8"],
        "onnx_speedup": latencies["onnx float32"] / latencies["onnx int8"],
        "fp32_ratio": latencies["tflite float32"] / latencies["onnx float32"],
        "export_seconds": export_seconds,
        "agreement": {f"{a['format']} {a['precision']}": a["parity"].get("top1_agreement")
                      for a in manifest["artifacts"]},
    }
    return figures


def report(figures: dict[str, Any], model: str, threads: int) -> str:
    """The side-by-side table and the target checks."""
    lines = [f"{model}, batch 1, {threads} threads, median latency", "",
             f"{'runtime':44} {'ms':>8} {'img/s':>8}", "-" * 62]
    for key, ms in figures["latency_ms"].items():
        lines.append(f"{key:44} {ms:8.2f} {1000.0 / ms:8.1f}")
    lines += ["", f"export wall time (every format and precision): "
              f"{figures['export_seconds']:.1f} s", ""]
    for label, key, op, limit in TARGETS:
        value = figures[key]
        if op == ">=":
            ok, shown = value >= limit, f"{value:.2f}x (target >= {limit}x)"
        elif op == "<=":
            ok, shown = value <= limit, f"{value:.1f} (target <= {limit:.0f})"
        else:
            ok, shown = abs(value - 1.0) <= limit, f"{value:.2f} (target 1 +- {limit:.2f})"
        lines.append(f"{'met ' if ok else 'MISS'}  {label}: {shown}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry:
    ``python -m keras_resnet.tools.export_benchmark [--model resnet50] ...``."""
    p = argparse.ArgumentParser(prog="python -m keras_resnet.tools.export_benchmark",
                                description=__doc__)
    p.add_argument("--model", default="resnet50")
    p.add_argument("--input-size", type=int, default=None)
    p.add_argument("--out", type=Path, default=None, help="export directory (default: temp)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--runs", type=int, default=30)
    p.add_argument("--samples", type=int, default=100, help="synthetic calibration images")
    p.add_argument("--naive-onnx", action="store_true",
                   help="also time onnxruntime's default int8 quantization")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as scratch:
        out = args.out or Path(scratch) / args.model
        figures = run_benchmark(args.model, args.input_size, out, args.threads, args.runs,
                                args.samples, args.naive_onnx)
    print(report(figures, f"{args.model} at {args.input_size or 'default size'}",
                 args.threads))
    return 0


if __name__ == "__main__":
    sys.exit(main())
