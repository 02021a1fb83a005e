"""Public builders: :func:`build_resnet`, the registry, and the named models.

Every named builder (``ResNet50``, ``ResNet56``, ...) is a thin wrapper over
:func:`build_resnet` and one row of :data:`REGISTRY`.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from typing import Any

import keras

from . import timm_weights
from .backbone import NetworkArgs, build_network
from .specs import FAMILIES, LAYOUTS, NetSpec, cifar_spec, imagenet_spec, with_layout


def _spec(depth: int, family: str, variant: str, groups: int, width_per_group: int,
          widen_factor: int) -> NetSpec:
    if family not in FAMILIES:
        raise ValueError(f"family={family!r} is not one of {', '.join(map(repr, FAMILIES))}")
    if family == "imagenet":
        if widen_factor != 1:
            raise ValueError("widen_factor applies to family='cifar'; ImageNet networks are "
                             "widened with width_per_group (128 for Wide ResNet-50-2)")
        return imagenet_spec(depth, variant, groups=groups, width_per_group=width_per_group)
    if groups != 1 or width_per_group != 64:
        raise ValueError("groups and width_per_group apply to family='imagenet' bottleneck "
                         "networks; CIFAR networks take widen_factor")
    return cifar_spec(depth, variant, widen_factor=widen_factor)


def _layout_and_variant(depth: int, family: str, variant: str | None, layout: str | None,
                        weights: Any) -> tuple[str, str]:
    """Defaults, and the layout the weights dictate: timm checkpoints are torchvision's
    v1.5 nets without conv biases; keras.applications' files are the "keras" layout."""
    if layout is not None and layout not in LAYOUTS:
        raise ValueError(f"layout={layout!r} is not one of {', '.join(map(repr, LAYOUTS))}")
    if timm_weights.handles(weights):
        bottleneck = family == "imagenet" and depth >= 50
        if layout == "keras" or variant == "v2" or (variant == "v1" and bottleneck):
            asked = ", ".join(f"{k}={v!r}" for k, v in (("variant", variant), ("layout", layout))
                              if v is not None)
            raise ValueError(f"weights={weights!r} hold a {timm_weights.TORCH_LAYOUT} network, "
                             f"but {asked} was asked: leave variant and layout unset")
        return "torch", "v1.5"
    if weights == "imagenet" and layout == "torch":
        raise ValueError("weights='imagenet' are keras.applications' files, layout='keras' "
                         "(conv biases, BN epsilon 1.001e-5); for layout='torch' use timm "
                         "weights (keras_resnet.list_weights())")
    layout = layout or "keras"
    return layout, variant or ("v1.5" if layout == "torch" else "v1")


