"""keras_resnet: the networks of "Deep Residual Learning for Image Recognition"
(He et al., 2015) and their best-known successors, in pure Keras 3.

>>> import keras_resnet
>>> model = keras_resnet.ResNet50()               # keras.applications' API
>>> cifar = keras_resnet.create_model("resnet56")  # registry
>>> keras_resnet.profile(model)["macs"]            # multiply-adds, walked from the layers
>>> r18 = keras_resnet.ResNet18(weights="timm/resnet18.a1_in1k")  # timm's weights
"""

from .features import feature_extractor
from .io import load_model
from .models import (
    REGISTRY,
    ResNet18,
    ResNet20,
    ResNet32,
    ResNet34,
    ResNet44,
    ResNet50,
    ResNet50V2,
    ResNet56,
    ResNet101,
    ResNet101V2,
    ResNet110,
    ResNet152,
    ResNet152V2,
    ResNet200,
    ResNet1202,
    ResNeXt50_32x4d,
    WideResNet28_10,
    WideResNet50_2,
    build_resnet,
    create_model,
    list_models,
    model_info,
)
from .preprocessing import preprocess_input
from .pretrained import list_weights, weights_info
from .profile import profile

__version__ = "0.1.0"

__all__ = [
    "REGISTRY", "ResNet18", "ResNet20", "ResNet32", "ResNet34", "ResNet44", "ResNet50",
    "ResNet50V2", "ResNet56", "ResNet101", "ResNet101V2", "ResNet110", "ResNet152",
    "ResNet152V2", "ResNet200", "ResNet1202", "ResNeXt50_32x4d", "WideResNet28_10",
    "WideResNet50_2", "build_resnet", "create_model", "feature_extractor", "list_models",
    "list_weights", "load_model", "model_info", "preprocess_input", "profile", "weights_info",
]
