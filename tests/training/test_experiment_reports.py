"""The experiment report on fabricated run histories (no training): the paper's figures share
the measured rows only on the paper's dataset, training error is the running error over a
window, a run whose error still falls is marked not converged, and any 6n + 2 depth is
planned and marked as not one of the paper's."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from keras_resnet.training.errors import UsageError
from keras_resnet.training.experiments import convergence, paper, results
from keras_resnet.training.experiments.plan import check_depths, plan_runs

STEPS, EVAL_EVERY = 150, 7


def _history(final: float, still_falling: bool) -> dict:
    """Errors that fall linearly to ``final`` at the last step, or reach it by mid-run."""
    def error(step: int) -> float:
        reach = STEPS if still_falling else STEPS // 2
        return final + max(0.0, 0.8 - final) * max(0.0, 1 - step / reach)

    evals = [*range(EVAL_EVERY, STEPS, EVAL_EVERY), STEPS]
    return {"train": [{"step": s, "train_error": error(s)} for s in range(1, STEPS + 1)],
            "eval": [{"step": s, "eval_error": error(s) + 0.02} for s in evals]}


def _records(tmp_path: Path, depths: tuple[int, ...], falling: set[str] = frozenset()) -> list:
    records = []
    for spec in plan_runs("degradation", depths=depths, seeds=1, base_seed=0):
        history = _history(0.10 + spec.depth / 1000, spec.config in falling)
        folder = tmp_path / spec.name
        folder.mkdir()
        (folder / "metrics.json").write_text(json.dumps({
            "step": STEPS, "eval_examples": 360, "trainable_params": 270_000,
            "eval_top1": 1 - history["eval"][-1]["eval_error"], "history": history}))
        records.append(results.run_record(spec, folder, EVAL_EVERY,
                                          {"top1": 0.95, "examples": 1437}))
    return records


def _sections(markdown: str) -> dict[str, str]:
    parts = markdown.split("\n## ")
    return {part.splitlines()[0]: part for part in parts[1:]}


def _report(tmp_path: Path, dataset: str, records: list) -> str:
    settings = {"dataset": dataset, "steps": STEPS, "eval_every": EVAL_EVERY}
    results.write_results(tmp_path, "degradation", settings, records)
    return (tmp_path / "results.md").read_text()


def test_digits_report_keeps_the_paper_out_of_the_measured_rows(tmp_path: Path) -> None:
    records = _records(tmp_path, (20, 56))
    sections = _sections(_report(tmp_path, "digits", records))
    measured = sections["Measured on digits"]
    rows = [line for line in measured.splitlines() if line.startswith("| ")]
    assert len(rows) == 5 and "paper" not in rows[0] and "reproduction" not in rows[0]
    published = {f"{v:.2f}" for v in (*paper.TABLE6_TEST_ERROR.values(),
                                      *paper.REPRODUCTION_TEST_ERROR.values())}
    cells = {cell.strip() for row in rows for cell in row.split("|")}
    assert not cells & published
    orientation = sections["The paper, on CIFAR-10, for orientation"]
    assert "not on digits" in orientation
    assert "| ResNet-20 | 8.75 | 8.27 |" in orientation
    assert "| ResNet-56 | 6.97 | 6.61 |" in orientation
    csv_rows = (tmp_path / "results.csv").read_text().splitlines()
    assert all(row.endswith(",,") for row in csv_rows[1:])  # no published figure either


def test_cifar10_report_sets_the_paper_beside_the_measured_rows(tmp_path: Path) -> None:
    records = _records(tmp_path, (20, 56))
    sections = _sections(_report(tmp_path, "cifar10", records))
    measured = sections["Measured on cifar10"]
    assert "paper test error % (Table 6)" in measured
    row = next(line for line in measured.splitlines() if line.startswith("| ResNet-56 |"))
    assert row.endswith("| yes | 6.97 | 6.61 |")
    assert not any("orientation" in title for title in sections)


def test_training_error_is_running_over_the_window_and_the_full_pass(tmp_path: Path) -> None:
    train = [{"step": s, "train_error": e} for s, e in ((2, 0.5), (4, 0.3), (5, 0.0), (8, 0.2))]
    running = convergence.running_error(train, window=4)
    # step 8: points at 5 (1 step) and 8 (3 steps) lie in (4, 8]
    assert [p["train_error"] for p in running] == pytest.approx([0.5, 0.4, 0.32, 0.15])
    record = _records(tmp_path, (20,))[1]
    assert record["train_error_pct"] == pytest.approx(5.0) and record["train_examples"] == 1437
    assert record["running_train_error_pct"] == pytest.approx(12.0)
    assert record["history"]["train_running"][-1]["step"] == STEPS


def test_a_run_whose_error_still_falls_is_not_converged(tmp_path: Path) -> None:
    records = _records(tmp_path, (20, 56), falling={"plain56", "resnet56"})
    verdicts = {r["config"]: r["convergence"] for r in records}
    assert verdicts["resnet20"]["converged"] is True
    assert verdicts["resnet20"]["train_drop_pts"] == pytest.approx(0.0, abs=1e-6)
    assert verdicts["resnet56"]["converged"] is False
    # 0.8 - 0.156 = 64.4 points over the run, 20 % of it still to fall at the end
    assert verdicts["resnet56"]["train_drop_pts"] == pytest.approx(64.4 * 0.2, rel=0.02)
    markdown = _report(tmp_path, "digits", records)
    assert "**Not converged: plain-56, ResNet-56.**" in markdown
    assert "the comparison is not conclusive" in markdown
    row = next(line for line in markdown.splitlines() if line.startswith("| ResNet-56 |"))
    assert "| **no** (falls 12.9 pts) |" in row
    assert "Not conclusive (not converged)." in markdown  # the depth trend, too
    assert convergence.convergence({"train": [], "eval": []}, STEPS)["converged"] is None


def test_a_flat_run_at_chance_is_named(tmp_path: Path) -> None:
    spec = plan_runs("degradation", depths=(56,), seeds=1, base_seed=0)[0]
    flat = {"train": [{"step": s, "train_error": 0.9} for s in range(1, STEPS + 1)],
            "eval": [{"step": s, "eval_error": 0.9} for s in range(EVAL_EVERY, STEPS, EVAL_EVERY)]}
    (tmp_path / "metrics.json").write_text(json.dumps({
        "step": STEPS, "eval_examples": 360, "trainable_params": 1, "eval_top1": 0.1,
        "history": flat}))
    (tmp_path / "labels.json").write_text(json.dumps({"labels": list("0123456789")}))
    record = results.run_record(spec, tmp_path, EVAL_EVERY, {"top1": 0.1, "examples": 1437})
    assert record["convergence"]["converged"] is True and record["chance_error_pct"] == 90.0
    row = results.aggregate("degradation", [record], same_dataset=False)[0]
    assert results.markdown_table("degradation", [row], False).endswith("| flat at chance |")
    assert "plain-56: flat at chance level" in results.convergence_lines([row])[0]


def test_any_depth_the_zoo_builds_is_planned_and_marked(tmp_path: Path) -> None:
    assert check_depths("degradation", [8, 14]) == (8, 14)
    for bad in ([9], [2], [20, 20]):
        with pytest.raises(UsageError, match="--depths"):
            check_depths("degradation", bad)
    plan = plan_runs("degradation", depths=(8, 20), seeds=1, base_seed=0)
    assert [(r.name, r.model, r.flags) for r in plan] == [
        ("plain8-seed0", "resnet20", ("--depth", "8", "--plain")),
        ("plain20-seed0", "resnet20", ("--plain",)),
        ("resnet8-seed0", "resnet20", ("--depth", "8")),
        ("resnet20-seed0", "resnet20", ())]
    markdown = _report(tmp_path, "digits", _records(tmp_path, (8, 20)))
    assert "| ResNet-8 * |" in markdown and "| ResNet-20 |" in markdown
    assert "not one of the paper's depths (Table 6: 20, 32, 44, 56, 110, 1202)" in markdown


def test_the_trainer_builds_the_depth_it_is_given() -> None:
    from keras_resnet.training.experiments.runner import resolve_run

    import keras_resnet

    spec = plan_runs("degradation", depths=(8,), seeds=1, base_seed=0)[1]
    cfg = resolve_run(spec, spec.trainer_argv(Path("unused"), ["--dataset", "digits"]))
    assert cfg.model.architecture["depth"] == 8 and cfg.model.architecture["residual"]
    model = keras_resnet.create_model(cfg.model.name, weights=None, input_shape=(16, 16, 3),
                                      classes=10, **cfg.model.architecture)
    convs = [layer for layer in model.layers if type(layer).__name__ == "Conv2D"]
    assert model.name == "resnet8" and len(convs) + 1 == 8  # 7 convolutions and the classifier
