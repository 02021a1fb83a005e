"""The CPU a figure was measured on: its model name and the instruction-set flags that decide
which float, bfloat16 and int8 kernels the runtimes pick (read from /proc/cpuinfo)."""

from __future__ import annotations

import platform
from pathlib import Path

#: Flags that change kernel choice: x86 vector width, int8 dot products (VNNI) and bfloat16;
#: ARM's dot-product (asimddp), int8 matrix multiply (i8mm) and bfloat16.
KERNEL_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16",
                "amx_tile", "amx_int8", "amx_bf16", "asimd", "asimddp", "i8mm", "bf16", "sve")
INT8_DOT_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8", "asimddp")


def _cpuinfo_fields(text: str) -> dict[str, str]:
    """The first processor's ``key: value`` lines of /proc/cpuinfo."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            if fields:
                break
            continue
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    return fields


def cpu_info(cpuinfo: str | None = None) -> dict[str, object]:
    """``{"machine", "model", "flags", "int8_dot_product"}``: the kernel-relevant flags of
    this CPU (x86 ``flags`` or ARM ``Features``), for reports and manifests."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            cpuinfo = ""
    fields = _cpuinfo_fields(cpuinfo)
    present = set((fields.get("flags") or fields.get("Features") or "").split())
    model = fields.get("model name") or fields.get("Model") or platform.processor() or "unknown"
    flags = [flag for flag in KERNEL_FLAGS if flag in present]
    return {"machine": platform.machine(), "model": model, "flags": flags,
            "int8_dot_product": any(flag in present for flag in INT8_DOT_FLAGS)}


def cpu_line(info: dict[str, object] | None = None) -> str:
    """One line naming the CPU: ``AMD EPYC (x86_64; avx2 fma avx512f avx512_vnni)``."""
    info = info or cpu_info()
    flags = " ".join(info["flags"]) or "no vector flags read"  # type: ignore[arg-type]
    return f"{info['model']} ({info['machine']}; {flags})"


def has_flag(*names: str) -> bool:
    """True when this CPU advertises any of ``names``."""
    return any(name in cpu_info()["flags"] for name in names)  # type: ignore[operator]
