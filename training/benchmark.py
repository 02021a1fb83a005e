"""Throughput benchmark: ``python -m keras_resnet.training.benchmark [--quick]``.

Rows, all on synthetic data and measured in steady state (first steps excluded):

1. stock ``keras.applications.ResNet50`` + ``model.fit`` in float32,
2. this trainer on ``resnet50`` at the default precision, side by side in the same process,
   then the same with ``--batch-norm keras`` and with ``--precision float32`` (what each part
   of the speed-up is worth),
3. this trainer on ``resnet56`` at 32x32,
4. one worker against two ``multi_worker`` processes on 127.0.0.1 (``resnet20``, 32x32).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


def stock_fit_images_per_sec(batch: int, size: int, steps: int, warmup: int) -> float:
    """Stock ``keras.applications.ResNet50`` + ``model.fit``, float32, synthetic data."""
    import keras
    import numpy as np

    keras.mixed_precision.set_global_policy("float32")
    model = keras.applications.ResNet50(weights=None, input_shape=(size, size, 3), classes=1000)
    model.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    rng = np.random.RandomState(0)
    x = rng.uniform(0, 255, (batch, size, size, 3)).astype("float32")
    y = rng.randint(0, 1000, batch)
    import tensorflow as tf

    ds = tf.data.Dataset.from_tensors((x, y)).repeat(warmup + steps)

    class Timer(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.ends: list[float] = []

        def on_train_batch_end(self, batch_index: int, logs: Any = None) -> None:
            self.ends.append(time.perf_counter())

    timer = Timer()
    model.fit(ds, epochs=1, verbose=0, callbacks=[timer])
    span = timer.ends[-1] - timer.ends[warmup - 1]
    return steps * batch / span


def trainer_images_per_sec(model: str, batch: int, size: int, steps: int,
                           extra: list[str] | None = None) -> dict[str, Any]:
    """This trainer in-process on synthetic data; returns its metrics.json."""
    from keras_resnet.training.cli import train_from_args

    with tempfile.TemporaryDirectory() as tmp:
        result = train_from_args(["--model", model, "--dataset", "synthetic", "--batch-size",
                                  str(batch), "--input-size", str(size), "--steps", str(steps),
                                  "--model-dir", tmp, "--eval-examples", str(batch),
                                  "--mean-images", "64", "--log-every", str(steps),
                                  "--checkpoint-every", str(steps), *(extra or [])])
    return result.metrics


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def workers_images_per_sec(workers: int, model: str, batch: int, size: int, steps: int,
                           threads: int) -> dict[str, Any]:
    """Run ``workers`` trainer processes (multi_worker when > 1) and read the chief's metrics."""
    ports = [_free_port() for _ in range(workers)]
    with tempfile.TemporaryDirectory() as tmp:
        procs = []
        for index in range(workers):
            env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3",
                       PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
            env.pop("TF_CONFIG", None)
            if workers > 1:
                env["TF_CONFIG"] = json.dumps({
                    "cluster": {"worker": [f"127.0.0.1:{p}" for p in ports]},
                    "task": {"type": "worker", "index": index}})
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "keras_resnet.training", "--model", model, "--dataset", "synthetic",
                 "--batch-size", str(batch), "--input-size", str(size), "--steps", str(steps),
                 "--model-dir", str(Path(tmp) / "run"), "--eval-examples", str(batch),
                 "--mean-images", "64", "--log-every", str(steps), "--threads", str(threads)],
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env))
        errors = [p.communicate(timeout=1800)[1] for p in procs]
        if any(p.returncode for p in procs):
            raise RuntimeError("worker failed:\n" + "\n".join(errors))
        return json.loads((Path(tmp) / "run" / "metrics.json").read_text())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m keras_resnet.training.benchmark", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="tiny sizes for a smoke test (64x64 ResNet-50, few steps)")
    parser.add_argument("--steps", type=int, help="timed steps per row")
    parser.add_argument("--skip-workers", action="store_true", help="skip the worker rows")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    size = 64 if args.quick else 224
    steps = args.steps or (3 if args.quick else 8)
    batch = 32
    rows: list[tuple[str, str, float]] = []

    stock = stock_fit_images_per_sec(batch, size, steps, warmup=2)
    rows.append((f"keras.applications.ResNet50 + model.fit, batch {batch}, {size}x{size}",
                 "float32", stock))
    ours = trainer_images_per_sec("resnet50", batch, size, steps + 2)
    rows.append((f"keras-resnet-train resnet50, batch {batch}, {size}x{size}",
                 ours["precision"], ours["train_images_per_sec"]))
    keras_bn = trainer_images_per_sec("resnet50", batch, size, steps + 2,
                                      ["--batch-norm", "keras"])
    rows.append(("  same, --batch-norm keras (Keras' unfused layer)", keras_bn["precision"],
                 keras_bn["train_images_per_sec"]))
    fp32 = trainer_images_per_sec("resnet50", batch, size, steps + 2, ["--precision", "float32"])
    rows.append(("  same, --precision float32", fp32["precision"], fp32["train_images_per_sec"]))
    r56 = trainer_images_per_sec("resnet56", 128, 32, 6 if args.quick else 30)
    rows.append(("keras-resnet-train resnet56, batch 128, 32x32", r56["precision"],
                 r56["train_images_per_sec"]))
    workers: tuple[float, float] | None = None
    if not args.skip_workers:
        wsteps = 6 if args.quick else 40
        one = workers_images_per_sec(1, "resnet20", 128, 32, wsteps, threads=2)
        two = workers_images_per_sec(2, "resnet20", 128, 32, wsteps, threads=1)
        rows.append(("resnet20, batch 128, 32x32, 1 worker (2 threads)", one["precision"],
                     one["train_images_per_sec"]))
        rows.append(("resnet20, batch 128, 32x32, 2 workers on 127.0.0.1 (1 thread each)",
                     two["precision"], two["train_images_per_sec"]))
        workers = (one["train_images_per_sec"], two["train_images_per_sec"])
    width = max(len(r[0]) for r in rows)
    print(f"{'configuration':<{width}}  {'precision':<15} {'images/s':>9}")
    for name, prec, ips in rows:
        print(f"{name:<{width}}  {prec:<15} {ips:>9.2f}")
    ratio = ours["train_images_per_sec"] / stock
    print(f"speed-up of keras-resnet-train ({ours['precision']}) over stock model.fit (float32): "
          f"{ratio:.2f}x (target 3x: {'met' if ratio >= 3 else 'NOT met'})")
    print(f"fused batch norm vs Keras' layer, same precision: "
          f"{ours['train_images_per_sec'] / keras_bn['train_images_per_sec']:.2f}x; "
          f"trainer float32 vs stock float32: {fp32['train_images_per_sec'] / stock:.2f}x")
    if workers:
        print(f"two workers vs one: {workers[1] / workers[0]:.2f}x the images/s")
    if args.json:
        Path(args.json).write_text(json.dumps([{"configuration": n, "precision": p,
                                                "images_per_sec": i} for n, p, i in rows],
                                              indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
