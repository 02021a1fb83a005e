"""The trainer's fused batch norm: same weights, outputs, gradients and moving statistics as
Keras' layer; Keras' path wherever the kernel does not apply; never in ``model.keras``."""

from __future__ import annotations

import json
import os
import platform
import zipfile
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from keras_resnet.training.fused_norm import FusedBatchNormalization, with_fused_batch_norm
from keras_resnet.training.precision import cpu_has_bf16

import keras_resnet

pytestmark = pytest.mark.slow(seconds=95)


def _step(model, x):
    """One training-mode forward/backward: (output, gradients, moving statistics)."""
    with tf.GradientTape() as tape:
        y = model(x, training=True)
        loss = tf.reduce_sum(tf.cast(y, tf.float32) * tf.range(1.0, y.shape[-1] + 1.0))
    grads = tape.gradient(loss, model.trainable_variables)
    return (np.asarray(y, np.float32), [np.asarray(g) for g in grads],
            [np.asarray(v) for v in model.non_trainable_variables])


@pytest.fixture(scope="module")
def pair():
    keras.utils.set_random_seed(3)
    keras.mixed_precision.set_global_policy("float32")
    model = keras_resnet.create_model("resnet20", weights=None, input_shape=(16, 16, 3),
                                      classes=10)
    return model, with_fused_batch_norm(model)


