"""A damaged checkpoint: the trainer says so and resumes from the newest intact one, or
refuses (one ``error:`` line, exit 2, nothing written) when none is intact. A damaged image
in a folder dataset is refused before anything is written."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
from keras_resnet.training import cli

ARGS = ["--model", "resnet20", "--input-size", "8", "--batch-size", "8", "--eval-examples", "8",
        "--mean-images", "16", "--checkpoint-every", "2", "--keep-checkpoints", "5", "--seed",
        "3", "--log-every", "2"]


def _digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A four-step run with checkpoints at steps 2 and 4."""
    folder = tmp_path_factory.mktemp("ckpt") / "run"
    cli.train_from_args([*ARGS, "--steps", "4", "--model-dir", str(folder)])
    names = {p.name for p in (folder / "checkpoints").iterdir()}
    assert {"ckpt-2.index", "ckpt-4.index"} <= names
    return folder


@pytest.mark.parametrize("part", ["index", "data-00000-of-00001"])
def test_corrupt_latest_checkpoint_falls_back(run: Path, tmp_path: Path, part: str,
                                              capsys: pytest.CaptureFixture) -> None:
    import shutil

    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    _truncate(copy / "checkpoints" / f"ckpt-4.{part}")
    capsys.readouterr()
    assert cli.train_main([*ARGS, "--steps", "6", "--model-dir", str(copy)]) == 0
    out, err = capsys.readouterr()
    assert "warning: checkpoint ckpt-4 is corrupt" in err and "resuming from ckpt-2" in err
    assert "resumed from step 2" in out
    import json

    assert json.loads((copy / "metrics.json").read_text())["step"] == 6


def test_no_intact_checkpoint_is_refused(run: Path, tmp_path: Path,
                                         capsys: pytest.CaptureFixture) -> None:
    import shutil

    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    _truncate(copy / "checkpoints" / "ckpt-4.index")
    _truncate(copy / "checkpoints" / "ckpt-2.data-00000-of-00001")
    before = _digest(copy)
    capsys.readouterr()
    assert cli.train_main([*ARGS, "--steps", "6", "--model-dir", str(copy)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "no intact checkpoint to resume" in lines[0], lines
    assert "ckpt-4" in lines[0] and "ckpt-2" in lines[0]
    assert _digest(copy) == before
    assert cli.train_main([*ARGS, "--steps", "6", "--eval-only", "--model-dir", str(copy)]) == 2


def test_image_damaged_inside_is_refused_before_writing(tmp_path: Path,
                                                        capsys: pytest.CaptureFixture) -> None:
    """Intact header and end marker, damaged middle: found while the normalisation
    statistics decode the images, before the model dir exists."""
    import tensorflow as tf

    rng = np.random.default_rng(0)
    for cls in ("a", "b"):
        (tmp_path / "data" / cls).mkdir(parents=True)
        for i in range(10):
            png = tf.io.encode_png(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)).numpy()
            (tmp_path / "data" / cls / f"{i}.png").write_bytes(png)
    damaged = bytearray((tmp_path / "data" / "a" / "3.png").read_bytes())
    damaged[40:60] = b"\xff" * 20
    (tmp_path / "data" / "a" / "3.png").write_bytes(bytes(damaged))
    capsys.readouterr()
    code = cli.train_main([*ARGS, "--steps", "2", "--dataset", f"folder:{tmp_path / 'data'}",
                           "--model-dir", str(tmp_path / "out")])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(lines) == 1, lines
    assert lines[0].startswith("error: an image of folder:") and "cannot be decoded" in lines[0]
    assert not (tmp_path / "out").exists()
