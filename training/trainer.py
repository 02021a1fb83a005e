"""The trainer: builds the network and the optimizer under the strategy's scope and owns the
compiled steps, ``tf.function`` + ``strategy.run``, identical for one device, mirrored,
multi-worker and TPU, with their metrics as Keras metric objects.

Keras 3 ``model.fit`` fails under ``MultiWorkerMirroredStrategy`` (a PerReplica conversion
error) while this custom step keeps workers in sync, so every strategy uses it. The steps are
driven by :class:`keras_resnet.training.controller.Controller`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from keras_resnet.training import data as data_lib
from keras_resnet.training.compilation import resolve_jit_compile, xla_lowers
from keras_resnet.training.config import TrainConfig
from keras_resnet.training.errors import UsageError
from keras_resnet.training.model import build_model


@dataclass(frozen=True)
class TrainInputs:
    """What the trainer trains on: the opened source, its augmentation and the normalisation
    statistics of its training images."""

    source: Any  # keras_resnet.training.data.Source
    augmentation: Any  # keras_resnet.training.data.Augmentation
    statistics: Any  # keras_resnet.training.data.ImageStatistics
    num_pipelines: int
    contract: Any = None  # keras_resnet.training.in_memory.Contract of in-memory data



def make_optimizer(optim: Any, schedule: Any, precision: str) -> Any:
    """SGD with momentum (He et al. 2015 sec. 3.4), loss-scaled under ``mixed_float16``."""
    import keras

    opt = keras.optimizers.SGD(learning_rate=schedule, momentum=float(optim.optimizer["momentum"]),
                               nesterov=bool(optim.optimizer.get("nesterov", False)))
    if precision == "mixed_float16":
        opt = keras.optimizers.LossScaleOptimizer(opt)
    return opt


def decayed_variables(model: Any, decay_norm_and_bias: bool) -> list[Any]:
    """Weights that get L2 decay: all trainable ones, or (``modern``) only kernels (rank > 1)."""
    variables = list(model.trainable_variables)
    if decay_norm_and_bias:
        return variables
    return [v for v in variables if len(v.shape) > 1]


class Trainer:
    """Model, optimizer, train and eval steps, their metrics, and the batch-norm statistics
    sync, for one configuration under one ``tf.distribute`` strategy."""

    def __init__(self, cfg: TrainConfig, strategy: Any, inputs: TrainInputs, schedule: Any,
                 precision: str, pretrained: Any = None, device_kind: str = "cpu",
                 network: Any = None) -> None:
        import keras
        import tensorflow as tf

        self.cfg, self.strategy, self.inputs = cfg, strategy, inputs
        self.network = network  # keras_resnet.training.network.CodeNetwork, or None (zoo)
        #: A network built in code may end in a softmax; every zoo network gives logits.
        self.from_logits = network is None or network.output == "logits"
        self.pretrained, self.device_kind, self.precision = pretrained, device_kind, precision
        self.notes: list[str] = []  # lines for the run's log (fine-tuning, XLA fallback)
        self.global_batch = cfg.optim.batch_size
        self.replicas = strategy.num_replicas_in_sync
        self.classes = inputs.source.num_classes
        with strategy.scope():
            self.model = self.build_network()
            self.optimizer = make_optimizer(cfg.optim, schedule, precision)
            self.optimizer.build(self.model.trainable_variables)
        self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
        self.checkpoint = tf.train.Checkpoint(model=self.model, optimizer=self.optimizer,
                                              step=self.step)
        self.train_loss = keras.metrics.Mean(name="train_loss")
        self.train_top1 = keras.metrics.Mean(name="train_top1")
        self.eval_loss = keras.metrics.Mean(name="eval_loss")
        self.eval_top1 = keras.metrics.SparseCategoricalAccuracy(name="eval_top1")
        self.eval_top5 = keras.metrics.SparseTopKCategoricalAccuracy(
            k=min(5, self.classes), name="eval_top5")
        self.eval_count = keras.metrics.Sum(name="eval_examples")
        self._decay = (decayed_variables(self.model, cfg.optim.decay_norm_and_bias)
                       if cfg.optim.weight_decay else [])
        self._loss_fn = keras.losses.CategoricalCrossentropy(
            from_logits=self.from_logits, label_smoothing=cfg.optim.label_smoothing,
            reduction=None)
        self._stop_flags = {False: tf.constant(0.0), True: tf.constant(1.0)}
        self._stat_vars = [v for v in self.model.non_trainable_variables
                           if v.dtype in ("float32", "float16", "bfloat16")
                           and not v.path.startswith("preprocessing/")]
        self._train_step = self.compile_train_step()
        self._eval_step = tf.function(
            tf.autograph.experimental.do_not_convert(self._distributed_eval))
        self._sync = tf.function(self._distributed_sync)
        self._iterator: Any = None

    def build_network(self) -> Any:
        """The training network (logits out, the training images' statistics baked into its
        input normalisation), built in the strategy's scope; with ``qat``, its
        quantization-aware copy."""
        if self.network is not None:  # built in code: its clone, taking the data's contract
            return self.network.build(self.inputs.contract)
        cfg, stats = self.cfg.model, self.inputs.statistics
        mean, std = stats.pixel_mean, stats.channel_std
        if self.pretrained is not None:  # fine-tuning: the weights' own input normalisation
            mean, std = self.pretrained.statistics(cfg.input_size, mean, std)
        model = build_model(cfg.name, input_size=cfg.input_size, classes=self.classes,
                            preprocessing=cfg.preprocessing, pixel_mean=mean, channel_std=std,
                            zero_init_residual=cfg.zero_init_residual, softmax=False,
                            fused_batch_norm=cfg.batch_norm == "fused",
                            model_kwargs=cfg.architecture, freeze=cfg.freeze)
        if self.pretrained is not None:  # fresh start: the weights and a fitting classifier
            from keras_resnet.training.finetune import copy_into, freeze_summary

            self.notes += [copy_into(model, self.pretrained, self.inputs.source.labels),
                           freeze_summary(model, cfg.freeze)]
        if cfg.qat:  # after the trained weights, before the optimizer sees the variables
            from keras_resnet.training.qat import quantized_network

            model, note = quantized_network(model, cfg.qat_scheme)
            self.notes.append(note)
        return model

    @property
    def trainable_params(self) -> int:
        return int(sum(np.prod(v.shape) for v in self.model.trainable_variables))

    # -- the train step --------------------------------------------------------------------

    def compile_train_step(self) -> Callable[..., Any]:
        """The one place the steps are compiled: ``tf.function`` around the distributed
        steps, with the per-replica forward passes under XLA when ``run.jit_compile``
        resolves to on (:mod:`keras_resnet.training.compilation`); the all-reduce and the
        optimizer update stay outside XLA."""
        import tensorflow as tf

        self.jit = self._choose_jit()
        self._forward, self._eval_forward = self._forward_backward, self._replica_eval
        if self.jit:
            self._forward = tf.function(self._forward_backward, jit_compile=True)
            self._eval_forward = tf.function(self._replica_eval, jit_compile=True)
        return tf.function(self._distributed_train)

    def _choose_jit(self) -> bool:
        """``run.jit_compile`` resolved, and checked by lowering the step once in each
        replica's context (a mirrored variable is read on its own device there): ``auto``
        falls back to no XLA when XLA cannot compile it, ``on`` is then a usage error."""
        import tensorflow as tf

        requested = self.cfg.run.jit_compile
        if not resolve_jit_compile(requested, self.device_kind, self.precision, self.replicas):
            return False
        if self.device_kind == "tpu":
            return True  # TPUs compile every step with XLA regardless
        size, per_replica = self.cfg.model.input_size, self.global_batch // self.replicas
        example = (tf.zeros([per_replica, size, size, 3]), tf.zeros([per_replica], tf.int64))
        compiled = tf.function(self._forward_backward, jit_compile=True)
        found = self.strategy.run(lambda: tf.constant(xla_lowers(compiled, *example) or ""))
        problems = [p.numpy().decode() for p in self.strategy.experimental_local_results(found)]
        problem = next((p for p in problems if p), None)
        if problem is None:
            return True
        if requested == "on":
            raise UsageError(f"--jit-compile on: XLA cannot compile the training step "
                             f"({problem}); use --jit-compile off")
        self.notes.append(f"XLA cannot compile the training step ({problem}); running it "
                          "without XLA")
        return False

    def _forward_backward(self, images: Any, labels: Any) -> tuple[Any, Any, Any]:
        import keras
        import tensorflow as tf

        with tf.GradientTape() as tape:
            logits = tf.cast(self.model(images, training=True), tf.float32)
            per_example = self._loss_fn(tf.one_hot(labels, self.classes), logits)
            loss = tf.reduce_sum(per_example) / self.global_batch
            total = loss
            if self._decay:  # coupled L2 (He et al. 2015: weight decay 1e-4), split over replicas
                l2 = tf.add_n([tf.reduce_sum(tf.square(tf.cast(v, tf.float32)))
                               for v in self._decay])
                total = total + 0.5 * self.cfg.optim.weight_decay * l2 / self.replicas
            if isinstance(self.optimizer, keras.optimizers.LossScaleOptimizer):
                total = self.optimizer.scale_loss(total)
        grads = tape.gradient(total, self.model.trainable_variables)
        correct = tf.reduce_sum(tf.cast(tf.equal(tf.argmax(logits, -1), labels), tf.float32))
        return grads, loss, correct

    def _replica_train(self, images: Any, labels: Any, stop_flag: Any) -> tuple[Any, Any, Any]:
        import tensorflow as tf

        grads, loss, correct = self._forward(images, labels)
        self.optimizer.apply_gradients(zip(grads, self.model.trainable_variables, strict=True))
        return loss, correct, tf.identity(stop_flag)

    def _distributed_train(self, iterator: Any, stop_flag: Any) -> Any:
        # One step per call: a tf.range loop of steps inside one tf.function returned empty
        # tensors under MirroredStrategy with this model (TF 2.21), so the host loops instead.
        import tensorflow as tf

        images, labels = next(iterator)
        results = self.strategy.run(self._replica_train, args=(images, labels, stop_flag))
        loss, correct, stop = (self.strategy.reduce(tf.distribute.ReduceOp.SUM, r, axis=None)
                               for r in results)
        self.train_loss.update_state(loss)
        self.train_top1.update_state(correct / self.global_batch)
        return stop

    def open_train_data(self, seed: int, start_step: int) -> None:
        """The distributed training iterator, positioned at ``start_step`` (exact resume)."""
        source, aug, cfg = self.inputs.source, self.inputs.augmentation, self.cfg
        per_pipeline = self.global_batch // self.inputs.num_pipelines

        def train_input(ctx: Any) -> Any:
            return data_lib.train_dataset(
                source, aug, pipeline_id=ctx.input_pipeline_id,
                num_pipelines=ctx.num_input_pipelines,
                per_replica_batch=ctx.get_per_replica_batch_size(self.global_batch),
                per_pipeline_batch=per_pipeline, seed=seed, start_step=start_step,
                cache=cfg.data.cache, shuffle_buffer=cfg.data.shuffle_buffer)

        self._iterator = iter(self.strategy.distribute_datasets_from_function(train_input))

    def train_steps(self, num_steps: int, stop_requested: Callable[[], bool]) -> bool:
        """Run ``num_steps`` steps; True when any replica's ``stop_requested()`` was true
        (the flag is summed over all replicas every step, so that every worker stops at the
        same loop boundary)."""
        stop_any = 0.0
        for _ in range(num_steps):
            stop_any = stop_any + self._train_step(self._iterator,
                                                   self._stop_flags[bool(stop_requested())])
        return float(stop_any) > 0

    def train_results(self, reset: bool = True) -> dict[str, float]:
        """Mean loss and top-1 of the global batches since the last reset."""
        results = {"train_loss": float(self.train_loss.result()),
                   "train_top1": float(self.train_top1.result())}
        if reset:
            self.train_loss.reset_state()
            self.train_top1.reset_state()
        return results

    # -- batch-norm statistics ---------------------------------------------------------------

    def _distributed_sync(self) -> None:
        import tensorflow as tf

        def replica_fn() -> None:
            ctx = tf.distribute.get_replica_context()
            values = ctx.all_reduce(tf.distribute.ReduceOp.MEAN,
                                    [tf.identity(v.value) for v in self._stat_vars])
            for var, value in zip(self._stat_vars, values, strict=True):
                var.assign(value)

        self.strategy.run(replica_fn)

    def sync_statistics(self) -> None:
        """Average the replicas' batch-norm moving statistics. Keras 3 creates them as
        MirroredVariables with aggregation NONE: each replica updates its own copy. Their
        updates are linear (an exponential moving average), so averaging the copies before
        every save/eval/export equals synchronising every step."""
        if self.replicas > 1 and self._stat_vars:
            self._sync()

    # -- evaluation ----------------------------------------------------------------------------

    def _replica_eval(self, images: Any, labels: Any, weights: Any) -> tuple[Any, Any, Any]:
        import tensorflow as tf

        logits = tf.cast(self.model(images, training=False), tf.float32)
        return logits, tf.cast(labels, tf.float32), tf.cast(weights, tf.float32)

    def _distributed_eval(self, iterator: Any) -> None:
        import keras
        import tensorflow as tf

        # Through a plain function: strategy.run given an XLA tf.function itself places every
        # replica's call on the first device.
        per_replica = self.strategy.run(
            tf.autograph.experimental.do_not_convert(lambda *batch: self._eval_forward(*batch)),
            args=next(iterator))
        logits, labels, weights = (self.strategy.gather(t, axis=0) for t in per_replica)
        labels = tf.cast(labels, tf.int64)
        loss = keras.losses.sparse_categorical_crossentropy(labels, logits,
                                                            from_logits=self.from_logits)
        self.eval_loss.update_state(loss, sample_weight=weights)
        self.eval_top1.update_state(labels, logits, sample_weight=weights)
        self.eval_top5.update_state(labels, logits, sample_weight=weights)
        self.eval_count.update_state(weights)

    def evaluate(self) -> dict[str, Any]:
        """Loss, top-1 and top-5 on the test split (or its first ``data.eval_examples``
        images), with the batch-norm statistics synchronised first."""
        self.sync_statistics()
        source, aug = self.inputs.source, self.inputs.augmentation
        num_pipelines, limit = self.inputs.num_pipelines, self.cfg.data.eval_examples
        per_pipeline = self.global_batch // num_pipelines
        steps = data_lib.eval_steps(source, num_pipelines, per_pipeline, limit)

        def eval_input(ctx: Any) -> Any:
            return data_lib.eval_dataset(
                source, aug, pipeline_id=ctx.input_pipeline_id,
                num_pipelines=ctx.num_input_pipelines,
                per_replica_batch=self.global_batch // self.replicas,
                per_pipeline_batch=per_pipeline, steps=steps, limit=limit)

        metrics = (self.eval_loss, self.eval_top1, self.eval_top5, self.eval_count)
        for metric in metrics:
            metric.reset_state()
        iterator = iter(self.strategy.distribute_datasets_from_function(eval_input))
        for _ in range(steps):
            self._eval_step(iterator)
        loss, top1, top5, count = (float(m.result()) for m in metrics)
        if not math.isfinite(loss):
            raise UsageError(f"the model's outputs on the test split are not finite (eval loss "
                             f"{loss}): its weights or batch-norm statistics hold NaN or "
                             "infinity; a lower --learning-rate usually helps, and the "
                             "checkpoints before this step are kept")
        return {"eval_loss": loss, "eval_top1": top1, "eval_top5": top5,
                "eval_examples": int(round(count))}
