"""Quantization-aware training in the trainer (``--qat int8``): fine-tune a trained zoo
network with int8 simulated in the forward pass (:mod:`keras_resnet.quantization`).

* The float network is built and its trained weights (``--weights``) loaded first; then
  :func:`keras_resnet.quantization.quantize_model` rewrites it (batch norm folded into the
  convolutions with its moving statistics frozen, per-channel weights rounded, activations
  rounded to 8 bits over observed ranges, the straight-through estimator for gradients);
  then the optimizer is made.
* Activation ranges are observed (moving min/max) during the first ``qat_observe_fraction``
  of the steps and frozen for the rest (:class:`ObserverFreeze`), as Jacob et al. 2018 and
  Krishnamoorthi 2018 (sec. 3.2) recommend; the flag lives in the layers' variables, so the
  checkpoints carry it, and a resumed run sets it again from its step.
* QAT simulates int8 in float32: mixed precision is refused, and batch norm (folded) has no
  training-time kernel to choose.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from keras_resnet.training.controller import Action, LoopState
from keras_resnet.training.errors import UsageError

from keras_resnet.qat_schemes import DEFAULT_QAT_SCHEME, QAT_SCHEMES

#: ``--qat`` values: the integer format simulated.
QAT_CHOICES = ("int8",)
#: The recipe a ``--qat`` run uses unless ``--recipe`` names another.
QAT_RECIPE = "qat"
_QAT_SETTINGS = ("qat_scheme", "qat_observe_fraction")
_EXPORT_FILES = {"u8s8-7bit": "the default int8 ONNX file",
                 "u8s8": "the int8 TFLite file",
                 "s8s8-sym": "the TensorRT (symmetric QDQ) ONNX file"}


def add_qat_flags(parser: argparse.ArgumentParser) -> None:
    """``--qat``, ``--qat-scheme`` and ``--qat-observe-fraction``."""
    g = parser.add_argument_group("quantization-aware training (needs --weights; default "
                                  "recipe: qat)")
    g.add_argument("--qat", choices=QAT_CHOICES,
                   help="fine-tune the --weights network with int8 simulated in the forward "
                        "pass (batch norm folded, straight-through gradients); model.keras "
                        "is the quantization-aware network")
    schemes = "; ".join(f"{name}: {_EXPORT_FILES[name]}" for name in QAT_SCHEMES)
    g.add_argument("--qat-scheme", choices=tuple(QAT_SCHEMES),
                   help=f"the int8 scheme simulated, matching the export file it is meant for "
                        f"(default {DEFAULT_QAT_SCHEME}): {schemes}")
    g.add_argument("--qat-observe-fraction", type=float,
                   help="share of the steps during which activation ranges are observed, in "
                        "(0, 1]; they stay frozen afterwards (default: the recipe's)")


def check_qat_flags(args: Any) -> None:
    """The QAT flags and what they exclude, before anything is read or built; UsageError
    (one line) naming the flag."""
    qat = getattr(args, "qat", None)
    if qat is None:
        given = [s for s in _QAT_SETTINGS if getattr(args, s, None) is not None]
        if given:
            raise UsageError(f"--{given[0].replace('_', '-')} applies to quantization-aware "
                             "training: add --qat int8")
        return
    if qat not in QAT_CHOICES:
        raise UsageError(f"--qat {qat}: the allowed value is {', '.join(QAT_CHOICES)}")
    fraction = getattr(args, "qat_observe_fraction", None)
    if fraction is not None and not 0 < fraction <= 1:
        raise UsageError(f"--qat-observe-fraction must be in (0, 1], got {fraction}")
    if not getattr(args, "weights", None):
        raise UsageError("--qat fine-tunes a trained network: give --weights (a run dir, a "
                         ".keras/.weights.h5 file, timm/NAME or imagenet)")
    precision = getattr(args, "precision", None)
    if precision not in (None, "auto", "float32"):
        raise UsageError(f"--qat simulates int8 in float32: --precision {precision} is not "
                         "allowed (leave it unset or give float32)")
    if getattr(args, "batch_norm", None) == "fused":
        raise UsageError("--qat folds batch norm into the convolutions (frozen statistics), "
                         "so --batch-norm fused does not apply; leave --batch-norm unset")


def default_recipe(args: Any) -> str | None:
    """``qat`` for a ``--qat`` run that names no ``--recipe``; None otherwise."""
    return QAT_RECIPE if getattr(args, "qat", None) else None


#: The network flags (builder options) a ``--qat`` run may give instead of inheriting them.
_NETWORK_FLAGS = ("plain", "shortcut", "variant", "drop_path_rate", "depth", "widen_factor",
                  "groups", "width_per_group")


def inherit_input_size(args: Any) -> None:
    """A ``--qat`` run fine-tunes the same network: without ``--input-size`` it takes the
    image side of the run its ``--weights`` come from (run dir or a model.keras beside its
    run_config.json)."""
    if not getattr(args, "qat", None) or args.input_size is not None or not args.weights:
        return
    recorded = _weights_run_config(args.weights)
    size = recorded.get("input_size")
    if isinstance(size, int) and not isinstance(size, bool):
        args.input_size = size


def inherited_architecture(args: Any, architecture: dict[str, Any]) -> dict[str, Any]:
    """A ``--qat`` run from another run's model: that run's builder options (its depth,
    variant...) unless network flags are given; ``architecture`` otherwise."""
    if not getattr(args, "qat", None) or any(getattr(args, f, None) is not None
                                              for f in _NETWORK_FLAGS):
        return architecture
    recorded = _weights_run_config(args.weights).get("architecture")
    return {**architecture, **recorded} if isinstance(recorded, dict) else architecture


def _weights_run_config(weights: str) -> dict[str, Any]:
    """The ``config`` of the run a ``--weights`` path comes from ({} when none)."""
    path = Path(weights).expanduser()
    if path.is_dir():
        config = path / "run_config.json"
    elif path.is_file() and path.suffix == ".keras":
        config = path.with_name("run_config.json")
    else:  # a hub name, imagenet, another kind of file
        return {}
    try:
        content = json.loads(config.read_text())
    except (OSError, ValueError):
        return {}
    recorded = content.get("config") if isinstance(content, dict) else None
    return recorded if isinstance(recorded, dict) else {}


def check_float_weights(weights: str | None) -> None:
    """``--weights`` must hold a float network: a quantization-aware run's model.keras is
    refused (its layers are no zoo network's)."""
    if weights and _weights_run_config(weights).get("qat"):
        raise UsageError(f"--weights {weights} is a quantization-aware (--qat) run; start "
                         "from the float network it was fine-tuned from")


def resolve_qat(cfg: Any) -> Any:
    """The configuration with the QAT settings filled in: the scheme's default, the
    observed share of steps (the recipe's, else the ``qat`` recipe's), Keras' batch norm
    layer (folded) and float32; a non-QAT run must not carry QAT settings."""
    from keras_resnet.training.config import with_overrides
    from keras_resnet.training.recipes import load_recipe

    model, schedule = cfg.model, cfg.schedule
    if model.qat is None:
        if schedule.qat_observe_fraction is not None:
            raise UsageError(f"recipe {cfg.recipe!r} is for quantization-aware training "
                             "(it sets qat_observe_fraction): add --qat int8 --weights ...")
        return cfg
    fraction = schedule.qat_observe_fraction
    if fraction is None:
        fraction = float(load_recipe(QAT_RECIPE)["qat_observe_fraction"])
    precision = "float32" if cfg.run.precision == "auto" else cfg.run.precision
    return with_overrides(cfg, model={"qat_scheme": model.qat_scheme or DEFAULT_QAT_SCHEME,
                                      "batch_norm": "keras"},
                          schedule={"qat_observe_fraction": fraction},
                          run={"precision": precision})


def quantized_network(model: Any, scheme: str) -> tuple[Any, str]:
    """The quantization-aware copy of the trainer's float network (trained weights in,
    ``trainable`` flags kept), and a line for the run's log. Batch norms that no convolution
    absorbs (pre-activation networks) are frozen by the rewrite (moving statistics)."""
    import keras

    from keras_resnet.quantization import quantize_model, quantizers

    quantized = quantize_model(model, scheme)
    unfolded = [layer for layer in quantized._flatten_layers(include_self=False)
                if isinstance(layer, keras.layers.BatchNormalization)]
    kept = f", {len(unfolded)} unfolded batch norms frozen" if unfolded else ""
    return quantized, (f"qat: int8 simulated ({scheme}: {QAT_SCHEMES[scheme].summary}); "
                       f"batch norm folded{kept}, {len(quantizers(quantized))} activation "
                       "quantizers")


def freeze_step(fraction: float, total_steps: int) -> int:
    """The step after which the activation ranges stop being observed (at least 1)."""
    return max(1, min(total_steps, round(fraction * total_steps)))


class ObserverFreeze(Action):
    """Freezes the activation ranges of ``model`` at step ``at`` (a loop ends there)."""

    def __init__(self, model: Any, at: int, chief: bool) -> None:
        self.model, self.at, self.chief = model, at, chief

    def due(self, state: LoopState) -> bool:
        return state.step == self.at

    def __call__(self, state: LoopState) -> None:
        from keras_resnet.quantization import freeze_observers

        count = freeze_observers(self.model)
        if self.chief:
            print(f"step {state.step}: {count} activation ranges frozen", flush=True)


def set_observing(model: Any, step: int, at: int) -> None:
    """The observers' state a run at ``step`` must have (a resumed run: whatever its
    checkpoint held, the ranges observe before ``at`` and stay frozen from it on)."""
    from keras_resnet.quantization import freeze_observers

    freeze_observers(model, frozen=step >= at)
