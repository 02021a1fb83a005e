"""Layer-for-layer compatibility with keras.applications' ResNet and ResNetV2."""

import h5py
import keras
import numpy as np
import pytest

import keras_resnet as kr
from keras_resnet.weights import keras_files

pytestmark = pytest.mark.slow(seconds=85)

# 101 and 101V2 differ from these only in stage 4's block count (same stage code), so the
# shallowest and deepest of each family stand for them and keep the run short.
# The deepest pair per family runs on TensorFlow only: the layer-by-layer code is the same
# at every depth, and the JAX run checks it on the 50-layer nets.
_TF_ONLY = pytest.mark.skipif(keras.backend.backend() != "tensorflow",
                              reason="the 50-layer pair checks this backend; 152 on TensorFlow")
PAIRS = [
    ("ResNet50", kr.ResNet50), pytest.param("ResNet152", kr.ResNet152, marks=_TF_ONLY),
    ("ResNet50V2", kr.ResNet50V2), pytest.param("ResNet152V2", kr.ResNet152V2, marks=_TF_ONLY),
]
SIZE = 64


@pytest.mark.parametrize(("apps_name", "ours"), PAIRS, ids=["ResNet50", "ResNet152", "ResNet50V2", "ResNet152V2"])
def test_keras_applications_weight_files_load_and_match(apps_name, ours, tmp_path, images, randomize, save_legacy_h5):
    reference = randomize(getattr(keras.applications, apps_name)(
        weights=None, input_shape=(SIZE, SIZE, 3), classifier_activation=None))
    legacy, modern = tmp_path / "ref.h5", tmp_path / "ref.weights.h5"
    save_legacy_h5(reference, legacy)
    reference.save_weights(modern)
    x = images(2, SIZE)
    expected = keras.ops.convert_to_numpy(reference(x))
    assert np.std(expected) > 1e-2  # informative logits, not a constant

    if apps_name == "ResNet50":
        # Keras' own legacy loader reads the layout the fixture writes (the published one).
        twin = keras.applications.ResNet50(
            weights=None, input_shape=(SIZE, SIZE, 3), classifier_activation=None)
        twin.load_weights(legacy)
        np.testing.assert_allclose(keras.ops.convert_to_numpy(twin(x)), expected, atol=1e-4)
        built = kr.ResNet50(weights=str(modern), input_shape=(SIZE, SIZE, 3),
                            classifier_activation=None)
        np.testing.assert_allclose(keras.ops.convert_to_numpy(built(x)), expected, atol=1e-4)

    model = ours(weights=str(legacy), input_shape=(SIZE, SIZE, 3), classifier_activation=None)
    for path in (legacy, modern):
        if path == modern:
            randomize(model, seed=7)  # forget the legacy file's values first
            keras_files.load_file(model, str(path))
        got = keras.ops.convert_to_numpy(model(x))
        assert np.max(np.abs(got - expected)) < 1e-4 * max(1.0, np.max(np.abs(expected)))
        probs = keras.ops.convert_to_numpy(keras.ops.softmax(got))
        ref_probs = keras.ops.convert_to_numpy(keras.ops.softmax(expected))
        assert np.max(np.abs(probs - ref_probs)) < 1e-4


def test_notop_legacy_file_loads_into_headless_model(tmp_path, images, randomize, save_legacy_h5):
    reference = randomize(keras.applications.ResNet50(
        weights=None, include_top=False, pooling="avg", input_shape=(SIZE, SIZE, 3)))
    path = tmp_path / "notop.h5"
    save_legacy_h5(reference, path)
    model = kr.ResNet50(weights=str(path), include_top=False, pooling="avg",
                        input_shape=(SIZE, SIZE, 3))
    x = images(2, SIZE)
    expected = keras.ops.convert_to_numpy(reference(x))
    np.testing.assert_allclose(keras.ops.convert_to_numpy(model(x)), expected,
                               rtol=1e-4, atol=1e-4)
    # A headless file cannot fill a classifier.
    with pytest.raises(ValueError, match="no weights for 1 layer.*predictions"):
        kr.ResNet50(weights=str(path), input_shape=(SIZE, SIZE, 3))


