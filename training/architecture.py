"""Trainer flags for the zoo's builder arguments that change the network: plain nets
(``residual=False``, Figure 3 middle), shortcut options A/B/C (section 3.3), the variant
(v1, v1.5, v2), stochastic depth, zero-initialised residual branches, the widths
(``widen_factor``, ``groups``, ``width_per_group``) and another depth of the model's family
(``depth``, recorded only when it differs from the registry model's).

The resolved options (the registry's defaults filled in) are part of a run's identity, so a
run resumes only with the network it started with, and are passed to
``keras_resnet.create_model`` for both the training model and ``model.keras``.
"""

from __future__ import annotations

import argparse
import math
from typing import Any

from keras_resnet.training.errors import UsageError

#: The builder options a run records (``TrainConfig.architecture``), with the zoo's defaults.
BUILDER_DEFAULTS: dict[str, Any] = {"residual": True, "shortcut": None, "variant": "v1",
                                    "drop_path_rate": 0.0, "widen_factor": 1, "groups": 1,
                                    "width_per_group": 64}


def add_architecture_flags(parser: argparse.ArgumentParser) -> None:
    """Add ``--plain``, ``--shortcut``, ``--variant``, ``--drop-path-rate``,
    ``--[no-]zero-init-residual``, ``--depth``, ``--widen-factor``, ``--groups``,
    ``--width-per-group``."""
    g = parser.add_argument_group("network (keras_resnet builder options; default: the "
                                  "registry's model as is)")
    g.add_argument("--plain", action="store_true", default=None,
                   help="the plain counterpart: no shortcuts (residual=False, Figure 3 middle)")
    g.add_argument("--shortcut", choices=("A", "B", "C"),
                   help="A zero-padded identity, B projection where dimensions grow, C "
                        "projection everywhere (section 3.3; default A for CIFAR, B ImageNet)")
    g.add_argument("--variant", choices=("v1", "v1.5", "v2"),
                   help="v1 (the paper), v1.5 (stride on the 3x3), v2 (pre-activation)")
    g.add_argument("--drop-path-rate", type=float,
                   help="stochastic depth: the last block drops its branch with this "
                        "probability, in [0, 1)")
    zero = g.add_mutually_exclusive_group()
    zero.add_argument("--zero-init-residual", dest="zero_init_residual", action="store_true",
                      default=None, help="start each residual branch at zero (default: "
                                         "the recipe's)")
    zero.add_argument("--no-zero-init-residual", dest="zero_init_residual",
                      action="store_false")
    g.add_argument("--depth", type=int,
                   help="another depth of the model's family (CIFAR: 6n + 2, e.g. 8 or 14; "
                        "ImageNet: 18, 34, 50, 101, 152, 200); trained from scratch")
    g.add_argument("--widen-factor", type=int, help="Wide ResNet width multiplier (CIFAR)")
    g.add_argument("--groups", type=int, help="grouped 3x3 convolutions (ResNeXt, ImageNet "
                                              "bottleneck nets)")
    g.add_argument("--width-per-group", type=int,
                   help="bottleneck width per group at 64 planes (ImageNet bottleneck nets)")


def _check_ranges(args: Any) -> None:
    rate = getattr(args, "drop_path_rate", None)
    if rate is not None and not (math.isfinite(rate) and 0 <= rate < 1):
        raise UsageError(f"--drop-path-rate must be in [0, 1), got {rate}")
    for flag in ("widen_factor", "groups", "width_per_group"):
        value = getattr(args, flag, None)
        if value is not None and value < 1:
            raise UsageError(f"--{flag.replace('_', '-')} must be at least 1, got {value}")


def _check_family(family: str, given: dict[str, Any], model: str) -> None:
    if family == "cifar" and ("groups" in given or "width_per_group" in given):
        raise UsageError(f"--groups and --width-per-group apply to ImageNet bottleneck models "
                         f"(resnet50 and deeper); {model} is a CIFAR model: use --widen-factor")
    if family == "imagenet" and "widen_factor" in given:
        raise UsageError(f"--widen-factor applies to CIFAR-family models; widen {model} with "
                         "--width-per-group (128 for Wide ResNet-50-2)")


def resolve_architecture(args: Any, model: str) -> dict[str, Any]:
    """The full builder options of the network ``args`` asks for (see
    :data:`BUILDER_DEFAULTS`), checked with the zoo's own spec rules; raises
    :class:`UsageError` naming the flag on a combination the zoo cannot build."""
    from keras_resnet import specs
    from keras_resnet.models import REGISTRY

    _check_ranges(args)
    entry = REGISTRY[model]
    depth, options, family = entry.depth, entry.options, entry.family
    given = {k: getattr(args, k) for k in ("shortcut", "variant", "drop_path_rate",
                                           "widen_factor", "groups", "width_per_group")
             if getattr(args, k, None) is not None}
    _check_family(family, given, model)
    if getattr(args, "depth", None) not in (None, depth):
        if getattr(args, "weights", None):
            raise UsageError("--depth builds a new network; it cannot start from --weights")
        depth = given["depth"] = args.depth
    arch = {**BUILDER_DEFAULTS, **{k: v for k, v in options.items() if k != "family"}, **given}
    arch["residual"] = not getattr(args, "plain", False)
    arch["drop_path_rate"] = float(arch["drop_path_rate"])
    try:
        if family == "cifar":
            spec = specs.cifar_spec(depth, arch["variant"], widen_factor=arch["widen_factor"])
        else:
            spec = specs.imagenet_spec(depth, arch["variant"], groups=arch["groups"],
                                       width_per_group=arch["width_per_group"])
    except ValueError as exc:
        flag = "--depth: " if "depth" in given else ""
        raise UsageError(f"{flag}{model}: {exc}") from None
    if arch["shortcut"] is None:
        arch["shortcut"] = spec.default_shortcut
    return arch

