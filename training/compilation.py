"""XLA for the training step: ``--jit-compile auto|on|off``.

``on`` compiles the per-replica forward/backward pass (and the evaluation forward pass) with
``tf.function(jit_compile=True)``; the gradient all-reduce and the optimizer update stay outside
XLA, so every strategy (one device, mirrored, multi-worker) runs the same compiled function and
the cross-replica collectives are untouched. ``auto`` decides from the machine (see
:func:`resolve_jit_compile` and docs/training.md, "Benchmark", for the figures behind it), and
falls back to no XLA when XLA cannot lower the step (:func:`xla_lowers`).
"""

from __future__ import annotations

from typing import Any

from keras_resnet.cpu import has_flag

JIT_CHOICES = ("auto", "on", "off")


def auto_wants_xla(device_kind: str, precision: str) -> bool:
    """``auto``'s choice before the lowering check: XLA only where it measured faster.

    CPUs: on for float32 on CPUs without AVX-512 (there XLA's fused element-wise code beats
    oneDNN's AVX2 kernels plus TensorFlow's op-by-op execution); off on AVX-512 CPUs and for
    bfloat16 (XLA's CPU convolutions do not use oneDNN's AVX512_BF16 kernels: 4.5 against 12.2
    img/s). GPUs and TPUs: off (unmeasured here; TPUs compile with XLA regardless).
    """
    if device_kind != "cpu" or precision != "float32":
        return False
    return not has_flag("avx512f")


def resolve_jit_compile(requested: str, device_kind: str, precision: str) -> bool:
    """Map ``--jit-compile`` to whether the step is XLA-compiled (before the lowering check)."""
    if requested == "auto":
        return auto_wants_xla(device_kind, precision)
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
