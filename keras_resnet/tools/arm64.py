"""``python -m keras_resnet.tools.arm64 DIR``: run an export's TFLite and ONNX files on an
emulated 64-bit ARM CPU (the boards' architecture) and check each against the Keras model.

The arm64 side is built once and cached (``--cache``, default
``~/.cache/keras-resnet/arm64``): Debian's arm64 Python and the libraries it needs, unpacked
with ``apt-get download`` + ``dpkg-deb -x`` (no root filesystem to boot), and the runtimes'
arm64 wheels from PyPI (``pip install --platform ... --target``). Each file then runs under
``qemu-aarch64`` user-mode emulation. Needs Debian's ``qemu-user`` and the arm64 package
lists (``dpkg --add-architecture arm64 && apt-get update``, done here when run as root).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from keras_resnet.export.errors import UsageError
from keras_resnet.tools.emulation import Machine, run_emulated

RUNTIMES = ("numpy", "onnxruntime", "ai-edge-litert")
WHEEL_PLATFORMS = ("manylinux_2_17_aarch64", "manylinux2014_aarch64", "manylinux_2_28_aarch64",
                   "manylinux_2_27_aarch64")
#: Emulated ARM cores (qemu ``-cpu``): the ``/proc/cpuinfo`` the runtimes read to pick their
#: kernels (qemu passes the host's x86 one through, on which they crash) and who ships one.
ARM_CPUS: dict[str, tuple[str, str, str]] = {
    "neoverse-n1": ("0xd0c", "fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp "
                    "asimdhp cpuid asimdrdm lrcpc dcpop asimddp",
                    "Armv8.2 with int8 dot product (as Jetson Orin's Cortex-A78AE)"),
    "cortex-a72": ("0xd08", "fp asimd evtstrm aes pmull sha1 sha2 crc32 cpuid",
                   "Armv8.0 without dot product (Raspberry Pi 4)"),
}
DEFAULT_CPU = "neoverse-n1"
DEFAULT_CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / \
    "keras-resnet" / "arm64"


def _run(command: list[str], log: Any, cwd: Path | None = None) -> str:
    log("$ " + " ".join(command))
    proc = subprocess.run(command, capture_output=True, text=True, cwd=cwd)
    if proc.returncode:
        raise RuntimeError(f"{command[0]} failed ({proc.returncode}): "
                           f"{(proc.stderr or proc.stdout).strip()[-800:]}")
    return proc.stdout


def _ensure_arm64_lists(log: Any) -> None:
    """Debian's arm64 package lists, added when missing and running as root."""
    if "arm64" in subprocess.run(["dpkg", "--print-foreign-architectures"],
                                 capture_output=True, text=True).stdout.split():
        return
    if os.geteuid() != 0:
        raise UsageError("Debian's arm64 packages are not enabled: run `dpkg --add-architecture "
                         "arm64 && apt-get update` as root first")
    _run(["dpkg", "--add-architecture", "arm64"], log)
    _run(["apt-get", "update", "-qq"], log)


def _python_packages(log: Any) -> tuple[str, list[str]]:
    """The arm64 python3.N version and every package its interpreter needs."""
    depends = _run(["apt-cache", "depends", "python3-minimal:arm64"], log)
    match = re.search(r"python(3\.\d+)-minimal", depends)
    if match is None:
        raise RuntimeError("no arm64 python3.N-minimal package found")
    version = match.group(1)
    roots = [f"python{version}-minimal:arm64", f"libpython{version}-stdlib:arm64",
             "libstdc++6:arm64"]
    tree = _run(["apt-cache", "depends", "--recurse", "--no-recommends", "--no-suggests",
                 "--no-conflicts", "--no-breaks", "--no-replaces", "--no-enhances", *roots], log)
    names = sorted({line.strip() for line in tree.splitlines()
                    if line and not line[0].isspace() and line.strip().endswith(":arm64")})
    return version, names


def _write_cpuinfo(sysroot: Path, cpu: str, cores: int = 2) -> None:
    """``sysroot/proc/cpuinfo`` for the emulated ``cpu`` (qemu's ``-L`` prefix is searched
    first for absolute paths, so the runtimes read this file)."""
    part, features, _ = ARM_CPUS[cpu]
    block = (f"BogoMIPS\t: 50.00\nFeatures\t: {features}\nCPU implementer\t: 0x41\n"
             f"CPU architecture: 8\nCPU variant\t: 0x0\nCPU part\t: {part}\n"
             "CPU revision\t: 1\n")
    (sysroot / "proc").mkdir(parents=True, exist_ok=True)
    (sysroot / "proc" / "cpuinfo").write_text(
        "".join(f"processor\t: {i}\n{block}\n" for i in range(cores)))


