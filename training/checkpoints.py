"""Checkpoints of model, optimizer and step in ``DIR/checkpoints/`` and the guard that stops a
run from resuming (or overwriting) checkpoints of a different model or configuration.

``tf.train.CheckpointManager`` writes the data files first and updates the ``checkpoint``
index last, so a run killed mid-save resumes from the previous complete checkpoint.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
from pathlib import Path
from typing import Any

from keras_resnet.training.config import upgrade_identity
from keras_resnet.training.errors import UsageError
from keras_resnet.training.outputs import read_json

RUN_CONFIG = "run_config.json"
CHECKPOINT_DIR = "checkpoints"


def latest_checkpoint(model_dir: Path) -> str | None:
    """The newest intact checkpoint of ``model_dir`` (see :func:`newest_intact_checkpoint`)."""
    return newest_intact_checkpoint(model_dir)[0]


def checkpoint_prefixes(model_dir: Path) -> list[str]:
    """Checkpoint prefixes in ``DIR/checkpoints``, newest first: those the ``checkpoint``
    index lists, or, when it is missing or unreadable, every ``ckpt-N.index`` found."""
    import tensorflow as tf

    directory = model_dir / CHECKPOINT_DIR
    if not directory.is_dir():
        return []
    try:
        state = tf.train.get_checkpoint_state(str(directory))
        listed = list(state.all_model_checkpoint_paths) if state else []
    except Exception:  # a damaged index file: protobuf text-format errors
        listed = []
    if not listed:
        listed = [str(p.with_suffix("")) for p in directory.glob("ckpt-*.index")]
    paths = {str(directory / Path(p).name) for p in listed}
    return sorted(paths, key=_number, reverse=True)


def _number(prefix: str) -> int:
    match = re.search(r"-(\d+)$", prefix)
    return int(match.group(1)) if match else -1


def checkpoint_problem(prefix: str) -> str | None:
    """Why the checkpoint at ``prefix`` cannot be restored (a missing or truncated
    ``.index`` or ``.data`` file, a checksum mismatch), or None when every tensor reads."""
    import tensorflow as tf

    try:
        reader = tf.train.load_checkpoint(prefix)
        for name in reader.get_variable_to_shape_map():
            reader.get_tensor(name)
    except Exception as exc:  # DataLossError, NotFoundError, OutOfRangeError, ...
        text = str(exc).strip().splitlines()
        return text[0] if text else type(exc).__name__
    return None


def newest_intact_checkpoint(model_dir: Path) -> tuple[str | None, list[str]]:
    """The newest checkpoint whose every tensor reads back, and a note for each newer one
    that does not. ``(None, notes)`` when none is intact."""
    notes = []
    for prefix in checkpoint_prefixes(model_dir):
        problem = checkpoint_problem(prefix)
        if problem is None:
            return prefix, notes
        notes.append(f"checkpoint {Path(prefix).name} is corrupt ({problem})")
    return None, notes


def choose_checkpoint(model_dir: Path) -> str | None:
    """The checkpoint to resume from: the newest intact one, saying on stderr which newer
    ones were skipped; UsageError when checkpoints exist but none is intact."""
    prefix, notes = newest_intact_checkpoint(model_dir)
    if prefix is None and notes:
        raise UsageError(f"--model-dir {str(model_dir)!r}: no intact checkpoint to resume "
                         f"({'; '.join(notes)}); remove {CHECKPOINT_DIR}/ to start over or use "
                         "a new --model-dir")
    for note in notes:
        print(f"warning: {note}; resuming from {Path(prefix).name}", file=sys.stderr)
    return prefix


def has_checkpoints(model_dir: Path) -> bool:
    directory = model_dir / CHECKPOINT_DIR
    return directory.is_dir() and any(directory.iterdir())


def check_writable(model_dir: Path, probe: bool = True) -> None:
    """``model_dir`` or its nearest existing parent is a directory; with ``probe``, one this
    process can create files in (tried with an empty temporary folder, removed at once).
    Else UsageError."""
    place = next((p for p in (model_dir, *model_dir.parents) if os.path.lexists(p)), Path("."))
    if not place.is_dir():
        raise UsageError(f"--model-dir {str(model_dir)!r}: {str(place)!r} is not a directory")
    if not probe:
        return
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".keras-resnet-probe-", dir=place))
    except OSError as exc:
        raise UsageError(f"--model-dir {str(model_dir)!r} cannot be written "
                         f"({exc.strerror or exc})") from None


def check_model_dir(model_dir: Path, identity: dict[str, Any]) -> bool:
    """Validate ``model_dir`` for a run with ``identity``; True when there is something to
    resume. Raises :class:`UsageError` for a dir holding a different run's results, or one
    that cannot be created or written (probed last, once everything else holds)."""
    if model_dir.exists() and not model_dir.is_dir():
        raise UsageError(f"--model-dir {str(model_dir)!r} is a file")
    check_writable(model_dir, probe=False)
    resume = _check_identity(model_dir, identity)
    check_writable(model_dir)
    return resume


def _check_identity(model_dir: Path, identity: dict[str, Any]) -> bool:
    config_path = model_dir / RUN_CONFIG
    results = has_checkpoints(model_dir) or (model_dir / "model.keras").exists()
    if not results:
        return False  # nothing to resume and nothing that could be overwritten
    if not config_path.exists():
        raise UsageError(f"--model-dir {str(model_dir)!r} holds checkpoints or a model not "
                         "written by keras-resnet-train; use a new --model-dir")
    try:
        previous = upgrade_identity(read_json(config_path).get("identity", {}))
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
