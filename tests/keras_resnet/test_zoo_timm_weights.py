"""timm/torchvision safetensors checkpoints: checked against keras-hub's own timm
converter, and every way a checkpoint can be wrong gives a clear error."""

import os
import pickle

import numpy as np
import pytest

import keras_resnet as kr


@pytest.fixture(scope="module")
def r18(tmp_path_factory, timm_checkpoint):
    """A random timm resnet18 checkpoint with 10 classes, and its config.json."""
    return timm_checkpoint(tmp_path_factory.mktemp("r18"), "resnet18", classes=10)


@pytest.mark.parametrize("arch", ["resnet18", "resnet50"])
def test_keras_hub_timm_converter_gives_the_same_outputs(arch, tmp_path, timm_checkpoint):
    """keras-hub's timm converter (written by others) reads the same file; logits agree."""
    import keras_hub

    path = timm_checkpoint(tmp_path / arch, arch, classes=10, seed=7)
    depth = int(arch.removeprefix("resnet"))
    ours = kr.build_resnet(depth, weights=str(path), input_shape=(64, 64, 3),
                           classifier_activation=None)
    theirs = keras_hub.models.ImageClassifier.from_preset(str(tmp_path / arch), activation=None)
    x = np.random.default_rng(3).normal(size=(2, 64, 64, 3)).astype("float32")
    a, b = np.asarray(ours(x)), np.asarray(theirs(x))
    assert a.shape == b.shape == (2, 10)
    assert a.std() > 0.1  # informative outputs, not all zeros
    np.testing.assert_allclose(a, b, atol=1e-4, rtol=0)
    strided = "conv4_block1_2_conv" if depth >= 50 else "conv4_block1_1_conv"  # v1.5: the 3x3
    assert ours.get_layer(strided).strides == (2, 2)
    assert not any(getattr(layer, "use_bias", False) for layer in ours.layers[:-1])
    assert ours.get_layer("conv1_bn").epsilon == 1e-5


def test_checkpoint_picks_the_torch_layout_and_refuses_others(r18, timm_checkpoint, tmp_path):
    model = kr.ResNet18(weights=str(r18), input_shape=(32, 32, 3))
    assert model.output.shape == (None, 10)  # classes taken from the checkpoint
    with pytest.raises(ValueError, match=r"variant='v1.5', layout='torch'.*layout='keras'"):
        kr.ResNet18(weights=str(r18), layout="keras")
    r50 = timm_checkpoint(tmp_path / "r50", "resnet50", classes=10)
    with pytest.raises(ValueError, match=r"variant='v1'.*leave variant and layout unset"):
        kr.ResNet50(weights=str(r50), variant="v1")
    with pytest.raises(ValueError, match=r"variant='v2'"):
        kr.ResNet50V2(weights=str(r50))
    with pytest.raises(ValueError, match=r"hold resnet18 \(basic blocks 2-2-2-2\), but resnet50 "
                                         r"is resnet50 \(bottleneck blocks 3-4-6-3\)"):
        kr.ResNet50(weights=str(r18))
    with pytest.raises(ValueError, match=r"hold resnet50 .* but resnext50_32x4d is"):
        kr.ResNeXt50_32x4d(weights=str(r50))
    with pytest.raises(ValueError, match="cifar-family"):
        kr.ResNet20(weights=str(r18))


@pytest.mark.parametrize("call, message", [
    (dict(classes=5), r"classes=5 does not fit .* \(they have 10 classes\)"),
    (dict(input_shape=(32, 32, 1)), r"1 channel\(s\), but weights=.* expect 3"),
    (dict(classifier_activation="relu"), r"classifier_activation='relu'"),
    (dict(shortcut="C"), r"shortcut='B'"),
])
def test_inconsistent_arguments_are_refused(r18, call, message):
    with pytest.raises(ValueError, match=message):
        kr.ResNet18(weights=str(r18), **{"input_shape": (32, 32, 3), **call})


