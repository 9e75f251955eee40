"""specact.report / specact.compare: tables, figures, the rendered report and runs compared."""

import json

import nbformat
import numpy as np
import pandas as pd
import pytest
from helpers import synthetic_predictions
from matplotlib.figure import Figure

import specact.evaluate as ev
from specact import report
from specact.compare import compare, compare_table, load_results
from specact.config import EvalConfig
from specact.deferral import run_all, signal_report
from specact.pipeline import NOTEBOOKS
from specact.stats import reliability

B = 100  # bootstrap resamples: enough for a test
PROVENANCE_KEYS = {"git_commit", "git_dirty", "date", "packages", "device", "params", "stages"}


@pytest.fixture(scope="module")
def run():
    test, roles = synthetic_predictions(300, seed=0)
    dev, _ = synthetic_predictions(300, seed=1)
    results, choices = run_all(dev, test, roles, EvalConfig())
    table = report.config_table(results, n_resamples=B)
    sweeps = report.threshold_sweeps(test, roles, EvalConfig(), results)
    return test, results, choices, table, sweeps


def test_config_table_and_headline(run):
    _, results, _, t, _ = run
    assert list(t["config"]) == report._ordered(results)  # the registry's order, only what exists
    t = t.set_index("config")
    assert t.loc["C", "accuracy"] == t.loc["A", "accuracy"] and t.loc["C", "p_vs_A"] == 1.0
    assert np.isnan(t.loc["B", "p_vs_B"]) and np.isfinite(t.loc["random", "p_vs_B"])  # self / an expectation is tested too
    assert (t["accuracy_lo"] <= t["accuracy"]).all() and (t["accuracy"] <= t["accuracy_hi"]).all()
    head = report.headline_table(t.reset_index(), ood=t.reset_index())
    assert head.shape[1] <= 9 and len(head) == len(t)
    assert head["accuracy, test [95% CI]"].str.match(r"^\d{1,3}\.\d% \[\d{1,3}\.\d, \d{1,3}\.\d\]$").all()
    assert "nan" not in head.to_string().lower()
    app = report.appendix_table(t.reset_index())
    assert not app.map(lambda v: isinstance(v, str) and "0000000" in v).any().any()  # no float noise


def test_p_values_and_intervals_are_the_cluster_ones(run):
    """Every p-value of the table is stats.paired_cluster_test over the steps' scenario groups, and every
    accuracy interval the cluster bootstrap over the same groups (a step-level test or interval fails)."""
    from specact.stats import cluster_bootstrap_ci, paired_cluster_test

    test, results, _, t, _ = run
    groups = [r["group"] for r in test]  # the rows' scenario groups (4 steps each)
    t = t.set_index("config")
    assert (t["n_clusters"] == len(set(groups))).all() and len(set(groups)) < len(test)
    for name, res in results.items():
        s = res.steps
        assert list(s["group"]) == groups
        acc = cluster_bootstrap_ci(s["correct"].astype(float), groups, B, 0)
        assert (t.loc[name, "accuracy_lo"], t.loc[name, "accuracy_hi"]) == pytest.approx((acc.low, acc.high))
        for ref in ("A", "B"):
            if ref == name:
                continue
            want = paired_cluster_test(s["correct"].astype(float), results[ref].steps["correct"].astype(float), groups, B, 0)
            assert t.loc[name, f"p_vs_{ref}"] == pytest.approx(want.pvalue), (name, ref)
    # Clustering matters here: the same test with steps as independent clusters gives another p.
    d, a = results["D"].steps["correct"].astype(float), results["A"].steps["correct"].astype(float)
    assert paired_cluster_test(d, a, None, B, 0).pvalue != pytest.approx(t.loc["D", "p_vs_A"])
    head = report.headline_table(t.reset_index())
    assert {"p vs A (paired cluster test)", "p vs B (paired cluster test)"} <= set(head.columns)
    vs_random = report.paired_p(results["D"], results["random"], B)  # D against random acceptance in expectation
    text = report.written_finding(results, t.reset_index(), n_resamples=B)
    assert (f"adds {100 * vs_random.diff:+.1f} points [{100 * vs_random.low:+.1f}, {100 * vs_random.high:+.1f}] "
            f"(paired cluster test {report.p_text(vs_random.pvalue)})") in text


