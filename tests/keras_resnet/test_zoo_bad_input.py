"""Every bad argument raises a clear error naming it, before any layer is built."""

import pytest

import keras_resnet as kr
from keras_resnet import blocks


@pytest.fixture(autouse=True)
def no_building(monkeypatch):
    """Fail loudly if a bad call gets as far as building layers."""
    def refuse(*args, **kwargs):
        raise AssertionError("layers were built before the argument was checked")
    monkeypatch.setattr(blocks, "stem", refuse)


CASES = [
    (lambda: kr.build_resnet(42), ValueError, r"depth=42 .*family='imagenet'; valid: 18, 34, 50, 101, 152, 200"),
    (lambda: kr.build_resnet(21, family="cifar"), ValueError, r"depth=21 .*family='cifar'; valid: 8, 14, 20, 26"),
    (lambda: kr.build_resnet(20, family="svhn"), ValueError, r"family='svhn' is not one of 'imagenet', 'cifar'"),
    (lambda: kr.ResNet50(shortcut="D"), ValueError, r"shortcut='D' is not one of 'A', 'B', 'C'"),
    (lambda: kr.ResNet50(variant="v3"), ValueError, r"variant='v3' is not one of v1, v1.5, v2"),
    (lambda: kr.ResNet50(include_top=False, pooling="mean"), ValueError, r"pooling='mean' is not one of None, 'avg', 'max'"),
    (lambda: kr.ResNet50(input_shape=(16, 16, 3)), ValueError, r"input_shape=\(16, 16, 3\) is too small for resnet50: .* at least 32"),
    (lambda: kr.ResNet20(input_shape=(2, 2, 3)), ValueError, r"too small for resnet20: .* at least 4"),
    (lambda: kr.ResNet50(input_shape=(224, 3)), ValueError, r"input_shape=\(224, 3\) must have 3 entries"),
    (lambda: kr.ResNet50(classes=0), ValueError, r"classes=0 must be a positive integer"),
    (lambda: kr.ResNet50(weights="imagenet", classes=10), ValueError, r"classes=10 does not fit weights='imagenet'"),
    (lambda: kr.ResNet18(weights="imagenet"), ValueError, r"weights='imagenet' is published only for"),
    (lambda: kr.ResNet50(weights=3), ValueError, r"weights=3 must be None, 'imagenet' or a path"),
    (lambda: kr.ResNet50(weights="/nonexistent/w.h5"), FileNotFoundError, r"weights='/nonexistent/w.h5': no such file"),
    (lambda: kr.create_model("resnet51"), ValueError, r"unknown model 'resnet51' \(did you mean .*resnet50.*\); available: resnet18,"),
    (lambda: kr.ResNet20(drop_path_rate=1.5), ValueError, r"drop_path_rate=1.5 must be a number in \[0, 1\)"),
    (lambda: kr.ResNet18(groups=32), ValueError, r"groups and width_per_group apply to bottleneck"),
    (lambda: kr.ResNet20(widen_factor=0), ValueError, r"widen_factor=0 must be an integer >= 1"),
    (lambda: kr.ResNet50(widen_factor=2), ValueError, r"widen_factor applies to family='cifar'"),
    (lambda: kr.list_models("mnist"), ValueError, r"family='mnist' is not one of"),
]


@pytest.mark.parametrize(("call", "error", "message"), CASES, ids=[c[2][:40] for c in CASES])
def test_bad_argument_is_refused_with_a_message_naming_it(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_corrupt_weights_refused_before_building(tmp_path):
    bad = tmp_path / "w.weights.h5"
    bad.write_bytes(b"\x00" * 64)
    with pytest.raises(ValueError, match=r"weights=.* is corrupt or not a weights file"):
        kr.ResNet50(weights=str(bad))
    bad_keras = tmp_path / "m.keras"
    bad_keras.write_bytes(b"not a zip")
    with pytest.raises(ValueError, match=r"corrupt .*zip header not found"):
        kr.ResNet50(weights=str(bad_keras))