def test_every_tensor_used_once_and_every_weight_set(r18, timm_checkpoint, tmp_path):
    missing = timm_checkpoint(tmp_path / "missing", "resnet18", classes=10,
                              drop=("layer3.0.downsample.1.running_var", "layer1.1.conv2.weight"))
    with pytest.raises(ValueError, match=r"unused tensors of the file: none; weights of the model "
                                         r"missing from the file: layer1\.1\.conv2\.weight, "
                                         r"layer3\.0\.downsample\.1\.running_var"):
        kr.ResNet18(weights=str(missing), input_shape=(32, 32, 3))
    extra = timm_checkpoint(tmp_path / "extra", "resnet18", classes=10,
                            extra={"layer1.0.se.fc1.weight": np.zeros((4, 64, 1, 1), "float32")})
    with pytest.raises(ValueError, match=r"unused tensors of the file: layer1\.0\.se\.fc1\.weight;"
                                         r" weights of the model missing from the file: none"):
        kr.ResNet18(weights=str(extra), input_shape=(32, 32, 3))
    # Without its top the classifier is left out on purpose; everything else loads.
    headless = kr.ResNet18(weights=str(r18), include_top=False, input_shape=(32, 32, 3))
    from safetensors.numpy import load_file

    tensors = load_file(str(r18))
    kernel = np.asarray(headless.get_layer("conv3_block1_1_conv").kernel)
    np.testing.assert_array_equal(kernel, tensors["layer2.0.conv1.weight"].transpose(2, 3, 1, 0))
    bn = headless.get_layer("conv5_block2_2_bn")
    np.testing.assert_array_equal(np.asarray(bn.moving_variance), tensors["layer4.1.bn2.running_var"])


def test_pickle_files_are_refused_without_being_opened(tmp_path):
    marker = tmp_path / "unpickled"

    class Payload:
        def __reduce__(self):
            return (marker.touch, ())

    for suffix in (".pth", ".bin"):
        path = tmp_path / f"resnet18{suffix}"
        path.write_bytes(pickle.dumps(Payload()))
        with pytest.raises(ValueError, match=r"pickle-based .* never unpickles .* safetensors"):
            kr.ResNet18(weights=str(path))
    assert not marker.exists()


def test_missing_corrupt_and_foreign_files(tmp_path, timm_checkpoint):
    with pytest.raises(FileNotFoundError, match="no such file"):
        kr.ResNet18(weights=str(tmp_path / "nothing.safetensors"))
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all}")
    with pytest.raises(ValueError, match="corrupt or not a safetensors file"):
        kr.ResNet18(weights=str(bad))
    deep = timm_checkpoint(tmp_path / "deep", "resnet18", classes=10, drop=("conv1.weight",),
                           extra={"conv1.0.weight": np.zeros((32, 3, 3, 3), "float32")})
    with pytest.raises(ValueError, match=r"deep stem"):
        kr.ResNet18(weights=str(deep))
    with pytest.raises(ValueError, match=r"expected 'timm/<architecture>.<tag>'"):
        kr.ResNet18(weights="timm/vit_base_patch16_224.augreg_in21k")


def test_offline_download_fails_at_once_saying_how_to_pass_a_file(monkeypatch, tmp_path):
    # Port 9 (discard) on the loopback refuses connections: a machine without network.
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(OSError, match=r"cannot reach the Hugging Face hub .* pass "
                                      r"weights='resnet18\.a1_in1k/model\.safetensors'"):
        kr.ResNet18(weights="timm/resnet18.a1_in1k")
    assert not [f for _, _, files in os.walk(tmp_path) for f in files]
    # A name for another architecture is refused before any download is tried.
    with pytest.raises(ValueError, match="hold resnet50"):
        kr.ResNet18(weights="timm/resnet50.a1_in1k")


def _cached_files(tmp_path):
    """Files in the hub cache other than huggingface_hub's bookkeeping (refs, locks, tags)."""
    return [f for _, _, files in os.walk(tmp_path / "hub") for f in files
            if f not in ("main", "CACHEDIR.TAG") and not f.endswith(".lock")]