def test_per_source_and_verifier_intervals_are_cluster_bootstraps(run):
    from specact.stats import cluster_auroc, cluster_bootstrap_ci

    test, results, _, _, _ = run
    ps = report.per_source_table(results, n_resamples=B).set_index(["config", "source"])
    s = results["B"].steps
    on = (s["domain"] == "bfcl:A").to_numpy()
    want = cluster_bootstrap_ci(s["correct"].astype(float)[on], s["group"][on], B, 0)
    got = ps.loc[("B", "bfcl:A")]
    assert (got["accuracy"], got["accuracy_lo"], got["accuracy_hi"]) == pytest.approx(tuple(want))
    assert got["n_clusters"] == len(set(s["group"][on])) < got["n"]
    q = report.verifier_quality(test, n_resamples=B)["auroc"]
    y = results["D"].steps["proposal_correct"].astype(int)
    want = cluster_auroc(y, [r["verifier_cheap"]["prob"] for r in test], [r["group"] for r in test], B, 0)
    assert (q["auroc"], q["low"], q["high"]) == pytest.approx((want["auroc"], want["low"], want["high"]))


def test_figures(run):
    test, results, _, table, sweeps = run
    rel = reliability(results["D"].steps["proposal_correct"], [r["verifier_cheap"]["prob"] for r in test])
    fr = report.frontier_figure(table, sweeps)
    cm = report.confusion_grid(results, ["A", "B", "random"])
    figs = [fr, cm, report.reliability_figure(rel), report.per_source_figure(results, ["A", "B", "D"])]
    assert all(isinstance(f, Figure) for f in figs)
    panels = [a for a in cm.axes if a.get_visible() and a.get_label() != "<colorbar>"]
    assert len(panels) == 2 and any(a.get_label() == "<colorbar>" for a in cm.axes)  # random has no matrix; one bar
    labels = [t.get_text() for t in fr.axes[0].texts]
    assert sorted(labels) == sorted(table["config"])  # every configuration labelled directly, once per panel
    legend = fr.legends[0].get_texts() if fr.legends else []
    assert not set(table["config"]) & {t.get_text() for t in legend}  # no configuration repeated in the legend
    assert all(ax.get_xlabel() and ax.get_ylabel() for ax in fr.axes)


def test_per_source_grid(run):
    _, results, _, _, _ = run
    ps = report.per_source_table(results)
    assert ((ps["accuracy_lo"] <= ps["accuracy"]) & (ps["accuracy"] <= ps["accuracy_hi"])).all()
    grid = report.per_source_grid(ps)
    assert list(grid.columns[1:]) == list(results) and grid.iloc[:, 0].str.contains(r"\(n=\d+\)").all()


def test_finding_verdicts_follow_the_tests():
    # Small sample, weaker verifier: some comparisons significant, some not; each verdict must match its p.
    test, roles = synthetic_predictions(40, seed=3, separation=0.5)
    results, _ = run_all(test, test, roles, EvalConfig(), configs=("A", "B", "D"))
    t = report.config_table(results, n_resamples=B).set_index("config")
    text = report.written_finding(results, t.reset_index())
    for ref in ("A", "B"):
        p = t.loc["D", f"p_vs_{ref}"]
        assert p == report.paired_p(results["D"], results[ref], B).pvalue  # the cluster test, not McNemar
        verdict = "significant" if p < 0.05 else "not significant"
        assert f"vs {ref} (paired cluster test {report.p_text(p)}, {verdict})" in text
    assert "McNemar" not in text and "from 10 scenario groups" in text and "cluster bootstrap" in text
    if t.loc["D", "p_vs_A"] >= 0.05 and t.loc["D", "accuracy_lo"] <= t.loc["A", "accuracy_hi"]:
        assert "cannot tell D from A" in text
    assert "nan" not in text.lower() and "**Accuracy**" in text  # terms defined, nothing missing printed


def test_markdown_and_json_helpers():
    df = pd.DataFrame({"a": [1.5, np.nan], "b": ["x|y", None]})
    lines = report.markdown_table(df).splitlines()
    assert lines[:2] == ["| a | b |", "|---|---|"]
    assert lines[2] == "| 1.5 | x\\|y |" and lines[3] == "| – | – |"
    assert report.to_jsonable({"x": np.float32(np.inf), "y": (np.int64(2),), "z": pd.Series({"k": np.nan})}) == {
        "x": None, "y": [2], "z": {"k": None}}


