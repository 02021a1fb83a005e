"""Residual blocks and shortcuts, built from Keras' built-in layers only.

Built-in layers keep every model loadable with ``safe_mode=True`` and no
``custom_objects``, and convertible to TFLite and ONNX. Layer names follow
keras.applications (``conv4_block6_out``) so its weight files load by name.
Every layer follows ``keras.config.image_data_format()`` at build time, so a
network builds channels-last (NHWC) or channels-first (NCHW) alike; kernels
have the same shape in both, so every weight file loads into either.
"""

from __future__ import annotations

from dataclasses import dataclass

from keras import layers

from keras_resnet.specs import KERAS_BN_EPSILON, NetSpec

#: keras.applications' epsilon, kept so its published weights give the same outputs
#: (the spec's ``bn_epsilon``: 1e-5 for torchvision/timm weights).
BN_EPSILON = KERAS_BN_EPSILON
#: Moving-average momentum of the BN statistics (0.9 as in torchvision's 0.1).
BN_MOMENTUM = 0.9
#: He et al. 2015 initialisation ("MSRA", fan-in scaled normal), section 3.4.
KERNEL_INIT = "he_normal"


@dataclass(frozen=True)
class BlockOptions:
    """Per-network options that every block of a network shares."""

    spec: NetSpec
    shortcut: str
    residual: bool
    zero_init_residual: bool
    channel_axis: int = -1

    @property
    def preact(self) -> bool:
        return self.spec.preact


def batch_norm(x, name: str, opts: BlockOptions, *, zero_gamma: bool = False):
    return layers.BatchNormalization(
        axis=opts.channel_axis, epsilon=opts.spec.bn_epsilon, momentum=BN_MOMENTUM,
        gamma_initializer="zeros" if zero_gamma else "ones", name=name,
    )(x)


def relu(x, name: str):
    return layers.Activation("relu", name=name)(x)


def conv(x, filters: int, kernel: int, stride: int, name: str, *, bias: bool,
         groups: int = 1, explicit_pad: bool = False, zero_kernel: bool = False):
    """A convolution with torch-style symmetric padding.

    Stride-2 3x3 convs (and, with ``explicit_pad``, any 3x3) are preceded by a
    ``ZeroPadding2D`` named ``*_pad`` and run unpadded, so the sampled grid
    matches the reference implementations; 1x1 convs need no padding.
    """
    pad = (kernel - 1) // 2
    padding = "valid"
    if pad and (stride > 1 or explicit_pad):
        x = layers.ZeroPadding2D(pad, name=name.replace("_conv", "_pad"))(x)
    elif pad:
        padding = "same"
    return layers.Conv2D(
        filters, kernel, strides=stride, padding=padding, groups=groups, use_bias=bias,
        kernel_initializer="zeros" if zero_kernel else KERNEL_INIT, name=name,
    )(x)


def shortcut(x, preact, out_channels: int, stride: int, opts: BlockOptions, name: str):
    """The identity or projection path of a block (section 3.3).

    Option A: identity, subsampled by taking every ``stride``-th pixel, with the
    new channels zero-padded (no parameters). Option B: a 1x1 projection where
    the number of channels grows, identity elsewhere. Option C: a projection on
    every block. Pre-activation nets project from the activated input.
    """
    in_channels = x.shape[opts.channel_axis]
    grows = in_channels != out_channels
    if opts.shortcut == "C" or (opts.shortcut == "B" and grows):
        source = preact if opts.preact else x
        y = conv(source, out_channels, 1, stride, f"{name}_0_conv", bias=opts.spec.conv_bias)
        if not opts.preact:
            y = batch_norm(y, f"{name}_0_bn", opts)
        return y
    y = x
    if stride > 1:
        y = layers.MaxPooling2D(1, strides=stride, name=f"{name}_0_pool")(y)
    if grows:
        extra = out_channels - in_channels
        # ZeroPadding2D pads two spatial axes: read in the other layout, an NHWC
        # tensor's (W, C) or an NCHW tensor's (C, H) are those axes; pad only C.
        lo, hi = extra // 2, extra - extra // 2
        if opts.channel_axis == -1:
            y = layers.ZeroPadding2D(((0, 0), (lo, hi)), data_format="channels_first",
                                     name=f"{name}_0_pad")(y)
        else:
            y = layers.ZeroPadding2D(((lo, hi), (0, 0)), data_format="channels_last",
                                     name=f"{name}_0_pad")(y)
    return y


def _basic_body(x, filters: int, stride: int, opts: BlockOptions, name: str):
    """Two 3x3 convs (Figure 5 left)."""
    pre = opts.preact
    bias = opts.spec.conv_bias
    y = conv(x, filters, 3, stride, f"{name}_1_conv", bias=bias and not pre, explicit_pad=pre)
    y = relu(batch_norm(y, f"{name}_1_bn", opts), f"{name}_1_relu")
    zero = opts.zero_init_residual
    y = conv(y, filters, 3, 1, f"{name}_2_conv", bias=bias, explicit_pad=pre,
             zero_kernel=zero and pre)
    if not pre:
        y = batch_norm(y, f"{name}_2_bn", opts, zero_gamma=zero)
    return y


