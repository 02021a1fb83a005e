"""Mirrored on two logical CPU devices and multi-worker with two processes on 127.0.0.1."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.slow(seconds=75)

# Runs the trainer in-process, then saves the trained weights (as the test's own artefact).
WORKER = textwrap.dedent("""
    import sys
    import numpy as np
    import tensorflow as tf
    logical = int(sys.argv[1])
    if logical > 1:
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * logical)
    from keras_resnet.training.cli import train_from_args
    result = train_from_args(sys.argv[3:])
    np.save(sys.argv[2], np.concatenate([w.ravel() for w in result.model.get_weights()]))
""")


def _start(script: Path, logical: int, weights: Path, args: list[str], env: dict[str, str],
           cwd: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(script), str(logical), str(weights), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=env, cwd=cwd)


def test_mirrored_on_two_logical_cpus(tmp_path: Path, th) -> None:
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    out = tmp_path / "run"
    proc = _start(script, 2, tmp_path / "w.npy",
                  [*th.TINY, "--steps", "10", "--strategy", "mirrored", "--model-dir", str(out),
                   "--seed", "3"], th.train_env(), th.REPO)
    log, _ = proc.communicate(timeout=1200)
    assert proc.returncode == 0, log
    m = th.metrics(out)
    assert (m["num_replicas"], m["strategy"], m["step"]) == (2, "mirrored", 10)
    assert m["eval_examples"] == 64
    assert np.isfinite(np.load(tmp_path / "w.npy")).all()


def test_multi_worker_two_processes_end_identical(tmp_path: Path, th) -> None:
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    ports = [th.free_port(), th.free_port()]
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    out = tmp_path / "run"
    procs = []
    for index in range(2):
        env = th.train_env(TF_CONFIG=json.dumps({"cluster": cluster,
                                              "task": {"type": "worker", "index": index}}))
        procs.append(_start(script, 1, tmp_path / f"w{index}.npy",
                            [*th.TINY, "--steps", "12", "--checkpoint-every", "6", "--model-dir",
                             str(out), "--seed", "5"], env, th.REPO))
    logs = []
    try:
        for proc in procs:
            logs.append(proc.communicate(timeout=1200)[0])
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    assert [p.returncode for p in procs] == [0, 0], "\n".join(logs)
    m = th.metrics(out)
    assert (m["num_replicas"], m["num_workers"], m["strategy"]) == (2, 2, "multi_worker")
    assert m["step"] == 12
    w0, w1 = np.load(tmp_path / "w0.npy"), np.load(tmp_path / "w1.npy")
    np.testing.assert_array_equal(w0, w1)
    # Only the chief wrote into the model dir; the other worker's temp dir is gone.
    assert "resumed" not in logs[1]
    assert sorted(p.name for p in (out / "checkpoints").glob("ckpt-*.index")) == [
        "ckpt-12.index", "ckpt-6.index"]
    assert "step 12/12" in logs[0] and "step 12/12" not in logs[1]
