"""One definition of a correct proposal (specact.judge), followed by every path that judges one."""

import json

import pytest

from specact import judge
from specact.data import pairs

REC = {"id": "r1", "label": "file_write", "target": {"name": "mkdir", "arguments": {"dir_name": "a"}},
       "messages": [], "tools": [], "meta": {"source": "synthetic/files"}}
ROW = {"id": "r1", "label": "file_write", "gold_call": {"name": "mkdir", "arguments": {"dir_name": "a"}}}


@pytest.mark.parametrize("rec", [REC, ROW])
def test_type_and_strict_rules(rec):
    assert judge.proposal_correct(rec, "file_write", {"name": "touch", "arguments": {}})  # type only
    assert not judge.proposal_correct_strict(rec, "file_write", {"name": "touch", "arguments": {}})
    assert judge.proposal_correct_strict(rec, "file_write", {"name": "mkdir", "arguments": {"dir_name": "zz"}})
    assert not judge.proposal_correct(rec, "file_read", {"name": "mkdir", "arguments": {}})
    assert not judge.proposal_correct_strict(rec, "file_write", None)
    text = {"label": "final_answer", "gold_call": None}
    assert judge.proposal_correct_strict(text, "final_answer", None) and not judge.proposal_correct(text, "BLOCKED")


def test_crossfit_pairs_follow_the_judge():
    preds = [{"id": "r1", "label": "file_write", "call": {"name": "touch", "arguments": {}}, "logp": [0.0] * 9}]
    assert pairs.crossfit_pairs([REC], preds)[0]["accept"] == 1  # headline: the type is right
    assert pairs.crossfit_pairs([REC], preds, judge="strict")[0]["accept"] == 0
    assert json.loads(pairs.crossfit_pairs([REC], preds)[0]["logp"]) == [0.0] * 9


def test_pairs_follow_a_patched_judge(monkeypatch):
    """Patch the headline judge: the pair labels must change with it (no private rule)."""
    preds = [{"id": "r1", "label": "file_read", "call": {"name": "cat", "arguments": {}}}]
    assert pairs.crossfit_pairs([REC], preds)[0]["accept"] == 0
    monkeypatch.setattr(judge, "proposal_correct", lambda record, label, call=None: True)
    assert pairs.crossfit_pairs([REC], preds)[0]["accept"] == 1


def test_metrics_thresholds_and_signals_follow_a_patched_judge(monkeypatch):
    """Accuracy, accept precision, the dev threshold and the AUROC truth all come from the judge."""
    from helpers import synthetic_predictions

    from specact.config import EvalConfig
    from specact.deferral import run_configuration, signal_table
    from specact.thresholds import choose

    rows, roles = synthetic_predictions(120, seed=0)
    cfg = EvalConfig(verifier_cost_measured=False)
    before = run_configuration("B", rows, roles, cfg).accuracy
    assert 0 < before < 1
    monkeypatch.setattr(judge, "proposal_correct", lambda record, label, call=None: True)
    assert run_configuration("B", rows, roles, cfg).accuracy == 1.0
    ch = choose(rows, "D", cfg)
    assert ch.dev_accept_precision == 1.0 and ch.threshold == min(r["verifier_cheap"]["prob"] for r in rows)
    right, _ = signal_table(rows)["verifier"]
    assert right.all()
    d = run_configuration("D", rows, roles, cfg, threshold=0.5)
    assert d.accept_precision == 1.0
