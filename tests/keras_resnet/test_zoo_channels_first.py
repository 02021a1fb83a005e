"""The channels-first (NCHW) layout: every builder, weight source and tool works in it,
and a channels-first model computes what its channels-last twin computes."""

import keras
import numpy as np
import pytest

import keras_resnet as kr


def _nchw_convolution_runs() -> bool:
    """Whether this backend runs an NCHW convolution on this CPU: TensorFlow does only with
    oneDNN, which it turns on by default on CPUs with AVX-512 VNNI, BF16 or AMX (elsewhere
    TF_ENABLE_ONEDNN_OPTS=1); JAX always does."""
    if keras.backend.backend() != "tensorflow":
        return True
    import tensorflow as tf

    try:
        tf.nn.conv2d(tf.zeros((1, 1, 4, 4)), tf.zeros((3, 3, 1, 1)), 1, "SAME",
                     data_format="NCHW")
    except (tf.errors.UnimplementedError, tf.errors.InvalidArgumentError):
        return False
    return True


@pytest.fixture
def channels_first():
    """Build in channels_first inside the test; the global setting is restored after. Skips
    where the backend cannot run an NCHW convolution on this CPU (the JAX run of this file
    checks the same models there)."""
    if not _nchw_convolution_runs():
        pytest.skip("TensorFlow runs NCHW convolutions on the CPU only with oneDNN, which is "
                    "off on this CPU (no AVX-512 VNNI/BF16/AMX; TF_ENABLE_ONEDNN_OPTS=1 turns "
                    "it on); the JAX run checks channels-first models")
    previous = keras.config.image_data_format()
    keras.config.set_image_data_format("channels_first")
    yield
    keras.config.set_image_data_format(previous)


def _twin(build, shape_last, randomize):
    """(channels-last model with random weights, channels-first model with the same weights)."""
    last = randomize(build(input_shape=shape_last))
    keras.config.set_image_data_format("channels_first")
    h, w, c = shape_last
    first = build(input_shape=(c, h, w))
    first.set_weights(last.get_weights())  # kernels have one shape in both layouts
    return last, first


def _nchw(x):
    return np.transpose(x, (0, 3, 1, 2))


@pytest.mark.parametrize("name, shape", [
    ("resnet20", (None, None, 1)),      # option A zero-pads channels; unknown spatial size
    ("resnet18", (32, 32, 4)),          # ImageNet stem, projections, 4 channels
    ("resnext_v2", (32, 32, 3)),        # grouped pre-activation bottlenecks
])
def test_channels_first_computes_what_channels_last_computes(name, shape, channels_first,
                                                             randomize):
    keras.config.set_image_data_format("channels_last")
    def build(**kw):
        if name == "resnext_v2":  # stride in the last block of a stage, as keras.applications
            return kr.build_resnet(50, variant="v2", groups=4, width_per_group=8,
                                   include_top=False, **kw)
        return kr.create_model(name, include_top=False, **kw)

    last, first = _twin(build, shape, randomize)
    assert first.get_layer("conv1_conv").data_format == "channels_first"
    for size in ((32, 32), (48, 40)) if shape[0] is None else ((32, 32),):
        x = np.random.default_rng(0).normal(size=(1, *size, shape[2])).astype("float32")
        a = np.asarray(last(x))
        b = np.asarray(first(_nchw(x)))
        np.testing.assert_allclose(b, _nchw(a), atol=1e-4, rtol=1e-4)
        assert a.std() > 1e-2


def test_every_weight_source_loads_into_channels_first(tmp_path, channels_first, randomize,
                                                       save_legacy_h5, timm_checkpoint):
    keras.config.set_image_data_format("channels_last")
    source = randomize(kr.ResNet18(input_shape=(32, 32, 3), classes=7))
    save_legacy_h5(source, tmp_path / "legacy.h5")
    source.save_weights(tmp_path / "model.weights.h5")
    ckpt = timm_checkpoint(tmp_path / "timm", "resnet18", classes=7)
    timm_last = kr.ResNet18(weights=str(ckpt), input_shape=(32, 32, 3))
    pixels = np.random.default_rng(1).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    keras.config.set_image_data_format("channels_first")
    for path in ("legacy.h5", "model.weights.h5"):
        model = kr.ResNet18(weights=str(tmp_path / path), input_shape=(3, 32, 32), classes=7)
        np.testing.assert_allclose(np.asarray(model(_nchw(pixels))), np.asarray(source(pixels)),
                                   atol=1e-5)
    timm_first = kr.ResNet18(weights=str(ckpt), input_shape=(3, 32, 32),
                             include_preprocessing=True)
    x = kr.preprocess_input(pixels, weights=str(ckpt), data_format="channels_last")
    np.testing.assert_allclose(np.asarray(timm_first(_nchw(pixels))), np.asarray(timm_last(x)),
                               atol=1e-5)
    np.testing.assert_allclose(kr.preprocess_input(_nchw(pixels), weights=str(ckpt)), _nchw(x),
                               atol=1e-5)


def test_shapes_pooling_and_input_tensors_in_channels_first(channels_first):
    assert kr.ResNet18().input.shape == (None, 3, 224, 224)
    assert kr.ResNet20().input.shape == (None, 3, 32, 32)
    assert kr.ResNet18(include_top=False, input_shape=(3, 64, 64)).output.shape == (None, 512, 2, 2)
    for pooling in ("avg", "max"):
        model = kr.ResNet18(include_top=False, pooling=pooling, input_shape=(1, 64, 64))
        assert model.output.shape == (None, 512)
    tensor = keras.Input((4, 64, 96))
    model = kr.ResNet18(include_top=False, input_tensor=tensor)
    assert model.inputs[0] is tensor and model.output.shape == (None, 512, 2, 3)
    with pytest.raises(ValueError, match=r"\(channels, height, width\)"):
        kr.ResNet18(input_shape=(64, 64))
    with pytest.raises(ValueError, match="too small"):
        kr.ResNet18(input_shape=(3, 16, 64))


def test_features_and_profile_in_channels_first(channels_first):
    model = kr.ResNet18(include_top=False, input_shape=(3, None, None))
    features = kr.feature_extractor(model)
    out = features(np.zeros((1, 3, 64, 64), "float32"))
    assert {k: tuple(v.shape) for k, v in out.items()} == {
        "C2": (1, 64, 16, 16), "C3": (1, 128, 8, 8), "C4": (1, 256, 4, 4), "C5": (1, 512, 2, 2)}
    first = kr.profile(kr.ResNet18())
    sized = kr.profile(model, input_shape=(3, 224, 224))
    keras.config.set_image_data_format("channels_last")
    last = kr.profile(kr.ResNet18())
    assert first == last and first["macs"] == 1_814_073_344  # 1.8 G multiply-adds, Table 1
    assert sized["macs"] == first["macs"] - 512 * 1000
