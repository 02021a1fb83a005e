"""Files in ``--model-dir``, each written to a temporary name and renamed when complete."""

from __future__ import annotations

import csv
import json
import os
import tempfile
from pathlib import Path
from typing import Any


def _umask_mode() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


CSV_FIELDS = ("step", "epoch", "learning_rate", "train_loss", "train_top1", "train_error",
              "train_images_per_sec", "eval_loss", "eval_top1", "eval_top5", "eval_error")


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file in the same folder + rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, _umask_mode())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def read_json(path: Path) -> Any:
    return json.loads(path.read_text())


def save_model_atomic(model: Any, path: Path) -> None:
    """``model.save`` to a temporary ``.keras`` file, then rename over ``path``."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".keras", dir=path.parent)
    os.close(fd)
    try:
        model.save(tmp)
        os.chmod(tmp, _umask_mode())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class CsvLog:
    """``log.csv``: one row per logged step; a resumed run drops rows past its start step."""

    def __init__(self, path: Path, start_step: int) -> None:
        self.path = path
        rows: list[dict[str, str]] = []
        if path.exists():
            with path.open(newline="") as f:
                rows = [r for r in csv.DictReader(f) if int(float(r["step"])) <= start_step]
        text = ",".join(CSV_FIELDS) + "\n"
        atomic_write_text(path, text)
        with path.open("a", newline="") as f:
            writer = csv.DictWriter(f, CSV_FIELDS, extrasaction="ignore")
            writer.writerows(rows)

    def append(self, row: dict[str, Any]) -> None:
        with self.path.open("a", newline="") as f:
            writer = csv.DictWriter(f, CSV_FIELDS, extrasaction="ignore")
            writer.writerow({k: ("" if row.get(k) is None else row[k]) for k in CSV_FIELDS})


def lock_model_dir(model_dir: Path) -> Any:
    """Hold ``model_dir``'s lock (:class:`keras_resnet.outputs.DirectoryLock`, the file
    ``.NAME.lock`` beside it) for this run; UsageError naming the holder's PID when another
    trainer or exporter holds it. Its parents are created first (the run creates them)."""
    from keras_resnet.training.errors import UsageError

    from keras_resnet.outputs import DirectoryLock, command_name

    try:
        Path(os.path.abspath(model_dir)).parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"--model-dir {str(model_dir)!r} cannot be created "
                         f"({exc.strerror or exc})") from None
    return DirectoryLock(model_dir, command_name()).acquire()


def release_lock(lock: Any) -> None:
    if lock is not None:
        lock.release()
