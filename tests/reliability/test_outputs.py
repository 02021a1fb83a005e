"""Nothing is lost when commands meet on one directory: the output lock (held by a real
second process), the export's final check of its destination, links filled in place, and
``--force`` kept away from training runs and inputs at any depth. The concurrency case runs
four real processes at once on one directory."""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from keras_resnet.export.cli import export_main
from keras_resnet.training.cli import train_main

EX = ["--formats", "onnx", "--samples", "8"]
TRAIN = ["--model", "resnet20", "--input-size", "8", "--batch-size", "8", "--mean-images", "16",
         "--steps", "2"]
ROOT = Path(__file__).resolve().parents[2]


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    return env


def _leftovers(folder: Path) -> list[str]:
    """Hidden staging folders, moved-aside outputs and lock files in ``folder``."""
    return sorted(p.name for p in folder.iterdir()
                  if p.name.startswith(".") and (".partial-" in p.name or ".old-" in p.name
                                                 or p.name.endswith(".lock")))


@pytest.fixture(scope="module")
def places(sandbox: SimpleNamespace) -> SimpleNamespace:
    """A training run two levels down (``nest/a/b``), and a folder holding one."""
    nest = sandbox.root / "nest"
    shutil.copytree(sandbox.run, nest / "a" / "b")
    (nest / "a" / "notes.txt").write_text("not a run")
    return SimpleNamespace(**vars(sandbox), nest=nest)


FORCE_CASES = [
    ("inside-run", ["{tiny}", "-o", "{run}/checkpoints", "--force"], "lies inside the training run"),
    ("grandparent-of-run", ["{tiny}", "-o", "{nest}", "--force"], "holds the training run"),
    ("parent-of-run", ["{tiny}", "-o", "{nest}/a", "--force"], "holds the training run"),
    ("inside-data", ["{tiny}", "-o", "{images}/good/a", "--force", "--data",
                     "folder:{images}/good"], "inside"),
]


@pytest.mark.parametrize(("argv", "words"), [c[1:] for c in FORCE_CASES],
                         ids=[c[0] for c in FORCE_CASES])
def test_force_never_replaces_a_run_or_an_input(places, promise, argv, words) -> None:
    filled = [part.format(**vars(places)) for part in [*argv, *EX]]
    line = promise(lambda: export_main(filled))
    assert words in line, line


def test_a_held_lock_refuses_exporter_and_trainer_naming_the_holder(places, promise) -> None:
    """Another process holds ``shared``'s lock: the export and the trainer are refused at
    once with its PID; once it is killed (its lock file left behind), the lock is free."""
    from keras_resnet.outputs import DirectoryLock, lock_path

    shared = places.root / "shared"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys; from keras_resnet.outputs import DirectoryLock; "
         f"DirectoryLock({str(shared)!r}, 'holder').acquire(); print('held', flush=True); "
         "sys.stdin.read()"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        env=_env())
    try:
        assert holder.stdout.readline().strip() == "held"
        for main, argv in ((export_main, [str(places.tiny), "-o", "shared", *EX]),
                           (train_main, [*TRAIN, "--model-dir", "shared"])):
            line = promise(lambda main=main, argv=argv: main(argv))
            assert f"in use by process {holder.pid} (holder" in line, line
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=60)
    assert lock_path(shared).exists()  # what a killed holder leaves: no longer a lock
    with DirectoryLock(shared, "test") as lock:
        assert lock.held
    assert not lock_path(shared).exists() and not shared.exists()


def test_a_destination_changed_during_the_export_is_kept(sandbox, tmp_path, monkeypatch) -> None:
    """A file written into the (empty) output while the export runs is neither deleted nor
    overwritten: the export is refused at its final check and leaves nothing behind."""
    import keras_resnet.export.api as api
    from keras_resnet.export import UsageError, export_model

    out = tmp_path / "race"
    out.mkdir()
    build = api._build

    def build_then_user_writes(*args, **kwargs):
        manifest = build(*args, **kwargs)
        (out / "important.txt").write_text("keep me")
        return manifest

    monkeypatch.setattr(api, "_build", build_then_user_writes)
    with pytest.raises(UsageError, match="changed while exporting; nothing was replaced"):
        export_model(str(sandbox.tiny), out, formats=["onnx"], samples=8)
    assert os.listdir(out) == ["important.txt"] and (out / "important.txt").read_text() == "keep me"
    assert _leftovers(tmp_path) == []


