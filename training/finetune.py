"""Fine-tuning: start a training run from pretrained weights (``--weights``) and keep parts
of the network fixed (``--freeze``).

Pure functions, so the trainer calls them in three places only:

* :func:`resolve_weights` (cheap, before anything is built): the argument checked, the file
  found or downloaded (offline: one clear error at once), its SHA-256 (part of the run's
  identity), the layout the weights dictate and the input normalisation they expect;
* :func:`load_source` (a fresh start only, never on resume): the network with the weights
  loaded, checked against ``--model`` layer by layer;
* :func:`copy_into` and :func:`apply_freeze` where the training model is built: the
  weights copied by layer name, a new classifier when the dataset's classes differ from
  the weights', and the frozen layers made non-trainable (their batch norm then runs in
  inference mode: Keras 3 normalises a frozen ``BatchNormalization`` with its moving
  statistics and never updates them).

Accepted weights: ``imagenet`` (keras.applications' file where it publishes one for the
model, else timm's ``a1_in1k`` weights), ``timm/NAME`` (Hugging Face hub), a ``.safetensors``
file (timm layout), a ``.keras`` file (loaded with ``safe_mode=True``), a ``.weights.h5`` or
legacy ``.h5`` file of the zoo's network, or another run's model dir (its ``model.keras``).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from keras_resnet.training.errors import UsageError

if TYPE_CHECKING:
    from keras_resnet.weights import WeightsRecord

#: --freeze values: the stem, up to stage N (stem included) or everything but the classifier.
FREEZE_CHOICES = ("none", "stem", "stage1", "stage2", "stage3", "stage4", "backbone")
HEAD = "predictions"
#: keras.applications' V1 files take Caffe's input: BGR minus these means (RGB order here).
CAFFE_MEAN_RGB = (123.68, 116.779, 103.939)


@dataclass(frozen=True)
class WeightsRef:
    """A checked ``--weights`` argument.

    Attributes:
        source: ``timm/NAME``, ``imagenet:MODEL`` (keras.applications) or an absolute path.
        kind: ``timm`` (hub or local safetensors), ``keras_applications``, ``keras`` (a
            ``.keras`` file or a run dir), ``h5`` (``.weights.h5`` or legacy ``.h5``).
        path: the local file ('' on a resume that did not need it).
        sha256: digest of the file.
        architecture: builder options the weights dictate (timm: layout and variant).
        preprocessing: the trainer's normalisation kind the weights expect, or None when
            the file does not say (the dataset statistics are used, as without weights).
        mean, std: per-channel normalisation of pixels in 0..255 (``per_channel_standardize``).
        caffe_bgr: keras.applications' V1 files: the first convolution's input channels
            are reversed so that the model takes RGB.
    """

    source: str
    kind: str
    path: str
    sha256: str
    architecture: dict[str, Any] = field(default_factory=dict)
    preprocessing: str | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    caffe_bgr: bool = False

    def identity(self) -> dict[str, str]:
        """What a resumed run must share: the source and the digest of its file."""
        return {"source": self.source, "sha256": self.sha256}


@dataclass
class Pretrained:
    """The loaded weights: the network holding them, its classes and its normalisation."""

    ref: WeightsRef
    network: Any
    classes: int | None
    labels: list[str] | None
    pixel_mean: np.ndarray | None = None
    channel_std: np.ndarray | None = None

    def statistics(self, input_size: int, pixel_mean: np.ndarray, channel_std: np.ndarray
                   ) -> tuple[np.ndarray, np.ndarray]:
        """(pixel mean, channel std) for the trainer's Normalization layer: the weights'
        own when known, else the dataset's (given)."""
        if self.pixel_mean is not None:
            return self.pixel_mean, self.channel_std
        if self.ref.mean is not None:
            mean = np.tile(np.asarray(self.ref.mean, np.float32), input_size * input_size)
            return mean, np.asarray(self.ref.std, np.float32)
        return pixel_mean, channel_std


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


# --- the argument -----------------------------------------------------------------------

