"""What the zoo's options do, checked on outputs."""

import os
import subprocess
import sys

import keras
import numpy as np
import pytest

import keras_resnet as kr

pytestmark = pytest.mark.slow(seconds=90)  # builds every registered model


def _np(x):
    return keras.ops.convert_to_numpy(x)


def _submodel(model, *names):
    return keras.Model(model.inputs, [model.get_layer(n).output for n in names])


def test_option_a_shortcut_subsamples_and_zero_pads(images):
    model = kr.ResNet20()
    sub = _submodel(model, "conv2_block3_out", "conv3_block1_0_pad")
    block_in, shortcut = (_np(t) for t in sub(images(2, 32)))
    assert shortcut.shape == (2, 16, 16, 32)
    np.testing.assert_allclose(shortcut[..., 8:24], block_in[:, ::2, ::2, :], atol=1e-6)
    assert not shortcut[..., :8].any() and not shortcut[..., 24:].any()


def test_zero_init_residual_makes_identity_blocks_pass_input_through(images):
    model = kr.ResNet20(zero_init_residual=True)
    sub = _submodel(model, "conv2_block1_out", "conv2_block2_out", "conv2_block3_out")
    b1, b2, b3 = (_np(t) for t in sub(images(2, 32)))
    np.testing.assert_allclose(b2, b1, atol=1e-6)
    np.testing.assert_allclose(b3, b1, atol=1e-6)
    assert np.abs(b1).max() > 0
    pre = kr.ResNet50V2(zero_init_residual=True, include_top=False, input_shape=(64, 64, 3))
    assert not _np(pre.get_layer("conv2_block2_3_conv").kernel).any()
    a, b = (_np(t) for t in _submodel(pre, "conv2_block1_out", "conv2_block2_out")(
        images(1, 64)))
    np.testing.assert_allclose(b, a, atol=1e-5)


def test_drop_path_is_stochastic_per_sample_in_training_only(images):
    model = kr.ResNet20(drop_path_rate=0.5)
    # Linear in depth: block i of 9 drops with 0.5 * i / 8; block 0 (rate 0) has no layer.
    rates = [layer.rate for layer in model.layers if layer.name.endswith("_drop_path")]
    np.testing.assert_allclose(rates, np.linspace(0, 0.5, 9)[1:])
    x = images(8, 32)
    np.testing.assert_allclose(_np(model(x, training=False)), _np(model(x, training=False)))
    layer = model.get_layer("conv4_block3_drop_path")
    out = _np(layer(np.ones((64, 4, 4, 8), "float32"), training=True))
    per_sample = out.reshape(64, -1)
    assert all(np.unique(row).size == 1 for row in per_sample)  # a whole branch or nothing
    assert set(np.unique(per_sample).round(4)) <= {0.0, 2.0}
    assert 0 < (per_sample[:, 0] == 0).sum() < 64