def build_resnet(
    depth: int, *, family: str = "imagenet", variant: str | None = None,
    layout: str | None = None, groups: int = 1, width_per_group: int = 64,
    widen_factor: int = 1, include_top: bool = True, weights: str | None = None,
    input_tensor: Any = None, input_shape: tuple | None = None, pooling: str | None = None,
    classes: int | None = None, classifier_activation: str | None = "softmax",
    name: str | None = None, shortcut: str | None = None, residual: bool = True,
    zero_init_residual: bool = False, drop_path_rate: float = 0.0,
    include_preprocessing: bool = False,
) -> keras.Model:
    """Build a residual network of any valid depth.

    Args:
        depth: 18, 34, 50, 101, 152 or 200 for ``family="imagenet"`` (Table 1); 6n + 2
            (8, 14, 20, ...) for ``family="cifar"`` (section 4.2).
        family: ``"imagenet"`` or ``"cifar"``.
        variant: ``"v1"`` (the paper: a bottleneck's stride on its first 1x1), ``"v1.5"``
            (stride on the 3x3, as torchvision and MLPerf) or ``"v2"`` (pre-activation, He et
            al. 2016). Default: "v1", or "v1.5" for ``layout="torch"`` and timm weights.
        layout: ``"keras"`` (keras.applications: conv biases in the ImageNet family, BN
            epsilon 1.001e-5) or ``"torch"`` (torchvision/timm: no conv biases, BN epsilon
            1e-5). Default: what ``weights`` need, else "keras".
        groups, width_per_group: ResNeXt / Wide ResNet bottlenecks (ImageNet).
        widen_factor: Wide ResNet width multiplier (CIFAR).
        include_top, weights, input_tensor, input_shape, pooling, classes,
            classifier_activation, name: as in ``keras.applications``, except that
            ``weights`` defaults to ``None`` (nothing is downloaded unless asked). ``weights``
            is ``None``, ``"imagenet"``, a timm name such as ``"timm/resnet50.a1_in1k"``
            (:func:`keras_resnet.list_weights`) or a file: ``.safetensors`` (timm), ``.h5``,
            ``.weights.h5`` or ``.keras``.
        shortcut: ``"A"`` zero-padded identity, ``"B"`` projection where the channels grow,
            ``"C"`` projection everywhere (section 3.3). Default: B for ImageNet, A for CIFAR.
        residual: ``False`` builds the plain counterpart (Figure 3, middle).
        zero_init_residual: start each residual branch at zero (last BN gamma, or last conv
            of a pre-activation block; Goyal et al. 2017).
        drop_path_rate: stochastic depth; block i of N drops its branch with probability
            ``rate * i / (N - 1)``.
        include_preprocessing: put the weights' input normalisation in the model (a
            ``Rescaling`` layer), so it takes RGB pixels in [0, 255].
    """
    layout, variant = _layout_and_variant(depth, family, variant, layout, weights)
    spec = with_layout(_spec(depth, family, variant, groups, width_per_group, widen_factor),
                       layout)
    suffix = "v2" if variant == "v2" else ""
    return build_network(spec, NetworkArgs(
        name=name or f"{'resnet' if residual else 'plain'}{depth}{suffix}",
        weights_name=f"resnet{depth}{suffix}", include_top=include_top, weights=weights,
        input_tensor=input_tensor, input_shape=input_shape, pooling=pooling, classes=classes,
        classifier_activation=classifier_activation, shortcut=shortcut, residual=residual,
        zero_init_residual=zero_init_residual, drop_path_rate=drop_path_rate,
        include_preprocessing=include_preprocessing))


#: registry name -> (builder name, depth, build_resnet options). WRN-28-10 is the
#: CIFAR pre-activation net with n = 4 blocks a stage: depth 6n + 2 = 26 here,
#: which Zagoruyko and Komodakis count as 28 (6n + 4, with the projections).
REGISTRY: dict[str, tuple[str, int, dict[str, Any]]] = {
    "resnet18": ("ResNet18", 18, {}),
    "resnet34": ("ResNet34", 34, {}),
    "resnet50": ("ResNet50", 50, {}),
    "resnet101": ("ResNet101", 101, {}),
    "resnet152": ("ResNet152", 152, {}),
    "resnet200": ("ResNet200", 200, {}),
    "resnet50v2": ("ResNet50V2", 50, {"variant": "v2"}),
    "resnet101v2": ("ResNet101V2", 101, {"variant": "v2"}),
    "resnet152v2": ("ResNet152V2", 152, {"variant": "v2"}),
    "resnet20": ("ResNet20", 20, {"family": "cifar"}),
    "resnet32": ("ResNet32", 32, {"family": "cifar"}),
    "resnet44": ("ResNet44", 44, {"family": "cifar"}),
    "resnet56": ("ResNet56", 56, {"family": "cifar"}),
    "resnet110": ("ResNet110", 110, {"family": "cifar"}),
    "resnet1202": ("ResNet1202", 1202, {"family": "cifar"}),
    "resnext50_32x4d": ("ResNeXt50_32x4d", 50, {"groups": 32, "width_per_group": 4}),
    "wide_resnet50_2": ("WideResNet50_2", 50, {"width_per_group": 128}),
    "wide_resnet28_10": ("WideResNet28_10", 26, {"family": "cifar", "variant": "v2",
                                                 "widen_factor": 10, "shortcut": "B"}),
}

#: Input preprocessing each family's reference weights expect (keras.applications
#: modes: "caffe" = BGR minus the ImageNet mean, "tf" = scale to [-1, 1]).
_PREPROCESSING = {"v1": "caffe", "v1.5": "caffe", "v2": "tf"}


def list_models(family: str | None = None) -> list[str]:
    """Registry names, e.g. ``["resnet18", ..., "wide_resnet28_10"]``."""
    if family is not None and family not in FAMILIES:
        raise ValueError(f"family={family!r} is not one of {', '.join(map(repr, FAMILIES))}")
    return [n for n, (_, _, o) in REGISTRY.items()
            if family is None or o.get("family", "imagenet") == family]


