"""specact.report: the config table, figures, written finding and files on disk."""

import json

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from specact.cascade import run_all, synthetic_predictions, threshold_sweep
from specact.config import EvalConfig
from specact.report import (
    config_table,
    confusion_grid,
    format_table,
    frontier_figure,
    label_distribution_figure,
    markdown_table,
    per_source_figure,
    reliability_figure,
    to_jsonable,
    write_report,
    written_finding,
)
from specact.stats import baselines, reliability

B = 100  # bootstrap resamples: enough for a test


@pytest.fixture(scope="module")
def run():
    test, roles = synthetic_predictions(300, seed=0)
    dev, _ = synthetic_predictions(300, seed=1)
    results, choices = run_all(dev, test, roles, EvalConfig())
    base = baselines([r["label"] for r in dev], [r["label"] for r in test])
    table = config_table(results, base, n_resamples=B)
    sweeps = {c: threshold_sweep(test, roles, EvalConfig(), c) for c in ("D", "E")}
    return test, results, choices, table, sweeps


def test_config_table(run):
    _, results, _, t, _ = run
    t = t.set_index("config")
    assert list(t.index) == ["A", "A_frozen", "B", "C", "D", "E", "oracle", "random"]
    assert t.loc["C", "accuracy"] == t.loc["A", "accuracy"] and t.loc["C", "p_vs_A"] == 1.0
    assert np.isnan(t.loc["B", "p_vs_B"]) and np.isnan(t.loc["random", "p_vs_B"])  # self / expectation
    assert (t["accuracy_lo"] <= t["accuracy"]).all() and (t["accuracy"] <= t["accuracy_hi"]).all()
    assert t.loc["A", "x_random"] == pytest.approx(9 * t.loc["A", "accuracy"])
    assert np.isnan(t.loc["random", "macro_f1"]) and t.loc["B", "macro_f1"] > 0
    assert t.loc["D", "nominal_cost"] == pytest.approx(0.2 + (1 - t.loc["D", "accept_rate"]))
    shown = format_table(t.reset_index())
    assert shown["accuracy [95% CI]"].str.match(r"0\.\d{3} \[0\.\d{3}, 0\.\d{3}\]").all()


def test_figures_are_figures(run):
    test, results, _, table, sweeps = run
    ver = results["D"].steps
    rel = reliability(ver["proposal_correct"], [r["verifier_cheap"]["prob"] for r in test])
    figs = {
        "frontier": frontier_figure(table, sweeps),
        "confusion": confusion_grid(results, ["A", "B", "random"]),
        "reliability": reliability_figure(rel),
        "per_source": per_source_figure(results, ["A", "B", "D"]),
        "labels": label_distribution_figure({"test": [r["label"] for r in test], "dev": ["retrieval", "BLOCKED"]}),
    }
    assert all(isinstance(f, Figure) for f in figs.values())
    assert len([a for a in figs["confusion"].axes if a.get_visible()]) == 2  # random (expectation) has no matrix


def test_write_report_and_finding(run, tmp_path):
    _, results, choices, table, sweeps = run
    finding = written_finding(results, table, choices, n_resamples=B)
    assert "D reaches" in finding and "McNemar p=" in finding and "chosen on dev" in finding
    acc_d = table.set_index("config").loc["D", "accuracy"]
    assert f"{100 * acc_d:.1f}%" in finding  # generated from the numbers
    payload = {"configs": results, "choices": choices, "nan": float("nan"), "arr": np.arange(3)}
    paths = write_report(tmp_path, payload, {"configurations": format_table(table), "raw": table},
                         {"frontier": frontier_figure(table, sweeps)}, finding)
    data = json.loads(paths["results"].read_text())
    assert {"configs", "choices", "finding", "tables", "nan", "arr"} <= set(data)
    assert data["nan"] is None and data["arr"] == [0, 1, 2]
    assert data["configs"]["D"]["accuracy"] == pytest.approx(acc_d)
    assert data["choices"]["D"]["rule"] in ("target", "max_f1")
    assert data["tables"]["raw"][0]["config"] == "A" and data["tables"]["raw"][0]["accept_rate"] is None
    md = paths["report"].read_text()
    assert "![frontier](frontier.png)" in md and "| config |" in md and (tmp_path / "frontier.png").stat().st_size > 0


def test_finding_verdicts_follow_the_tests():
    # Small sample, weaker verifier: some comparisons significant, some not; each verdict must match its p.
    test, roles = synthetic_predictions(40, seed=3, separation=0.5)
    results, _ = run_all(test, test, roles, EvalConfig(), configs=("A", "B", "D"))
    t = config_table(results, n_resamples=B).set_index("config")
    text = written_finding(results, t.reset_index())
    for ref in ("A", "B"):
        p = t.loc["D", f"p_vs_{ref}"]
        verdict = "significant" if p < 0.05 else "not significant"
        assert f"vs {ref} (McNemar p={p:.2g}, {verdict})" in text
    if t.loc["D", "p_vs_A"] >= 0.05 and t.loc["D", "accuracy_lo"] <= t.loc["A", "accuracy_hi"]:
        assert "cannot tell D from A" in text


def test_markdown_and_json_helpers():
    df = pd.DataFrame({"a": [1.5, np.nan], "b": ["x|y", None]})
    lines = markdown_table(df).splitlines()
    assert lines[:2] == ["| a | b |", "|---|---|"]
    assert lines[2] == "| 1.5 | x\\|y |" and lines[3] == "| – | – |"
    assert to_jsonable({"x": np.float32(np.inf), "y": (np.int64(2),), "z": pd.Series({"k": np.nan})}) == {
        "x": None, "y": [2], "z": {"k": None}}
