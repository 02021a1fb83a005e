"""Multi-scale features for detection and segmentation heads."""

from __future__ import annotations

import re

import keras

from .profile import _static

_STAGE_OUTPUT = re.compile(r"^conv\d+_block\d+_out$|^post_relu$")
LEVELS = {"C2": 4, "C3": 8, "C4": 16, "C5": 32}


def _strides(model: keras.Model) -> dict[str, int]:
    """Output stride of every stage-output layer, read from static shapes."""
    probe = model
    if None in tuple(model.inputs[0].shape[1:3]):
        probe = _static(model, (256, 256, model.inputs[0].shape[-1]))
    size = probe.inputs[0].shape[1]
    return {layer.name: size // layer.output.shape[1] for layer in probe.layers
            if _STAGE_OUTPUT.match(layer.name)}


def feature_extractor(model: keras.Model, levels: tuple[str, ...] = ("C2", "C3", "C4", "C5"),
                      name: str | None = None) -> keras.Model:
    """A model that returns ``{"C2": ..., "C5": ...}``: the last stage output at
    strides 4, 8, 16 and 32, as feature-pyramid heads expect (Lin et al. 2017).

    Works on any ImageNet-family model of the zoo, with or without its top,
    including one loaded from a ``.keras`` file (layers are found by name:
    ``convS_blockN_out``, and ``post_relu`` for pre-activation nets). The
    returned model shares the layers and weights of ``model``.
    """
    unknown = [lv for lv in levels if lv not in LEVELS]
    if unknown or not levels:
        raise ValueError(f"levels={levels!r}: choose from {', '.join(LEVELS)}")
    strides = _strides(model)
    outputs = {}
    for level in levels:
        names = [n for n, s in strides.items() if s == LEVELS[level]]
        if not names:
            found = sorted(set(strides.values()))
            raise ValueError(f"{model.name} has no stage output at stride {LEVELS[level]} "
                             f"for {level} (its stage strides: {found}); feature pyramids "
                             "need an ImageNet-family backbone")
        outputs[level] = model.get_layer(names[-1]).output
    return keras.Model(model.inputs, outputs, name=name or f"{model.name}_features")
