"""The one training loop: ``tf.function`` + ``strategy.run`` +
``distribute_datasets_from_function``, identical for one device, mirrored, multi-worker and TPU.

Keras 3 ``model.fit`` fails under ``MultiWorkerMirroredStrategy`` (a PerReplica conversion
error) while this custom loop keeps workers in sync, so every strategy uses it.
"""

from __future__ import annotations

import math
import os
import shutil
import signal
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from keras_resnet.training import data as data_lib
from keras_resnet.training.checkpoints import (
    CHECKPOINT_DIR,
    RUN_CONFIG,
    check_model_dir,
    choose_checkpoint,
)
from keras_resnet.training.compilation import resolve_jit_compile, xla_lowers
from keras_resnet.training.config import TrainConfig
from keras_resnet.training.curves import error, read_history
from keras_resnet.training.errors import UsageError
from keras_resnet.training.model import (
    PREPROCESSING,
    build_model,
    float32_copy,
    refresh_normalization,
)
from keras_resnet.training.outputs import CsvLog, atomic_write_json, read_json, save_model_atomic
from keras_resnet.training.precision import resolve_precision
from keras_resnet.training.strategy import StrategyPlan, create_strategy, plan_strategy

SIGTERM_EXIT_CODE = 143


@dataclass
class TrainResult:
    """What a run produced: its metrics and the trained (training-precision) model."""

    metrics: dict[str, Any]
    model: Any


@dataclass
class Prepared:
    """Checks done before any heavy work: strategy plan, model dir state and the checkpoint
    to resume from (the newest intact one)."""

    plan: StrategyPlan
    resume: bool
    checkpoint: str | None = None


def prepare(cfg: TrainConfig) -> Prepared:
    """Cheap validation: strategy/TF_CONFIG, replica divisibility, model dir compatibility."""
    plan = plan_strategy(cfg.strategy)
    if plan.kind != "tpu" and cfg.batch_size % plan.num_replicas:
        raise UsageError(f"--batch-size {cfg.batch_size} is not divisible by the "
                         f"{plan.num_replicas} replicas of the {plan.kind} strategy")
    resume = check_model_dir(Path(cfg.model_dir), cfg.identity())
    checkpoint = choose_checkpoint(Path(cfg.model_dir)) if resume else None
    if cfg.eval_only and checkpoint is None:
        raise UsageError(f"--eval-only: no checkpoint in {str(Path(cfg.model_dir) / CHECKPOINT_DIR)!r}")
    return Prepared(plan, checkpoint is not None, checkpoint)


