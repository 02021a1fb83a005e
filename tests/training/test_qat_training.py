"""Quantization-aware training in the trainer: ``--qat int8`` from a float run's model dir
with ``--freeze`` (observers frozen at their step, frozen layers unchanged, model.keras the
quantization-aware network that keras-resnet-eval measures), an exact resume across the
freeze step, and one-line errors for bad combinations."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from keras_resnet.training import cli

SMALL = ["--model", "resnet20", "--input-size", "16", "--batch-size", "16", "--threads", "1",
         "--mean-images", "64", "--eval-examples", "32", "--log-every", "2"]
#: The float run: ResNet-8 (the QAT run inherits its depth from the run dir).
FLOAT = ["--depth", "8", "--steps", "4", "--seed", "0", "--precision", "float32"]
#: 6 steps, checkpoints every 2, ranges observed for the first 3 steps.
QAT = ["--qat", "int8", "--steps", "6", "--checkpoint-every", "2", "--seed", "1",
       "--qat-observe-fraction", "0.5", "--freeze", "stage1"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> tuple[Path, Path]:
    """A float ResNet-8 run (4 steps), then a QAT run of it from the command line's parser
    (no --depth: the network is the run dir's)."""
    root = tmp_path_factory.mktemp("qat")
    assert cli.run_train([*SMALL, *FLOAT, "--model-dir", str(root / "float")]) == 0
    assert cli.run_train([*SMALL, *QAT, "--weights", str(root / "float"),
                          "--model-dir", str(root / "qat")]) == 0
    return root / "float", root / "qat"


def _weights(model_dir: Path) -> dict[str, np.ndarray]:
    import keras_resnet

    model = keras_resnet.load_model(model_dir / "model.keras")  # safe_mode=True
    return {w.path: np.asarray(w) for w in model.weights}


def test_qat_run_saves_the_quantization_aware_network_and_eval_measures_it(runs) -> None:
    import keras_resnet
    from keras_resnet.quantization import is_quantized, qat_scheme_of, quantizers

    float_dir, qat_dir = runs
    config = json.loads((qat_dir / "run_config.json").read_text())["config"]
    assert (config["qat"], config["qat_scheme"], config["recipe"]) == ("int8", "u8s8-7bit", "qat")
    assert (config["qat_observe_fraction"], config["input_size"]) == (0.5, 16)
    model = keras_resnet.load_model(qat_dir / "model.keras")
    assert is_quantized(model) and qat_scheme_of(model) == "u8s8-7bit"
    # Observed during steps 1..3 exactly, frozen from then on.
    assert {(float(q.seen), float(q.observing)) for q in quantizers(model)} == {(3.0, 0.0)}
    probs = model.predict(np.full((2, 16, 16, 3), 128.0, np.float32), verbose=0)
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-5)  # the float32 softmax output
    # Frozen stage 1 keeps the float run's kernels; the rest was trained.
    before, after = _weights(float_dir), _weights(qat_dir)
    assert config["architecture"]["depth"] == 8
    for path, changed in (("conv2_block1_1_conv/kernel", False),
                          ("conv4_block1_1_conv/kernel", True), ("predictions/kernel", True)):
        old = next(v for k, v in before.items() if k.endswith(path))
        new = next(v for k, v in after.items() if k.endswith(path))
        assert (not np.array_equal(old, new)) == changed, path
    # keras-resnet-eval loads that network and finds the run's own accuracy.
    measured = cli.evaluate_from_args(["--model-dir", str(qat_dir), "--eval-examples", "32"])
    recorded = json.loads((qat_dir / "metrics.json").read_text())
    assert measured["examples"] == 32 and recorded["qat"] == "int8"
    assert measured["top1"] == pytest.approx(recorded["eval_top1"], abs=1 / 32 + 1e-9)


def test_qat_resumed_before_the_freeze_step_ends_as_the_uninterrupted_run(runs, tmp_path) -> None:
    import keras_resnet.training as kt

    float_dir, qat_dir = runs
    resumed = tmp_path / "resumed"
    shutil.copytree(qat_dir, resumed)
    for path in (resumed / "checkpoints").glob("ckpt-*"):
        if int(path.name.split(".")[0].split("-")[1]) > 2:
            path.unlink()
    for name in ("model.keras", "metrics.json"):
        (resumed / name).unlink()
    settings = {"input_size": 16, "batch_size": 16, "threads": 1, "mean_images": 64,
                "eval_examples": 32, "log_every": 2, "qat": "int8", "steps": 6,
                "checkpoint_every": 2, "seed": 1, "qat_observe_fraction": 0.5,
                "freeze": "stage1", "weights": str(float_dir)}
    result = kt.train("resnet20", "digits", resumed, **settings)
    assert result.metrics["step"] == 6
    whole, again = _weights(qat_dir), _weights(resumed)
    assert whole.keys() == again.keys()
    for path, value in whole.items():
        np.testing.assert_allclose(again[path], value, rtol=1e-5, atol=1e-6, err_msg=path)


def _fails(capsys, argv: list[str], expected: str) -> str:
    code = cli.train_main(argv)
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), lines
    assert expected in lines[0], lines[0]
    return lines[0]


