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
