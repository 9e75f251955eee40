"""specact.seeds (`specact compare --seeds`): one study's training seeds summarised side by side."""

import copy
import json

import numpy as np
import pandas as pd
import pytest

from specact.__main__ import main
from specact.pipeline import REPO
from specact.seeds import seed_table, write_seeds

PUBLISHED = REPO / "reports" / "published" / "2026-12-01-default" / "results.json"
SHIFT = {0: 0.0, 1: 0.02, 2: -0.01}  # each "seed" moves every accuracy / AUROC by this much
APGR = {0: 0.40, 1: None, 2: 0.70}  # seed 1 has no B→A gap: its APGR is undefined


def fake_seeds(root, shift=SHIFT, apgr=APGR) -> list:
    """Three copies of the published default results.json as seeds 0-2 of one study, numbers moved."""
    src = json.loads(PUBLISHED.read_text())
    out = []
    for seed, delta in shift.items():
        res = copy.deepcopy(src)
        res["provenance"]["params"].update(run_id=f"default-s{seed}", seed=seed)
        for key, rows in res["tables"].items():
            for r in rows if key.startswith(("configurations_", "signals_")) else []:
                for col in ("accuracy", "accuracy_lo", "accuracy_hi", "auroc", "auroc_low", "auroc_high"):
                    if r.get(col) is not None:
                        r[col] += delta
                r["measured_cost"] = None if r.get("measured_cost") is None else r["measured_cost"] * (1 + delta)
                if key == "signals_test" and r.get("config") == "D":
                    r["apgr"] = apgr[seed]
        d = root / f"default-s{seed}"
        d.mkdir()
        (d / "results.json").write_text(json.dumps(res))
        out.append(d)
    return out


def _row(t, split, item, measure):
    return t[(t["split"] == split) & (t["item"] == item) & (t["measure"] == measure)].iloc[0]


def test_across_seeds_against_hand_computed_means_and_spreads(tmp_path):
    t = seed_table(fake_seeds(tmp_path))
    d = _row(t, "test", "D", "accuracy")
    pub = next(r for r in json.loads(PUBLISHED.read_text())["tables"]["configurations_test"] if r["config"] == "D")
    a = pub["accuracy"]  # D's published test accuracy a -> seeds a, a + 0.02, a - 0.01: mean a + 1/300,
    # deviations -1/300, +5/300, -4/300 -> sample variance (1 + 25 + 16) / 90000 / 2
    assert d["mean"] == pytest.approx(a + 1 / 300) and d["std"] == pytest.approx(np.sqrt(42 / 90000 / 2))
    assert (d["min"], d["max"], d["n_seeds"]) == (pytest.approx(a - 0.01), pytest.approx(a + 0.02), 3)
    assert (d["s1"], d["s1_lo"], d["s1_hi"]) == pytest.approx((pub["accuracy"] + 0.02, pub["accuracy_lo"] + 0.02,
                                                               pub["accuracy_hi"] + 0.02))  # each seed's own interval
    cost = _row(t, "test", "D", "measured cost")
    assert cost["mean"] == pytest.approx(pub["measured_cost"] * (1 + 0.01 / 3)) and np.isnan(cost["s0_lo"])
    auc = _row(t, "ood", "conf_top", "AUROC")
    assert auc["std"] == pytest.approx(np.std([0.0, 0.02, -0.01], ddof=1)) and auc["s2_hi"] < auc["s1_hi"]
    apgr = _row(t, "test", "D (verifier)", "APGR")  # seed 1 undefined: the mean of the two others
    assert apgr["n_seeds"] == 2 and apgr["mean"] == pytest.approx(0.55) and np.isnan(apgr["s1"])
    assert apgr["std"] == pytest.approx(np.std([0.4, 0.7], ddof=1))
    assert list(dict.fromkeys(t["split"])) == ["test", "ood"]
    assert list(t[(t["split"] == "test") & (t["measure"] == "accuracy")]["item"])[:3] == ["A", "A_frozen", "B"]


