"""``keras-resnet-experiment``: the paper's experiments as lists of trainer runs.

    keras-resnet-experiment degradation --out runs/degradation --dataset cifar10
    keras-resnet-experiment depth --out runs/depth --seeds 5 --depths 20 110
    keras-resnet-experiment degradation --dataset digits --steps 500 --out runs/deg -- --precision float32

Flags after ``--`` go to every ``keras-resnet-train`` run. Bad input prints one ``error:``
line and exits with code 2 before anything is trained; a run stopped by SIGTERM exits with
143, and the same command resumes the experiment.
"""

from __future__ import annotations

import argparse
import csv
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from keras_resnet.training.cli import add_budget_flags
from keras_resnet.training.errors import UsageError
from keras_resnet.training.experiments import figures, results
from keras_resnet.training.experiments.plan import EXPERIMENTS, RunSpec, check_depths, plan_runs
from keras_resnet.training.experiments.runner import PlannedRun, plan_state, run_all
from keras_resnet.training.outputs import atomic_write_json, atomic_write_text, read_json

EXPERIMENT_FILE = "experiment.json"
#: Trainer flags the experiment sets itself (per run or from its own options).
OWNED_FLAGS = ("--model", "--model-dir", "--seed", "--plain", "--dataset",
               "--data-dir", "--download", "--recipe", "--steps", "--epochs", "--batch-size",
               "--input-size", "--log-every", "--eval-every", "--eval-examples", "--threads",
               "--eval-only", "--depth")


def build_parser() -> argparse.ArgumentParser:
    from keras_resnet.console import Parser

    p = Parser(prog="keras-resnet-experiment",
               description="Run one of the paper's experiments as keras-resnet-train runs in "
                           "OUT/<run>/, then write results.{csv,json,md} and figures. Flags "
                           "after -- go to every keras-resnet-train run.")
    p.add_argument("experiment", choices=EXPERIMENTS)
    p.add_argument("--out", required=True, help="experiment folder (runs, results, figures)")
    p.add_argument("--dataset", default="cifar10", help="any keras-resnet-train --dataset")
    p.add_argument("--data-dir", help="tensorflow-datasets data dir")
    p.add_argument("--download", action="store_true", help="let tfds download a missing set")
    p.add_argument("--depths", type=int, nargs="+",
                   help="CIFAR depths 6n + 2, e.g. 8 14 for a quick run (default: "
                        "degradation 20 32 44 56; depth 20 32 44 56 110; responses: "
                        "plain-20/56 and ResNet-20/56/110 as Figure 7)")
    p.add_argument("--model", default="resnet20", help="the net of the shortcuts experiment")
    p.add_argument("--seeds", type=int, default=1, help="runs of every configuration")
    p.add_argument("--seed", type=int, default=0, help="first seed (then seed+1, ...)")
    add_budget_flags(p)  # of every run
    p.add_argument("--log-every", type=int,
                   help="steps between training-error points (default: 1/100 of the run)")
    p.add_argument("--eval-every", type=int,
                   help="steps between test-error points (default: 1/20 of the run)")
    p.add_argument("--eval-examples", type=int, help="evaluate on the first N test images")
    p.add_argument("--response-images", type=int,
                   help="responses: test images the statistics use (default: all)")
    p.add_argument("--threads", type=int, default=0, help="TensorFlow threads (0: default)")
    p.add_argument("--force", action="store_true",
                   help="replace the results of an experiment made with other settings in "
                        "--out (finished runs with the same options are still reused)")
    return p


