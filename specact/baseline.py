"""The linear floor: TF-IDF + logistic regression on the same prompt text the neural roles read.

A trained neural role has to clear this row to say anything about capacity: on the earlier CPU
profile it beat both fine-tuned models (issue 12). Texts come from
:func:`specact.prompts.render_prompt` with the proposer's tokenizer and the run's
:class:`~specact.config.PromptConfig` (:func:`linear_texts`), so the baseline sees exactly the
budgeted prompt, not more. Trained on train, no threshold; config ``linear`` costs 0.
"""

from __future__ import annotations

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import FeatureUnion, Pipeline

from specact.actions import LABELS

LOGP_FLOOR = -30.0  # log-probability of a label absent from train: finite, so JSON rows and argmax stay well-defined


def linear_pipeline(seed: int = 0) -> Pipeline:
    """Word uni/bigrams (tool names, verbs) plus character 3-5-grams within words (identifiers,
    JSON keys, clipped words), sublinear TF-IDF each; multinomial logistic regression."""
    features = FeatureUnion([
        ("word", TfidfVectorizer(analyzer="word", ngram_range=(1, 2), min_df=2, sublinear_tf=True,
                                 token_pattern=r"(?u)\b\w+\b", max_features=200_000)),
        ("char", TfidfVectorizer(analyzer="char_wb", ngram_range=(3, 5), min_df=2, sublinear_tf=True,
                                 max_features=200_000)),
    ])
    # C=10: texts are long and classes few; weaker regularisation than sklearn's default C=1 suits
    # sparse TF-IDF features (a standard choice for text classification with lbfgs).
    return Pipeline([("tfidf", features), ("lr", LogisticRegression(C=10.0, max_iter=2000, random_state=seed))])


def fit_linear(records: list[dict], texts: list[str], seed: int = 0) -> Pipeline:
    """Fit the TF-IDF + LR pipeline on ``texts`` (one per record) to the records' labels."""
    if len(records) != len(texts):
        raise ValueError(f"{len(records)} records but {len(texts)} texts")
    labels = [r["label"] for r in records]
    if len(set(labels)) < 2:
        raise ValueError(f"the linear baseline needs at least two labels in train, got {sorted(set(labels))}")
    pipe = linear_pipeline(seed)
    try:
        return pipe.fit(texts, labels)
    except ValueError:  # min_df=2 leaves no vocabulary on a tiny train split: keep every term
        pipe.set_params(tfidf__word__min_df=1, tfidf__char__min_df=1)
        return pipe.fit(texts, labels)


def predict_linear(pipe: Pipeline, texts: list[str]) -> tuple[list[str], np.ndarray]:
    """(predicted labels, log-probabilities ``[n, 9]`` in :data:`specact.actions.LABELS` order); labels
    never seen in train get :data:`LOGP_FLOOR`."""
    logp = np.full((len(texts), len(LABELS)), LOGP_FLOOR)
    if texts:
        got = pipe.predict_log_proba(texts)
        cols = [LABELS.index(c) for c in pipe.classes_]
        logp[:, cols] = np.maximum(got, LOGP_FLOOR)
    return [LABELS[i] for i in logp.argmax(1)], logp


def linear_texts(tokenizer, records: list[dict], prompt_cfg) -> list[str]:
    """The baseline's input: each record's prompt as the proposer reads it."""
    from specact.prompts import render_prompt

    return [render_prompt(tokenizer, r, prompt_cfg) for r in records]
