"""Figures in the paper's style, as PNG and SVG (matplotlib, no pyplot state).

Curves (Figures 1, 4 and 6): training error as thin dashed lines, test error as bold lines,
one colour per net; plain nets on the left and ResNets on the right on the same axes.
Layer responses (Figure 7): the standard deviation of each 3x3 layer's response in layer
order (top) and sorted by magnitude (bottom).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from keras_resnet.training.experiments import paper

DPI = 100
CURVES_SIZE = (10.0, 4.0)  # inches: 1000 x 400 pixels at DPI
RESPONSES_SIZE = (7.0, 7.0)
COLOURS = {20: "#e69f00", 32: "#0072b2", 44: "#009e73", 56: "#cc0000", 110: "#7b3294",
           1202: "#555555", "A": "#0072b2", "B": "#009e73", "C": "#cc0000"}
#: Depths outside the paper's (8, 14, 26, ...): one of these by depth, distinct for nearby depths.
OTHER_COLOURS = ("#56b4e9", "#d55e00", "#f0e442", "#000000", "#999999", "#cc79a7")
THIN, BOLD = 0.9, 2.2


def depth_colour(key: Any) -> str:
    """The colour of a depth (or shortcut option) in every figure."""
    if key in COLOURS:
        return COLOURS[key]
    return OTHER_COLOURS[(key // 6) % len(OTHER_COLOURS)] if isinstance(key, int) else "#333333"


def _figure(size: tuple[float, float]) -> Any:
    from matplotlib.figure import Figure

    return Figure(figsize=size, dpi=DPI)


def save(fig: Any, stem: Path) -> list[Path]:
    """Write ``stem.png`` and ``stem.svg``, each through a temporary file and a rename."""
    written = []
    for fmt in ("png", "svg"):
        path = stem.with_suffix(f".{fmt}")
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                fig.savefig(f, format=fmt, dpi=DPI)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        written.append(path)
    return written


def _iteration_scale(records: list[dict[str, Any]]) -> tuple[float, str]:
    last = max((r["steps"] for r in records), default=0)
    return (1e4, "iter. (1e4)") if last >= 20000 else (1.0, "iter.")


def _colour(record: dict[str, Any]) -> str:
    key = record["group"] if record["group"] in ("A", "B", "C") else record["depth"]
    return depth_colour(key)


def curves_panel(ax: Any, records: list[dict[str, Any]], title: str, scale: float,
                 xlabel: str, ylabel: bool = True) -> None:
    """One panel of Figure 6: per net, thin dashed training error and bold test error."""
    for record in records:
        colour, history = _colour(record), record["history"]
        train = history.get("train_running", history.get("train", []))
        test = history.get("eval", [])
        ax.plot([p["step"] / scale for p in train], [100 * p["train_error"] for p in train],
                color=colour, linewidth=THIN, linestyle="--")
        ax.plot([p["step"] / scale for p in test], [100 * p["eval_error"] for p in test],
                color=colour, linewidth=BOLD, label=record["label"])
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    if ylabel:
        ax.set_ylabel("error (%)")
    ax.legend(loc="best", fontsize="small", frameon=False)


def first_seed(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One run per configuration (the first seed), in plan order: the curves drawn."""
    seen, chosen = set(), []
    for record in records:
        if record["config"] not in seen:
            seen.add(record["config"])
            chosen.append(record)
    return chosen


def _caption(fig: Any, dataset: str, records: list[dict[str, Any]]) -> None:
    window = next((r.get("running_window_steps") for r in records), None)
    over = f"the last {window} steps" if window else "the logged steps"
    fig.text(0.5, 0.01, f"{dataset}: dashed = training error (running, over {over}), "
                        "bold = test error; first seed of each net", ha="center",
             fontsize="small")


def curves_figure(records: list[dict[str, Any]], stem: Path, dataset: str,
                  split_plain: bool) -> list[Path]:
    """Figure 6 style: plain nets (left) and ResNets (right) sharing the y axis, or one
    panel when ``split_plain`` is False."""
    chosen = first_seed(records)
    scale, xlabel = _iteration_scale(chosen)
    fig = _figure(CURVES_SIZE)
    if split_plain:
        left, right = fig.subplots(1, 2, sharey=True)
        curves_panel(left, [r for r in chosen if r["group"] == "plain"], "plain", scale, xlabel)
        curves_panel(right, [r for r in chosen if r["group"] != "plain"], "ResNet", scale, xlabel,
                     ylabel=False)
    else:
        curves_panel(fig.subplots(1, 1), chosen, "shortcut options (section 3.3)", scale, xlabel)
    fig.subplots_adjust(left=0.07, right=0.98, top=0.9, bottom=0.2, wspace=0.08)
    _caption(fig, dataset, chosen)
    return save(fig, stem)


def depth_figure(records: list[dict[str, Any]], rows: list[dict[str, Any]], stem: Path,
                 dataset: str, same_dataset: bool = True) -> list[Path]:
    """Table 6 as a figure: curves of each depth (left), test error against depth (right),
    with the paper's and the reproduction's only when ``same_dataset`` (CIFAR-10)."""
    chosen = first_seed(records)
    scale, xlabel = _iteration_scale(chosen)
    fig = _figure(CURVES_SIZE)
    left, right = fig.subplots(1, 2)
    curves_panel(left, chosen, "ResNet", scale, xlabel)
    depths = [r["depth"] for r in rows]
    right.plot(depths, [r["test_error_pct_mean"] for r in rows], "o-", color="black",
               linewidth=BOLD, label=f"measured ({dataset})")
    published = ((paper.TABLE6_TEST_ERROR, "s--", "paper, Table 6"),
                 (paper.REPRODUCTION_TEST_ERROR, "^:", "reproduction"))
    for table, style, label in published if same_dataset else ():
        known = [d for d in depths if d in table]
        right.plot(known, [table[d] for d in known], style, color="#777777", label=label)
    right.set_xscale("log")
    right.set_xticks(depths, [str(d) for d in depths])
    right.set_xlabel("depth")
    right.set_ylabel("test error (%)")
    right.legend(fontsize="small", frameon=False)
    fig.subplots_adjust(left=0.07, right=0.98, top=0.9, bottom=0.2, wspace=0.25)
    _caption(fig, dataset, chosen)
    return save(fig, stem)


def responses_figure(responses: list[dict[str, Any]], stem: Path, dataset: str) -> list[Path]:
    """Figure 7: std of the layer responses, in layer order (top) and sorted (bottom);
    plain nets dashed, ResNets solid."""
    fig = _figure(RESPONSES_SIZE)
    top, bottom = fig.subplots(2, 1)
    for item in responses:
        stds = [layer["std"] for layer in item["layers"]]
        style = "--" if item["group"] == "plain" else "-"
        colour = depth_colour(item["depth"])
        index = range(1, len(stds) + 1)
        top.plot(index, stds, style, color=colour, linewidth=1.2, label=item["label"])
        bottom.plot(index, sorted(stds, reverse=True), style, color=colour, linewidth=1.2,
                    label=item["label"])
    top.set_xlabel("layer index (original)")
    bottom.set_xlabel("layer index (sorted by magnitude)")
    from matplotlib.ticker import MaxNLocator

    for ax in (top, bottom):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel("std")
        ax.legend(fontsize="small", frameon=False)
    top.set_title(f"responses of the 3x3 layers ({dataset} test images)")
    fig.subplots_adjust(left=0.1, right=0.98, top=0.94, bottom=0.08, hspace=0.3)
    return save(fig, stem)
