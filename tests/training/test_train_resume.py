"""Exact resume: SIGKILL loses only the steps since the last checkpoint, SIGTERM saves and
exits cleanly, and the resumed run ends with the weights of an uninterrupted one."""

from __future__ import annotations

import csv
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.slow(seconds=140)  # training processes killed and resumed

STEPS = 60


def _args(th, model_dir: Path) -> list[str]:
    return [*th.TINY, "--steps", str(STEPS), "--checkpoint-every", "10", "--seed", "7",
            "--model-dir", str(model_dir)]


def _start(th, model_dir: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "keras_resnet.training", *_args(th, model_dir)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=th.train_env(), cwd=th.REPO)


def _wait_for_checkpoint(model_dir: Path, step: int, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + 900  # hang guard, generous for a loaded machine
    index = model_dir / "checkpoints" / "checkpoint"
    while time.monotonic() < deadline and proc.poll() is None:
        if index.exists() and f"ckpt-{step}" in index.read_text():
            return
        time.sleep(0.02)
    raise AssertionError(f"no checkpoint {step} (exit {proc.poll()})")


def _weights(model_dir: Path) -> list[np.ndarray]:
    import keras

    return keras.models.load_model(model_dir / "model.keras", safe_mode=True).get_weights()


def _learning_rates(model_dir: Path) -> dict[int, str]:
    with (model_dir / "log.csv").open() as f:
        return {int(r["step"]): r["learning_rate"] for r in csv.DictReader(f) if r["learning_rate"]}


def test_sigkill_then_sigterm_then_finish_matches_uninterrupted(tmp_path: Path, th) -> None:
    reference = tmp_path / "reference"
    done = th.run_cli(_args(th, reference))
    assert done.returncode == 0, done.stderr
    assert "resumed" not in done.stdout

    run = tmp_path / "interrupted"
    proc = _start(th, run)
    _wait_for_checkpoint(run, 20, proc)
    proc.kill()  # SIGKILL
    proc.communicate(timeout=600)
    assert proc.returncode == -signal.SIGKILL
    assert not (run / "model.keras").exists()

    proc = _start(th, run)
    out = ""
    deadline = time.monotonic() + 900  # hang guard, generous for a loaded machine
    while "resumed from step" not in out and time.monotonic() < deadline:
        out += proc.stdout.readline()
    killed_at = int(re.search(r"resumed from step (\d+)", out).group(1))
    assert 20 <= killed_at < STEPS and killed_at % 10 == 0
    _wait_for_checkpoint(run, killed_at + 10, proc)
    proc.send_signal(signal.SIGTERM)
    rest, err = proc.communicate(timeout=900)
    out += rest
    assert proc.returncode == 143, err
    stopped = int(re.search(r"stopped by SIGTERM at step (\d+)", out).group(1))
    assert killed_at + 10 <= stopped <= STEPS
    assert "Traceback" not in err
    assert (run / "checkpoints" / f"ckpt-{stopped}.index").exists()

    if stopped < STEPS:
        final = th.run_cli(_args(th, run))
        assert final.returncode == 0, final.stderr
        assert f"resumed from step {stopped}" in final.stdout
    assert th.metrics(run)["step"] == STEPS
    # The schedule continued where it was: same learning rate at every logged step.
    assert _learning_rates(run) == _learning_rates(reference)
    for a, b in zip(_weights(run), _weights(reference), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert th.metrics(run)["eval_top1"] == th.metrics(reference)["eval_top1"]

    # Running the finished command again resumes at the end and changes nothing.
    again = th.run_cli(_args(th, run))
    assert again.returncode == 0, again.stderr
    assert f"resumed from step {STEPS}" in again.stdout
    assert th.metrics(run)["eval_top1"] == th.metrics(reference)["eval_top1"]