def test_bad_qat_combinations_get_one_line(runs, tmp_path, capsys, no_heavy_work) -> None:
    float_dir, qat_dir = runs
    base = [*SMALL, "--steps", "2", "--model-dir", str(tmp_path / "run")]
    weights = ["--weights", str(float_dir)]
    line = _fails(capsys, [*base, "--qat", "fp16", *weights], "argument --qat: invalid choice")
    assert "'fp16'" in line and "int8" in line
    _fails(capsys, [*base, "--qat", "int8", "--qat-scheme", "u4", *weights],
           "argument --qat-scheme: invalid choice")
    _fails(capsys, [*base, "--qat", "int8"], "--qat fine-tunes a trained network: give --weights")
    _fails(capsys, [*base, "--qat", "int8", "--precision", "mixed_bfloat16", *weights],
           "--qat simulates int8 in float32: --precision mixed_bfloat16")
    _fails(capsys, [*base, "--qat", "int8", "--batch-norm", "fused", *weights],
           "--batch-norm fused does not apply")
    _fails(capsys, [*base, "--qat-scheme", "u8s8", *weights], "add --qat int8")
    _fails(capsys, [*base, "--qat", "int8", "--qat-observe-fraction", "0", *weights],
           "--qat-observe-fraction must be in (0, 1]")
    _fails(capsys, [*base, "--recipe", "qat", *weights], "recipe 'qat' is for quantization-aware")
    _fails(capsys, [*base, "--weights", str(qat_dir)], "is a quantization-aware (--qat) run")
    # A float run resumed as a QAT one (and the other way round) is another run.
    _fails(capsys, [*SMALL, *FLOAT[2:-2], "--model-dir", str(float_dir), "--qat", "int8",
                    *weights], "holds a different run (qat: None there, 'int8'")
    _fails(capsys, [*SMALL, "--steps", "6", "--seed", "1", "--freeze", "stage1", "--model-dir",
                    str(qat_dir), *weights],
           "holds a different run (qat: 'int8' there, None now")
    import keras_resnet.training as kt

    with pytest.raises(kt.UsageError, match="qat='fp16' must be one of int8"):
        kt.train("resnet20", "digits", tmp_path / "api", qat="fp16", weights=str(float_dir))
    assert not (tmp_path / "run").exists() and not (tmp_path / "api").exists()


def test_observer_freeze_ends_a_loop_at_its_step_and_fires_once() -> None:
    from keras_resnet.training.controller import Action, Controller, Every
    from keras_resnet.training.qat import freeze_step

    class Steps:
        def __init__(self) -> None:
            self.loops: list[int] = []

        def train_steps(self, num_steps, stop_requested) -> bool:
            self.loops.append(num_steps)
            return False

    fired: list[int] = []

    class At(Action):
        at = freeze_step(0.3, 20)

        def due(self, state) -> bool:
            return state.step == self.at

        def __call__(self, state) -> None:
            fired.append(state.step)

    trainer = Steps()
    Controller(trainer, [At(), Every(5, lambda s: None)], start_step=0, total_steps=20).run()
    assert fired == [6] and trainer.loops == [2, 3, 1, 4, 5, 5]  # 2: the warm-up steps
    assert (freeze_step(0.01, 20), freeze_step(1.0, 20)) == (1, 20)


@pytest.fixture(scope="module")
def trained_qat_run(tmp_path_factory) -> Path:
    """A float ResNet-8 trained to well above chance (250 steps of 64 at 16 px, no flips:
    these are digits), then 30 QAT steps of it: a network whose top-1 margins mean
    something (a barely trained one has many near-ties, which any rounding flips)."""
    root = tmp_path_factory.mktemp("qat-trained")
    small = [a for a in SMALL if a not in ("--eval-examples", "32")]
    assert cli.run_train([*small, "--depth", "8", "--steps", "250", "--batch-size", "64",
                          "--seed", "0", "--precision", "float32", "--no-flip",
                          "--model-dir", str(root / "float")]) == 0
    assert cli.run_train([*small, "--qat", "int8", "--steps", "30", "--batch-size", "64",
                          "--seed", "0", "--no-flip", "--weights", str(root / "float"),
                          "--model-dir", str(root / "qat")]) == 0
    return root / "qat"


def test_export_of_a_qat_run_needs_no_calibration_and_agrees_with_it(trained_qat_run,
                                                                    tmp_path) -> None:
    """The run's model.keras through keras-resnet-export's command line: int8 TFLite and
    ONNX from the learned ranges (no --calibration), each agreeing with the QAT network on
    at least 99.5 % of the 360 test digits, which the export checks and the manifest
    records."""
    from keras_resnet.export.cli import export_main
    from keras_resnet.export.onnx_export import OnnxRunner
    from keras_resnet.export.samples import load_samples
    from keras_resnet.export.tflite import TFLiteRunner

    import keras_resnet

    qat_dir = trained_qat_run
    assert json.loads((qat_dir / "metrics.json").read_text())["eval_top1"] > 0.9
    out = tmp_path / "files"
    assert export_main([str(qat_dir / "model.keras"), "-o", str(out), "--formats",
                        "tflite,onnx", "--quantize", "int8", "--data", "digits"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["options"]["calibration"] is None
    int8 = [a for a in manifest["artifacts"] if a["precision"] == "int8"]
    assert {a["format"] for a in int8} == {"tflite", "onnx"}
    assert all(a["int8"]["source"] == "qat" and a["parity"]["top1_agreement"] >= 0.995
               for a in int8)
    # Our own look: the files against the QAT network, on raw pixels as the contract says.
    x, _ = load_samples("digits", "test", 360, (16, 16), 0)
    reference = keras_resnet.load_model(qat_dir / "model.keras").predict(x, verbose=0)
    for runner in (TFLiteRunner(out / "model_int8.tflite", 1), OnnxRunner(out / "model_int8.onnx", 1)):
        got = np.concatenate([runner(x[i:i + 1]) for i in range(len(x))])
        assert np.mean(got.argmax(1) == reference.argmax(1)) >= 0.995
