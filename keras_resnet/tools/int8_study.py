"""``python -m keras_resnet.tools.int8_study``: float, post-training int8 and quantization-aware
int8 side by side on scikit-learn's digits, from the project's own commands.

For each network (ResNet-8 and the README's ResNet-20, seeded) it runs:

1. ``keras-resnet-train`` (float32, the README's settings);
2. ``keras-resnet-export --quantize int8`` once per int8 ONNX scheme (u8s8-7bit, u8s8,
   s8s8-sym), calibrated on the training split: post-training quantization (PTQ);
3. ``keras-resnet-train --qat int8 --weights FLOAT_RUN --recipe qat`` per scheme (the
   network's depth and input size come from the float run), then
   ``keras-resnet-export`` of the QAT run (no calibration: the ranges are learned);

and prints one table: each file's test top-1 on the whole held-out split and its top-1
agreement with the Keras model it came from (the float model for PTQ, the QAT model for
QAT), with the CPU's flags. Every command line is printed before it runs.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

SCHEMES = ("u8s8-7bit", "u8s8", "s8s8-sym")
NETWORKS = {"resnet8": ["--model", "resnet20", "--depth", "8"],
            "resnet20": ["--model", "resnet20"]}
COMMON = ["--dataset", "digits", "--batch-size", "64", "--seed", "0"]


def run(command: list[str], log: Path, allowed: tuple[int, ...] = (0,)) -> int:
    """Run one command, its output appended to ``log``; stop the study if it exits with
    a code not ``allowed``."""
    print("$", shlex.join(command), flush=True)
    with log.open("a") as out:
        code = subprocess.call(command, stdout=out, stderr=subprocess.STDOUT)
    if code not in allowed:
        sys.exit(f"command failed with exit code {code}; its output is in {log}")
    return code


def export(model: Path, out: Path, scheme: str, calibrate: bool, log: Path) -> dict[str, Any]:
    command = ["keras-resnet-export", str(model), "-o", str(out), "--formats", "tflite,onnx",
               "--quantize", "int8", "--onnx-int8-scheme", scheme, "--data", "digits",
               "--force", "--json"]
    if calibrate:
        command += ["--calibration", "digits"]
    if not (out / "manifest.json").is_file():  # an earlier study's files are reused
        run(command, log, allowed=(0, 1))  # 1: written, but a file failed its check
    return json.loads((out / "manifest.json").read_text())


def rows_of(manifest: dict[str, Any], network: str, method: str) -> list[dict[str, Any]]:
    rows = []
    for artifact in manifest["artifacts"]:
        parity = artifact["parity"]
        if artifact["precision"] not in ("float32", "int8") or artifact["format"] == "saved_model":
            continue
        rows.append({"network": network, "method": method, "format": artifact["format"],
                     "precision": artifact["precision"], "test_top1": parity.get("test_top1"),
                     "agreement": parity.get("top1_agreement"),
                     "images": parity.get("agreement_samples"),
                     "passed": parity.get("passed")})
    return rows


def study(work: Path, steps: int, qat_steps: int | None, log: Path) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for network, model_args in NETWORKS.items():
        float_run = work / f"{network}-float"
        if not (float_run / "model.keras").is_file():
            run(["keras-resnet-train", *model_args, *COMMON, "--steps", str(steps),
                 "--model-dir", str(float_run)], log)
        for scheme in SCHEMES:
            manifest = export(float_run / "model.keras", work / f"{network}-ptq-{scheme}",
                              scheme, True, log)
            for row in rows_of(manifest, network, f"PTQ {scheme}"):
                if row["precision"] == "int8" or scheme == SCHEMES[0]:
                    rows.append(row if row["precision"] == "int8" else {**row, "method": "float"})
            qat_run = work / f"{network}-qat-{scheme}"
            if not (qat_run / "model.keras").is_file():
                extra = ["--steps", str(qat_steps)] if qat_steps else []
                run(["keras-resnet-train", *model_args[:2], *COMMON, "--qat", "int8",
                     "--qat-scheme", scheme, "--weights", str(float_run), "--recipe", "qat",
                     *extra, "--model-dir", str(qat_run)], log)
            manifest = export(qat_run / "model.keras", work / f"{network}-qat-{scheme}-files",
                              scheme, False, log)
            rows += [r for r in rows_of(manifest, network, f"QAT {scheme}")
                     if r["precision"] == "int8"]
    return rows


RESNET50_CONTRACT = ["--input-range", "0,255", "--mean", "103.939,116.779,123.68",
                     "--channel-order", "BGR"]  # keras.applications' caffe preprocessing


def resnet50_files(work: Path, log: Path) -> dict[str, Path]:
    """A seeded ResNet-50 at 224, exported int8 twice: post-training (synthetic
    calibration) and quantization-aware (ranges observed on the same synthetic images)."""
    import keras
    import numpy as np

    import keras_resnet
    from keras_resnet.quantization import freeze_observers, quantize_model

    files = {f"{kind} {fmt}": work / f"r50-{kind.lower()}" / name
             for kind in ("PTQ", "QAT") for fmt, name in (("tflite", "model_int8.tflite"),
                                                         ("onnx", "model_int8.onnx"))}
    if all(path.is_file() for path in files.values()):  # an earlier study's files
        return files
    keras.utils.set_random_seed(0)
    model = keras_resnet.ResNet50(weights=None)
    model.save(work / "resnet50.keras")
    images = np.random.default_rng(0).uniform(0, 255, (32, 224, 224, 3)).astype("float32")
    qat = quantize_model(model)
    for start in range(0, len(images), 8):  # observe the ranges, then freeze them
        qat(keras_resnet.preprocess_input(images[start:start + 8].copy()), training=True)
    freeze_observers(qat)
    qat.save(work / "resnet50-qat.keras")
    common = ["--formats", "tflite,onnx", "--quantize", "int8", "--data", "synthetic",
              "--samples", "32", "--force", *RESNET50_CONTRACT]
    run(["keras-resnet-export", str(work / "resnet50.keras"), "-o", str(work / "r50-ptq"),
         "--calibration", "synthetic", *common], log)
    run(["keras-resnet-export", str(work / "resnet50-qat.keras"), "-o",
         str(work / "r50-qat"), *common], log)
    return files


def resnet50_latency(work: Path, runs: int, log: Path) -> dict[str, float]:
    """Batch-1 latency of the four int8 files, timed round-robin in this process."""
    import numpy as np

    from keras_resnet.export.onnx_export import OnnxRunner
    from keras_resnet.export.tflite import TFLiteRunner
    from keras_resnet.tools.export_benchmark import interleaved_latency_ms

    files = resnet50_files(work, log)
    runners = {name: (TFLiteRunner(path, 2) if path.suffix == ".tflite"
                      else OnnxRunner(path, 2)) for name, path in files.items()}
    x = np.random.default_rng(1).uniform(-100, 150, (1, 224, 224, 3)).astype("float32")
    return interleaved_latency_ms(runners, x, runs)


def table(rows: list[dict[str, Any]], cpu: str) -> str:
    lines = [f"measured on: {cpu}", "",
             "| network | model | file | test top-1 | agreement with its Keras model | images "
             "| check |", "|---|---|---|---|---|---|---|"]
    for row in rows:
        top1 = "" if row["test_top1"] is None else f"{100 * row['test_top1']:.2f} %"
        agree = "" if row["agreement"] is None else f"{100 * row['agreement']:.2f} %"
        lines.append(f"| {row['network']} | {row['method']} | {row['format']} "
                     f"{row['precision']} | {top1} | {agree} | {row['images']} | "
                     f"{'passed' if row['passed'] else 'FAILED'} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    from keras_resnet.cpu import cpu_line

    parser = argparse.ArgumentParser(prog="python -m keras_resnet.tools.int8_study",
                                     description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("work", type=Path, help="folder for the runs and files (what an "
                        "earlier study left there is reused: delete it to start over)")
    parser.add_argument("--steps", type=int, default=400, help="float training steps")
    parser.add_argument("--qat-steps", type=int, help="QAT steps (default: the qat recipe's)")
    parser.add_argument("--resnet50-runs", type=int, default=30,
                        help="timed batch-1 calls per ResNet-50 int8 file (0: skip)")
    parser.add_argument("--json", type=Path, help="also write the rows to this JSON file")
    args = parser.parse_args(argv)
    if args.steps < 1 or (args.qat_steps is not None and args.qat_steps < 1):
        parser.error("--steps and --qat-steps must be at least 1")
    args.work.mkdir(parents=True, exist_ok=True)
    rows = study(args.work, args.steps, args.qat_steps, args.work / "study.log")
    print(table(rows, cpu_line()))
    latency = {}
    if args.resnet50_runs:
        latency = resnet50_latency(args.work, args.resnet50_runs, args.work / "study.log")
        print(f"\nResNet-50 at 224, batch 1, 2 threads, median of {args.resnet50_runs} calls "
              "each, timed round-robin:")
        for name, ms in latency.items():
            print(f"  {name:12} {ms:7.2f} ms")
    if args.json:
        args.json.write_text(json.dumps({"cpu": cpu_line(), "rows": rows,
                                         "resnet50_latency_ms": latency}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
