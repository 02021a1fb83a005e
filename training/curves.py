"""The curves the paper draws (Figures 1, 4 and 6): training error as thin lines, the
running error of the training batches logged every ``--log-every`` steps, and test error as
bold lines, at every evaluation. Both come from ``log.csv``, which a resumed run keeps up to
its start step, so the history of an interrupted run is whole."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any


def error(top1: float) -> float:
    """Top-1 error from top-1 accuracy."""
    return 1.0 - float(top1)


def _number(text: str | None) -> float | None:
    return float(text) if text not in (None, "") else None


def read_history(log_csv: Path) -> dict[str, list[dict[str, Any]]]:
    """``{"train": [{step, epoch, train_error, train_loss}], "eval": [{step, epoch,
    eval_error, eval_loss}]}`` from a run's ``log.csv``, in step order."""
    train: list[dict[str, Any]] = []
    evals: list[dict[str, Any]] = []
    if not log_csv.is_file():
        return {"train": train, "eval": evals}
    with log_csv.open(newline="") as f:
        for row in csv.DictReader(f):
            step, epoch = int(float(row["step"])), _number(row.get("epoch"))
            top1, eval_top1 = _number(row.get("train_top1")), _number(row.get("eval_top1"))
            if top1 is not None:
                train.append({"step": step, "epoch": epoch, "train_error": error(top1),
                              "train_loss": _number(row.get("train_loss"))})
            if eval_top1 is not None:
                evals.append({"step": step, "epoch": epoch, "eval_error": error(eval_top1),
                              "eval_loss": _number(row.get("eval_loss"))})
    return {"train": train, "eval": evals}
