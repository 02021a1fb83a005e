"""The int8 schemes quantization-aware training simulates (:mod:`keras_resnet.quantization`).

Pure Python, outside that package (which imports Keras): command lines list the schemes
before TensorFlow starts."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class QatScheme:
    """What the forward pass simulates: the weights' largest integer (symmetric, per
    output channel) and whether activations are symmetric (zero point 0)."""

    weight_qmax: int
    symmetric_activations: bool
    summary: str


#: The int8 schemes QAT can simulate, named as the exporter's int8 ONNX schemes.
QAT_SCHEMES: dict[str, QatScheme] = {
    "u8s8-7bit": QatScheme(64, False, "asymmetric 8-bit activations, 7-bit per-channel "
                           "weights in [-64, 64]: the default int8 ONNX file (default)"),
    "u8s8": QatScheme(127, False, "asymmetric 8-bit activations, 8-bit per-channel weights "
                      "in [-127, 127]: TFLite's int8 scheme"),
    "s8s8-sym": QatScheme(127, True, "symmetric 8-bit activations (zero point 0) and "
                          "weights: TensorRT's explicit quantization"),
}
DEFAULT_QAT_SCHEME = "u8s8-7bit"


def scheme_named_by(weight_qmax: int, symmetric: bool, where: str) -> str:
    """The :data:`QAT_SCHEMES` key of layers simulating ``weight_qmax`` and ``symmetric``
    activations; ValueError naming ``where`` when no scheme matches."""
    for name, scheme in QAT_SCHEMES.items():
        if (scheme.weight_qmax, scheme.symmetric_activations) == (int(weight_qmax),
                                                                   bool(symmetric)):
            return name
    raise ValueError(f"{where} simulates weight_qmax={weight_qmax}, symmetric={symmetric}: "
                     f"no scheme of {', '.join(QAT_SCHEMES)}")
