"""keras_resnet.cpu: the CPU named beside every figure, read from /proc/cpuinfo text."""

from __future__ import annotations

from keras_resnet.cpu import cpu_info, cpu_line

X86_AVX2 = """processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC 7B12
flags\t\t: fpu sse sse2 avx fma avx2 bmi2

processor\t: 1
model name\t: AMD EPYC 7B12
flags\t\t: fpu sse sse2 avx fma avx2 bmi2 avx512f avx512_vnni
"""
X86_VNNI = """processor\t: 0
model name\t: Intel(R) Xeon(R) Platinum 8488C
flags\t\t: avx2 fma avx512f avx512bw avx512_vnni avx512_bf16 amx_bf16 amx_tile amx_int8
"""
ARM = """processor\t: 0
BogoMIPS\t: 50.00
Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp asimddp i8mm bf16
CPU implementer\t: 0x41
"""


def test_avx2_cpu_has_no_int8_dot_product_and_only_the_first_processor_counts() -> None:
    info = cpu_info(X86_AVX2)
    assert info["model"] == "AMD EPYC 7B12"
    assert info["flags"] == ["avx2", "fma"]
    assert info["int8_dot_product"] is False


def test_vnni_and_amx_flags_are_named_in_a_fixed_order() -> None:
    info = cpu_info(X86_VNNI)
    assert info["flags"] == ["avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16",
                             "amx_tile", "amx_int8", "amx_bf16"]
    assert info["int8_dot_product"] is True
    assert cpu_line(info).startswith("Intel(R) Xeon(R) Platinum 8488C (")
    assert cpu_line(info).endswith("; avx2 fma avx512f avx512_vnni avx512_bf16 amx_tile "
                                   "amx_int8 amx_bf16)")


def test_arm_features_line_is_read() -> None:
    info = cpu_info(ARM)
    assert info["flags"] == ["asimd", "asimddp", "i8mm", "bf16"]
    assert info["int8_dot_product"] is True


def test_unreadable_cpuinfo_still_names_something() -> None:
    info = cpu_info("")
    assert info["flags"] == [] and info["int8_dot_product"] is False
    assert "no vector flags read" in cpu_line(info)