# ---------------------------------------------------------------- the rendered report
def make_eval(root, n=90, splits=(("test", 0, 0.6), ("ood", 2, 0.45)), seed=0):
    """A run folder holding what 05/06 write: per split, prediction rows and every configuration's steps
    (``seed``: the run's training seed, as params.yaml records it)."""
    dev, roles = synthetic_predictions(n, seed=1)
    for split, data_seed, p_cheap in splits:
        rows, _ = synthetic_predictions(n, seed=data_seed, p_cheap=p_cheap)
        d = root / "eval" / split
        for name, res in run_all(dev, rows, roles, EvalConfig())[0].items():
            res.save(d / name)
        signal_report(rows, roles, EvalConfig(), B, 0).to_csv(d / "signals.csv", index=False)  # as 06's D notebook does
        ev.write_rows(rows, d / "predictions.jsonl")
        (d / "roles.json").write_text(json.dumps(roles))
    (root / "params.yaml").write_text(f"run_id: {root.name}\nseed: {seed}\n")
    (root / "stages").mkdir(exist_ok=True)
    (root / "stages" / "predict.json").write_text(json.dumps({"status": "ok", "seconds": 12.5, "key": "x"}))
    return root


def render(tmp_path, name, run_dir=None, seed=0):
    import papermill as pm

    run_dir, out = run_dir or make_eval(tmp_path / name), tmp_path / f"report-{name}"
    out.mkdir()
    pm.execute_notebook(str(NOTEBOOKS / "07_report.ipynb"), str(out / "07_report.ipynb"), kernel_name="specact",
                        parameters={"run_dir": str(run_dir), "eval_dir": str(run_dir / "eval" / "test"),
                                    "report_dir": str(out), "eval": {"bootstrap": B}, "seed": seed}, progress_bar=False)
    report.publish(out / "07_report.ipynb", out)
    return out


def render_seed(tmp_path, name, seed):
    """The report of seed ``seed`` of study ``name`` (run ``<name>-s<seed>``): the same steps, other predictions."""
    splits = (("test", 10 * seed, 0.6), ("ood", 10 * seed + 2, 0.45))
    run_dir = make_eval(tmp_path / f"{name}-s{seed}", splits=splits, seed=seed)
    return render(tmp_path, f"{name}-s{seed}", run_dir, seed)


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    return render(tmp_path_factory.mktemp("rep"), "smoke_a")


def test_rendered_report_shows_every_figure(rendered):
    html = (rendered / "report.html").read_text()
    md = (rendered / "report.md").read_text()
    for name in ("frontier", "reliability", "per_source", "confusion"):
        assert f"![png]({name}.png)" in md, name  # report.md: the notebook's own image, named
        assert (rendered / f"{name}.png").stat().st_size > 0 and (rendered / f"{name}.svg").stat().st_size > 0
    assert html.count("<img") >= 4 and html.count('src="data:image/png;base64') >= 4
    nb = nbformat.read(rendered / "07_report.ipynb", as_version=4)
    outputs = json.dumps([c.get("outputs", []) for c in nb.cells])
    assert "<Figure size" not in outputs and "<Figure size" not in html and "<Figure size" not in md
    assert '"stderr"' not in outputs  # no progress bar or warning noise in the executed notebook
    assert "import specact" not in html and "report.gather" not in html  # code and hide-tagged cells left out
    assert "nan" not in md.replace("nano", "").lower().split("## provenance")[0]


def test_rendered_report_headline_and_provenance(rendered):
    md = (rendered / "report.md").read_text()
    start = md.index("**Table 1.")
    header = md[start:].split("\n")[2]
    assert 5 <= header.count("|") - 1 <= 9 and "accuracy, ood" in header  # test and ood side by side
    res = json.loads((rendered / "results.json").read_text())
    assert PROVENANCE_KEYS <= set(res["provenance"])
    assert res["provenance"]["params"]["run_id"] == "smoke_a" and res["provenance"]["stages"]["predict"]["seconds"] == 12.5
    assert res["provenance"]["packages"]["torch"] and res["provenance"]["device"]["cpu"]
    assert {"configurations_test", "configurations_ood", "signals_test"} <= set(res["tables"])
    assert "Table 2. Gap recovered by each deferral signal" in md and "Table 2b. AUROC" in md


# ---------------------------------------------------------------- notebook 07's inputs, gathered
@pytest.fixture(scope="module")
def gathered(tmp_path_factory):
    run_dir = make_eval(tmp_path_factory.mktemp("gather") / "run", n=40)
    return report.gather(run_dir / "eval" / "test", EvalConfig(bootstrap=B), seed=0)


