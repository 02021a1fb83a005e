"""The trained network: raw RGB pixels (float32, 0..255, NHWC) -> normalisation -> zoo model.

The normalisation is a built-in ``keras.layers.Normalization`` whose statistics live in its
weights, so ``model.keras`` loads with ``safe_mode=True`` and needs no custom objects.
"""

from __future__ import annotations

from typing import Any

import numpy as np

PREPROCESSING = {
    "per_pixel_mean": "subtract the per-pixel training mean, divide by 255 "
                      "(He et al. 2015 sec. 3.4/4.2)",
    "per_channel_standardize": "subtract the per-channel training mean, divide by the "
                               "per-channel standard deviation",
}


def normalization_weights(kind: str, input_size: int, pixel_mean: np.ndarray,
                          channel_std: np.ndarray) -> tuple[tuple[int, ...], list[np.ndarray]]:
    """``(axis, [mean, variance, count])`` for the Normalization layer of ``kind``."""
    if kind == "per_pixel_mean":
        mean = pixel_mean.reshape(input_size, input_size, 3)
        return (1, 2, 3), [mean, np.full_like(mean, 255.0**2), np.array(1.0, np.float32)]
    if kind == "per_channel_standardize":
        channel_mean = pixel_mean.reshape(-1, 3).mean(0)
        return (-1,), [channel_mean, channel_std**2, np.array(1.0, np.float32)]
    raise ValueError(f"unknown preprocessing {kind!r}")


def build_model(name: str, *, input_size: int, classes: int, preprocessing: str,
                pixel_mean: np.ndarray, channel_std: np.ndarray, zero_init_residual: bool,
                softmax: bool, model_kwargs: dict[str, Any] | None = None,
                fused_batch_norm: bool = False, freeze: str | None = None):
    """Inputs in 0..255 -> Normalization -> ``keras_resnet.create_model(name)``.

    With ``softmax=False`` the model returns logits (training); the exported model ends in a
    float32 softmax. ``fused_batch_norm`` (training only; TensorFlow) swaps in
    :class:`keras_resnet.training.fused_norm.FusedBatchNormalization`, same weights and maths.
    """
    import keras

    import keras_resnet

    axis, weights = normalization_weights(preprocessing, input_size, pixel_mean, channel_std)
    inputs = keras.Input((input_size, input_size, 3), dtype="float32", name="image")
    norm = keras.layers.Normalization(axis=axis, dtype="float32", name="preprocessing")
    x = norm(inputs)
    norm.set_weights(weights)
    norm.finalize_state()  # Normalization snapshots its weights into constants
    backbone = keras_resnet.create_model(
        name, include_top=True, weights=None, input_shape=(input_size, input_size, 3),
        classes=classes, classifier_activation=None, zero_init_residual=zero_init_residual,
        **(model_kwargs or {}))
    if fused_batch_norm:
        from keras_resnet.training.fused_norm import with_fused_batch_norm

        backbone = with_fused_batch_norm(backbone)
    if freeze:  # fine-tuning: after the fused swap, which copies layers (and their flags)
        from keras_resnet.training.finetune import apply_freeze

        apply_freeze(backbone, freeze)
    x = backbone(x)
    if softmax:
        x = keras.layers.Activation("softmax", dtype="float32", name="probabilities")(x)
    else:
        x = keras.layers.Activation("linear", dtype="float32", name="logits")(x)
    return keras.Model(inputs, x, name=f"{name}_trained")


def float32_copy(trained, name: str, *, input_size: int, classes: int, preprocessing: str,
                 model_kwargs: dict[str, Any] | None = None, qat_scheme: str | None = None):
    """A float32-policy model with ``trained``'s weights and a softmax output, for export;
    with ``qat_scheme``, the quantization-aware network of that scheme (as trained)."""
    import keras

    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("float32")
    try:
        zeros = np.zeros((input_size * input_size * 3,), np.float32)
        ones = np.ones((3,), np.float32)
        model = build_model(name, input_size=input_size, classes=classes,
                            preprocessing=preprocessing, pixel_mean=zeros, channel_std=ones,
                            zero_init_residual=False, softmax=True, model_kwargs=model_kwargs)
        if qat_scheme is not None:  # as the trainer rewrote it
            from keras_resnet.training.qat import quantized_network

            model = quantized_network(model, qat_scheme)[0]
    finally:
        keras.mixed_precision.set_global_policy(previous)
    model.set_weights([np.asarray(w) for w in trained.get_weights()])
    refresh_normalization(model)
    return model


def refresh_normalization(model) -> None:
    """Re-read Normalization statistics after ``set_weights`` or a checkpoint restore (the
    layer snapshots its weights into constants in ``finalize_state``)."""
    import keras

    for layer in model.layers:
        if isinstance(layer, keras.layers.Normalization):
            layer.finalize_state()
