"""timm and torchvision ResNet checkpoints in safetensors form.

``weights="timm/resnet50.a1_in1k"`` downloads ``model.safetensors`` and
``config.json`` of that Hugging Face hub repository with ``huggingface_hub`` (into its
cache; an offline machine gets one clear error at once); ``weights="model.safetensors"``
reads a local file, with the ``config.json`` beside it when there is one. Pickle-based
files (``.pth``, ``.bin``) are refused: nothing is ever unpickled.

timm's ResNets are torchvision's: the stride of a bottleneck on its 3x3 (our
``variant="v1.5"``), no conv biases, BN epsilon 1e-5 (``layout="torch"``), and
OIHW kernels, transposed here to Keras' HWIO. PyTorch pads a strided convolution on
both sides; the zoo pads explicitly before every strided 3x3 and 7x7 conv, so the
sampled grids agree. Every tensor of the file is used once and every weight of the
model is set, or loading fails naming what is unused and what is missing.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from keras_resnet.specs import IMAGENET_LAYOUTS, NetSpec
from keras_resnet.weights.hub import CONFIG_FILE

if TYPE_CHECKING:
    from keras_resnet.weights.resolver import WeightsRecord

HUB_PREFIX = "timm/"
SAFETENSORS_SUFFIX = ".safetensors"
PICKLE_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt", ".pkl", ".pickle", ".tar")
#: Bookkeeping buffers of PyTorch's BatchNorm with no counterpart in Keras: consumed, not loaded.
IGNORED_SUFFIXES = (".num_batches_tracked",)
#: timm's names of the plain ResNet architectures (torchvision's): ``resnet50``,
#: ``resnext101_32x8d``, ``wide_resnet50_2``; the depth is one of Table 1.
_ARCH_NAME = re.compile(r"^(?:resnet(\d+)|resnext(\d+)_(\d+)x(\d+)d|wide_resnet(\d+)_2)$")
ARCHITECTURE_NAMES = ("resnet<depth>, resnext<depth>_<groups>x<width>d or wide_resnet<depth>_2 "
                      f"(depth {', '.join(map(str, IMAGENET_LAYOUTS))})")
TORCH_LAYOUT = ("variant='v1.5', layout='torch' (timm/torchvision: stride on the 3x3, "
                "no conv biases, BN epsilon 1e-5)")


@dataclass(frozen=True)
class Arch:
    """The network a checkpoint holds."""

    depth: int
    groups: int = 1
    width_per_group: int = 64

    @property
    def name(self) -> str:
        """timm's name of the architecture (which is also the zoo's registry name)."""
        if self.groups != 1:
            return f"resnext{self.depth}_{self.groups}x{self.width_per_group}d"
        if self.width_per_group == 128:
            return f"wide_resnet{self.depth}_2"
        if self.width_per_group == 64:
            return f"resnet{self.depth}"
        return f"resnet{self.depth} (width {self.width_per_group})"

    def describe(self) -> str:
        block, blocks = IMAGENET_LAYOUTS[self.depth]
        return f"{self.name} ({block} blocks {'-'.join(map(str, blocks))})"


def parse_architecture(name: str) -> Arch | None:
    """The architecture timm (and the registry) call ``name``, or ``None``."""
    match = _ARCH_NAME.match(name)
    if not match:
        return None
    plain, resnext, groups, width, wide = match.groups()
    depth = int(plain or resnext or wide)
    if depth not in IMAGENET_LAYOUTS or (not plain and depth < 50):
        return None  # a grouped or widened net has bottleneck blocks (depth 50 and more)
    if resnext:
        return Arch(depth, int(groups), int(width))
    return Arch(depth, 1, 128 if wide else 64)


@dataclass(frozen=True)
class Checkpoint:
    """An opened checkpoint: its file, digest, tensor shapes and what they hold."""

    source: str
    path: str
    sha256: str
    shapes: dict[str, tuple[int, ...]]
    arch: Arch
    in_channels: int
    classes: int | None
    config: dict[str, Any] = field(default_factory=dict)


def handles(weights: Any) -> bool:
    """Whether ``weights`` is for this module: a hub name, a safetensors or a pickle file."""
    if not isinstance(weights, str | os.PathLike):
        return False
    text = os.fspath(weights)
    return (text.startswith(HUB_PREFIX) or text.lower().endswith(SAFETENSORS_SUFFIX)
            or text.lower().endswith(PICKLE_SUFFIXES))


def is_hub_name(weights: Any) -> bool:
    text = os.fspath(weights)
    return text.startswith(HUB_PREFIX) and not text.lower().endswith(SAFETENSORS_SUFFIX)


def architecture_of_name(name: str) -> Arch:
    """``"timm/resnet50.a1_in1k"`` -> the resnet50 architecture, or a clear error."""
    repo = name[len(HUB_PREFIX):]
    arch = parse_architecture(repo.split(".", 1)[0])
    if not repo or "/" in repo or arch is None:
        raise ValueError(f"weights={name!r}: expected 'timm/<architecture>.<tag>' with an "
                         f"architecture {ARCHITECTURE_NAMES} (for example "
                         "'timm/resnet50.a1_in1k'); keras_resnet.list_weights() lists known ones")
    return arch


def spec_architecture(spec: NetSpec) -> Arch | None:
    if spec.family != "imagenet" or spec.preact:
        return None
    return Arch(_depth(spec), spec.groups, spec.width_per_group)


def _depth(spec: NetSpec) -> int:
    for depth, (block, blocks) in IMAGENET_LAYOUTS.items():
        if block == spec.block and blocks == spec.blocks:
            return depth
    return spec.depth


def check_argument(source: str, *, spec: NetSpec, model_name: str, shortcut: str,
                   residual: bool) -> None:
    """Cheap checks of resolved timm weights against the network, before anything is built
    or downloaded."""
    ours = spec_architecture(spec)
    if ours is None or spec.variant != "v1.5" or spec.layout != "torch":
        raise ValueError(f"weights={source!r} hold a {TORCH_LAYOUT} network; {model_name} is "
                         f"{_describe_spec(spec)}")
    if shortcut != "B" or not residual:
        raise ValueError(f"weights={source!r} need shortcut='B' and residual=True (timm's "
                         f"projection shortcuts); got shortcut={shortcut!r}, residual={residual}")
    if is_hub_name(source):
        _check_same(source, architecture_of_name(source), ours, model_name)


def refuse_pickle(text: str) -> None:
    """A pickle-based PyTorch file is never opened: it can run code when unpickled."""
    if text.lower().endswith(PICKLE_SUFFIXES):
        raise ValueError(
            f"weights={text!r} is a pickle-based PyTorch file, which keras_resnet never "
            "unpickles (it can run code). Pass the safetensors form instead: a hub name such "
            "as 'timm/resnet50.a1_in1k', or a local model.safetensors (in PyTorch: "
            "safetensors.torch.save_file(model.state_dict(), 'model.safetensors'))")


def _describe_spec(spec: NetSpec) -> str:
    if spec.family != "imagenet":
        return f"a {spec.family}-family network"
    arch = Arch(_depth(spec), spec.groups, spec.width_per_group)
    bias = "conv biases" if spec.conv_bias else "no conv biases"
    return (f"{arch.describe()} with variant={spec.variant!r}, layout={spec.layout!r} "
            f"({bias}, BN epsilon {spec.bn_epsilon:g})")


def _check_same(source: str, theirs: Arch, ours: Arch, model_name: str) -> None:
    if theirs != ours:
        raise ValueError(f"weights={source!r} hold {theirs.describe()}, but {model_name} is "
                         f"{ours.describe()}: build {theirs.name} for these weights")


def check_fits(ckpt: Checkpoint, *, spec: NetSpec, model_name: str, include_top: bool,
               classes: int | None, channels: int) -> int | None:
    """Check the opened checkpoint against the model to build; returns the classes."""
    _check_same(ckpt.source, ckpt.arch, spec_architecture(spec), model_name)
    if channels != ckpt.in_channels:
        raise ValueError(f"input_shape has {channels} channel(s), but weights={ckpt.source!r} "
                         f"expect {ckpt.in_channels}")
    if not include_top:
        return classes
    if ckpt.classes is None:
        raise ValueError(f"weights={ckpt.source!r} have no classifier (no fc.weight): use "
                         "include_top=False")
    if classes is not None and classes != ckpt.classes:
        raise ValueError(f"classes={classes} does not fit weights={ckpt.source!r} with "
                         f"include_top=True (they have {ckpt.classes} classes): use "
                         f"classes={ckpt.classes}, or include_top=False and a new head")
    return ckpt.classes


# --- reading a checkpoint -------------------------------------------------------------

def _safetensors():
    try:
        from safetensors import safe_open
    except ImportError:  # pragma: no cover - a base dependency; guards a --no-deps install
        raise ImportError("timm weights need the safetensors package: "
                          "pip install safetensors") from None
    return safe_open


def read_shapes(path: str, source: str) -> dict[str, tuple[int, ...]]:
    """Tensor names and shapes from the safetensors header (no tensor is read)."""
    safe_open = _safetensors()
    try:
        with safe_open(path, framework="numpy") as f:
            return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}  # noqa: SIM118
    except Exception as err:  # SafetensorError: bad header, truncated file
        raise ValueError(f"weights={source!r} is corrupt or not a safetensors file "
                         f"({str(err).strip().splitlines()[0] if str(err).strip() else err})"
                         ) from err


_BLOCK = re.compile(r"^layer(\d+)\.(\d+)\.")


def infer_architecture(shapes: dict[str, tuple[int, ...]], source: str
                       ) -> tuple[Arch, int, int | None]:
    """(architecture, input channels, classes) from tensor names and shapes alone."""
    if "conv1.weight" not in shapes:
        stem = "a deep stem (conv1.0.weight: timm's resnet*d/*t)" if "conv1.0.weight" in shapes \
            else "no conv1.weight"
        raise ValueError(f"weights={source!r} is not a plain timm/torchvision ResNet: it has "
                         f"{stem}; supported: {ARCHITECTURE_NAMES}")
    biases = sorted(k for k in shapes if re.search(r"(^|\.)(conv\d|downsample\.0)\.bias$", k))
    if biases or shapes["conv1.weight"][2:] != (7, 7):
        raise ValueError(f"weights={source!r} is not a timm/torchvision ResNet "
                         f"({'conv biases: ' + biases[0] if biases else 'no 7x7 stem'})")
    blocks: dict[int, int] = {}
    for key in shapes:
        match = _BLOCK.match(key)
        if match:
            stage, block = int(match[1]), int(match[2])
            blocks[stage] = max(blocks.get(stage, 0), block + 1)
    counts = tuple(blocks.get(s, 0) for s in (1, 2, 3, 4))
    kind = "bottleneck" if "layer1.0.conv3.weight" in shapes else "basic"
    depth = next((d for d, layout in IMAGENET_LAYOUTS.items() if layout == (kind, counts)), None)
    if depth is None or len(blocks) != 4:
        raise ValueError(f"weights={source!r}: {kind} blocks {'-'.join(map(str, counts))} "
                         "per stage match no ResNet depth of Table 1")
    groups, per_group = 1, 64
    if kind == "bottleneck":
        width = shapes["layer1.0.conv1.weight"][0]
        groups = width // shapes["layer1.0.conv2.weight"][1]
        per_group = width // groups
    fc = shapes.get("fc.weight")
    return Arch(depth, groups, per_group), shapes["conv1.weight"][1], fc[0] if fc else None


def read_config_beside(path: str) -> dict[str, Any]:
    config_path = os.path.join(os.path.dirname(os.path.abspath(path)), CONFIG_FILE)
    if not os.path.isfile(config_path):
        return {}
    with open(config_path, encoding="utf8") as f:
        config = json.load(f)
    return config if isinstance(config, dict) else {}


def open_checkpoint(record: WeightsRecord) -> Checkpoint:
    """Read the header of fetched timm weights (:func:`keras_resnet.weights.fetch`)."""
    source = record.argument
    shapes = read_shapes(record.path, source)
    arch, in_channels, classes = infer_architecture(shapes, source)
    named = record.config.get("architecture")
    if named is not None and parse_architecture(str(named)) != arch:
        raise ValueError(f"weights={source!r}: config.json names architecture {named!r}, but "
                         f"the tensors hold {arch.describe()}")
    return Checkpoint(source, record.path, record.sha256, shapes, arch, in_channels, classes,
                      record.config)


def normalisation(ckpt_or_config: Checkpoint | dict) -> tuple[tuple, tuple] | None:
    """(mean, std) of timm's ``pretrained_cfg`` in a config.json, if it has them."""
    config = ckpt_or_config.config if isinstance(ckpt_or_config, Checkpoint) else ckpt_or_config
    cfg = config.get("pretrained_cfg") or config
    if "mean" in cfg and "std" in cfg:
        return tuple(map(float, cfg["mean"])), tuple(map(float, cfg["std"]))
    return None


