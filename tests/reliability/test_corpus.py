"""The bad-input corpus: every console script (run in-process through its main function) and
the main API functions against inputs an adversarial but fair user would try.

The promise, checked for every case by the ``promise`` fixture: exit code 2 (1 for an export
directory that fails verification), exactly one ``error:`` line on stderr, no traceback,
nothing written or removed, nothing read outside the given paths (a canary folder and the
files a malicious manifest names). ``test_console_scripts`` runs each installed script once
in a fresh process, where TensorFlow's start-up lines would show.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from keras_resnet.export.cli import bench_main, export_main, verify_main
from keras_resnet.training.cli import eval_main, train_main

from keras_resnet.cli import main as models_main

TRAIN = ["--model", "resnet20", "--input-size", "8", "--batch-size", "8", "--mean-images", "16"]


def _edit(folder: Path, change) -> None:
    manifest = json.loads((folder / "manifest.json").read_text())
    change(manifest)
    (folder / "manifest.json").write_text(json.dumps(manifest))


def _sha(path: str) -> str:
    from keras_resnet.export.manifest import sha256_path

    return sha256_path(Path(path)) if os.path.exists(path) else "0" * 64


def _set(path: list, value) -> callable:
    def change(manifest: dict) -> None:
        target = manifest
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
    return change


def _variants(s: SimpleNamespace) -> dict[str, Path]:
    """Damaged copies of the sandbox's export directory, by name."""
    root = s.root / "variants"
    edits = {
        "absolute": lambda m: m["artifacts"][0].update(path="/etc/hostname",
                                                       sha256=_sha("/etc/hostname")),
        "etc_dir": lambda m: m["artifacts"][0].update(path="/etc", sha256="0" * 64),
        "dotdot": lambda m: m["artifacts"][0].update(
            path="../../outside/secret.onnx", sha256=_sha(str(s.outside / "secret.onnx"))),
        "dotdot_reference": lambda m: m["reference"]["keras_model"].update(
            path="sub/../../../outside/secret.keras"),
        "absolute_reference": lambda m: m["reference"]["parity_inputs"].update(
            path=str(s.outside / "secret.txt")),
        "no_sha": lambda m: m["artifacts"][0].pop("sha256"),
        "path_number": _set(["artifacts", 0, "path"], 7),
        "artifacts_object": _set(["artifacts"], {}),
        "bad_shape": _set(["input", "shape"], [None, "h", 16, 3]),
        "huge_shape": _set(["input", "shape"], [None, 10**9, 16, 3]),
        "min_agreement_text": _set(["options", "min_agreement"], "high"),
        "unknown_format": _set(["artifacts", 0, "format"], "coreml"),
    }
    variants = {}
    for name, change in edits.items():
        shutil.copytree(s.export, root / name)
        _edit(root / name, change)
        variants[name] = root / name
    for name in ("symlink_artifact", "symlink_reference", "missing", "changed", "json",
                 "manifest_link"):
        shutil.copytree(s.export, root / name)
        variants[name] = root / name
    (root / "symlink_artifact" / "model.onnx").unlink()
    (root / "symlink_artifact" / "model.onnx").symlink_to(s.outside / "secret.onnx")
    (root / "symlink_reference" / "model.keras").unlink()
    (root / "symlink_reference" / "model.keras").symlink_to(s.outside / "secret.keras")
    (root / "missing" / "model.onnx").unlink()
    with (root / "changed" / "model.onnx").open("ab") as f:
        f.write(b"\0")
    (root / "json" / "manifest.json").write_text("{not json")
    (root / "manifest_link" / "manifest.json").unlink()
    shutil.copyfile(s.export / "manifest.json", s.outside / "manifest.json")
    (root / "manifest_link" / "manifest.json").symlink_to(s.outside / "manifest.json")
    return variants


def _runs(s: SimpleNamespace) -> dict[str, Path]:
    """Copies of the training run with a damaged ``run_config.json``."""
    runs = {}
    for name, text in (("garbage", "{not json"), ("types", json.dumps({"config": {
            "dataset": ["digits"]}})), ("list", "[]")):
        folder = s.root / "runs" / name
        folder.mkdir(parents=True)
        shutil.copyfile(s.run / "model.keras", folder / "model.keras")
        (folder / "run_config.json").write_text(text)
        runs[name] = folder
    return runs


