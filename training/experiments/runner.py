"""Runs an experiment's trainer runs one after the other in this process.

A run whose ``metrics.json`` exists is finished and skipped; any other run is trained with
:func:`keras_resnet.training.train`, in this process (one TensorFlow start-up and one
decoded dataset for all runs, and no command line to re-parse; ``keras.backend.clear_session``
frees each run's graph), and the trainer resumes it from its last checkpoint. A run is
written down as its ``keras-resnet-train`` command line, which :func:`run_call` turns into
:func:`~keras_resnet.training.train`'s arguments.
Each run folder keeps that command line (``experiment_run.json``): a rerun with other
options is refused before anything is trained, since it would mix two experiments.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from keras_resnet.training.checkpoints import check_model_dir
from keras_resnet.training.config import TrainConfig
from keras_resnet.training.errors import UsageError
from keras_resnet.training.experiments.plan import RunSpec
from keras_resnet.training.outputs import atomic_write_json, read_json

COMMAND_FILE = "experiment_run.json"


@dataclass(frozen=True)
class PlannedRun:
    """A run with its trainer command line and its state before the experiment starts."""

    spec: RunSpec
    argv: list[str]
    directory: Path
    finished: bool


def _recorded_argv(argv: list[str]) -> list[str]:
    """The command line without ``--model-dir`` and ``--threads`` (an experiment folder may
    be moved, and the thread count does not change the results)."""
    kept, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg in ("--model-dir", "--threads"):
            skip = True
        else:
            kept.append(arg)
    return kept


def resolve_run(spec: RunSpec, argv: list[str]) -> TrainConfig:
    """The run's training configuration, as ``keras-resnet-train`` resolves ``argv``."""
    from keras_resnet.training import data
    from keras_resnet.training.cli import build_train_parser, config_from_args

    import keras_resnet

    args = build_train_parser().parse_args(argv)
    cfg = config_from_args(args, keras_resnet.model_info(spec.model)["family"])
    data.check_dataset_name(cfg.data.dataset)
    return cfg


def validate_run(spec: RunSpec, argv: list[str]) -> TrainConfig:
    """Everything ``keras-resnet-train`` checks before heavy work, for one run."""
    cfg = resolve_run(spec, argv)
    check_model_dir(Path(cfg.output.model_dir), cfg.identity())
    return cfg


def plan_state(spec: RunSpec, out: Path, common: list[str]) -> PlannedRun:
    """Validate a run and find whether it is finished; raises :class:`UsageError` when its
    folder holds a run made with another command line."""
    argv = spec.trainer_argv(out, common)
    directory = out / spec.name
    validate_run(spec, argv)
    command = directory / COMMAND_FILE
    if command.is_file():
        previous = read_json(command).get("argv")
        if previous != _recorded_argv(argv):
            raise UsageError(f"{str(directory)!r} was trained with other options "
                             f"({' '.join(previous or [])}); use another --out")
    finished = (directory / "metrics.json").is_file() and (directory / "model.keras").is_file()
    return PlannedRun(spec, argv, directory, finished)


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m{rest % 60:02d}s"


class ExperimentProgress:
    """The whole experiment's progress line, printed above each run's own progress bar:
    runs done of total, elapsed time and an estimate of the time left (from the runs
    trained so far, in proportion to depth)."""

    def __init__(self, experiment: str, runs: list[PlannedRun]) -> None:
        self.experiment, self.runs = experiment, runs
        self.start = time.monotonic()
        self.trained_seconds = 0.0
        self.trained_cost = 0.0

    def done(self) -> int:
        return sum(run.finished for run in self.runs)

    def line(self, index: int) -> str:
        run = self.runs[index]
        left_cost = sum(r.spec.depth for r in self.runs if not r.finished)
        if self.trained_cost:
            estimate = f"about {_clock(self.trained_seconds / self.trained_cost * left_cost)} left"
        else:
            estimate = "estimate after the first run"
        return (f"[{self.experiment}] run {index + 1}/{len(self.runs)} {run.spec.name}: "
                f"{self.done()}/{len(self.runs)} done, elapsed "
                f"{_clock(time.monotonic() - self.start)}, {estimate}")

    def record(self, index: int, seconds: float) -> None:
        run = self.runs[index]
        self.runs[index] = PlannedRun(run.spec, run.argv, run.directory, True)
        self.trained_seconds += seconds
        self.trained_cost += run.spec.depth


def run_call(argv: list[str]) -> tuple[tuple[str, str, str], dict[str, Any]]:
    """``((model, data, model_dir), settings)``: :func:`keras_resnet.training.train`'s
    arguments for the trainer command line ``argv``."""
    from keras_resnet.training.cli import build_train_parser, settings_from_args
    from keras_resnet.training.config import default_of

    args = build_train_parser().parse_args(argv)
    return ((args.model, args.dataset or default_of("dataset"), args.model_dir),
            settings_from_args(args))


def run_all(experiment: str, runs: list[PlannedRun]) -> bool:
    """Train every unfinished run; False when a run was stopped by SIGTERM (its checkpoint
    is saved: rerunning the experiment resumes it)."""
    import keras
    from keras_resnet.training import train

    progress = ExperimentProgress(experiment, list(runs))
    for index, run in enumerate(runs):
        if run.finished:
            print(f"[{experiment}] {run.spec.name}: finished earlier, skipped", flush=True)
            continue
        print(progress.line(index), flush=True)
        atomic_write_json(run.directory / COMMAND_FILE, {"argv": _recorded_argv(run.argv)})
        started = time.monotonic()
        positional, settings = run_call(run.argv)
        result: Any = train(*positional, **settings)
        stopped = bool(result.metrics.get("stopped"))
        del result
        keras.backend.clear_session()
        if stopped:
            return False
        progress.record(index, time.monotonic() - started)
    print(f"[{experiment}] {len(runs)}/{len(runs)} runs done in "
          f"{_clock(time.monotonic() - progress.start)}", flush=True)
    return True
