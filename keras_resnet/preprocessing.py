"""Input preprocessing that matches each reference weight set."""

from __future__ import annotations

from keras.applications import imagenet_utils

MODES = ("caffe", "tf", "torch", "none")


def preprocess_input(x, mode: str = "caffe"):
    """Preprocess RGB images in [0, 255].

    ``"caffe"``: RGB to BGR minus the ImageNet mean (keras.applications ResNet,
    the paper's per-pixel mean subtraction); ``"tf"``: scale to [-1, 1] (ResNetV2);
    ``"torch"``: scale to [0, 1] and standardise; ``"none"``: unchanged.
    ``keras_resnet.model_info(name)["preprocessing"]`` names the mode a model expects.
    """
    if mode not in MODES:
        raise ValueError(f"mode={mode!r} is not one of {', '.join(MODES)}")
    if mode == "none":
        return x
    return imagenet_utils.preprocess_input(x, data_format="channels_last", mode=mode)
