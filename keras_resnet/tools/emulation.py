"""Run an export's TFLite and ONNX files on an emulated CPU with qemu user-mode emulation:
an x86 CPU without VNNI (``Haswell``: AVX2 and FMA, no AVX-512), or a 64-bit ARM board's
CPU (``aarch64``, with the arm64 Python of :mod:`keras_resnet.tools.arm64`).

Run as a script (``python emulation.py FORMAT MODEL INPUTS OUTPUTS LAYOUT RUNNERS``) this
file is the child: it loads the runners of the export package's ``tflite.py`` and
``onnx_export.py`` by path from the folder RUNNERS and imports only numpy and the runtime,
never TensorFlow (minutes under emulation).
"""

from __future__ import annotations

import importlib.util
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

#: qemu's CPU model whose int8 kernels differ from a VNNI machine's (qemu's TCG emulates no
#: AVX-512, so AVX-512 CPUs without VNNI cannot be emulated; they use the same VPMADDUBSW).
AVX2_CPU = "Haswell"
_HERE = Path(__file__).resolve().parent


def runner_folder() -> Path:
    """The folder of the export package, whose runner files the child loads by path."""
    spec = importlib.util.find_spec("keras_resnet.export")
    return Path(spec.submodule_search_locations[0])


@dataclass(frozen=True)
class Machine:
    """How to start this venv's Python, or an arm64 one, under qemu."""

    qemu: str
    python: str
    options: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()

    def command(self, *args: str) -> list[str]:
        return [self.qemu, *self.options, self.python, *args]


def emulator(name: str = "qemu-x86_64") -> str | None:
    """Path of a qemu user-mode emulator (Debian package ``qemu-user``), else None; the x86
    one only on an x86_64 host."""
    if name == "qemu-x86_64" and platform.machine() not in ("x86_64", "AMD64"):
        return None
    return shutil.which(name)


def avx2_machine() -> Machine:
    """This venv's Python on an emulated Haswell; RuntimeError without qemu-x86_64."""
    qemu = emulator()
    if qemu is None:
        raise RuntimeError("qemu-x86_64 not found: install Debian's qemu-user to emulate "
                           f"{AVX2_CPU}")
    # -0 keeps argv[0] the venv's python, so the child finds the same site-packages.
    return Machine(qemu, os.path.realpath(sys.executable),
                   ("-cpu", AVX2_CPU, "-0", sys.executable))


def run_emulated(fmt: str, path: Path, x: np.ndarray, machine: Machine | None = None,
                 nchw: bool = False, timeout: float = 3600.0) -> np.ndarray:
    """Outputs of the ``fmt`` (``onnx`` or ``tflite``) file at ``path`` for NHWC ``x``, run
    by its runtime on ``machine`` (default: the emulated AVX2 CPU)."""
    machine = machine or avx2_machine()
    with tempfile.TemporaryDirectory(prefix="keras-resnet-emulated-") as tmp:
        inputs, outputs = Path(tmp) / "x.npy", Path(tmp) / "y.npy"
        np.save(inputs, np.asarray(x, np.float32))
        command = machine.command(str(_HERE / "emulation.py"), fmt, str(path), str(inputs),
                                  str(outputs), "nchw" if nchw else "nhwc",
                                  str(runner_folder()))
        proc = subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                              env={**os.environ, **dict(machine.env)})
        if proc.returncode or not outputs.is_file():
            tail = "\n".join(line for line in proc.stderr.splitlines()
                             if "TCG doesn't support" not in line)[-1500:]
            raise RuntimeError(f"{fmt} on emulated {machine.options or machine.qemu} failed "
                               f"({proc.returncode}):\n{tail}")
        return np.load(outputs)


def run_onnx_emulated(path: Path, x: np.ndarray) -> np.ndarray:
    """The ONNX file's outputs for ``x`` (already in its input layout) on emulated AVX2."""
    return run_emulated("onnx", path, x)


def _runner_module(folder: str, name: str):  # noqa: ANN202 - a module loaded by path
    spec = importlib.util.spec_from_file_location(f"_emulated_{name}", Path(folder) / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while it loads
    spec.loader.exec_module(module)
    return module


def _child(fmt: str, model: str, inputs: str, outputs: str, layout: str, runners: str) -> None:
    if fmt == "tflite":
        runner = _runner_module(runners, "tflite").TFLiteRunner(Path(model), 1)
    else:
        runner = _runner_module(runners, "onnx_export").OnnxRunner(Path(model), 1,
                                                                  nchw=layout == "nchw")
    x = np.load(inputs)
    np.save(outputs, np.concatenate([runner(x[i:i + 32]) for i in range(0, len(x), 32)]))


if __name__ == "__main__":
    _child(*sys.argv[1:7])