def test_seed_tables_for_reading(tmp_path):
    t = seed_table(fake_seeds(tmp_path))
    md = write_seeds(t, tmp_path / "out")["markdown"]
    assert md.startswith("**Accuracy (action type) across 3 seeds")
    for caption in ("Measured cost per step", "AUROC of each deferral signal", "APGR ("):
        assert caption in md
    d = next(line for line in md.splitlines() if line.startswith("| test | D: "))
    pub = next(r for r in json.loads(PUBLISHED.read_text())["tables"]["configurations_test"] if r["config"] == "D")
    pct = lambda x: f"{100 * x:.1f}"  # noqa: E731
    seeds = [f"{pct(pub['accuracy'] + s)}% [{pct(pub['accuracy_lo'] + s)}, {pct(pub['accuracy_hi'] + s)}]" for s in SHIFT.values()]
    spread = f"{pct(pub['accuracy'] + 1 / 300)}% ± 1.5 | {pct(pub['accuracy'] - 0.01)}–{pct(pub['accuracy'] + 0.02)}"
    assert f"| {spread} | {' | '.join(seeds)} |" in d
    apgr = next(line for line in md.splitlines() if line.startswith("| test | D (verifier) |"))
    assert apgr == "| test | D (verifier) | 0.55 ± 0.21 | 0.40–0.70 | 0.40 | – | 0.70 |"
    assert "nan" not in md.lower()
    assert {p.name for p in (tmp_path / "out").iterdir()} == {"seeds.md", "seeds.html", "seeds.csv"}
    csv = pd.read_csv(tmp_path / "out" / "seeds.csv")
    assert len(csv) == len(t) and {"mean", "std", "min", "max", "s0", "s0_lo", "s0_hi"} <= set(csv.columns)


def test_seeds_command(tmp_path, capsys):
    paths = [str(p) for p in fake_seeds(tmp_path)]
    assert main(["compare", "--seeds", *paths, "--out", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert out.startswith("**Accuracy") and (tmp_path / "out" / "seeds.md").read_text().strip() == out.strip()
    assert main(["compare", "--seeds", paths[0], paths[0]]) == 1  # one seed twice
    assert "seed 0 given twice" in capsys.readouterr().err


def test_seeds_must_share_their_steps_and_study(tmp_path):
    paths = fake_seeds(tmp_path)
    res = json.loads((paths[2] / "results.json").read_text())
    res["tables"]["configurations_test"][0]["n"] = 399
    (paths[2] / "results.json").write_text(json.dumps(res))
    with pytest.raises(ValueError, match="not evaluated on the same steps"):
        seed_table(paths)
    res["tables"]["configurations_test"][0]["n"] = 400
    res["provenance"]["params"]["run_id"] = "gpu-s2"
    (paths[2] / "results.json").write_text(json.dumps(res))
    with pytest.raises(ValueError, match="different studies"):
        seed_table(paths)


def test_seeds_of_reports_rendered_by_notebook_07(tmp_path):
    """The results.json the report notebook writes (two seeds, different predictions, the same steps)."""
    from test_report import render_seed

    paths = [render_seed(tmp_path, "smoke", seed) for seed in (0, 1)]
    t = seed_table(paths)
    res = [json.loads((p / "results.json").read_text()) for p in paths]
    a = [next(r for r in x["tables"]["configurations_test"] if r["config"] == "A") for x in res]
    row = _row(t, "test", "A", "accuracy")
    assert row["mean"] == pytest.approx(np.mean([x["accuracy"] for x in a])) and row["n_seeds"] == 2
    assert row["std"] == pytest.approx(np.std([x["accuracy"] for x in a], ddof=1))
    assert (row["s1_lo"], row["s1_hi"]) == pytest.approx((a[1]["accuracy_lo"], a[1]["accuracy_hi"]))
    assert {"accuracy", "measured cost", "AUROC", "APGR"} == set(t["measure"]) and set(t["split"]) == {"test", "ood"}
    assert set(t[t["measure"] == "AUROC"]["item"]) >= {"verifier", "conf_top", "conf_margin"}


@pytest.mark.slow
def test_seeds_of_a_real_smoke_study(tmp_path):
    """`specact run params/smoke.yaml --seeds 0 1`, then `specact compare --seeds` on its two reports."""
    from specact.pipeline import run_seeds

    run_seeds(REPO / "params" / "smoke.yaml", [0, 1], root=tmp_path, log=print)
    paths = [tmp_path / "reports" / f"smoke-s{s}" for s in (0, 1)]
    t = seed_table(paths)
    assert set(t["n_seeds"]) <= {1, 2} and (t[t["measure"] == "accuracy"]["n_seeds"] == 2).all()
    assert main(["compare", "--seeds", *map(str, paths)]) == 0