def recorded_weights(model_dir: str | os.PathLike) -> dict[str, str] | None:
    """The ``weights`` identity recorded in a model dir's ``run_config.json``, if any."""
    path = Path(model_dir) / "run_config.json"
    try:
        recorded = json.loads(path.read_text()).get("identity", {}).get("weights")
    except (OSError, ValueError, AttributeError):
        return None
    return recorded if isinstance(recorded, dict) else None


def resolve_weights(argument: str, *, model: str, input_size: int,
                    recorded: dict[str, str] | None = None) -> WeightsRef:
    """Check ``--weights`` and find its file and digest (:func:`keras_resnet.weights.resolve`
    and :func:`~keras_resnet.weights.fetch`); UsageError naming the argument.

    A hub name already recorded by the run being resumed (``recorded``) is not downloaded
    again: its recorded digest stands for it.
    """
    from keras_resnet import weights

    try:
        record = weights.resolve(argument, model=model)
        if record.kind == "keras_applications" and record.known is None:
            record = weights.resolve(_timm_for_imagenet(model), model=model)
        _check_cheaply(record, model, input_size)
        record = weights.fetch(record, recorded=recorded)
        if record.kind == "timm" and record.path:
            from keras_resnet.weights import timm

            _check_timm_model(record.argument, timm.open_checkpoint(record).arch, model)
        return _ref(record, model, input_size)
    except UsageError:
        raise
    except (ValueError, OSError, ImportError) as exc:
        raise UsageError(_as_flag(_first_line(exc), argument)) from None


def _as_flag(message: str, argument: str) -> str:
    """The zoo's message in the trainer's terms: ``--weights X`` where it says ``weights='X'``."""
    from keras_resnet.weights import flag_message

    return flag_message(re.sub(r"pass weights='([^']*)'", r"pass --weights \1", message),
                        argument)


def _timm_for_imagenet(model: str) -> str:
    """``--weights imagenet`` where keras.applications publishes nothing for ``model``:
    the first timm weights the table knows for it."""
    from keras_resnet.weights import table

    timm = [n for n in table.list_weights(model) if n.startswith("timm/")]
    if not timm:
        known = ", ".join(sorted({i.model for i in table.KNOWN_WEIGHTS}))
        raise UsageError(f"--weights imagenet: no ImageNet weights are known for {model} "
                         f"(known: {known}); pass a weights file or another run's model dir")
    return timm[0]


def _check_cheaply(record: WeightsRecord, model: str, input_size: int) -> None:
    """Before any download: timm weights by their name, a run's model by its config."""
    from keras_resnet.weights import timm

    if record.is_hub_name:
        _check_timm_model(record.argument, timm.architecture_of_name(record.argument), model)
    if record.kind == "keras":
        _run_preprocessing(Path(record.path), model, input_size)


def _check_timm_model(source: str, arch: Any, model: str) -> None:
    """timm weights fit the zoo model of the same architecture only (cheap: by name)."""
    from keras_resnet.weights import timm

    if timm.parse_architecture(model) != arch:
        raise UsageError(f"--weights {source} hold {arch.describe()}, but --model is {model}: "
                         f"use --model {arch.name}")


def _ref(record: WeightsRecord, model: str, input_size: int) -> WeightsRef:
    """The trainer's view of fetched weights: the layout they dictate and the input
    normalisation they expect."""
    from keras_resnet.weights.normalisation import affine, mean_std

    args = (record.source, record.kind, record.path, record.sha256)
    if record.kind == "keras_applications" and record.known.preprocessing == "caffe":
        return WeightsRef(*args, {}, "per_channel_standardize", CAFFE_MEAN_RGB, (1.0,) * 3,
                          True)
    if record.kind in ("keras_applications", "timm"):
        layout = {"layout": "torch", "variant": "v1.5"} if record.kind == "timm" else {}
        return WeightsRef(*args, layout, "per_channel_standardize", *mean_std(*affine(record)))
    preprocessing = (_run_preprocessing(Path(record.path), model, input_size)
                     if record.kind == "keras" else None)
    return WeightsRef(*args, {}, preprocessing)


