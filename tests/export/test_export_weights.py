"""The exporter takes the zoo's weights names (timm/NAME, .safetensors) and its manifest
records the weights' source and SHA-256; offline, a named download fails at once."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
from keras_resnet.export.cli import export_main
from keras_resnet.export.source import from_zoo

REPO = Path(__file__).resolve().parents[2]


def _write_timm_checkpoint(folder: Path, arch: str, classes: int) -> Path:
    """tests/keras_resnet/conftest.py's writer (conftest modules are not importable by name)."""
    spec = importlib.util.spec_from_file_location(
        "zoo_conftest", REPO / "tests" / "keras_resnet" / "conftest.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.write_timm_checkpoint(folder, arch, classes=classes)


def test_safetensors_weights_are_loaded_and_recorded_with_their_digest(tmp_path) -> None:
    from keras_resnet.weights.hub import sha256_of

    path = _write_timm_checkpoint(tmp_path / "r18", "resnet18", classes=10)
    source = from_zoo("resnet18", weights=str(path), classes=10, input_size=32, builder={})
    assert source.config["weights"] == str(path)
    assert source.config["weights_sha256"] == sha256_of(str(path))
    assert source.preprocessing == "torch"  # timm weights: ImageNet mean and std
    from safetensors.numpy import load_file

    kernel = load_file(str(path))["conv1.weight"].transpose(2, 3, 1, 0)
    np.testing.assert_array_equal(np.asarray(source.model.get_layer("conv1_conv").kernel),
                                  kernel)


def test_named_weights_offline_fail_at_once_with_the_local_route(
        tmp_path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # port 9 refuses: no network
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    code = export_main(["resnet18", "--weights", "timm/resnet18.a1_in1k", "-o",
                        str(tmp_path / "out")])
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1, lines
    assert "cannot reach the Hugging Face hub" in lines[0]
    assert "weights='resnet18.a1_in1k/model.safetensors'" in lines[0]
    assert not (tmp_path / "out").exists()
    pickle = tmp_path / "model.pth"
    pickle.write_bytes(b"\x80\x04")
    assert export_main(["resnet18", "--weights", str(pickle), "-o", str(tmp_path / "out")]) == 2
    assert "pickle-based" in capsys.readouterr().err