def _truncated_weights(s: SimpleNamespace) -> Path:
    import keras_resnet

    path = s.root / "api" / "truncated.weights.h5"
    path.parent.mkdir()
    keras_resnet.ResNet20(input_shape=(8, 8, 3)).save_weights(path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return path


@pytest.fixture(scope="module")
def ctx(sandbox: SimpleNamespace) -> SimpleNamespace:
    """The sandbox plus damaged export directories (``v``) and training runs (``r``)."""
    return SimpleNamespace(**vars(sandbox), v=_variants(sandbox), r=_runs(sandbox),
                           truncated_weights=_truncated_weights(sandbox))


# (id, main, argv): exit 2 and one error line. ``{name}`` fields are filled from the sandbox
# (``{run}``, ``{images}``, ``{v[dotdot]}`` for a damaged export, ``{r[garbage]}`` for a run).
def _cases(main, prefix: str, template: list[str], values: list[list[str]]) -> list[tuple]:
    return [(f"{prefix}{'_'.join(v)}", main, [*template, *v]) for v in values]


OUT = ["--model-dir", "out"]
CLI_CASES = [
    ("models-unknown", models_main, ["resnet9"]),
    ("models-family", models_main, ["--family", "mnist"]),
    ("models-flag", models_main, ["--bogus"]),
    *_cases(train_main, "train", [*TRAIN, *OUT], [
        ["--epochs", "nan"], ["--epochs", "inf"], ["--epochs", "-1"], ["--epochs", "1e300"],
        ["--steps", "0"], ["--steps", "2", "--epochs", "1"]]),
    *_cases(train_main, "train", [*TRAIN, "--steps", "2", *OUT], [
        ["--batch-size", "0"], ["--batch-size", "99999999"], ["--input-size", "5000"],
        ["--learning-rate", "nan"], ["--learning-rate", "0"], ["--weight-decay", "inf"],
        ["--weight-decay", "-1"], ["--label-smoothing", "nan"], ["--label-smoothing", "1"],
        ["--warmup-steps", "-1"], ["--keep-checkpoints", "0"], ["--checkpoint-every", "0"],
        ["--eval-examples", "0"], ["--log-every", "0"], ["--shuffle-buffer", "0"],
        ["--mean-images", "0"], ["--seed", "-1"], ["--seed", "18446744073709551616"],
        ["--threads", "-1"], ["--threads", "100000"], ["--dataset", "mnist_in_a_hat"],
        ["--recipe", "fast"], ["--strategy", "sideways"], ["--log-every", "two"],
        ["--eval-only"],
        *[["--recipe", f"{{recipes}}/{name}.json"] for name in (
            "batch_text", "lr_text", "boundaries_text", "nan_decay", "preprocessing",
            "warmup_list", "augmentation_type", "list", "broken")],
        *[["--dataset", f"folder:{{images}}/{name}"] for name in (
            "empty_class", "corrupt", "truncated", "flat", "absent")]]),
    *_cases(train_main, "train", TRAIN, [
        ["--model-dir", "afile/run"], ["--model-dir", "afile"], ["--model-dir", "/proc/kr/run"],
        ["--model", "resnet18", "--input-size", "16", "--model-dir", "out"],
        ["--seed", "2", "--checkpoint-every", "1", "--eval-examples", "8", "--model-dir",
         "{run}"],
        ["--model", "resnet32", "--seed", "1", "--model-dir", "{run}"]]),
    *_cases(eval_main, "eval", [], [
        ["--model-dir", "images"], ["--model-dir", "{run}", "--model-file", "x.keras"], [],
        ["--model-dir", "{run}", "--batch-size", "0"],
        ["--model-dir", "{run}", "--batch-size", "1e9"],
        ["--model-dir", "{run}", "--eval-examples", "0"],
        ["--model-dir", "{run}", "--input-size", "2"],
        ["--model-dir", "{run}", "--dataset", "mnist9"],
        ["--model-file", "{images}/corrupt/b/bad.png", "--dataset", "digits"],
        ["--model-dir", "{r[garbage]}"], ["--model-dir", "{r[types]}"],
        ["--model-dir", "{r[list]}"]]),
    *_cases(export_main, "export", ["resnet20", "-o", "out"], [
        ["--threads", "-5"], ["--threads", "0"], ["--samples", "0"], ["--samples", "100000000"],
        ["--min-agreement", "nan"], ["--opset", "3"], ["--input-size", "2"],
        ["--input-size", "99999"], ["--classes", "0"], ["--classes", "1000000000"],
        ["--formats", ","], ["--nchw", "--formats", "tflite"], ["--labels", "nolabels.json"],
        ["--data", "folder:images/absent"], ["--weights", "afile"],
        ["--quantize", "int8", "--calibration", "folder:images/flat/only.png"]]),
    *_cases(export_main, "export", [], [
        ["resnet18", "--input-size", "16", "-o", "out"], ["resnet5000", "-o", "out"],
        ["resnet20", "-o", "afile/out"], ["resnet20", "-o", "/proc/kr/out"],
        ["resnet20", "-o", "afile"], ["resnet20", "-o", "{run}"],
        ["{run}/model.keras", "-o", "{run}", "--force"],
        ["{tiny}", "-o", "tiny", "--force"],
        ["resnet20", "--classes", "3", "--labels", "tiny/labels.json", "-o", "tiny", "--force"],
        ["resnet20", "-o", "{run}", "--force"], ["resnet20", "-o", "runs", "--force"],
        ["resnet20", "-o", ".", "--force"],
        ["{images}/corrupt/b/bad.png", "-o", "out"], ["nothere/model.keras", "-o", "out"]]),
    *_cases(verify_main, "verify", [], [
        ["nothere"], ["images"], ["{export}", "--threads", "-5"], ["{export}", "--threads", "0"],
        ["{export}", "--samples", "0"], ["{export}", "--samples", "100000000"],
        ["{export}", "--data", "imagenet"], ["{export}", "--data", "folder:nothere"],
        *[[f"{{v[{name}]}}"] for name in (
            "absolute", "etc_dir", "dotdot", "dotdot_reference", "absolute_reference", "no_sha",
            "path_number", "artifacts_object", "bad_shape", "huge_shape", "min_agreement_text",
            "json", "manifest_link")]]),
    *_cases(bench_main, "bench", [], [
        ["nothere"], ["{export}", "--batch", "0"], ["{export}", "--batch", "1000000000"],
        ["{export}", "--runs", "0"], ["{export}", "--threads", "-5"],
        ["{export}", "--threads", "x"],
        *[[f"{{v[{name}]}}"] for name in (
            "absolute", "etc_dir", "dotdot", "dotdot_reference", "symlink_artifact",
            "symlink_reference", "missing", "unknown_format", "manifest_link")]]),
]

# Export directories that fail verification: exit 1, one error line naming the problem.
VERIFY_FAILURES = [
    ("symlink_artifact", "leads outside the export directory"),
    ("symlink_reference", "leads outside the export directory"),
    ("missing", "onnx/float32 (model.onnx): file missing"),
    ("changed", "onnx/float32 (model.onnx): SHA-256 mismatch: the file has changed"),
    ("unknown_format", "unknown artifact format 'coreml'"),
]

FORBIDDEN = ("/etc/hostname", "/etc/shadow", "/etc/passwd")


@pytest.mark.parametrize(("main", "argv"), [c[1:] for c in CLI_CASES],
                         ids=[c[0] for c in CLI_CASES])
def test_cli_refuses_cleanly(ctx, promise, main, argv: list[str]) -> None:
    filled = [part.format(**vars(ctx)) for part in argv]
    line = promise(lambda: main(filled), forbidden=FORBIDDEN)
    assert line.startswith("error: ")


@pytest.mark.parametrize(("name", "expected"), VERIFY_FAILURES,
                         ids=[c[0] for c in VERIFY_FAILURES])
def test_verify_failure_says_why(ctx, promise, name: str, expected: str) -> None:
    line = promise(lambda: verify_main([str(ctx.v[name])]), code=1, forbidden=FORBIDDEN)
    assert expected in line and "failed verification" in line


def _raises(kind: type, call) -> str:
    with pytest.raises(kind) as info:
        call()
    return str(info.value)


def _api_cases(c: SimpleNamespace) -> list[tuple[str, type, object]]:
    from keras_resnet.export import UsageError as ExportUsage
    from keras_resnet.export import bench_dir, export_model, verify_dir
    from keras_resnet.training import data
    from keras_resnet.training.cli import train_from_args
    from keras_resnet.training.errors import UsageError as TrainUsage
    from keras_resnet.training.evaluate import evaluate_model

    import keras_resnet

    truncated = c.truncated_weights
    return [
        ("create_model-unknown", ValueError, lambda: keras_resnet.create_model("resnet9")),
        ("load_model-missing", FileNotFoundError, lambda: keras_resnet.load_model("none.keras")),
        ("weights-truncated", ValueError,
         lambda: keras_resnet.ResNet20(input_shape=(8, 8, 3), weights=str(truncated))),
        ("export_model-threads", ExportUsage, lambda: export_model("resnet20", "o", threads=-5)),
        ("export_model-force-input", ExportUsage,
         lambda: export_model(str(c.tiny), c.tiny.parent, force=True)),
        ("verify_dir-dotdot", ExportUsage, lambda: verify_dir(c.v["dotdot"])),
        ("verify_dir-threads", ExportUsage, lambda: verify_dir(c.export, threads=-5)),
        ("bench_dir-absolute", ExportUsage, lambda: bench_dir(c.v["absolute"])),
        ("bench_dir-symlink", ExportUsage, lambda: bench_dir(c.v["symlink_artifact"])),
        ("bench_dir-batch", ExportUsage, lambda: bench_dir(c.export, batch=0)),
        ("train_from_args-epochs", TrainUsage,
         lambda: train_from_args(["--model", "resnet20", "--epochs", "nan", "--model-dir",
                                  "o"])),
        ("open_source-empty-class", TrainUsage,
         lambda: data.open_source(f"folder:{c.images / 'empty_class'}", input_size=8)),
        ("open_source-corrupt", TrainUsage,
         lambda: data.open_source(f"folder:{c.images / 'corrupt'}", input_size=8)),
        ("evaluate_model-corrupt", TrainUsage,
         lambda: evaluate_model(c.images / "corrupt" / "b" / "bad.png", "digits")),
    ]


API_CASES = ["create_model-unknown", "load_model-missing", "weights-truncated",
             "export_model-threads", "export_model-force-input", "verify_dir-dotdot",
             "verify_dir-threads", "bench_dir-absolute", "bench_dir-symlink", "bench_dir-batch",
             "train_from_args-epochs", "open_source-empty-class", "open_source-corrupt",
             "evaluate_model-corrupt"]


@pytest.mark.parametrize("name", API_CASES)
def test_api_refuses_cleanly(ctx, tools, monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    """The main API functions raise their documented error with a one-line message, write
    and remove nothing and read nothing outside the given paths."""
    monkeypatch.chdir(ctx.root)
    cases = {case[0]: case[1:] for case in _api_cases(ctx)}
    assert sorted(cases) == sorted(API_CASES)
    kind, call = cases[name]
    before = tools.snapshot(ctx.root)
    with tools.recording() as opened:
        message = _raises(kind, call)
    assert message.strip() and "\n" not in message.strip(), message
    assert tools.snapshot(ctx.root) == before, "files were written or removed"
    assert not [p for p in opened if os.path.realpath(p).startswith(
        (os.path.realpath(ctx.outside), *FORBIDDEN))]


def test_corpus_size() -> None:
    """The counts the README quotes."""
    assert (len(CLI_CASES), len(VERIFY_FAILURES), len(API_CASES), len(SCRIPTS)) == (132, 5, 14, 6)


SCRIPTS = [
    ("keras-resnet-models", "keras_resnet.cli:main", ["resnet9"]),
    ("keras-resnet-train", "keras_resnet.training.cli:train_main",
     ["--model", "resnet20", "--epochs", "nan", "--model-dir", "out"]),
    ("keras-resnet-eval", "keras_resnet.training.cli:eval_main", ["--model-dir", "{run}", "--batch-size", "0"]),
    ("keras-resnet-export", "keras_resnet.export.cli:export_main", ["resnet20", "-o", "afile/out"]),
    ("keras-resnet-verify", "keras_resnet.export.cli:verify_main", ["{v[dotdot]}"]),
    ("keras-resnet-bench", "keras_resnet.export.cli:bench_main", ["{export}", "--threads", "-5"]),
]


def _command(script: str, target: str) -> list[str]:
    """The installed console script, or the same entry point through ``python -c``."""
    installed = Path(sys.executable).parent / script
    if installed.is_file():
        return [str(installed)]
    module, _, function = target.partition(":")
    return [sys.executable, "-c", f"import sys; from {module} import {function}; "
                                  f"sys.exit({function}())"]


def test_console_scripts(ctx, tools) -> None:
    """Each installed script in a fresh process (TensorFlow's start-up lines would show
    there, and no log level is set): one ``error:`` line, exit 2, nothing written."""
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "TF_CONFIG")}
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).resolve().parents[2]),
                                         env.get("PYTHONPATH", "")])
    before = tools.snapshot(ctx.root)
    processes = [subprocess.Popen([*_command(script, target),
                                   *[a.format(**vars(ctx)) for a in argv]],
                                  cwd=ctx.root, env=env, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True)
                 for script, target, argv in SCRIPTS]
    for (script, _, _), process in zip(SCRIPTS, processes, strict=True):
        out, err = process.communicate(timeout=900)
        assert process.returncode == 2, (script, err)
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), (script, err)
        assert "Traceback" not in out + err
    assert tools.snapshot(ctx.root) == before
