"""Run an ONNX file with onnxruntime on an emulated x86 CPU (qemu user-mode emulation), so
int8 files can be checked on a CPU without VNNI from any machine.

qemu's ``-cpu Haswell`` exposes AVX2 and FMA and no AVX-512 or VNNI, so onnxruntime takes its
AVX2 int8 kernels (VPMADDUBSW, 16-bit saturating sums) as on such a machine. Run as a script
(``python export/emulation.py MODEL INPUTS OUTPUTS``) it is the child: it imports only numpy
and onnxruntime, never TensorFlow, which would take minutes under emulation.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

QEMU = "qemu-x86_64"
#: qemu CPU models whose int8 kernels differ from a VNNI machine's (qemu's TCG emulates no
#: AVX-512, so AVX-512 CPUs without VNNI cannot be emulated; they use the same VPMADDUBSW).
AVX2_CPU = "Haswell"


def emulator() -> str | None:
    """Path of qemu-x86_64 on an x86_64 host (Debian package ``qemu-user``), else None."""
    return shutil.which(QEMU) if platform.machine() in ("x86_64", "AMD64") else None


def run_onnx_emulated(path: Path, x: np.ndarray, cpu: str = AVX2_CPU,
                      timeout: float = 3600.0) -> np.ndarray:
    """Outputs of the ONNX file at ``path`` for ``x`` (already in the file's input layout),
    computed by onnxruntime on the emulated ``cpu``; RuntimeError if the child fails."""
    qemu = emulator()
    if qemu is None:
        raise RuntimeError(f"{QEMU} not found: install Debian's qemu-user to emulate {cpu}")
    with tempfile.TemporaryDirectory(prefix="keras-resnet-emulated-") as tmp:
        inputs, outputs = Path(tmp) / "x.npy", Path(tmp) / "y.npy"
        np.save(inputs, np.asarray(x, np.float32))
        # -0 keeps argv[0] the venv's python, so the child finds the same site-packages.
        command = [qemu, "-cpu", cpu, "-0", sys.executable, os.path.realpath(sys.executable),
                   str(Path(__file__).resolve()), str(path), str(inputs), str(outputs)]
        proc = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
        if proc.returncode or not outputs.is_file():
            tail = "\n".join(line for line in proc.stderr.splitlines()
                             if "TCG doesn't support" not in line)[-1500:]
            raise RuntimeError(f"onnxruntime on emulated {cpu} failed ({proc.returncode}):\n"
                               f"{tail}")
        return np.load(outputs)


def _child(model: str, inputs: str, outputs: str) -> None:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.log_severity_level = 3
    session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    x = np.load(inputs)
    y = [session.run(None, {name: x[i:i + 32]})[0] for i in range(0, len(x), 32)]
    np.save(outputs, np.concatenate(y))


if __name__ == "__main__":
    _child(*sys.argv[1:4])
