"""Shared helpers for the trainer tests (run with ``--import-mode=importlib``)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

REPO = Path(__file__).resolve().parents[2]

# Small, fast settings shared by the trainer tests: ResNet-20 at 16x16.
TINY = ["--model", "resnet20", "--input-size", "16", "--batch-size", "32", "--log-every", "5",
        "--eval-examples", "64", "--mean-images", "256", "--threads", "1"]


@pytest.fixture
def no_heavy_work(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if a model is built, a strategy created or a dataset opened before the
    error it expects."""
    from keras_resnet.training import data, loop, trainer

    def forbidden(*args, **kwargs):
        raise AssertionError("heavy work started before validation")

    monkeypatch.setattr(trainer, "build_model", forbidden)
    monkeypatch.setattr(loop, "create_strategy", forbidden)
    monkeypatch.setattr(data.sources, "load_digits_arrays", forbidden)
    monkeypatch.delenv("TF_CONFIG", raising=False)


def train_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("TF_CONFIG", None)
    env.update({"PYTHONPATH": os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]),
                "TF_CPP_MIN_LOG_LEVEL": "2", "OMP_NUM_THREADS": "1",
                "TF_NUM_INTRAOP_THREADS": "1", "TF_NUM_INTEROP_THREADS": "1"})
    env.update(extra)
    return env


def run_cli(args: list[str], *, timeout: float = 1200, env: dict[str, str] | None = None,
            module: str = "keras_resnet.training") -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True,
                          timeout=timeout, env=env or train_env(), cwd=REPO)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def metrics(model_dir: Path) -> dict:
    return json.loads((model_dir / "metrics.json").read_text())


def _helpers() -> SimpleNamespace:
    return SimpleNamespace(REPO=REPO, TINY=list(TINY), train_env=train_env, run_cli=run_cli,
                           free_port=free_port, metrics=metrics)


@pytest.fixture
def th() -> SimpleNamespace:
    """Trainer-test helpers (conftest modules cannot be imported under importlib mode)."""
    return _helpers()


@pytest.fixture(scope="module")
def th_module() -> SimpleNamespace:
    """The same helpers, for module-scoped fixtures."""
    return _helpers()
