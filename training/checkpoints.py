"""Checkpoints of model, optimizer and step in ``DIR/checkpoints/`` and the guard that stops a
run from resuming (or overwriting) checkpoints of a different model or configuration.

``tf.train.CheckpointManager`` writes the data files first and updates the ``checkpoint``
index last, so a run killed mid-save resumes from the previous complete checkpoint.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from training.errors import UsageError
from training.outputs import read_json

RUN_CONFIG = "run_config.json"
CHECKPOINT_DIR = "checkpoints"


def latest_checkpoint(model_dir: Path) -> str | None:
    import tensorflow as tf

    directory = model_dir / CHECKPOINT_DIR
    return tf.train.latest_checkpoint(str(directory)) if directory.is_dir() else None


def has_checkpoints(model_dir: Path) -> bool:
    directory = model_dir / CHECKPOINT_DIR
    return directory.is_dir() and any(directory.iterdir())


def check_model_dir(model_dir: Path, identity: dict[str, Any]) -> bool:
    """Validate ``model_dir`` for a run with ``identity``; True when there is something to
    resume. Raises :class:`UsageError` for a dir holding a different run's results."""
    if model_dir.exists() and not model_dir.is_dir():
        raise UsageError(f"--model-dir {str(model_dir)!r} is a file")
    config_path = model_dir / RUN_CONFIG
    results = has_checkpoints(model_dir) or (model_dir / "model.keras").exists()
    if not results:
        return False  # nothing to resume and nothing that could be overwritten
    if not config_path.exists():
        raise UsageError(f"--model-dir {str(model_dir)!r} holds checkpoints or a model not "
                         "written by keras-resnet-train; use a new --model-dir")
    try:
        previous = read_json(config_path).get("identity", {})
    except (OSError, ValueError, AttributeError):
        raise UsageError(f"--model-dir {str(model_dir)!r} has an unreadable {RUN_CONFIG}") from None
    diffs = _differences(previous, identity)
    if diffs:
        first, there, now = diffs[0]
        raise UsageError(f"--model-dir {str(model_dir)!r} holds a different run ({first}: "
                         f"{there!r} there, {now!r} now); use a new --model-dir")
    return has_checkpoints(model_dir)


def _differences(previous: dict[str, Any], identity: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    """``(field, there, now)`` for each identity field that differs; a dict field (the
    network's builder options) names its first differing key, ``architecture.residual``."""
    diffs = []
    for key, now in identity.items():
        there = previous.get(key)
        if there == now:
            continue
        if isinstance(there, dict) and isinstance(now, dict):
            sub = next(k for k in sorted({*there, *now}) if there.get(k) != now.get(k))
            diffs.append((f"{key}.{sub}", there.get(sub), now.get(sub)))
        else:
            diffs.append((key, there, now))
    return diffs
