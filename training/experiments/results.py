"""``results.csv``, ``results.json`` and ``results.md``: the measured errors of every
configuration (best and mean +- std over its seeds, as the paper reports ResNet-110 in
Table 6), whether each run converged (:mod:`.convergence`), and the paper's figures: in the
same rows only when the experiment ran on the paper's own dataset (CIFAR-10 for Table 6;
ImageNet ResNet-34 for Table 3), otherwise in a separate block, for orientation only."""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Any

import numpy as np
from keras_resnet.training.experiments import convergence, paper
from keras_resnet.training.experiments.plan import RunSpec
from keras_resnet.training.outputs import atomic_write_json, atomic_write_text, read_json

#: A test error this close (percentage points) to guessing's counts as "at chance".
CHANCE_MARGIN_PTS = 5.0
CSV_COLUMNS = ("config", "label", "group", "model", "depth", "paper_depth", "params", "seeds",
               "steps", "converged", "tail_drop_pts", "train_error_pct_mean", "train_examples",
               "running_train_error_pct_mean", "test_error_pct_best", "test_error_pct_mean",
               "test_error_pct_std", "test_examples", "paper_test_error_pct",
               "reproduction_test_error_pct")


def run_record(spec: RunSpec, directory: Path, window: int,
               train_split: dict[str, Any] | None = None) -> dict[str, Any]:
    """One finished run's numbers from its ``metrics.json`` (errors in %): the test error,
    the running training error over the last ``window`` steps, the training error of a full
    pass over the training split (``train_split``: ``evaluate_model`` on ``split="train"``)
    and the convergence of its curves."""
    metrics = read_json(directory / "metrics.json")
    history = metrics.get("history", {"train": [], "eval": []})
    labels = directory / "labels.json"
    classes = len(read_json(labels).get("labels", [])) if labels.is_file() else 0
    running = convergence.running_error(history["train"], window)
    full = train_split or {}
    return {"run": spec.name, "config": spec.config, "label": spec.label, "group": spec.group,
            "model": spec.model, "depth": spec.depth, "seed": spec.seed,
            "architecture": metrics.get("architecture"), "params": metrics.get("trainable_params"),
            "steps": metrics["step"], "eval_examples": metrics["eval_examples"],
            "train_error_pct": 100.0 * (1.0 - full["top1"]) if full else None,
            "train_examples": full.get("examples"),
            "running_train_error_pct": 100.0 * running[-1]["train_error"] if running else None,
            "running_window_steps": window,
            "test_error_pct": 100.0 * (1.0 - metrics["eval_top1"]),
            "chance_error_pct": 100.0 * (1.0 - 1.0 / classes) if classes > 1 else None,
            "convergence": convergence.convergence(history, metrics["step"]),
            "history": {**history, "train_running": running}}


def paper_dataset(experiment: str, dataset: str, model: str | None = None) -> bool:
    """Whether the paper's figures for ``experiment`` were measured on ``dataset`` (and, for
    the shortcut options, on ``model``): only then do they share the measured rows."""
    name = dataset[len("tfds:"):] if dataset.startswith("tfds:") else dataset
    if experiment == "shortcuts":
        return name == paper.TABLE3_DATASET and model == paper.TABLE3_MODEL
    return name == paper.TABLE6_DATASET


def _paper_numbers(experiment: str, first: dict[str, Any]) -> tuple[float | None, float | None]:
    if experiment == "shortcuts":
        return paper.TABLE3_RESNET34_TOP1.get(first["group"]), None
    if first["group"] != "resnet":
        return None, None
    depth = first["depth"]
    return paper.TABLE6_TEST_ERROR.get(depth), paper.REPRODUCTION_TEST_ERROR.get(depth)


