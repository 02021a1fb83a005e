"""Kill ``keras-resnet-export`` at random moments and check what it leaves behind.

    python tests/reliability/kill_export.py --kills 10 --out DIR [--seed 0] [--model resnet20]

One uninterrupted export (a tiny ``.keras`` model the script makes, or ``--model``; ONNX and
TFLite) measures how long an export takes; then runs of the same command (``--force``, into
the same output) are sent SIGKILL after a seeded uniform delay in [0, 1.1 x that time]
(``--max-delay S``: in [0, S], without the uninterrupted export) until ``--kills`` of them
were killed (a run that ends first is checked too; at most twice ``--kills`` runs).
Odd-numbered runs start with no output, even-numbered ones with the previous result in
place (the ``--force`` replacement path). After each run:

* the output directory is absent, or complete: it has a manifest and ``keras-resnet-verify``
  passes on it (a half-written directory is a failure);
* the same command run again succeeds, and leaves no staging folder
  (``.NAME.partial-*``, ``.NAME.old-*``) beside the output.

The phase each kill landed in is read from the files on disk at the moment of the kill.
Prints one line per kill and a summary; writes ``DIR/kill_report.json``; exit 0 when every
check held, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

#: Generous guard against a hung export (not a timing assertion).
GUARD_S = 1800


def make_tiny_model(path: Path) -> None:
    """A small 16x16 classifier taking raw pixels (convolution, batch norm, ReLU, pooling,
    dense): quick to convert and verify, with the layers a ResNet exports."""
    import keras

    keras.utils.set_random_seed(0)
    layers = keras.layers
    pixels = keras.Input((16, 16, 3), name="pixels")
    x = layers.Conv2D(8, 3, padding="same", use_bias=False)(layers.Rescaling(1 / 255)(pixels))
    x = layers.ReLU()(layers.BatchNormalization()(x))
    probabilities = layers.Dense(4, activation="softmax")(layers.GlobalAveragePooling2D()(x))
    keras.Model(pixels, probabilities, name="tiny").save(path)


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONUNBUFFERED": "1", "TF_CPP_MIN_LOG_LEVEL": "3"}


def export_command(model: str, output: Path) -> list[str]:
    return [sys.executable, "-m", "keras_resnet.export", model, "-o", str(output), "--formats",
            "onnx,tflite", "--samples", "16", "--threads", "1", "--force"]


def staging_dirs(output: Path) -> list[Path]:
    """The hidden staging and set-aside folders of ``output``."""
    prefixes = (f".{output.name}.partial-", f".{output.name}.old-")
    return sorted(p for p in output.parent.iterdir() if p.name.startswith(prefixes))


def _identity(output: Path) -> tuple[int, str] | None:
    """The output directory's inode and its manifest's creation time, or None."""
    try:
        manifest = json.loads((output / "manifest.json").read_text())
        return output.stat().st_ino, str(manifest["created"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def phase(output: Path, before: tuple[int, str] | None) -> str:
    """Where the killed export was, from the files it left."""
    left = staging_dirs(output)
    if _identity(output) not in (None, before):
        return "after the rename (new output in place)"
    if any(".old-" in p.name for p in left):
        return "while replacing the old output"
    partial = [p for p in left if ".partial-" in p.name]
    if not partial:
        return "start-up (before the staging folder)"
    names = {p.name for p in partial[-1].iterdir()}
    if "manifest.json" in names:
        return "staging: manifest written, before the rename"
    if "model.onnx" in names:
        return "staging: ONNX"
    if any(n.endswith(".tflite") for n in names) or ".saved_model_for_tflite" in names:
        return "staging: SavedModel/TFLite"
    if names:
        return "staging: reference files"
    return "staging: empty (loading data and model)"


def verify(output: Path) -> tuple[bool, str]:
    """``keras-resnet-verify``'s check, in this process: digests and parity rerun."""
    from keras_resnet.export import UsageError, verify_dir

    try:
        report = verify_dir(output, threads=1)
    except UsageError as exc:
        return False, str(exc)
    return report["passed"], "; ".join(report["problems"])


