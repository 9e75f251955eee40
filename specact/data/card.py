"""Data card of a decisions ``DatasetDict``: label mix per source and split, trajectory and
context lengths, a label plot and a few short renderings to eyeball.

The label mix is the first thing a reader needs to judge every later accuracy number
(a majority-class baseline is read off it), so it is broken down by split *and* source.
"""

from __future__ import annotations

import json

from specact.actions import LABELS


def _frame(dd):
    import pandas as pd

    rows = []
    for split in dd:
        ds = dd[split]
        for id_, label, source, tid, rec_json in zip(ds["id"], ds["label"], ds["source"], ds["trajectory_id"], ds["record"]):
            rec = json.loads(rec_json)
            chars = sum(len(m.get("content") or "") + sum(len(json.dumps(c["function"]["arguments"])) for c in m.get("tool_calls") or [])
                        for m in rec["messages"])
            rows.append({"split": split, "id": id_, "label": label, "source": source, "trajectory_id": tid,
                         "n_messages": len(rec["messages"]), "n_tools": len(rec.get("tools") or []), "context_chars": chars})
    return pd.DataFrame(rows, columns=["split", "id", "label", "source", "trajectory_id", "n_messages", "n_tools", "context_chars"])


def datacard(dd, tokenizer=None, prompt_cfg=None) -> dict:
    """``{name: DataFrame}``: ``counts`` (split, source, label, n), ``label_by_split`` and
    ``source_by_label`` pivots, ``trajectories`` (steps per trajectory), ``lengths`` (messages,
    tools, context characters per split x label) and, with a tokenizer, ``prompt_tokens``
    (rendered prompt length per split x label, via the one prompt builder)."""
    import pandas as pd

    df = _frame(dd)
    counts = df.groupby(["split", "source", "label"]).size().rename("n").reset_index()
    label_by_split = (df.pivot_table(index="label", columns="split", values="id", aggfunc="count", fill_value=0)
                      .reindex(index=list(LABELS), columns=[s for s in dd], fill_value=0))
    label_by_split["total"] = label_by_split.sum(axis=1)
    source_by_label = (df.pivot_table(index="source", columns="label", values="id", aggfunc="count", fill_value=0)
                       .reindex(columns=list(LABELS), fill_value=0))
    steps = df.groupby(["split", "source", "trajectory_id"]).size().rename("steps").reset_index()
    trajectories = steps.groupby(["split", "source"])["steps"].agg(trajectories="count", mean="mean", median="median", max="max").reset_index()
    lengths = df.groupby(["split", "label"]).agg(
        n=("id", "count"), messages_mean=("n_messages", "mean"), messages_max=("n_messages", "max"), tools_mean=("n_tools", "mean"),
        chars_mean=("context_chars", "mean"), chars_p95=("context_chars", lambda s: s.quantile(0.95)), chars_max=("context_chars", "max"),
    ).reset_index()
    card = {"counts": counts, "label_by_split": label_by_split, "source_by_label": source_by_label,
            "trajectories": trajectories, "lengths": lengths}
    if tokenizer is not None:
        from specact.prompts import prompt_ids

        tok_rows = [{"split": split, "label": rec["label"], "tokens": len(prompt_ids(tokenizer, rec, prompt_cfg))}
                    for split in dd for rec in (json.loads(s) for s in dd[split]["record"])]
        tdf = pd.DataFrame(tok_rows, columns=["split", "label", "tokens"])
        card["prompt_tokens"] = tdf.groupby(["split", "label"])["tokens"].agg(
            n="count", mean="mean", p95=lambda s: s.quantile(0.95), max="max").reset_index()
    return card


