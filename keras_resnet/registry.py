"""The registry of named models.

Each named builder registers itself where it is defined, with :func:`register_model` (as
timm's ``@register_model``); :func:`list_models`, :func:`model_info`,
:func:`keras_resnet.create_model` and the package's public names all read that one
registration and the :class:`~keras_resnet.specs.NetSpec` it implies. Nothing here imports
Keras, so the package can list its names before a backend starts.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from keras_resnet.specs import FAMILIES, NetSpec, network_spec

#: Input preprocessing each variant's reference weights expect (keras.applications
#: modes: "caffe" = BGR minus the ImageNet mean, "tf" = scale to [-1, 1]).
PREPROCESSING = {"v1": "caffe", "v1.5": "caffe", "v2": "tf"}
#: The options of a registration that say the architecture (the others, such as
#: ``shortcut``, are build options :func:`keras_resnet.build_resnet` takes as well).
SPEC_OPTIONS = ("family", "variant", "groups", "width_per_group", "widen_factor")

Builder = TypeVar("Builder", bound=Callable[..., Any])


@dataclass(frozen=True)
class RegisteredModel:
    """One named model: its builder, its depth and the ``build_resnet`` options it fixes."""

    name: str
    builder: Callable[..., Any]
    depth: int
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def builder_name(self) -> str:
        return self.builder.__name__

    @property
    def spec(self) -> NetSpec:
        """The network's spec (keras layout): family, blocks, default input size, classes."""
        return network_spec(self.depth, **{k: v for k, v in self.options.items()
                                            if k in SPEC_OPTIONS})

    @property
    def family(self) -> str:
        return self.spec.family


#: registry name -> its registration, in the order the builders are defined.
REGISTRY: dict[str, RegisteredModel] = {}


def register_model(name: str, *, depth: int, **options: Any) -> Callable[[Builder], Builder]:
    """Register the decorated builder as ``name`` (lower case), a ``depth``-deep network
    with the given ``build_resnet`` options; the builder itself is returned unchanged.

    >>> @register_model("resnet26", depth=26, family="cifar")
    ... def ResNet26(include_top=True, weights=None, **kwargs):
    ...     return create_model("resnet26", include_top=include_top, weights=weights, **kwargs)
    """
    if not isinstance(name, str) or name != name.lower() or not name:
        raise ValueError(f"name={name!r}: a registry name is a non-empty lower-case string")
    if name in REGISTRY:
        raise ValueError(f"name={name!r} is registered already "
                         f"(by {REGISTRY[name].builder_name})")

    def register(builder: Builder) -> Builder:
        entry = RegisteredModel(name, builder, depth, dict(options))
        entry.spec  # noqa: B018 - a registration that builds no valid network fails here
        REGISTRY[name] = entry
        return builder

    return register


def lookup(name: str) -> RegisteredModel:
    """The registration of ``name`` (any case), or a ValueError suggesting close names."""
    key = name.lower() if isinstance(name, str) else name
    if key not in REGISTRY:
        close = difflib.get_close_matches(str(name).lower(), REGISTRY, n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise ValueError(f"unknown model {name!r}{hint}; available: {', '.join(REGISTRY)}")
    return REGISTRY[key]


def list_models(family: str | None = None) -> list[str]:
    """Registry names, e.g. ``["resnet18", ..., "wide_resnet28_10"]``."""
    if family is not None and family not in FAMILIES:
        raise ValueError(f"family={family!r} is not one of {', '.join(map(repr, FAMILIES))}")
    return [n for n, entry in REGISTRY.items() if family is None or entry.family == family]


def model_info(name: str) -> dict[str, Any]:
    """What a registered model is: family, default input shape and classes, and the
    input preprocessing its reference weights expect ("none" for CIFAR nets,
    whose per-pixel mean subtraction, section 4.2, belongs to the data)."""
    entry = lookup(name)
    spec = entry.spec
    return {
        "name": entry.name, "builder": entry.builder_name, "depth": entry.depth,
        "family": spec.family, "variant": spec.variant,
        "input_shape": (spec.default_size, spec.default_size, 3),
        "classes": spec.default_classes, "min_input_size": spec.total_stride,
        "preprocessing": PREPROCESSING[spec.variant] if spec.family == "imagenet" else "none",
    }


def builder_names() -> list[str]:
    """The public names of the registered builders (``ResNet18``, ...)."""
    return [entry.builder_name for entry in REGISTRY.values()]
