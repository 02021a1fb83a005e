"""Numeric precision: ``auto`` resolves to mixed_float16 on GPUs (with loss scaling),
mixed_bfloat16 on TPUs and on CPUs with AVX512_BF16 or AMX, float32 otherwise."""

from __future__ import annotations

from keras_resnet.cpu import has_flag

PRECISIONS = ("auto", "float32", "mixed_float16", "mixed_bfloat16")
_BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16", "amx_tile")


def cpu_has_bf16() -> bool:
    """True when the CPU advertises native bfloat16 (AVX512_BF16 or AMX) in /proc/cpuinfo."""
    return has_flag(*_BF16_CPU_FLAGS)


def resolve_precision(requested: str, device_kind: str) -> str:
    """Map ``--precision`` to a Keras dtype policy name for ``device_kind`` in cpu|gpu|tpu."""
    if requested != "auto":
        return requested
    if device_kind == "gpu":
        return "mixed_float16"
    if device_kind == "tpu":
        return "mixed_bfloat16"
    return "mixed_bfloat16" if cpu_has_bf16() else "float32"
