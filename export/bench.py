"""Latency and throughput of every artifact in an export directory in every runtime that
runs it, and of its Keras model; the fastest file and runtime per precision."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from keras_resnet.export.errors import UsageError
from keras_resnet.export.formats import FORMATS
from keras_resnet.export.manifest import read_manifest, resolve_inside

from keras_resnet.console import text_table

#: Largest ``--batch`` (its random inputs are held in memory) and ``--runs``.
MAX_BATCH = 1024
MAX_RUNS = 10000


def median_latency_ms(fn: Callable[[np.ndarray], Any], x: np.ndarray, runs: int = 20,
                      warmup: int = 3) -> float:
    """Median wall time of ``fn(x)`` in milliseconds."""
    for _ in range(warmup):
        fn(x)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn(x)
        times.append(time.perf_counter() - start)
    return float(np.median(times) * 1000.0)


def set_tf_threads(threads: int) -> None:
    """Limit TensorFlow's thread pools (only possible before TF's runtime starts)."""
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:
        pass  # already initialised: the pools keep their size


def check_bench_arguments(batch: int, runs: int, threads: int) -> None:
    """``batch``, ``runs`` and ``threads`` within their documented ranges, else UsageError."""
    from keras_resnet.export.verify import MAX_THREADS

    for name, value, most in (("--batch", batch, MAX_BATCH), ("--runs", runs, MAX_RUNS),
                              ("--threads", threads, MAX_THREADS)):
        if not 1 <= value <= most:
            raise UsageError(f"{name} must be in 1..{most} (got {value})")


def bench_dir(directory: str | Path, batch: int = 16, runs: int = 20, threads: int = 2,
              include_keras: bool = True) -> list[dict[str, Any]]:
    """Median batch-1 latency and batch-``batch`` throughput of every artifact.

    Returns one row per file and runtime that runs it (every runtime of its row of the
    table of formats): ``{name, format, precision, runtime, computed_in (OpenVINO's
    inference precision), latency_ms, batch, throughput}``.
    Every file it loads must lie inside ``directory`` (see :func:`read_manifest`); bad
    arguments or paths raise UsageError before anything is loaded.
    """
    check_bench_arguments(batch, runs, threads)
    directory = Path(directory)
    manifest = read_manifest(directory)
    keras_path = _checked_files(directory, manifest, include_keras)
    import keras

    import keras_resnet

    set_tf_threads(threads)
    shape = tuple(manifest["input"]["shape"][1:])
    rng = np.random.default_rng(0)
    x1 = rng.uniform(0, 255, (1, *shape)).astype(np.float32)
    xb = rng.uniform(0, 255, (batch, *shape)).astype(np.float32)
    entries: list[tuple[dict[str, str], Callable[[np.ndarray], Any]]] = []
    if keras_path is not None:
        model = keras_resnet.load_model(keras_path)  # safe_mode
        entries.append(({"name": "keras", "format": "keras", "precision": "float32",
                         "runtime": "keras"},
                        lambda x: keras.ops.convert_to_numpy(model(x, training=False))))
    for artifact in manifest["artifacts"]:
        for runtime in FORMATS[artifact["format"]].runtimes():
            entries.append(({"name": artifact["path"], "format": artifact["format"],
                             "precision": artifact["precision"], "runtime": runtime},
                            open_in(directory, artifact, threads, runtime)))
    rows = []
    batch_runs = max(3, runs // 4)
    for labels, fn in entries:
        latency = median_latency_ms(fn, x1, runs=runs)
        batch_ms = median_latency_ms(fn, xb, runs=batch_runs, warmup=1)
        computed = getattr(fn, "inference_precision", None)
        rows.append({**labels, **({"computed_in": computed} if computed else {}),
                     "latency_ms": round(latency, 2), "batch": batch,
                     "throughput": round(batch * 1000.0 / batch_ms, 1)})
    return rows


def open_in(directory: Path, artifact: dict[str, Any], threads: int, runtime: str) -> Any:
    """A runner of ``artifact`` in ``runtime`` (one its row names), fed whole batches when
    the file has a static batch."""
    from keras_resnet.export.verify import StaticBatch, make_runner

    row = FORMATS[artifact["format"]]
    if runtime == row.runtimes()[0]:
        return make_runner(directory, artifact, threads)
    runner = row.open_in(runtime, resolve_inside(directory, artifact["path"]), threads,
                         artifact)
    batch = artifact.get("batch")
    if isinstance(batch, int) and not isinstance(batch, bool) and batch > 0:
        return StaticBatch(runner, batch)
    return runner


def fastest(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """For each file precision (in the order the rows name them), the exported file and
    runtime with the lowest batch-1 latency and the one with the highest batch throughput;
    the Keras reference model is not a candidate."""
    best: dict[str, dict[str, Any]] = {}
    for row in rows:
        if row["format"] == "keras":
            continue
        entry = best.setdefault(row["precision"], {"latency": row, "throughput": row})
        if row["latency_ms"] < entry["latency"]["latency_ms"]:
            entry["latency"] = row
        if row["throughput"] > entry["throughput"]["throughput"]:
            entry["throughput"] = row
    return {precision: {kind: _choice(row) for kind, row in entry.items()}
            for precision, entry in best.items()}


def _choice(row: dict[str, Any]) -> dict[str, Any]:
    keys = ("name", "format", "runtime", "computed_in", "latency_ms", "batch", "throughput")
    return {key: row[key] for key in keys if key in row}


def fastest_lines(rows: list[dict[str, Any]], cpu: dict[str, Any]) -> list[str]:
    """One line per precision naming the fastest file and runtime on ``cpu``."""
    from keras_resnet.cpu import cpu_line

    lines = []
    for precision, best in fastest(rows).items():
        low, high = best["latency"], best["throughput"]
        lines.append(f"fastest {precision} on {cpu_line(cpu)}: {_named(low)} "
                     f"{low['latency_ms']:.2f} ms at batch 1; {_named(high)} "
                     f"{high['throughput']:.1f} img/s at batch {high['batch']}")
    return lines


def _named(choice: dict[str, Any]) -> str:
    computed = f", computing {choice['computed_in']}" if choice.get("computed_in") else ""
    return f"{choice['name']} in {choice['runtime']}{computed}"


def _checked_files(directory: Path, manifest: dict[str, Any], include_keras: bool
                   ) -> Path | None:
    """Every artifact has a format of the table and is present; returns the reference Keras
    model's path (None without it); raises UsageError before anything is loaded."""
    keras_entry = manifest.get("reference", {}).get("keras_model")
    keras_path = (resolve_inside(directory, keras_entry["path"])
                  if include_keras and keras_entry else None)
    for artifact in manifest["artifacts"]:
        if artifact["format"] not in FORMATS:
            raise UsageError(f"artifact {artifact['path']!r} has unknown format "
                             f"{artifact['format']!r}; expected one of {', '.join(FORMATS)}")
        if not resolve_inside(directory, artifact["path"]).exists():
            raise UsageError(f"artifact {artifact['path']!r} is missing from {directory}; "
                             "run keras-resnet-verify")
    if keras_path is not None and not keras_path.is_file():
        raise UsageError(f"reference model {keras_entry['path']!r} is missing from {directory}")
    return keras_path


def format_table(rows: list[dict[str, Any]], threads: int) -> str:
    """A fixed-width text table of ``bench_dir`` rows."""
    batch = rows[0]["batch"] if rows else 0
    header = ("artifact", "format", "precision", "runtime", "batch-1 ms",
              f"img/s @ batch {batch}")
    body = [(r["name"], r["format"], r["precision"],
             r["runtime"] + (f" ({r['computed_in']})" if r.get("computed_in") else ""),
             f"{r['latency_ms']:.2f}", f"{r['throughput']:.1f}") for r in rows]
    return text_table(header, body) + f"\n({threads} threads, median of timed runs)"
