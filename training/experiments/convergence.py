"""The running training error of a run and whether its errors were still falling at the end.

Running error: the paper's training curves (Figures 1, 4 and 6) are running errors of the
training batches, not single batches. A run's ``log.csv`` holds one point every
``--log-every`` steps, each the error over the batches since the previous point; the running
error at step s is their mean over the window (s - W, s], each point weighted by the steps it
covers (W: the experiment's ``--eval-every``, 1/20 of a run by default).

Convergence rule: a run has *not converged* when, over the last 20 % of its steps, a
least-squares line through its logged training-error points or through its test-error
points falls by more than 1 percentage point. Each curve needs at least 3 points in that
stretch to be judged; a run with neither judged is "not judged". Two nets compared before
both converged may still swap places with more steps, so their comparison is not conclusive.
"""

from __future__ import annotations

from typing import Any

import numpy as np

TAIL_FRACTION = 0.2  # the last part of the budget the rule looks at
MAX_TAIL_DROP_PTS = 1.0  # a fitted fall above this (percentage points) is "still falling"
MIN_TAIL_POINTS = 3
RULE = (f"not converged: over the last {TAIL_FRACTION * 100:g} % of its steps, a least-squares line "
        "through the logged training errors or through the test errors falls by more than "
        f"{MAX_TAIL_DROP_PTS:g} percentage point (at least {MIN_TAIL_POINTS} points needed "
        "to judge a curve)")


def running_error(train: list[dict[str, Any]], window: int) -> list[dict[str, Any]]:
    """``[{step, train_error}]``: at each logged step, the mean error of the training batches
    over the trailing ``window`` steps (each logged point weighted by the steps it covers)."""
    steps = np.array([p["step"] for p in train], dtype=float)
    errors = np.array([p["train_error"] for p in train], dtype=float)
    weights = np.maximum(np.diff(steps, prepend=0.0), 1.0)
    running = []
    for step in steps:
        inside = (steps > step - max(window, 1)) & (steps <= step)
        running.append({"step": int(step), "train_error": float(
            np.average(errors[inside], weights=weights[inside]))})
    return running


def tail_drop_pts(points: list[dict[str, Any]], key: str, last_step: int) -> float | None:
    """How many percentage points a least-squares line through ``points[key]`` falls over
    the last :data:`TAIL_FRACTION` of ``last_step`` steps (negative: it rises); None with
    fewer than :data:`MIN_TAIL_POINTS` points there."""
    start = last_step * (1.0 - TAIL_FRACTION)
    tail = [p for p in points if p["step"] >= start]
    if len({p["step"] for p in tail}) < MIN_TAIL_POINTS:
        return None
    steps = np.array([p["step"] for p in tail], dtype=float)
    slope = np.polyfit(steps, 100.0 * np.array([p[key] for p in tail], dtype=float), 1)[0]
    return float(-slope * (last_step - start))


def convergence(history: dict[str, list[dict[str, Any]]], last_step: int) -> dict[str, Any]:
    """``{"train_drop_pts", "test_drop_pts", "converged"}``: ``converged`` is False when
    either curve falls by more than :data:`MAX_TAIL_DROP_PTS`, None when neither could be
    judged, else True."""
    train = tail_drop_pts(history.get("train", []), "train_error", last_step)
    test = tail_drop_pts(history.get("eval", []), "eval_error", last_step)
    judged = [drop for drop in (train, test) if drop is not None]
    converged = None if not judged else all(drop <= MAX_TAIL_DROP_PTS for drop in judged)
    return {"train_drop_pts": train, "test_drop_pts": test, "converged": converged}
