"""Zoo benchmark: build time, parameters, MACs and forward images/s.

Run with ``python -m keras_resnet.tools.zoo_benchmark`` (any Keras backend: set
``KERAS_BACKEND``). Figures, not a test: the machine's load changes them.
"""

from __future__ import annotations

import argparse
import statistics
import time

import keras
import numpy as np

from keras_resnet.models import create_model
from keras_resnet.profile import profile

CASES = (("resnet18", 224), ("resnet50", 224), ("resnet20", 32), ("resnet56", 32))


def _images_per_sec(model: keras.Model, batch: int, size: int, repeats: int) -> float:
    x = np.random.default_rng(0).uniform(0, 1, (batch, size, size, 3)).astype("float32")
    model.predict_on_batch(x)  # compile / trace once
    model.predict_on_batch(x)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        model.predict_on_batch(x)
        times.append(time.perf_counter() - start)
    return batch / statistics.median(times)


def run(cases=CASES, batches=(1, 32), repeats: int = 5) -> list[dict]:
    rows = []
    for name, size in cases:
        start = time.perf_counter()
        model = create_model(name, input_shape=(size, size, 3))
        build_s = time.perf_counter() - start
        stats = profile(model)
        row = {"model": name, "input": size, "build_s": build_s,
               "params_m": stats["params"] / 1e6, "gmacs": stats["macs"] / 1e9}
        for batch in batches:
            row[f"img_s_b{batch}"] = _images_per_sec(model, batch, size, repeats)
        rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m keras_resnet.tools.zoo_benchmark",
                                     description=__doc__)
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per figure")
    parser.add_argument("--quick", action="store_true", help="CIFAR nets only, batch 1 and 8")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be >= 1")
    cases = CASES[2:] if args.quick else CASES
    batches = (1, 8) if args.quick else (1, 32)
    rows = run(cases, batches, args.repeats)
    print(f"backend: {keras.backend.backend()}")
    head = ["model", "input", "build s", "params M", "GMACs"] + [f"img/s b{b}" for b in batches]
    print("| " + " | ".join(head) + " |\n|" + "---|" * len(head))
    for r in rows:
        cells = [r["model"], str(r["input"]), f"{r['build_s']:.1f}", f"{r['params_m']:.2f}",
                 f"{r['gmacs']:.3f}"] + [f"{r[f'img_s_b{b}']:.1f}" for b in batches]
        print("| " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
