"""``results.csv``, ``results.json`` and ``results.md``: the measured errors of every
configuration (best and mean +- std over its seeds, as the paper reports ResNet-110 in
Table 6) beside the published ones."""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Any

import numpy as np
from keras_resnet.training.experiments import paper
from keras_resnet.training.experiments.plan import RunSpec
from keras_resnet.training.outputs import atomic_write_json, atomic_write_text, read_json

CSV_COLUMNS = ("config", "label", "group", "model", "depth", "params", "seeds",
               "train_error_pct_mean", "test_error_pct_best", "test_error_pct_mean",
               "test_error_pct_std", "paper_test_error_pct", "reproduction_test_error_pct")


def run_record(spec: RunSpec, directory: Path) -> dict[str, Any]:
    """One finished run's numbers from its ``metrics.json`` (errors in %)."""
    metrics = read_json(directory / "metrics.json")
    return {"run": spec.name, "config": spec.config, "label": spec.label, "group": spec.group,
            "model": spec.model, "depth": spec.depth, "seed": spec.seed,
            "architecture": metrics.get("architecture"), "params": metrics.get("trainable_params"),
            "steps": metrics["step"], "eval_examples": metrics["eval_examples"],
            "train_error_pct": 100.0 * (1.0 - metrics["train_top1"]),
            "test_error_pct": 100.0 * (1.0 - metrics["eval_top1"]),
            "history": metrics.get("history", {"train": [], "eval": []})}


def _paper_numbers(experiment: str, first: dict[str, Any]) -> tuple[float | None, float | None]:
    if experiment == "shortcuts":
        return paper.TABLE3_RESNET34_TOP1.get(first["group"]), None
    if first["group"] != "resnet":
        return None, None
    depth = first["depth"]
    return paper.TABLE6_TEST_ERROR.get(depth), paper.REPRODUCTION_TEST_ERROR.get(depth)


def aggregate(experiment: str, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per configuration, in the plan's order: best, mean and std (n - 1) of the
    test error over the seeds, mean training error, and the published errors."""
    configs: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        configs.setdefault(record["config"], []).append(record)
    rows = []
    for config, runs in configs.items():
        test = np.array([r["test_error_pct"] for r in runs])
        first = runs[0]
        published, reproduced = _paper_numbers(experiment, first)
        rows.append({
            "config": config, "label": first["label"], "group": first["group"],
            "model": first["model"], "depth": first["depth"], "params": first["params"],
            "seeds": len(runs),
            "train_error_pct_mean": float(np.mean([r["train_error_pct"] for r in runs])),
            "test_error_pct_best": float(test.min()), "test_error_pct_mean": float(test.mean()),
            "test_error_pct_std": float(test.std(ddof=1)) if len(runs) > 1 else None,
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


def _paper_header(experiment: str) -> tuple[str, str]:
    if experiment == "shortcuts":
        return "paper: ImageNet ResNet-34 top-1 % (Table 3)", "—"
    return "paper test error % (Table 6)", "reproduction % (akamaster)"


def markdown_table(experiment: str, rows: list[dict[str, Any]]) -> str:
    """The results table: measured errors beside the published ones."""
    published, reproduced = _paper_header(experiment)
    lines = [f"| network | params | seeds | train error % | test error % best | "
             f"test error % mean ± std | {published} | {reproduced} |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for row in rows:
        lines.append(f"| {row['label']} | {_params(row['params'])} | {row['seeds']} | "
                     f"{_fmt(row['train_error_pct_mean'])} | {_fmt(row['test_error_pct_best'])} | "
                     f"{_mean_std(row)} | {_fmt(row['paper_test_error_pct'])} | "
                     f"{_fmt(row['reproduction_test_error_pct'])} |")
    return "\n".join(lines)


def _trend(rows: list[dict[str, Any]], group: str, name: str) -> str | None:
    chosen = sorted((r for r in rows if r["group"] == group), key=lambda r: r["depth"])
    if len(chosen) < 2:
        return None
    low, high = chosen[0], chosen[-1]
    return (f"{name}: test error {low['test_error_pct_mean']:.2f} % at depth {low['depth']}, "
            f"{high['test_error_pct_mean']:.2f} % at depth {high['depth']}; training error "
            f"{low['train_error_pct_mean']:.2f} % -> {high['train_error_pct_mean']:.2f} %.")


def findings(experiment: str, rows: list[dict[str, Any]]) -> list[str]:
    """What the measured numbers show, computed from them (no verdict is assumed)."""
    if experiment == "shortcuts":
        order = sorted(rows, key=lambda r: r["test_error_pct_mean"])
        return ["Measured, lowest test error first: "
                + ", ".join(f"{r['label']} {r['test_error_pct_mean']:.2f} %" for r in order) + "."]
    lines = [_trend(rows, "plain", "Plain nets"), _trend(rows, "resnet", "ResNets")]
    return [line for line in lines if line]


def response_findings(responses: list[dict[str, Any]]) -> list[str]:
    """Mean response std of each net (first seed), to set beside Figure 7's claim."""
    seen: dict[str, float] = {}
    for item in responses:
        if item["label"] not in seen:
            seen[item["label"]] = float(np.mean([layer["std"] for layer in item["layers"]]))
    if not seen:
        return []
    return ["Measured mean std of the 3x3 layer responses: "
            + ", ".join(f"{label} {value:.3f}" for label, value in seen.items()) + "."]


def _notes(experiment: str) -> str:
    return {"degradation": paper.DEGRADATION_NOTE, "shortcuts": paper.SHORTCUTS_NOTE,
            "responses": paper.RESPONSES_NOTE}.get(experiment, "")


def write_results(out: Path, experiment: str, settings: dict[str, Any],
                  records: list[dict[str, Any]], extra: dict[str, Any] | None = None,
                  figures: list[str] | None = None) -> list[dict[str, Any]]:
    """Write the three result files atomically; returns the aggregated rows."""
    rows = aggregate(experiment, records)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, CSV_COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows([{k: ("" if row.get(k) is None else row[k]) for k in CSV_COLUMNS}
                      for row in rows])
    atomic_write_text(out / "results.csv", buffer.getvalue())
    atomic_write_json(out / "results.json", {"experiment": experiment, "settings": settings,
                                             "configurations": rows, "runs": records,
                                             **(extra or {})})
    lines = response_findings((extra or {}).get("responses", []))
    atomic_write_text(out / "results.md",
                      _markdown(experiment, settings, rows, figures or [], lines))
    return rows


def _markdown(experiment: str, settings: dict[str, Any], rows: list[dict[str, Any]],
              figures: list[str], more: list[str]) -> str:
    setup = ", ".join(f"{k} {v}" for k, v in settings.items() if v not in (None, [], False))
    parts = [f"# Experiment `{experiment}`", "", f"Settings: {setup}.", "",
             markdown_table(experiment, rows), "", *findings(experiment, rows), *more]
    note = _notes(experiment)
    if note:
        parts += ["", note]
    if experiment != "shortcuts":
        parts += ["", f"ResNet-110 in Table 6: best of 5 runs {paper.TABLE6_TEST_ERROR[110]} %, "
                      f"mean {paper.TABLE6_RESNET110_MEAN_STD[0]} ± "
                      f"{paper.TABLE6_RESNET110_MEAN_STD[1]} %."]
    parts += ["", *[f"![{name}]({name})" for name in figures if name.endswith(".png")]]
    return "\n".join(parts).rstrip() + "\n"
