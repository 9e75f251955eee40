"""One-prefill label scoring equals the naive computation; batching never changes a score."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from specact_toy import PROMPT, make_records, tiny_spec, toy_run_dir

from specact.actions import LABELS, uses_tool
from specact.calibration import apply_calibration, fit_calibration
from specact.models import load_model, load_tokenizer
from specact.prompts import prompt_ids, verifier_text
from specact.scoring import (
    generate_calls, label_continuations, predict_role, sample_proposals, score_labels, verifier_ids, verifier_scores,
)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    run = toy_run_dir(tmp_path_factory)
    tok = load_tokenizer(tiny_spec(), run)
    # A different seed than the default makes logits less uniform than a fresh init would be.
    return tok, load_model(tiny_spec(), run_dir=run, seed=1), load_model(tiny_spec(), "classifier", run_dir=run, seed=1)


def test_label_continuations_end_with_the_gold_terminator(setup):
    tok, _, _ = setup
    conts = label_continuations(tok)
    nl = tok("\n", add_special_tokens=False)["input_ids"]
    for label, c in zip(LABELS, conts):
        assert list(c[:-1]) == tok(label, add_special_tokens=False)["input_ids"]
        assert [c[-1]] == (nl if uses_tool(label) else [tok.eos_token_id])
    for i, a in enumerate(conts):  # prefix-free: no label's sequence is the start of another's
        assert not any(b[: len(a)] == a for j, b in enumerate(conts) if j != i)


def test_score_labels_matches_naive_forward_and_ignores_padding(setup):
    tok, model, _ = setup
    recs = make_records(6)  # prompts of two lengths (with / without a tool turn)
    batched = score_labels(model, tok, recs, PROMPT, batch_size=4, quiet=True)
    single = score_labels(model, tok, recs, PROMPT, batch_size=1, quiet=True)
    assert batched["logp"].shape == (6, 9) and len(set(batched["prompt_tokens"])) > 1
    np.testing.assert_allclose(batched["logp"], single["logp"], atol=1e-4)
    conts = label_continuations(tok)
    with torch.no_grad():
        for i, rec in enumerate(recs[:3]):
            p = prompt_ids(tok, rec, PROMPT)
            for j, c in enumerate(conts):
                lp = torch.log_softmax(model(input_ids=torch.tensor([p + list(c)], device=model.device)).logits[0].float(), -1)
                naive = sum(lp[len(p) - 1 + t, c[t]].item() for t in range(len(c)))
                assert abs(naive - batched["logp"][i, j]) < 1e-4


def test_generate_calls_only_for_tool_labels_and_batch_invariant(setup):
    tok, model, _ = setup
    recs = make_records(5)
    labels = ["file_read", "final_answer", "file_write", "BLOCKED", "repair"]
    a = generate_calls(model, tok, recs, labels, PROMPT, max_new_tokens=6, batch_size=3, quiet=True)
    b = generate_calls(model, tok, recs, labels, PROMPT, max_new_tokens=6, batch_size=1, quiet=True)
    assert list(a["gen_tokens"]) == list(b["gen_tokens"]) and a["calls"] == b["calls"]
    assert [bool(n) for n in a["gen_tokens"]] == [uses_tool(lab) for lab in labels]
    assert max(a["gen_tokens"]) <= 6 and a["calls"][1] is None and a["calls"][3] is None


def test_sample_proposals_distinct_and_deterministic():
    logp = np.log(np.array([[0.5, 0.2, 0.1, 0.05, 0.05, 0.04, 0.03, 0.02, 0.01]] * 50))
    a = sample_proposals(logp, 3, 1.0, seed=7)
    assert a == sample_proposals(logp, 3, 1.0, seed=7) and a != sample_proposals(logp, 3, 1.0, seed=8)
    assert all(len(set(r)) == 3 for r in a)
    other = logp.copy()
    other[1:] = other[1:, ::-1]
    assert sample_proposals(other, 3, 1.0, seed=7)[0] == a[0]  # a row's draw ignores the other rows
    assert all(r[0] == 0 for r in sample_proposals(logp, 2, 1e-6, seed=0))  # T -> 0: argmax first
    firsts = [r[0] for r in sample_proposals(np.repeat(logp, 40, 0), 1, 1.0, seed=1)]
    assert 0.35 < np.mean(np.array(firsts) == 0) < 0.65  # ~P(label 0) = 0.5
    assert len(sample_proposals(logp[:1], 20, 1.0, 0)[0]) == 9


def test_verifier_scores_padding_invariant_and_text_is_verifier_text(setup):
    tok, _, clf = setup
    recs = make_records(5)
    props = [("file_read", {"name": "cat", "arguments": {"file": "a"}}), ("BLOCKED", None)] * 2 + [("repair", None)]
    ids = verifier_ids(tok, recs, props, PROMPT, None)
    assert ids[0] == tok(verifier_text(tok, recs[0], *props[0], PROMPT), add_special_tokens=False)["input_ids"]
    assert verifier_ids(tok, recs, props, PROMPT, 20)[0] == ids[0][-20:]  # cut on the left
    a = verifier_scores(clf, tok, recs, props, PROMPT, None, batch_size=4, quiet=True)
    b = verifier_scores(clf, tok, recs, props, PROMPT, None, batch_size=1, quiet=True)
    np.testing.assert_allclose(a["score"], b["score"], atol=1e-5)
    np.testing.assert_allclose(a["prob"], 1 / (1 + np.exp(-a["score"])))
    assert list(a["tokens"]) == [len(x) for x in ids]


def test_calibration_round_trips_as_json():
    import json

    from sklearn.isotonic import IsotonicRegression

    rng = np.random.default_rng(0)
    raw = rng.normal(size=300)
    y = (rng.random(300) < 1 / (1 + np.exp(-2 * raw))).astype(int)
    iso = json.loads(json.dumps(fit_calibration(raw, y, "isotonic")))
    ref = IsotonicRegression(y_min=0, y_max=1, out_of_bounds="clip").fit(raw, y)
    grid = np.linspace(-4, 4, 50)
    np.testing.assert_allclose(apply_calibration(grid, iso), ref.predict(grid), atol=1e-12)
    platt = json.loads(json.dumps(fit_calibration(raw, y, "platt")))
    assert 1.5 < platt["coef"] < 2.6 and np.all(np.diff(apply_calibration(grid, platt)) > 0)
    with pytest.raises(ValueError, match="both accepted and rejected"):
        fit_calibration(raw, np.ones(300), "isotonic")


def test_predict_role_rows(setup):
    tok, model, _ = setup
    rows = predict_role(model, tok, make_records(4), PROMPT, batch_size=4, max_new_tokens=4, quiet=True)
    assert set(rows[0]) == {"logp", "pred", "call", "prompt_tokens", "gen_tokens", "seconds"}
    assert all(len(r["logp"]) == 9 and r["pred"] == LABELS[int(np.argmax(r["logp"]))] for r in rows)
    assert all((r["gen_tokens"] > 0) == uses_tool(r["pred"]) for r in rows)


def test_compile_scorer_gives_the_eager_scores_and_stays_out_of_the_state_dict(setup):
    """compile_scorer routes score_prompt_ids through torch.compile (dynamic shapes); float32 on
    CPU, so the scores must match eager to rounding; generate and the state dict never see it."""
    from specact.scoring import compile_scorer, score_prompt_ids

    tok, model, _ = setup
    prompts = [prompt_ids(tok, r, PROMPT) for r in make_records(6)]
    eager = score_prompt_ids(model, tok, prompts, batch_size=4, quiet=True)
    keys = set(model.state_dict())
    compile_scorer(model)
    try:
        assert set(model.state_dict()) == keys and "_specact_compiled" not in dict(model.named_modules())
        torch._dynamo.utils.counters.clear()
        compiled = score_prompt_ids(model, tok, prompts, batch_size=4, quiet=True)  # two batch widths
        assert torch._dynamo.utils.counters["stats"]["unique_graphs"] >= 1  # it really went through dynamo
    finally:
        compile_scorer(model, False)
    assert "_specact_compiled" not in model.__dict__
    np.testing.assert_allclose(compiled, eager, atol=1e-4)


def test_call_is_settled_only_when_more_text_cannot_change_the_parsed_call():
    from specact.prompts import parse_action
    from specact.scoring import call_is_settled

    assert not call_is_settled("") and not call_is_settled(" \n") and not call_is_settled('{"name": "cat", "argu')
    assert call_is_settled("\n\n\n")  # a degenerate run of blanks (MAX_LEADING_SPACE = 2)
    assert call_is_settled('{"name": "cat", "arguments": {}}') and call_is_settled("x") and call_is_settled(" [1")
    for text in ('{"name": "cat", "arguments": {"file": "a"}}', "oops", ' \n{"name": "rm"}', "\n\n\n"):
        assert call_is_settled(text)
        assert parse_action("file_read\n" + text)[1] == parse_action("file_read\n" + text + '} {"name": "x"}\nmore')[1]


def teach_calls(model, tok, recs, steps: int = 150):
    """A copy of ``model`` taught (Adam, full batch) to write ``recs``' gold actions + eos: its
    generations end at eos like a trained role's, so early stopping has something to agree with."""
    import copy

    from specact.prompts import completion_ids, gold_call

    model = copy.deepcopy(model).train()
    seqs = [(prompt_ids(tok, r, PROMPT), completion_ids(tok, r["label"], gold_call(r)) + [tok.eos_token_id]) for r in recs]
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(steps):
        loss = 0
        for p, c in seqs:
            logits = model(input_ids=torch.tensor([p + c], device=model.device)).logits[0, len(p) - 1: -1]
            loss = loss + torch.nn.functional.cross_entropy(logits, torch.tensor(c, device=model.device))
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


