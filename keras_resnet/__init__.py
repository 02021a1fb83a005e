"""keras_resnet: the networks of "Deep Residual Learning for Image Recognition"
(He et al., 2015) and their best-known successors, in pure Keras 3.

>>> import keras_resnet
>>> model = keras_resnet.ResNet50()               # keras.applications' API
>>> cifar = keras_resnet.create_model("resnet56")  # registry
>>> keras_resnet.profile(model)["macs"]            # multiply-adds, walked from the layers
>>> r18 = keras_resnet.ResNet18(weights="timm/resnet18.a1_in1k")  # timm's weights
"""

import importlib
import sys
import types
from typing import Any

from keras_resnet import models as _models

#: Public name -> the submodule defining it. Those submodules (and Keras with them) are
#: imported on first use, so ``keras-resnet-models`` can refuse a bad argument before
#: TensorFlow starts and writes its start-up lines; :mod:`keras_resnet.models` imports no
#: Keras, and its names (every registered builder among them) are read from it.
_SOURCES = {
    "feature_extractor": "features", "load_model": "io", "preprocess_input": "preprocessing",
    "profile": "profile", "list_weights": "weights", "weights_info": "weights",
    **dict.fromkeys(_models.__all__, "models"),
}


class _Package(types.ModuleType):
    """The package module: public names load lazily, and importing the submodule
    ``keras_resnet.profile`` never hides the function ``keras_resnet.profile``."""

    def __getattr__(self, name: str) -> Any:
        if name not in _SOURCES:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f".{_SOURCES[name]}", __name__), name)
        self.__dict__[name] = value
        return value

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _SOURCES and isinstance(value, types.ModuleType):
            return  # the import system binding a submodule over a public function
        super().__setattr__(name, value)

    def __dir__(self) -> list[str]:
        return sorted({*super().__dir__(), *_SOURCES})


sys.modules[__name__].__class__ = _Package

__version__ = "0.1.0"

__all__ = sorted(_SOURCES)
