"""Resolve the MODEL argument (a zoo name or a ``.keras`` file) into a Keras model plus the
input spec, preprocessing and labels recorded in the manifest."""

from __future__ import annotations

import os
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from keras_resnet.export.contract import (
    HOW_TO_STATE,
    InputContract,
    recorded_contract,
    stated_contract,
    zoo_contract,
)
from keras_resnet.export.errors import UsageError

#: Preprocessing modes of keras.applications that keras_resnet.preprocess_input applies.
KERAS_MODES = ("caffe", "tf", "torch")


@dataclass
class ModelSource:
    """A model ready to export, with what a deployment needs to know about its input."""

    model: Any
    name: str
    config: dict[str, Any]
    input_shape: tuple[int, int, int]
    preprocessing: str
    preprocessing_in_model: bool
    labels: list[str] | None = None
    keras_path: Path | None = None
    notes: list[str] = field(default_factory=list)
    #: The input contract (None until :func:`settle_contract`).
    contract: InputContract | None = None
    #: Built from seeded random weights (a zoo model without ``--weights``).
    untrained: bool = False
    #: What the model's training run recorded: ``top1`` (test accuracy) and ``dataset``.
    recorded: dict[str, Any] = field(default_factory=dict)

    def preprocess(self, pixels: np.ndarray) -> np.ndarray:
        """Raw RGB pixels 0..255 -> what the model's input expects (its contract)."""
        if self.contract is None:
            raise RuntimeError("the input contract is not settled")
        return self.contract.to_model(pixels)


def settle_contract(source: ModelSource, options: Any, zoo_mode: str | None) -> None:
    """The input contract: stated by the user, else recorded by the model (its run's files,
    its leading Rescaling/Normalization layer), else the zoo mode; refused otherwise."""
    size = source.input_shape[:2]
    source.contract = (stated_contract(options, size)
                       or recorded_contract(source.keras_path, source.model, size))
    if source.contract is None and zoo_mode is not None:
        source.contract = zoo_contract(zoo_mode, size, f"the zoo's preprocessing {zoo_mode!r}")
    if source.contract is None:
        where = "no labels.json or run_config.json beside it, " if source.keras_path else ""
        raise UsageError(f"the input range of model {source.name!r} is unknown ({where}no "
                         f"leading Rescaling/Normalization layer); {HOW_TO_STATE}")
    source.preprocessing = source.contract.describe()
    source.preprocessing_in_model = (source.contract.mean is None
                                     and source.contract.channels == "RGB")


def preprocess_fn(mode: str, in_model: bool) -> Callable[[np.ndarray], np.ndarray]:
    """The function that turns raw pixels into model input for a recorded preprocessing."""
    if in_model or mode not in KERAS_MODES:
        return lambda x: np.asarray(x, np.float32)

    def apply(x: np.ndarray) -> np.ndarray:
        import keras_resnet

        return np.asarray(keras_resnet.preprocess_input(np.array(x, np.float32), mode=mode),
                          np.float32)

    return apply


def looks_like_keras_file(model: Any) -> bool:
    """True when MODEL names a file rather than a zoo entry."""
    if isinstance(model, Path):
        return True
    return isinstance(model, str) and (model.endswith(".keras") or "/" in model
                                       or Path(model).suffix != "")


def from_model(model: Any) -> ModelSource:
    """A ``keras.Model`` in memory (saved into the export as model.keras)."""
    config = {"source": "in_memory", "name": model.name}
    return ModelSource(model=model, name=model.name, config=config,
                       input_shape=_input_shape(model), preprocessing="",
                       preprocessing_in_model=True)