def test_mismatched_and_corrupt_weight_files(tmp_path, randomize, save_legacy_h5):
    small = kr.ResNet50(input_shape=(SIZE, SIZE, 3))
    legacy = tmp_path / "r50.h5"
    save_legacy_h5(small, legacy)
    with pytest.raises(ValueError, match="weights=.*no weights for .* layer"):
        kr.ResNet101(weights=str(legacy), input_shape=(SIZE, SIZE, 3))
    with pytest.raises(ValueError, match="weights=.*'predictions' expects shapes"):
        kr.ResNet50(weights=str(legacy), classes=10, input_shape=(SIZE, SIZE, 3))
    modern = tmp_path / "r50.weights.h5"
    small.save_weights(modern)
    with pytest.raises(ValueError, match="weights=.*does not fit resnet18"):
        kr.ResNet18(weights=str(modern), input_shape=(SIZE, SIZE, 3))
    corrupt = tmp_path / "corrupt.h5"
    corrupt.write_bytes(b"this is not an HDF5 file" * 10)
    with pytest.raises(ValueError, match="weights=.*corrupt"):
        kr.ResNet50(weights=str(corrupt))
    with pytest.raises(FileNotFoundError, match="weights=.*no such file"):
        kr.ResNet50(weights=str(tmp_path / "missing.h5"))
    with pytest.raises(ValueError, match=r"weights=.*\.h5, \.weights\.h5 or \.keras"):
        (tmp_path / "w.txt").write_bytes(b"x")
        kr.ResNet50(weights=str(tmp_path / "w.txt"))
    plain_h5 = tmp_path / "plain.h5"
    with h5py.File(plain_h5, "w") as f:
        f.create_dataset("x", data=np.zeros(3))
    with pytest.raises(ValueError, match="neither a legacy Keras HDF5 file"):
        kr.ResNet50(weights=str(plain_h5))


def test_imagenet_fetches_published_file_with_its_hash(tmp_path, monkeypatch, images, randomize, save_legacy_h5):
    reference = randomize(keras.applications.ResNet50V2(weights=None))
    path = tmp_path / "published.h5"
    save_legacy_h5(reference, path)
    calls = []

    def fake_get_file(fname, origin, cache_subdir, file_hash):
        calls.append((fname, origin, cache_subdir, file_hash))
        return str(path)

    monkeypatch.setattr(keras.utils, "get_file", fake_get_file)
    model = kr.ResNet50V2(weights="imagenet")
    fname = "resnet50v2_weights_tf_dim_ordering_tf_kernels.h5"
    assert calls == [(fname, keras_files.BASE_URL + fname, "models",
                      "3ef43a0b657b3be2300d5770ece849e0")]
    x = images(1, 224)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(model(x)),
                               keras.ops.convert_to_numpy(reference(x)), atol=1e-4)


def test_imagenet_refused_where_no_published_weights_or_inconsistent_head():
    with pytest.raises(ValueError, match="weights='imagenet' is published only for"):
        kr.ResNet18(weights="imagenet")
    with pytest.raises(ValueError, match="weights='imagenet' is published only for"):
        kr.ResNet50(weights="imagenet", shortcut="C")
    with pytest.raises(ValueError, match="weights='imagenet' is published only for"):
        kr.ResNet50(weights="imagenet", variant="v1.5")
    with pytest.raises(ValueError, match="classes=10 does not fit weights='imagenet'"):
        kr.ResNet50(weights="imagenet", classes=10)
    with pytest.raises(ValueError, match="classifier_activation='sigmoid'"):
        kr.ResNet50(weights="imagenet", classifier_activation="sigmoid")
    with pytest.raises(ValueError, match="needs 3 channels"):
        kr.ResNet50(weights="imagenet", include_top=False, input_shape=(224, 224, 1))


def test_imagenet_download_failure_says_what_to_do(monkeypatch):
    def offline(*args, **kwargs):
        raise ConnectionError("network is unreachable")

    monkeypatch.setattr(keras.utils, "get_file", offline)
    with pytest.raises(OSError, match=r"could not download .*resnet50_weights_tf_dim_ordering_"
                                      r"tf_kernels_notop\.h5 .*pass weights=PATH"):
        kr.ResNet50(weights="imagenet", include_top=False)