@pytest.mark.parametrize("name", ["resnet50", "resnet50v2", "resnext50_32x4d"])
def test_feature_extractor_gives_strides_4_to_32(name, images):
    backbone = kr.create_model(name, include_top=False)
    features = kr.feature_extractor(backbone)
    out = features(images(1, 128))
    widths = (256, 512, 1024, 2048)
    assert {k: tuple(v.shape) for k, v in out.items()} == {
        f"C{i + 2}": (1, 128 // 4 // 2**i, 128 // 4 // 2**i, widths[i]) for i in range(4)}
    assert features.get_layer("conv2_block1_1_conv") is backbone.get_layer("conv2_block1_1_conv")


def test_feature_extractor_refuses_cifar_nets_and_unknown_levels():
    with pytest.raises(ValueError, match="no stage output at stride 8 for C3"):
        kr.feature_extractor(kr.ResNet20(), levels=("C3",))
    with pytest.raises(ValueError, match="levels=.*choose from C2, C3, C4, C5"):
        kr.feature_extractor(kr.ResNet18(), levels=("P3",))


def test_keras_file_round_trips_with_safe_mode_and_no_custom_objects(tmp_path, images):
    models = [kr.ResNet20(drop_path_rate=0.2), kr.ResNeXt50_32x4d(input_shape=(64, 64, 3)),
              kr.ResNet18(shortcut="A", input_shape=(64, 64, 3), classes=7)]
    for model in models:
        path = tmp_path / f"{model.name}.keras"
        model.save(path)
        loaded = keras.models.load_model(path, safe_mode=True)
        x = images(2, model.input_shape[1])
        np.testing.assert_allclose(_np(loaded(x)), _np(model(x)), atol=1e-5)
        assert [w.shape for w in loaded.weights] == [w.shape for w in model.weights]
    features = kr.feature_extractor(keras.models.load_model(
        tmp_path / "resnet18.keras", safe_mode=True), levels=("C5",))
    assert tuple(features(images(1, 64))["C5"].shape) == (1, 2, 2, 512)


def test_profile_counts_variable_size_models_at_a_given_size():
    headless = kr.ResNet50(include_top=False)
    assert headless.input_shape == (None, None, None, 3)
    with pytest.raises(ValueError, match="variable input size.*pass input_shape"):
        kr.profile(headless)
    at_224 = kr.profile(headless, input_shape=(224, 224, 3))
    full = kr.profile(kr.ResNet50())
    assert full["macs"] - at_224["macs"] == 2048 * 1000  # the classifier
    # Every feature map of a 448 input is exactly twice as wide and high as at 224.
    assert kr.profile(headless, (448, 448, 3))["macs"] == 4 * at_224["macs"]


# ResNet-1202 is built and counted once, in test_zoo_paper: a forward pass costs ~25 s.
@pytest.mark.parametrize("name", [n for n in kr.list_models() if n != "resnet1202"])
def test_every_registered_model_builds_and_predicts(name, images):
    info = kr.model_info(name)
    size = 32 if info["family"] == "cifar" else 64
    model = kr.create_model(name, input_shape=(size, size, 3), classes=5)
    probs = _np(model(images(2, size)))
    assert probs.shape == (2, 5)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    assert model.name == name
    builder = getattr(kr, info["builder"])
    assert builder.__name__ == info["builder"]


def test_registry_lists_every_family():
    assert kr.list_models("cifar") == ["resnet20", "resnet32", "resnet44", "resnet56",
                                       "resnet110", "resnet1202", "wide_resnet28_10"]
    assert {"resnet18", "resnet50v2", "resnext50_32x4d"} <= set(kr.list_models("imagenet"))
    assert kr.model_info("ResNet50")["preprocessing"] == "caffe"
    assert kr.model_info("resnet50v2")["preprocessing"] == "tf"
    assert kr.create_model("RESNET20").name == "resnet20"


def test_input_tensor_and_pooling_follow_keras_applications():
    inp = keras.Input((96, 96, 3))
    model = kr.ResNet18(input_tensor=inp, include_top=False, pooling="max")
    assert model.inputs[0] is inp and model.output_shape == (None, 512)
    assert model.get_layer("max_pool")
    assert kr.ResNet18(include_top=False).output_shape == (None, None, None, 512)


@pytest.mark.skipif(keras.backend.backend() != "jax",
                    reason="needs a backend other than TensorFlow; the JAX run checks it")
def test_zoo_never_imports_tensorflow(tmp_path, timm_checkpoint):
    # A fresh process: Keras itself imports TensorFlow, when installed, to save a .keras
    # file, which other tests of this process do. One process for building, profiling,
    # features, and loading timm weights with their preprocessing.
    r18 = timm_checkpoint(tmp_path / "r18", "resnet18", classes=10)
    code = ("import sys, numpy as np, keras_resnet as kr; from keras_resnet.weights import hub; "
            "kr.ResNet20(); kr.profile(kr.ResNet18()); "
            "kr.feature_extractor(kr.ResNet18(include_top=False)); "
            f"m = kr.ResNet18(weights={str(r18)!r}, input_shape=(32, 32, 3), "
            "include_preprocessing=True); m(np.zeros((1, 32, 32, 3), 'float32')); "
            "kr.preprocess_input(np.zeros((1, 8, 8, 3)), weights='timm/resnet18.a1_in1k'); "
            "assert 'tensorflow' not in sys.modules, 'tensorflow was imported'")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=1200, env={**os.environ, "KERAS_BACKEND": "jax"})
    assert done.returncode == 0, done.stderr[-2000:]
