"""The one spec table behind every network of the zoo.

A :class:`NetSpec` says everything that differs between depths, families and
successors; :mod:`keras_resnet.backbone` turns any spec into a functional graph.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

FAMILIES = ("imagenet", "cifar")
VARIANTS = ("v1", "v1.5", "v2")
SHORTCUTS = ("A", "B", "C")
POOLINGS = (None, "avg", "max")
#: Weight layouts: "keras" is keras.applications' (conv biases in the ImageNet family,
#: BN epsilon 1.001e-5); "torch" is torchvision's and timm's (no conv biases, BN epsilon
#: 1e-5, PyTorch's default), whose checkpoints :mod:`keras_resnet.weights.timm` loads.
LAYOUTS = ("keras", "torch")
KERAS_BN_EPSILON = 1.001e-5
TORCH_BN_EPSILON = 1e-5

#: ImageNet layouts, paper Table 1 (ResNet-200 from He et al. 2016): block kind
#: and blocks per stage conv2_x..conv5_x.
IMAGENET_LAYOUTS: dict[int, tuple[str, tuple[int, ...]]] = {
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
    152: ("bottleneck", (3, 8, 36, 3)),
    200: ("bottleneck", (3, 24, 36, 3)),
}
IMAGENET_WIDTHS = (64, 128, 256, 512)
#: CIFAR networks, paper section 4.2: 3 stages of n basic blocks with 16/32/64
#: filters on 32/16/8 feature maps; depth = 6n + 2.
CIFAR_WIDTHS = (16, 32, 64)


@dataclass(frozen=True)
class NetSpec:
    """Architecture of one network.

    Attributes:
        family: ``"imagenet"`` (7x7 stem + max pool, 4 stages, Table 1) or
            ``"cifar"`` (3x3 stem, 3 stages, section 4.2).
        block: ``"basic"`` (two 3x3 convs) or ``"bottleneck"`` (1x1, 3x3, 1x1,
            expansion 4; section 3.3 "Deeper Bottleneck Architectures").
        blocks: blocks per stage.
        widths: filters of each stage (the bottleneck's inner width before
            grouping/widening; its output is 4x this).
        variant: ``"v1"`` stride on the first conv of a block (the paper),
            ``"v1.5"`` stride on the 3x3 (torchvision, MLPerf), ``"v2"``
            pre-activation (He et al. 2016, keras.applications' layout).
        groups: grouped 3x3 convolutions (ResNeXt cardinality).
        width_per_group: inner bottleneck width per group at 64 base planes
            (64 for ResNet, 4 for ResNeXt-32x4d, 128 for Wide ResNet-50-2).
        conv_bias: convs carry biases. True for the ImageNet family, matching
            keras.applications' layer layout so its weight files load; the
            CIFAR family has none, as in the paper's parameter counts.
        bn_epsilon: batch-norm epsilon (1.001e-5 in keras.applications, 1e-5 in
            PyTorch); the weights only reproduce their outputs with their own.
        default_shortcut: option of section 3.3 used when none is given:
            B for ImageNet, A for CIFAR.
        default_size: default input height and width.
        default_classes: default number of classes.
    """

    family: str
    block: str
    blocks: tuple[int, ...]
    widths: tuple[int, ...]
    variant: str = "v1"
    groups: int = 1
    width_per_group: int = 64
    conv_bias: bool = True
    bn_epsilon: float = KERAS_BN_EPSILON
    default_shortcut: str = "B"
    default_size: int = 224
    default_classes: int = 1000

    @property
    def layout(self) -> str:
        """``"torch"`` for torchvision/timm's layout, ``"keras"`` otherwise."""
        return "torch" if self.bn_epsilon == TORCH_BN_EPSILON else "keras"

    @property
    def expansion(self) -> int:
        """Ratio of a block's output channels to its stage width."""
        return 4 if self.block == "bottleneck" else 1

    @property
    def preact(self) -> bool:
        return self.variant == "v2"

    @property
    def total_stride(self) -> int:
        """Downsampling from input to the last feature map."""
        stem = 4 if self.family == "imagenet" else 1
        return stem * 2 ** (len(self.blocks) - 1)

    @property
    def depth(self) -> int:
        """Weighted layers on the main path (convs + the classifier)."""
        per_block = 3 if self.block == "bottleneck" else 2
        return per_block * sum(self.blocks) + 2


def _valid_cifar_depths(limit: int = 56) -> str:
    return ", ".join(str(d) for d in range(8, limit + 1, 6)) + ", ... (6n + 2)"


def imagenet_spec(depth: int, variant: str = "v1", *, groups: int = 1,
                  width_per_group: int = 64) -> NetSpec:
    """Spec of an ImageNet network of a depth in :data:`IMAGENET_LAYOUTS`."""
    if not isinstance(depth, int) or depth not in IMAGENET_LAYOUTS:
        valid = ", ".join(str(d) for d in IMAGENET_LAYOUTS)
        raise ValueError(f"depth={depth!r} is not valid for family='imagenet'; valid: {valid}")
    block, blocks = IMAGENET_LAYOUTS[depth]
    return _checked(NetSpec("imagenet", block, blocks, IMAGENET_WIDTHS, variant, groups,
                            width_per_group))


def cifar_spec(depth: int, variant: str = "v1", *, widen_factor: int = 1) -> NetSpec:
    """Spec of a CIFAR network of depth 6n + 2 (section 4.2), optionally widened
    (Zagoruyko and Komodakis 2016)."""
    if not isinstance(depth, int) or depth < 8 or (depth - 2) % 6:
        raise ValueError(
            f"depth={depth!r} is not valid for family='cifar'; valid: {_valid_cifar_depths()}"
        )
    if not isinstance(widen_factor, int) or widen_factor < 1:
        raise ValueError(f"widen_factor={widen_factor!r} must be an integer >= 1")
    n = (depth - 2) // 6
    widths = tuple(w * widen_factor for w in CIFAR_WIDTHS)
    return _checked(NetSpec("cifar", "basic", (n, n, n), widths, variant, conv_bias=False,
                            default_shortcut="A", default_size=32, default_classes=10))


def network_spec(depth: int, family: str = "imagenet", variant: str = "v1", *, groups: int = 1,
                 width_per_group: int = 64, widen_factor: int = 1) -> NetSpec:
    """The spec of ``build_resnet(depth, family=..., ...)``: the options of one family checked
    against the other's (ImageNet nets widen with ``width_per_group``, CIFAR nets with
    ``widen_factor``)."""
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


def with_layout(spec: NetSpec, layout: str) -> NetSpec:
    """``spec`` in the weight layout ``layout`` (see :data:`LAYOUTS`)."""
    if layout not in LAYOUTS:
        raise ValueError(f"layout={layout!r} is not one of {', '.join(map(repr, LAYOUTS))}")
    if layout == "keras":
        return spec
    return replace(spec, conv_bias=False, bn_epsilon=TORCH_BN_EPSILON)


def _checked(spec: NetSpec) -> NetSpec:
    if spec.variant not in VARIANTS:
        raise ValueError(f"variant={spec.variant!r} is not one of {', '.join(VARIANTS)}")
    if not isinstance(spec.groups, int) or spec.groups < 1:
        raise ValueError(f"groups={spec.groups!r} must be an integer >= 1")
    if not isinstance(spec.width_per_group, int) or spec.width_per_group < 1:
        raise ValueError(f"width_per_group={spec.width_per_group!r} must be an integer >= 1")
    if spec.block == "basic" and (spec.groups != 1 or spec.width_per_group != 64):
        raise ValueError("groups and width_per_group apply to bottleneck networks only "
                         "(depth 50 and deeper); basic-block networks take widen_factor "
                         "in the cifar family")
    return spec

