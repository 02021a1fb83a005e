"""The per-layer quantization report and float fallback, on a model made fragile for int8 on
purpose (one channel of a conv's output scaled by 1000 and the scale undone in the next
conv's weights: the float model is unchanged, while per-tensor int8 activations crush that
tensor's other channels): the report of both runtimes names the damaged conv as the worst
layer, by its Keras name; ``--keep-float auto`` keeps that conv and the one feeding it in
float and reaches ``--min-agreement``; bad combinations are one line and exit 2."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from keras_resnet.export import export_model
from keras_resnet.export.cli import export_main, verify_main

pytestmark = pytest.mark.slow(seconds=105)

SCALE = 1000.0
PRODUCER, CONSUMER = "conv2_block1_1_conv", "conv2_block1_2_conv"


def _fragile_copy(trained_model: Path, folder: Path) -> Path:
    """The trained model with channel 0 of PRODUCER's output (conv and batch norm) x1000 and
    CONSUMER's weights of that input channel /1000: the same function in float."""
    import keras

    model = keras.saving.load_model(trained_model, safe_mode=True)
    net = next(layer for layer in model.layers if hasattr(layer, "layers"))
    kernel, *bias = net.get_layer(PRODUCER).get_weights()
    kernel[..., 0] *= SCALE
    net.get_layer(PRODUCER).set_weights([kernel, *bias])
    gamma, beta, mean, var = net.get_layer("conv2_block1_1_bn").get_weights()
    beta[0] *= SCALE
    mean[0] *= SCALE
    net.get_layer("conv2_block1_1_bn").set_weights([gamma, beta, mean, var])
    kernel, *bias = net.get_layer(CONSUMER).get_weights()
    kernel[:, :, 0, :] /= SCALE
    net.get_layer(CONSUMER).set_weights([kernel, *bias])
    folder.mkdir(parents=True, exist_ok=True)
    model.save(folder / "model.keras")
    return folder / "model.keras"


