"""A zoo model without weights is built from seeded weights: the same export twice gives
the same files and the same figures, for the CPU and the TensorRT target."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import pytest
from keras_resnet.export import VerificationFailed, export_model


def _export(out: Path, **options) -> dict:
    """The manifest of one export, whether or not its checks passed."""
    with contextlib.suppress(VerificationFailed):
        export_model("resnet20", out, input_size=32, quantize="int8",
                     calibration="synthetic", **options)
    return json.loads((out / "manifest.json").read_text())


def _figures(manifest: dict) -> list:
    """Every artifact's digest and parity figures (latency and timings aside)."""
    return [(a["path"], a["sha256"], a["parity"]) for a in manifest["artifacts"]]


@pytest.mark.parametrize("options", [{"formats": "tflite"}, {"target": "tensorrt"}],
                         ids=["cpu", "tensorrt"])
def test_a_zoo_export_twice_gives_identical_files_and_figures(tmp_path: Path,
                                                              options: dict) -> None:
    first = _export(tmp_path / "a", **options)
    second = _export(tmp_path / "b", **options)
    assert _figures(first) == _figures(second)
    assert first["status"] == second["status"] and first["sanity"] == second["sanity"]
    assert first["model"]["config"]["seed"] == 0 and first["model"]["untrained"]
    weights = [m["reference"]["keras_model"]["weights_sha256"] for m in (first, second)]
    assert weights[0] == weights[1] and weights[0] is not None
    assert (tmp_path / "a" / "parity_inputs.npy").read_bytes() == (
        tmp_path / "b" / "parity_inputs.npy").read_bytes()
    if options.get("target") is None:
        assert first["status"] == "passed"
    else:
        third = _export(tmp_path / "c", seed=1, **options)
        assert third["reference"]["keras_model"]["weights_sha256"] != weights[0]