def plot_label_distribution(dd, ax=None, hue: str = "split"):
    """Bar plot of decision points per label (spec order), coloured by ``split`` or ``source``."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    df = _frame(dd)
    counts = df.groupby(["label", hue]).size().rename("n").reset_index()
    if ax is None:
        _, ax = plt.subplots(figsize=(9, 3.5))
    sns.barplot(data=counts, x="label", y="n", hue=hue, order=list(LABELS), ax=ax)
    ax.set_xlabel("")
    ax.set_ylabel("decision points")
    ax.tick_params(axis="x", rotation=30)
    ax.set_title("Next-action labels")
    return ax


def _short(text: str, n: int) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= n else text[: n - 1] + "…"


def render_examples(dd, per_label: int = 2, split: str = "train", max_chars: int = 160) -> list[str]:
    """Short text renderings of the first ``per_label`` decision points of each label:
    the last user message, the last message before the action, and the gold action."""
    ds = dd[split]
    seen: dict[str, int] = {}
    out = []
    for label, rec_json in zip(ds["label"], ds["record"]):
        if seen.get(label, 0) >= per_label:
            continue
        seen[label] = seen.get(label, 0) + 1
        rec = json.loads(rec_json)
        users = [m for m in rec["messages"] if m["role"] == "user"]
        last = rec["messages"][-1]
        last_txt = last.get("content") or json.dumps([c["function"] for c in last.get("tool_calls") or []])
        target = rec.get("target")
        action = json.dumps(target, sort_keys=True) if target else "(no gold text)"
        out.append(f"[{label}] {rec['id']} ({rec['meta']['source']}, {len(rec['messages'])} messages)\n"
                   f"  user: {_short(users[-1]['content'] if users else '', max_chars)}\n"
                   f"  last {last['role']}: {_short(last_txt, max_chars)}\n"
                   f"  -> {_short(action, max_chars)}")
    order = {lab: i for i, lab in enumerate(LABELS)}
    return sorted(out, key=lambda s: order.get(s[1:s.index("]")], 99))


def card_to_json(card: dict) -> dict:
    """The data card as plain JSON-able lists of row dicts (for ``data/datacard.json``)."""
    return {name: df.reset_index().to_dict(orient="records") if df.index.name else df.to_dict(orient="records")
            for name, df in card.items()}


# ---------------------------------------------------------------- shortcut diagnostic
_LAST_CHARS = 2000  # BFCL long-context outputs run to 30k characters; the prompt builder clips them too
def last_message_text(rec: dict) -> str:
    """What the last message alone says: its text, or its calls as JSON (an assistant turn)."""
    last = rec["messages"][-1]
    text = last.get("content") or json.dumps([c["function"] for c in last.get("tool_calls") or []], sort_keys=True)
    return text[:_LAST_CHARS]


def _records(ds) -> list[dict]:
    """A split's records: a list as given, or parsed from a ``Dataset``'s ``record`` column (validated when built).
    Parse once and pass ``{split: records}`` where several card functions read the same data (BFCL's
    long-context records make parsing the slow part)."""
    return ds if isinstance(ds, list) else [json.loads(s) for s in ds["record"]]


def split_records(dd) -> dict[str, list[dict]]:
    """``{split: records}`` of a decisions ``DatasetDict``, parsed once for the card functions below."""
    return {s: _records(dd[s]) for s in dd}


def _family(source: str) -> str:
    return "synthetic" if source.startswith("synthetic") else "bfcl"


def shortcut_model(records: list[dict]):
    """TF-IDF (word 1-2-grams) + logistic regression on the last message alone, fit on ``records``:
    how far a label can be read off surface text without the trajectory."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    pipe = make_pipeline(TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True),
                         LogisticRegression(solver="saga", max_iter=500, random_state=0))  # saga: 0.5 s here, lbfgs 20-30 s on 2 cores
    return pipe.fit([last_message_text(r) for r in records], [r["label"] for r in records])


def shortcut_diagnostic(dd, splits=("test", "ood")) -> dict:
    """``dd``: a decisions ``DatasetDict`` or ``{split: records}``.

    The last-message-only model (:func:`shortcut_model`) trained on train, scored on each of
    ``splits`` present: accuracy per source family (``by_family``: synthetic vs bfcl) and per
    source (``by_source``), with the majority-label accuracy of the same points beside it and the
    label the model predicts best there (highest F1, among labels with >= 5 points)."""
    import pandas as pd
    from sklearn.metrics import f1_score

    pipe = shortcut_model(_records(dd["train"]))
    rows = []
    for split in (s for s in splits if s in dd):
        recs = _records(dd[split])
        pred = pipe.predict([last_message_text(r) for r in recs])
        rows += [{"split": split, "source": r["meta"]["source"], "family": _family(r["meta"]["source"]),
                  "label": r["label"], "pred": p} for r, p in zip(recs, pred)]
    df = pd.DataFrame(rows, columns=["split", "source", "family", "label", "pred"])

    def summary(g):
        labs = [lab for lab, n in g["label"].value_counts().items() if n >= 5]
        f1 = f1_score(g["label"], g["pred"], labels=labs, average=None, zero_division=0) if labs else []
        best = max(zip(f1, labs)) if labs else (float("nan"), "")
        return pd.Series({"n": len(g), "accuracy": (g["label"] == g["pred"]).mean(),
                          "majority": g["label"].value_counts(normalize=True).iloc[0], "best_label": best[1], "best_f1": best[0]})

    return {"by_family": df.groupby(["split", "family"]).apply(summary, include_groups=False).reset_index(),
            "by_source": df.groupby(["split", "source"]).apply(summary, include_groups=False).reset_index()}