def test_gather_reads_every_reported_split_and_derives_on_the_main_one(gathered):
    g = gathered
    assert g.main_split == "test" and list(g.results) == list(g.tables) == list(g.per_source) == ["test", "ood"]
    assert list(g.main_results) == report._ordered(g.main_results) and {"random", "oracle"} <= set(g.main_results)
    assert g.ood_table is g.tables["ood"] and set(g.signals) == {"test", "ood"}
    assert len(g.rows) == 40 and g.roles and g.n_resamples == B
    pd.testing.assert_frame_equal(g.tables["ood"], report.config_table(g.results["ood"], None, B, 0))
    pd.testing.assert_frame_equal(g.per_source["ood"], report.per_source_table(g.results["ood"]))
    assert g.verifier["auroc"] == report.verifier_quality(g.rows, B, 0)["auroc"]
    assert set(g.sweeps) == {"D", "D_conf", "E"} & set(g.main_results) and set(g.choices) <= set(g.sweeps) | {"random"}
    pd.testing.assert_frame_equal(g.frontier, report.frontier_summary(g.main_table, g.sweeps))
    on_ood = report.gather(g.split_dirs["ood"], EvalConfig(split="ood", bootstrap=B))  # reporting ood: nothing beside it
    assert on_ood.main_split == "ood" and on_ood.ood_table is None


def test_gather_adds_random_and_the_oracle_when_the_eval_stage_did_not(tmp_path):
    import shutil

    run_dir = make_eval(tmp_path / "run", n=40, splits=(("test", 0, 0.6),))
    for name in ("random", "oracle"):
        shutil.rmtree(run_dir / "eval" / "test" / name)
    g = report.gather(run_dir / "eval" / "test", EvalConfig(bootstrap=B))
    assert {"random", "oracle"} <= set(g.main_results) and g.ood_table is None
    assert g.main_results["random"].accept_rate == pytest.approx(g.main_results["D"].accept_rate)


def test_headline_and_table_captions(gathered):
    g = gathered
    table, caption = report.headline(g)
    assert caption == f"Table 1. {len(g.main_table)} configurations, 40 test steps"
    assert "accuracy, ood [95% CI]" in table and len(table) == len(g.main_table)
    assert [c for _, c in report.per_source_tables(g)] == ["Table 3. Accuracy by source, test split",
                                                          "Table 3b. Accuracy by source, ood split"]
    assert [c for _, c in report.appendix_tables(g)] == ["Appendix A (test). All measures", "Appendix A (ood). All measures"]
    assert report.per_source_tables(g)[1][0].equals(report.per_source_grid(g.per_source["ood"]))


def test_deferral_signal_tables_fall_back_to_the_frontier_then_to_a_note(gathered):
    from dataclasses import replace

    captions = [c for _, c in report.deferral_signal_tables(gathered)]
    assert captions == ["Table 2. Gap recovered by each deferral signal, test split",
                        "Table 2b. AUROC of each deferral signal on the cheap model's test proposals"]
    (frontier, caption), = report.deferral_signal_tables(replace(gathered, signals={}))
    assert caption == "Table 2. Gap recovered by each threshold sweep" and "APGR" in frontier
    assert report.deferral_signal_tables(replace(gathered, signals={}, frontier=pd.DataFrame())) == [
        "*No thresholded configuration with both A and B: no frontier summary.*"]


def test_verifier_summary_and_its_figure(gathered, capsys):
    from dataclasses import replace

    a = gathered.verifier["auroc"]
    assert report.verifier_summary(gathered).startswith(f"Verifier AUROC **{a['auroc']:.2f}** [95% CI {a['low']:.2f}, ")
    assert "on 40 test steps; expected calibration error" in report.verifier_summary(gathered)
    assert isinstance(report.show_verifier_quality(gathered)["reliability"], Figure)
    none = replace(gathered, verifier=None)
    assert report.verifier_summary(none) == "*This run has no verifier scores on the reported steps.*"
    assert report.show_verifier_quality(none) == {}  # nothing drawn, nothing saved


def test_figure_choices(gathered):
    from specact.deferral import run_configuration

    assert report.main_configurations({"A": 1, "random": 1, "E": 1, "oracle": 1}) == ["A", "E"]
    assert report.main_configurations({"oracle": 1}) is None  # none of the main ones: draw every configuration
    rows, roles = gathered.rows, gathered.roles
    simulated = run_configuration("random", rows, roles, EvalConfig(), accept_rate=0.5, random_mode="simulate")
    assert simulated.steps["pred"].notna().all()  # a simulated random does predict, and is still left out
    fig = report.confusion_figure({"A": gathered.main_results["A"], "random": simulated})
    assert [a.get_title().split(" ")[0] for a in fig.axes if a.get_visible() and a.get_label() != "<colorbar>"] == ["A"]


def test_show_tables_shows_pairs_as_tables_and_strings_as_markdown(monkeypatch, capsys):
    shown = []
    monkeypatch.setattr(report, "show_table", lambda df, caption="": shown.append(caption))
    report.show_tables([(pd.DataFrame({"a": [1]}), "T1"), "*a note*"])
    assert shown == ["T1"] and "Markdown" in capsys.readouterr().out  # outside a kernel, display prints the object


