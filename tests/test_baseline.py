"""The TF-IDF + logistic-regression floor: learns a separable toy set, logp in LABELS order."""

from __future__ import annotations

import numpy as np
import pytest
from specact_toy import PROMPT, make_records

from specact.actions import LABELS
from specact.baseline import LOGP_FLOOR, fit_linear, linear_texts, predict_linear
from specact.tokenization import byte_tokenizer

RECS = make_records(48)


def test_learns_a_separable_toy_set_from_the_rendered_prompts():
    tok = byte_tokenizer()
    texts = linear_texts(tok, RECS, PROMPT)
    pipe = fit_linear(RECS[:32], texts[:32])
    pred, logp = predict_linear(pipe, texts[32:])
    assert pred == [r["label"] for r in RECS[32:]]  # the user's verb decides the label
    assert logp.shape == (16, len(LABELS))
    assert [LABELS[i] for i in logp.argmax(1)] == pred


def test_labels_absent_from_train_get_the_floor_and_columns_follow_labels_order():
    texts = ["show the file", "show me", "delete it", "delete that", "thanks a lot", "thanks"]
    recs = [{"label": lab} for lab in ["file_read", "file_read", "file_write", "file_write", "final_answer", "final_answer"]]
    pred, logp = predict_linear(fit_linear(recs, texts), ["delete the file", "show the readme"])
    assert pred == ["file_write", "file_read"]
    seen = [LABELS.index(lab) for lab in ("file_read", "file_write", "final_answer")]
    absent = [i for i in range(len(LABELS)) if i not in seen]
    assert (logp[:, absent] == LOGP_FLOOR).all()
    np.testing.assert_allclose(np.exp(logp[:, seen]).sum(1), 1.0, atol=1e-6)


def test_one_label_is_refused():
    with pytest.raises(ValueError, match="two labels"):
        fit_linear([{"label": "BLOCKED"}] * 3, ["a", "b", "c"])
