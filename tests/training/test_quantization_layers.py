"""The quantization-aware layers and the float-to-QAT rewrite: batch norm folded exactly,
weight rounding bounded by the grid, straight-through gradients, observed activation ranges
(moving min/max, then frozen), trainable flags and names kept in a nested trained model,
``.keras`` round trip with ``safe_mode=True``, and the pre-activation and timm layouts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

keras = pytest.importorskip("keras")
tf = pytest.importorskip("tensorflow")

from keras_resnet.quantization import (  # noqa: E402
    QAT_SCHEMES,
    ActivationQuantizer,
    QuantConv2D,
    fake_quant,
    freeze_observers,
    qat_scheme_of,
    quantize_model,
    quantizers,
)

EPS = 1e-3
RNG = np.random.default_rng(0)


def _conv_layer(qmax: int = 64) -> tuple[QuantConv2D, dict[str, np.ndarray]]:
    """A 3x3 conv (4 -> 5 channels, with bias) and its batch norm folded, without output
    rounding, and the float values it holds."""
    conv = keras.layers.Conv2D(5, 3, padding="same", use_bias=True).get_config()
    bn = keras.layers.BatchNormalization(epsilon=EPS).get_config()
    layer = QuantConv2D(conv, bn, weight_qmax=qmax, quantize_output=False)
    layer.build((None, 6, 6, 4))
    values = {"kernel": RNG.normal(0, 0.3, (3, 3, 4, 5)), "bias": RNG.normal(0, 0.1, 5),
              "gamma": RNG.uniform(0.5, 1.5, 5), "beta": RNG.normal(0, 0.1, 5),
              "mean": RNG.normal(0, 0.2, 5), "var": RNG.uniform(0.5, 2.0, 5)}
    return layer, {k: v.astype(np.float32) for k, v in values.items()}


def _set(layer: QuantConv2D, v: dict[str, np.ndarray]) -> None:
    layer.set_weights([v["kernel"], v["bias"], v["gamma"], v["beta"], v["mean"], v["var"]])


def _conv_then_bn(x: np.ndarray, v: dict[str, np.ndarray]) -> np.ndarray:
    y = tf.nn.conv2d(x, v["kernel"], 1, "SAME").numpy() + v["bias"]
    return (y - v["mean"]) / np.sqrt(v["var"] + EPS) * v["gamma"] + v["beta"]


def test_folded_conv_equals_conv_and_batch_norm_on_the_grid_and_is_bounded_off_it() -> None:
    layer, v = _conv_layer(qmax=64)
    x = RNG.normal(0, 1, (2, 6, 6, 4)).astype(np.float32)
    factor = v["gamma"] / np.sqrt(v["var"] + EPS)
    # On the grid: the folded kernel is an integer in [-64, 64] times the channel's scale.
    steps = RNG.integers(-64, 65, (3, 3, 4, 5)).astype(np.float32)
    steps[0, 0, 0, :] = 64  # each channel reaches the largest level
    scale = RNG.uniform(0.001, 0.01, 5).astype(np.float32)
    _set(layer, {**v, "kernel": steps * scale / factor})
    expected = _conv_then_bn(x, {**v, "kernel": steps * scale / factor})
    np.testing.assert_allclose(layer(x).numpy(), expected, rtol=1e-4, atol=1e-5)
    # Off the grid: each folded weight moves by at most half a step, so each output by at
    # most half a step times the sum of |x| over its window.
    _set(layer, v)
    folded = v["kernel"] * factor
    step = np.abs(folded).max(axis=(0, 1, 2)) / 64
    window = tf.nn.conv2d(np.abs(x), np.ones((3, 3, 4, 1), np.float32), 1, "SAME").numpy()
    error = np.abs(layer(x).numpy() - _conv_then_bn(x, v))
    assert (error <= window * step / 2 * (1 + 1e-4) + 1e-5).all()
    assert error.max() > 1e-4  # the weights really are rounded


def test_gradients_pass_straight_through_the_rounding() -> None:
    layer, v = _conv_layer()
    _set(layer, v)
    x = tf.constant(RNG.normal(0, 1, (2, 6, 6, 4)).astype(np.float32))
    with tf.GradientTape() as tape:
        total = tf.reduce_sum(layer(x, training=True))
    grad = tape.gradient(total, layer.kernel.value).numpy()
    # d/dkernel of sum(conv(x, kernel * factor)): the float convolution's own gradient.
    w = tf.Variable(np.zeros((3, 3, 4, 5), np.float32))
    with tf.GradientTape() as tape:
        total = tf.reduce_sum(tf.nn.conv2d(x, w, 1, "SAME"))
    factor = v["gamma"] / np.sqrt(v["var"] + EPS)
    np.testing.assert_allclose(grad, tape.gradient(total, w).numpy() * factor, rtol=1e-4,
                               atol=1e-4)
    # Activations: gradient 1 inside the range, 0 outside it.
    a = tf.constant([-3.0, -0.5, 0.2, 0.9, 2.5])
    with tf.GradientTape() as tape:
        tape.watch(a)
        y = fake_quant(a, tf.constant(-1.0), tf.constant(1.0))
        total = tf.reduce_sum(y)
    np.testing.assert_array_equal(tape.gradient(total, a).numpy(), [0, 1, 1, 1, 0])
    np.testing.assert_allclose(y.numpy(), [-1.0, -0.5, 0.2, 0.9, 1.0], atol=2 / 255)


def test_observer_moving_min_max_then_frozen() -> None:
    q = ActivationQuantizer(momentum=0.9)
    q.build(None)
    q(np.array([-1.0, 3.0], np.float32), training=True)  # the first batch sets the range
    assert (float(q.range_min), float(q.range_max)) == (-1.0, 3.0)
    q(np.array([-2.0, 1.0], np.float32), training=True)
    assert float(q.range_min) == pytest.approx(0.9 * -1 + 0.1 * -2)
    assert float(q.range_max) == pytest.approx(0.9 * 3 + 0.1 * 1)
    q(np.array([0.5, 2.0], np.float32), training=True)  # 0 stays inside the range
    assert float(q.range_min) == pytest.approx(0.9 * -1.1)
    q(np.array([-50.0, 50.0], np.float32), training=False)  # inference observes nothing
    assert float(q.seen) == 3
    before = (float(q.range_min), float(q.range_max))
    model = keras.Sequential([keras.Input((2,)), q])
    assert freeze_observers(model) == 1
    out = q(np.array([-50.0, 0.25, 50.0], np.float32), training=True).numpy()
    assert (float(q.range_min), float(q.range_max)) == before and float(q.seen) == 3
    assert out[0] == pytest.approx(before[0], abs=1e-3)  # rounded over the frozen range
    assert out[2] == pytest.approx(before[1], abs=1e-3)
    assert abs(out[1] - 0.25) <= (before[1] - before[0]) / 255


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple:
    """The trainer's nested network (normalisation -> ResNet-20 -> logits), stage 1 frozen,
    with batch norm statistics that are not the defaults; its QAT copy, observed once."""
    from keras_resnet.training.model import build_model

    keras.utils.set_random_seed(0)
    model = build_model("resnet20", input_size=16, classes=10, preprocessing="per_pixel_mean",
                        pixel_mean=np.full(16 * 16 * 3, 120.0, np.float32),
                        channel_std=np.ones(3, np.float32), zero_init_residual=False,
                        softmax=True, freeze="stage1")
    for layer in model._flatten_layers():
        if isinstance(layer, keras.layers.BatchNormalization):
            n = layer.moving_mean.shape[0]
            layer.set_weights([RNG.uniform(0.5, 1.5, n), RNG.normal(0, 0.1, n),
                               RNG.normal(0, 0.2, n), RNG.uniform(0.5, 2, n)])
    x = RNG.uniform(0, 255, (32, 16, 16, 3)).astype(np.float32)
    qat = quantize_model(model, "u8s8")
    qat(x, training=True)
    freeze_observers(qat)
    return model, qat, x


def test_nested_trained_model_keeps_names_trainable_flags_and_weights(trained) -> None:
    model, qat, x = trained
    assert [layer.name for layer in qat.layers] == [layer.name for layer in model.layers]
    net, qnet = model.get_layer("resnet20"), qat.get_layer("resnet20")
    qnames = {layer.name: layer for layer in qnet.layers}
    for layer in net.layers:
        new = qnames[layer.name]  # every layer keeps its name (a folded BN: an Identity)
        assert new.trainable == layer.trainable, layer.name
        if isinstance(layer, keras.layers.Conv2D):
            assert isinstance(new, QuantConv2D) and new.weight_qmax == 127
            np.testing.assert_array_equal(np.asarray(new.kernel), np.asarray(layer.kernel))
        if isinstance(layer, keras.layers.BatchNormalization):
            assert isinstance(new, keras.layers.Identity)
    assert not qnames["conv1_conv"].trainable and qnames["conv4_block1_1_conv"].trainable
    assert qat_scheme_of(qat) == "u8s8" and len(quantizers(qat)) > 20
    # int8 simulated costs little: the QAT copy agrees with the float model.
    agree = np.mean(np.argmax(model(x), 1) == np.argmax(qat(x), 1))
    assert agree >= 0.9


def test_keras_file_round_trip_with_safe_mode(trained, tmp_path: Path) -> None:
    import keras_resnet

    _, qat, x = trained
    qat.save(tmp_path / "qat.keras")
    loaded = keras_resnet.load_model(tmp_path / "qat.keras")  # safe_mode=True
    np.testing.assert_array_equal(np.asarray(loaded(x)), np.asarray(qat(x)))
    assert qat_scheme_of(loaded) == "u8s8"
    assert all(float(q.observing) == 0.0 for q in quantizers(loaded))


@pytest.mark.parametrize(("name", "options", "size"), [
    ("resnet20", {"variant": "v2"}, 16),  # pre-activation: batch norms that stay unfolded
    ("resnet18", {"layout": "torch"}, 32),  # timm's layout: no conv biases
])
def test_other_layouts_build_and_agree_with_the_float_network(name, options, size) -> None:
    """As the trainer rewrites them: batch norms no convolution absorbs run frozen."""
    from keras_resnet.training.qat import quantized_network

    import keras_resnet

    keras.utils.set_random_seed(1)
    net = keras_resnet.create_model(name, input_shape=(size, size, 3), classes=10,
                                    weights=None, classifier_activation=None, **options)
    qat, _ = quantized_network(net, "s8s8-sym")
    x = RNG.normal(0, 1, (8, size, size, 3)).astype(np.float32)
    qat(x, training=True)  # the first batch sets the ranges
    convs = [la for la in net._flatten_layers() if isinstance(la, keras.layers.Conv2D)]
    qconvs = [la for la in qat._flatten_layers() if isinstance(la, QuantConv2D)]
    assert [c.name for c in qconvs] == [c.name for c in convs]
    assert all(q.symmetric and q.weight_qmax == QAT_SCHEMES["s8s8-sym"].weight_qmax
               for q in qconvs)
    float_out, qat_out = net(x, training=False).numpy(), qat(x, training=False).numpy()
    assert np.isfinite(qat_out).all()
    assert np.abs(qat_out - float_out).max() <= 0.1 * np.abs(float_out).max()
    assert np.mean(qat_out.argmax(1) == float_out.argmax(1)) >= 0.75
