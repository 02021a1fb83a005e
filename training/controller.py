"""The controller: runs the trainer's steps in loops and fires actions at loop boundaries
(checkpoints, evaluation, log lines, the SIGTERM save), in the manner of orbit's
``Controller``. Each loop runs up to the nearest step at which some action is due, so the
host talks to the devices once per loop, not once per step.

An action is a small object: ``every`` (the steps between its firings, which shape the
loops; None for an action looked at after every loop), optionally ``at`` (one step at which a
loop ends), ``due(state)`` and ``__call__(state)``, returning True to end the run there.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol


class StepRunner(Protocol):
    """What the controller needs of a trainer."""

    def train_steps(self, num_steps: int, stop_requested: Callable[[], bool]) -> bool: ...


@dataclass
class LoopState:
    """Where the run is, as the actions see it after each loop."""

    step: int
    start_step: int
    total_steps: int
    warm_steps: int
    stop_requested: bool = False  # some replica saw SIGTERM during the last loop
    stopped: bool = False  # an action ended the run
    train_seconds: float = 0.0  # time in training loops since the start (actions excluded)
    steady_steps: int = 0  # steps after the warm-up steps, and their time
    steady_seconds: float = 0.0

    @property
    def finished(self) -> bool:
        return self.step >= self.total_steps

    def advance(self, steps: int, seconds: float) -> None:
        if self.step >= self.start_step + self.warm_steps:
            self.steady_steps += steps
            self.steady_seconds += seconds
        self.step += steps
        self.train_seconds += seconds


class Action:
    """Base action: looked at after every loop, never due. ``at``: one step at which a loop
    must end (the action fires there once)."""

    every: int | None = None
    at: int | None = None

    def due(self, state: LoopState) -> bool:
        return False

    def __call__(self, state: LoopState) -> bool | None:
        return None


class Every(Action):
    """``fn(state)`` every ``every`` steps before the last step (0: never), and at the last
    step too when ``at_end``."""

    def __init__(self, every: int, fn: Callable[[LoopState], bool | None], *,
                 at_end: bool = False) -> None:
        self.every, self.fn, self.at_end = every or None, fn, at_end

    def due(self, state: LoopState) -> bool:
        if state.finished:
            return self.at_end
        return bool(self.every) and state.step % self.every == 0

    def __call__(self, state: LoopState) -> bool | None:
        return self.fn(state)


class AfterEveryLoop(Action):
    """``fn(state)`` after every loop (a check, such as a finite loss)."""

    def __init__(self, fn: Callable[[LoopState], bool | None]) -> None:
        self.fn = fn

    def due(self, state: LoopState) -> bool:
        return True

    def __call__(self, state: LoopState) -> bool | None:
        return self.fn(state)


class OnPreemption(Action):
    """``fn(state)`` (save, say goodbye) when a replica saw SIGTERM; ends the run."""

    def __init__(self, fn: Callable[[LoopState], Any]) -> None:
        self.fn = fn

    def due(self, state: LoopState) -> bool:
        return state.stop_requested

    def __call__(self, state: LoopState) -> bool:
        self.fn(state)
        return True


class PreemptionWatcher:
    """The SIGTERM flag: set by the signal, read by the train steps (installed only in the
    main thread; elsewhere it stays unset)."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: Any = None

    def __enter__(self) -> PreemptionWatcher:
        if hasattr(signal, "SIGTERM") and threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)
            self._previous = None

    def _handle(self, signum: int, frame: Any) -> None:
        self.requested = True


def warm_steps(start_step: int, total_steps: int) -> int:
    """Steps left out of the steady-state throughput: a tenth of the run (at least 2, the
    compilation), but never all of it."""
    left = total_steps - start_step
    return min(max(2, left // 10), max(left - 1, 0))


class Controller:
    """Runs ``trainer.train_steps`` from ``start_step`` to ``total_steps`` in loops, firing
    ``actions`` in their order after each loop."""

    def __init__(self, trainer: StepRunner, actions: Sequence[Action], *, start_step: int,
                 total_steps: int, preemption: PreemptionWatcher | None = None) -> None:
        self.trainer, self.actions = trainer, list(actions)
        self.preemption = preemption or PreemptionWatcher()
        self.state = LoopState(start_step, start_step, total_steps,
                               warm_steps(start_step, total_steps))

    def next_boundary(self) -> int:
        """The nearest step after the current one where an action may be due (its
        ``every`` or ``at``), the end of the warm-up steps, or the last step."""
        state = self.state
        step = state.step
        candidates = [state.total_steps]
        candidates += [(step // a.every + 1) * a.every for a in self.actions if a.every]
        candidates += [a.at for a in self.actions if getattr(a, "at", None)]
        if step < state.start_step + state.warm_steps:
            candidates.append(state.start_step + state.warm_steps)
        return min(c for c in candidates if c > step)

    def run(self) -> LoopState:
        """Loop until the last step or until an action ends the run; the final state."""
        state = self.state
        while not state.finished:
            steps = self.next_boundary() - state.step
            started = time.perf_counter()
            state.stop_requested = self.trainer.train_steps(
                steps, lambda: self.preemption.requested)
            state.advance(steps, time.perf_counter() - started)
            for action in self.actions:
                if action.due(state) and action(state):
                    state.stopped = True
                    return state
        return state
