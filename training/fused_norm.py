"""Batch normalisation through TensorFlow's fused kernel, for the training step only.

Keras 3's ``BatchNormalization`` computes batch moments and the normalisation with separate
element-wise ops, in float32 even under a mixed policy. On a CPU that is a large share of a
ResNet step (ResNet-50, batch 32, mixed_bfloat16, this 2-core machine: 4.08 s per step with
Keras' layer, 2.70 s with the fused kernel; ``python -m keras_resnet.training.tools.roofline``, docs/training.md).
``FusedBatchNormalization`` keeps the parent's weights, config and maths and runs the
training-mode forward pass (and so its gradient) as one ``FusedBatchNormV3`` op; oneDNN executes
it in bfloat16 or float32 (float16 runs on TensorFlow's own kernel).

The trainer swaps the layer in for training only; ``model.keras`` is always written with
Keras' own layer (``keras_resnet.training.model.float32_copy``), so it loads with ``safe_mode=True``.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
import tensorflow as tf

from keras_resnet.backbone import recursion_headroom

#: cuDNN rejects epsilon < 1e-5 (and float32(1e-5) is just below it), so, like TensorFlow's
#: ``fused_batch_norm``, smaller values take Keras' path.
_MIN_EPSILON = 1.001e-5
_KERNEL_DTYPES = ("float32", "bfloat16", "float16")


@keras.saving.register_keras_serializable(package="keras_resnet_training")
class FusedBatchNormalization(keras.layers.BatchNormalization):
    """``keras.layers.BatchNormalization`` whose training-mode call is one fused op.

    Same result as the parent (batch norm after every convolution, He et al. 2015 sec. 3.4):
    the batch is normalised with its biased variance, and the moving variance is updated with
    the biased variance as Keras 3 does (the kernel returns the unbiased one, rescaled here).
    Whatever the kernel does not cover (inference, ``training`` given as a tensor, frozen
    layers, masks, renorm, synchronised statistics, tensors other than NHWC with channels last,
    dtypes other than float32 variables with a float32/bfloat16/float16 computation) takes the
    parent's path unchanged.

    Registered as serializable so that a training model holding it can be saved and reloaded
    (with this module imported); the trainer's ``model.keras`` never holds it.
    """

    def _fusable(self, inputs: Any, training: Any, mask: Any) -> bool:
        rank = len(inputs.shape)
        return (isinstance(training, (bool, np.bool_)) and bool(training) and self.trainable
                and mask is None and not self.renorm and not self.synchronized and rank == 4
                and self.axis % rank == 3 and self.epsilon >= _MIN_EPSILON
                and self.compute_dtype in _KERNEL_DTYPES and self.variable_dtype == "float32")

    def call(self, inputs, training=None, mask=None):
        if not self._fusable(inputs, training, mask):
            return super().call(inputs, training=training, mask=mask)
        x = tf.cast(inputs, self.compute_dtype)
        channels = x.shape[-1]
        scale = tf.cast(self.gamma, tf.float32) if self.scale else tf.ones((channels,), tf.float32)
        offset = tf.cast(self.beta, tf.float32) if self.center else tf.zeros((channels,), tf.float32)
        empty = tf.constant([], tf.float32)
        y, batch_mean, batch_var, *_ = tf.raw_ops.FusedBatchNormV3(
            x=x, scale=scale, offset=offset, mean=empty, variance=empty, epsilon=self.epsilon,
            exponential_avg_factor=1.0, data_format="NHWC", is_training=True)
        count = tf.cast(tf.size(x, out_type=tf.int64) // channels, tf.float32)
        biased_var = batch_var * tf.maximum(count - 1.0, 0.0) / count
        momentum = self.momentum
        self.moving_mean.assign(self.moving_mean * momentum + batch_mean * (1.0 - momentum))
        self.moving_variance.assign(self.moving_variance * momentum
                                    + biased_var * (1.0 - momentum))
        return y


def with_fused_batch_norm(model: keras.Model) -> keras.Model:
    """A copy of the functional ``model`` (same layer names, order, weights and checkpoint
    keys) in which every ``keras.layers.BatchNormalization`` is a
    :class:`FusedBatchNormalization`. The copy's layers are built afresh and then given
    ``model``'s weights (layers seeded with ``seed=None``, such as stochastic depth, draw new
    seeds)."""

    def clone(layer: keras.layers.Layer) -> keras.layers.Layer:
        cls = FusedBatchNormalization if type(layer) is keras.layers.BatchNormalization \
            else layer.__class__
        return cls.from_config(layer.get_config())

    with recursion_headroom():
        copy = keras.models.clone_model(model, clone_function=clone)
    copy.set_weights(model.get_weights())
    return copy
