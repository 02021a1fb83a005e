"""``python -m keras_resnet.tools.int8_schemes DIR``: every int8 ONNX scheme side by side.

Quantizes the float32 ``model.onnx`` of an export directory once per scheme of
``INT8_SCHEMES`` with the export's own calibration images, then reports for each: top-1
agreement with float32, test top-1 (labelled data), largest output difference, batch-1
latency (timed round-robin in this process), the largest |weight| and whether the file can
saturate a 16-bit sum. ``--emulate`` reruns every int8 file on an emulated AVX2 CPU (qemu)
and reports its agreement there: the figures of a CPU without VNNI, from any x86 machine.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np


def export_inputs(directory: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, bool]:
    """The export's calibration inputs (train split), evaluation inputs and labels (test
    split), model-ready, and whether its ONNX files take NCHW."""
    from keras_resnet.export.manifest import read_manifest
    from keras_resnet.export.samples import load_samples
    from keras_resnet.export.verify import manifest_preprocess

    manifest = read_manifest(directory)
    options, spec = manifest["options"], manifest["input"]
    size = tuple(spec["shape"][1:3])
    prepare = manifest_preprocess(manifest)
    calibration = options.get("calibration") or "synthetic"
    from keras_resnet.export.api import DEFAULT_SAMPLES

    pixels, _ = load_samples(calibration, "train", options["samples"] or DEFAULT_SAMPLES, size,
                             options["seed"], "calibration")
    evaluation = manifest["evaluation"]
    x_eval, y_eval = load_samples(evaluation["source"], "test", evaluation["samples"], size,
                                  evaluation["seed"])
    nchw = any(a.get("layout") == "NCHW" for a in manifest["artifacts"])
    return prepare(pixels), prepare(x_eval), y_eval, nchw


def compare_schemes(directory: Path, schemes: Sequence[str], runs: int, threads: int,
                    emulate: bool, log: Any = print, methods: Sequence[str] = ("minmax",)
                    ) -> list[dict[str, Any]]:
    """One row of figures per scheme and calibration method (``scheme`` or
    ``scheme/method``), plus the float32 file's own row first."""
    from keras_resnet.export.onnx_export import OnnxRunner
    from keras_resnet.export.onnx_int8 import int8_structure, quantize_onnx_int8
    from keras_resnet.tools.export_benchmark import interleaved_latency_ms

    calib, x_eval, y_eval, nchw = export_inputs(directory)
    if nchw:
        calib, x_eval = calib.transpose(0, 3, 1, 2), x_eval.transpose(0, 3, 1, 2)
    float_path = directory / "model.onnx"
    scratch = tempfile.TemporaryDirectory(prefix="int8-schemes-")
    paths = {"float32": float_path}
    for scheme in schemes:
        for method in methods:
            name = scheme if len(methods) == 1 else f"{scheme}/{method}"
            log(f"quantizing {name} ...")
            paths[name] = Path(scratch.name) / f"{name.replace('/', '-')}.onnx"
            quantize_onnx_int8(float_path, paths[name], calib, {}, scheme, method)
    runners = {name: OnnxRunner(path, threads) for name, path in paths.items()}
    outputs = {name: np.concatenate([run(x_eval[i:i + 32]) for i in range(0, len(x_eval), 32)])
               for name, run in runners.items()}
    latency = interleaved_latency_ms(runners, x_eval[:1], runs)
    rows = []
    for name, out in outputs.items():
        row = {"scheme": name, **_figures(outputs["float32"], out, y_eval),
               "latency_ms": latency[name]}
        if name != "float32":
            row.update(int8_structure(paths[name]))
            if emulate:
                log(f"running {name} on an emulated AVX2 CPU ...")
                row["emulated_avx2"] = _figures(outputs["float32"],
                                                _emulated(paths[name], x_eval), y_eval)
        rows.append(row)
    scratch.cleanup()
    return rows


def _emulated(path: Path, x: np.ndarray) -> np.ndarray:
    from keras_resnet.tools.emulation import run_onnx_emulated

    return run_onnx_emulated(path, x)


