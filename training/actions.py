"""The trainer's actions at loop boundaries (see :mod:`keras_resnet.training.controller`):
checkpoints, evaluation, log lines with the progress display, TensorBoard scalars and CSV
rows, the finite-loss check and the SIGTERM save. Only the chief prints; every worker writes
its files (the non-chief ones into a temporary folder)."""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Any

from keras_resnet.training.controller import LoopState
from keras_resnet.training.curves import error
from keras_resnet.training.errors import UsageError
from keras_resnet.training.outputs import CsvLog


def say(msg: str, chief: bool) -> None:
    """Print a line on the chief only."""
    if chief:
        print(msg, flush=True)


class Progress:
    """A one-line progress display: step, images/s, loss, top-1 (a line per log on non-TTYs)."""

    def __init__(self, total: int, chief: bool) -> None:
        self.total, self.chief = total, chief
        self.tty = sys.stdout.isatty()

    def update(self, step: int, epoch: float, ips: float, loss: float, top1: float, lr: float) -> None:
        if not self.chief:
            return
        width = 24
        done = int(width * step / max(self.total, 1))
        bar = "=" * done + "." * (width - done)
        line = (f"step {step}/{self.total} [{bar}] epoch {epoch:.2f} - {ips:.1f} img/s - "
                f"loss {loss:.4f} - top-1 {top1:.4f} - lr {lr:.5g}")
        if self.tty:
            print("\r" + line, end="", flush=True)
        else:
            print(line, flush=True)

    def newline(self) -> None:
        if self.chief and self.tty:
            print(flush=True)


def scalar(name: str, value: float, step: int | None = None) -> None:
    """A TensorBoard scalar through ``tf.summary.write`` (no ``tensorboard`` package needed)."""
    import tensorflow as tf
    from tensorflow.core.framework import summary_pb2

    metadata = summary_pb2.SummaryMetadata()
    metadata.plugin_data.plugin_name = "scalars"
    tf.summary.write(name, tf.constant(float(value), tf.float32), step=step, metadata=metadata)


class RunLogs:
    """``tensorboard/train``, ``tensorboard/eval`` and ``log.csv`` of a work dir."""

    def __init__(self, work_dir: Path, start_step: int) -> None:
        import tensorflow as tf

        self.train = tf.summary.create_file_writer(str(work_dir / "tensorboard" / "train"))
        self.eval = tf.summary.create_file_writer(str(work_dir / "tensorboard" / "eval"))
        self.csv = CsvLog(work_dir / "log.csv", start_step)

    def log_train(self, step: int, epoch: float, results: dict[str, float], lr: float,
                  ips: float) -> None:
        loss, top1 = results["train_loss"], results["train_top1"]
        with self.train.as_default(step=step):
            for name, value in (("loss", loss), ("top1", top1), ("error", error(top1)),
                                ("learning_rate", lr), ("images_per_sec", ips)):
                scalar(name, value)
        self.csv.append({"step": step, "epoch": round(epoch, 4), "learning_rate": lr,
                         "train_loss": loss, "train_top1": top1, "train_error": error(top1),
                         "train_images_per_sec": round(ips, 2)})

    def log_eval(self, step: int, epoch: float, results: dict[str, Any]) -> None:
        with self.eval.as_default(step=step):
            for name, key in (("loss", "eval_loss"), ("top1", "eval_top1"),
                              ("top5", "eval_top5")):
                scalar(name, results[key])
            scalar("error", error(results["eval_top1"]))
        self.csv.append({"step": step, "epoch": round(epoch, 4), **results,
                         "eval_error": error(results["eval_top1"])})

    def flush(self) -> None:
        self.train.flush()
        self.eval.flush()


