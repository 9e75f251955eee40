"""Per-split prediction rows: their gold side, call budgets, early stopping, dev reuse, the linear role."""

from __future__ import annotations

import json
import sys
import types

import numpy as np
import pytest
from specact_toy import PROMPT, make_records, tiny_spec, toy_run_dir
from test_scoring import teach_calls

import specact.evaluate as ev
from specact.actions import LABELS
from specact.config import EvalConfig
from specact.models import load_model, load_tokenizer

CFG = EvalConfig(n_samples=2, batch_size=4, max_new_tokens=40)  # the toy calls need ~25 tokens


@pytest.fixture(scope="module")
def roles(tmp_path_factory):
    run = toy_run_dir(tmp_path_factory)
    tok = load_tokenizer(tiny_spec(), run)
    # the cheap model taught the toy tool calls (it predicts tool labels and ends its calls at eos), the
    # strong one untrained (it predicts BLOCKED everywhere; the frozen role would generate blanks)
    cheap = teach_calls(load_model(tiny_spec(), run_dir=run, seed=1), tok, [r for r in make_records(8) if r["target"]])
    strong = load_model(tiny_spec(), run_dir=run, seed=2)
    clf = load_model(tiny_spec(), "classifier", run_dir=run, seed=1)
    return {"cheap": (cheap, tok, {}), "strong": (strong, tok, {}), "verifier": (clf, tok, {"calibration": None})}


def _records(n):
    recs = make_records(n)
    for r in recs:
        r["meta"]["domain"] = f"toy:{r['label']}"
    return recs


def test_rows_carry_group_and_domain_and_early_stop_keeps_labels_and_calls(roles):
    recs = _records(6)
    early = ev.predict(recs, roles, CFG, PROMPT, seed=0, quiet=True)
    full = ev.predict(recs, roles, CFG, PROMPT, seed=0, quiet=True, stop_early=False)
    assert [r["group"] for r in early] == [r["meta"]["trajectory_id"] for r in recs]
    assert [r["domain"] for r in early] == [f"toy:{r['label']}" for r in recs]
    assert sum(r["cheap"]["call"] is not None for r in early) >= 2  # calls were generated and parsed
    for role in ("cheap", "strong"):
        assert [r[role]["pred"] for r in early] == [r[role]["pred"] for r in full]
        assert [r[role]["call"] for r in early] == [r[role]["call"] for r in full]
        assert all(e[role]["gen_tokens"] <= f[role]["gen_tokens"] for e, f in zip(early, full))
    assert [[s["label"] for s in r["samples"]] for r in early] == [[s["label"] for s in r["samples"]] for r in full]
    assert [[s["call"] for s in r["samples"]] for r in early] == [[s["call"] for s in r["samples"]] for r in full]


def test_call_budgets_are_sized_once_per_tokenizer_and_used(roles, tmp_path):
    recs = _records(8)
    got = ev.set_call_budgets(roles, recs, cap=7, run_dir=tmp_path)
    assert got == {"cheap": 7, "strong": 7} and roles["cheap"][2]["call_budget"] == 7
    stored = json.loads((tmp_path / "cache" / "call_budgets.json").read_text())
    assert list(stored.values()) == [7]
    key = next(iter(stored))
    (tmp_path / "cache" / "call_budgets.json").write_text(json.dumps({key: 3}))  # read back, not recomputed
    assert ev.set_call_budgets(roles, recs, cap=7, run_dir=tmp_path)["strong"] == 3
    rows = ev.predict(recs, roles, CFG, PROMPT, quiet=True, stop_early=False)
    assert max(r["cheap"]["gen_tokens"] for r in rows) == 3  # the budget, not CFG.max_new_tokens
    for _, _, info in roles.values():
        info.pop("call_budget", None)


def test_reused_split_is_read_not_scored_and_files_per_split(roles, tmp_path):
    recs = _records(4)
    dev_rows = [{"id": "d0", "label": "BLOCKED", "marker": 1}]
    ev.write_rows(dev_rows, tmp_path / "dev.jsonl")
    out = ev.predict_splits({"dev": recs, "external": recs}, roles, CFG, PROMPT, reuse={"dev": tmp_path / "dev.jsonl"}, quiet=True)
    assert out["dev"] == dev_rows and len(out["external"]) == 4 and "cheap" in out["external"][0]
    with pytest.raises(KeyError):  # without reuse, dev is scored (no roles here: it must fail)
        ev.predict_splits({"dev": recs}, {}, CFG, PROMPT, reuse={"dev": ""}, quiet=True)
    files = ev.write_predictions({"dev": dev_rows, "test": out["external"]}, tmp_path / "eval", "test")
    assert ev.read_rows(tmp_path / "eval" / "predictions_dev.jsonl") == dev_rows
    assert ev.read_rows(files["reported"]) == ev.read_rows(tmp_path / "eval" / "predictions_test.jsonl")
    table = ev.role_table(out["external"])
    assert set(table.index) == {"cheap", "strong"}
    assert table.loc["cheap", "accuracy"] == np.mean([r["cheap"]["pred"] == r["label"] for r in out["external"]])