@pytest.fixture(scope="module")
def overfit(setup):
    tok, model, _ = setup
    recs = [r for r in make_records(8) if uses_tool(r["label"])]
    return teach_calls(model, tok, recs), recs


def test_early_stop_keeps_every_call_and_never_generates_more(setup, overfit):
    """Stopping once a call is settled parses to the same call as generating to eos or the budget,
    for the taught model (its calls end at eos) and the untrained one (it never emits eos)."""
    tok, untrained, _ = setup
    model, recs = overfit
    labels = [r["label"] for r in recs]
    for m, budget in ((model, 40), (untrained, 12)):
        full = generate_calls(m, tok, recs, labels, PROMPT, max_new_tokens=budget, batch_size=3, quiet=True, stop_early=False)
        early = generate_calls(m, tok, recs, labels, PROMPT, max_new_tokens=budget, batch_size=3, quiet=True)
        assert early["calls"] == full["calls"]
        assert all(0 < e <= f for e, f in zip(early["gen_tokens"], full["gen_tokens"]))
    from specact.prompts import gold_call

    taught = generate_calls(model, tok, recs, labels, PROMPT, max_new_tokens=40, batch_size=3, quiet=True, stop_early=False)
    assert taught["calls"] == [gold_call(r) for r in recs] and max(taught["gen_tokens"]) < 40  # it did end at eos
    assert max(early["gen_tokens"]) < 12 == max(full["gen_tokens"])  # untrained: budget spent, unless stopped


