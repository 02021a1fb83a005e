"""Bad input: one ``error: ...`` line, exit code 2, no traceback, nothing overwritten, and no
model built or dataset loaded first."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from keras_resnet.training import cli, trainer


def _fails(capsys: pytest.CaptureFixture, argv: list[str], expected: str,
           main=cli.train_main) -> str:
    code = main(argv)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert expected in lines[0]
    return lines[0]


def _base(tmp_path: Path) -> list[str]:
    return ["--model", "resnet20", "--steps", "2", "--batch-size", "4", "--input-size", "16",
            "--model-dir", str(tmp_path / "run")]


@pytest.mark.parametrize(("change", "expected"), [
    (["--model", "resnet9"], "unknown model 'resnet9'"),
    (["--dataset", "mnist_in_a_hat"], "unknown dataset 'mnist_in_a_hat'"),
    (["--recipe", "fast"], "unknown recipe 'fast'"),
    (["--strategy", "sideways"], "invalid choice: 'sideways'"),
    (["--precision", "float8"], "invalid choice: 'float8'"),
    (["--epochs", "1"], "give --steps or --epochs, not both"),
    (["--batch-size", "0"], "--batch-size must be positive"),
    (["--dataset", "folder:/nonexistent/images"], "does not exist"),
    (["--no-such-flag"], "unrecognized arguments: --no-such-flag"),
])
def test_bad_flags(tmp_path: Path, capsys, no_heavy_work, change: list[str], expected: str) -> None:
    _fails(capsys, _base(tmp_path) + change, expected)
    assert not (tmp_path / "run").exists()


def test_datasets_not_available_offline(tmp_path: Path, capsys, no_heavy_work) -> None:
    empty = str(tmp_path / "tfds")
    line = _fails(capsys, _base(tmp_path) + ["--dataset", "cifar10", "--data-dir", empty],
                  "dataset 'cifar10' is not available offline")
    assert "--download" in line and "--data-dir" in line
    line = _fails(capsys, _base(tmp_path) + ["--dataset", "imagenet2012", "--data-dir", empty],
                  "needs a manual download")
    assert str(Path(empty) / "downloads" / "manual") in line
    _fails(capsys, _base(tmp_path) + ["--dataset", "tfds:no_such_set_xyz", "--data-dir", empty],
           "unknown tensorflow-datasets set 'no_such_set_xyz'")


@pytest.mark.parametrize(("tf_config", "expected"), [
    ("{not json", "invalid TF_CONFIG: not JSON"),
    (json.dumps({"task": {"type": "worker", "index": 0}}), "needs a 'cluster' object"),
    (json.dumps({"cluster": {"worker": ["127.0.0.1:1"]}}), "needs a 'task' object"),
    (json.dumps({"cluster": {"worker": ["127.0.0.1:1", "127.0.0.1:2"]},
                 "task": {"type": "worker", "index": 2}}), "task index 2 out of range"),
    (json.dumps({"cluster": {"worker": ["localhost"]}, "task": {"type": "worker", "index": 0}}),
     "is not host:port"),
    (json.dumps({"cluster": {"ps": ["127.0.0.1:1"]}, "task": {"type": "ps", "index": 0}}),
     "job 'ps' is not supported"),
])
def test_invalid_tf_config(tmp_path: Path, capsys, no_heavy_work, monkeypatch, tf_config: str,
                           expected: str) -> None:
    monkeypatch.setenv("TF_CONFIG", tf_config)
    _fails(capsys, _base(tmp_path), expected)


def test_batch_not_divisible_by_replicas(tmp_path: Path, capsys, no_heavy_work,
                                         monkeypatch) -> None:
    monkeypatch.setenv("TF_CONFIG", json.dumps({
        "cluster": {"worker": ["127.0.0.1:1", "127.0.0.1:2"]},
        "task": {"type": "worker", "index": 0}}))
    argv = [a if a != "4" else "3" for a in _base(tmp_path)]
    _fails(capsys, argv, "--batch-size 3 is not divisible by the 2 replicas of the "
                         "multi_worker strategy")


def _digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_model_dir_of_a_different_run(tmp_path: Path, capsys, th, monkeypatch) -> None:
    run = tmp_path / "run"
    done = th.run_cli([*th.TINY, "--steps", "2", "--model-dir", str(run)])
    assert done.returncode == 0, done.stderr
    before = _digest(run)
    assert "model.keras" in before and "checkpoints/ckpt-2.index" in before
    monkeypatch.setattr(trainer, "build_model", lambda *a, **k: pytest.fail("model built"))
    base = [*th.TINY, "--steps", "2", "--model-dir", str(run)]
    _fails(capsys, [*base, "--model", "resnet32"],
           "holds a different run (model: 'resnet20' there, 'resnet32' now)")
    _fails(capsys, [*base, "--batch-size", "16"],
           "holds a different run (batch_size: 32 there, 16 now)")
    _fails(capsys, [*base, "--recipe", "modern"], "holds a different run (recipe:")
    assert _digest(run) == before
    # Checkpoints that keras-resnet-train did not write are not touched either.
    foreign = tmp_path / "foreign"
    (foreign / "checkpoints").mkdir(parents=True)
    (foreign / "checkpoints" / "checkpoint").write_text('model_checkpoint_path: "ckpt-1"\n')
    _fails(capsys, [*th.TINY, "--steps", "2", "--model-dir", str(foreign)],
           "not written by keras-resnet-train")
    assert _digest(foreign) == {"checkpoints/checkpoint": hashlib.sha256(
        b'model_checkpoint_path: "ckpt-1"\n').hexdigest()}


def test_console_script_path_has_no_traceback(tmp_path: Path, th) -> None:
    done = th.run_cli(["--model", "resnet9", "--model-dir", str(tmp_path / "x")])
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    # The only line: TensorFlow's start-up chatter is kept off stderr.
    assert done.stderr.strip().splitlines() == [
        "error: unknown model 'resnet9'; see keras_resnet.list_models() (e.g. resnet18, "
        "resnet34, resnet50, resnet101, ...)"]


def test_eval_errors(tmp_path: Path, capsys) -> None:
    _fails(capsys, ["--model-dir", str(tmp_path)], "no model at", main=cli.eval_main)
    _fails(capsys, [], "give --model-dir or --model-file", main=cli.eval_main)


def test_eval_only_without_checkpoint(tmp_path: Path, capsys, no_heavy_work) -> None:
    _fails(capsys, _base(tmp_path) + ["--eval-only"], "--eval-only: no checkpoint")
