"""Export from Python: a ResNet built in code and trained with ``model.fit`` on 0..1 inputs,
exported from memory; its input contract stated, refused when unknown; a model at chance
flagged; in-memory data and bad arguments."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from keras_resnet.export import UsageError, VerificationFailed, export_model, verify_dir
from keras_resnet.export.cli import export_main
from keras_resnet.training.data import load_digits_arrays

SIZE = 16


@pytest.fixture(scope="module")
def notebook() -> dict:
    """ResNet-8 built in code, trained with ``fit`` on digits scaled to 0..1 (no Rescaling
    layer: nothing in the model records its input range)."""
    import keras

    import keras_resnet

    keras.utils.set_random_seed(0)
    x, y, x_test, y_test = load_digits_arrays(SIZE)
    x, x_test = x / 255.0, x_test / 255.0
    model = keras_resnet.build_resnet(8, family="cifar", input_shape=(SIZE, SIZE, 3),
                                      classes=10)
    model.compile(optimizer=keras.optimizers.Adam(3e-3),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y, batch_size=32, epochs=6, verbose=0)
    accuracy = float(model.evaluate(x_test, y_test, verbose=0)[1])
    assert accuracy > 0.9, f"the notebook model did not learn digits ({accuracy:.3f})"
    return {"model": model, "x": x.astype(np.float32), "y": y, "x_test": x_test,
            "y_test": y_test, "accuracy": accuracy}


@pytest.fixture(scope="module")
def exported(notebook: dict, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("code") / "digits"
    manifest = export_model(notebook["model"], out, formats="tflite,onnx", quantize="int8",
                            calibration=notebook["x"][:200],
                            data=(notebook["x_test"], notebook["y_test"]),
                            input_range=(0, 1))
    return out, manifest


def test_notebook_flow_int8_within_a_point_of_keras(notebook: dict, exported) -> None:
    out, manifest = exported
    evaluation = manifest["evaluation"]
    assert manifest["status"] == "passed" and manifest["sanity"]["passed"]
    assert evaluation["samples"] == 360 and evaluation["keras_top1_samples"] == 360
    assert evaluation["keras_top1"] == pytest.approx(notebook["accuracy"], abs=1e-6)
    int8 = [a for a in manifest["artifacts"] if a["precision"] == "int8"]
    assert {a["format"] for a in int8} == {"tflite", "onnx"}
    for artifact in int8:
        assert artifact["parity"]["test_samples"] == 360
        assert abs(artifact["parity"]["test_top1"] - evaluation["keras_top1"]) <= 0.01
    contract = manifest["input"]["contract"]
    assert contract["range"] == [0, 1] and contract["read_from"] == "stated by the user"
    float32 = next(a for a in manifest["artifacts"] if a["path"] == "model.onnx")
    assert float32["parity"]["judged_on"].startswith("logits: the file's pre-softmax")
    assert float32["parity"]["rel_logit_diff"] <= 1e-4
    assert verify_dir(out)["passed"]
    assert (out / "model.keras").is_file()  # the in-memory model, saved


def test_onnx_metadata_carries_the_input_contract(exported) -> None:
    import onnx

    out, _ = exported
    props = {p.key: p.value for p in onnx.load(str(out / "model.onnx")).metadata_props}
    assert json.loads(props["input_contract"])["range"] == [0, 1]


def test_a_saved_model_without_a_stated_range_is_refused(notebook: dict, tmp_path: Path,
                                                          capsys) -> None:
    path = tmp_path / "model.keras"
    notebook["model"].save(path)
    with pytest.raises(UsageError, match=r"input range of model .* is unknown.*--input-range"):
        export_model(str(path), tmp_path / "out", quantize="int8", calibration="digits")
    assert export_main([str(path), "-o", str(tmp_path / "out"), "--quantize", "int8",
                        "--calibration", "digits"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: the input range") and "\n" not in err
    assert not (tmp_path / "out").exists()


def test_a_model_fed_the_wrong_range_is_flagged_at_chance(notebook: dict,
                                                          tmp_path: Path) -> None:
    """The 0..1 model told it takes 0..255 predicts one class: not "ok"."""
    out = tmp_path / "wrong"
    with pytest.raises(VerificationFailed, match="sanity check failed"):
        export_model(notebook["model"], out, formats=["onnx"], calibration="digits",
                     input_range="0,255")
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "failed" and not manifest["sanity"]["passed"]
    assert "answers only" in manifest["sanity"]["problems"][-1]
    assert manifest["evaluation"]["keras_top1"] < 0.5
    assert manifest["evaluation"]["samples"] == 360  # digits: the whole test split


def test_a_random_model_is_flagged_at_chance(tmp_path: Path) -> None:
    """A network built in code and never trained scores at chance on digits: failed."""
    import keras

    import keras_resnet

    keras.utils.set_random_seed(3)
    model = keras_resnet.build_resnet(8, family="cifar", input_shape=(SIZE, SIZE, 3),
                                      classes=10)
    with pytest.raises(VerificationFailed, match="sanity check failed"):
        export_model(model, tmp_path / "o", formats="onnx", data="digits", input_range="0,1")
    manifest = json.loads((tmp_path / "o" / "manifest.json").read_text())
    assert manifest["evaluation"]["keras_top1"] < 0.15
    assert any("chance level" in p for p in manifest["sanity"]["problems"])


def test_cli_npy_calibration_and_npz_data(notebook: dict, tmp_path: Path) -> None:
    np.save(tmp_path / "calib.npy", notebook["x"][:64])
    np.savez(tmp_path / "test.npz", x=notebook["x_test"][:100], y=notebook["y_test"][:100])
    path = tmp_path / "m" / "model.keras"
    path.parent.mkdir()
    notebook["model"].save(path)
    out = tmp_path / "out"
    assert export_main([str(path), "-o", str(out), "--formats", "onnx", "--quantize", "int8",
                        "--calibration", str(tmp_path / "calib.npy"), "--data",
                        str(tmp_path / "test.npz"), "--input-range", "0,1"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["options"]["calibration"] == f"file:{tmp_path / 'calib.npy'}"
    assert manifest["evaluation"]["keras_top1_samples"] == 100
    assert manifest["evaluation"]["keras_top1"] > 0.85


BAD_ARGUMENTS = [
    ({"model": 3}, "model must be a keras.Model"),
    ({"quantize": "int9"}, "unknown quantize mode 'int9'"),
    ({"quantize": 8}, "quantize must be a comma list"),
    ({"calibration": 5}, "calibration must be a source name"),
    ({"calibration": np.zeros((0, SIZE, SIZE, 3))}, "calibration has no images"),
    ({"calibration": np.zeros((4, SIZE, SIZE))}, "must be 4-D"),
    ({"calibration": np.full((4, SIZE, SIZE, 3), np.nan)}, "NaN or infinite"),
    ({"calibration": np.zeros((4, SIZE, SIZE, 3), bool)}, "must be numbers"),
    ({"calibration": np.zeros((4, 8, 8, 3))}, r"shape \[8, 8, 3\] per image"),
    ({"calibration": np.full((4, SIZE, SIZE, 3), 200.0)}, "reach 200 but the model's input"),
    ({"data": (np.zeros((4, SIZE, SIZE, 3)), np.zeros(3))}, "one integer per image"),
    ({"input_range": (0, 2)}, "input_range .* must be 0,1 or 0,255"),
    ({"std": [1, 0, 1], "input_range": (0, 1)}, "std .* above 0"),
    ({"samples": True}, "samples must be int"),
    ({"int9": True}, "unknown export option"),
    ({"int8": "yes"}, "int8= must be True or False"),
]


@pytest.mark.parametrize(("change", "message"), BAD_ARGUMENTS,
                         ids=[m.split()[0] + str(i) for i, (_, m) in enumerate(BAD_ARGUMENTS)])
def test_bad_arguments_are_one_line_usage_errors(notebook: dict, tmp_path: Path,
                                                 change: dict, message: str) -> None:
    kwargs = {"model": notebook["model"], "formats": "onnx", "int8": True,
              "calibration": notebook["x"][:16], "input_range": (0, 1), **change}
    model = kwargs.pop("model")
    with pytest.raises(UsageError, match=message) as caught:
        export_model(model, tmp_path / "out", **kwargs)
    assert "\n" not in str(caught.value)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(("argv", "message"), [
    (["--input-range", "0,2"], "must be 0,1 or 0,255"),
    (["--seed", "-1"], "seed (--seed) must be at least 0"),
    (["--calibration", "missing.npy"], "calibration file missing.npy not found"),
    (["--mean", "1,2"], "mean (--mean) must be one or three"),
])
def test_bad_cli_arguments_exit_2(tmp_path: Path, capsys, argv: list, message: str) -> None:
    code = export_main(["resnet20", "--input-size", "32", "-o", str(tmp_path / "o"),
                        "--quantize", "int8", *(["--calibration", "synthetic"]
                                                if "--calibration" not in argv else []), *argv])
    err = capsys.readouterr().err.strip()
    assert code == 2 and message in err and "\n" not in err



def test_datasets_and_batches_become_images_and_labels() -> None:
    """A tf.data.Dataset (batched or not, with or without labels) and an iterable of
    batches give the same arrays, cut at the limit."""
    import tensorflow as tf
    from keras_resnet.export.samples import as_samples

    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (10, 4, 4, 3)).astype(np.float32)
    y = np.arange(10) % 3
    pairs = tf.data.Dataset.from_tensor_slices((x, y))
    for given in (pairs, pairs.batch(3), [(x[:5], y[:5]), (x[5:], y[5:])]):
        got = as_samples(given, "data", limit=7)
        np.testing.assert_array_equal(got.images, x[:7])
        np.testing.assert_array_equal(got.labels, y[:7])
    images = as_samples(tf.data.Dataset.from_tensor_slices(x).batch(4), "calibration", 100)
    np.testing.assert_array_equal(images.images, x)
    assert images.labels is None
    with pytest.raises(UsageError, match="yielded no images"):
        as_samples(pairs.take(0), "data", 5)