def _split(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    argv = list(argv)
    if "--" in argv:
        cut = argv.index("--")
        return argv[:cut], argv[cut + 1:]
    return argv, []


def _check_extra(experiment: str, extra: list[str]) -> None:
    owned = OWNED_FLAGS + (("--shortcut",) if experiment == "shortcuts" else ())
    for arg in extra:
        flag = arg.split("=", 1)[0]
        if flag in owned:
            raise UsageError(f"{flag} after -- is set by keras-resnet-experiment; give it "
                             "before -- (or not at all)")


def _check_args(args: argparse.Namespace) -> None:
    import keras_resnet

    for flag in ("seeds", "log_every", "eval_every", "response_images"):
        value = getattr(args, flag)
        if value is not None and value < 1:
            raise UsageError(f"--{flag.replace('_', '-')} must be at least 1, got {value}")
    if args.model not in keras_resnet.list_models():
        raise UsageError(f"unknown model {args.model!r}; see keras_resnet.list_models()")
    if args.experiment != "shortcuts" and args.model != "resnet20":
        raise UsageError("--model applies to the shortcuts experiment only")
    if args.response_images is not None and args.experiment != "responses":
        raise UsageError("--response-images applies to the responses experiment only")
    if Path(args.out).exists() and not Path(args.out).is_dir():
        raise UsageError(f"--out {args.out!r} is a file")


def _common(args: argparse.Namespace, extra: list[str]) -> list[str]:
    """Trainer flags shared by every run (without the curve intervals)."""
    common = ["--dataset", args.dataset, "--threads", str(args.threads)]
    for flag in ("data_dir", "recipe", "steps", "epochs", "batch_size", "input_size",
                 "eval_examples"):
        value = getattr(args, flag)
        if value is not None:
            common += ["--" + flag.replace("_", "-"), str(value)]
    if args.download:
        common.append("--download")
    return common + extra


def _intervals(args: argparse.Namespace, first: RunSpec, out: Path,
               common: list[str]) -> tuple[int, int]:
    """``(log_every, eval_every)``: about 100 training-error and 20 test-error points."""
    from keras_resnet.training import data
    from keras_resnet.training.experiments.runner import resolve_run

    cfg = resolve_run(first, first.trainer_argv(out, common))
    if args.experiment == "responses" and cfg.model.architecture["variant"] == "v2":
        raise UsageError("--variant v2 has no batch norm after its 3x3 convolutions; the "
                         "responses of Figure 7 need v1 or v1.5 nets")
    # Opening the source checks that the dataset is there (tfds: cheaply) before any run.
    source = data.open_source(cfg.data.dataset, input_size=cfg.model.input_size,
                              data_dir=cfg.data.data_dir, download=cfg.data.download)
    total = cfg.total_steps(source.shard_size("train", 0, 1, None))
    return (args.log_every or max(1, total // 100), args.eval_every or max(1, total // 20))


def _settings(args: argparse.Namespace, depths: Any, extra: list[str], log_every: int,
              eval_every: int) -> dict[str, Any]:
    keys = ("dataset", "recipe", "steps", "epochs", "batch_size", "input_size",
            "eval_examples", "seeds", "seed", "response_images")
    settings = {k: getattr(args, k) for k in keys}
    settings.update({"depths": list(depths) if depths else None, "log_every": log_every,
                     "eval_every": eval_every, "trainer_flags": extra})
    if args.experiment == "shortcuts":
        settings["model"] = args.model
    return settings


def _previous_experiment(out: Path, experiment: str) -> dict[str, Any] | None:
    """``OUT/experiment.json`` of an earlier run of the same experiment, if any."""
    path = out / EXPERIMENT_FILE
    if not path.is_file():
        return None
    try:
        previous = read_json(path)
    except (OSError, ValueError):
        raise UsageError(f"--out {str(out)!r} has an unreadable {EXPERIMENT_FILE}") from None
    if previous.get("experiment") != experiment:
        raise UsageError(f"--out {str(out)!r} holds the {previous.get('experiment')!r} "
                         "experiment; use another --out")
    return previous


def _check_settings(out: Path, previous: dict[str, Any] | None, settings: dict[str, Any],
                    force: bool) -> None:
    if previous is None or force:
        return
    old = previous.get("settings", {})
    diff = next((k for k in sorted({*old, *settings}) if old.get(k) != settings.get(k)), None)
    if diff:
        raise UsageError(f"--out {str(out)!r} holds results made with other settings ({diff}: "
                         f"{old.get(diff)!r} there, {settings.get(diff)!r} now); use another "
                         "--out, or --force to replace its results")


def prepare_experiment(argv: Sequence[str]) -> tuple[argparse.Namespace, dict[str, Any],
                                                      list[PlannedRun]]:
    """Parse and validate everything, for every run, before anything is trained."""
    own, extra = _split(argv)
    args = build_parser().parse_args(own)
    _check_extra(args.experiment, extra)
    _check_args(args)
    depths = check_depths(args.experiment, args.depths)
    import keras_resnet

    model_depth = keras_resnet.model_info(args.model)["depth"]
    plan = plan_runs(args.experiment, depths=depths, seeds=args.seeds, base_seed=args.seed,
                     model=args.model, model_depth=model_depth)
    out = Path(args.out)
    previous = _previous_experiment(out, args.experiment)
    common = _common(args, extra)
    log_every, eval_every = _intervals(args, plan[0], out, common)
    common += ["--log-every", str(log_every), "--eval-every", str(eval_every)]
    settings = _settings(args, depths, extra, log_every, eval_every)
    _check_settings(out, previous, settings, args.force)
    runs = [plan_state(spec, out, common) for spec in plan]
    return args, settings, runs


def _responses(args: argparse.Namespace, runs: list[PlannedRun],
               records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    from keras_resnet.training.responses import run_responses

    found = []
    for run, record in zip(runs, records, strict=True):
        layers = run_responses(run.directory, data_dir=args.data_dir, limit=args.response_images)
        found.append({"run": record["run"], "config": record["config"], "label": record["label"],
                      "group": record["group"], "depth": record["depth"], "layers": layers})
    return found


def _write_responses_csv(out: Path, responses: list[dict[str, Any]]) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["run", "label", "index", "layer", "std", "std_sorted"])
    for item in responses:
        stds = sorted((layer["std"] for layer in item["layers"]), reverse=True)
        for layer, ranked in zip(item["layers"], stds, strict=True):
            writer.writerow([item["run"], item["label"], layer["index"], layer["layer"],
                             layer["std"], ranked])
    atomic_write_text(out / "responses.csv", buffer.getvalue())


def _figures(experiment: str, out: Path, dataset: str, records: list[dict[str, Any]],
             responses: list[dict[str, Any]], same_dataset: bool) -> list[Path]:
    stem = out / experiment
    if experiment == "depth":
        return figures.depth_figure(records, results.aggregate(experiment, records), stem,
                                    dataset, same_dataset)
    if experiment == "responses":
        return figures.responses_figure(figures.first_seed(responses), stem, dataset)
    return figures.curves_figure(records, stem, dataset, split_plain=experiment == "degradation")


TRAIN_SPLIT_FILE = "train_split.json"


def train_split_error(run: PlannedRun, data_dir: str | None) -> dict[str, Any]:
    """Top-1 of the run's ``model.keras`` over its whole training split (the evaluation
    view, as ``keras-resnet-eval``), kept in ``OUT/<run>/train_split.json`` for the model
    file it was measured on, so a rerun of the experiment does not measure it again."""
    from keras_resnet.training.evaluate import evaluate_model

    model = run.directory / "model.keras"
    stamp = {"model_bytes": model.stat().st_size, "model_mtime_ns": model.stat().st_mtime_ns}
    cached = run.directory / TRAIN_SPLIT_FILE
    if cached.is_file():
        found = read_json(cached)
        if all(found.get(k) == v for k, v in stamp.items()):
            return found
    config = read_json(run.directory / "run_config.json")["config"]
    measured = evaluate_model(model, config["dataset"], data_dir=data_dir or config.get("data_dir"),
                              augmentation=config.get("augmentation"), split="train")
    result = {**stamp, **measured}
    atomic_write_json(cached, result)
    return result


def finish(args: argparse.Namespace, settings: dict[str, Any], runs: list[PlannedRun]) -> Path:
    """Collect the finished runs into results and figures; returns ``results.md``'s path."""
    out = Path(args.out)
    records = [results.run_record(run.spec, run.directory, settings["eval_every"],
                                  train_split_error(run, args.data_dir)) for run in runs]
    responses = _responses(args, runs, records) if args.experiment == "responses" else []
    if responses:
        _write_responses_csv(out, responses)
    same = results.paper_dataset(args.experiment, args.dataset, settings.get("model"))
    written = _figures(args.experiment, out, args.dataset, records, responses, same)
    extra = {"responses": responses} if responses else None
    results.write_results(out, args.experiment, settings, records, extra,
                          [p.name for p in written])
    return out / "results.md"


def run_experiment(argv: Sequence[str] | None = None) -> int:
    """Validate, run (resuming), and write the results; returns the exit code."""
    import sys

    from keras_resnet.training.loop import SIGTERM_EXIT_CODE

    args, settings, runs = prepare_experiment(sys.argv[1:] if argv is None else argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / EXPERIMENT_FILE, {"experiment": args.experiment,
                                              "settings": settings,
                                              "runs": [run.spec.name for run in runs]})
    if not run_all(args.experiment, runs):
        print(f"[{args.experiment}] stopped; run the same command to resume", flush=True)
        return SIGTERM_EXIT_CODE
    summary = finish(args, settings, runs)
    print(summary.read_text(), flush=True)
    print(f"wrote {summary}, results.csv, results.json and the figures in {out}", flush=True)
    return 0


def experiment_main(argv: Sequence[str] | None = None) -> int:
    """Console script ``keras-resnet-experiment``."""
    from keras_resnet.training.cli import _main

    return _main(run_experiment, argv, "keras-resnet-experiment")
