"""The README's Python quick start, run verbatim in a fresh process: it trains, exports and
verifies, and every file it reports keeps the trained model's accuracy."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
pytestmark = pytest.mark.slow(seconds=300)  # trains ResNet-20 for 300 steps at 16 px, then exports


def quick_start() -> str:
    """The first ```python block under the README's "Quick start in Python" heading."""
    text = README.read_text()
    section = text[text.index("## Quick start in Python"):]
    return re.search(r"```python\n(.*?)```", section, re.DOTALL).group(1)


def test_quick_start_runs_verbatim(tmp_path: Path) -> None:
    (tmp_path / "quickstart.py").write_text(quick_start())
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    done = subprocess.run([sys.executable, "quickstart.py"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, done.stderr[-3000:]
    keras_top1 = float(re.search(r"Keras: top-1 ([0-9.]+) on 360 images", done.stdout).group(1))
    files = dict(re.findall(r"^(\S+) test top-1 ([0-9.]+)$", done.stdout, re.MULTILINE))
    assert keras_top1 > 0.9  # a trained model, not chance (10 classes)
    assert sorted(files) == ["model.onnx", "model_float32.tflite", "model_int8.onnx",
                             "model_int8.tflite"]
    # Within a point of the trainer's own evaluation (which ran at the training precision:
    # bfloat16 on CPUs that have it) for the float and the int8 files alike.
    for name, top1 in files.items():
        assert abs(float(top1) - keras_top1) <= 0.01, (name, top1, keras_top1)
    assert (tmp_path / "artifacts/quickstart/manifest.json").is_file()
