"""A training run, assembled from its named parts: the configuration
(:mod:`~keras_resnet.training.config`), the :class:`~keras_resnet.training.trainer.Trainer`
(model, optimizer, compiled steps, metrics), the
:class:`~keras_resnet.training.controller.Controller` (loops of steps) and the actions it
fires at loop boundaries (:mod:`~keras_resnet.training.actions`). One loop for one device,
mirrored, multi-worker and TPU strategies.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from keras_resnet.training import data as data_lib
from keras_resnet.training.actions import (
    Checkpointer,
    Evaluation,
    FiniteLoss,
    Progress,
    RunLogs,
    SaveOnStop,
    TrainLog,
    say,
)
from keras_resnet.training.checkpoints import (
    CHECKPOINT_DIR,
    RUN_CONFIG,
    check_model_dir,
    checkpoint_prefixes,
    choose_checkpoint,
)
from keras_resnet.training.config import TrainConfig
from keras_resnet.training.controller import (
    AfterEveryLoop,
    Controller,
    Every,
    OnPreemption,
    PreemptionWatcher,
)
from keras_resnet.training.curves import error, read_history
from keras_resnet.training.errors import UsageError
from keras_resnet.training.model import PREPROCESSING, float32_copy
from keras_resnet.training.outputs import (
    atomic_write_json,
    atomic_write_text,
    lock_model_dir,
    read_json,
    release_lock,
    save_model_atomic,
)
from keras_resnet.training.precision import resolve_precision
from keras_resnet.training.strategy import StrategyPlan, create_strategy, plan_strategy
from keras_resnet.training.trainer import Trainer, TrainInputs

SIGTERM_EXIT_CODE = 143


@dataclass
class TrainResult:
    """What a run produced.

    ``model``: the trained network (the training-precision network the loop trained; for a
    network built in code, the trained clone, taking the data's own input contract).
    ``metrics``: the final figures (``eval_top1``, ``eval_top5``, ``eval_loss`` on
    ``eval_examples`` test images, ``train_loss``/``train_top1`` of the last logged steps,
    ``train_examples``, ``step``...), as ``metrics.json`` holds them.
    ``history``: one row per logged step (and per evaluation) of ``log.csv``: ``step``,
    ``epoch``, ``learning_rate``, ``train_loss``, ``train_top1``, and ``eval_loss``,
    ``eval_top1``, ``eval_top5`` where that step was evaluated.
    """

    metrics: dict[str, Any]
    model: Any
    history: list[dict[str, Any]] = field(default_factory=list)
    chief: bool = True  # this process wrote the outputs (the chief of a multi-worker run)


@dataclass
class Prepared:
    """Checks done before any heavy work: strategy plan, model dir state and the checkpoint
    to resume from (the newest intact one)."""

    plan: StrategyPlan
    resume: bool
    checkpoint: str | None = None
    seen: tuple[str, ...] = ()  # the checkpoints found, compared again under the lock


def prepare(cfg: TrainConfig) -> Prepared:
    """Cheap validation: strategy/TF_CONFIG, replica divisibility, model dir compatibility."""
    if not str(cfg.output.model_dir).strip():
        raise UsageError("--model-dir is an empty string; name the run's directory")
    plan = plan_strategy(cfg.run.strategy)
    batch, model_dir = cfg.optim.batch_size, Path(cfg.output.model_dir)
    if plan.kind != "tpu" and batch % plan.num_replicas:
        raise UsageError(f"--batch-size {batch} is not divisible by the "
                         f"{plan.num_replicas} replicas of the {plan.kind} strategy")
    resume = check_model_dir(model_dir, cfg.identity())
    checkpoint = choose_checkpoint(model_dir) if resume else None
    if cfg.run.eval_only and checkpoint is None:
        raise UsageError(f"--eval-only: no checkpoint in {str(model_dir / CHECKPOINT_DIR)!r}")
    return Prepared(plan, checkpoint is not None, checkpoint,
                    tuple(checkpoint_prefixes(model_dir)))


def _data_seed(cfg: TrainConfig, prepared: Prepared) -> int:
    """``run.seed`` (then weights and ops are seeded too); else the seed of the run being
    resumed, or a fresh random one."""
    import keras
    import tensorflow as tf

    if cfg.run.seed is not None:
        keras.utils.set_random_seed(cfg.run.seed)
        tf.config.experimental.enable_op_determinism()
        return cfg.run.seed
    stored = Path(cfg.output.model_dir) / RUN_CONFIG
    if prepared.resume and stored.exists():
        return read_json(stored)["data_seed"]
    return int.from_bytes(os.urandom(3), "little")


@dataclass(frozen=True)
class RunInputs:
    """What a run takes besides its configuration: ``pretrained``
    (:class:`keras_resnet.training.finetune.Pretrained`, fresh starts only), an opened
    ``source`` (in-memory data or ``validation=``; None: ``cfg.data.dataset`` is opened),
    its ``contract`` (:class:`keras_resnet.training.in_memory.Contract`) and a ``network``
    built in code (:class:`keras_resnet.training.network.CodeNetwork`; None: the zoo's)."""

    pretrained: Any = None
    source: Any = None
    contract: Any = None
    network: Any = None


def run_training(cfg: TrainConfig, prepared: Prepared, pretrained: Any = None, *,
                 inputs: RunInputs | None = None) -> TrainResult:
    """Run (or resume) training, or evaluate with ``run.eval_only``; returns the result.
    ``pretrained``: as :attr:`RunInputs.pretrained`. The chief holds the model dir's lock
    throughout (:func:`keras_resnet.training.outputs.lock_model_dir`): another trainer or
    exporter on the same directory is refused at once."""
    model_dir = Path(cfg.output.model_dir)
    lock = lock_model_dir(model_dir) if prepared.plan.is_chief else None
    try:
        if lock is not None:
            _check_unchanged(cfg, prepared, model_dir)
        return _run_training(cfg, prepared, inputs or RunInputs(pretrained))
    finally:
        release_lock(lock)


def _check_unchanged(cfg: TrainConfig, prepared: Prepared, model_dir: Path) -> None:
    """Under the lock: the model dir still holds what :func:`prepare` found."""
    check_model_dir(model_dir, cfg.identity())
    if tuple(checkpoint_prefixes(model_dir)) != prepared.seen:
        raise UsageError(f"--model-dir {str(model_dir)!r} changed since this command checked "
                         "it (another run wrote to it); run the command again")


def _run_training(cfg: TrainConfig, prepared: Prepared, inputs: RunInputs) -> TrainResult:
    import keras

    plan = prepared.plan
    strategy = create_strategy(plan)
    replicas = strategy.num_replicas_in_sync
    if cfg.optim.batch_size % replicas:
        raise UsageError(f"--batch-size {cfg.optim.batch_size} is not divisible by the "
                         f"{replicas} replicas of the {plan.kind} strategy")
    previous_policy = keras.mixed_precision.global_policy()
    precision = resolve_precision(cfg.run.precision, plan.device_kind)
    keras.mixed_precision.set_global_policy(precision)
    seed = _data_seed(cfg, prepared)
    work_dir = (Path(cfg.output.model_dir) if plan.is_chief
                else Path(tempfile.mkdtemp(prefix="keras-resnet-worker-")))
    try:
        with PreemptionWatcher() as watcher:
            return _run(cfg, prepared, strategy, precision, seed, work_dir, watcher, inputs)
    finally:
        keras.mixed_precision.set_global_policy(previous_policy)
        if not plan.is_chief:
            shutil.rmtree(work_dir, ignore_errors=True)


def _open_inputs(cfg: TrainConfig, plan: StrategyPlan,
                 run_inputs: RunInputs) -> tuple[TrainInputs, int]:
    """The source, its augmentation and statistics, and the number of training images. The
    statistics decode the first ``data.mean_images`` training images: a damaged one is found
    here, before anything is written to the model dir."""
    data, size = cfg.data, cfg.model.input_size
    source = run_inputs.source or data_lib.open_source(
        data.dataset, input_size=size, data_dir=data.data_dir, download=data.download)
    flip = source.allow_flip if data.flip is None else data.flip
    aug = data_lib.Augmentation.from_recipe(
        data.augmentation if source.augment else {"type": "none"}, size, flip)
    num_train = source.shard_size("train", 0, 1, None)
    stats = data_lib.image_statistics(source, aug, data.mean_images)
    if aug.lighting_std:
        aug = aug.with_lighting(stats.rgb_eigval, stats.rgb_eigvec)
    return TrainInputs(source, aug, stats, plan.num_workers, run_inputs.contract), num_train


def _write_run_config(cfg: TrainConfig, plan: StrategyPlan, precision: str, seed: int,
                      total_steps: int, replicas: int, network: Any) -> None:
    """Create the model dir (chief); record the run (not for ``--eval-only``) and the
    configuration of a network built in code (``network.json``)."""
    model_dir = Path(cfg.output.model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    if not cfg.run.eval_only:
        if network is not None:
            from keras_resnet.training.network import NETWORK_FILE

            atomic_write_text(model_dir / NETWORK_FILE, network.config_json() + "\n")
        atomic_write_json(model_dir / RUN_CONFIG, {
            "identity": cfg.identity(), "config": cfg.to_json(), "data_seed": seed,
            "total_steps": total_steps, "num_replicas": replicas, "precision": precision,
            "strategy": plan.kind})


def _base_metrics(cfg: TrainConfig, plan: StrategyPlan, trainer: Trainer, precision: str,
                  total_steps: int) -> dict[str, Any]:
    return {"num_replicas": trainer.replicas, "num_workers": plan.num_workers,
            "precision": precision, "strategy": plan.kind, "model": cfg.model.name,
            "dataset": cfg.data.dataset, "recipe": cfg.recipe,
            "global_batch_size": cfg.optim.batch_size, "input_size": cfg.model.input_size,
            "total_steps": total_steps, "batch_norm": cfg.model.batch_norm, "jit_compile": trainer.jit,
            "architecture": cfg.model.architecture,
            "zero_init_residual": cfg.model.zero_init_residual,
            "weights": cfg.model.weights, "freeze": cfg.model.freeze,
            "qat": cfg.model.qat, "qat_scheme": cfg.model.qat_scheme,
            "network": cfg.model.network, "trainable_params": trainer.trainable_params}


@dataclass
class _Run:
    """One run's parts, as :func:`_run` assembles them."""

    cfg: TrainConfig
    plan: StrategyPlan
    trainer: Trainer
    checkpointer: Checkpointer
    schedule: Any
    num_train: int
    work_dir: Path
    seed: int
    base_metrics: dict[str, Any]
    network: Any = None


def _run(cfg: TrainConfig, prepared: Prepared, strategy: Any, precision: str, seed: int,
         work_dir: Path, watcher: PreemptionWatcher, run_inputs: RunInputs) -> TrainResult:
    plan, network = prepared.plan, run_inputs.network
    inputs, num_train = _open_inputs(cfg, plan, run_inputs)
    total_steps = cfg.total_steps(num_train)
    schedule = cfg.make_schedule(total_steps)
    if plan.is_chief:
        _write_run_config(cfg, plan, precision, seed, total_steps,
                          strategy.num_replicas_in_sync, network)
    trainer = Trainer(cfg, strategy, inputs, schedule, precision, run_inputs.pretrained,
                      device_kind=plan.device_kind, network=network)
    for line in trainer.notes:
        say(line, plan.is_chief)
    checkpointer = Checkpointer(trainer, work_dir / CHECKPOINT_DIR, cfg.output.keep_checkpoints)
    start_step = 0
    if prepared.checkpoint:
        start_step = checkpointer.restore(prepared.checkpoint)
        say(f"evaluating the checkpoint of step {start_step}" if cfg.run.eval_only
            else f"resumed from step {start_step}", plan.is_chief)
    run = _Run(cfg, plan, trainer, checkpointer, schedule, num_train, work_dir, seed,
               {**_base_metrics(cfg, plan, trainer, precision, total_steps),
                "train_examples": num_train}, network)
    if cfg.run.eval_only:
        return TrainResult({**run.base_metrics, "step": start_step, **trainer.evaluate()},
                           _returned_model(run))
    return _train_loop(run, start_step, total_steps, watcher)


def _train_loop(run: _Run, start_step: int, total_steps: int,
                watcher: PreemptionWatcher) -> TrainResult:
    """The controller with the trainer's actions, from ``start_step`` to the end (or to a
    SIGTERM), then the final save, evaluation and outputs."""
    cfg, trainer, chief = run.cfg, run.trainer, run.plan.is_chief
    logs = RunLogs(run.work_dir, start_step)
    progress = Progress(total_steps, chief)
    train_log = TrainLog(trainer, run.schedule, progress, logs, run.num_train, start_step)
    actions = [*_qat_actions(run, start_step, total_steps),
               AfterEveryLoop(FiniteLoss(trainer, cfg)),
               Every(cfg.run.log_every, train_log, at_end=True),
               OnPreemption(SaveOnStop(run.checkpointer, progress, chief)),
               Every(cfg.run.eval_every, Evaluation(trainer, logs, progress, run.num_train,
                                                    chief)),
               Every(cfg.run.checkpoint_every, run.checkpointer)]
    trainer.open_train_data(run.seed, start_step)
    state = Controller(trainer, actions, start_step=start_step, total_steps=total_steps,
                       preemption=watcher).run()
    if state.stopped:
        logs.train.flush()
        return TrainResult({**run.base_metrics, "step": state.step, "stopped": True},
                           _returned_model(run), read_log(run.work_dir / "log.csv"))
    progress.newline()
    if state.step > start_step or not run.checkpointer.manager.latest_checkpoint:
        run.checkpointer.save(state.step)
    eval_results = trainer.evaluate()
    epoch = state.step * cfg.optim.batch_size / run.num_train
    logs.log_eval(state.step, epoch, eval_results)
    logs.flush()
    steady_ips = (state.steady_steps * cfg.optim.batch_size / state.steady_seconds
                  if state.steady_seconds > 0 else None)
    metrics = {**run.base_metrics, "step": state.step, "epoch": epoch, **train_log.last,
               **eval_results, "train_images_per_sec": steady_ips,
               "learning_rate": run.schedule.value(state.step), "data_seed": run.seed,
               "train_error": error(train_log.last["train_top1"]),
               "eval_error": error(eval_results["eval_top1"]),
               "history": read_history(run.work_dir / "log.csv")}
    if chief:
        _write_outputs(cfg, trainer, metrics, run.network)
    say(f"step {state.step}: eval top-1 {eval_results['eval_top1']:.4f} top-5 "
        f"{eval_results['eval_top5']:.4f} ({eval_results['eval_examples']} images); "
        f"{steady_ips or 0:.1f} img/s; wrote {Path(cfg.output.model_dir) / 'model.keras'}",
        chief)
    return TrainResult(metrics, _returned_model(run), read_log(run.work_dir / "log.csv"))


def _qat_actions(run: _Run, start_step: int, total_steps: int) -> list[Any]:
    """Quantization-aware training: the observers' state set for ``start_step`` (a resumed
    run), and the action freezing them, first, so that a checkpoint of that step holds them
    frozen."""
    if not run.cfg.model.qat:
        return []
    from keras_resnet.training.qat import ObserverFreeze, freeze_step, set_observing

    at = freeze_step(run.cfg.schedule.qat_observe_fraction, total_steps)
    set_observing(run.trainer.model, start_step, at)
    return [ObserverFreeze(run.trainer.model, at, run.plan.is_chief)]


def _returned_model(run: _Run) -> Any:
    """The network the result holds: the zoo's training network, or the trained clone of a
    network built in code (without the pixels-to-contract layer in front)."""
    return run.network.trained if run.network is not None else run.trainer.model


def read_log(log_csv: Path) -> list[dict[str, Any]]:
    """``log.csv`` as rows of numbers (None where a column is empty)."""
    import csv

    if not log_csv.is_file():
        return []
    with log_csv.open(newline="") as f:
        rows = list(csv.DictReader(f))
    return [{k: (int(float(v)) if k == "step" else float(v)) if v not in ("", None) else None
             for k, v in row.items()} for row in rows]


def _final_model(cfg: TrainConfig, trainer: Trainer, network: Any) -> tuple[Any, str, str]:
    """The saved network (float32), what it does inside and what it outputs. A zoo network
    takes the data's contract too: a layer in front maps it to the pixels 0..255 it was
    trained on."""
    import keras

    contract = trainer.inputs.contract
    if network is not None:
        return network.trained, "the network built in code", (
            "softmax probabilities" if network.output == "softmax" else "logits")
    size = cfg.model.input_size
    final = float32_copy(trainer.model, cfg.model.model, input_size=size,
                         classes=trainer.classes, preprocessing=cfg.model.preprocessing,
                         model_kwargs=cfg.model.architecture,
                         qat_scheme=cfg.model.qat_scheme if cfg.model.qat else None)
    inside = PREPROCESSING[cfg.model.preprocessing]
    if contract is not None and not contract.is_raw_pixels:
        inputs = keras.Input((size, size, 3), dtype="float32", name="image")
        x = contract.layer(to_data=False, name="to_pixels")(inputs)
        final = keras.Model(inputs, final(x), name=final.name)
        inside = f"to pixels 0..255, then {inside}"
    return final, inside, "softmax probabilities"


def _write_outputs(cfg: TrainConfig, trainer: Trainer, metrics: dict[str, Any],
                   network: Any = None) -> None:
    """``model.keras`` (float32), ``labels.json`` and ``metrics.json``. labels.json states
    the input contract: ``input_range`` (the pixel range the network takes), ``mean`` and
    ``std`` (per channel: the inputs are ``(pixel - mean) / std``; None: raw pixels), the
    channel order and layout, and the ``output`` (softmax or logits)."""
    from keras_resnet.training.in_memory import Contract

    model_dir, size, source = Path(cfg.output.model_dir), cfg.model.input_size, trainer.inputs.source
    contract = trainer.inputs.contract or Contract()
    final, inside, output = _final_model(cfg, trainer, network)
    save_model_atomic(final, model_dir / "model.keras")
    atomic_write_json(model_dir / "labels.json", {
        "labels": source.labels, "input_size": size,
        "preprocessing": f"input: {contract.describe_values()} NHWC {size}x{size}; "
                         f"in the model: {inside}; output: {output}",
        **contract.run_json(), "channel_order": "RGB", "layout": "NHWC",
        "output": "logits" if output == "logits" else "softmax"})
    atomic_write_json(model_dir / "metrics.json", metrics)
