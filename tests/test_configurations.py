"""The configuration table, cost accounting, dev-only thresholds and the oracle / random
references (specact.configurations, specact.deferral, specact.thresholds, specact.predictions)."""

import dataclasses

import numpy as np
import pandas as pd
import pytest
from helpers import synthetic_predictions

from specact import config, configurations
from specact.config import EvalConfig
from specact.deferral import run_all, run_configuration, two_by_two
from specact.thresholds import choose, threshold_sweep

CFG = EvalConfig(verifier_cost_measured=False)  # nominal prices 1.0 / 0.15 / 0.05


def choose_threshold(dev, target=0.9, name="D"):
    return choose(dev, name, dataclasses.replace(CFG, target_accept_precision=target))


@pytest.fixture(scope="module")
def syn():
    test, roles = synthetic_predictions(300, seed=0)  # cheap right ~60%, strong ~80%
    dev, _ = synthetic_predictions(300, seed=1)
    return dev, test, roles


# Hand-sized rows: cheap 1 FLOP/token, verifier 2, strong 10; every call reads 10 + 2 tokens.
HAND_ROLES = {"cheap": {"flops_per_token": 1}, "strong": {"flops_per_token": 10}, "verifier": {"flops_per_token": 2}}


def _hand_rows():
    rows = []
    for i, (prob, cheap_pred) in enumerate([(0.9, "retrieval"), (0.6, "final_answer"), (0.4, "retrieval"), (0.1, "BLOCKED")]):
        rows.append({
            "id": f"h{i}", "source": "hand", "label": "retrieval", "gold_call": {"name": "get", "arguments": {"k": i}},
            "cheap": {"pred": cheap_pred, "call": {"name": "get", "arguments": {"k": i}}, "prompt_tokens": 10, "gen_tokens": 2, "seconds": 0.1},
            "strong": {"pred": "retrieval", "call": {"name": "get", "arguments": {"k": i}}, "prompt_tokens": 10, "gen_tokens": 2, "seconds": 1.0},
            "verifier_cheap": {"prob": prob, "score": 0.0, "tokens": 12, "seconds": 0.05},
            "samples": [{"label": cheap_pred, "call": None, "prob": prob, "tokens": 3},
                        {"label": "retrieval", "call": None, "prob": prob / 2, "tokens": 5}],
        })
    return rows


def test_hand_costs_D():
    r = run_configuration("D", _hand_rows(), HAND_ROLES, CFG, threshold=0.5)
    assert r.steps["accepted"].tolist() == [True, True, False, False]
    assert r.steps["nominal_cost"].tolist() == pytest.approx([0.2, 0.2, 1.2, 1.2])
    # cheap 12 + verifier 2*12 = 36; a reject adds strong 10*12 = 120; A's mean is 120.
    assert r.steps["measured_flops"].tolist() == pytest.approx([36, 36, 156, 156])
    assert r.steps["measured_cost"].mean() == pytest.approx(96 / 120)
    assert r.steps["seconds"].tolist() == pytest.approx([0.15, 0.15, 1.15, 1.15])
    assert r.steps["correct"].tolist() == [True, False, True, True]  # row 1 accepted a wrong proposal
    assert r.accept_precision == pytest.approx(0.5)


def test_hand_costs_E():
    r = run_configuration("E", _hand_rows(), HAND_ROLES, CFG, threshold=0.5)
    # Best sample = sample 0 (prob p > p/2); passes for p in {0.9, 0.6}.
    assert r.steps["accepted"].tolist() == [True, True, False, False]
    assert r.steps["nominal_cost"].tolist() == pytest.approx([0.25, 0.25, 1.25, 1.25])  # 0.15 + 2*0.05 (+1)
    # shared prefill once (10) + continuations 3 + 5, cheap 1/token = 18; 2 verifier reads 2*2*12 = 48.
    assert r.steps["measured_flops"].tolist() == pytest.approx([66, 66, 186, 186])
    one = run_configuration("E", _hand_rows(), HAND_ROLES, EvalConfig(n_samples=1), threshold=0.5)
    assert one.steps["measured_flops"].iloc[0] == pytest.approx(10 + 3 + 24)  # N truncated to 1


