"""The one table of known pretrained weights: where they come from, which network they
fit, their layout, how their inputs must be prepared, the digest their publisher gives
and the top-1 it reports.

``keras_resnet.list_weights()`` lists the names, ``keras_resnet.weights_info(name)``
gives one row. Every name is a valid ``weights=`` argument of the matching builder.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class WeightsInfo:
    """One pretrained weight set.

    Attributes:
        name: the ``weights=`` argument (``"imagenet"`` rows also name their model).
        model: the registry name of the network they fit (their architecture).
        source: who trained and publishes them.
        layout: ``"torch"`` (torchvision/timm: no conv biases, stride on the 3x3,
            BN epsilon 1e-5) or ``"keras"`` (keras.applications).
        input_size: training/evaluation resolution (height = width).
        mean, std: per-channel normalisation of RGB in [0, 1]; ``None`` where
            the weights use keras.applications' ``preprocessing`` mode instead.
        preprocessing: ``"torch"`` (mean/std above), ``"caffe"`` or ``"tf"``.
        interpolation: resize filter of the evaluation pipeline.
        crop_fraction: centre-crop fraction of the evaluation pipeline (resize the
            short side to ``input_size / crop_fraction``, then crop).
        top1: published ImageNet-1k validation top-1 (%) at ``input_size``.
        classes: classes of the classifier (ImageNet-1k).
        digests: the publisher's digests of its files: keras.applications' MD5 of the
            file with and without the classifier (top, notop); empty for timm's, whose
            SHA-256 the hub publishes beside each file (checked at download).
    """

    name: str
    model: str
    source: str
    layout: str
    input_size: int
    mean: tuple[float, float, float] | None
    std: tuple[float, float, float] | None
    preprocessing: str
    interpolation: str
    crop_fraction: float | None
    top1: float
    classes: int = 1000
    digests: tuple[str, ...] = ()

    def as_dict(self) -> dict:
        return asdict(self)


def _timm(tag: str, model: str, top1: float) -> WeightsInfo:
    """timm's ResNet Strikes Back recipes (Wightman et al. 2021): bicubic, crop 0.95."""
    return WeightsInfo(f"timm/{model}.{tag}", model, "timm (ResNet Strikes Back)", "torch",
                       224, IMAGENET_MEAN, IMAGENET_STD, "torch", "bicubic", 0.95, top1)


def _torchvision(model: str, top1: float) -> WeightsInfo:
    """torchvision's original weights, republished by timm: bilinear, crop 0.875."""
    return WeightsInfo(f"timm/{model}.tv_in1k", model, "torchvision (via timm)", "torch",
                       224, IMAGENET_MEAN, IMAGENET_STD, "torch", "bilinear", 0.875, top1)


#: The digest column of keras.applications' rows: the MD5 of each file with and without
#: the classifier (top, notop), as keras.applications publishes them.
_KERAS_MD5 = {
    "resnet50": ("2cb95161c43110f7111970584f804107", "4d473c1dd8becc155b73f8504c6f6626"),
    "resnet101": ("f1aeb4b969a6efcfb50fad2f0c20cfc5", "88cf7a10940856eca736dc7b7e228a21"),
    "resnet152": ("100835be76be38e30d865e96f2aaae62", "ee4c566cf9a93f14d82f913c2dc6dd0c"),
    "resnet50v2": ("3ef43a0b657b3be2300d5770ece849e0", "fac2f116257151a9d068a22e544a4917"),
    "resnet101v2": ("6343647c601c52e1368623803854d971", "c0ed64b8031c3730f411d2eb4eea35b5"),
    "resnet152v2": ("a49b44d1979771252814e80f8ec446f9", "ed17cf2e0169df9d443503ef94b23b33"),
}


def _keras(model: str, preprocessing: str, top1: float) -> WeightsInfo:
    """keras.applications' files, with the MD5 digests it publishes for them."""
    return WeightsInfo("imagenet", model, "keras.applications", "keras", 224, None, None,
                       preprocessing, "bilinear", None, top1, digests=_KERAS_MD5[model])


#: Top-1: timm's results table and torchvision's model documentation (224 px),
#: keras.applications' table for its files.
KNOWN_WEIGHTS: tuple[WeightsInfo, ...] = (
    _timm("a1_in1k", "resnet18", 71.50),
    _timm("a1_in1k", "resnet34", 76.42),
    _timm("a1_in1k", "resnet50", 80.38),
    _timm("a1h_in1k", "resnet101", 81.95),
    _timm("a1h_in1k", "resnet152", 82.82),
    _torchvision("resnet18", 69.76),
    _torchvision("resnet34", 73.31),
    _torchvision("resnet50", 76.13),
    _torchvision("resnet101", 77.37),
    _torchvision("resnet152", 78.31),
    _keras("resnet50", "caffe", 74.9),
    _keras("resnet101", "caffe", 76.4),
    _keras("resnet152", "caffe", 76.6),
    _keras("resnet50v2", "tf", 76.0),
    _keras("resnet101v2", "tf", 77.2),
    _keras("resnet152v2", "tf", 78.0),
)


def _key(info: WeightsInfo) -> str:
    return f"imagenet:{info.model}" if info.name == "imagenet" else info.name


def list_weights(model: str | None = None) -> list[str]:
    """Names of the known weights, optionally only those that fit ``model``.

    timm and torchvision weights are named ``"timm/<model>.<tag>"``;
    keras.applications' files are ``"imagenet:<model>"`` here and are loaded with
    ``weights="imagenet"`` on that model.
    """
    return [_key(w) for w in KNOWN_WEIGHTS if model is None or w.model == model.lower()]


def find(name: str) -> WeightsInfo | None:
    """The row of ``name`` (as :func:`list_weights` spells it), or ``None``."""
    for info in KNOWN_WEIGHTS:
        if _key(info) == name:
            return info
    return None


def imagenet_row(model: str | None) -> WeightsInfo | None:
    """keras.applications' row for ``model`` (``weights="imagenet"``), or ``None`` where it
    publishes no file for that model."""
    return find(f"imagenet:{model}") if model else None


def published_imagenet_models() -> list[str]:
    """The models keras.applications publishes ImageNet files for."""
    return [w.model for w in KNOWN_WEIGHTS if w.name == "imagenet"]


def weights_info(name: str) -> dict:
    """Everything the table knows about ``name``: source, model, input size, mean
    and std, interpolation, crop fraction and published top-1."""
    info = find(name)
    if info is None:
        raise ValueError(f"weights={name!r} is not in the table of known weights; known: "
                         f"{', '.join(list_weights())}")
    return info.as_dict()
