"""The table of export formats (export/formats.py) drives validation, help, export, verify
and bench: every row's precisions are accepted and written, what a row lacks is refused
naming what it has, and a new row is exported, verified and benchmarked like the others."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from keras_resnet.export import api, bench_dir, export_model, verify_dir
from keras_resnet.export.cli import export_main, export_parser
from keras_resnet.export.errors import UsageError
from keras_resnet.export.formats import (
    FORMATS,
    PRECISIONS,
    QUANTIZE_MODES,
    ExportFormat,
    Written,
)


class Reached(Exception):
    """Raised where the heavy work would begin: the input was accepted."""


def _reached(*args, **kwargs):
    raise Reached


def _export(argv: list[str], tmp_path: Path) -> int:
    return export_main(["resnet20", "-o", str(tmp_path / "out"), *argv])


def _refused(argv: list[str], tmp_path: Path, capsys: pytest.CaptureFixture) -> str:
    assert _export(argv, tmp_path) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    assert not (tmp_path / "out").exists()
    return lines[0]


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_every_precision_of_every_row_is_offered_accepted_and_written(
        fmt: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture) -> None:
    row = FORMATS[fmt]
    words = [PRECISIONS[p].quantize for p in row.precisions if p != "float32"]
    assert row.written(words) == list(row.precisions)  # float32 first, then each asked
    assert len({row.file_name(p) for p in row.precisions}) == len(row.precisions)
    shown = " ".join(export_parser().format_help().split())
    assert fmt in shown and all(word in shown for word in words)
    monkeypatch.setattr(api, "resolve_model", _reached)
    quantize = ["--quantize", ",".join(words), "--calibration", "synthetic"] if words else []
    assert _export(["--formats", fmt, *quantize], tmp_path) != 2  # passed validation
    assert "error: Reached" in capsys.readouterr().err


def test_unknown_format_and_quantize_word_name_the_table(tmp_path: Path,
                                                         capsys: pytest.CaptureFixture) -> None:
    line = _refused(["--formats", "coreml"], tmp_path, capsys)
    assert line.endswith(f"choose from {', '.join(FORMATS)}")
    line = _refused(["--quantize", "int4"], tmp_path, capsys)
    assert line.endswith(f"choose from {', '.join(QUANTIZE_MODES)}")
    quantizing = [name for name, row in FORMATS.items() if len(row.precisions) > 1]
    line = _refused(["--formats", "saved_model", "--quantize", "float16"], tmp_path, capsys)
    assert line == f"error: --quantize needs the {' or '.join(quantizing)} format"


@pytest.mark.parametrize(("argv", "flag"), [
    (["--formats", "tflite", "--nchw"], "--nchw"),
    (["--formats", "tflite", "--opset", "13"], "--opset"),
    (["--formats", "saved_model", "--calibration-method", "entropy"], "--calibration-method"),
    (["--formats", "tflite,saved_model", "--onnx-int8-scheme", "s8s8"], "--onnx-int8-scheme"),
])
def test_an_option_no_chosen_format_reads_is_refused(argv: list[str], flag: str,
                                                     tmp_path: Path,
                                                     capsys: pytest.CaptureFixture) -> None:
    line = _refused(argv, tmp_path, capsys)
    assert line == f"error: {flag} applies to the onnx format only"


def test_a_precision_a_row_lacks_is_refused_naming_its_precisions(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="saved_model has no precision 'int8'; it has float32"):
        FORMATS["saved_model"].file_name("int8")
    with pytest.raises(UsageError, match="unknown onnx precision 'dynamic_int8' in manifest; "
                                         "onnx has float32, float16, int8"):
        FORMATS["onnx"].open_runner(tmp_path / "model.onnx", 1,
                                    {"format": "onnx", "precision": "dynamic_int8"})


# A format added by one module (here: this one) and one row: the Keras file itself.
def _write_keras(job, precision: str) -> Written:
    rel = FORMATS["keras"].file_name(precision)
    job.source.model.save(job.staging / rel)
    return Written(rel, {"layout": "NHWC"})


def _open_keras(path: Path, threads: int | None, artifact: dict):
    import keras

    import keras_resnet

    model = keras_resnet.load_model(path)
    return lambda x: keras.ops.convert_to_numpy(model(x, training=False))


def test_a_new_row_is_exported_verified_and_benchmarked(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    row = ExportFormat("keras", "Keras", ("float32",), (), ".keras",
                       f"{__name__}:_write_keras", f"{__name__}:_open_keras")
    monkeypatch.setitem(FORMATS, "keras", row)
    out = tmp_path / "out"
    manifest = export_model("resnet20", out, formats=["keras"], input_size=32, classes=3,
                            samples=8)
    [artifact] = manifest["artifacts"]
    assert (artifact["format"], artifact["precision"], artifact["path"]) == (
        "keras", "float32", "model_float32.keras")
    assert artifact["parity"]["passed"] and artifact["parity"]["max_abs_diff"] <= 1e-6
    assert sorted(p.name for p in out.iterdir()) == [
        "manifest.json", "model.keras", "model_float32.keras", "parity_inputs.npy"]
    assert verify_dir(out)["passed"]
    rows = bench_dir(out, batch=2, runs=1, include_keras=False)
    assert [(r["format"], r["name"]) for r in rows] == [("keras", "model_float32.keras")]
    assert np.isfinite(rows[0]["latency_ms"]) and rows[0]["throughput"] > 0
    edited = json.loads((out / "manifest.json").read_text())
    edited["artifacts"][0]["precision"] = "int8"
    (out / "manifest.json").write_text(json.dumps(edited))
    report = verify_dir(out)
    assert not report["passed"]
    assert "unknown keras precision 'int8' in manifest; keras has float32" in \
        report["artifacts"][0]["error"]


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_every_row_module_loads_without_its_package(fmt: str) -> None:
    """keras_resnet/tools/emulation.py runs the runners' files alone on emulated CPUs (no package)."""
    import importlib.util
    import sys

    from keras_resnet.export import formats

    module = FORMATS[fmt].runner.partition(":")[0]
    assert module.startswith(".")
    path = Path(formats.__file__).parent / f"{module[1:]}.py"
    spec = importlib.util.spec_from_file_location(f"_alone_{fmt}", path)
    loaded = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = loaded
    try:
        spec.loader.exec_module(loaded)
    finally:
        del sys.modules[spec.name]
    assert callable(getattr(loaded, FORMATS[fmt].runner.partition(":")[2]))