class Checkpointer:
    """Model, optimizer and step in ``directory`` through ``tf.train.CheckpointManager``
    (the batch-norm statistics synchronised first); fired every ``run.checkpoint_every``."""

    def __init__(self, trainer: Any, directory: Path, keep: int) -> None:
        import tensorflow as tf

        self.trainer = trainer
        self.manager = tf.train.CheckpointManager(trainer.checkpoint, str(directory),
                                                  max_to_keep=keep)

    def restore(self, prefix: str) -> int:
        """Restore ``prefix``; the step it was saved at."""
        from keras_resnet.training.model import refresh_normalization

        self.trainer.checkpoint.restore(prefix).assert_existing_objects_matched()
        refresh_normalization(self.trainer.model)
        return int(self.trainer.step.numpy())

    def save(self, step: int) -> None:
        self.trainer.sync_statistics()
        self.trainer.step.assign(step)
        self.manager.save(checkpoint_number=step)

    def __call__(self, state: LoopState) -> None:
        self.save(state.step)


class TrainLog:
    """A log line: the training metrics since the previous one (then reset), the learning
    rate and the images per second of the training loops in between."""

    def __init__(self, trainer: Any, schedule: Any, progress: Progress, logs: RunLogs,
                 num_train: int, start_step: int) -> None:
        self.trainer, self.schedule, self.progress, self.logs = trainer, schedule, progress, logs
        self.num_train = num_train
        self.last = {"train_loss": float("nan"), "train_top1": float("nan")}
        self._mark = (start_step, 0.0)

    def __call__(self, state: LoopState) -> None:
        batch = self.trainer.global_batch
        steps, seconds = state.step - self._mark[0], state.train_seconds - self._mark[1]
        self._mark = (state.step, state.train_seconds)
        self.last = self.trainer.train_results(reset=True)
        ips = steps * batch / max(seconds, 1e-9)
        lr = self.schedule.value(state.step)
        epoch = state.step * batch / self.num_train
        self.progress.update(state.step, epoch, ips, self.last["train_loss"],
                             self.last["train_top1"], lr)
        self.logs.log_train(state.step, epoch, self.last, lr, ips)


class Evaluation:
    """An evaluation during training: logged, and printed on the chief."""

    def __init__(self, trainer: Any, logs: RunLogs, progress: Progress, num_train: int,
                 chief: bool) -> None:
        self.trainer, self.logs, self.progress = trainer, logs, progress
        self.num_train, self.chief = num_train, chief

    def __call__(self, state: LoopState) -> None:
        results = self.trainer.evaluate()
        self.logs.log_eval(state.step, state.step * self.trainer.global_batch / self.num_train,
                           results)
        self.progress.newline()
        say(f"step {state.step}: eval top-1 {results['eval_top1']:.4f} "
            f"top-5 {results['eval_top5']:.4f}", self.chief)


class FiniteLoss:
    """Stops the run with a UsageError when the loss is no longer finite; the checkpoints
    before that step are kept."""

    def __init__(self, trainer: Any, cfg: Any) -> None:
        self.trainer, self.cfg = trainer, cfg

    def __call__(self, state: LoopState) -> None:
        loss = self.trainer.train_results(reset=False)["train_loss"]
        if math.isfinite(loss):
            return
        optim = self.cfg.optim
        raise UsageError(
            f"the loss became {loss} at step {state.step} (peak learning rate "
            f"{optim.peak_learning_rate:g}, weight decay {optim.weight_decay:g}, label smoothing "
            f"{optim.label_smoothing:g}); a lower --learning-rate usually helps, and the "
            "checkpoints before this step are kept")


class SaveOnStop:
    """After SIGTERM: save a checkpoint and say how to resume."""

    def __init__(self, checkpointer: Checkpointer, progress: Progress, chief: bool) -> None:
        self.checkpointer, self.progress, self.chief = checkpointer, progress, chief

    def __call__(self, state: LoopState) -> None:
        self.checkpointer.save(state.step)
        self.progress.newline()
        say(f"stopped by SIGTERM at step {state.step}; checkpoint saved, run the same command "
            "to resume", self.chief)