def test_call_metrics_json_normalised():
    rows = _hand_rows()[:1]
    rows[0]["gold_call"] = {"name": "get", "arguments": {"a": 1, "b": [1, 2]}}
    rows[0]["strong"]["call"] = {"name": "get", "arguments": '{"b": [1, 2], "a": 1}'}  # JSON string, other key order
    s = run_configuration("A", rows, HAND_ROLES, CFG).steps
    assert s["tool_name_correct"].iloc[0] == 1 and s["call_exact"].iloc[0] == 1
    rows[0]["strong"]["call"] = {"name": "get", "arguments": {"a": 2, "b": [1, 2]}}
    s = run_configuration("A", rows, HAND_ROLES, CFG).steps
    assert s["tool_name_correct"].iloc[0] == 1 and s["call_exact"].iloc[0] == 0
    rows[0].update(label="final_answer", gold_call=None)
    assert np.isnan(run_configuration("A", rows, HAND_ROLES, CFG).steps["call_exact"].iloc[0])


def test_nominal_cost_identities(syn):
    _, test, roles = syn
    c = run_configuration("C", test, roles, CFG)
    a = run_configuration("A", test, roles, CFG)
    assert (c.steps["nominal_cost"] == 0.15 + 1.0).all()
    assert c.accuracy == a.accuracy and (c.steps["pred"] == a.steps["pred"]).all()  # lossless
    assert a.steps["measured_cost"].mean() == pytest.approx(1.0)
    for t in (0.2, 0.5, 0.8):
        d = run_configuration("D", test, roles, CFG, threshold=t)
        assert d.steps["nominal_cost"].mean() == pytest.approx(0.15 + 0.05 + (1 - d.accept_rate) * 1.0, abs=1e-12)
        e = run_configuration("E", test, roles, CFG, threshold=t)
        assert e.steps["nominal_cost"].mean() == pytest.approx(0.15 + 3 * 0.05 + (1 - e.accept_rate) * 1.0, abs=1e-12)
    b = run_configuration("B", test, roles, CFG)
    assert (b.steps["nominal_cost"] == 0.15).all() and b.steps["accepted"].isna().all()


def test_threshold_chosen_on_dev_only(syn):
    dev, test, roles = syn
    choice = choose_threshold(dev, 0.9)
    assert choice.rule == "target" and choice.dev_accept_precision >= 0.9
    # The lowest such threshold: every lower dev candidate misses the target.
    probs = np.array([r["verifier_cheap"]["prob"] for r in dev])
    right = np.array([r["cheap"]["pred"] == r["label"] for r in dev])
    assert all(right[probs >= t].mean() < 0.9 for t in np.unique(probs) if t < choice.threshold)
    other_test, _ = synthetic_predictions(200, seed=7, separation=0.5)  # different test data altogether
    res1, ch1 = run_all(dev, test, roles, CFG)
    res2, ch2 = run_all(dev, other_test, roles, CFG)
    assert res1["D"].threshold == res2["D"].threshold == choice.threshold
    assert ch1["E"].threshold == ch2["E"].threshold


def test_threshold_fallback_when_target_unreachable(syn):
    dev, _, _ = syn
    ch = choose(dev, "D", CFG, min_accepted=10**6)  # no threshold accepts that many
    assert ch.rule == "max_f1" and np.isfinite(ch.threshold)


def test_oracle_ceiling_and_random_closed_form(syn):
    dev, test, roles = syn
    sweep = threshold_sweep(test, roles, CFG, "D", "verifier")
    oracle = run_configuration("oracle", test, roles, CFG)
    assert oracle.accuracy >= sweep["accuracy"].max()
    assert oracle.accuracy == pytest.approx(two_by_two(test)["oracle_accuracy"])
    t = choose_threshold(dev).threshold
    d = run_configuration("D", test, roles, CFG, threshold=t)
    rnd = run_configuration("random", test, roles, CFG, threshold=t)
    acc_b = run_configuration("B", test, roles, CFG).accuracy
    acc_a = run_configuration("A", test, roles, CFG).accuracy
    p = d.accept_rate
    assert rnd.accuracy == pytest.approx(p * acc_b + (1 - p) * acc_a, abs=1e-12)
    assert rnd.steps["nominal_cost"].mean() == pytest.approx(d.steps["nominal_cost"].mean())
    sim = run_configuration("random", test, roles, CFG, threshold=t, random_mode="simulate", seed=3)
    assert abs(sim.accuracy - rnd.accuracy) < 0.06 and sim.steps["correct"].dtype == bool


