"""A seeded digits training run SIGKILLed at random moments and rerun ends with the weights of an
uninterrupted run (the full 20-kill figure comes from running the script by hand, see
docs/training.md)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow(seconds=300)  # four training processes, two of them killed

SCRIPT = Path(__file__).resolve().parent / "kill_training.py"


def test_two_sigkills_then_finish_match_uninterrupted_run(tmp_path: Path) -> None:
    figures = tmp_path / "figures.json"
    done = subprocess.run([sys.executable, str(SCRIPT), "--kills", "2", "--steps", "60",
                           "--seed", "3", "--out", str(tmp_path / "work"), "--json", str(figures)],
                          capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(figures.read_text())
    assert len(result["kills"]) == 2
    assert result["final_step"] == 60
    assert result["max_abs_difference"] <= 1e-5
    # Every attempt after a kill resumed from a checkpoint at or after the previous one.
    resumed = [kill["resumed_from"] for kill in result["kills"]]
    assert resumed == sorted(resumed) and all(step % 10 == 0 for step in resumed)


def test_refuses_an_existing_output_folder(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, str(SCRIPT), "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 2
    assert "--out" in done.stderr and "exists" in done.stderr