@pytest.fixture(scope="module")
def fragile_export(trained_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    source = _fragile_copy(trained_model, tmp_path_factory.mktemp("fragile"))
    out = tmp_path_factory.mktemp("layers") / "export"
    export_model(str(source), out, formats=["tflite", "onnx"], quantize=["int8"],
                 calibration="digits", samples=64, keep_float=["auto"], layer_report=True)
    return out


def _fallbacks(directory: Path) -> dict[str, dict]:
    manifest = json.loads((directory / "manifest.json").read_text())
    assert manifest["status"] == "passed"
    return {f"{a['format']}/int8": a.get("keep_float") or a["int8"]["keep_float"]
            for a in manifest["artifacts"] if a["precision"] == "int8"}


def test_report_names_the_damaged_conv_worst_in_both_runtimes(fragile_export: Path) -> None:
    fallbacks = _fallbacks(fragile_export)
    assert set(fallbacks) == {"onnx/int8", "tflite/int8"}
    for key, fallback in fallbacks.items():
        rows = fallback["report"]  # the all-int8 file's report
        names = [row["layer"] for row in rows]
        assert len(names) == 8 and "conv1_conv" in names and "predictions" in names, key
        lost = [r["lost_db"] for r in rows]
        assert lost == sorted(lost, reverse=True)
        worst = rows[0]
        assert worst["layer"] == CONSUMER and worst["fed_by"] == PRODUCER, (key, rows[:3])
        assert worst["lost_db"] > 20 and worst["sqnr_db"] < 10, (key, rows)
        healthy = next(r for r in rows if r["layer"] == "conv1_conv")
        assert healthy["sqnr_db"] > 20, (key, rows)


def test_keep_float_auto_keeps_the_pair_and_reaches_the_target(fragile_export: Path) -> None:
    import onnx

    for key, fallback in _fallbacks(fragile_export).items():
        assert fallback["all_int8"]["agreement"] < 0.5, key
        assert fallback["layers"] == [CONSUMER, PRODUCER], key
        assert fallback["reached"] and fallback["agreement"] >= 0.98, key
        assert "latency_cost_ms" in fallback
    graph = onnx.load(str(fragile_export / "model_int8.onnx")).graph
    weights = {n.input[1] for n in graph.node if n.op_type == "Conv"}
    kept = [w for w in weights if CONSUMER in w or PRODUCER in w]
    assert len(kept) == 2 and not any(w.endswith("_DequantizeLinear_Output") for w in kept)


def test_layer_report_of_the_written_files(fragile_export: Path,
                                          capsys: pytest.CaptureFixture) -> None:
    recorded = json.loads((fragile_export / "manifest.json").read_text())["layers"]
    assert verify_main([str(fragile_export), "--layers", "--json"]) == 0
    report, _ = json.JSONDecoder().raw_decode(capsys.readouterr().out)
    for key in ("onnx/int8", "tflite/int8"):
        rows = recorded[key]["layers"]
        assert {r["layer"] for r in rows} == {"conv1_conv", "conv2_block1_1_conv",
                                              "conv2_block1_2_conv", "conv3_block1_1_conv",
                                              "conv3_block1_2_conv", "conv4_block1_1_conv",
                                              "conv4_block1_2_conv", "predictions"} - {
                                                  CONSUMER, PRODUCER}, key
        assert all(r["sqnr_db"] > 10 for r in rows), (key, rows)  # the damage is gone
        again = {r["layer"]: r["sqnr_db"] for r in report["layers"][key]["layers"]}
        assert all(np.isclose(again[r["layer"]], r["sqnr_db"], atol=3) for r in rows), key


def test_layer_report_without_int8_is_refused(tmp_path: Path,
                                              capsys: pytest.CaptureFixture) -> None:
    code = export_main(["resnet20", "-o", str(tmp_path / "out"), "--classes", "10",
                        "--input-size", "32", "--layer-report"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "--layer-report" in err[0] and "int8" in err[0]
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(("extra", "expected"), [
    (["--target", "npu", "--keep-float", "conv1_conv"], "--target npu"),
    (["--quantize", "int8", "--calibration", "synthetic", "--keep-float",
      "conv2_block1_2_cnv"], "conv2_block1_2_conv"),
    (["--quantize", "int8", "--calibration", "synthetic", "--keep-float", "auto,conv1_conv"],
     "either 'auto'"),
])
def test_bad_keep_float_is_one_line_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture,
                                           extra: list[str], expected: str) -> None:
    code = export_main(["resnet20", "-o", str(tmp_path / "out"), "--classes", "10",
                        "--input-size", "32", *extra])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "--keep-float" in err[0] and expected in err[0], err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(("scores", "layers", "agreement"), [
    ({(): 0.5, ("a", "b"): 0.7, ("a", "b", "c"): 0.6}, ["a", "b"], 0.7),
    ({(): 0.5, ("a", "b"): 0.4, ("a", "b", "c"): 0.3}, [], 0.5),
])
def test_keep_float_auto_short_of_the_target_keeps_the_fewest_that_did_best(
        scores: dict, layers: list[str], agreement: float) -> None:
    """Layers are added in report order, each with the layer feeding it; when the target is
    never reached the file written last is the best choice, not every layer tried."""
    import keras
    from keras_resnet.export.keep_float import choose_and_write

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax")])
    x = np.random.RandomState(0).randn(20, 4).astype("float32")
    reference = keras.ops.convert_to_numpy(model(x))
    written: list[list[str]] = []

    def run_file():  # agrees on the first scores[kept] of the images
        agree = int(round(scores[tuple(written[-1])] * len(x)))
        wrong = np.roll(reference[agree:], 1, axis=1)
        return lambda batch: np.concatenate([reference[:agree], wrong])[:len(batch)]

    rows = [{"layer": "a", "fed_by": "b"}, {"layer": "c", "fed_by": ""}]
    record = choose_and_write(written.append, run_file, lambda: rows, model, x, ["auto"], 0.9)
    assert written[:3] == [[], ["a", "b"], ["a", "b", "c"]] and written[-1] == layers
    assert record["reached"] is False and record["layers"] == layers
    assert record["agreement"] == agreement and record["all_int8"]["agreement"] == 0.5
