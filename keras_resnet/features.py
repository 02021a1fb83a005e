"""Multi-scale features for detection and segmentation heads."""

from __future__ import annotations

import re

import keras

_BLOCK_OUTPUT = re.compile(r"^conv(\d+)_block(\d+)_out$")
LEVELS = {"C2": 4, "C3": 8, "C4": 16, "C5": 32}


def _strides(model: keras.Model) -> dict[str, int]:
    """Output stride of every stage-output layer, from the zoo's layer-name contract.

    The ImageNet stem (``pool1_pool``) downsamples by 4, each later stage by 2, in its
    first block, or in the last block of the stage before for keras.applications'
    pre-activation layout (``post_relu``). Reading names needs no rebuild of the graph
    (Keras' ``get_config`` would import TensorFlow) and works on loaded models.
    """
    names = [layer.name for layer in model.layers]
    stem = 4 if "pool1_pool" in names else 1
    strided_last = stem == 4 and "post_relu" in names
    last: dict[int, int] = {}
    for name in names:
        match = _BLOCK_OUTPUT.match(name)
        if match:
            stage, block = int(match[1]), int(match[2])
            last[stage] = max(last.get(stage, 0), block)
    stages = sorted(last)
    strides = {}
    for name in names:
        match = _BLOCK_OUTPUT.match(name)
        if match:
            stage, block = int(match[1]), int(match[2])
            stride = stem * 2 ** stages.index(stage)
            if strided_last and block == last[stage] and stage != stages[-1]:
                stride *= 2
            strides[name] = stride
        elif name == "post_relu" and stages:
            strides[name] = stem * 2 ** (len(stages) - 1)
    return strides


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
