"""Verifier pairs: a decision point + a proposed action + whether to accept it.

Positives are the gold actions. Negatives are *plausible confusions*, the mistakes a cheap
proposer makes: reading where a write was due and vice versa, the wrong tool or a wrong
argument under the right label, answering where clarification or refusal was due, acting
where the request should be blocked, ``tool_call`` vs ``retrieval``, a plain retry of the
failed call instead of a repair, answering instead of checking. Held-out predictions of the
proposer itself (cross-fitting) become pairs through :func:`crossfit_pairs`, judged by
:func:`specact.judge.proposal_correct` (type only, the headline; ``judge="strict"`` for the
type-and-tool-name metric), the one definition of a correct proposal the whole study shares.
"""

from __future__ import annotations

import json
import random
import re

from specact.actions import LABELS, TOOL_LABELS
from specact.data import bfcl, synthetic
from specact.judge import judge_fn, proposal_correct, proposal_correct_strict
from specact.prompts import gold_call
from specact.records import validate_record


def is_correct(record: dict, label: str | None, call: dict | None, match: str = "name") -> bool:
    """Deprecated alias of the judge (:mod:`specact.judge`): ``match="type"`` is
    :func:`~specact.judge.proposal_correct` (the headline), ``"name"`` is
    :func:`~specact.judge.proposal_correct_strict`, ``"exact"`` the strict rule plus equal
    arguments (as parsed JSON), kept for the data card's exact-match count only."""
    if match not in ("type", "name", "exact"):
        raise ValueError(f"match must be 'type', 'name' or 'exact', got {match!r}")
    if match == "type":
        return proposal_correct(record, label, call)
    if not proposal_correct_strict(record, label, call):
        return False
    gold = gold_call(record)
    return match == "name" or label not in TOOL_LABELS or gold is None or (call.get("arguments") or {}) == gold["arguments"]


# ---------------------------------------------------------------- tool kinds and calls
def tool_kind(record: dict, name: str, arguments: dict | None = None) -> str | None:
    """Label of a plain call to ``name`` in this record's world (BFCL table or synthetic registry)."""
    if record["meta"]["source"].startswith("bfcl/"):
        return bfcl.call_label(name, arguments or {}) if name in bfcl.FUNCTION_LABELS else None
    return synthetic.tool_label(name, arguments or {})


def observation_failed(text: str) -> bool:
    """A tool output that reports an error or a failed check (both sources' conventions)."""
    if text.startswith("Error"):
        return True
    try:
        obj = json.loads(text)
    except (json.JSONDecodeError, TypeError):
        return False
    if not isinstance(obj, dict):
        return False
    return ("error" in obj or obj.get("exit_code") not in (None, 0) or obj.get("passed") is False
            or obj.get("valid") is False or bool(obj.get("conflicts")))


def _history_calls(record: dict) -> list[dict]:
    return [c["function"] for m in record["messages"] if m["role"] == "assistant" for c in m.get("tool_calls") or []]


def _last_failed_call(record: dict) -> dict | None:
    calls = {c["id"]: c["function"] for m in record["messages"] if m["role"] == "assistant" for c in m.get("tool_calls") or []}
    for m in reversed(record["messages"]):
        if m["role"] == "tool" and observation_failed(m["content"]) and m.get("tool_call_id") in calls:
            fn = calls[m["tool_call_id"]]
            return {"name": fn["name"], "arguments": fn["arguments"]}
    return None


_DEFAULTS = {"string": "", "integer": 1, "number": 1.0, "boolean": True, "array": [], "object": {}}
_PY_TYPES = {"string": str, "integer": int, "number": (int, float), "boolean": bool, "array": list, "object": dict}


def _words(name: str) -> set[str]:
    return {w for w in re.split(r"[^a-z]+", name.lower()) if w}


def _value_pool(record: dict) -> dict:
    """Argument values a proposer could copy: earlier/gold call arguments by name, then the
    quoted strings and numbers of the last user message (under pseudo-names)."""
    pool = {}
    for fn in _history_calls(record) + ([gold_call(record)] if gold_call(record) else []):
        pool.update(fn["arguments"])
    users = [m["content"] for m in record["messages"] if m["role"] == "user"]
    if users:
        for i, q in enumerate(re.findall(r"'([^']{1,80})'|\"([^\"]{1,80})\"", users[-1])):
            pool.setdefault(f"_quoted{i}", q[0] or q[1])
        for i, n in enumerate(re.findall(r"\b\d+(?:\.\d+)?\b", users[-1])):
            pool.setdefault(f"_number{i}", float(n) if "." in n else int(n))
    return pool


def _borrow_args(tool: dict, record: dict, rng: random.Random) -> dict:
    """Arguments for ``tool`` as a proposer that picked it would fill them: the value of a
    same-named argument seen in the trajectory, else for required parameters a value of the
    right type whose name shares the most words with the parameter, else a type default."""
    params = tool["function"].get("parameters") or {}
    props, required = params.get("properties") or {}, set(params.get("required") or [])
    pool = _value_pool(record)
    args = {}
    for p, spec in props.items():
        typ = (spec or {}).get("type")
        if p in pool:
            args[p] = pool[p]
        elif p in required:
            fits = [(len(_words(p) & _words(k)), k) for k, v in pool.items()
                    if isinstance(v, _PY_TYPES.get(typ, str)) and not (typ != "boolean" and isinstance(v, bool))]
            args[p] = pool[max(fits)[1]] if fits else _DEFAULTS.get(typ, "")
    return args