# --- loading into a model -------------------------------------------------------------

_KERAS_BLOCK = re.compile(r"^conv(\d+)_block(\d+)_(\d)_(conv|bn)$")
_BN_VARIABLES = (("gamma", "weight"), ("beta", "bias"), ("moving_mean", "running_mean"),
                 ("moving_variance", "running_var"))


def torch_prefix(layer_name: str) -> str | None:
    """timm's module name for a zoo layer: ``conv3_block2_1_bn`` -> ``layer2.1.bn1``."""
    fixed = {"conv1_conv": "conv1", "conv1_bn": "bn1", "predictions": "fc"}
    if layer_name in fixed:
        return fixed[layer_name]
    match = _KERAS_BLOCK.match(layer_name)
    if not match:
        return None
    stage, block, index, kind = int(match[1]) - 1, int(match[2]) - 1, int(match[3]), match[4]
    base = f"layer{stage}.{block}."
    if index == 0:
        return base + ("downsample.0" if kind == "conv" else "downsample.1")
    return base + f"{kind}{index}"


def _pairs(layer) -> list[tuple[Any, str, tuple[int, ...] | None]]:
    """(variable, timm tensor suffix, transpose to Keras) for each weight of ``layer``."""
    kind = type(layer).__name__
    if kind == "BatchNormalization":
        return [(getattr(layer, ours), theirs, None) for ours, theirs in _BN_VARIABLES]
    if kind in ("Conv2D", "Dense"):
        order = (2, 3, 1, 0) if kind == "Conv2D" else (1, 0)
        pairs = [(layer.kernel, "weight", order)]
        if layer.bias is not None:
            pairs.append((layer.bias, "bias", None))
        return pairs
    return []


