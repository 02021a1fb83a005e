"""Property tests (hypothesis) over the numeric and path arguments of every command.

Numeric: a value is accepted (the command reaches its first heavy step, replaced here by a
sentinel) exactly when it lies in the documented range; otherwise the command exits 2 with one
``error:`` line naming the flag. Paths: any path string is either accepted or refused that
way, and nothing in the sandbox is created or removed. (NUL bytes are left out: a process's
argv cannot carry them.)
"""

from __future__ import annotations

import importlib
import math
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from keras_resnet.export import bench as bench_lib
from keras_resnet.export import verify as verify_lib
from keras_resnet.export.cli import bench_main, export_main, verify_main
from keras_resnet.training import cli as train_cli
from keras_resnet.training import loop

SETTINGS = settings(max_examples=100, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])


class Reached(BaseException):
    """Raised where the heavy work would begin: the input was accepted."""


def _reached(*args, **kwargs):
    raise Reached


# flag -> (kind, low, high, low_open): the documented ranges (README, docs/).
TRAIN = {"--steps": ("int", 1, 10**9), "--batch-size": ("int", 1, 2**20),
         "--checkpoint-every": ("int", 1, 10**9), "--keep-checkpoints": ("int", 1, 10**4),
         "--eval-every": ("int", 0, 10**9), "--eval-examples": ("int", 1, 10**9),
         "--log-every": ("int", 1, 10**9), "--mean-images": ("int", 1, 10**8),
         "--shuffle-buffer": ("int", 1, 10**8), "--warmup-steps": ("int", 0, 10**9),
         "--seed": ("int", 0, 2**32 - 1), "--threads": ("int", 0, 1024),
         "--input-size": ("int", 8, 1024), "--epochs": ("open", 0, 10**6),
         "--learning-rate": ("open", 0, math.inf), "--weight-decay": ("float", 0, math.inf),
         "--label-smoothing": ("half", 0, 1)}
EXPORT = {"--samples": ("int", 1, 10000), "--threads": ("int", 1, 1024),
          "--opset": ("int", 13, None), "--min-agreement": ("float", 0, 1),
          "--classes": ("int", 1, 100_000), "--input-size": ("int", 4, 2048)}
VERIFY = {"--samples": ("int", 1, 10000), "--threads": ("int", 1, 1024)}
BENCH = {"--batch": ("int", 1, 1024), "--runs": ("int", 1, 10000), "--threads": ("int", 1, 1024)}
EVAL = {"--batch-size": ("int", 1, 2**16), "--eval-examples": ("int", 1, 10**9),
        "--input-size": ("int", 8, 1024)}

VALUES = st.one_of(st.integers(-2**70, 2**70), st.integers(-3, 20),
                   st.floats(allow_nan=True, allow_infinity=True),
                   st.sampled_from(["", "1e3", "0x10", " 5", "five"]))


def _text(value) -> str:
    return value if isinstance(value, str) else repr(value)


def _allowed(spec: tuple, text: str) -> bool:
    kind, low, high = spec
    if high is None:
        from keras_resnet.export.onnx_export import max_opset

        high = max_opset()
    try:
        number = int(text) if kind == "int" else float(text)
    except ValueError:
        return False
    if not math.isfinite(number):
        return False
    if kind == "open":
        return low < number <= high
    if kind == "half":
        return low <= number < high
    return low <= number <= high


def _check(main, argv: list[str], flag: str, allowed: bool, capsys) -> None:
    capsys.readouterr()
    try:
        code = main(argv)
    except Reached:
        assert allowed, f"{flag} {argv[-1]!r} was accepted"
        return
    err = capsys.readouterr().err.strip().splitlines()
    assert not allowed, f"{flag} {argv[-1]!r} was refused: {err}"
    assert code == 2 and len(err) == 1 and err[0].startswith("error: "), err
    assert flag in err[0], err[0]


@pytest.fixture
def here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("TF_CONFIG", raising=False)
    return tmp_path


@SETTINGS
@given(flag=st.sampled_from(sorted(TRAIN)), value=VALUES)
def test_train_numbers(here: Path, monkeypatch, capsys, flag: str, value) -> None:
    monkeypatch.setattr(loop, "prepare", _reached)
    text = _text(value)
    base = ["--model", "resnet20", "--model-dir", "run"]
    _check(train_cli.train_main, [*base, f"{flag}={text}"], flag, _allowed(TRAIN[flag], text),
           capsys)
    assert not list(here.iterdir())