class _Stop:
    """SIGTERM flag: the loop saves a checkpoint at the next step and exits."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: Any = None

    def install(self) -> None:
        if hasattr(signal, "SIGTERM") and _in_main_thread():
            self._previous = signal.signal(signal.SIGTERM, self._handle)

    def uninstall(self) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)

    def _handle(self, signum: int, frame: Any) -> None:
        self.requested = True


def _in_main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def _print(msg: str, chief: bool) -> None:
    if chief:
        print(msg, flush=True)


class _Progress:
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


def _make_optimizer(cfg: TrainConfig, schedule: Any, precision: str) -> Any:
    import keras

    opt = keras.optimizers.SGD(learning_rate=schedule, momentum=float(cfg.optimizer["momentum"]),
                               nesterov=bool(cfg.optimizer.get("nesterov", False)))
    if precision == "mixed_float16":
        opt = keras.optimizers.LossScaleOptimizer(opt)
    return opt


def _decayed_variables(model: Any, decay_norm_and_bias: bool) -> list[Any]:
    """Weights that get L2 decay: all trainable ones, or (``modern``) only kernels (rank > 1)."""
    variables = list(model.trainable_variables)
    if decay_norm_and_bias:
        return variables
    return [v for v in variables if len(v.shape) > 1]


def train(cfg: TrainConfig, prepared: Prepared) -> TrainResult:
    """Run (or resume) training, or evaluate with ``cfg.eval_only``; returns the metrics."""
    import keras
    import tensorflow as tf

    plan = prepared.plan
    strategy = create_strategy(plan)
    replicas = strategy.num_replicas_in_sync
    if cfg.batch_size % replicas:
        raise UsageError(f"--batch-size {cfg.batch_size} is not divisible by the {replicas} "
                         f"replicas of the {plan.kind} strategy")
    chief = plan.is_chief
    model_dir = Path(cfg.model_dir)
    previous_policy = keras.mixed_precision.global_policy()
    precision = resolve_precision(cfg.precision, plan.device_kind)
    keras.mixed_precision.set_global_policy(precision)
    seed = cfg.seed
    if seed is not None:
        keras.utils.set_random_seed(seed)
        tf.config.experimental.enable_op_determinism()
    else:
        stored = model_dir / RUN_CONFIG
        seed = read_json(stored)["data_seed"] if prepared.resume and stored.exists() else \
            int.from_bytes(os.urandom(3), "little")
    work_dir = model_dir if chief else Path(tempfile.mkdtemp(prefix="keras-resnet-worker-"))
    stop = _Stop()
    try:
        stop.install()
        return _run(cfg, prepared, strategy, precision, seed, work_dir, stop)
    finally:
        stop.uninstall()
        keras.mixed_precision.set_global_policy(previous_policy)
        if not chief:
            shutil.rmtree(work_dir, ignore_errors=True)


def _run(cfg: TrainConfig, prepared: Prepared, strategy: Any, precision: str, seed: int,
         work_dir: Path, stop: _Stop) -> TrainResult:
    import keras
    import tensorflow as tf

    plan = prepared.plan
    chief = plan.is_chief
    model_dir = Path(cfg.model_dir)
    replicas = strategy.num_replicas_in_sync
    num_pipelines = plan.num_workers
    global_batch = cfg.batch_size
    per_replica = global_batch // replicas
    per_pipeline = global_batch // num_pipelines

    source = data_lib.open_source(cfg.dataset, input_size=cfg.input_size, data_dir=cfg.data_dir,
                                  download=cfg.download)
    flip = source.allow_flip if cfg.flip is None else cfg.flip
    aug = data_lib.Augmentation.from_recipe(
        cfg.augmentation if source.augment else {"type": "none"}, cfg.input_size, flip)
    num_train = source.shard_size("train", 0, 1, None)
    total_steps = cfg.total_steps(num_train)
    schedule = cfg.make_schedule(total_steps)
    # The statistics decode the first --mean-images training images: a damaged one is found
    # here, before anything is written to the model dir.
    stats = data_lib.image_statistics(source, aug, cfg.mean_images)
    if chief:
        model_dir.mkdir(parents=True, exist_ok=True)
        run_config = {"identity": cfg.identity(), "config": cfg.to_json(), "data_seed": seed,
                      "total_steps": total_steps, "num_replicas": replicas,
                      "precision": precision, "strategy": plan.kind}
        if not cfg.eval_only:
            atomic_write_json(model_dir / RUN_CONFIG, run_config)

    pixel_mean, channel_std = stats.pixel_mean, stats.channel_std
    if aug.lighting_std:
        aug = aug.with_lighting(stats.rgb_eigval, stats.rgb_eigvec)
    with strategy.scope():
        model = build_model(cfg.model, input_size=cfg.input_size, classes=source.num_classes,
                            preprocessing=cfg.preprocessing, pixel_mean=pixel_mean,
                            channel_std=channel_std, zero_init_residual=cfg.zero_init_residual,
                            softmax=False, fused_batch_norm=cfg.batch_norm == "fused",
                            model_kwargs=cfg.architecture)
        optimizer = _make_optimizer(cfg, schedule, precision)
        optimizer.build(model.trainable_variables)
    step_var = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
    checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer, step=step_var)
    manager = tf.train.CheckpointManager(checkpoint, str(work_dir / CHECKPOINT_DIR),
                                         max_to_keep=cfg.keep_checkpoints)
    start_step = 0
    latest = prepared.checkpoint
    if latest:
        checkpoint.restore(latest).assert_existing_objects_matched()
        refresh_normalization(model)
        start_step = int(step_var.numpy())
        _print(f"evaluating the checkpoint of step {start_step}" if cfg.eval_only
               else f"resumed from step {start_step}", chief)

    decay_vars = _decayed_variables(model, cfg.decay_norm_and_bias) if cfg.weight_decay else []
    loss_fn = keras.losses.CategoricalCrossentropy(from_logits=True,
                                                   label_smoothing=cfg.label_smoothing,
                                                   reduction=None)
    classes = source.num_classes
    top_k = min(5, classes)

    def forward_backward(images, labels):
        with tf.GradientTape() as tape:
            logits = tf.cast(model(images, training=True), tf.float32)
            per_example = loss_fn(tf.one_hot(labels, classes), logits)
            loss = tf.reduce_sum(per_example) / global_batch
            total = loss
            if decay_vars:  # coupled L2 (He et al. 2015: weight decay 1e-4), split over replicas
                l2 = tf.add_n([tf.reduce_sum(tf.square(tf.cast(v, tf.float32))) for v in decay_vars])
                total = total + 0.5 * cfg.weight_decay * l2 / replicas
            if isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
                total = optimizer.scale_loss(total)
        grads = tape.gradient(total, model.trainable_variables)
        correct = tf.reduce_sum(tf.cast(tf.equal(tf.argmax(logits, -1), labels), tf.float32))
        return grads, loss, correct

    jit = _choose_jit(cfg, strategy, plan.device_kind, precision, forward_backward,
                      tf.zeros([per_replica, cfg.input_size, cfg.input_size, 3]),
                      tf.zeros([per_replica], tf.int64), chief=chief)
    if jit:
        forward_backward = tf.function(forward_backward, jit_compile=True)

    def replica_step(images, labels, stop_flag):
        grads, loss, correct = forward_backward(images, labels)
        optimizer.apply_gradients(zip(grads, model.trainable_variables, strict=True))
        return loss, correct, tf.identity(stop_flag)

    @tf.function
    def train_step(iterator, stop_flag):
        # One step per call: a tf.range loop of steps inside one tf.function returned empty
        # tensors under MirroredStrategy with this model (TF 2.21), so the host loops instead.
        images, labels = next(iterator)
        loss, correct, stop_r = strategy.run(replica_step, args=(images, labels, stop_flag))
        return (strategy.reduce(tf.distribute.ReduceOp.SUM, loss, axis=None),
                strategy.reduce(tf.distribute.ReduceOp.SUM, correct, axis=None),
                strategy.reduce(tf.distribute.ReduceOp.SUM, stop_r, axis=None))

    # Keras 3 creates BN moving statistics as MirroredVariables with aggregation NONE: each
    # replica updates its own copy. Their updates are linear (an exponential moving average),
    # so averaging the copies before every save/eval/export equals synchronising every step.
    stat_vars = [v for v in model.non_trainable_variables
                 if v.dtype in ("float32", "float16", "bfloat16")
                 and not v.path.startswith("preprocessing/")]

    @tf.function
    def _sync_statistics():
        def replica_fn():
            ctx = tf.distribute.get_replica_context()
            values = ctx.all_reduce(tf.distribute.ReduceOp.MEAN,
                                    [tf.identity(v.value) for v in stat_vars])
            for var, value in zip(stat_vars, values, strict=True):
                var.assign(value)

        strategy.run(replica_fn)

    def sync_statistics() -> None:
        if replicas > 1 and stat_vars:
            _sync_statistics()

    stop_flags = {False: tf.constant(0.0), True: tf.constant(1.0)}

    def train_steps(iterator, num_steps: int):
        """Run ``num_steps`` steps; the SIGTERM flag is summed over all replicas every step so
        that every worker stops at the same chunk boundary."""
        loss_sum, correct_sum, stop_any = 0.0, 0.0, 0.0
        for _ in range(num_steps):
            loss, correct, stop_r = train_step(iterator, stop_flags[stop.requested])
            loss_sum, correct_sum, stop_any = loss_sum + loss, correct_sum + correct, stop_any + stop_r
        return loss_sum, correct_sum, stop_any

    @tf.autograph.experimental.do_not_convert
    def replica_eval(images, labels, weights):
        logits = tf.cast(model(images, training=False), tf.float32)
        per_example = keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True)
        top1 = tf.cast(tf.math.in_top_k(labels, logits, 1), tf.float32)
        top5 = tf.cast(tf.math.in_top_k(labels, logits, top_k), tf.float32)
        return (tf.reduce_sum(per_example * weights), tf.reduce_sum(top1 * weights),
                tf.reduce_sum(top5 * weights), tf.reduce_sum(weights))

    # Called through a plain function: strategy.run given an XLA tf.function itself places
    # every replica's call on the first device.
    eval_forward = tf.function(replica_eval, jit_compile=True) if jit else replica_eval

    @tf.function
    @tf.autograph.experimental.do_not_convert
    def eval_step(iterator):
        results = strategy.run(lambda *batch: eval_forward(*batch), args=next(iterator))
        return [strategy.reduce(tf.distribute.ReduceOp.SUM, r, axis=None) for r in results]

    n_eval_steps = data_lib.eval_steps(source, num_pipelines, per_pipeline, cfg.eval_examples)

    def eval_input(ctx: tf.distribute.InputContext):
        return data_lib.eval_dataset(source, aug, pipeline_id=ctx.input_pipeline_id,
                                     num_pipelines=ctx.num_input_pipelines,
                                     per_replica_batch=per_replica, per_pipeline_batch=per_pipeline,
                                     steps=n_eval_steps, limit=cfg.eval_examples)

    def evaluate() -> dict[str, float]:
        sync_statistics()
        dist = strategy.distribute_datasets_from_function(eval_input)
        iterator = iter(dist)
        sums = np.zeros(4)
        for _ in range(n_eval_steps):
            sums += np.array([float(v) for v in eval_step(iterator)])
        count = max(sums[3], 1.0)
        return {"eval_loss": sums[0] / count, "eval_top1": sums[1] / count,
                "eval_top5": sums[2] / count, "eval_examples": int(sums[3])}

    base_metrics = {"num_replicas": replicas, "num_workers": plan.num_workers,
                    "precision": precision, "strategy": plan.kind, "model": cfg.model,
                    "dataset": cfg.dataset, "recipe": cfg.recipe, "global_batch_size": global_batch,
                    "input_size": cfg.input_size, "total_steps": total_steps,
                    "batch_norm": cfg.batch_norm, "jit_compile": jit,
                    "architecture": cfg.architecture, "zero_init_residual": cfg.zero_init_residual,
                    "trainable_params": int(sum(np.prod(v.shape) for v in model.trainable_variables))}
    if cfg.eval_only:
        results = evaluate()
        return TrainResult({**base_metrics, "step": start_step, **results}, model)

    writer = tf.summary.create_file_writer(str(work_dir / "tensorboard" / "train"))
    eval_writer = tf.summary.create_file_writer(str(work_dir / "tensorboard" / "eval"))
    csv_log = CsvLog(work_dir / "log.csv", start_step)

    def train_input(ctx: tf.distribute.InputContext):
        return data_lib.train_dataset(
            source, aug, pipeline_id=ctx.input_pipeline_id, num_pipelines=ctx.num_input_pipelines,
            per_replica_batch=ctx.get_per_replica_batch_size(global_batch),
            per_pipeline_batch=per_pipeline, seed=seed, start_step=start_step, cache=cfg.cache,
            shuffle_buffer=cfg.shuffle_buffer)

    iterator = iter(strategy.distribute_datasets_from_function(train_input))
    progress = _Progress(total_steps, chief)
    step = start_step
    eval_results: dict[str, Any] = {}
    warm_steps = min(max(2, (total_steps - start_step) // 10), max(total_steps - start_step - 1, 0))
    steady_images, steady_time = 0, 0.0
    last_loss, last_top1, ips = float("nan"), float("nan"), 0.0
    window_loss, window_correct, window_steps, window_time = 0.0, 0.0, 0, 0.0
    stopped = False

    def save() -> None:
        sync_statistics()
        step_var.assign(step)
        manager.save(checkpoint_number=step)

    while step < total_steps:
        boundaries = [total_steps,
                      _next_multiple(step, cfg.log_every), _next_multiple(step, cfg.checkpoint_every)]
        if cfg.eval_every:
            boundaries.append(_next_multiple(step, cfg.eval_every))
        if step < start_step + warm_steps:
            boundaries.append(start_step + warm_steps)
        n = min(b for b in boundaries if b > step)
        t0 = time.perf_counter()
        loss_sum, correct_sum, stop_any = train_steps(iterator, n - step)
        loss_sum, correct_sum = float(loss_sum), float(correct_sum)
        elapsed = time.perf_counter() - t0
        if step >= start_step + warm_steps:
            steady_images += (n - step) * global_batch
            steady_time += elapsed
        window_loss += loss_sum
        window_correct += correct_sum
        window_steps += n - step
        window_time += elapsed
        step = n
        if not math.isfinite(loss_sum):
            raise UsageError(
                f"the loss became {loss_sum} at step {step} (peak learning rate "
                f"{cfg.learning_rate:g}, weight decay {cfg.weight_decay:g}, label smoothing "
                f"{cfg.label_smoothing:g}); a lower --learning-rate usually helps, and the "
                "checkpoints before this step are kept")
        if step % cfg.log_every == 0 or step == total_steps:
            last_loss = window_loss / window_steps
            last_top1 = window_correct / (window_steps * global_batch)
            ips = window_steps * global_batch / max(window_time, 1e-9)
            lr = schedule.value(step)
            epoch = step * global_batch / num_train
            progress.update(step, epoch, ips, last_loss, last_top1, lr)
            with writer.as_default(step=step):
                _scalar("loss", last_loss)
                _scalar("top1", last_top1)
                _scalar("error", error(last_top1))
                _scalar("learning_rate", lr)
                _scalar("images_per_sec", ips)
            csv_log.append({"step": step, "epoch": round(epoch, 4), "learning_rate": lr,
                            "train_loss": last_loss, "train_top1": last_top1,
                            "train_error": error(last_top1), "train_images_per_sec": round(ips, 2)})
            window_loss, window_correct, window_steps, window_time = 0.0, 0.0, 0, 0.0
        if float(stop_any) > 0:
            save()
            progress.newline()
            _print(f"stopped by SIGTERM at step {step}; checkpoint saved, run the same command "
                   "to resume", chief)
            stopped = True
            break
        if cfg.eval_every and step % cfg.eval_every == 0 and step < total_steps:
            eval_results = evaluate()
            _log_eval(eval_writer, csv_log, step, step * global_batch / num_train, eval_results)
            progress.newline()
            _print(f"step {step}: eval top-1 {eval_results['eval_top1']:.4f} "
                   f"top-5 {eval_results['eval_top5']:.4f}", chief)
        if step % cfg.checkpoint_every == 0 and step < total_steps:
            save()
    if stopped:
        writer.flush()
        return TrainResult({**base_metrics, "step": step, "stopped": True}, model)
    progress.newline()
    if step > start_step or not manager.latest_checkpoint:
        save()
    eval_results = evaluate()
    epoch = step * global_batch / num_train
    _log_eval(eval_writer, csv_log, step, epoch, eval_results)
    writer.flush()
    eval_writer.flush()
    steady_ips = steady_images / steady_time if steady_time > 0 else None
    metrics = {**base_metrics, "step": step, "epoch": epoch, "train_loss": last_loss,
               "train_top1": last_top1, **eval_results, "train_images_per_sec": steady_ips,
               "learning_rate": schedule.value(step), "data_seed": seed,
               "train_error": error(last_top1), "eval_error": error(eval_results["eval_top1"]),
               "history": read_history(work_dir / "log.csv")}
    if chief:
        final = float32_copy(model, cfg.model, input_size=cfg.input_size,
                             classes=source.num_classes, preprocessing=cfg.preprocessing,
                             model_kwargs=cfg.architecture)
        save_model_atomic(final, model_dir / "model.keras")
        atomic_write_json(model_dir / "labels.json", {
            "labels": source.labels, "input_size": cfg.input_size,
            "preprocessing": f"input: RGB float32 0..255 NHWC {cfg.input_size}x{cfg.input_size}; "
                             f"in the model: {PREPROCESSING[cfg.preprocessing]}; "
                             "output: softmax probabilities"})
        atomic_write_json(model_dir / "metrics.json", metrics)
    _print(f"step {step}: eval top-1 {eval_results['eval_top1']:.4f} top-5 "
           f"{eval_results['eval_top5']:.4f} ({eval_results['eval_examples']} images); "
           f"{steady_ips or 0:.1f} img/s; wrote {model_dir / 'model.keras'}", chief)
    return TrainResult(metrics, model)


def _choose_jit(cfg: TrainConfig, strategy: Any, device_kind: str, precision: str, step: Any,
                *example: Any, chief: bool) -> bool:
    """``--jit-compile`` resolved, and checked by lowering ``step`` once in each replica's
    context (a mirrored variable is read on its own device there): ``auto`` falls back to no
    XLA when XLA cannot compile it, ``on`` is then a usage error."""
    import tensorflow as tf

    if not resolve_jit_compile(cfg.jit_compile, device_kind, precision,
                               strategy.num_replicas_in_sync):
        return False
    if device_kind == "tpu":
        return True  # TPUs compile every step with XLA regardless
    compiled = tf.function(step, jit_compile=True)
    found = strategy.run(lambda: tf.constant(xla_lowers(compiled, *example) or ""))
    problems = [p.numpy().decode() for p in strategy.experimental_local_results(found)]
    problem = next((p for p in problems if p), None)
    if problem is None:
        return True
    if cfg.jit_compile == "on":
        raise UsageError(f"--jit-compile on: XLA cannot compile the training step ({problem}); "
                         "use --jit-compile off")
    _print(f"XLA cannot compile the training step ({problem}); running it without XLA", chief)
    return False


def _log_eval(writer: Any, csv_log: CsvLog, step: int, epoch: float, results: dict[str, Any]) -> None:

    with writer.as_default(step=step):
        _scalar("loss", results["eval_loss"])
        _scalar("top1", results["eval_top1"])
        _scalar("top5", results["eval_top5"])
        _scalar("error", error(results["eval_top1"]))
    csv_log.append({"step": step, "epoch": round(epoch, 4), **results,
                    "eval_error": error(results["eval_top1"])})


def _scalar(name: str, value: float, step: int | None = None) -> None:
    """A TensorBoard scalar through ``tf.summary.write`` (no ``tensorboard`` package needed)."""
    import tensorflow as tf
    from tensorflow.core.framework import summary_pb2

    metadata = summary_pb2.SummaryMetadata()
    metadata.plugin_data.plugin_name = "scalars"
    tf.summary.write(name, tf.constant(float(value), tf.float32), step=step, metadata=metadata)


def _next_multiple(step: int, every: int) -> int:
    return (step // every + 1) * every