def plan(model, ckpt: Checkpoint, include_top: bool) -> list[tuple[Any, str, tuple | None]]:
    """Map every model weight to one checkpoint tensor, or fail listing the mismatches."""
    pairs, unmapped = [], []
    for layer in model.layers:
        if not layer.weights:
            continue
        prefix = torch_prefix(layer.name)
        found = _pairs(layer) if prefix else []
        mapped = {id(v) for v, _, _ in found}
        unmapped += [w.path for w in layer.weights if id(w) not in mapped]
        pairs += [(v, f"{prefix}.{suffix}", order) for v, suffix, order in found]
    wanted = {name for _, name, _ in pairs}
    missing = sorted(n for n in wanted if n not in ckpt.shapes) + sorted(unmapped)
    unused = sorted(k for k in ckpt.shapes if k not in wanted and not k.endswith(IGNORED_SUFFIXES)
                    and not (not include_top and k.startswith("fc.")))
    if missing or unused:
        raise ValueError(f"weights={ckpt.source!r} do not fit {model.name}: "
                         f"unused tensors of the file: {_shown(unused)}; "
                         f"weights of the model missing from the file: {_shown(missing)}")
    wrong = [f"{name} {ckpt.shapes[name]} (the model needs "
             f"{_torch_shape(tuple(v.shape), order)})" for v, name, order in pairs
             if ckpt.shapes[name] != _torch_shape(tuple(v.shape), order)]
    if wrong:
        raise ValueError(f"weights={ckpt.source!r}: shape mismatch: {_shown(wrong)}")
    return pairs