def _mean(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return float(np.mean(known)) if known and len(known) == len(values) else None


def _largest_drop(runs: list[dict[str, Any]]) -> float | None:
    drops = [d for r in runs for k, d in r.get("convergence", {}).items()
             if k.endswith("_drop_pts") and d is not None]
    return max(drops) if drops else None


def _converged(runs: list[dict[str, Any]]) -> bool | None:
    verdicts = [r.get("convergence", {}).get("converged") for r in runs]
    if False in verdicts:
        return False
    return None if None in verdicts else True


def aggregate(experiment: str, records: list[dict[str, Any]],
              same_dataset: bool = True) -> list[dict[str, Any]]:
    """One row per configuration, in the plan's order: best, mean and std (n - 1) of the
    test error over the seeds, mean training errors, convergence (False when any seed did
    not converge), and the published errors when ``same_dataset``."""
    configs: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        configs.setdefault(record["config"], []).append(record)
    rows = []
    for config, runs in configs.items():
        test = np.array([r["test_error_pct"] for r in runs])
        first = runs[0]
        published, reproduced = _paper_numbers(experiment, first) if same_dataset else (None,
                                                                                        None)
        rows.append({
            "config": config, "label": first["label"], "group": first["group"],
            "model": first["model"], "depth": first["depth"], "params": first["params"],
            "paper_depth": experiment == "shortcuts"
            or first["depth"] in paper.PAPER_CIFAR_DEPTHS,
            "seeds": len(runs), "steps": first.get("steps"), "converged": _converged(runs),
            "tail_drop_pts": _largest_drop(runs),
            "train_error_pct_mean": _mean([r.get("train_error_pct") for r in runs]),
            "train_examples": first.get("train_examples"),
            "running_train_error_pct_mean": _mean([r.get("running_train_error_pct")
                                                   for r in runs]),
            "test_error_pct_best": float(test.min()), "test_error_pct_mean": float(test.mean()),
            "test_error_pct_std": float(test.std(ddof=1)) if len(runs) > 1 else None,
            "test_examples": first.get("eval_examples"),
            "chance_error_pct": first.get("chance_error_pct"),
            "paper_test_error_pct": published, "reproduction_test_error_pct": reproduced})
    return rows


def _fmt(value: float | None, digits: int = 2) -> str:
    return "—" if value is None or (isinstance(value, float) and math.isnan(value)) \
        else f"{value:.{digits}f}"


def _params(value: int | None) -> str:
    return "—" if value is None else f"{value / 1e6:.2f} M"


def _mean_std(row: dict[str, Any]) -> str:
    if row["test_error_pct_std"] is None:
        return _fmt(row["test_error_pct_mean"])
    return f"{row['test_error_pct_mean']:.2f} ± {row['test_error_pct_std']:.2f}"


def _count(value: int | None, lead: str = " (") -> str:
    return "" if value is None else f"{lead}{value} images" + (")" if lead == " (" else "")


def at_chance(row: dict[str, Any]) -> bool:
    """Whether the test error is within :data:`CHANCE_MARGIN_PTS` of guessing (1 - 1/classes)."""
    chance = row.get("chance_error_pct")
    return chance is not None and row["test_error_pct_mean"] >= chance - CHANCE_MARGIN_PTS


def _verdict(row: dict[str, Any]) -> str:
    if row["converged"] is False:
        return f"**no** (falls {row['tail_drop_pts']:.1f} pts)"
    if row["converged"] and at_chance(row):
        return "flat at chance"
    return {True: "yes", None: "not judged"}[row["converged"]]


def _label(row: dict[str, Any]) -> str:
    return row["label"] if row["paper_depth"] else f"{row['label']} *"


def markdown_table(experiment: str, rows: list[dict[str, Any]],
                   same_dataset: bool = True) -> str:
    """The measured table; the paper's and the reproduction's columns only when
    ``same_dataset`` (the experiment ran on the dataset those figures come from)."""
    first = rows[0] if rows else {}
    header = ["network", "params", "seeds", "steps",
              f"train error % (full pass{_count(first.get('train_examples'), ', ')})",
              "running train error % (end)",
              f"test error % best{_count(first.get('test_examples'))}",
              "test error % mean ± std", "converged"]
    if same_dataset:
        header += (["paper: ImageNet ResNet-34 top-1 % (Table 3)"] if experiment == "shortcuts"
                   else ["paper test error % (Table 6)", "reproduction % (akamaster)"])
    lines = ["| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)]
    for row in rows:
        cells = [_label(row), _params(row["params"]), str(row["seeds"]), str(row["steps"]),
                 _fmt(row["train_error_pct_mean"]), _fmt(row["running_train_error_pct_mean"]),
                 _fmt(row["test_error_pct_best"]), _mean_std(row), _verdict(row)]
        if same_dataset:
            cells.append(_fmt(row["paper_test_error_pct"]))
            if experiment != "shortcuts":
                cells.append(_fmt(row["reproduction_test_error_pct"]))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def orientation_block(experiment: str, rows: list[dict[str, Any]], dataset: str) -> list[str]:
    """The paper's figures for an experiment run on another dataset: a separate, labelled
    block that shares no row with the measured numbers."""
    if experiment == "shortcuts":
        return ["## The paper, on ImageNet (ResNet-34), for orientation", "",
                f"Measured on another dataset or net ({dataset}): not comparable with the "
                "table above.", "", "| shortcut option | ImageNet ResNet-34 top-1 error % "
                "(Table 3, 10-crop) |", "|---|---:|",
                *[f"| {k} | {v:.2f} |" for k, v in paper.TABLE3_RESNET34_TOP1.items()]]
    depths = [d for d in dict.fromkeys(r["depth"] for r in rows) if d in paper.TABLE6_TEST_ERROR]
    depths = depths or list(paper.TABLE6_TEST_ERROR)
    return ["## The paper, on CIFAR-10, for orientation", "",
            f"Measured on CIFAR-10, not on {dataset}: not comparable with the table above.", "",
            "| network | paper test error % (Table 6) | reproduction % (akamaster) |",
            "|---|---:|---:|",
            *[f"| ResNet-{d} | {paper.TABLE6_TEST_ERROR[d]:.2f} | "
              f"{paper.REPRODUCTION_TEST_ERROR[d]:.2f} |" for d in depths]]


def _trend(rows: list[dict[str, Any]], group: str, name: str) -> str | None:
    chosen = sorted((r for r in rows if r["group"] == group), key=lambda r: r["depth"])
    if len(chosen) < 2:
        return None
    low, high = chosen[0], chosen[-1]
    caveat = "" if low["converged"] and high["converged"] else " Not conclusive (not converged)."
    return (f"{name}: test error {low['test_error_pct_mean']:.2f} % at depth {low['depth']}, "
            f"{high['test_error_pct_mean']:.2f} % at depth {high['depth']}; training error "
            f"(full pass) {_fmt(low['train_error_pct_mean'])} % -> "
            f"{_fmt(high['train_error_pct_mean'])} %.{caveat}")


def findings(experiment: str, rows: list[dict[str, Any]]) -> list[str]:
    """What the measured numbers show, computed from them (no verdict is assumed)."""
    if experiment == "shortcuts":
        order = sorted(rows, key=lambda r: r["test_error_pct_mean"])
        return ["- Measured, lowest test error first: "
                + ", ".join(f"{r['label']} {r['test_error_pct_mean']:.2f} %" for r in order) + "."]
    lines = [_trend(rows, "plain", "Plain nets"), _trend(rows, "resnet", "ResNets")]
    return [f"- {line}" for line in lines if line]


def convergence_lines(rows: list[dict[str, Any]]) -> list[str]:
    """Which configurations had not converged, and what that means for the comparison."""
    falling = [r["label"] for r in rows if r["converged"] is False]
    unjudged = [r["label"] for r in rows if r["converged"] is None]
    lines = []
    if falling:
        lines.append(f"**Not converged: {', '.join(falling)}.** Their error was still falling "
                     "at the end of the budget, so the comparison is not conclusive: the order "
                     "of the nets may change with more steps (`--steps`).")
    stuck = [r["label"] for r in rows if r["converged"] and at_chance(r)]
    if stuck:
        lines.append(f"{', '.join(stuck)}: flat at chance level (test error within "
                     f"{CHANCE_MARGIN_PTS:g} points of guessing): the net did not learn within "
                     "the budget; its curve no longer falls, so the rule counts it as converged.")
    if unjudged:
        lines.append(f"Convergence not judged for {', '.join(unjudged)} (too few logged points "
                     "in the last part of the run).")
    if not falling and not unjudged:
        lines.append("Every run converged by the rule below.")
    return [f"- {line}" for line in lines] + [f"- Rule: a run is {convergence.RULE}."]


def response_findings(responses: list[dict[str, Any]]) -> list[str]:
    """Mean response std of each net (first seed), to set beside Figure 7's claim."""
    seen: dict[str, float] = {}
    for item in responses:
        if item["label"] not in seen:
            seen[item["label"]] = float(np.mean([layer["std"] for layer in item["layers"]]))
    if not seen:
        return []
    return ["- Measured mean std of the 3x3 layer responses: "
            + ", ".join(f"{label} {value:.3f}" for label, value in seen.items()) + "."]


def _notes(experiment: str) -> list[str]:
    note = {"degradation": paper.DEGRADATION_NOTE, "shortcuts": paper.SHORTCUTS_NOTE,
            "responses": paper.RESPONSES_NOTE}.get(experiment, "")
    lines = [note] if note else []
    if experiment != "shortcuts":
        lines.append(f"ResNet-110 in Table 6: best of 5 runs {paper.TABLE6_TEST_ERROR[110]} %, "
                     f"mean {paper.TABLE6_RESNET110_MEAN_STD[0]} ± "
                     f"{paper.TABLE6_RESNET110_MEAN_STD[1]} %.")
    return lines


def write_results(out: Path, experiment: str, settings: dict[str, Any],
                  records: list[dict[str, Any]], extra: dict[str, Any] | None = None,
                  figures: list[str] | None = None) -> list[dict[str, Any]]:
    """Write the three result files atomically; returns the aggregated rows."""
    same = paper_dataset(experiment, settings["dataset"], settings.get("model"))
    rows = aggregate(experiment, records, same)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, CSV_COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows([{k: ("" if row.get(k) is None else row[k]) for k in CSV_COLUMNS}
                      for row in rows])
    atomic_write_text(out / "results.csv", buffer.getvalue())
    atomic_write_json(out / "results.json", {"experiment": experiment, "settings": settings,
                                             "paper_dataset": same,
                                             "convergence_rule": convergence.RULE,
                                             "configurations": rows, "runs": records,
                                             **(extra or {})})
    lines = response_findings((extra or {}).get("responses", []))
    atomic_write_text(out / "results.md",
                      markdown(experiment, settings, rows, figures or [], lines))
    return rows


def _legend(rows: list[dict[str, Any]], window: Any) -> list[str]:
    lines = [f"- Training error: full pass = the final model on every training image (no "
             f"augmentation, inference mode); running = the mean over the training batches "
             f"of the last {window} steps, as the paper's curves."]
    if not all(r["paper_depth"] for r in rows):
        lines.append("- \\* not one of the paper's depths (Table 6: "
                     f"{', '.join(map(str, paper.PAPER_CIFAR_DEPTHS))}).")
    return lines


def markdown(experiment: str, settings: dict[str, Any], rows: list[dict[str, Any]],
             figures: list[str], more: list[str]) -> str:
    """``results.md``: the measured table (with the paper's columns only on the paper's
    dataset), convergence, findings, then the paper's figures and notes."""
    dataset = settings["dataset"]
    same = paper_dataset(experiment, dataset, settings.get("model"))
    setup = ", ".join(f"{k} {v}" for k, v in settings.items() if v not in (None, [], False))
    parts = [f"# Experiment `{experiment}` on {dataset}", "", f"Settings: {setup}.", "",
             f"## Measured on {dataset}", "", markdown_table(experiment, rows, same), "",
             *_legend(rows, settings.get("eval_every")), "", *convergence_lines(rows), "",
             *findings(experiment, rows), *more]
    if same:
        parts += ["", "## What the paper reports", "", *_notes(experiment)]
    else:
        parts += ["", *orientation_block(experiment, rows, dataset), "", *_notes(experiment)]
    parts += ["", *[f"![{name}]({name})" for name in figures if name.endswith(".png")]]
    return "\n".join(parts).rstrip() + "\n"
