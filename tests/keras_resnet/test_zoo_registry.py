"""The registry: a new named model is one decorated function, found by ``create_model``,
``list_models`` and ``model_info``; the package lists its names without importing Keras."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest

import keras_resnet as kr
from keras_resnet import registry
from keras_resnet.models import create_model, register_model


@pytest.fixture(scope="module", autouse=True)
def resnet14():
    """The one edit that adds a model, ResNet-14 of the CIFAR family (n = 2, section 4.2),
    made while this module's tests run (pytest imports every test module before running
    any, so a module-level registration would show in other files' registry tests)."""

    @register_model("resnet14", depth=14, family="cifar")
    def ResNet14(include_top: bool = True, weights: str | None = None, **kwargs: Any):
        """ResNet-14 (n = 2): the CIFAR family's shallowest net after ResNet-8."""
        return create_model("resnet14", include_top=include_top, weights=weights, **kwargs)

    yield ResNet14
    registry.REGISTRY.pop("resnet14", None)  # other tests in this process see the zoo alone


def test_one_decorated_function_adds_a_model(resnet14) -> None:
    assert "resnet14" in kr.list_models("cifar") and "resnet14" not in kr.list_models("imagenet")
    info = kr.model_info("ResNet14")
    assert (info["builder"], info["depth"], info["family"], info["variant"]) == (
        "ResNet14", 14, "cifar", "v1")
    assert (info["input_shape"], info["classes"], info["min_input_size"]) == ((32, 32, 3), 10, 4)
    model = kr.create_model("resnet14", classes=3)
    assert model.name == "resnet14" and model.output_shape == (None, 3)
    # 3 stages of n = 2 basic blocks: six residual additions.
    assert sum(type(layer).__name__ == "Add" for layer in model.layers) == 6
    direct = resnet14(input_shape=(16, 16, 3), classes=3)
    assert direct.count_params() == model.count_params()
    assert kr.create_model("resnet14", depth=8).name == "resnet8"


def test_a_registration_that_builds_nothing_is_refused(resnet14) -> None:
    with pytest.raises(ValueError, match=r"name='resnet14' is registered already \(by ResNet14\)"):
        register_model("resnet14", depth=14, family="cifar")
    with pytest.raises(ValueError, match=r"depth=15 is not valid for family='cifar'"):
        register_model("resnet15", depth=15, family="cifar")(resnet14)
    with pytest.raises(ValueError, match="lower-case"):
        register_model("ResNet99", depth=20, family="cifar")
    assert "resnet15" not in kr.list_models()


def test_model_info_reads_the_spec() -> None:
    assert kr.model_info("wide_resnet28_10")["input_shape"] == (32, 32, 3)
    assert kr.model_info("resnet50")["input_shape"] == (224, 224, 3)
    assert kr.model_info("resnet50")["min_input_size"] == 32
    assert set(registry.builder_names()) - {"ResNet14"} <= set(kr.__all__)
    assert kr.ResNet50.__doc__.startswith("ResNet-50: bottleneck blocks 3-4-6-3")


def test_names_are_listed_without_keras() -> None:
    code = ("import sys, keras_resnet as kr; names = kr.__all__; kr.list_models(); "
            "kr.model_info('resnet50'); assert 'ResNet50' in names and 'ResNet56' in names; "
            "assert 'keras' not in sys.modules, sorted(m for m in sys.modules if 'keras' in m)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