@SETTINGS
@given(flag=st.sampled_from(sorted(EXPORT)), value=VALUES)
def test_export_numbers(here: Path, monkeypatch, capsys, flag: str, value) -> None:
    from keras_resnet.export import api

    monkeypatch.setattr(api, "resolve_model", _reached)
    text = _text(value)
    _check(export_main, ["resnet20", "-o", "out", f"{flag}={text}"], flag,
           _allowed(EXPORT[flag], text), capsys)
    assert not list(here.iterdir())


@SETTINGS
@given(command=st.sampled_from(["verify", "bench"]), data=st.data())
def test_verify_and_bench_numbers(here: Path, monkeypatch, capsys, command: str, data) -> None:
    monkeypatch.setattr(verify_lib, "verify_dir", _reached)
    monkeypatch.setattr(bench_lib, "bench_dir", _reached)
    ranges, main = (VERIFY, verify_main) if command == "verify" else (BENCH, bench_main)
    flag = data.draw(st.sampled_from(sorted(ranges)))
    text = _text(data.draw(VALUES))
    _check(main, ["somewhere", f"{flag}={text}"], flag, _allowed(ranges[flag], text), capsys)


@SETTINGS
@given(flag=st.sampled_from(sorted(EVAL)), value=VALUES)
def test_eval_numbers(here: Path, monkeypatch, capsys, flag: str, value) -> None:
    # The module, not the package's evaluate() function of the same name.
    evaluate_lib = importlib.import_module("keras_resnet.training.evaluate")
    monkeypatch.setattr(evaluate_lib, "evaluate_model", _reached)
    (here / "m.keras").write_bytes(b"")
    text = _text(value)
    _check(train_cli.eval_main, ["--model-file", "m.keras", "--dataset", "digits",
                                 f"{flag}={text}"], flag, _allowed(EVAL[flag], text), capsys)


PATHS = st.text(alphabet=["a", "b", ".", "/", "-", " ", "~", ":", "é", "\\", "*"], max_size=12)
# (id, main, argv with {p} for the path, True when the path may be accepted)
PATH_CASES = [
    ("verify", verify_main, ["{p}"], False),
    ("bench", bench_main, ["{p}"], False),
    ("export-model", export_main, ["{p}.keras", "-o", "out"], False),
    ("export-output", export_main, ["resnet20", "-o", "{p}"], True),
    ("export-labels", export_main, ["resnet20", "-o", "out", "--labels", "{p}x"], False),
    ("export-calibration", export_main, ["resnet20", "-o", "out", "--quantize", "int8",
                                         "--calibration", "folder:{p}"], False),
    ("train-model-dir", train_cli.train_main, ["--model", "resnet20", "--model-dir", "{p}"],
     True),
    ("train-recipe", train_cli.train_main, ["--model", "resnet20", "--recipe", "{p}.json",
                                            "--model-dir", "r"], False),
    ("train-dataset", train_cli.train_main, ["--model", "resnet20", "--dataset", "folder:{p}",
                                             "--model-dir", "r"], False),
    ("eval-model-file", train_cli.eval_main, ["--model-file", "{p}", "--dataset", "digits"],
     False),
]


def _listing(root: Path) -> set[tuple[str, int]]:
    return {(str(p.relative_to(root)), p.stat().st_size if p.is_file() else -1)
            for p in root.rglob("*")}


@SETTINGS
@given(case=st.sampled_from(PATH_CASES), path=PATHS)
def test_path_arguments(here: Path, monkeypatch, capsys, case, path: str) -> None:
    """Any path is accepted (only where a new output may go) or refused with one error line;
    nothing in the sandbox (a file, an empty folder, a folder of stray files) changes."""
    from keras_resnet.export import api

    monkeypatch.setattr(api, "resolve_model", _reached)
    monkeypatch.setattr(loop, "run_training", _reached)
    (here / "a").write_text("a file")
    (here / "b").mkdir(exist_ok=True)
    (here / "b" / "a").mkdir(exist_ok=True)
    (here / "b" / "a" / "stray.txt").write_text("not an image")
    before = _listing(here)
    _, main, argv, may_accept = case
    filled = [part.replace("{p}", f"./{path}") for part in argv]  # inside the sandbox
    capsys.readouterr()
    try:
        code = main(filled)
    except Reached:
        assert may_accept, filled
    else:
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1 and err[0].startswith("error: "), (filled, err)
    assert _listing(here) == before, filled
