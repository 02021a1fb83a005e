"""XLA for the training step: ``--jit-compile auto|on|off``.

``on`` compiles the per-replica forward/backward pass (and the evaluation forward pass) with
``tf.function(jit_compile=True)``; the gradient all-reduce and the optimizer update stay outside
XLA, so every strategy (one device, mirrored, multi-worker) runs the same compiled function and
the cross-replica collectives are untouched. ``auto`` decides from the machine (see
:func:`auto_wants_xla` and docs/training.md, "Benchmark", for the figures behind it), and
falls back to no XLA when XLA cannot lower the step (:func:`xla_lowers`).
"""

from __future__ import annotations

from typing import Any

JIT_CHOICES = ("auto", "on", "off")


def auto_wants_xla(device_kind: str, precision: str, replicas: int) -> bool:
    """``auto``'s choice before the lowering check.

    CPUs: off, in every precision and on every instruction set measured (docs/training.md,
    "Benchmark"): XLA's CPU convolutions do not use oneDNN's kernels, and a ResNet-50 step ran
    2.9-10x slower with XLA on an AVX-512/AVX512_BF16 CPU, in float32 and bfloat16, and with
    oneDNN and XLA limited to AVX2. Keras' own ``jit_compile="auto"`` is off on CPU-only
    machines too, so stock ``model.fit`` runs without XLA there. GPUs: on with one replica,
    off under a multi-replica strategy, as Keras' ``auto`` decides (not measured here). TPUs
    compile with XLA whatever this says.
    """
    del precision  # no precision made XLA faster on a CPU; kept for the GPU rule's future
    return device_kind == "gpu" and replicas == 1


def resolve_jit_compile(requested: str, device_kind: str, precision: str,
                        replicas: int = 1) -> bool:
    """Map ``--jit-compile`` to whether the step is XLA-compiled (before the lowering check)."""
    if requested == "auto":
        return auto_wants_xla(device_kind, precision, replicas)
    return requested == "on"


def xla_lowers(function: Any, *example_args: Any) -> str | None:
    """``None`` when XLA lowers ``function`` (a ``tf.function(jit_compile=True)``) for these
    arguments, else the first line of XLA's error. Only lowers to HLO: runs nothing, changes
    no variable and reads no data."""
    try:
        function.experimental_get_compiler_ir(*example_args)(stage="hlo")
    except Exception as exc:  # XLA reports unsupported ops as several error types
        return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return None
