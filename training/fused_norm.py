"""Batch normalisation through TensorFlow's fused kernel, for the training step only.

Keras 3's ``BatchNormalization`` computes batch moments and the normalisation with separate
element-wise ops, in float32 even under a mixed policy. On a CPU that is a large share of a
ResNet step (ResNet-50, batch 32, mixed_bfloat16, this 2-core machine: 4.35 s per step with
Keras' layer, 2.44 s with the fused kernel; see ``docs/training.md``). ``FusedBatchNormalization``
keeps the parent's weights, config and maths and runs the training-mode forward pass (and so its
gradient) as one ``FusedBatchNormV3`` op, which oneDNN executes in the compute dtype.

The trainer swaps the layer in for training only; ``model.keras`` is always written with
Keras' own layer (``training.model.float32_copy``), so it loads with ``safe_mode=True``.
"""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf

from keras_resnet.backbone import recursion_headroom

#: FusedBatchNormV3 needs epsilon >= 1e-5 on GPUs (cuDNN); smaller ones take Keras' path.
_MIN_EPSILON = 1e-5


class FusedBatchNormalization(keras.layers.BatchNormalization):
    """``keras.layers.BatchNormalization`` whose training-mode call is one fused op.

    Same result as the parent (He et al. 2015 sec. 3.4 / Ioffe & Szegedy 2015): the batch is
    normalised with its biased variance, and the moving averages are updated with the biased
    variance as Keras does (the kernel returns the unbiased one, rescaled here). Whatever the
    kernel does not cover (inference, frozen layers, masks, renorm, synchronised statistics,
    tensors other than NHWC with channels last) takes the parent's path unchanged.
    """

    def _fusable(self, inputs: Any, training: Any, mask: Any) -> bool:
        rank = len(inputs.shape)
        return (training is True and self.trainable and mask is None and not self.renorm
                and not self.synchronized and rank == 4 and self.axis % rank == 3
                and self.epsilon >= _MIN_EPSILON)

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
    """A copy of the functional ``model`` (same layer names, order and weights) in which every
    ``keras.layers.BatchNormalization`` is a :class:`FusedBatchNormalization`."""

    def clone(layer: keras.layers.Layer) -> keras.layers.Layer:
        cls = FusedBatchNormalization if type(layer) is keras.layers.BatchNormalization \
            else layer.__class__
        return cls.from_config(layer.get_config())

    with recursion_headroom():
        copy = keras.models.clone_model(model, clone_function=clone)
    copy.set_weights(model.get_weights())
    return copy