def test_clone_swaps_every_batch_norm_and_keeps_names_order_and_weights(pair) -> None:
    model, fused = pair
    bn = [layer.name for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    swapped = [layer.name for layer in fused.layers if isinstance(layer, FusedBatchNormalization)]
    assert len(bn) == 19 and swapped == bn  # ResNet-20: stem + 2 per block x 9
    assert [v.path for v in fused.weights] == [v.path for v in model.weights]
    for a, b in zip(model.get_weights(), fused.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


def test_training_step_matches_keras_batch_norm_float32(pair) -> None:
    model, fused = pair
    x = tf.random.stateless_normal((8, 16, 16, 3), seed=(1, 2))
    before = [np.asarray(v) for v in model.non_trainable_variables]
    y_ref, g_ref, s_ref = _step(model, x)
    y, g, s = _step(fused, x)
    np.testing.assert_allclose(y, y_ref, atol=1e-5)
    for a, b in zip(g, g_ref, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-4 * (np.abs(b).max() + 1e-6))
    # The moving variance gets the biased batch variance, as in Keras (the kernel's is unbiased).
    changed = [not np.allclose(a, b) for a, b in zip(s_ref, before, strict=True)]
    assert all(changed)
    for a, b in zip(s, s_ref, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    # Inference takes Keras' own path: with the same weights, identical results.
    fused.set_weights(model.get_weights())
    np.testing.assert_array_equal(np.asarray(fused(x, training=False)),
                                  np.asarray(model(x, training=False)))


def test_training_step_under_xla_matches_keras_batch_norm(pair) -> None:
    """``--jit-compile on`` hands the fused op to XLA (as its batch-norm-training op): same
    outputs, gradients and moving statistics as Keras' layer run op by op."""
    model, fused = pair
    fused.set_weights(model.get_weights())
    x = tf.random.stateless_normal((8, 16, 16, 3), seed=(3, 4))
    y_ref, g_ref, s_ref = _step(model, x)

    @tf.function(jit_compile=True)
    def compiled(images):
        with tf.GradientTape() as tape:
            y = fused(images, training=True)
            loss = tf.reduce_sum(y * tf.range(1.0, y.shape[-1] + 1.0))
        return y, tape.gradient(loss, fused.trainable_variables)

    # A seeded run earlier in this process may have made ops deterministic (a process-wide
    # switch), which XLA refuses for max-pool gradients; TensorFlow's public API can only turn
    # it on, so its own module turns it off for this test.
    from tensorflow.python.framework import config as tf_config

    deterministic = tf_config.is_op_determinism_enabled()
    tf_config.disable_op_determinism()
    try:
        assert "batch-norm-training" in compiled.experimental_get_compiler_ir(x)(stage="hlo")
        y, grads = compiled(x)
    finally:
        if deterministic:
            tf_config.enable_op_determinism()
    np.testing.assert_allclose(np.asarray(y), y_ref, atol=1e-5)
    for a, b in zip(grads, g_ref, strict=True):
        np.testing.assert_allclose(np.asarray(a), b, atol=1e-4 * (np.abs(b).max() + 1e-6))
    for a, b in zip(fused.non_trainable_variables, s_ref, strict=True):
        np.testing.assert_allclose(np.asarray(a), b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("policy", ["mixed_bfloat16", "mixed_float16"])
def test_mixed_precision_layer_matches_keras_within_rounding(policy: str) -> None:
    keras.mixed_precision.set_global_policy(policy)
    try:
        ref = keras.layers.BatchNormalization(epsilon=1.001e-5, momentum=0.9)
        fused = FusedBatchNormalization(epsilon=1.001e-5, momentum=0.9)
        x = tf.random.stateless_normal((4, 6, 6, 32), seed=(5, 6)) * 3.0 + 1.0
        y_ref, y = ref(x, training=True), fused(x, training=True)
        assert y.dtype == y_ref.dtype == policy.removeprefix("mixed_")
        np.testing.assert_allclose(np.asarray(y, np.float32), np.asarray(y_ref, np.float32),
                                   atol=0.05)
        np.testing.assert_allclose(np.asarray(fused.moving_variance),
                                   np.asarray(ref.moving_variance), rtol=2e-2)
    finally:
        keras.mixed_precision.set_global_policy("float32")


def test_cases_the_kernel_does_not_cover_take_keras_path() -> None:
    ref = keras.layers.BatchNormalization()
    fused = FusedBatchNormalization()
    x = tf.random.stateless_normal((6, 5), seed=(7, 8))  # rank 2: no fused NHWC kernel
    np.testing.assert_array_equal(np.asarray(fused(x, training=True)),
                                  np.asarray(ref(x, training=True)))
    channels_first = FusedBatchNormalization(axis=1)
    assert not channels_first._fusable(tf.zeros((2, 3, 4, 4)), True, None)
    frozen = FusedBatchNormalization()
    frozen.trainable = False
    assert not frozen._fusable(tf.zeros((2, 4, 4, 3)), True, None)
    assert not FusedBatchNormalization(epsilon=1e-6)._fusable(tf.zeros((2, 4, 4, 3)), True, None)
    assert not FusedBatchNormalization()._fusable(tf.zeros((2, 4, 4, 3)), tf.constant(True), None)
    # bfloat16 variables (a non-mixed policy): Keras' path, same result instead of a dtype error.
    low = FusedBatchNormalization(dtype="bfloat16")
    ref_low = keras.layers.BatchNormalization(dtype="bfloat16")
    image = tf.random.stateless_normal((2, 4, 4, 3), seed=(9, 9))
    np.testing.assert_array_equal(np.asarray(low(image, training=True), np.float32),
                                  np.asarray(ref_low(image, training=True), np.float32))
    assert FusedBatchNormalization()._fusable(tf.zeros((2, 4, 4, 3)), True, None)


def test_checkpoints_resume_across_batch_norm_kernels_and_model_keras_is_stock(
        tmp_path: Path, th) -> None:
    run = tmp_path / "run"
    first = th.run_cli([*th.TINY, "--dataset", "digits", "--steps", "4", "--seed", "1",
                        "--batch-norm", "keras", "--model-dir", str(run)])
    assert first.returncode == 0, first.stderr
    second = th.run_cli([*th.TINY, "--dataset", "digits", "--steps", "8", "--seed", "1",
                         "--model-dir", str(run)])
    assert second.returncode == 0, second.stderr
    assert "resumed from step 4" in second.stdout
    metrics = th.metrics(run)
    assert metrics["step"] == 8 and metrics["batch_norm"] == "fused"
    with zipfile.ZipFile(run / "model.keras") as archive:
        config = json.loads(archive.read("config.json"))
    text = json.dumps(config)
    assert "FusedBatchNormalization" not in text and '"BatchNormalization"' in text


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("TF_ENABLE_ONEDNN_OPTS") == "0"
                    or platform.machine().lower() not in ("x86_64", "amd64"),
                    reason="needs TensorFlow's oneDNN kernels (x86, TF_ENABLE_ONEDNN_OPTS on)")
@pytest.mark.skipif(not cpu_has_bf16(), reason=(
    "the bfloat16 kernels this checks exist only on CPUs with AVX512_BF16 or AMX, where "
    "--precision auto trains in mixed_bfloat16; elsewhere TensorFlow picks other kernels (an "
    "AVX2-only EPYC ran a oneDNN batch norm for Keras' layer; an emulated AVX2 CPU ran no "
    "oneDNN convolution or batch norm at all) and the trainer trains in float32"))
def test_fused_layer_reaches_onednn_batch_norm_kernel_and_keras_layer_does_not() -> None:
    """The roofline tool's per-primitive timing: the fused layer really runs oneDNN's batch
    norm (forward and backward); Keras' layer runs none (element-wise ops)."""
    from keras_resnet.training.tools.roofline import primitive_breakdown

    fused = primitive_breakdown("resnet20", "mixed_bfloat16", "fused", batch=4, size=16, steps=1)
    plain = primitive_breakdown("resnet20", "mixed_bfloat16", "keras", batch=4, size=16, steps=1)
    assert {"batch_normalization forward_training", "batch_normalization backward"} <= set(
        fused["primitives_s"])
    assert not any(k.startswith("batch_normalization") for k in plain["primitives_s"])
    for run in (fused, plain):
        assert {"convolution forward_training", "convolution backward_data",
                "convolution backward_weights"} <= set(run["primitives_s"])
        assert 0 < sum(run["primitives_s"].values()) <= run["step_s"] * 1.05
