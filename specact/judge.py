"""The one definition of a correct proposal, used wherever a proposal is judged.

Verifier training pairs (:mod:`specact.data.pairs`), calibration targets, dev thresholds,
AUROC of every deferral signal and the headline accuracy of every configuration all call
:func:`proposal_correct`; nothing else in the project compares a proposal with gold.

* :func:`proposal_correct` -- **the headline**: the proposed action *type* equals the gold type.
* :func:`proposal_correct_strict` -- a second, separately reported metric: the type and, for a
  tool-using gold action with a known call, the tool name too. It gets its own accuracy, AUROC
  and threshold and is never mixed with the first.

``record`` is a spec decision point (gold call from its ``target``) or a per-step prediction
row (``label`` + ``gold_call``): both carry the gold label under ``label``.
"""

from __future__ import annotations

import numpy as np

from specact.actions import TOOL_LABELS
from specact.prompts import gold_call

JUDGES = ("type", "strict")  # the two metrics; "type" is the headline


def _gold_call(record: dict) -> dict | None:
    if "gold_call" in record:  # a prediction row: the gold call was resolved when it was written
        gc = record["gold_call"]
        return gc if isinstance(gc, dict) and gc.get("name") else None
    return gold_call(record)


def proposal_correct(record: dict, label: str | None, call: dict | None = None) -> bool:
    """Headline correctness: the proposed action type equals the gold type (``call`` ignored)."""
    return label is not None and label == record["label"]


def proposal_correct_strict(record: dict, label: str | None, call: dict | None) -> bool:
    """Type and tool name: for a tool-using gold action with a known call, the proposed call
    must name the gold tool. Text actions are judged by type alone (wording is not graded)."""
    if not proposal_correct(record, label, call):
        return False
    gold = _gold_call(record)
    if label not in TOOL_LABELS or gold is None:
        return True
    return isinstance(call, dict) and call.get("name") == gold["name"]


def judge_fn(judge: str = "type"):
    """The correctness function of metric ``judge`` (``"type"`` or ``"strict"``)."""
    if judge == "type":
        return proposal_correct
    if judge == "strict":
        return proposal_correct_strict
    raise ValueError(f"judge must be one of {JUDGES}, got {judge!r}")


def judge_many(records, labels, calls, judge: str = "type") -> np.ndarray:
    """Boolean array: each (record, label, call) judged by metric ``judge``."""
    fn = judge_fn(judge)
    return np.array([bool(fn(r, lab, c)) for r, lab, c in zip(records, labels, calls)], dtype=bool)
