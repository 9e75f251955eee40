"""Calls decoded on the label scorer's cache, and verifier reads sharing a prefill, give what the
unshared path gives: the same labels, calls and token counts; verifier scores to rounding."""

from __future__ import annotations

import numpy as np
import pytest
from specact_toy import PROMPT, make_records, tiny_spec, toy_run_dir
from test_scoring import teach_calls

from specact.actions import LABELS, uses_tool
import specact.prefix_sharing as ps
from specact.models import load_model, load_tokenizer
from specact.prefix_sharing import predict_role_shared, prefix_groups, verifier_scores_shared
from specact.prompts import prompt_ids
from specact.scoring import generate_calls, predict_role, verifier_scores


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    run = toy_run_dir(tmp_path_factory)
    tok = load_tokenizer(tiny_spec(), run)
    untrained = load_model(tiny_spec(), run_dir=run, seed=1)
    recs = make_records(10)
    taught = teach_calls(untrained, tok, [r for r in recs if uses_tool(r["label"])])  # its calls end at eos
    clf = load_model(tiny_spec(), "classifier", run_dir=run, seed=1)
    return tok, taught, untrained, clf, recs


def _top3(idx, logp):
    return [[LABELS[j] for j in np.argsort(-row, kind="stable")[:3]] for row in logp]


@pytest.mark.parametrize("stop_early, decode_rows", [(True, 256), (False, 256), (True, 1)])
def test_shared_prefill_rows_equal_predict_roles(setup, stop_early, decode_rows, monkeypatch):
    """Same labels, log-probabilities (the same scoring batches), calls and token counts as
    scoring then generate, for the taught model (calls end at eos) and the untrained one (it never
    emits eos: budget or early stop), whatever the generation batch width of the reference, and
    whether the scored batches decode together (prompt regions of other widths) or one by one."""
    monkeypatch.setattr(ps, "DECODE_ROWS", decode_rows)
    tok, taught, untrained, _, recs = setup
    prompts = [prompt_ids(tok, r, PROMPT) for r in recs]
    for model, budget in ((taught, 40), (untrained, 9)):
        ref = predict_role(model, tok, recs, PROMPT, batch_size=4, max_new_tokens=budget, quiet=True,
                           stop_early=stop_early, prompts=prompts, generate_batch_size=3)
        got, extra = predict_role_shared(model, tok, prompts, batch_size=4, max_new_tokens=budget, quiet=True,
                                         stop_early=stop_early)
        assert extra == {}
        for key in ("logp", "pred", "call", "prompt_tokens", "gen_tokens"):
            assert [r[key] for r in got] == [r[key] for r in ref], key
        if model is taught:
            assert sum(r["call"] is not None for r in got) >= 3  # it did generate calls


@pytest.mark.parametrize("stop_early", [True, False])
@pytest.mark.parametrize("which", ["taught", "untrained"])
def test_extra_labels_get_the_calls_generate_gives_them(setup, which, stop_early):
    """E's other labels, decoded on the same cache as the proposal (several branches per row),
    equal generate_calls' calls and token counts."""
    tok, taught, untrained, _, recs = setup
    model, budget = (taught, 40) if which == "taught" else (untrained, 9)
    prompts = [prompt_ids(tok, r, PROMPT) for r in recs]
    rows, extra = predict_role_shared(model, tok, prompts, batch_size=4, max_new_tokens=budget, quiet=True,
                                      stop_early=stop_early, extra_labels=_top3)
    want = [(i, lab) for i, row in enumerate(rows) for lab in _top3(None, np.array([row["logp"]]))[0]
            if uses_tool(lab) and lab != row["pred"]]
    assert want and sorted(extra) == sorted(want)
    ref = generate_calls(model, tok, [recs[i] for i, _ in want], [lab for _, lab in want], PROMPT, budget, 3, quiet=True,
                         stop_early=stop_early)
    assert [extra[k][0] for k in want] == ref["calls"]
    assert [extra[k][1] for k in want] == list(ref["gen_tokens"])


def test_prefix_groups_share_a_step_and_read_each_text_once():
    seqs = [[1, 2, 3, 4], [1, 2, 3, 5, 6], [1, 2, 3, 4], [7, 8], [1, 2, 9]]
    groups = prefix_groups(seqs, ["a", "a", "a", "b", "a"])
    assert groups == [(2, [0, 1, 4]), (1, [3])]  # seq 2 is seq 0 again; every member keeps a token of its own


@pytest.mark.parametrize("max_length", [None, 30])
def test_shared_verifier_reads_equal_separate_reads(setup, max_length):
    """Several proposals per record (E's), repeated ones among them, some records with one: the
    scores equal verifier_scores' to rounding, token counts exactly (also when a left cut gives
    a record's proposals different starts)."""
    tok, _, _, clf, recs = setup
    props = [("file_read", {"name": "cat", "arguments": {"file": "a"}}), ("BLOCKED", None), ("file_read", None), ("repair", None)]
    pairs = [(r, p) for k, r in enumerate(recs) for p in (props if k % 2 else props[:1])] + [(recs[0], props[0])]
    args = ([r for r, _ in pairs], [p for _, p in pairs], PROMPT, None, 4, max_length)
    ref = verifier_scores(clf, tok, *args, quiet=True)
    got = verifier_scores_shared(clf, tok, *args, quiet=True)
    np.testing.assert_allclose(got["score"], ref["score"], atol=1e-5)
    assert list(got["tokens"]) == list(ref["tokens"])
    np.testing.assert_allclose(got["prob"], 1 / (1 + np.exp(-got["score"])))


def test_plain_greedy_only_without_processors_that_change_a_greedy_token(setup):
    _, taught, _, _, _ = setup
    assert ps.plain_greedy(taught)
    old = taught.generation_config.repetition_penalty
    taught.generation_config.repetition_penalty = 1.1
    try:
        assert not ps.plain_greedy(taught)
    finally:
        taught.generation_config.repetition_penalty = old