def _run_preprocessing(path: Path, model: str, input_size: int) -> str | None:
    """A run's model.keras: its normalisation kind (kept exactly when the input size is the
    same; a per-pixel mean is averaged into a per-channel one otherwise); and its model."""
    config_path = path.with_name("run_config.json")
    if not config_path.is_file():
        return None
    try:
        config = json.loads(config_path.read_text()).get("config", {})
    except (OSError, ValueError, AttributeError):
        return None
    if config.get("model") not in (None, model):
        raise UsageError(f"--weights {path}: they come from a {config['model']} run, but "
                         f"--model is {model}")
    kind = config.get("preprocessing")
    if kind == "per_pixel_mean" and config.get("input_size") != input_size:
        return "per_channel_standardize"
    return kind if kind in ("per_pixel_mean", "per_channel_standardize") else None


def check_architecture(ref: WeightsRef, *, variant: str | None, model: str) -> None:
    """The weights dictate the layout (timm: torchvision's v1.5 without conv biases); a
    --variant that contradicts them is refused before anything is built."""
    wanted = ref.architecture.get("variant")
    if wanted and variant not in (None, wanted):
        raise UsageError(f"--variant {variant}: --weights {ref.source} hold a variant "
                         f"{wanted} network (timm/torchvision layout); leave --variant unset")


def check_freeze(freeze: str | None, *, model: str, weights: str | None) -> str | None:
    """``--freeze`` checked against the model's stages; ``None`` for nothing frozen."""
    if freeze in (None, "none"):
        return None
    if freeze not in FREEZE_CHOICES:
        raise UsageError(f"--freeze {freeze!r}: expected one of {', '.join(FREEZE_CHOICES)}")
    if weights is None:
        raise UsageError(f"--freeze {freeze} needs --weights (frozen random weights would "
                         "stay random)")
    stages = _stage_count(model)
    if freeze.startswith("stage") and int(freeze[5:]) > stages:
        raise UsageError(f"--freeze {freeze}: {model} has {stages} stages (stage1..stage{stages})")
    return freeze


def _stage_count(model: str) -> int:
    from keras_resnet.models import REGISTRY

    return 3 if REGISTRY[model].family == "cifar" else 4


# --- loading ------------------------------------------------------------------------------

def _h5_classes(path: str) -> int | None:
    """Classes of the classifier in a Keras HDF5 weights file: its only 2-D array (a ResNet
    has no other), or None for a headless file."""
    import h5py

    found: list[int] = []

    def visit(_name: str, item: Any) -> None:
        if isinstance(item, h5py.Dataset) and item.ndim == 2:
            found.append(int(item.shape[1]))

    with h5py.File(path, "r") as f:
        f.visititems(visit)
    return found[-1] if found else None


def zoo_network(model: Any) -> Any:
    """The zoo network in ``model``: the model itself, or the nested one of a trainer's
    ``model.keras`` (input -> preprocessing -> network -> probabilities)."""
    names = {layer.name for layer in model.layers}
    if "conv1_conv" in names:
        return model
    for layer in model.layers:
        if hasattr(layer, "layers") and any(sub.name == "conv1_conv" for sub in layer.layers):
            return layer
    raise UsageError(f"--weights: {model.name} holds no keras_resnet network (no conv1_conv)")


def _build(model: str, arch: dict[str, Any], input_size: int, classes: int | None,
           weights: str | None) -> Any:
    import keras_resnet

    return keras_resnet.create_model(
        model, include_top=classes is not None, weights=weights,
        input_shape=(input_size, input_size, 3), classes=classes,
        pooling=None if classes is not None else "avg", classifier_activation=None, **arch)


