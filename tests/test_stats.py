"""specact.stats against scipy / sklearn / statsmodels and hand-computed cases."""

import numpy as np
import pandas as pd
import pytest
from sklearn.calibration import calibration_curve
from sklearn.metrics import f1_score

from specact import stats
from specact.actions import LABELS
from specact.stats import (
    auroc,
    baselines,
    bootstrap_ci,
    classification_summary,
    cost_to_reach,
    frontier_auc,
    macro_f1,
    pareto_hull,
    reliability,
)


def test_bootstrap_contains_point_and_shrinks_with_n():
    rng = np.random.default_rng(0)
    small, large = rng.random(100) < 0.7, rng.random(2000) < 0.7
    a, b = bootstrap_ci(small, n_resamples=500), bootstrap_ci(large, n_resamples=500)
    assert a.low <= a.estimate <= a.high and b.low <= b.estimate <= b.high
    assert (b.high - b.low) < 0.5 * (a.high - a.low)  # width ~ 1/sqrt(n): ratio ~0.22
    assert bootstrap_ci(small, n_resamples=500, seed=1) != bootstrap_ci(small, n_resamples=500, seed=2)
    assert bootstrap_ci(small, n_resamples=500, seed=1) == bootstrap_ci(small, n_resamples=500, seed=1)


def test_bootstrap_degenerate_and_paired():
    assert bootstrap_ci(np.ones(50)) == (1.0, 1.0, 1.0)
    assert bootstrap_ci(np.ones(50), method="BCa") == (1.0, 1.0, 1.0)
    one = bootstrap_ci(np.array([1.0]))
    assert one.estimate == 1.0 and np.isnan(one.low)
    # A statistic of a label pair that is constant under resampling (perfect predictions).
    gold = np.array(LABELS * 5)
    assert bootstrap_ci((gold, gold), macro_f1, n_resamples=20) == (1.0, 1.0, 1.0)
    pred = gold.copy()
    pred[::4] = "BLOCKED"
    ci = bootstrap_ci((gold, pred), macro_f1, n_resamples=30, method="BCa")
    assert ci.low <= ci.estimate <= ci.high < 1


def test_auroc_known_case_and_one_class():
    r = auroc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8], n_resamples=50)
    assert r["auroc"] == pytest.approx(0.75)
    rng = np.random.default_rng(0)
    y = rng.random(300) < 0.5
    r = auroc(y, y + rng.normal(0, 0.8, 300), n_resamples=100)
    assert r["low"] <= r["auroc"] <= r["high"] and r["reason"] == ""
    one = auroc([1, 1, 1], [0.2, 0.5, 0.9])
    assert np.isnan(one["auroc"]) and "one class" in one["reason"]


def test_reliability_matches_sklearn_and_hand_ece():
    y = np.array([0, 0, 1, 1, 1, 0])
    p = np.array([0.1, 0.2, 0.8, 0.9, 0.7, 0.6])
    rel = reliability(y, p, n_bins=2)
    # bins [0, .5): probs .1 .2, both negative; [.5, 1]: .8 .9 .7 .6 with 3/4 positive.
    ece = 2 / 6 * abs(0 - 0.15) + 4 / 6 * abs(0.75 - 0.75)
    assert rel["ece"] == pytest.approx(ece)
    ft, mp = calibration_curve(y, p, n_bins=2)
    assert np.allclose(rel["table"]["frac_positive"], ft) and np.allclose(rel["table"]["mean_prob"], mp)
    assert rel["table"]["count"].sum() == 6
    rng = np.random.default_rng(0)
    pp = rng.random(20000)
    assert reliability(rng.random(20000) < pp, pp)["ece"] < 0.02  # calibrated by construction


def test_classification_summary_against_sklearn():
    gold = ["retrieval", "retrieval", "final_answer", "BLOCKED", "file_read"]
    pred = ["retrieval", "final_answer", "final_answer", "BLOCKED", "retrieval"]
    s = classification_summary(gold, pred)
    assert s["accuracy"] == pytest.approx(0.6)
    # Macro-F1 over labels occurring in gold or pred (sklearn's default label set).
    assert s["macro_f1"] == pytest.approx(f1_score(gold, pred, average="macro"))
    assert list(s["confusion"].index) == list(LABELS) and s["confusion"].to_numpy().sum() == 5
    pc = s["per_class"].set_index("label")
    assert pc.loc["retrieval", "support"] == 2 and pc.loc["retrieval", "precision"] == pytest.approx(0.5)