def test_links_are_filled_in_place_and_directories_keep_their_mode(sandbox, tmp_path) -> None:
    """``-o LINK --force``: the link and its directory stay (contents replaced); an existing
    directory keeps its mode; nothing ``.NAME.old-*`` or ``.NAME.partial-*`` remains."""
    from keras_resnet.export import export_model, verify_dir

    real, link, plain = tmp_path / "real", tmp_path / "link", tmp_path / "plain"
    real.mkdir()
    (real / "old.txt").write_text("replaced with --force")
    real.chmod(0o751)
    link.symlink_to(real)
    plain.mkdir(mode=0o700)
    (plain / "old.txt").write_text("replaced with --force")
    for out in (link, plain):
        export_model(str(sandbox.tiny), out, formats=["onnx"], samples=8, force=True)
    assert link.is_symlink() and os.readlink(link) == str(real)
    assert oct(real.stat().st_mode & 0o777) == "0o751" and oct(plain.stat().st_mode & 0o777) == "0o700"
    for folder in (real, plain):
        assert not (folder / "old.txt").exists() and verify_dir(folder)["passed"]
        assert _leftovers(folder) == []
    assert _leftovers(tmp_path) == []


def _script(name: str) -> list[str]:
    installed = Path(sys.executable).parent / name
    if installed.is_file():
        return [str(installed)]
    function = {"keras-resnet-train": "train_main", "keras-resnet-export": "export_main"}[name]
    module = "training" if "train" in name else "export"
    return [sys.executable, "-c", f"import sys; from keras_resnet.{module}.cli import "
                                  f"{function}; sys.exit({function}())"]


def test_four_commands_at_once_on_one_directory(sandbox, tmp_path) -> None:
    """Two exports and two trainers (different models) started together on one directory:
    exactly one succeeds, the others end with one ``error:`` line (exit 2), and the
    directory holds that one's complete output, no mix and no leftovers."""
    out = tmp_path / "shared"
    train = ["--dataset", "digits", "--input-size", "16", "--seed", "0", "--steps", "4",
             "--batch-size", "16", "--checkpoint-every", "2", "--eval-examples", "32",
             "--mean-images", "32", "--model-dir", str(out)]
    commands = [[*_script("keras-resnet-export"), str(sandbox.tiny), "-o", str(out), *EX],
                [*_script("keras-resnet-export"), str(sandbox.tiny), "-o", str(out), *EX],
                [*_script("keras-resnet-train"), "--model", "resnet20", *train],
                [*_script("keras-resnet-train"), "--model", "resnet32", *train]]
    processes = [subprocess.Popen(c, cwd=tmp_path, env=_env(), stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True) for c in commands]
    results = [(p.wait(timeout=900), p.communicate()[1]) for p in processes]
    codes = [code for code, _ in results]
    assert sorted(codes) == [0, 2, 2, 2], results
    for code, err in results:
        if code == 2:
            lines = [line for line in err.splitlines() if line.startswith("error")]
            assert len(lines) == 1 and "Traceback" not in err, err
    winner = codes.index(0)
    names = set(os.listdir(out))
    if winner < 2:
        from keras_resnet.export import verify_dir

        assert "run_config.json" not in names and verify_dir(out)["passed"]
    else:
        assert "manifest.json" not in names
        config = json.loads((out / "run_config.json").read_text())
        assert config["identity"]["model"] == ("resnet20" if winner == 2 else "resnet32")
        with (out / "log.csv").open(newline="") as f:
            train_steps = [int(row["step"]) for row in csv.DictReader(f) if row["train_loss"]]
        assert train_steps == sorted(set(train_steps)) and train_steps[-1] == 4  # one run's
    assert _leftovers(tmp_path) == []