def load_source(ref: WeightsRef, *, model: str, architecture: dict[str, Any],
                input_size: int) -> Pretrained:
    """The network of ``--model`` holding the weights (float32), checked layer by layer
    against a fresh one; UsageError naming what does not fit."""
    import keras

    from keras_resnet.safefiles import RefusedFile
    from keras_resnet.weights.values import InvalidWeights

    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("float32")
    try:
        pretrained = _load(ref, model, architecture, input_size)
        check_fits(pretrained.network, _build(model, architecture, input_size, None, None),
                   ref.source)
    except UsageError:
        raise
    except (InvalidWeights, RefusedFile) as exc:
        raise UsageError(f"--weights {ref.source}: {_first_line(exc)}") from None
    except (ValueError, OSError, TypeError, KeyError) as exc:
        raise UsageError(f"--weights {ref.source} do not fit --model {model}: "
                         f"{_first_line(exc)}") from None
    finally:
        keras.mixed_precision.set_global_policy(previous)
    return pretrained


def _load(ref: WeightsRef, model: str, arch: dict[str, Any], size: int) -> Pretrained:
    import keras_resnet

    if ref.kind == "keras":
        loaded = keras_resnet.load_model(ref.path)  # safe_mode=True
        network = zoo_network(loaded)
        labels, mean, std = _run_extras(loaded, ref, size)
        classes = network.get_layer(HEAD).units if HEAD in _names(network) else None
        return Pretrained(ref, network, classes, labels, mean, std)
    if ref.kind == "timm":
        from keras_resnet.weights import timm

        classes = timm.infer_architecture(timm.read_shapes(ref.path, ref.source), ref.source)[2]
        net = _build(model, arch, size, classes, ref.path)
    elif ref.kind == "keras_applications":
        classes = 1000
        net = _build(model, arch, size, classes, "imagenet")
        if ref.caffe_bgr:  # RGB in: reverse the first convolution's input channels
            kernel = net.get_layer("conv1_conv").kernel
            kernel.assign(np.asarray(kernel)[:, :, ::-1, :])
    else:
        classes = _h5_classes(ref.path)
        net = _build(model, arch, size, classes, ref.path)
    return Pretrained(ref, net, classes, None)


def _names(model: Any) -> set[str]:
    return {layer.name for layer in model.layers}


def _run_extras(loaded: Any, ref: WeightsRef, size: int
                ) -> tuple[list[str] | None, np.ndarray | None, np.ndarray | None]:
    """A run's labels.json and the statistics of its Normalization layer, as the trainer's
    ``build_model`` takes them (pixel mean flattened, channel std)."""
    from keras_resnet.safefiles import MAX_LABELS_BYTES, labels_from_json, read_json_file

    labels_path = Path(ref.path).with_name("labels.json")
    labels = None
    if os.path.lexists(labels_path):  # a damaged one is a RefusedFile, named by load_source
        labels = labels_from_json(read_json_file(labels_path, "labels file", MAX_LABELS_BYTES),
                                  labels_path)
    if ref.preprocessing is None or "preprocessing" not in _names(loaded):
        return labels, None, None
    mean, variance = (np.asarray(w, np.float32) for w in
                      loaded.get_layer("preprocessing").get_weights()[:2])
    if ref.preprocessing == "per_pixel_mean" and mean.size == size * size * 3:
        return labels, mean.reshape(-1), np.full((3,), 255.0, np.float32)
    channel_mean = mean.reshape(-1, 3).mean(0)
    channel_std = np.sqrt(variance.reshape(-1, 3).mean(0))
    return labels, np.tile(channel_mean, size * size), channel_std


def check_fits(source: Any, target: Any, name: str) -> None:
    """Every weighted layer of ``target`` but the classifier is in ``source`` with the same
    shapes, and ``source`` has no other weighted layer; else UsageError listing both."""
    ours = {layer.name: [tuple(w.shape) for w in layer.weights]
            for layer in target.layers if layer.weights and layer.name != HEAD}
    theirs = {layer.name: [tuple(w.shape) for w in layer.weights]
              for layer in source.layers if layer.weights and layer.name != HEAD}
    missing = sorted(set(ours) - set(theirs))
    unused = sorted(set(theirs) - set(ours))
    wrong = sorted(n for n in set(ours) & set(theirs) if ours[n] != theirs[n])
    if missing or unused or wrong:
        def shown(items: list[str]) -> str:
            return (", ".join(items[:5]) + (f" ... ({len(items)})" if len(items) > 5 else "")
                    ) or "none"

        raise UsageError(f"--weights {name} do not fit --model {target.name}: layers missing "
                         f"from the weights: {shown(missing)}; layers of the weights the model "
                         f"lacks: {shown(unused)}; shapes differ: {shown(wrong)}")