def _bottleneck_body(x, filters: int, stride: int, opts: BlockOptions, name: str):
    """1x1 reduce, 3x3 (grouped for ResNeXt), 1x1 expand (Figure 5 right)."""
    spec, pre = opts.spec, opts.preact
    width = int(filters * spec.width_per_group / 64) * spec.groups
    stride_on_3x3 = spec.variant in ("v1.5", "v2")
    s1, s3 = (1, stride) if stride_on_3x3 else (stride, 1)
    bias = spec.conv_bias
    y = conv(x, width, 1, s1, f"{name}_1_conv", bias=bias and not pre)
    y = relu(batch_norm(y, f"{name}_1_bn", opts), f"{name}_1_relu")
    y = conv(y, width, 3, s3, f"{name}_2_conv", bias=bias and not pre, groups=spec.groups,
             explicit_pad=pre)
    y = relu(batch_norm(y, f"{name}_2_bn", opts), f"{name}_2_relu")
    zero = opts.zero_init_residual
    y = conv(y, filters * spec.expansion, 1, 1, f"{name}_3_conv", bias=bias,
             zero_kernel=zero and pre)
    if not pre:
        y = batch_norm(y, f"{name}_3_bn", opts, zero_gamma=zero)
    return y


def residual_block(x, filters: int, stride: int, opts: BlockOptions, name: str,
                   drop_path: float = 0.0):
    """One block: ``out = relu(F(x) + shortcut(x))`` (section 3.2, Figure 2).

    Pre-activation blocks compute ``F(relu(bn(x))) + shortcut`` with no ReLU
    after the addition. With ``opts.residual=False`` the shortcut and addition
    are dropped: the plain counterpart of Figure 3 (middle). ``drop_path`` drops
    the whole residual branch per sample (stochastic depth, Huang et al. 2016).
    """
    out_channels = filters * opts.spec.expansion
    preact = None
    if opts.preact:
        preact = relu(batch_norm(x, f"{name}_preact_bn", opts), f"{name}_preact_relu")
    sc = shortcut(x, preact, out_channels, stride, opts, name) if opts.residual else None
    body = _bottleneck_body if opts.spec.block == "bottleneck" else _basic_body
    y = body(preact if opts.preact else x, filters, stride, opts, name)
    if drop_path > 0:
        y = layers.Dropout(drop_path, noise_shape=(None, 1, 1, 1), name=f"{name}_drop_path")(y)
    if opts.preact:
        if sc is None:
            return layers.Identity(name=f"{name}_out")(y)
        return layers.Add(name=f"{name}_out")([sc, y])
    if sc is not None:
        y = layers.Add(name=f"{name}_add")([sc, y])
    return relu(y, f"{name}_out")


def stem(x, opts: BlockOptions):
    """ImageNet: 7x7/2 conv + 3x3/2 max pool (Table 1). CIFAR: 3x3 conv, 16 filters."""
    spec = opts.spec
    if spec.family == "imagenet":
        x = layers.ZeroPadding2D(3, name="conv1_pad")(x)
        x = layers.Conv2D(64, 7, strides=2, use_bias=spec.conv_bias,
                          kernel_initializer=KERNEL_INIT, name="conv1_conv")(x)
    else:
        x = conv(x, 16, 3, 1, "conv1_conv", bias=spec.conv_bias)
    if not opts.preact:
        x = relu(batch_norm(x, "conv1_bn", opts), "conv1_relu")
    if spec.family == "imagenet":
        x = layers.ZeroPadding2D(1, name="pool1_pad")(x)
        x = layers.MaxPooling2D(3, strides=2, name="pool1_pool")(x)
    return x


def stages(x, opts: BlockOptions, drop_path_rate: float = 0.0):
    """All residual stages, named ``conv2``.. as in Table 1.

    The first stage keeps the resolution; each later stage halves it in its
    first block, or, for ImageNet pre-activation nets (keras.applications'
    ResNetV2 layout), in the last block of the previous stage.
    """
    spec = opts.spec
    total = sum(spec.blocks)
    stride_last = spec.preact and spec.family == "imagenet"
    index = 0
    for s, (count, width) in enumerate(zip(spec.blocks, spec.widths, strict=True)):
        for b in range(count):
            if stride_last:
                stride = 2 if (b == count - 1 and s < len(spec.blocks) - 1) else 1
            else:
                stride = 2 if (b == 0 and s > 0) else 1
            rate = drop_path_rate * index / max(total - 1, 1)
            x = residual_block(x, width, stride, opts, f"conv{s + 2}_block{b + 1}", rate)
            index += 1
    if opts.preact:
        x = relu(batch_norm(x, "post_bn", opts), "post_relu")
    return x