def test_hub_download_caches_checks_the_digest_and_leaves_nothing_partial(r18, fake_hub, tmp_path):
    body = r18.read_bytes()
    route = "/timm/resnet18.a1_in1k/resolve/main/"
    files = {route + "model.safetensors": body, route + "config.json": b'{"architecture": "resnet18"}'}
    fake_hub({route + "model.safetensors": os.urandom(4096)}, truncate=True)
    with pytest.raises(OSError, match="download failed"):
        kr.ResNet18(weights="timm/resnet18.a1_in1k")
    assert not _cached_files(tmp_path)  # no blob, complete or partial
    fake_hub(files, etag="0" * 64)
    with pytest.raises(ValueError, match="SHA-256 .* the file is corrupt and was removed"):
        kr.ResNet18(weights="timm/resnet18.a1_in1k")
    assert not _cached_files(tmp_path)
    fake_hub(files)
    from keras_resnet.weights import hub

    path, digest = hub.download("timm/resnet18.a1_in1k")
    assert digest == __import__("hashlib").sha256(body).hexdigest()
    assert os.path.isfile(os.path.join(os.path.dirname(path), "config.json"))
    with open(path, "r+b") as f:  # a cached file changed on disk is caught too
        f.seek(4000)
        f.write(b"\xff")
    with pytest.raises(ValueError, match="the file is corrupt"):
        hub.download("timm/resnet18.a1_in1k")
    model = kr.ResNet18(weights="timm/resnet18.a1_in1k", input_shape=(32, 32, 3))
    local = kr.ResNet18(weights=str(r18), input_shape=(32, 32, 3))
    x = np.random.default_rng(0).normal(size=(1, 32, 32, 3)).astype("float32")
    np.testing.assert_array_equal(np.asarray(model(x)), np.asarray(local(x)))


def test_table_of_known_weights_has_the_published_numbers():
    expected = {"timm/resnet18.a1_in1k": 71.50, "timm/resnet34.a1_in1k": 76.42,
                "timm/resnet50.a1_in1k": 80.38, "timm/resnet101.a1h_in1k": 81.95,
                "timm/resnet152.a1h_in1k": 82.82, "timm/resnet18.tv_in1k": 69.76,
                "timm/resnet34.tv_in1k": 73.31, "timm/resnet50.tv_in1k": 76.13,
                "timm/resnet101.tv_in1k": 77.37, "timm/resnet152.tv_in1k": 78.31,
                "imagenet:resnet50": 74.9}
    for name, top1 in expected.items():
        assert name in kr.list_weights()
        assert kr.weights_info(name)["top1"] == top1
    info = kr.weights_info("timm/resnet50.a1_in1k")
    assert (info["interpolation"], info["crop_fraction"], info["input_size"]) == ("bicubic", 0.95, 224)
    assert kr.weights_info("timm/resnet50.tv_in1k")["crop_fraction"] == 0.875
    assert kr.list_weights("resnet18") == ["timm/resnet18.a1_in1k", "timm/resnet18.tv_in1k"]
    with pytest.raises(ValueError, match="not in the table"):
        kr.weights_info("timm/resnet50.nope")


def test_preprocessing_follows_the_weights_and_can_live_in_the_model(r18, images):
    pixels = images(2, 32)
    x = kr.preprocess_input(pixels, weights="timm/resnet18.a1_in1k")
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    np.testing.assert_allclose(x, (pixels / 255 - mean) / std, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(kr.preprocess_input(pixels, weights=str(r18)), x, atol=1e-6)
    np.testing.assert_allclose(kr.preprocess_input(pixels, weights="imagenet:resnet50v2"),
                               pixels / 127.5 - 1, atol=1e-5)
    plain = kr.ResNet18(weights=str(r18), input_shape=(32, 32, 3))
    raw = kr.ResNet18(weights=str(r18), input_shape=(32, 32, 3), include_preprocessing=True)
    np.testing.assert_allclose(np.asarray(raw(pixels)), np.asarray(plain(x)), atol=1e-5)
    with pytest.raises(ValueError, match="include_preprocessing=True needs weights"):
        kr.ResNet18(include_preprocessing=True)
    with pytest.raises(ValueError, match="Caffe's BGR"):
        kr.ResNet50(weights="imagenet", include_preprocessing=True)


@pytest.mark.parametrize(("tensor", "value", "words"), [
    ("layer1.0.conv1.weight", np.inf, "non-finite"),
    ("layer2.0.bn2.running_var", -1.0, "negative")])
def test_non_finite_or_negative_variance_is_named(tensor, value, words, tmp_path,
                                                   timm_checkpoint):
    """A safetensors file is checked tensor by tensor before use, named as in the file."""
    from safetensors.numpy import load_file

    good = load_file(str(timm_checkpoint(tmp_path / "good", "resnet18", classes=10)))
    bad = good[tensor].copy()
    bad.flat[0] = value
    path = timm_checkpoint(tmp_path / "bad", "resnet18", classes=10, extra={tensor: bad})
    with pytest.raises(ValueError, match=rf"tensor {tensor.replace('.', '[.]')} .*{words}"):
        kr.ResNet18(weights=str(path), input_shape=(32, 32, 3), classes=10)