def test_call_token_budget_covers_the_gold_calls_and_is_capped(setup):
    from specact.prompts import completion_ids, gold_call
    from specact.scoring import call_token_budget

    tok, _, _ = setup
    recs = make_records(12)
    conts = dict(zip(LABELS, label_continuations(tok)))
    gold = [len(completion_ids(tok, r["label"], gold_call(r))) + 1 - len(conts[r["label"]]) for r in recs if uses_tool(r["label"])]
    assert call_token_budget(tok, recs, cap=500, margin=0, quantile=1.0) == max(gold)
    assert call_token_budget(tok, recs, cap=500, margin=5) >= max(gold) + 4
    assert call_token_budget(tok, recs, cap=3) == 3
    assert call_token_budget(tok, [r for r in recs if not uses_tool(r["label"])], cap=64) == 64


def test_call_stop_checks_only_what_can_settle_and_stops_where_a_full_check_would(setup):
    """CallStop decodes a row again only before its object opens or on a token holding "}"; it stops
    every row at the step where decoding the whole text at every step would."""
    from specact.scoring import CallStop, call_is_settled

    tok, _, _ = setup
    eos = tok.eos_token_id
    texts = ['{"name": "f", "arguments": {"a": "}x"}} tail tail', '   {"a": 1}', 'retrieval next', ' {"a": [1, {"b": 2}]}',
             '{"a": "unclosed', "\n{}", '{"n": "é}"} more']
    rows = [tok(t, add_special_tokens=False)["input_ids"] for t in texts] + [tok('{"a"', add_special_tokens=False)["input_ids"] + [eos, 5, 6]]
    width = max(map(len, rows))
    ids = torch.tensor([r + [0] * (width - len(r)) for r in rows])
    want = []
    for r in rows:  # the reference: decode the whole text at every step
        k = next((k for k in range(1, len(r) + 1) if r[k - 1] == eos
                  or call_is_settled(tok.decode(r[:k], skip_special_tokens=False))), None)
        want.append(k)
    prompt = torch.full((len(rows), 3), 7)
    stop = CallStop(tok, 3, len(rows), eos)
    for k in range(1, width + 1):
        stop(torch.cat([prompt, ids[:, :k]], 1))
    for i, (r, k) in enumerate(zip(rows, want)):
        assert stop.done[i] == (k is not None)
        assert stop.lengths[i] == (k if k is not None else width), texts[i] if i < len(texts) else "eos row"