def near_duplicate_table(dd, max_groups: int = 0):
    """``dd``: a decisions ``DatasetDict`` or ``{split: records}``. Points of each split (besides
    train) whose digit-masked last two messages also occur in
    train, per source family: ``duplicates`` (must be 0 for dev/test after the split rule) and
    ``boilerplate`` (texts in more than ``max_groups`` groups, which the rule exempts)."""
    import pandas as pd

    from specact.data.splits import cross_split_duplicates

    recs = {s: _records(dd[s]) for s in dd}
    rows = []
    for fam in ("bfcl", "synthetic"):
        counts = cross_split_duplicates({s: [r for r in recs[s] if _family(r["meta"]["source"]) == fam] for s in recs}, max_groups)
        rows += [{"split": s, "family": fam, "n": sum(_family(r["meta"]["source"]) == fam for r in recs[s]),
                  "duplicates": counts[s], "boilerplate": counts[f"{s}_boilerplate"]} for s in recs if s != "train"]
    return pd.DataFrame(rows, columns=["split", "family", "n", "duplicates", "boilerplate"])


def label_filtering(collected: list[dict], capped: list[dict], dd):
    """Per-label decision points as collected, after the per-trajectory step cap (a seeded
    subsample, ``build.cap_steps``), and in the datasets. Nothing is dropped for length, so
    ``dropped`` (capped minus in the datasets) is 0 for every label."""
    import pandas as pd

    def count(labels):
        return pd.Series(list(labels), dtype=object).value_counts()

    in_data = (lab for s in dd for lab in ([r["label"] for r in dd[s]] if isinstance(dd[s], list) else dd[s]["label"]))
    df = pd.DataFrame({"collected": count(r["label"] for r in collected), "after_step_cap": count(r["label"] for r in capped),
                       "in_datasets": count(in_data)})
    df = df.reindex(list(LABELS)).fillna(0).astype(int).rename_axis("label")
    df["dropped"] = df["after_step_cap"] - df["in_datasets"]
    return df


def source_shares(counts):
    """Each source's share (%) of each split, from the card's ``counts`` (split, source, label, n),
    rounded to 0.1 for reading: a stratified split keeps every source's share near its share overall."""
    shares = counts.groupby(["split", "source"])["n"].sum().unstack("split", fill_value=0)
    return (100 * shares / shares.sum()).round(1)


def ood_label_counts(dd):
    """Decision points per held-out domain x label of the ``ood`` split (the string ``no ood split``
    when the data config names no held-out domain), to see which labels the held-out domains test."""
    if "ood" not in dd:
        return "no ood split"
    return dd["ood"].to_pandas().groupby(["domain", "label"]).size().unstack(fill_value=0)


def pair_kind_counts(pairs):
    """Verifier pairs per ``kind`` (gold or the confusion it was built from) and ``accept`` label:
    the negatives' mix the verifier trains on."""
    return pairs.to_pandas().groupby(["kind", "accept"]).size().rename("n").reset_index()


def split_sizes(dd) -> dict[str, int]:
    """Decision points per split."""
    return {s: len(dd[s]) for s in dd}


def card_document(dd, card: dict, shortcut: dict, duplicates, filtering, pairs) -> dict:
    """``data/datacard.json``: the card's tables (:func:`datacard`), the shortcut diagnostic's tables
    as ``shortcut_<name>``, the near-duplicate and label-filtering tables, as records (:func:`card_to_json`),
    with the split sizes and the verifier pairs per split; the report and README read their numbers from it."""
    tables = {**card, **{f"shortcut_{k}": v for k, v in shortcut.items()},
              "near_duplicates": duplicates, "label_filtering": filtering.reset_index()}
    return {**card_to_json(tables), "sizes": split_sizes(dd), "verifier_pairs": {s: len(pairs[s]) for s in pairs}}