def run(command: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(command, capture_output=True, text=True, env=_env(), timeout=GUARD_S)


def kill_once(command: list[str], output: Path, delay: float) -> dict[str, Any]:
    """Start ``command``, SIGKILL it after ``delay`` s (unless it ended), check the output."""
    before = _identity(output)
    log = output.parent / f".{output.name}.kill-log"
    with log.open("w") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.DEVNULL, env=_env())
        try:
            process.wait(timeout=delay)
            killed = False
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGKILL)
            process.wait()
            killed = True
    where = phase(output, before) if killed else f"finished first (exit {process.returncode})"
    printed = [line for line in log.read_text().splitlines() if line.strip()]
    log.unlink()
    state = {"delay_s": round(delay, 2), "killed": killed, "phase": where,
             "last_printed": printed[-1][:100] if printed else "",
             "output": "absent" if not output.exists() else "present"}
    state["ok_after_kill"] = True
    if output.exists():
        passed, line = verify(output)
        state["output"] = "complete, verified" if passed else f"BROKEN: {line}"
        state["ok_after_kill"] = passed
    rerun = run(command)
    left = staging_dirs(output)
    state["rerun_exit"] = rerun.returncode
    state["left_behind"] = [p.name for p in left]
    state["ok"] = state["ok_after_kill"] and rerun.returncode == 0 and not left
    if rerun.returncode:
        state["rerun_error"] = (rerun.stderr.strip().splitlines() or [""])[-1]
    return state


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--kills", type=int, default=10, help="how many exports to kill (10)")
    p.add_argument("--out", type=Path, required=True, help="working folder (created)")
    p.add_argument("--seed", type=int, default=0, help="seed of the kill moments (0)")
    p.add_argument("--model", help="zoo name or .keras file (default: a tiny model made here)")
    p.add_argument("--max-delay", type=float, help="kill within this many seconds instead of "
                   "1.1 x the time of an uninterrupted export (which is then not run)")
    args = p.parse_args(argv)
    if args.kills < 1:
        p.error(f"--kills must be at least 1 (got {args.kills})")
    args.out.mkdir(parents=True, exist_ok=True)
    model = args.model
    if model is None:
        model = str(args.out / "tiny.keras")
        make_tiny_model(Path(model))
    output = args.out / "export"
    shutil.rmtree(output, ignore_errors=True)
    for stale in staging_dirs(output):
        shutil.rmtree(stale)
    command = export_command(model, output)
    limit = args.max_delay
    if limit is None:
        start = time.perf_counter()
        first = run(command)
        limit = 1.1 * (time.perf_counter() - start)
        if first.returncode:
            print(f"the uninterrupted export failed: {first.stderr.strip()[-500:]}",
                  file=sys.stderr)
            return 1
        print(f"uninterrupted export: {limit / 1.1:.1f} s", flush=True)
    rng = random.Random(args.seed)
    results: list[dict[str, Any]] = []
    while sum(r["killed"] for r in results) < args.kills and len(results) < 2 * args.kills:
        i = len(results) + 1
        fresh = i % 2 == 1
        if fresh:
            shutil.rmtree(output, ignore_errors=True)
        state = kill_once(command, output, rng.uniform(0.0, limit))
        results.append(state)
        print(f"run {i:2d}, kill at {state['delay_s']:6.2f} s ({'no' if fresh else 'with'} "
              f"previous output): {state['phase']}; output {state['output']}; rerun exit "
              f"{state['rerun_exit']}{'' if state['ok'] else '  <-- FAILED'}; it had printed: "
              f"{state['last_printed'][:40] or '-'}", flush=True)
    ok = all(r["ok"] for r in results)
    summary = {"max_delay_s": round(limit, 1), "runs_started": len(results),
               "killed": sum(r["killed"] for r in results),
               "phases": dict(Counter(r["phase"] for r in results)),
               "outputs_after_kill": dict(Counter(r["output"] for r in results)),
               "reruns_succeeded": sum(r["rerun_exit"] == 0 for r in results),
               "all_ok": ok, "runs": results}
    (args.out / "kill_report.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps({k: v for k, v in summary.items() if k != "runs"}, indent=2))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