def test_linear_role_rows_come_from_the_baseline_contract(roles, monkeypatch):
    """The integration point of contract 6: fit_linear(records, texts) -> pipe; predict_linear(pipe, texts) -> (pred, logp)."""
    seen = {}

    def fit_linear(records, texts):
        seen["fit"] = (len(records), texts[0])
        return "pipe"

    def predict_linear(pipe, texts):
        assert pipe == "pipe"
        logp = np.log(np.full((len(texts), 9), 1 / 9))
        logp[:, 2] = 0.0
        return [LABELS[2]] * len(texts), logp

    monkeypatch.setitem(sys.modules, "specact.baseline", types.SimpleNamespace(fit_linear=fit_linear, predict_linear=predict_linear))
    recs = _records(4)
    tok = roles["cheap"][1]
    pipe = ev.fit_linear(recs, tok, PROMPT)
    from specact.prompts import render_prompt

    assert pipe == "pipe" and seen["fit"] == (4, render_prompt(tok, recs[0], PROMPT))
    rows = ev.predict(recs, roles, EvalConfig(n_samples=1, batch_size=4, max_new_tokens=4), PROMPT, quiet=True, linear=pipe)
    assert all(r["linear"]["pred"] == LABELS[2] and len(r["linear"]["logp"]) == 9 for r in rows)
    assert ev.role_table(rows).loc["linear", "accuracy"] == np.mean([r["label"] == LABELS[2] for r in rows])


def test_prediction_targets_cover_every_split_the_run_has_or_dev_and_the_file(tmp_path):
    from datasets import DatasetDict

    from specact.data.build import to_dataset
    from specact.records import write_jsonl

    recs = _records(12)
    dd = DatasetDict({"train": to_dataset(recs[:4]), "dev": to_dataset(recs[4:8]), "test": to_dataset(recs[8:10]),
                      "ood": to_dataset(recs[10:])})
    cfg = EvalConfig(max_examples=0)
    got = ev.prediction_targets(dd, cfg, seed=0)
    assert list(got) == ["dev", "test", "ood"] and [r["id"] for r in got["ood"]] == ["r10", "r11"]
    assert list(ev.prediction_targets(DatasetDict({k: dd[k] for k in ("train", "dev", "test")}), cfg, 0)) == ["dev", "test"]
    write_jsonl(recs[:3], tmp_path / "ext.jsonl")
    ext = ev.prediction_targets(dd, cfg, 0, tmp_path / "ext.jsonl")
    assert list(ext) == ["dev", "external"] and [r["id"] for r in ext["external"]] == ["r0", "r1", "r2"]
    assert len(ev.prediction_targets(dd, EvalConfig(max_examples=2), 0)["dev"]) == 2  # whole trajectories, seeded


def test_generation_batch_width_is_its_own_setting_and_changes_no_prediction(roles, monkeypatch):
    import dataclasses

    import specact.scoring as sc

    widths = []
    real = sc._generate_batch
    monkeypatch.setattr(sc, "_generate_batch", lambda model, tok, seqs, *a: widths.append(len(seqs)) or real(model, tok, seqs, *a))
    recs = _records(6)
    narrow = ev.predict(recs, roles, CFG, PROMPT, seed=0, quiet=True, share_prefill=False)  # generate's batches
    assert widths and max(widths) <= CFG.batch_size
    widths.clear()
    wide = ev.predict(recs, roles, dataclasses.replace(CFG, generate_batch_size=64), PROMPT, seed=0, quiet=True, share_prefill=False)
    assert max(widths) > CFG.batch_size  # every generation call (cheap, strong, E's samples) took the wide batch
    for role in ("cheap", "strong"):
        assert [r[role]["call"] for r in narrow] == [r[role]["call"] for r in wide]
    assert [[s["call"] for s in r["samples"]] for r in narrow] == [[s["call"] for s in r["samples"]] for r in wide]


@pytest.mark.parametrize("stop_early", [True, False])
def test_shared_prefill_predicts_what_the_unshared_path_does(roles, stop_early):
    """predict with calls decoded on the scorer's cache and verifier reads sharing a prefill (the
    default) against the path before it: the same labels, log-probabilities, calls, token counts
    and samples; verifier scores equal to rounding (other batch shapes)."""
    recs = _records(7)
    new = ev.predict(recs, roles, CFG, PROMPT, seed=0, quiet=True, stop_early=stop_early)
    old = ev.predict(recs, roles, CFG, PROMPT, seed=0, quiet=True, stop_early=stop_early, share_prefill=False)
    assert sum(r["cheap"]["call"] is not None for r in new) >= 2
    for role in ("cheap", "strong"):
        for key in ("logp", "pred", "call", "gen_tokens", "prompt_tokens"):
            assert [r[role][key] for r in new] == [r[role][key] for r in old], (role, key)
    key = lambda r: [(s["label"], s["call"], s["tokens"], s["verifier_tokens"]) for s in r["samples"]]  # noqa: E731
    assert [key(r) for r in new] == [key(r) for r in old]
    score = lambda rows: [r["verifier_cheap"]["score"] for r in rows] + [s["score"] for r in rows for s in r["samples"]]  # noqa: E731
    np.testing.assert_allclose(score(new), score(old), atol=1e-5)
