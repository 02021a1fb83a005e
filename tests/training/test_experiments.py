"""``keras-resnet-experiment`` end to end on tiny runs (8x8 digits, a few steps, seeded):
every file written, well-formed curves, valid figures, the paper's numbers in the table, and
an experiment killed midway that, rerun, skips its finished runs and resumes the other."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import shutil
import signal
import struct
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from types import SimpleNamespace

import pytest
from keras_resnet.training.experiments import figures
from keras_resnet.training.experiments.cli import experiment_main, run_experiment

pytestmark = pytest.mark.slow(seconds=70)

TINY = ["--dataset", "digits", "--steps", "24", "--batch-size", "8", "--input-size", "8",
        "--eval-examples", "16", "--log-every", "4", "--eval-every", "12", "--threads", "1",
        "--", "--mean-images", "32", "--checkpoint-every", "8"]
RUNS = ["plain20-seed0", "plain32-seed0", "resnet20-seed0", "resnet32-seed0"]
RUN_FILES = ("model.keras", "metrics.json", "log.csv", "run_config.json", "labels.json",
             "experiment_run.json")


def _png_size(path: Path) -> tuple[int, int]:
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n" and header[12:16] == b"IHDR"
    return struct.unpack(">II", header[16:24])


def _svg_size(path: Path) -> tuple[str, str]:
    root = ET.parse(path).getroot()
    assert root.tag.endswith("svg")
    return root.get("width"), root.get("height")


def _check_figure(stem: Path, size: tuple[float, float]) -> None:
    assert _png_size(stem.with_suffix(".png")) == (round(size[0] * figures.DPI),
                                                    round(size[1] * figures.DPI))
    assert _svg_size(stem.with_suffix(".svg")) == (f"{size[0] * 72:g}pt", f"{size[1] * 72:g}pt")


def _tensorboard_tags(folder: Path) -> set[str]:
    import tensorflow as tf
    from tensorflow.core.util import event_pb2

    tags = set()
    for path in folder.glob("events.out.tfevents.*"):
        for record in tf.data.TFRecordDataset(str(path)):
            event = event_pb2.Event.FromString(record.numpy())
            tags.update(v.tag for v in event.summary.value)
    return tags


def _backbone_layers(path: Path) -> list[str]:
    import keras

    import keras_resnet

    model = keras_resnet.load_model(path)
    backbone = next(layer for layer in model.layers if isinstance(layer, keras.Model))
    return [type(layer).__name__ + ":" + layer.name for layer in backbone.layers]


def _check_curves(metrics: dict) -> None:
    train, evals = metrics["history"]["train"], metrics["history"]["eval"]
    assert [p["step"] for p in train] == [4, 8, 12, 16, 20, 24]
    assert [p["step"] for p in evals] == [12, 24]
    assert all(0 <= p["train_error"] <= 1 for p in train)
    assert all(0 <= p["eval_error"] <= 1 for p in evals)
    assert evals[-1]["eval_error"] == pytest.approx(1 - metrics["eval_top1"])


def _wait(proc: subprocess.Popen, ready) -> None:
    deadline = time.monotonic() + 900  # hang guard only, generous for a loaded machine
    while time.monotonic() < deadline and proc.poll() is None:
        if ready():
            return
        time.sleep(0.01)
    raise AssertionError(f"not reached (exit {proc.poll()}): {proc.stderr.read()}")


@pytest.fixture(scope="module")
def degradation(tmp_path_factory, th_module) -> SimpleNamespace:
    """Two depths, 24 steps each: started in a subprocess, SIGKILLed once the last run has
    its first checkpoint, then rerun in this process to the end."""
    out = tmp_path_factory.mktemp("experiment") / "deg"
    argv = ["degradation", "--out", str(out), "--depths", "20", "32", *TINY]
    proc = subprocess.Popen([sys.executable, "-m", "keras_resnet.training.experiments", *argv],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env=th_module.train_env(), cwd=th_module.REPO)
    index = out / "resnet32-seed0" / "checkpoints" / "checkpoint"
    try:
        _wait(proc, lambda: index.is_file() and "ckpt-" in index.read_text())
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    finished = [(out / run / "metrics.json") for run in RUNS[:3]]
    killed = {"stamps": [f.stat().st_mtime_ns for f in finished],
              "last_done": (out / RUNS[3] / "metrics.json").exists()}
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        code = run_experiment(argv)
    return SimpleNamespace(out=out, argv=argv, code=code, printed=printed.getvalue(),
                           finished=finished, **killed)


def test_killed_midway_rerun_skips_finished_runs_and_resumes(degradation) -> None:
    assert degradation.code == 0 and not degradation.last_done
    for run in RUNS[:3]:
        assert f"[degradation] {run}: finished earlier, skipped" in degradation.printed
    assert "[degradation] run 4/4 resnet32-seed0: 3/4 done" in degradation.printed
    assert "resumed from step 8" in degradation.printed
    assert [f.stat().st_mtime_ns for f in degradation.finished] == degradation.stamps


def test_every_file_written_curves_well_formed(degradation) -> None:
    out = degradation.out
    for run in RUNS:
        assert all((out / run / name).is_file() for name in RUN_FILES), run
        _check_curves(json.loads((out / run / "metrics.json").read_text()))
    with (out / "resnet32-seed0" / "log.csv").open() as f:  # the resumed run's whole history
        rows = list(csv.DictReader(f))
    assert [r["step"] for r in rows if r["train_error"]] == ["4", "8", "12", "16", "20", "24"]
    assert [r["step"] for r in rows if r["eval_error"]] == ["12", "24"]
    tensorboard = out / "plain20-seed0" / "tensorboard"
    assert {"error", "top1"} <= _tensorboard_tags(tensorboard / "train")
    assert "error" in _tensorboard_tags(tensorboard / "eval")
    assert {p.name for p in out.iterdir() if p.is_file()} == {
        "experiment.json", "results.csv", "results.json", "results.md", "degradation.png",
        "degradation.svg"}
    _check_figure(out / "degradation", figures.CURVES_SIZE)


def test_trained_plain_net_has_no_shortcuts(degradation) -> None:
    plain, residual = (_backbone_layers(degradation.out / r / "model.keras") for r in RUNS[0:3:2])
    assert not [n for n in plain if n.startswith("Add:") or "_0_" in n]
    assert sum(n.startswith("Add:") for n in residual) == 9  # ResNet-20: 3 stages of 3 blocks
    metrics = json.loads((degradation.out / RUNS[0] / "metrics.json").read_text())
    assert metrics["architecture"]["residual"] is False and metrics["trainable_params"] == 269722


def test_results_table_holds_the_paper_numbers(degradation) -> None:
    out = degradation.out
    table = (out / "results.md").read_text()
    for published in ("| ResNet-20 | 0.27 M | 1 | 24 |", "| ResNet-20 | 8.75 | 8.27 |",
                      "| ResNet-32 | 7.51 | 7.37 |", "| plain-32 | 0.46 M | 1 | 24 |",
                      "## The paper, on CIFAR-10, for orientation", "Figure 6",
                      "![degradation.png]"):
        assert published in table
    with (out / "results.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [r["config"] for r in rows] == ["plain20", "plain32", "resnet20", "resnet32"]
    assert all(0 <= float(r["test_error_pct_mean"]) <= 100 for r in rows)
    summary = json.loads((out / "results.json").read_text())
    assert summary["paper_dataset"] is False  # digits: the paper's figures are for orientation
    assert summary["configurations"][2]["paper_test_error_pct"] is None
    digits = json.loads((out / "resnet20-seed0" / "train_split.json").read_text())
    assert digits["examples"] == 1437  # the whole training split, measured once per run
    full = summary["configurations"][2]
    assert full["train_examples"] == 1437
    assert full["train_error_pct_mean"] == pytest.approx(100 * (1 - digits["top1"]))


def test_responses_experiment_reuses_finished_runs(degradation, tmp_path: Path,
                                                   capsys) -> None:
    """Figure 7 from the nets of Figure 6: the same trainer runs, found finished."""
    out = tmp_path / "resp"
    for run in RUNS[0:3:2]:
        shutil.copytree(degradation.out / run, out / run)
    argv = ["responses", "--out", str(out), "--depths", "20", "--response-images", "40",
            *TINY]
    assert run_experiment(argv) == 0
    assert capsys.readouterr().out.count("finished earlier, skipped") == 2
    _check_figure(out / "responses", figures.RESPONSES_SIZE)
    with (out / "responses.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2 * 19 and rows[0]["layer"] == "conv1_bn"
    stds = [float(r["std"]) for r in rows[:19]]
    assert [float(r["std_sorted"]) for r in rows[:19]] == sorted(stds, reverse=True)
    assert "mean std of the 3x3 layer responses: plain-20" in (out / "results.md").read_text()


@pytest.mark.parametrize(("argv", "expected"), [
    (["degradation", "--out", "X", "--depths", "21"], "--depths 21 is not a CIFAR ResNet depth"),
    (["shortcuts", "--out", "X", "--depths", "20"], "--depths does not apply to the shortcuts"),
    (["depth", "--out", "X", "--seeds", "0"], "--seeds must be at least 1, got 0"),
    (["depth", "--out", "X", "--", "--model-dir", "Y"], "--model-dir after -- is set by"),
    (["depth", "--out", "X", "--", "--no-such"], "unrecognized arguments: --no-such"),
    (["shortcuts", "--out", "X", "--", "--shortcut", "B"], "--shortcut after -- is set by"),
    (["responses", "--out", "X", "--", "--variant", "v2"], "the responses of Figure 7 need v1"),
    (["sideways", "--out", "X"], "invalid choice: 'sideways'"),
    (["degradation", "--out", "X", "--dataset", "cifar10", "--data-dir", "NOWHERE"],
     "not available offline"),
])
def test_bad_experiment_input(tmp_path: Path, capsys, monkeypatch, argv: list[str],
                              expected: str) -> None:
    monkeypatch.chdir(tmp_path)
    assert experiment_main(argv) == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0]
    assert not (tmp_path / "X").exists()


def test_other_settings_in_the_same_folder_are_refused(tmp_path: Path, capsys) -> None:
    (tmp_path / "experiment.json").write_text(json.dumps(
        {"experiment": "depth", "settings": {"steps": 5}}))
    assert experiment_main(["shortcuts", "--out", str(tmp_path), *TINY]) == 2
    assert "holds the 'depth' experiment" in capsys.readouterr().err
    assert experiment_main(["depth", "--out", str(tmp_path), "--depths", "20", *TINY]) == 2
    assert "holds results made with other settings (" in capsys.readouterr().err


def test_seeds_repeat_every_configuration_and_report_best_mean_std() -> None:
    from keras_resnet.training.experiments import results
    from keras_resnet.training.experiments.plan import plan_runs

    plan = plan_runs("depth", depths=(20, 110), seeds=3, base_seed=5)
    assert [r.name for r in plan] == ["resnet20-seed5", "resnet110-seed5", "resnet20-seed6",
                                      "resnet110-seed6", "resnet20-seed7", "resnet110-seed7"]
    errors = {"resnet20": [9.0, 8.0, 10.0], "resnet110": [6.5, 6.9, 6.4]}
    records = [{"config": r.config, "label": r.label, "group": r.group, "model": r.model,
                "depth": r.depth, "params": 1, "train_error_pct": 1.0, "steps": 100,
                "running_train_error_pct": 2.0, "convergence": {"converged": True},
                "test_error_pct": errors[r.config][r.seed - 5]} for r in plan]
    rows = results.aggregate("depth", records)
    assert [(r["config"], r["seeds"], r["test_error_pct_best"]) for r in rows] == [
        ("resnet20", 3, 8.0), ("resnet110", 3, 6.4)]
    assert rows[0]["test_error_pct_mean"] == pytest.approx(9.0)
    assert rows[0]["test_error_pct_std"] == pytest.approx(1.0)  # n - 1, as Table 6's 6.61 +- 0.16
    assert rows[1]["paper_test_error_pct"] == 6.43 and rows[1]["reproduction_test_error_pct"] == 6.32
    assert "| ResNet-110 | 0.00 M | 3 | 100 | 1.00 | 2.00 | 6.40 | 6.60 ± 0.26 | yes | 6.43 | " \
        "6.32 |" in results.markdown_table("depth", rows)