def test_sweep_rows_equal_runs(syn):
    _, test, roles = syn
    for config, signal in (("D", "verifier"), ("E", "verifier"), ("D_conf", "conf_margin"), ("E", "proposer")):
        sweep = threshold_sweep(test, roles, CFG, config, signal)
        assert sweep["accept_rate"].iloc[-1] == 0 and sweep["accept_rate"].iloc[0] == 1
        for _, row in sweep.iloc[[3, len(sweep) // 2]].iterrows():
            s = run_configuration(config, test, roles, CFG, threshold=row.threshold, signal=signal).summary()
            for k in ("accuracy", "nominal_cost", "measured_cost", "accept_rate", "accept_precision"):
                assert row[k] == pytest.approx(s[k])


def test_two_by_two_and_errors(syn):
    _, test, roles = syn
    tb = two_by_two(test)
    assert tb["table"].to_numpy().sum() == tb["n"] == 300
    assert tb["acc_cheap"] == pytest.approx(run_configuration("B", test, roles, CFG).accuracy)
    with pytest.raises(ValueError, match="threshold"):
        run_configuration("D", test, roles, CFG)
    no_frozen = [{k: v for k, v in r.items() if k != "strong_frozen"} for r in test]
    with pytest.raises(KeyError, match="strong_frozen"):
        run_configuration("A_frozen", no_frozen, roles, CFG)
    assert "A_frozen" not in run_all(test, no_frozen, roles, CFG)[0]


def test_dataframe_input_with_missing_fields(syn):
    _, test, roles = syn
    rows = [dict(r) for r in test[:50]]
    for r in rows[:5]:
        del r["samples"], r["verifier_cheap"]  # a DataFrame fills these with NaN
    df = pd.DataFrame(rows)
    for name in ("A", "D", "E"):
        a = run_configuration(name, rows, roles, CFG, threshold=0.5).steps
        b = run_configuration(name, df, roles, CFG, threshold=0.5).steps
        assert a["correct"].tolist() == b["correct"].tolist()
        assert np.allclose(a["nominal_cost"], b["nominal_cost"])
    e = run_configuration("E", df, roles, CFG, threshold=0.0).steps
    assert not e["accepted"].iloc[:5].any() and e["accepted"].iloc[5:].all()  # nothing to accept without samples


# ---------------------------------------------------------------- the table, new signals, prices
def test_one_registry_of_names():
    assert config.CONFIGURATIONS is configurations.NAMES
    assert config.StudyConfig().configurations == list(configurations.NAMES)
    assert {"D_conf", "linear", "oracle", "random"} <= set(configurations.NAMES)
    assert set(configurations.THRESHOLDED) == {"D", "D_conf", "E"}


def test_run_all_covers_every_name_the_rows_support(syn):
    dev, test, roles = syn
    res, choices = run_all(dev, test, roles, CFG)
    assert list(res) == [n for n in configurations.NAMES if n != "linear"]  # no linear role in these rows
    with_linear = [dict(r, linear={"pred": r["label"], "logp": r["cheap"]["logp"]}) for r in test]
    lin = run_all(dev, with_linear, roles, CFG)[0]["linear"]
    assert lin.accuracy == 1.0 and (lin.steps["nominal_cost"] == 0).all() and (lin.steps["measured_cost"] == 0).all()


def test_d_conf_cost_identity(syn):
    dev, test, roles = syn
    ch = choose(dev, "D_conf", CFG)
    assert ch.signal in ("conf_top", "conf_margin") and ch.rule == "target"
    r = run_configuration("D_conf", test, roles, CFG, threshold=ch.threshold, signal=ch.signal)
    acc = r.steps["accepted"].astype(float).to_numpy()
    assert 0 < acc.mean() < 1
    assert r.steps["nominal_cost"].to_numpy() == pytest.approx(0.15 + (1 - acc) * 1.0)  # no verifier call
    b, a = run_configuration("B", test, roles, CFG), run_configuration("A", test, roles, CFG)
    want = b.steps["measured_flops"].to_numpy() + (1 - acc) * a.steps["measured_flops"].to_numpy()
    assert r.steps["measured_flops"].to_numpy() == pytest.approx(want)


def test_verifier_priced_at_its_measured_flops(syn):
    _, test, roles = syn
    d = run_configuration("D", test, roles, EvalConfig(), threshold=0.5)
    ver = sum(r["verifier_cheap"]["tokens"] for r in test) * roles["verifier"]["flops_per_token"]
    strong = sum(r["strong"]["prompt_tokens"] + r["strong"]["gen_tokens"] for r in test) * roles["strong"]["flops_per_token"]
    assert d.meta["verifier_price"] == pytest.approx(ver / strong)
    acc = d.steps["accepted"].astype(float).to_numpy()
    assert d.steps["nominal_cost"].to_numpy() == pytest.approx(0.15 + ver / strong + (1 - acc))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_e_not_below_b_when_the_signal_informs(seed):
    test, roles = synthetic_predictions(300, seed=10 + seed)
    dev, _ = synthetic_predictions(300, seed=20 + seed)
    res, ch = run_all(dev, test, roles, EvalConfig())
    assert res["E"].accuracy >= res["B"].accuracy
    # E's candidates hold the cheap proposal (top-1), so a pick is never worse-informed than D's
    assert all(r["samples"][0]["label"] == r["cheap"]["pred"] for r in test)


def test_e_rejects_everything_when_below_b_on_dev():
    def rows(seed):  # the verifier points the wrong way, no proposer scores: E's picks lose to B
        rs, roles = synthetic_predictions(300, seed=seed, p_strong=0.3, separation=-3.0)
        return [dict(r, cheap={k: v for k, v in r["cheap"].items() if k != "logp"}) for r in rs], roles

    (dev, roles), (test, _) = rows(1), rows(0)
    ch = choose(dev, "E", CFG)
    assert ch.signal == "verifier" and ch.rule == "below_B" and ch.threshold == np.inf
    e = run_configuration("E", test, roles, CFG, threshold=ch.threshold, signal=ch.signal)
    assert e.accept_rate == 0 and e.accuracy == run_configuration("A", test, roles, CFG).accuracy
    # the same rows with the proposer's scores: E may pick the proposer's top label and equal B
    full, _ = synthetic_predictions(300, seed=1, p_strong=0.3, separation=-3.0)
    assert choose(full, "E", CFG).signal == "proposer"


def test_strict_metric_has_its_own_threshold(syn):
    dev, test, roles = syn
    t_type, t_strict = choose(dev, "D", CFG), choose(dev, "D", CFG, judge="strict")
    assert t_strict.judge == "strict" and t_strict.threshold >= t_type.threshold
    s = run_configuration("A", test, roles, CFG).summary()
    assert s["accuracy_strict"] <= s["accuracy"]


def test_signal_report_against_random_acceptance(syn):
    _, test, roles = syn
    from specact.deferral import signal_report

    rep = signal_report(test, roles, EvalConfig(), n_resamples=100)
    auc = rep[rep["config"] == ""].set_index("signal")
    assert {"verifier", "conf_top", "conf_margin", "strong_likelihood"} <= set(auc.index)
    assert (auc["auroc_low"] < auc["auroc"]).all() and (auc["auroc"] > 0.7).all()
    curves = rep[rep["config"] != ""].set_index(["config", "signal"])
    assert curves["apgr_random"].loc[("D", "verifier")] == pytest.approx(0.5)  # linear in the strong share
    assert (curves["apgr"] > curves["apgr_random"]).all()
    assert curves.loc[("D", "verifier"), "cost_to_95"] <= curves.loc[("D", "verifier"), "random_cost_to_95"]


def test_evaluate_and_save_a_split(syn, tmp_path):
    import json

    from specact.deferral import evaluate_split, save_split
    from specact.predictions import prediction_files, write_rows

    dev, test, roles = syn
    ev = evaluate_split("D", dev, test, roles, CFG)
    assert ev["type"]["choice"].judge == "type" and ev["strict"]["choice"].judge == "strict"
    ci = ev["type"]["accuracy_ci"]
    assert ci.low < ci.estimate == ev["type"]["result"].accuracy < ci.high
    save_split(ev, tmp_path / "test" / "D")
    extra = json.loads((tmp_path / "test" / "D" / "extra.json").read_text())
    assert extra["strict"]["choice"]["judge"] == "strict" and extra["choice"]["signal"] == "verifier"
    write_rows(dev, tmp_path / "test" / "predictions_dev.jsonl")
    write_rows(test, tmp_path / "ood" / "predictions.jsonl")
    assert set(prediction_files(tmp_path / "test")) == {"dev", "ood"}


def test_step_results_round_trip(syn, tmp_path):
    from specact.deferral import StepResults

    dev, test, roles = syn
    r = run_configuration("B", test, roles, CFG)  # accepted is NaN throughout: stored as null
    r.save(tmp_path / "B")
    back = StepResults.load(tmp_path / "B")
    assert back.name == "B" and back.accuracy == r.accuracy and back.summary()["nominal_cost"] == pytest.approx(0.15)
    assert "NaN" not in (tmp_path / "B" / "metrics.json").read_text()


def test_d_conf_unavailable_without_the_proposers_logp(syn):
    from specact.deferral import available

    _, test, roles = syn
    no_logp = [dict(r, cheap={k: v for k, v in r["cheap"].items() if k != "logp"}) for r in test]
    assert available(test, "D_conf") and not available(no_logp, "D_conf") and available(no_logp, "D")
    assert "D_conf" not in run_all(no_logp, no_logp, roles, CFG)[0]