def test_results_json_is_the_gathered_document(rendered):
    """Notebook 07's results.json holds results_document and results_tables of report.gather on the same run."""
    res = json.loads((rendered / "results.json").read_text())
    g = report.gather(rendered.parent / "smoke_a" / "eval" / "test", EvalConfig(bootstrap=B), seed=0)
    doc = json.loads(json.dumps(report.to_jsonable(report.results_document(g))))
    assert {k: res[k] for k in doc} == doc
    assert doc["main_split"] == "test" and doc["n_steps"] == len(g.rows) and set(doc["splits"]) == {"test", "ood"}
    tables = report.results_tables(g)
    assert set(res["tables"]) == set(tables) == {"configurations", "configurations_test", "configurations_ood",
                                                 "per_source_test", "per_source_ood", "signals_test", "signals_ood"}
    assert res["tables"]["per_source_ood"] == json.loads(json.dumps(report.to_jsonable(tables["per_source_ood"])))


def test_compare_two_runs(rendered, tmp_path):
    # A second run: the same results under another run id, one configuration fewer (B's accuracy changed).
    res = json.loads((rendered / "results.json").read_text())
    res["provenance"]["params"]["run_id"] = "smoke_b"
    res["tables"] = {k: [r for r in v if r.get("config") != "E"] if k.startswith("configurations_") else v
                     for k, v in res["tables"].items()}
    (tmp_path / "results.json").write_text(json.dumps(res))
    df = compare([rendered, tmp_path / "results.json"])
    n_configs = len(json.loads((rendered / "results.json").read_text())["tables"]["configurations_test"])
    per = df[df["split"] == "test"].groupby("run")["config"]
    assert per.size().to_dict() == {"smoke_a": n_configs, "smoke_b": n_configs - 1} and (per.nunique() == per.size()).all()
    one = load_results(rendered)
    assert set(one["split"]) == {"test", "ood"} and one["accuracy"].between(0, 1).all()
    sig = pd.DataFrame(res["tables"]["signals_test"])
    d_row = one[(one["split"] == "test") & (one["config"] == "D")].iloc[0]
    assert d_row["apgr"] == pytest.approx(sig[sig["config"] == "D"]["apgr"].iloc[0])  # the eval stage's APGR
    assert d_row["verifier_auroc"] == pytest.approx(sig[sig["signal"] == "verifier"]["auroc"].iloc[0])
    shown = compare_table(df, split="test")
    assert len(shown) == 2 * n_configs - 1 and shown["accuracy [95% CI]"].str.contains("%").all()


def test_report_to_reaches_the_trainer_arguments(monkeypatch, tmp_path):
    """OptimConfig.report_to: none by default; tensorboard passed on only where it is installed."""
    import importlib.util

    import torch

    from specact import trainer_common as tc
    from specact.config import StrongConfig

    args = tc.common_args(StrongConfig(), tmp_path, 0, torch.device("cpu"), quiet=True)
    assert args["report_to"] == "none" and args["disable_tqdm"] is True
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda m, *a: object() if m == "tensorboard" else real(m, *a))
    assert tc.common_args(StrongConfig(report_to="tensorboard"), tmp_path, 0, torch.device("cpu"), False)["report_to"] == "tensorboard"
    monkeypatch.setattr(importlib.util, "find_spec", lambda m, *a: None if m.startswith("tensorboard") else real(m, *a))
    with pytest.warns(UserWarning, match="not installed"):
        assert tc.report_to("tensorboard") == "none"


def test_compare_command(capsys, tmp_path):
    """`specact compare` is wired into the CLI: Markdown on stdout, the three files with --out."""
    from specact.__main__ import main
    from specact.pipeline import REPO

    published = REPO / "reports" / "published"
    assert main(["compare", str(published / "2026-11-26-default"), str(published / "2026-11-26-gpu"), "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("| run | split | configuration |") and out.count("\n| ") == 16  # 8 configurations x 2 runs
    assert {p.name for p in tmp_path.iterdir()} == {"compare.md", "compare.html", "compare.csv"}
    assert main(["compare", str(tmp_path / "missing")]) == 2


def test_error_bars_are_never_negative_when_an_interval_misses_its_estimate():
    from specact.report import _bar

    bars = _bar([0.50, 0.40], [0.52, 0.30], [0.60, 0.45])  # the first interval lies above its estimate
    assert (bars >= 0).all() and bars.shape == (2, 2)
    assert bars[:, 1].tolist() == pytest.approx([0.10, 0.05])