def _call_of_kind(record: dict, kind: str, rng: random.Random, exclude: str | None = None, unknown_as: str | None = None):
    """A call to some available tool whose plain kind is ``kind`` (args borrowed), or None."""
    tools = [t for t in record.get("tools") or [] if t["function"]["name"] != exclude]
    fits = [t for t in tools if (tool_kind(record, t["function"]["name"]) or unknown_as) == kind]
    if kind == "verifier" and not fits and any(t["function"]["name"] == "run_command" for t in tools):
        return {"name": "run_command", "arguments": {"command": "pytest -q"}}
    if not fits:
        return None
    t = rng.choice(fits)
    return {"name": t["function"]["name"], "arguments": _borrow_args(t, record, rng)}


# ---------------------------------------------------------------- confusions
_SWAP = {"file_write": ("read_for_write", "file_read"), "file_read": ("write_for_read", "file_write"),
         "tool_call": ("retrieval_for_tool_call", "retrieval"), "retrieval": ("tool_call_for_retrieval", "tool_call")}


def confusions(record: dict, rng: random.Random, judge: str = "type") -> list[tuple[str, str, dict | None]]:
    """(kind, label, call) negatives for ``record``: the gold label's signature confusions
    first (shuffled), then generic ones (shuffled). Never a proposal that metric ``judge``
    counts as right (under the headline "type" judge a same-type wrong-tool call is right)."""
    right = judge_fn(judge)
    gold_label, gold = record["label"], gold_call(record)
    sig, gen = [], []
    if gold_label in _SWAP:
        name, to = _SWAP[gold_label]
        sig.append((name, to, _call_of_kind(record, to, rng)))
    if gold_label == "repair" and gold:
        prev = _last_failed_call(record)
        if prev:
            sig.append(("retry_for_repair", tool_kind(record, prev["name"], prev["arguments"]) or "tool_call", prev))
        plain = tool_kind(record, gold["name"], gold["arguments"])
        if plain:
            sig.append(("plain_for_repair", plain, gold))
    if gold_label == "verifier":
        sig.append(("answer_for_verifier", "final_answer", None))
    if gold_label == "final_answer":
        sig.append(("verifier_for_answer", "verifier", _call_of_kind(record, "verifier", rng)))
        hist = _history_calls(record)
        if hist:
            last = {"name": hist[-1]["name"], "arguments": hist[-1]["arguments"]}
            gen.append(("continue_after_done", tool_kind(record, last["name"], last["arguments"]) or "tool_call", last))
    if gold_label in ("ask_clarification", "BLOCKED"):
        what = "clarification" if gold_label == "ask_clarification" else "blocked"
        sig.append((f"answer_for_{what}", "final_answer", None))
        kinds = ["tool_call", "retrieval", "file_read", "file_write"]
        rng.shuffle(kinds)
        for kind in kinds:  # irrelevance tools have no known kind: they count as tool_call
            act = _call_of_kind(record, kind, rng, unknown_as="tool_call")
            if act:
                gen.append((f"act_for_{what}", kind, act))
                break
        if gold_label == "BLOCKED":
            gen.append(("clarify_for_blocked", "ask_clarification", None))
    if gold_label in TOOL_LABELS and gold:
        plain = tool_kind(record, gold["name"], gold["arguments"]) or gold_label
        gen.append(("wrong_tool", gold_label, _call_of_kind(record, plain, rng, exclude=gold["name"])))
        gen.append(("premature_answer", "final_answer", None))
        gen.append(("clarify_for_action", "ask_clarification", None))
    out = []
    for group in (sig, gen):
        rng.shuffle(group)
        for kind, label, call in group:
            if label in TOOL_LABELS and call is None:
                continue  # no tool of that kind here: not a plausible proposal
            if right(record, label, call):  # a negative must be wrong under the study's judge
                continue
            out.append((kind, label, call))
    return out


# ---------------------------------------------------------------- rows
def _row(rid, rec_json, label, call, accept, kind, logp=None, weight=1.0):
    return {"id": rid, "record": rec_json, "label": label, "call": json.dumps(call, sort_keys=True, ensure_ascii=False) if call else "",
            "accept": int(accept), "kind": kind, "logp": json.dumps([round(float(x), 4) for x in logp]) if logp is not None else "",
            "weight": float(weight)}


