"""The verifier reads the proposer's distribution, weighs real proposals over synthetic pairs,
keeps its best dev-loss checkpoint and is calibrated on the proposer's real dev proposals."""

from __future__ import annotations

import json

import numpy as np
import pytest
from specact_toy import PROMPT, make_records, tiny_spec, toy_run_dir

from specact.actions import LABELS
from specact.config import VerifierConfig
from specact.models import load_tokenizer
from specact.prompts import gold_call, proposer_summary, verifier_text
from specact.scoring import verifier_ids
from specact.verifier import pair_extras, train_verifier

RECS = make_records(24)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return toy_run_dir(tmp_path_factory, RECS)


def _logp(top: str, p: float) -> list[float]:
    q = np.full(len(LABELS), (1 - p) / (len(LABELS) - 1))
    q[LABELS.index(top)] = p
    return np.log(q).tolist()


def _pairs(recs, kind_pos="gold", kind_neg="confusion:x", weight=1.0):
    """Gold actions (the proposer sure of them) and a planted wrong ask_clarification (unsure)."""
    out = []
    for r in recs:
        call = gold_call(r)
        rec = json.dumps(r, sort_keys=True)
        out.append({"record": rec, "label": r["label"], "call": json.dumps(call) if call else "", "accept": 1,
                    "kind": kind_pos, "logp": json.dumps(_logp(r["label"], 0.9)), "weight": weight})
        out.append({"record": rec, "label": "ask_clarification", "call": "", "accept": 0, "kind": kind_neg,
                    "logp": json.dumps(_logp("ask_clarification", 0.3)), "weight": weight})
    return out


def test_verifier_text_carries_the_proposer_summary(run_dir):
    tok = load_tokenizer(tiny_spec(), run_dir)
    lp = _logp("file_read", 0.8)
    assert proposer_summary(lp).startswith("[proposer: file_read 0.80, ")
    with_dist = verifier_text(tok, RECS[0], "file_read", gold_call(RECS[0]), PROMPT, logp=lp)
    plain = verifier_text(tok, RECS[0], "file_read", gold_call(RECS[0]), PROMPT)
    assert proposer_summary(lp) in with_dist and proposer_summary(lp) not in plain
    ids = verifier_ids(tok, [RECS[0]], [("file_read", gold_call(RECS[0]))], PROMPT, None, [lp])[0]
    assert ids == tok(with_dist, add_special_tokens=False)["input_ids"]  # what scoring feeds = the text


def test_pair_extras():
    rows = _pairs(RECS[:2], weight=0.5)
    logps, w, kinds = pair_extras(rows)
    assert len(logps) == 4 and w.tolist() == [0.5] * 4 and kinds[0] == "gold"
    assert pair_extras([dict(r, logp="") for r in rows])[0] is None


def test_verifier_keeps_best_dev_checkpoint_and_calibrates_on_real_proposals(run_dir, tmp_path):
    cfg = VerifierConfig(model=tiny_spec(), lora=False, learning_rate=1e-2, max_steps=12, per_device_train_batch_size=8,
                         logging_steps=1, warmup_ratio=0.0, max_length=512, calibration="platt", eval_steps=4)
    train = _pairs(RECS[:12], "crossfit", "crossfit") + _pairs(RECS[12:16], weight=0.2)
    dev = _pairs(RECS[16:], "proposer", "proposer") + _pairs(RECS[16:20])
    m = train_verifier(train, dev, cfg, PROMPT, tmp_path / "v", 0, run_dir, quiet=True)
    log = json.loads((tmp_path / "v" / "log_history.json").read_text())
    dev_losses = [e["eval_loss"] for e in log if "eval_loss" in e]
    assert len(dev_losses) == 3 and m["best_dev_loss"] == pytest.approx(min(dev_losses)) and m["best_checkpoint"]
    assert m["calibrated_on"] == "real" and m["n_dev_real"] == 16 and m["dev_auroc_real"] is not None
    cal = json.loads((tmp_path / "v" / "calibration.json").read_text())
    assert cal["method"] == "platt" and cal["reads_proposer"] is True and cal["max_length"] == 512