def read_labels(path: Path) -> list[str]:
    """Labels from a JSON list of strings, a JSON object whose ``labels`` is one, or a UTF-8
    text file (one a line); UsageError with one line otherwise."""
    from keras_resnet.safefiles import (
        MAX_LABELS_BYTES,
        RefusedFile,
        check_regular,
        labels_from_json,
        read_json_file,
    )

    try:
        if Path(path).suffix == ".json":
            return labels_from_json(read_json_file(path, "labels file", MAX_LABELS_BYTES), path)
        check_regular(path, "labels file")
        text = Path(path).read_bytes()[:MAX_LABELS_BYTES + 1].decode("utf-8")
    except RefusedFile as exc:
        raise UsageError(str(exc)) from None
    except OSError as exc:
        raise UsageError(f"cannot read labels file {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise UsageError(f"labels file {path} is not UTF-8 text") from None
    return [line.strip() for line in text.splitlines() if line.strip()]


def from_zoo(name: str, *, weights: str | None, classes: int | None, input_size: int | None,
             builder: dict[str, Any], seed: int = 0) -> ModelSource:
    """Build a zoo model with ``keras_resnet.create_model``; bad options become UsageError.
    Without weights its random initial weights are seeded (``keras.utils.set_random_seed``),
    so that the same command writes the same files."""
    import keras

    import keras_resnet

    if name.lower() not in keras_resnet.list_models():
        raise UsageError(f"unknown model {name!r}; available: "
                         f"{', '.join(keras_resnet.list_models())}, or a .keras file")
    info = keras_resnet.model_info(name)
    size = input_size or info["input_shape"][0]
    record = weights_record(weights, name.lower())  # checked (and downloaded) first
    kwargs: dict[str, Any] = {"input_shape": (size, size, 3), "weights": record.get("path"),
                              **builder}
    if classes is not None:
        kwargs["classes"] = classes
    if weights is None:
        keras.utils.set_random_seed(seed)
    try:
        model = keras_resnet.create_model(name, **kwargs)
    except FileNotFoundError as exc:
        raise UsageError(f"weights file not found: {exc}") from None
    except (ValueError, TypeError) as exc:
        raise UsageError(_first_line(exc)) from None
    except Exception as exc:  # e.g. h5py or download errors for weights="imagenet" offline
        raise UsageError(f"cannot build {name} with weights={weights!r}: "
                         f"{_first_line(exc)}") from None
    config = {"source": "zoo", "name": name.lower(), "weights": weights,
              "weights_sha256": record.get("sha256"),
              "classes": classes if classes is not None else info["classes"],
              "input_size": size, **builder,
              **({"seed": seed, "untrained": True} if weights is None else {})}
    # timm weights want ImageNet's mean and std (keras.applications' "torch" mode)
    preprocessing = "torch" if record.get("timm") else info["preprocessing"]
    return ModelSource(model=model, name=name.lower(), config=config,
                       input_shape=_input_shape(model), preprocessing=preprocessing,
                       preprocessing_in_model=False, untrained=weights is None)


def weights_record(weights: str | None, model: str) -> dict[str, Any]:
    """``--weights`` of a zoo model resolved (:func:`keras_resnet.weights.resolve`) and
    fetched: ``path`` (what the builder takes: ``"imagenet"``, a timm name or the file),
    ``sha256`` of the file and ``timm`` (timm's layout). A timm name is downloaded here
    (offline: one clear error naming the local-file route)."""
    if weights is None:
        return {}
    from keras_resnet.weights import fetch, flag_message, resolve

    try:
        record = resolve(weights, model=model)
        if record.kind == "keras_applications" and record.known is None:
            return {"path": "imagenet"}  # the builder names what is published
        record = fetch(record)
    except FileNotFoundError:
        raise UsageError(f"weights file {weights} not found") from None
    except (OSError, ValueError, ImportError) as exc:
        raise UsageError(flag_message(_first_line(exc), weights)) from None
    return {"path": record.argument, "sha256": record.sha256, "timm": record.kind == "timm"}


def from_keras_file(path: Path) -> ModelSource:
    """Load a ``.keras`` file with ``safe_mode=True``; read ``labels.json`` next to it."""
    import keras_resnet

    path = Path(path)
    if not path.is_file():
        raise UsageError(f"model file {path} not found (and not a zoo model name)")
    if path.suffix != ".keras":
        raise UsageError(f"model file {path} is not a .keras file")
    if not zipfile.is_zipfile(path):
        raise UsageError(f"model file {path} is corrupt: not a .keras (zip) archive")
    from keras_resnet.safefiles import RefusedFile
    from keras_resnet.weights.values import InvalidWeights

    try:
        model = keras_resnet.load_model(path)  # safe_mode=True, with headroom for ResNet-1202
    except (RefusedFile, InvalidWeights) as exc:
        raise UsageError(str(exc)) from None
    except Exception as exc:  # Keras raises ValueError, TypeError, KeyError, zip and h5 errors
        message = str(exc)
        if "lambda" in message.lower() or "safe_mode" in message:
            raise UsageError(f"{path} contains a Lambda layer; refusing unsafe deserialization "
                             "(safe_mode): rebuild the model from built-in layers") from None
        raise UsageError(f"cannot load {path}: corrupt or unsupported .keras file "
                         f"({type(exc).__name__}: {_first_line(exc)})") from None
    labels_path = path.with_name("labels.json")
    labels, preprocessing, in_model = None, "", True
    notes = []
    if os.path.lexists(labels_path):
        _, labels = _labels_beside(labels_path)
    else:
        notes.append("no labels.json next to the model: labels unknown")
    config = {"source": "keras_file", "path": str(path.resolve()), "name": model.name}
    return ModelSource(model=model, name=model.name, config=config,
                       input_shape=_input_shape(model), preprocessing=preprocessing,
                       preprocessing_in_model=in_model, labels=labels, keras_path=path,
                       notes=notes, recorded=_recorded_run(path))


def _recorded_run(path: Path) -> dict[str, Any]:
    """The test top-1 a trainer run recorded (metrics.json) and its dataset (run_config)."""
    from keras_resnet.safefiles import MAX_LABELS_BYTES, read_json_file

    found: dict[str, Any] = {}
    for name, key, into in (("metrics.json", "eval_top1", "top1"),
                            ("run_config.json", "dataset", "dataset")):
        try:
            data = read_json_file(path.with_name(name), name, MAX_LABELS_BYTES)
        except (OSError, ValueError):  # absent, unreadable or refused: nothing recorded
            continue
        if name == "run_config.json" and isinstance(data, dict):
            data = data.get("config", data)
        value = data.get(key) if isinstance(data, dict) else None
        if isinstance(value, int | float | str) and not isinstance(value, bool):
            found[into] = value
    return found


def _labels_beside(path: Path) -> tuple[Any, list[str]]:
    """The JSON of the ``labels.json`` next to a model and its labels, checked (see
    :func:`read_labels`)."""
    from keras_resnet.safefiles import (
        MAX_LABELS_BYTES,
        RefusedFile,
        labels_from_json,
        read_json_file,
    )

    try:
        meta = read_json_file(path, "labels file", MAX_LABELS_BYTES)
        return meta, labels_from_json(meta, path)
    except RefusedFile as exc:
        raise UsageError(str(exc)) from None


def _input_shape(model: Any) -> tuple[int, int, int]:
    """The (H, W, C) of a single-input float image model; anything else is refused."""
    if len(model.inputs) != 1:
        raise UsageError(f"model {model.name!r} has {len(model.inputs)} inputs; "
                         "only single-input image models can be exported")
    if len(model.outputs) != 1:
        raise UsageError(f"model {model.name!r} has {len(model.outputs)} outputs; "
                         "only single-output models can be exported")
    shape = tuple(model.inputs[0].shape)
    if len(shape) != 4 or any(d is None for d in shape[1:]):
        raise UsageError(f"model {model.name!r} input shape {shape} is not (batch, H, W, C) "
                         "with a fixed H, W, C")
    return int(shape[1]), int(shape[2]), int(shape[3])


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
