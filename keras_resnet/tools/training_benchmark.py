"""Throughput benchmark: ``python -m keras_resnet.tools.training_benchmark [--quick]``.

Rows, all on synthetic data and measured in steady state (first steps excluded):

1. stock ``keras.applications.ResNet50`` + ``model.fit`` in float32, with Keras' default
   ``jit_compile="auto"`` (XLA where Keras can) and with XLA off,
2. this trainer on ``resnet50`` in its default settings (precision and ``--jit-compile auto``
   decided from the machine), side by side in the same process, then float32 (and, on CPUs with
   native bfloat16, mixed_bfloat16) with ``--jit-compile on`` and ``off``, and the default with
   ``--batch-norm keras`` (what each choice is worth),
3. this trainer on ``resnet56`` at 32x32,
4. one worker against two ``multi_worker`` processes on 127.0.0.1 (``resnet20``, 32x32).

The CPU (model and kernel-relevant flags) is printed with the table.
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

REPO = Path(__file__).resolve().parents[2]


def stock_fit_images_per_sec(batch: int, size: int, steps: int, warmup: int,
                             jit_compile: str | bool = "auto") -> tuple[float, bool]:
    """Stock ``keras.applications.ResNet50`` + ``model.fit``, float32, synthetic data; returns
    images/s and whether Keras compiled the step with XLA."""
    import keras
    import numpy as np

    keras.mixed_precision.set_global_policy("float32")
    model = keras.applications.ResNet50(weights=None, input_shape=(size, size, 3), classes=1000)
    model.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"],
                  jit_compile=jit_compile)
    rng = np.random.RandomState(0)
    x = rng.uniform(0, 255, (batch, size, size, 3)).astype("float32")
    y = rng.randint(0, 1000, batch)

    class Repeated(keras.utils.PyDataset):  # the same batch, warmup + steps times
        def __len__(self) -> int:
            return warmup + steps

        def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
            return x, y

    ds = Repeated()

    class Timer(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.ends: list[float] = []

        def on_train_batch_end(self, batch_index: int, logs: Any = None) -> None:
            self.ends.append(time.perf_counter())

    timer = Timer()
    model.fit(ds, epochs=1, verbose=0, callbacks=[timer])
    span = timer.ends[-1] - timer.ends[warmup - 1]
    return steps * batch / span, bool(model.jit_compile)


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


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m keras_resnet.tools.training_benchmark",
                                     description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="tiny sizes for a smoke test (64x64 ResNet-50, few steps)")
    parser.add_argument("--steps", type=int, help="timed steps per row")
    parser.add_argument("--batch", type=int, default=32, help="ResNet-50 batch (default 32)")
    parser.add_argument("--size", type=int, help="ResNet-50 image side (default 224)")
    parser.add_argument("--resnet50-only", action="store_true",
                        help="only the ResNet-50 rows (no resnet56 and worker rows)")
    parser.add_argument("--skip-workers", action="store_true", help="skip the worker rows")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    return parser.parse_args(argv)


Row = tuple[str, str, str, float]  # configuration, precision, XLA, images/s


def resnet50_rows(batch: int, size: int, steps: int) -> list[Row]:
    """Stock fit with and without XLA, then the trainer's default and its explicit choices."""
    from keras_resnet.training.precision import cpu_has_bf16

    rows: list[Row] = []
    for jit in ("auto", False):
        ips, used = stock_fit_images_per_sec(batch, size, steps, warmup=2, jit_compile=jit)
        rows.append((f"stock keras.applications.ResNet50 + model.fit (jit_compile={jit!r}), "
                     f"batch {batch}, {size}x{size}", "float32", _on(used), ips))
    variants = [("default settings", [])]
    precisions = ["float32"] + (["mixed_bfloat16"] if cpu_has_bf16() else [])
    variants += [(f"--precision {p} --jit-compile {j}", ["--precision", p, "--jit-compile", j])
                 for p in precisions for j in ("on", "off")]
    variants.append(("default settings, --batch-norm keras", ["--batch-norm", "keras"]))
    for label, extra in variants:
        m = trainer_images_per_sec("resnet50", batch, size, steps + 2, extra)
        rows.append((f"keras-resnet-train resnet50, {label}", m["precision"],
                     _on(m["jit_compile"]), m["train_images_per_sec"]))
    return rows


def _on(flag: bool) -> str:
    return "on" if flag else "off"


def small_rows(quick: bool, skip_workers: bool) -> list[Row]:
    """ResNet-56 at 32x32, and one worker against two multi_worker processes."""
    r56 = trainer_images_per_sec("resnet56", 128, 32, 6 if quick else 30)
    rows = [("keras-resnet-train resnet56, batch 128, 32x32", r56["precision"],
             _on(r56["jit_compile"]), r56["train_images_per_sec"])]
    if not skip_workers:
        wsteps = 6 if quick else 40
        for workers, threads in ((1, 2), (2, 1)):
            m = workers_images_per_sec(workers, "resnet20", 128, 32, wsteps, threads=threads)
            where = "1 worker (2 threads)" if workers == 1 else \
                "2 workers on 127.0.0.1 (1 thread each)"
            rows.append((f"resnet20, batch 128, 32x32, {where}", m["precision"],
                         _on(m["jit_compile"]), m["train_images_per_sec"]))
    return rows


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from keras_resnet.cpu import cpu_line

    size = args.size or (64 if args.quick else 224)
    steps = args.steps or (3 if args.quick else 8)
    rows = resnet50_rows(args.batch, size, steps)
    if not args.resnet50_only:
        rows += small_rows(args.quick, args.skip_workers)
    print(f"CPU: {cpu_line()}")
    width = max(len(r[0]) for r in rows)
    print(f"{'configuration':<{width}}  {'precision':<15} {'XLA':<4} {'images/s':>9}")
    for name, prec, jit, ips in rows:
        print(f"{name:<{width}}  {prec:<15} {jit:<4} {ips:>9.2f}")
    stock, ours = rows[0][3], rows[2][3]
    print(f"trainer default ({rows[2][1]}, XLA {rows[2][2]}) over stock model.fit "
          f"(float32, XLA {rows[0][2]}): {ours / stock:.2f}x")
    if args.json:
        Path(args.json).write_text(json.dumps(
            {"cpu": cpu_line(), "rows": [{"configuration": n, "precision": p, "xla": j,
                                          "images_per_sec": i} for n, p, j, i in rows]},
            indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