def test_baselines_use_train_majority():
    b = baselines(["retrieval"] * 5 + ["final_answer"] * 3, ["final_answer"] * 3 + ["retrieval"])
    assert b["random"] == pytest.approx(1 / 9) and b["majority_label"] == "retrieval"
    assert b["majority"] == pytest.approx(0.25)  # measured on the evaluated labels


def test_frontier_helpers():
    df = pd.DataFrame({"nominal_cost": [0.2, 0.4, 0.5, 0.6, 1.0], "accuracy": [0.6, 0.7, 0.65, 0.85, 0.8]})
    hull = pareto_hull(df)
    assert hull["nominal_cost"].tolist() == [0.2, 0.4, 0.6]
    assert pareto_hull(df, convex=True)["nominal_cost"].tolist() == [0.2, 0.6]  # 0.4 lies under the chord
    # step frontier over [0.2, 1.0]: 0.6 on [.2,.4), 0.7 on [.4,.6), 0.85 on [.6,1]
    assert frontier_auc(df, 0.2, 1.0) == pytest.approx((0.6 * 0.2 + 0.7 * 0.2 + 0.85 * 0.4) / 0.8)
    assert frontier_auc(df, 0.1, 0.2, floor=0.0) == pytest.approx(0.0)
    assert cost_to_reach(df, 0.5, 0.6, 0.85) == pytest.approx(0.6)  # target .725 first met at .6
    assert cost_to_reach(df, 0.4, 0.6, 0.85) == pytest.approx(0.4)  # target .70
    assert np.isnan(cost_to_reach(df, 1.0, 0.6, 0.9))


# ---------------------------------------------------------------- clusters, gap recovered, seeds
def test_cluster_bootstrap_hand_case():
    # Two clusters: g1 = [1, 1] (sum 2, size 2), g2 = [0] (sum 0, size 1). Resampling two
    # clusters with replacement: {g1,g1} -> 1 (p 1/4), {g1,g2} -> 2/3 (p 1/2), {g2,g2} -> 0 (p 1/4).
    v, g = [1, 1, 0], ["g1", "g1", "g2"]
    dist = stats.cluster_draws(2, 20000, seed=0)
    sums, sizes = np.array([2.0, 0.0]), np.array([2.0, 1.0])
    means = sums[dist].sum(1) / sizes[dist].sum(1)
    for value, p in ((1.0, 0.25), (2 / 3, 0.5), (0.0, 0.25)):
        assert np.mean(np.isclose(means, value)) == pytest.approx(p, abs=0.015)
    ci = stats.cluster_bootstrap_ci(v, g, n_resamples=20000, seed=0)
    assert ci.estimate == pytest.approx(2 / 3) and ci.low == 0.0 and ci.high == 1.0
    iid = stats.cluster_bootstrap_ci(v, None, n_resamples=20000, seed=0)  # each step its own cluster
    assert iid.low == 0.0 and iid.high == 1.0 and iid.estimate == pytest.approx(2 / 3)
    # 60% intervals (quantiles 0.2, 0.8): clusters put 1/4 on 0, steps only 1/27 (then 6/27 on 1/3)
    assert stats.cluster_bootstrap_ci(v, g, 20000, 0, confidence=0.6)[1:] == (0.0, 1.0)
    assert stats.cluster_bootstrap_ci(v, None, 20000, 0, confidence=0.6)[1:] == pytest.approx((1 / 3, 1.0))


def test_cluster_bootstrap_wider_than_iid_for_correlated_groups():
    rng = np.random.default_rng(0)
    p = np.repeat(rng.random(40), 10)  # 40 groups of 10 steps sharing a success rate
    v = (rng.random(400) < p).astype(float)
    g = np.repeat(np.arange(40), 10)
    c, i = stats.cluster_bootstrap_ci(v, g), stats.cluster_bootstrap_ci(v)
    assert (c.high - c.low) > 1.5 * (i.high - i.low)
    auc = stats.cluster_auroc(v, p + rng.normal(0, 0.1, 400), g, n_resamples=200)
    assert auc["low"] < auc["auroc"] < auc["high"]


