"""How much a verifier could learn from the proposer's label distribution alone, on real and on
synthetic pairs: the diagnostic behind ``make_verifier_pairs`` leaving the distribution off
synthetic pairs (specact/data/pairs.py says why).

For each cross-fitted proposer file (``runs/<id>/proposer/crossfit.jsonl``: held-out proposals
with their label log-probabilities) it prints, against the study's judge (action type):

* real proposals: AUROC of the proposer's top probability and of its top-1 minus top-2 margin;
* synthetic gold/confusion pairs built on the same records, with that record's distribution
  attached: AUROC of "the proposed label is the proposer's top label" and of "the proposer's
  probability of the proposed label" -- features a verifier reading the distribution can use
  on synthetic pairs but that are constant (top-1) on real proposals.

    python -m scripts.verifier_shortcut --decisions runs/default/data/decisions \\
        reports/published/2026-12-01-gpu-3seeds-partial/s*/crossfit.jsonl
"""

from __future__ import annotations

import argparse

import numpy as np
from sklearn.metrics import roc_auc_score

from specact.actions import LABELS
from specact.data import build as data
from specact.data.pairs import make_verifier_pairs
from specact.judge import proposal_correct
from specact.predictions import probs, read_rows


def figures(train: dict[str, dict], crossfit: list[dict], negatives: int) -> dict:
    """The four AUROCs for one file of cross-fitted proposals (see the module docstring)."""
    recs = [train[p["id"]] for p in crossfit]
    correct = np.array([proposal_correct(r, p["label"], p.get("call")) for r, p in zip(recs, crossfit)])
    prob = probs([p["logp"] for p in crossfit])
    top2 = np.sort(prob, 1)[:, -2:]
    lp = {p["id"]: p["logp"] for p in crossfit}
    pairs = make_verifier_pairs(recs, negatives, seed=0)
    accept = np.array([r["accept"] for r in pairs])
    pair_prob = probs([lp[r["id"].split("::")[0]] for r in pairs])
    proposed = np.array([LABELS.index(r["label"]) for r in pairs])
    return {
        "real_n": len(crossfit), "real_accuracy": float(correct.mean()),
        "real_auroc_top_prob": roc_auc_score(correct, top2[:, 1]),
        "real_auroc_margin": roc_auc_score(correct, top2[:, 1] - top2[:, 0]),
        "synthetic_n": len(pairs),
        "synthetic_auroc_is_top1": roc_auc_score(accept, pair_prob.argmax(1) == proposed),
        "synthetic_auroc_proposed_prob": roc_auc_score(accept, pair_prob[np.arange(len(pairs)), proposed]),
    }


def main(args) -> None:
    train = {r["id"]: r for r in data.to_records(data.load_decisions(args.decisions)["train"])}
    for path in args.crossfit:
        out = figures(train, read_rows(path), args.negatives)
        print(path, " ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in out.items()))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("crossfit", nargs="+", help="proposer/crossfit.jsonl files")
    parser.add_argument("--decisions", required=True, help="the run's data/decisions (the same data seed)")
    parser.add_argument("--negatives", type=int, default=2, help="confusions per record (data.verifier_negatives)")
    main(parser.parse_args())
