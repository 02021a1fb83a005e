"""The trainer from Python: ``keras_resnet.training.train`` on a network built in code with
numpy arrays and a ``tf.data.Dataset`` (resumed exactly), on a zoo network with in-memory
0..1 images (the recorded input contract), the same run from the command line and from
Python, and one-line errors for bad settings."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

SIZE = 16
FAST = {"batch_size": 16, "seed": 0, "log_every": 2, "threads": 1, "mean_images": 64,
        "precision": "float32"}


@pytest.fixture(scope="module")
def digits() -> tuple[np.ndarray, ...]:
    """Digits at 16 px scaled to 0..1, as a notebook would hold them."""
    from keras_resnet.datasets import load_digits

    (x, y), (xt, yt) = load_digits(SIZE)
    return x[:160] / 255.0, y[:160], xt[:48] / 255.0, yt[:48]


def small_net(seed: int = 0, softmax: bool = True):
    """A small functional CNN, seeded, ending in a softmax (or logits)."""
    import keras

    keras.utils.set_random_seed(seed)
    inputs = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", use_bias=False)(inputs)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    out = keras.layers.Dense(10, activation="softmax" if softmax else None)(x)
    return keras.Model(inputs, out)


def _truncate(src: Path, dst: Path, step: int) -> None:
    """A copy of the finished run ``src`` as if it had been stopped after ``step``."""
    shutil.copytree(src, dst)
    for path in (dst / "checkpoints").glob("ckpt-*"):
        if int(path.name.split(".")[0].split("-")[1]) > step:
            path.unlink()
    for name in ("model.keras", "metrics.json"):
        (dst / name).unlink()


def test_network_built_in_code_trains_and_resumes_exactly(tmp_path: Path, digits) -> None:
    import keras_resnet.training as kt
    import tensorflow as tf

    x, y, xt, yt = digits
    settings = {**FAST, "steps": 6, "checkpoint_every": 3, "learning_rate": 0.05}
    whole = kt.train(small_net(), (x, y), tmp_path / "whole", validation=(xt, yt), **settings)
    assert whole.metrics["step"] == 6 and whole.metrics["eval_examples"] == 48
    assert whole.metrics["train_examples"] == 160
    assert [row["step"] for row in whole.history if row["train_loss"] is not None] == [2, 4, 6]
    labels = json.loads((tmp_path / "whole" / "labels.json").read_text())
    assert (labels["input_range"], labels["mean"], labels["std"], labels["output"]) == (
        [0.0, 1.0], None, None, "softmax")
    recorded = json.loads((tmp_path / "whole" / "run_config.json").read_text())["config"]
    assert recorded["input_range"] == [0.0, 1.0] and recorded["learning_rate"] == 0.05
    assert recorded["network"]["output"] == "softmax"
    assert (tmp_path / "whole" / "network.json").is_file()

    # Stopped after step 3, resumed from a tf.data.Dataset of the same images (batched):
    # the same data, so the same run, and the very weights of the uninterrupted one.
    _truncate(tmp_path / "whole", tmp_path / "resumed", 3)
    data = tf.data.Dataset.from_tensor_slices((x, y)).batch(50)
    resumed = kt.train(small_net(seed=1), data, tmp_path / "resumed", validation=(xt, yt),
                       **settings)
    for a, b in zip(resumed.model.get_weights(), whole.model.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert resumed.metrics["eval_top1"] == pytest.approx(whole.metrics["eval_top1"], abs=1e-6)
    # The saved network takes the arrays' own range and gives the metrics' accuracy.
    import keras

    saved = keras.saving.load_model(tmp_path / "resumed" / "model.keras", safe_mode=True)
    top1 = float(np.mean(np.argmax(saved.predict(xt, verbose=0), -1) == yt))
    assert top1 == pytest.approx(resumed.metrics["eval_top1"], abs=1e-6)
    # keras-resnet-eval's mirror feeds it digits' pixels 0..255 in the recorded range 0..1
    # (the same 48 test images; float rounding may flip at most one near-tie).
    measured = kt.evaluate(tmp_path / "resumed", "digits", eval_examples=48)
    assert measured["examples"] == 48
    assert measured["top1"] == pytest.approx(top1, abs=1 / 48 + 1e-9)

    with pytest.raises(kt.UsageError, match="holds a different run.*network"):
        kt.train(small_net(softmax=False), (x, y), tmp_path / "whole", validation=(xt, yt),
                 **settings)


def test_zoo_network_on_arrays_records_their_range(tmp_path: Path, digits) -> None:
    """A zoo network trained on 0..1 arrays is saved taking 0..1 (a layer in front maps
    them to the pixels 0..255 it normalises), and labels.json says so."""
    import keras
    import keras_resnet.training as kt

    x, y, xt, yt = digits
    result = kt.train("resnet20", (x, y), tmp_path / "zoo", validation=(xt, yt), steps=2,
                      **FAST)
    labels = json.loads((tmp_path / "zoo" / "labels.json").read_text())
    assert labels["input_range"] == [0.0, 1.0] and labels["output"] == "softmax"
    assert "0..1 NHWC 16x16" in labels["preprocessing"]
    saved = keras.saving.load_model(tmp_path / "zoo" / "model.keras", safe_mode=True)
    top1 = float(np.mean(np.argmax(saved.predict(xt, verbose=0), -1) == yt))
    assert top1 == pytest.approx(result.metrics["eval_top1"], abs=1e-6)


def test_command_line_and_python_give_the_same_run(tmp_path: Path) -> None:
    import keras
    import keras_resnet.training as kt
    from keras_resnet.training.cli import train_main

    flags = ["--input-size", "16", "--batch-size", "16", "--steps", "2", "--seed", "0",
             "--log-every", "1", "--eval-examples", "32", "--mean-images", "64",
             "--learning-rate", "0.05", "--threads", "1", "--precision", "float32"]
    assert train_main(["--model", "resnet20", "--dataset", "digits", "--model-dir",
                       str(tmp_path / "cli"), *flags]) == 0
    result = kt.train("resnet20", "digits", tmp_path / "py", input_size=16, batch_size=16,
                      steps=2, seed=0, log_every=1, eval_examples=32, mean_images=64,
                      learning_rate=0.05, threads=1, precision="float32")
    cli_run = json.loads((tmp_path / "cli" / "run_config.json").read_text())
    py_run = json.loads((tmp_path / "py" / "run_config.json").read_text())
    assert cli_run["identity"] == py_run["identity"]
    cli_metrics = json.loads((tmp_path / "cli" / "metrics.json").read_text())
    for key in ("eval_top1", "eval_loss", "train_loss", "eval_examples", "step"):
        assert cli_metrics[key] == pytest.approx(result.metrics[key], rel=1e-6), key
    a = keras.saving.load_model(tmp_path / "cli" / "model.keras", safe_mode=True)
    b = keras.saving.load_model(tmp_path / "py" / "model.keras", safe_mode=True)
    for wa, wb in zip(a.get_weights(), b.get_weights(), strict=True):
        np.testing.assert_allclose(wa, wb, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(("call", "message"), [
    (lambda kt, d, p: kt.train("resnet20", "digits", p, stepz=3), "unknown setting 'stepz'"),
    (lambda kt, d, p: kt.train("resnet20", "digits", p, steps="3"), "steps='3' must be an int"),
    (lambda kt, d, p: kt.train("resnet20", "digits", p, precision="fp8"), "one of auto"),
    (lambda kt, d, p: kt.train("resnet20", "digits", p, steps=0), "--steps must be positive"),
    (lambda kt, d, p: kt.train("resnet21", "digits", p), "unknown model 'resnet21'"),
    (lambda kt, d, p: kt.train(3, "digits", p), "zoo name .* or a keras.Model"),
    (lambda kt, d, p: kt.train("resnet20", "digitz", p), "unknown dataset 'digitz'"),
    (lambda kt, d, p: kt.train("resnet20", "digits", p, input_range=(0, 1)), "in-memory"),
    (lambda kt, d, p: kt.train("resnet20", (d[0], d[1]), p, input_range=(0, 2)),
     r"input_range must be \(0, 1\) or \(0, 255\)"),
    (lambda kt, d, p: kt.train("resnet20", (d[0] * 300, d[1]), p), "state input_range"),
    (lambda kt, d, p: kt.train("resnet20", (d[0][..., 0], d[1]), p), "square RGB"),
    (lambda kt, d, p: kt.train("resnet20", (d[0], d[1] + 0.5), p), "labels must be integers"),
    (lambda kt, d, p: kt.train(small_net(), (d[0], d[1]), p, weights="imagenet"),
     "weights= applies to zoo networks"),
])
def test_bad_settings_are_one_line_usage_errors(tmp_path: Path, digits, no_heavy_work, call,
                                                message) -> None:
    import keras_resnet.training as kt

    with pytest.raises(kt.UsageError, match=message) as caught:
        call(kt, digits, tmp_path / "run")
    assert "\n" not in str(caught.value)
    assert not (tmp_path / "run").exists()


def test_model_dirs_of_earlier_versions_still_resume(tmp_path: Path) -> None:
    """A run_config.json written before the names were unified (``base_learning_rate``)
    is the same run; another rate is refused."""
    from keras_resnet.training import cli
    from keras_resnet.training.checkpoints import check_model_dir
    from keras_resnet.training.errors import UsageError

    args = cli.build_train_parser().parse_args(["--model", "resnet20", "--model-dir",
                                                str(tmp_path)])
    identity = cli.config_from_args(args, "cifar").identity()
    old = {("base_learning_rate" if k == "learning_rate" else k): v for k, v in identity.items()
           if k not in ("network", "input_range", "mean", "std")}
    (tmp_path / "run_config.json").write_text(json.dumps({"identity": old}))
    (tmp_path / "model.keras").write_text("")
    assert check_model_dir(tmp_path, identity) is False  # the same run, nothing to resume
    with pytest.raises(UsageError, match="learning_rate: 0.1 there, 0.2 now"):
        check_model_dir(tmp_path, {**identity, "learning_rate": 0.2})
