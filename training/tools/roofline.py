"""Where a ResNet training step spends its time, and how fast this CPU can go:
``python -m keras_resnet.training.tools.roofline [--model resnet50] [--batch 32] [--size 224] [--steps 2]``.

1. Peak rates of TensorFlow's oneDNN kernels on this machine: a 4096^2 matmul and a large
   3x3 convolution, float32 and bfloat16, in GFLOP/s.
2. For each (precision, batch norm) pair, a child process runs a bare training step (forward,
   loss, gradients, SGD update; no input pipeline) with ``ONEDNN_VERBOSE`` timestamps and one
   inter-op thread, so that primitives do not overlap, and sums oneDNN's own execution times
   per primitive and direction over the timed steps.
3. The ceiling: the convolution FLOPs of one step (3 x 2 x the model's MACs x batch: forward,
   backward data and backward weights) at the measured bfloat16 peak, against 3x a float32
   step with Keras' batch norm (what ``model.fit`` computes).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
VARIANTS = (("float32", "keras"), ("float32", "fused"), ("mixed_bfloat16", "keras"),
            ("mixed_bfloat16", "fused"))


def kernel_peaks(repeats: int = 5) -> dict[str, float]:
    """GFLOP/s of a 4096^2 matmul and a 32x56x56x128 3x3 convolution, float32 and bfloat16."""
    import tensorflow as tf

    out: dict[str, float] = {}
    for dtype in (tf.float32, tf.bfloat16):
        a = tf.cast(tf.random.normal((4096, 4096)), dtype)
        x = tf.cast(tf.random.normal((32, 56, 56, 128)), dtype)
        w = tf.cast(tf.random.normal((3, 3, 128, 128)), dtype)
        cases = {"matmul": (tf.function(lambda a: tf.matmul(a, a)), (a,), 2 * 4096**3),
                 "conv3x3": (tf.function(lambda x, w: tf.nn.conv2d(x, w, 1, "SAME")), (x, w),
                             2 * 32 * 56 * 56 * 9 * 128 * 128)}
        for name, (fn, args, flops) in cases.items():
            fn(*args).numpy()
            start = time.perf_counter()
            for _ in range(repeats):
                result = fn(*args)
            result.numpy()
            out[f"{name}_{dtype.name}"] = flops * repeats / (time.perf_counter() - start) / 1e9
    return out


def _child(model_name: str, precision: str, batch_norm: str, batch: int, size: int,
           steps: int) -> None:
    """Run warm-up + timed bare steps; print the timed window (ms since the epoch) as JSON."""
    import keras
    import tensorflow as tf
    from keras_resnet.training.fused_norm import with_fused_batch_norm

    import keras_resnet

    keras.mixed_precision.set_global_policy(precision)
    model = keras_resnet.create_model(model_name, weights=None, input_shape=(size, size, 3),
                                      classes=1000, classifier_activation=None)
    if batch_norm == "fused":
        model = with_fused_batch_norm(model)
    optimizer = keras.optimizers.SGD(0.1, momentum=0.9)
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    x = tf.random.uniform((batch, size, size, 3))
    y = tf.random.uniform((batch,), 0, 1000, tf.int32)

    @tf.function
    def step(x, y):
        with tf.GradientTape() as tape:
            loss = loss_fn(y, tf.cast(model(x, training=True), tf.float32))
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables, strict=True))
        return loss

    for _ in range(2):
        step(x, y).numpy()
    start = time.time() * 1000
    for _ in range(steps):
        step(x, y).numpy()
    end = time.time() * 1000
    print(json.dumps({"window_ms": [start, end]}), file=sys.stderr, flush=True)


def primitive_breakdown(model: str, precision: str, batch_norm: str, batch: int, size: int,
                        steps: int) -> dict[str, Any]:
    """Seconds per step by oneDNN primitive and direction, and the step's wall time."""
    env = dict(os.environ, ONEDNN_VERBOSE="1", ONEDNN_VERBOSE_TIMESTAMP="1",
               TF_NUM_INTEROP_THREADS="1", TF_CPP_MIN_LOG_LEVEL="3",
               PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run([sys.executable, "-m", "keras_resnet.training.tools.roofline", "--child",
                           precision, batch_norm, "--model", model, "--batch", str(batch), "--size",
                           str(size), "--steps", str(steps)],
                          capture_output=True, text=True, env=env, timeout=1800)
    if proc.returncode:
        raise RuntimeError(f"child failed ({precision}, {batch_norm}):\n{proc.stderr[-2000:]}")
    window = next(json.loads(line)["window_ms"] for line in proc.stderr.splitlines()
                  if line.startswith('{"window_ms"'))
    seconds: collections.Counter[str] = collections.Counter()
    for line in proc.stdout.splitlines():
        fields = line.split(",")
        if (len(fields) < 10 or fields[0] != "onednn_verbose" or fields[3] != "primitive"
                or fields[4] != "exec"):
            continue
        if not window[0] <= float(fields[2]) <= window[1]:
            continue
        seconds[f"{fields[6]} {fields[8]}".replace(" undef", "")] += float(fields[-1]) / 1000
    per_step = {k: v / steps for k, v in seconds.most_common()}
    return {"precision": precision, "batch_norm": batch_norm,
            "step_s": (window[1] - window[0]) / 1000 / steps, "primitives_s": per_step}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m keras_resnet.training.tools.roofline",
                                     description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="resnet50", help="a keras_resnet model name")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--steps", type=int, default=2, help="timed steps per variant")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    parser.add_argument("--child", nargs=2, metavar=("PRECISION", "BATCH_NORM"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # before keras_resnet imports TensorFlow
    for flag in ("batch", "size", "steps"):
        if getattr(args, flag) <= 0:
            parser.error(f"--{flag} must be positive, got {getattr(args, flag)}")
    import keras_resnet

    if args.model.lower() not in keras_resnet.list_models():
        parser.error(f"--model: unknown model {args.model!r}; one of "
                     f"{', '.join(keras_resnet.list_models())}")
    if args.child:
        _child(args.model, *args.child, args.batch, args.size, args.steps)
        return 0
    info = keras_resnet.model_info(args.model)
    macs = keras_resnet.profile(keras_resnet.create_model(
        args.model, weights=None, input_shape=(args.size, args.size, 3), classes=1000))["macs"]
    conv_gflop = 3 * 2 * macs * args.batch / 1e9
    peaks = kernel_peaks()
    print(f"{args.model} ({info['family']}), batch {args.batch}, {args.size}x{args.size}: "
          f"{macs / 1e9:.3f} GMAC per image, {conv_gflop:.0f} GFLOP per step (convolutions; the classifier adds < 0.1 %)")
    print("kernel peaks (GFLOP/s): " + ", ".join(f"{k} {v:.0f}" for k, v in peaks.items()))
    runs = [primitive_breakdown(args.model, p, b, args.batch, args.size, args.steps)
            for p, b in VARIANTS]
    for run in runs:
        conv = sum(v for k, v in run["primitives_s"].items() if k.startswith("convolution"))
        if not conv:
            print("error: ONEDNN_VERBOSE reported no convolution: oneDNN is not active in this "
                  "TensorFlow (TF_ENABLE_ONEDNN_OPTS=0, or not an x86 build)", file=sys.stderr)
            return 1
        run["convolution_s"] = conv
        print(f"\n{run['precision']}, batch norm {run['batch_norm']}: {run['step_s']:.2f} s/step "
              f"({args.batch / run['step_s']:.2f} img/s), convolutions {conv:.2f} s "
              f"({conv_gflop / conv:.0f} GFLOP/s), all oneDNN primitives "
              f"{sum(run['primitives_s'].values()):.2f} s")
        for name, sec in list(run["primitives_s"].items())[:8]:
            print(f"  {sec:7.3f} s  {name}")
    baseline = runs[0]["step_s"]  # float32, Keras batch norm: what stock model.fit runs
    best_conv = conv_gflop / max(peaks["conv3x3_bfloat16"], peaks["matmul_bfloat16"])
    print(f"\n3x the float32/Keras-BN step timed here = {baseline / 3:.2f} s/step (the benchmark's "
          f"stock model.fit is the target's real baseline); bfloat16 convolutions "
          f"alone at the measured kernel peak: {best_conv:.2f} s/step, as run here: "
          f"{runs[3]['convolution_s']:.2f} s/step.")
    print(f"best ratio this CPU allows with the measured convolutions and nothing else: "
          f"{baseline / runs[3]['convolution_s']:.2f}x; measured bf16 fused step: "
          f"{baseline / runs[3]['step_s']:.2f}x")
    if args.json:
        Path(args.json).write_text(json.dumps({"conv_gflop_per_step": conv_gflop, "peaks": peaks,
                                               "runs": runs}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