def test_paired_cluster_test_hand_case():
    # Three clusters, each a's total 1 above b's: of the 8 sign patterns only +++ and --- reach |3|.
    a, b = [1, 0, 1, 1], [0, 0, 0, 0]
    t = stats.paired_cluster_test(a, b, ["x", "x", "y", "z"])
    assert t.n_groups == 3 and t.pvalue == pytest.approx(2 / 8) and t.diff == pytest.approx(0.75)
    assert stats.paired_cluster_test(a, a, ["x", "x", "y", "z"]).pvalue == 1.0
    assert stats.paired_cluster_test(a, b, None).pvalue == pytest.approx(4 / 16)  # steps as clusters: 0 flips freely
    # Clusters sum to +2, -1, +1 (total 2): the 8 totals are +-4, +-2, +-2, 0 -> |total| >= 2 in 6 of 8.
    a, b = [1, 1, 0, 1, 0], [0, 0, 1, 0, 0]
    t = stats.paired_cluster_test(a, b, ["x", "x", "y", "z", "z"])
    assert t.pvalue == pytest.approx(6 / 8) and t.diff == pytest.approx(2 / 5)
    # The same steps as independent clusters (5 of them, 4 nonzero): |total| >= 2 in 10 of 16 nonzero patterns.
    assert stats.paired_cluster_test(a, b, None).pvalue == pytest.approx(10 / 16)
    # The interval is the cluster bootstrap of the per-step differences, with the same draws.
    d = np.subtract(a, b)
    assert tuple(t[:3]) == tuple(stats.cluster_bootstrap_ci(d, ["x", "x", "y", "z", "z"]))


def test_paired_cluster_test_monte_carlo_p_counts_the_observed_pattern():
    # 40 clusters all +1: no random sign pattern of n reaches |40| except all-equal ones (p ~ 2^-39):
    # the Monte Carlo p is (0 + 1) / (n + 1), never 0; exact enumeration needs 2^40 patterns.
    t = stats.paired_cluster_test(np.ones(40), np.zeros(40), np.arange(40), n_permutations=999)
    assert t.pvalue == pytest.approx(1 / 1000) and t.n_groups == 40
    # Under no difference p is roughly uniform: large for a balanced sample.
    rng = np.random.default_rng(0)
    x = (rng.random(400) < 0.5).astype(float)
    assert stats.paired_cluster_test(x, rng.permutation(x), np.repeat(np.arange(80), 5)).pvalue > 0.05


def test_apgr_and_cost_to_share_hand_case():
    curve = pd.DataFrame({"strong_share": [0.5], "accuracy": [0.9], "measured_cost": [0.6]})
    # PGR: 0 at share 0, (0.9-0.5)/(1-0.5) = 0.8 at 0.5, 1 at share 1 -> 0.5*0.4 + 0.5*0.9 = 0.65
    assert stats.apgr(curve, 0.5, 1.0) == pytest.approx(0.65)
    assert stats.pgr(0.9, 0.5, 1.0) == pytest.approx(0.8)
    assert np.isnan(stats.apgr(curve, 1.0, 1.0))
    pts = pd.DataFrame({"measured_cost": [0.2, 0.6, 1.0], "accuracy": [0.5, 0.9, 1.0]})
    assert stats.cost_to_share(pts, 1.0) == {0.5: 0.2, 0.8: 0.6, 0.95: 1.0}


def test_across_seeds():
    t = stats.across_seeds({0: {"acc": (0.7, 0.6, 0.8), "auc": {"auroc": 0.8, "low": 0.7, "high": 0.9}},
                            1: {"acc": (0.9, 0.8, 1.0), "auc": 0.9}})
    acc = t.set_index("metric").loc["acc"]
    assert acc["mean"] == pytest.approx(0.8) and acc["std"] == pytest.approx(np.std([0.7, 0.9], ddof=1))
    assert acc["per_seed"][1] == [0.9, 0.8, 1.0] and acc["n_seeds"] == 2
    # An undefined value (None / NaN) leaves its seed out; one seed left: no sd.
    t = stats.across_seeds({0: {"apgr": 0.4}, 1: {"apgr": None}, 2: {"apgr": (0.7, None, None)}, 3: {"x": 1.0}})
    apgr, x = t.set_index("metric").loc["apgr"], t.set_index("metric").loc["x"]
    assert apgr["mean"] == pytest.approx(0.55) and apgr["n_seeds"] == 2 and set(apgr["per_seed"]) == {0, 2}
    assert apgr["std"] == pytest.approx(np.std([0.4, 0.7], ddof=1)) and (apgr["min"], apgr["max"]) == (0.4, 0.7)
    assert x["n_seeds"] == 1 and np.isnan(x["std"]) and x["mean"] == 1.0