def _entry(name: str) -> tuple[str, int, dict[str, Any]]:
    key = name.lower() if isinstance(name, str) else name
    if key not in REGISTRY:
        close = difflib.get_close_matches(str(name).lower(), REGISTRY, n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise ValueError(f"unknown model {name!r}{hint}; available: {', '.join(REGISTRY)}")
    return REGISTRY[key]


def create_model(model_name: str, **kwargs: Any) -> keras.Model:
    """Build a registered model by name: ``create_model("resnet56", classes=100)``.

    Keyword arguments are those of :func:`build_resnet` and override the
    registry's options; ``depth`` too (``create_model("resnet20", depth=8)``: the same
    family and options at another depth, named ``resnet8``).
    """
    _, registered, options = _entry(model_name)
    merged = {**options, **kwargs}
    depth = merged.pop("depth", registered)
    if merged.get("name") is None:
        default = model_name.lower().replace(str(registered), str(depth), 1)
        merged["name"] = default if merged.get("residual", True) else default.replace(
            "resnet", "plain")
    return build_resnet(depth, **merged)


def model_info(name: str) -> dict[str, Any]:
    """What a registered model is: family, default input shape and classes, and the
    input preprocessing its reference weights expect ("none" for CIFAR nets,
    whose per-pixel mean subtraction, section 4.2, belongs to the data)."""
    builder, depth, options = _entry(name)
    family = options.get("family", "imagenet")
    variant = options.get("variant", "v1")
    size, classes = (224, 1000) if family == "imagenet" else (32, 10)
    spec = _spec(depth, family, variant, options.get("groups", 1),
                 options.get("width_per_group", 64), options.get("widen_factor", 1))
    return {
        "name": name.lower(), "builder": builder, "depth": depth, "family": family,
        "variant": variant, "input_shape": (size, size, 3), "classes": classes,
        "min_input_size": spec.total_stride,
        "preprocessing": _PREPROCESSING[variant] if family == "imagenet" else "none",
    }


def _named_builder(registry_name: str) -> Callable[..., keras.Model]:
    builder_name, depth, options = REGISTRY[registry_name]

    def builder(include_top: bool = True, weights: str | None = None, input_tensor: Any = None,
                input_shape: tuple | None = None, pooling: str | None = None,
                classes: int | None = None, classifier_activation: str | None = "softmax",
                name: str | None = None, **kwargs: Any) -> keras.Model:
        return create_model(
            registry_name, include_top=include_top, weights=weights, input_tensor=input_tensor,
            input_shape=input_shape, pooling=pooling, classes=classes,
            classifier_activation=classifier_activation, name=name, **kwargs)

    builder.__name__ = builder.__qualname__ = builder_name
    family = options.get("family", "imagenet")
    builder.__doc__ = (
        f"{builder_name}: {family} family, {registry_name} in the registry "
        f"(build_resnet({depth}, {', '.join(f'{k}={v!r}' for k, v in options.items())})).\n\n"
        "Takes keras.applications' arguments and build_resnet's options "
        "(shortcut, residual, variant, zero_init_residual, drop_path_rate)."
    )
    return builder


ResNet18 = _named_builder("resnet18")
ResNet34 = _named_builder("resnet34")
ResNet50 = _named_builder("resnet50")
ResNet101 = _named_builder("resnet101")
ResNet152 = _named_builder("resnet152")
ResNet200 = _named_builder("resnet200")
ResNet50V2 = _named_builder("resnet50v2")
ResNet101V2 = _named_builder("resnet101v2")
ResNet152V2 = _named_builder("resnet152v2")
ResNet20 = _named_builder("resnet20")
ResNet32 = _named_builder("resnet32")
ResNet44 = _named_builder("resnet44")
ResNet56 = _named_builder("resnet56")
ResNet110 = _named_builder("resnet110")
ResNet1202 = _named_builder("resnet1202")
ResNeXt50_32x4d = _named_builder("resnext50_32x4d")
WideResNet50_2 = _named_builder("wide_resnet50_2")
WideResNet28_10 = _named_builder("wide_resnet28_10")