def _figures(reference: np.ndarray, out: np.ndarray, labels: np.ndarray | None
             ) -> dict[str, Any]:
    figures = {"top1_agreement": float(np.mean(reference.argmax(1) == out.argmax(1))),
               "max_abs_diff": float(np.max(np.abs(reference - out)))}
    if labels is not None and out.shape[-1] == int(labels.max()) + 1:
        figures["test_top1"] = float(np.mean(out.argmax(1) == labels))
    return figures


def report(rows: list[dict[str, Any]], title: str) -> str:
    """The side-by-side table."""
    header = (f"{'scheme':20} {'agree':>7} {'top-1':>7} {'max|d|':>7} {'ms':>7} "
              f"{'max|w|':>6} {'worst sum':>9} {'safe':>5} {'AVX2 agree':>10} {'AVX2 top-1':>10}")
    lines = [title, "", header, "-" * len(header)]
    for row in rows:
        emulated = row.get("emulated_avx2", {})
        cells = [f"{row['scheme']:20}", _pct(row["top1_agreement"]), _pct(row.get("test_top1")),
                 f"{row['max_abs_diff']:7.3f}", f"{row['latency_ms']:7.2f}",
                 f"{row.get('max_abs_weight', ''):>6}",
                 f"{row.get('vpmaddubsw_worst_sum') or '':>9}",
                 f"{'' if 'saturation_free' not in row else 'yes' if row['saturation_free'] else 'no':>5}",
                 f"{_pct(emulated.get('top1_agreement')):>10}",
                 f"{_pct(emulated.get('test_top1')):>10}"]
        lines.append(" ".join(cells))
    return "\n".join(lines)


def _pct(value: float | None) -> str:
    return f"{'':>7}" if value is None else f"{value * 100:6.2f}%"


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry."""
    from keras_resnet.cpu import cpu_line
    from keras_resnet.export.onnx_int8 import CALIBRATION_METHODS, INT8_SCHEMES

    p = argparse.ArgumentParser(prog="python -m keras_resnet.tools.int8_schemes",
                                description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("directory", type=Path, help="an export directory holding model.onnx")
    p.add_argument("--schemes", default=",".join(INT8_SCHEMES),
                   help=f"comma-separated subset of {', '.join(INT8_SCHEMES)}")
    p.add_argument("--methods", default="minmax",
                   help=f"comma-separated calibration methods of {', '.join(CALIBRATION_METHODS)}")
    p.add_argument("--runs", type=int, default=30, help="timed batch-1 calls per file")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--emulate", action="store_true",
                   help="also run every int8 file on an emulated AVX2 CPU (qemu-user)")
    p.add_argument("--json", type=Path, help="also write the rows to this JSON file")
    args = p.parse_args(argv)
    schemes = [s for s in args.schemes.split(",") if s]
    unknown = [s for s in schemes if s not in INT8_SCHEMES]
    if unknown or not schemes:
        p.error(f"--schemes: unknown {unknown}; choose from {', '.join(INT8_SCHEMES)}")
    methods = [m for m in args.methods.split(",") if m]
    if not methods or any(m not in CALIBRATION_METHODS for m in methods):
        p.error(f"--methods: choose from {', '.join(CALIBRATION_METHODS)}")
    if not (args.directory / "model.onnx").is_file():
        p.error(f"{args.directory} has no model.onnx (export with the onnx format)")
    from keras_resnet.tools.errors import UsageError
    from keras_resnet.tools.qat_int8 import refuse_qat_dir

    try:
        refuse_qat_dir(args.directory, "int8_schemes", "its int8 scheme is the one it was "
                       "trained for and its ranges are learned: there is nothing to calibrate")
    except UsageError as exc:
        p.error(str(exc))
    if args.runs < 1 or args.threads < 1:
        p.error("--runs and --threads must be at least 1")
    rows = compare_schemes(args.directory, schemes, args.runs, args.threads, args.emulate,
                           methods=methods)
    title = (f"{args.directory}: int8 ONNX schemes against float32, batch-1 latency with "
             f"{args.threads} threads\nmeasured on: {cpu_line()}")
    print(report(rows, title))
    if args.json:
        args.json.write_text(json.dumps({"cpu": cpu_line(), "rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
