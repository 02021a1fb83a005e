"""The weights resolver: what a user passes becomes one typed record, cheaply (nothing is
built or downloaded), and the one table answers for every known name."""

from __future__ import annotations

import dataclasses
import hashlib
import zipfile

import pytest

import keras_resnet as kr
from keras_resnet import weights
from keras_resnet.weights import flag_message, resolve, timm


def test_each_kind_of_argument_gives_its_record(tmp_path, timm_checkpoint) -> None:
    assert resolve(None) is None
    keras_apps = resolve("imagenet", model="resnet50v2")
    assert (keras_apps.kind, keras_apps.source, keras_apps.layout) == (
        "keras_applications", "imagenet:resnet50v2", "keras")
    assert keras_apps.known.digests[0] == "3ef43a0b657b3be2300d5770ece849e0"
    assert keras_apps.known.preprocessing == "tf" and keras_apps.path == ""
    assert resolve("imagenet", model="resnet18").known is None  # nothing published
    hub = resolve("timm/resnet50.a1_in1k")
    assert (hub.kind, hub.is_hub_name, hub.known.top1, hub.layout) == ("timm", True, 80.38, "torch")
    local = resolve(timm_checkpoint(tmp_path / "r18", "resnet18", classes=10))
    assert local.kind == "timm" and not local.is_hub_name
    assert local.config["architecture"] == "resnet18" and local.known is None
    fetched = weights.fetch(local)
    body = (tmp_path / "r18" / "model.safetensors").read_bytes()
    assert fetched.sha256 == hashlib.sha256(body).hexdigest() and local.sha256 == ""
    with pytest.raises(dataclasses.FrozenInstanceError):
        local.kind = "h5"


def test_a_run_dir_is_its_model_keras(tmp_path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    with pytest.raises(ValueError, match="a folder must be a keras-resnet-train model dir"):
        resolve(run)
    with zipfile.ZipFile(run / "model.keras", "w") as archive:
        archive.writestr("config.json", "{}")
    record = resolve(str(run))
    assert (record.kind, record.run_dir, record.argument) == ("keras", str(run.resolve()),
                                                             str(run))
    assert record.source == str((run / "model.keras").resolve())
    with pytest.raises(ValueError, match="is a training run's model dir"):
        kr.ResNet20(weights=str(run))  # refused before a layer is built


def test_bad_arguments_are_refused_naming_them(tmp_path) -> None:
    with pytest.raises(ValueError, match=r"weights=3 must be None, 'imagenet'"):
        resolve(3)
    with pytest.raises(FileNotFoundError, match=r"weights='.*nope\.h5': no such file"):
        resolve(str(tmp_path / "nope.h5"))
    odd = tmp_path / "w.npz"
    odd.write_bytes(b"x")
    with pytest.raises(ValueError, match=r"expected imagenet, timm/NAME, .*\.h5, \.weights\.h5"):
        resolve(odd)
    fake = tmp_path / "w.weights.h5"
    fake.write_bytes(b"not hdf5")
    with pytest.raises(ValueError, match="HDF5 header not found"):
        resolve(fake)
    with pytest.raises(ValueError, match="pickle-based"):
        resolve(str(tmp_path / "w.pth"))  # refused by name, before the file is looked at
    with pytest.raises(ValueError, match="expected 'timm/<architecture>.<tag>'"):
        resolve("timm/vit_base_patch16_224.augreg_in21k")
    assert flag_message("weights='x.h5': no such file", "x.h5") == "--weights x.h5: no such file"
    assert flag_message("offline", "timm/a") == "--weights timm/a: offline"


def test_timm_architecture_names_round_trip() -> None:
    for name in ("resnet18", "resnet200", "resnext50_32x4d", "resnext101_64x4d",
                 "wide_resnet101_2"):
        assert timm.parse_architecture(name).name == name
    assert timm.parse_architecture("resnet19") is None
    assert timm.parse_architecture("resnext34_32x4d") is None  # basic blocks are not grouped
    assert timm.parse_architecture("resnext50_32x4d") == timm.Arch(50, 32, 4)
