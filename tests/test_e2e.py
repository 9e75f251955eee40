"""End to end: the smoke profile through papermill, then `specact evaluate` on an external file.

Slow (a few minutes on 2 cores): it executes every notebook of the study with tiny models.
Its numbers are plumbing checks; the assertions are about what the run must write and the
invariants its numbers must satisfy whatever the models learned.
"""

import json
import re
import shutil

import pytest

from specact.__main__ import main
from specact.pipeline import REPO, run_study

pytestmark = pytest.mark.slow
CONFIGS = ["A", "A_frozen", "B", "C", "D", "E"]


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    root = tmp_path_factory.mktemp("study")
    summary = run_study(REPO / "params" / "smoke.yaml", root=root, log=print)
    return root, summary


def test_every_stage_ran_and_wrote_its_notebook(smoke):
    root, summary = smoke
    assert all(v["status"] == "ran" for v in summary.values())
    rep = root / "reports" / "smoke"
    for nb in ["01_data", "02_train_proposer", "03_train_verifier", "04_train_strong", "05_predict", "07_report"] + [f"06_evaluate_{c}" for c in CONFIGS]:
        assert (rep / f"{nb}.ipynb").is_file() and (rep / f"{nb}.html").is_file(), nb
    for f in ("report.html", "report.md", "results.json", "frontier.png", "timings.json"):
        assert (rep / f).is_file(), f


def test_artifacts(smoke):
    root, _ = smoke
    run = root / "runs" / "smoke"
    for p in ("params.yaml", "data/decisions", "data/datacard.json", "data/jsonl/test.jsonl",
              "proposer/model", "proposer/metrics.json", "proposer/crossfit.jsonl", "verifier/calibration.json",
              "strong/model", "eval/test/predictions.jsonl", "eval/test/predictions_dev.jsonl"):
        assert (run / p).exists(), p
    for role in ("proposer", "strong"):
        m = json.loads((run / role / "metrics.json").read_text())
        assert 0 <= m["dev_acc"] <= 1 and m["final_loss"] < m["first_loss"], role  # the loss fell
    s = json.loads((run / "strong" / "metrics.json").read_text())
    p = json.loads((run / "proposer" / "metrics.json").read_text())
    assert s["flops_per_token"] > p["flops_per_token"]


def test_results_are_complete_and_costs_honest(smoke):
    root, _ = smoke
    res = json.loads((root / "reports" / "smoke" / "results.json").read_text())
    confs = res["configurations"]
    assert set(CONFIGS) | {"oracle", "random"} <= set(confs)
    for name, c in confs.items():
        assert 0 <= c["accuracy"] <= 1, name
    assert confs["A"]["nominal_cost"] == pytest.approx(1.0) and confs["B"]["nominal_cost"] == pytest.approx(0.15)
    assert confs["C"]["nominal_cost"] == pytest.approx(1.15) and confs["C"]["accuracy"] == pytest.approx(confs["A"]["accuracy"])
    d = confs["D"]  # D is charged its fallback: cheap + verifier + (1 - accept rate) x strong, the verifier
    # at its measured price (FLOPs of its call over a strong call's), not the nominal 0.05
    assert d["verifier_price"] > 0 and d["verifier_price"] != pytest.approx(0.05)
    assert d["nominal_cost"] == pytest.approx(0.15 + d["verifier_price"] + (1 - d["accept_rate"]) * 1.0)
    assert confs["oracle"]["accuracy"] >= max(confs["B"]["accuracy"], confs["A"]["accuracy"]) - 1e-9
    assert confs["A"]["measured_cost"] == pytest.approx(1.0)
    assert res["finding"] and res["tables"]["configurations"]


def test_the_strong_stage_needs_only_what_the_graph_says(tmp_path):
    # `--stage-jobs` runs train_strong beside train_proposer: its notebook must read nothing the proposer writes
    # (it once showed the proposer's FLOPs, and failed whenever it finished first)
    summary = run_study(REPO / "params" / "smoke.yaml", root=tmp_path, log=print, only=["data", "train_strong"])
    assert summary["train_strong"]["status"] == "ran" and not (tmp_path / "runs" / "smoke" / "proposer").exists()


def test_rerun_skips_every_stage(smoke):
    root, _ = smoke
    summary = run_study(REPO / "params" / "smoke.yaml", root=root, log=print)
    assert all(v["status"] == "skipped" for v in summary.values())


def test_evaluate_external_file(smoke, tmp_path):
    root, _ = smoke
    ext = tmp_path / "external.jsonl"
    shutil.copy(root / "runs" / "smoke" / "data" / "jsonl" / "test.jsonl", ext)
    out = tmp_path / "ext_report"
    assert main(["evaluate", "--run", str(root / "runs" / "smoke"), "--data", str(ext), "--out", str(out)]) == 0
    res = json.loads((out / "results.json").read_text())
    assert set(CONFIGS) <= set(res["configurations"]) and (out / "report.html").is_file()


def test_evaluate_rejects_a_malformed_file(smoke, tmp_path, capsys):
    root, _ = smoke
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "x", "messages": [], "label": "final_answer", "meta": {}}\n')
    assert main(["evaluate", "--run", str(root / "runs" / "smoke"), "--data", str(bad)]) == 2
    assert "bad.jsonl:1: field 'messages'" in capsys.readouterr().err


def design_tree() -> list[str]:
    """The paths DESIGN.md's run-directory block promises, as globs (``<split>`` -> ``*``)."""
    text = (REPO / "DESIGN.md").read_text()
    block = text.split("## Run directory", 1)[1].split("```", 2)[1]
    paths = [line.split()[0] for line in block.splitlines()[1:] if line.strip() and not line.startswith(" ")]
    return [re.sub(r"<[^>]+>", "*", p) for p in paths]


def test_design_run_directory_matches_a_smoke_run(smoke):
    root, _ = smoke
    run = root / "runs" / "smoke"
    paths = design_tree()
    assert len(paths) >= 12 and "params.yaml" in paths
    missing = [p for p in paths if not list(run.glob(p.rstrip("/")))]
    assert missing == [], f"DESIGN.md names paths a smoke run does not write: {missing}"
    rep = root / "reports" / "smoke"
    for nb in rep.glob("*.ipynb"):  # every figure was drawn as an image, none printed as text
        assert "<Figure size" not in nb.read_text(), nb.name
