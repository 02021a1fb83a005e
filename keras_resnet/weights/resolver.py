"""From what a user passes as weights to a typed record: the one place that knows where
weights come from.

:func:`resolve` is cheap (nothing is downloaded or hashed, so every bad argument is refused
before heavy work); :func:`fetch` finds the local file, downloading it where needed, and
its SHA-256. The zoo, the trainer and the exporter all call these two.
"""

from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from keras_resnet.safefiles import check_regular
from keras_resnet.weights import hub, keras_files, timm
from keras_resnet.weights.table import WeightsInfo, find, imagenet_row

#: The loaders: keras.applications' published file, a timm safetensors checkpoint (hub or
#: local), a whole ``.keras`` model (a training run's too), a ``.weights.h5`` or legacy
#: ``.h5`` file.
KINDS = ("keras_applications", "timm", "keras", "h5")
ACCEPTED = ("imagenet, timm/NAME, a .safetensors, .h5, .weights.h5 or .keras file, or a "
            "training run's model dir")


@dataclass(frozen=True)
class WeightsRecord:
    """Resolved weights.

    Attributes:
        argument: what was passed (``"imagenet"``, ``"timm/NAME"``, a file, a run dir).
        kind: its loader, one of :data:`KINDS`.
        source: ``"imagenet:MODEL"``, ``"timm/NAME"`` or the file's absolute path: what a
            run records as the weights' identity.
        path: the local file; ``""`` until :func:`fetch` (a hub name, keras.applications').
        sha256: the file's digest; ``""`` until :func:`fetch`.
        known: the row of the table of known weights, where they are in it.
        config: timm's ``config.json`` beside the file (architecture, mean and std).
        run_dir: the training run's model dir, where one was passed.
    """

    argument: str
    kind: str
    source: str
    path: str = ""
    sha256: str = ""
    known: WeightsInfo | None = None
    config: dict[str, Any] = field(default_factory=dict)
    run_dir: str | None = None

    @property
    def layout(self) -> str:
        """``"torch"`` (timm/torchvision's layout) or ``"keras"``."""
        return "torch" if self.kind == "timm" else "keras"

    @property
    def is_hub_name(self) -> bool:
        return self.kind == "timm" and timm.is_hub_name(self.argument)

    def identity(self) -> dict[str, str]:
        """What a resumed run must share: the source and the digest of its file."""
        return {"source": self.source, "sha256": self.sha256}


def resolve(weights: Any, *, model: str | None = None) -> WeightsRecord | None:
    """The record of ``weights`` (``None`` for none): ``"imagenet"`` (keras.applications'
    file for ``model``, a registry name), ``"timm/NAME"``, a file of a supported kind or a
    training run's model dir. Cheap; ValueError or FileNotFoundError naming ``weights=``."""
    if weights is None:
        return None
    if not isinstance(weights, str | os.PathLike):
        raise ValueError(f"weights={weights!r} must be None, 'imagenet' or a path to a "
                         "weights file, or a timm name such as 'timm/resnet50.a1_in1k'")
    text = os.fspath(weights)
    if text == "imagenet":
        row = imagenet_row(model)
        return WeightsRecord(text, "keras_applications", f"imagenet:{model}" if row else text,
                             known=row)
    if timm.is_hub_name(text):
        timm.architecture_of_name(text)
        return WeightsRecord(text, "timm", text, known=find(text))
    timm.refuse_pickle(text)
    path = Path(os.path.expanduser(text))
    check_regular(path, "weights file")
    if path.is_dir():
        return _run_dir(text, path)
    if not path.is_file():
        raise FileNotFoundError(f"weights={text!r}: no such file")
    return _file(text, path)


def _file(text: str, path: Path) -> WeightsRecord:
    absolute = str(path.resolve())
    if path.name.lower().endswith(timm.SAFETENSORS_SUFFIX):
        return WeightsRecord(text, "timm", absolute, absolute,
                             config=timm.read_config_beside(absolute))
    if not path.name.lower().endswith(keras_files.WEIGHT_SUFFIXES):
        raise ValueError(f"weights={text!r}: expected {ACCEPTED}")
    keras_files.check_header(str(path))
    return WeightsRecord(text, "keras" if path.name.endswith(".keras") else "h5", absolute,
                         absolute)


def _run_dir(text: str, folder: Path) -> WeightsRecord:
    """A training run's model dir: its ``model.keras``."""
    keras_file = folder / "model.keras"
    if not keras_file.is_file():
        raise ValueError(f"weights={text!r}: a folder must be a keras-resnet-train model dir "
                         "with a model.keras (this one has none)")
    return dataclasses.replace(_file(str(keras_file), keras_file), argument=text,
                               run_dir=str(folder.resolve()))


def fetch(record: WeightsRecord, *, include_top: bool = True,
          recorded: dict[str, str] | None = None) -> WeightsRecord:
    """``record`` with its local file and SHA-256: keras.applications' file downloaded by
    Keras (once, into ``~/.keras/models``), a hub name by ``huggingface_hub`` (into its
    cache; offline: one clear OSError), a local file hashed. A record already made by the
    run being resumed (``recorded``: its identity) is not downloaded again."""
    if record.sha256:
        return record
    if recorded and recorded.get("source") == record.source and not record.path:
        return dataclasses.replace(record, sha256=recorded["sha256"])
    if record.kind == "keras_applications":
        if record.known is None:
            raise ValueError("weights='imagenet': keras.applications publishes no file for "
                             "this network; keras_resnet.list_weights() lists known weights")
        path = keras_files.fetch_imagenet(record.known.model, include_top)
        return dataclasses.replace(record, path=path, sha256=hub.sha256_of(path))
    if record.is_hub_name:
        path, digest = hub.download(record.argument)
        return dataclasses.replace(record, path=path, sha256=digest,
                                   config=timm.read_config_beside(path))
    return dataclasses.replace(record, sha256=hub.sha256_of(record.path))


def flag_message(message: str, argument: str, flag: str = "--weights") -> str:
    """A message of the resolver in a command line's terms: ``--weights X`` where it says
    ``weights='X'``."""
    flagged = re.sub(r"^weights='[^']*'", lambda _: f"{flag} {argument}", message)
    return flagged if flagged != message else f"{flag} {argument}: {message}"
