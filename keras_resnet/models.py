"""Public builders: :func:`build_resnet`, :func:`create_model`, and the named models.

Every named builder (``ResNet50``, ``ResNet56``, ...) is an ordinary function with
keras.applications' arguments, registered where it is defined
(:func:`~keras_resnet.registry.register_model`): adding a model is one decorated function.
Keras is imported when a network is built, not when this module is.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from keras_resnet.registry import (
    REGISTRY,
    builder_names,
    list_models,
    lookup,
    model_info,
    register_model,
)
from keras_resnet.specs import LAYOUTS, network_spec, with_layout

if TYPE_CHECKING:
    import keras


def _layout_and_variant(depth: int, family: str, variant: str | None, layout: str | None,
                        weights: Any) -> tuple[str, str]:
    """Defaults, and the layout the weights dictate: timm checkpoints are torchvision's
    v1.5 nets without conv biases; keras.applications' files are the "keras" layout."""
    if layout is not None and layout not in LAYOUTS:
        raise ValueError(f"layout={layout!r} is not one of {', '.join(map(repr, LAYOUTS))}")
    from keras_resnet.weights import timm

    if timm.handles(weights):
        bottleneck = family == "imagenet" and depth >= 50
        if layout == "keras" or variant == "v2" or (variant == "v1" and bottleneck):
            asked = ", ".join(f"{k}={v!r}" for k, v in (("variant", variant), ("layout", layout))
                              if v is not None)
            raise ValueError(f"weights={weights!r} hold a {timm.TORCH_LAYOUT} network, "
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
    from keras_resnet.backbone import NetworkArgs, build_network

    layout, variant = _layout_and_variant(depth, family, variant, layout, weights)
    spec = with_layout(network_spec(depth, family, variant, groups=groups,
                                    width_per_group=width_per_group, widen_factor=widen_factor),
                       layout)
    suffix = "v2" if variant == "v2" else ""
    return build_network(spec, NetworkArgs(
        name=name or f"{'resnet' if residual else 'plain'}{depth}{suffix}",
        weights_name=f"resnet{depth}{suffix}", include_top=include_top, weights=weights,
        input_tensor=input_tensor, input_shape=input_shape, pooling=pooling, classes=classes,
        classifier_activation=classifier_activation, shortcut=shortcut, residual=residual,
        zero_init_residual=zero_init_residual, drop_path_rate=drop_path_rate,
        include_preprocessing=include_preprocessing))



def create_model(model_name: str, **kwargs: Any) -> keras.Model:
    """Build a registered model by name: ``create_model("resnet56", classes=100)``.

    Keyword arguments are those of :func:`build_resnet` and override the
    registry's options; ``depth`` too (``create_model("resnet20", depth=8)``: the same
    family and options at another depth, named ``resnet8``).
    """
    entry = lookup(model_name)
    merged = {**entry.options, **kwargs}
    depth = merged.pop("depth", entry.depth)
    if merged.get("name") is None:
        default = entry.name.replace(str(entry.depth), str(depth), 1)
        merged["name"] = default if merged.get("residual", True) else default.replace(
            "resnet", "plain")
    return build_resnet(depth, **merged)


def _named(registry_name: str, arguments: dict[str, Any]) -> keras.Model:
    """A named builder's call: its keras.applications arguments (``arguments``, its
    ``locals()``) and any further :func:`build_resnet` options in ``kwargs``."""
    options = arguments.pop("kwargs")
    return create_model(registry_name, **arguments, **options)


# --- the ImageNet family: Table 1 of He et al. 2015 (ResNet-200: He et al. 2016) ---------

@register_model("resnet18", depth=18)
def ResNet18(include_top: bool = True, weights: str | None = None, input_tensor: Any = None,
             input_shape: tuple | None = None, pooling: str | None = None,
             classes: int | None = None, classifier_activation: str | None = "softmax",
             name: str | None = None, **kwargs: Any) -> keras.Model:
    """ResNet-18: basic blocks 2-2-2-2, 1.8 GFLOPs (Table 1). Arguments: :func:`build_resnet`."""
    return _named("resnet18", locals())


@register_model("resnet34", depth=34)
def ResNet34(include_top: bool = True, weights: str | None = None, input_tensor: Any = None,
             input_shape: tuple | None = None, pooling: str | None = None,
             classes: int | None = None, classifier_activation: str | None = "softmax",
             name: str | None = None, **kwargs: Any) -> keras.Model:
    """ResNet-34: basic blocks 3-4-6-3, 3.6 GFLOPs (Table 1). Arguments: :func:`build_resnet`."""
    return _named("resnet34", locals())


@register_model("resnet50", depth=50)
def ResNet50(include_top: bool = True, weights: str | None = None, input_tensor: Any = None,
             input_shape: tuple | None = None, pooling: str | None = None,
             classes: int | None = None, classifier_activation: str | None = "softmax",
             name: str | None = None, **kwargs: Any) -> keras.Model:
    """ResNet-50: bottleneck blocks 3-4-6-3, 3.8 GFLOPs (Table 1); keras.applications'
    ``weights="imagenet"``. Arguments: :func:`build_resnet`."""
    return _named("resnet50", locals())


@register_model("resnet101", depth=101)
def ResNet101(include_top: bool = True, weights: str | None = None, input_tensor: Any = None,
              input_shape: tuple | None = None, pooling: str | None = None,
              classes: int | None = None, classifier_activation: str | None = "softmax",
              name: str | None = None, **kwargs: Any) -> keras.Model:
    """ResNet-101: bottleneck blocks 3-4-23-3, 7.6 GFLOPs (Table 1).
    Arguments: :func:`build_resnet`."""
    return _named("resnet101", locals())


@register_model("resnet152", depth=152)
def ResNet152(include_top: bool = True, weights: str | None = None, input_tensor: Any = None,
              input_shape: tuple | None = None, pooling: str | None = None,
              classes: int | None = None, classifier_activation: str | None = "softmax",
              name: str | None = None, **kwargs: Any) -> keras.Model:
    """ResNet-152: bottleneck blocks 3-8-36-3, 11.3 GFLOPs (Table 1), the paper's deepest
    ImageNet net. Arguments: :func:`build_resnet`."""
    return _named("resnet152", locals())


@register_model("resnet200", depth=200)
def ResNet200(include_top: bool = True, weights: str | None = None, input_tensor: Any = None,
              input_shape: tuple | None = None, pooling: str | None = None,
              classes: int | None = None, classifier_activation: str | None = "softmax",
              name: str | None = None, **kwargs: Any) -> keras.Model:
    """ResNet-200: bottleneck blocks 3-24-36-3 (He et al. 2016, "Identity Mappings in Deep
    Residual Networks"). Arguments: :func:`build_resnet`."""
    return _named("resnet200", locals())


# --- pre-activation: He et al. 2016, as keras.applications' ResNet*V2 -------------------

@register_model("resnet50v2", depth=50, variant="v2")
def ResNet50V2(include_top: bool = True, weights: str | None = None, input_tensor: Any = None,
               input_shape: tuple | None = None, pooling: str | None = None,
               classes: int | None = None, classifier_activation: str | None = "softmax",
               name: str | None = None, **kwargs: Any) -> keras.Model:
    """ResNet-50 V2: ResNet-50 with pre-activation blocks (BN and ReLU before each conv).
    Arguments: :func:`build_resnet`."""
    return _named("resnet50v2", locals())


@register_model("resnet101v2", depth=101, variant="v2")
def ResNet101V2(include_top: bool = True, weights: str | None = None, input_tensor: Any = None,
                input_shape: tuple | None = None, pooling: str | None = None,
                classes: int | None = None, classifier_activation: str | None = "softmax",
                name: str | None = None, **kwargs: Any) -> keras.Model:
    """ResNet-101 V2: ResNet-101 with pre-activation blocks. Arguments: :func:`build_resnet`."""
    return _named("resnet101v2", locals())


@register_model("resnet152v2", depth=152, variant="v2")
def ResNet152V2(include_top: bool = True, weights: str | None = None, input_tensor: Any = None,
                input_shape: tuple | None = None, pooling: str | None = None,
                classes: int | None = None, classifier_activation: str | None = "softmax",
                name: str | None = None, **kwargs: Any) -> keras.Model:
    """ResNet-152 V2: ResNet-152 with pre-activation blocks. Arguments: :func:`build_resnet`."""
    return _named("resnet152v2", locals())


# --- the CIFAR family: section 4.2, depth 6n + 2, 32 px, 10 classes ---------------------

@register_model("resnet20", depth=20, family="cifar")
def ResNet20(include_top: bool = True, weights: str | None = None, input_tensor: Any = None,
             input_shape: tuple | None = None, pooling: str | None = None,
             classes: int | None = None, classifier_activation: str | None = "softmax",
             name: str | None = None, **kwargs: Any) -> keras.Model:
    """ResNet-20 (n = 3): 0.27 M parameters, 8.75 % CIFAR-10 error (Table 6).
    Arguments: :func:`build_resnet`."""
    return _named("resnet20", locals())


@register_model("resnet32", depth=32, family="cifar")
def ResNet32(include_top: bool = True, weights: str | None = None, input_tensor: Any = None,
             input_shape: tuple | None = None, pooling: str | None = None,
             classes: int | None = None, classifier_activation: str | None = "softmax",
             name: str | None = None, **kwargs: Any) -> keras.Model:
    """ResNet-32 (n = 5): 0.46 M parameters, 7.51 % CIFAR-10 error (Table 6).
    Arguments: :func:`build_resnet`."""
    return _named("resnet32", locals())


@register_model("resnet44", depth=44, family="cifar")
def ResNet44(include_top: bool = True, weights: str | None = None, input_tensor: Any = None,
             input_shape: tuple | None = None, pooling: str | None = None,
             classes: int | None = None, classifier_activation: str | None = "softmax",
             name: str | None = None, **kwargs: Any) -> keras.Model:
    """ResNet-44 (n = 7): 0.66 M parameters, 7.17 % CIFAR-10 error (Table 6).
    Arguments: :func:`build_resnet`."""
    return _named("resnet44", locals())


@register_model("resnet56", depth=56, family="cifar")
def ResNet56(include_top: bool = True, weights: str | None = None, input_tensor: Any = None,
             input_shape: tuple | None = None, pooling: str | None = None,
             classes: int | None = None, classifier_activation: str | None = "softmax",
             name: str | None = None, **kwargs: Any) -> keras.Model:
    """ResNet-56 (n = 9): 0.85 M parameters, 6.97 % CIFAR-10 error (Table 6).
    Arguments: :func:`build_resnet`."""
    return _named("resnet56", locals())


@register_model("resnet110", depth=110, family="cifar")
def ResNet110(include_top: bool = True, weights: str | None = None, input_tensor: Any = None,
              input_shape: tuple | None = None, pooling: str | None = None,
              classes: int | None = None, classifier_activation: str | None = "softmax",
              name: str | None = None, **kwargs: Any) -> keras.Model:
    """ResNet-110 (n = 18): 1.7 M parameters, 6.43 % CIFAR-10 error (Table 6).
    Arguments: :func:`build_resnet`."""
    return _named("resnet110", locals())


@register_model("resnet1202", depth=1202, family="cifar")
def ResNet1202(include_top: bool = True, weights: str | None = None, input_tensor: Any = None,
               input_shape: tuple | None = None, pooling: str | None = None,
               classes: int | None = None, classifier_activation: str | None = "softmax",
               name: str | None = None, **kwargs: Any) -> keras.Model:
    """ResNet-1202 (n = 200): 19.4 M parameters, 7.93 % CIFAR-10 error, worse than
    ResNet-110 (Table 6, overfitting). Arguments: :func:`build_resnet`."""
    return _named("resnet1202", locals())


# --- successors: ResNeXt (Xie et al. 2017), Wide ResNet (Zagoruyko and Komodakis 2016) ---

@register_model("resnext50_32x4d", depth=50, groups=32, width_per_group=4)
def ResNeXt50_32x4d(include_top: bool = True, weights: str | None = None,
                    input_tensor: Any = None, input_shape: tuple | None = None,
                    pooling: str | None = None, classes: int | None = None,
                    classifier_activation: str | None = "softmax", name: str | None = None,
                    **kwargs: Any) -> keras.Model:
    """ResNeXt-50 (32x4d): ResNet-50 with 32 groups of 4 channels in each 3x3
    (Xie et al. 2017, Table 1). Arguments: :func:`build_resnet`."""
    return _named("resnext50_32x4d", locals())


@register_model("wide_resnet50_2", depth=50, width_per_group=128)
def WideResNet50_2(include_top: bool = True, weights: str | None = None,
                   input_tensor: Any = None, input_shape: tuple | None = None,
                   pooling: str | None = None, classes: int | None = None,
                   classifier_activation: str | None = "softmax", name: str | None = None,
                   **kwargs: Any) -> keras.Model:
    """Wide ResNet-50-2: ResNet-50 with twice the bottleneck width (torchvision's
    wide_resnet50_2). Arguments: :func:`build_resnet`."""
    return _named("wide_resnet50_2", locals())


@register_model("wide_resnet28_10", depth=26, family="cifar", variant="v2", widen_factor=10,
                shortcut="B")
def WideResNet28_10(include_top: bool = True, weights: str | None = None,
                    input_tensor: Any = None, input_shape: tuple | None = None,
                    pooling: str | None = None, classes: int | None = None,
                    classifier_activation: str | None = "softmax", name: str | None = None,
                    **kwargs: Any) -> keras.Model:
    """WRN-28-10: the CIFAR pre-activation net with n = 4 blocks a stage, 10x wider. Its
    depth is 6n + 2 = 26 here, which Zagoruyko and Komodakis count as 28 (6n + 4, with the
    projections). Arguments: :func:`build_resnet`."""
    return _named("wide_resnet28_10", locals())


__all__ = ["REGISTRY", "build_resnet", "create_model", "list_models", "model_info",
           "register_model", *builder_names()]