def keeps_classifier(pretrained: Pretrained, labels: list[str]) -> bool:
    """Whether the weights' classifier serves the dataset: same number of classes and, when
    the weights name their classes, the same names in the same order."""
    if pretrained.classes != len(labels):
        return False
    return pretrained.labels is None or pretrained.labels == list(labels)


def copy_into(target: Any, pretrained: Pretrained, labels: list[str]) -> str:
    """Copy the weights into the zoo network inside ``target`` (a trainer model) by layer
    name; the classifier too when :func:`keeps_classifier`. Returns a one-line summary."""
    network = zoo_network(target)
    keep = keeps_classifier(pretrained, labels)
    check_fits(pretrained.network, network, pretrained.ref.source)
    for layer in network.layers:
        if layer.name == HEAD and not keep:
            # A new classifier starts at zero: the first steps then train it alone (the
            # backbone's gradients are zero), so a random head does not distort the
            # pretrained features (Kumar et al. 2022, "Fine-Tuning can Distort Pretrained
            # Features and Underperform Out-of-Distribution").
            for variable in layer.weights:
                variable.assign(np.zeros(variable.shape, variable.dtype))
            continue
        if not layer.weights:
            continue
        source = pretrained.network.get_layer(layer.name)
        for variable, value in zip(layer.weights, source.weights, strict=True):
            variable.assign(np.asarray(value))
    theirs = "no classifier" if pretrained.classes is None else (
        f"{pretrained.classes} other classes" if pretrained.classes == len(labels)
        else f"{pretrained.classes} classes")
    head = (f"classifier kept ({len(labels)} classes)" if keep else
            f"new classifier (zeros) for {len(labels)} classes (the weights have {theirs})")
    return (f"weights: {pretrained.ref.source} (sha256 {pretrained.ref.sha256[:12]}...); "
            f"{head}")


# --- freezing -----------------------------------------------------------------------------

def frozen_part(layer_name: str, freeze: str | None) -> bool:
    """Whether the zoo layer ``layer_name`` is fixed under ``freeze``. The stem is
    ``conv1_*`` and ``pool1_*``; stage N is ``conv{N+1}_*`` (keras.applications' names)."""
    if freeze in (None, "none"):
        return False
    if freeze == "backbone":
        return layer_name != HEAD
    prefix = layer_name.split("_", 1)[0]
    if prefix in ("conv1", "pool1"):
        return True
    if freeze == "stem" or not prefix.startswith("conv") or not prefix[4:].isdigit():
        return False
    return int(prefix[4:]) - 1 <= int(freeze[5:])


def apply_freeze(network: Any, freeze: str | None) -> list[str]:
    """Make the frozen layers of the zoo ``network`` non-trainable (batch norm then runs in
    inference mode); returns the names of the frozen layers that hold weights."""
    frozen = []
    for layer in zoo_network(network).layers:
        if frozen_part(layer.name, freeze):
            layer.trainable = False
            if layer.weights:
                frozen.append(layer.name)
    return frozen


def freeze_summary(network: Any, freeze: str | None) -> str:
    """One line: what ``--freeze`` fixed and how many weights stay trainable."""
    if freeze in (None, "none"):
        return "freeze: none (every layer trains)"
    net = zoo_network(network)
    frozen = [layer.name for layer in net.layers if layer.weights and not layer.trainable]
    fixed = sum(int(np.prod(w.shape)) for layer in net.layers if not layer.trainable
                for w in layer.weights)
    trainable = sum(int(np.prod(w.shape)) for w in net.trainable_weights)
    return (f"freeze: {freeze}: {len(frozen)} layers fixed ({fixed:,} weights, batch norm in "
            f"inference mode: {frozen[0]} .. {frozen[-1]}); {trainable:,} weights train")