def _torch_shape(shape: tuple[int, ...], order: tuple | None) -> tuple[int, ...]:
    if order is None:
        return shape
    inverse = np.argsort(order)
    return tuple(shape[i] for i in inverse)


def _shown(names: list[str], limit: int = 8) -> str:
    if not names:
        return "none"
    more = f" ... ({len(names)} in all)" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def load_into(model, ckpt: Checkpoint, *, include_top: bool) -> None:
    """Assign every weight of ``model`` from ``ckpt`` (see :func:`plan`)."""
    pairs = plan(model, ckpt, include_top)
    safe_open = _safetensors()
    with safe_open(ckpt.path, framework="numpy") as f:
        for variable, name, order in pairs:
            value = np.asarray(f.get_tensor(name), dtype="float32")
            _check_tensor(value, name, ckpt.path)
            variable.assign(value if order is None else np.transpose(value, order))


def _check_tensor(value: np.ndarray, name: str, path: str) -> None:
    """A tensor of the file finite, and a batch norm's ``running_var`` non-negative."""
    from keras_resnet.weights.values import InvalidWeights

    if not np.isfinite(value).all():
        raise InvalidWeights(f"weights={path!r}: tensor {name} has "
                             f"{int(value.size - np.isfinite(value).sum())} non-finite value(s) "
                             "(NaN or infinity)")
    if name.endswith("running_var") and (value < 0).any():
        raise InvalidWeights(f"weights={path!r}: tensor {name} (a batch norm variance) has "
                             f"negative values (min {float(value.min()):g})")