def make_verifier_pairs(records: list[dict], negatives_per_positive: int = 2, seed: int = 0,
                        record_json: list[str] | None = None, judge: str = "type", weight: float = 1.0) -> list[dict]:
    """One gold positive per record plus up to ``negatives_per_positive`` confusion negatives
    (rows: id, record JSON, label, call JSON or "", accept 1/0, kind "gold" | "confusion:<type>",
    logp "", weight). ``record_json``: the records' sorted-key JSON if already at hand (a decisions
    ``record`` column), to skip re-serialising long contexts. ``weight``: each row's loss weight
    (synthetic pairs are an auxiliary beside real proposals).

    Synthetic pairs never carry the proposer's label distribution. With it, the proposed label's
    own probability in that summary separates gold from confusion at AUROC 0.88 (three gpu seeds,
    2026-12-01) and a verifier learns that instead of the decision; but a real proposal is always
    the proposer's top label, so on real proposals the shortcut is constant and the verifier
    trained on it scored AUROC 0.47-0.49. The summary stays on real (cross-fitted) proposals, where
    what it can teach -- how sure the proposer was -- is what the verifier meets at test time."""
    rows = []
    for i, rec in enumerate(records):
        rec_json = record_json[i] if record_json is not None else json.dumps(rec, sort_keys=True, ensure_ascii=False)
        rows.append(_row(f"{rec['id']}::gold", rec_json, rec["label"], gold_call(rec), 1, "gold", None, weight))
        rng = random.Random(f"vpairs-{seed}-{rec['id']}")
        for j, (kind, label, call) in enumerate(confusions(rec, rng, judge)[:negatives_per_positive]):
            rows.append(_row(f"{rec['id']}::neg{j}", rec_json, label, call, 0, f"confusion:{kind}", None, weight))
    return rows


def crossfit_pairs(records: list[dict], predictions: list[dict], judge: str = "type", weight: float = 1.0) -> list[dict]:
    """A proposer's held-out predictions ({id, label, call, logp?}) as pairs, accept = the
    study's judge (:func:`specact.judge.proposal_correct` unless ``judge="strict"``)."""
    by_id, right = {r["id"]: r for r in records}, judge_fn(judge)
    rows, seen = [], {}
    for p in predictions:
        rec = by_id.get(p["id"])
        if rec is None:
            raise KeyError(f"prediction for unknown decision point {p['id']!r}")
        if p.get("label") not in LABELS:
            raise ValueError(f"prediction {p['id']!r}: label {p.get('label')!r} is not one of {list(LABELS)}")
        j = seen[p["id"]] = seen.get(p["id"], -1) + 1
        call = p.get("call") if p["label"] in TOOL_LABELS else None
        rows.append(_row(f"{p['id']}::xfit{j}", json.dumps(rec, sort_keys=True, ensure_ascii=False), p["label"], call,
                         right(rec, p["label"], call), "crossfit", p.get("logp"), weight))
    return rows


def _pair_features():
    from datasets import Features, Value

    return Features({"id": Value("string"), "record": Value("string"), "label": Value("string"), "call": Value("string"),
                     "accept": Value("int64"), "kind": Value("string"), "logp": Value("string"), "weight": Value("float64")})


def pairs_dataset(rows: list[dict]):
    from datasets import Dataset

    cols = {k: [r.get(k, "" if k == "logp" else 1.0) if k in ("logp", "weight") else r[k] for r in rows] for k in _pair_features()}
    return Dataset.from_dict(cols, features=_pair_features())


def verifier_pairs_dataset(decisions, negatives_per_positive: int = 2, seed: int = 0, crossfit: list[dict] | None = None,
                           judge: str = "type", synthetic_weight: float = 1.0, dev_crossfit: list[dict] | None = None):
    """``DatasetDict`` train/dev of pairs from a decisions ``DatasetDict`` (or split -> records).

    ``crossfit``: the proposer's held-out predictions on train records, added to train as
    real proposals (weight 1, with their ``logp``); synthetic gold/confusion pairs get
    ``synthetic_weight`` (an auxiliary when real proposals exist) and no ``logp``
    (:func:`make_verifier_pairs` says why). ``dev_crossfit``: the deployed proposer's predictions on dev; when given,
    dev holds those real proposals (what calibration and thresholds must see) besides the
    synthetic dev pairs, told apart by ``kind``.
    """
    from datasets import DatasetDict

    def split_pairs(split, preds):
        part = decisions[split]
        recs = part if isinstance(part, list) else [validate_record(json.loads(x)) for x in part["record"]]
        rec_json = None if isinstance(part, list) else part["record"]
        w = synthetic_weight if preds else 1.0
        rows = make_verifier_pairs(recs, negatives_per_positive, seed, rec_json, judge, w)
        return rows + (crossfit_pairs(recs, preds, judge) if preds else [])

    return DatasetDict({"train": pairs_dataset(split_pairs("train", crossfit)),
                        "dev": pairs_dataset(split_pairs("dev", dev_crossfit))})


def proposals_from_rows(records: list[dict], role_rows: list[dict]) -> list[dict]:
    """A role's per-step predictions (``scoring.predict_role`` rows, in ``records`` order) as the
    ``{id, label, call, logp}`` proposals :func:`crossfit_pairs` and :func:`verifier_pairs_dataset` take."""
    if len(records) != len(role_rows):
        raise ValueError(f"{len(role_rows)} predictions for {len(records)} records")
    return [{"id": r["id"], "label": o["pred"], "call": o.get("call"), "logp": o.get("logp")} for r, o in zip(records, role_rows)]