def prepare(cache: Path = DEFAULT_CACHE, cpu: str = DEFAULT_CPU, log: Any = print) -> Machine:
    """The cached arm64 Python with the runtimes (built on first use), on ``cpu``."""
    qemu = shutil.which("qemu-aarch64")
    if qemu is None:
        raise UsageError("qemu-aarch64 not found: install Debian's qemu-user")
    sysroot, site = cache / "sysroot", cache / "site"
    pythons = sorted(sysroot.glob("usr/bin/python3.*[0-9]"))
    if not (pythons and (site / "onnxruntime").is_dir() and (site / "ai_edge_litert").is_dir()):
        if shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None:
            raise UsageError("building the arm64 Python needs Debian's apt-get and dpkg-deb")
        _ensure_arm64_lists(log)
        version, packages = _python_packages(log)
        debs = cache / "debs"
        debs.mkdir(parents=True, exist_ok=True)
        _run(["apt-get", "download", *packages], log, cwd=debs)
        for deb in sorted(debs.glob("*.deb")):
            _run(["dpkg-deb", "-x", str(deb), str(sysroot)], lambda _: None)
        platforms = [arg for p in WHEEL_PLATFORMS for arg in ("--platform", p)]
        _run([sys.executable, "-m", "pip", "install", "-q", "--target", str(site),
              "--only-binary=:all:", "--implementation", "cp", "--python-version", version,
              *platforms, *RUNTIMES], log)
        pythons = sorted(sysroot.glob("usr/bin/python3.*[0-9]"))
    _write_cpuinfo(sysroot, cpu)
    return Machine(qemu, str(pythons[-1]), ("-cpu", cpu, "-L", str(sysroot)),
                   (("PYTHONPATH", str(site)), ("PYTHONNOUSERSITE", "1")))


def check_dir(directory: Path, machine: Machine, samples: int = 50,
              log: Any = print) -> list[dict[str, Any]]:
    """Every TFLite and ONNX artifact of ``directory`` run on ``machine``, compared with the
    stored Keras model as ``keras-resnet-verify`` does (same thresholds)."""
    import keras_resnet
    from keras_resnet.export.manifest import read_manifest
    from keras_resnet.export.verify import (
        DEFAULT_MIN_AGREEMENT,
        artifact_key,
        compare,
        keras_predict,
    )

    manifest = read_manifest(directory)
    x = _inputs(directory, manifest, samples)
    reference = keras_predict(keras_resnet.load_model(directory / "model.keras"), x)
    minimum = manifest.get("options", {}).get("min_agreement", DEFAULT_MIN_AGREEMENT)
    rows = []
    for artifact in manifest["artifacts"]:
        if artifact["format"] not in ("tflite", "onnx"):
            continue
        log(f"running {artifact_key(artifact)} on emulated arm64 ...")
        start = time.perf_counter()
        out = run_emulated(artifact["format"], directory / artifact["path"], x, machine,
                           nchw=artifact.get("layout") == "NCHW")
        figures = compare(reference, out, artifact["precision"], minimum,
                          len(np.load(directory / "parity_inputs.npy")))
        rows.append({"artifact": artifact_key(artifact), **figures,
                     "seconds": round(time.perf_counter() - start, 1)})
    return rows


def _inputs(directory: Path, manifest: dict[str, Any], samples: int) -> np.ndarray:
    """The stored parity batch plus ``samples`` images of the export's evaluation source."""
    from keras_resnet.export.samples import load_samples
    from keras_resnet.export.verify import manifest_preprocess

    x = np.load(directory / "parity_inputs.npy")
    evaluation, spec = manifest.get("evaluation", {}), manifest["input"]
    if evaluation.get("source") and not evaluation.get("in_memory") and samples:
        pixels, _ = load_samples(evaluation["source"], "test", samples,
                                 tuple(spec["shape"][1:3]), seed=evaluation.get("seed", 0))
        x = np.concatenate([x, manifest_preprocess(manifest)(pixels)])
    return x


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry; exit 0 when every file agrees, 1 otherwise, 2 for bad input."""
    from keras_resnet.cpu import cpu_line

    p = argparse.ArgumentParser(prog="python -m keras_resnet.tools.arm64", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("directory", type=Path, help="an export directory (manifest.json)")
    p.add_argument("--samples", type=int, default=50,
                   help="evaluation images besides the parity batch (default 50)")
    p.add_argument("--cpu", choices=list(ARM_CPUS), default=DEFAULT_CPU,
                   help="; ".join(f"{k}: {v[2]}" for k, v in ARM_CPUS.items()))
    p.add_argument("--cache", type=Path, default=DEFAULT_CACHE,
                   help=f"where the arm64 Python is kept (default {DEFAULT_CACHE})")
    args = p.parse_args(argv)
    if args.samples < 0:
        p.error(f"--samples must be at least 0 (got {args.samples})")
    if not (args.directory / "manifest.json").is_file():
        p.error(f"{args.directory} is not an export directory (no manifest.json)")
    started = time.perf_counter()
    try:
        machine = prepare(args.cache, args.cpu)
    except UsageError as exc:
        p.error(str(exc))
    rows = check_dir(args.directory, machine, args.samples)
    for row in rows:
        shown = {k: round(row[k], 6) for k in ("max_abs_diff", "top1_agreement") if k in row}
        print(f"{'ok' if row['passed'] else 'FAILED':6} {row['artifact']} {shown} "
              f"({row['seconds']} s)")
    print(f"emulated aarch64 {args.cpu} ({ARM_CPUS[args.cpu][2]}) under qemu on {cpu_line()}; "
          f"{time.perf_counter() - started:.0f} s in all")
    return 0 if rows and all(row["passed"] for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
