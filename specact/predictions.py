"""The per-step prediction rows (DESIGN.md "Per-step predictions"): files, reading, parsing.

Every role is run once per split and written as one JSON row per decision point; every
configuration is then a pure function of these rows (:mod:`specact.configurations`). This
module is the one reader/writer of the rows (``specact.evaluate`` writes through it) and turns
them into column arrays, each role judged by :mod:`specact.judge` and priced once.

One step is **correct** when the action type equals gold (``judge.proposal_correct``, the
headline); ``strict`` is the type-and-tool-name metric (``judge.proposal_correct_strict``);
``call_exact`` (name and arguments equal after JSON normalisation) is reported beside them.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from specact.actions import LABELS, TOOL_LABELS
from specact.judge import judge_many

MODEL_ROLES = ("cheap", "strong", "strong_frozen", "linear")
SPLITS = ("dev", "test", "ood", "external")  # dev chooses thresholds; the others are reported
REPORTED = SPLITS[1:]


# ---------------------------------------------------------------- files
def write_rows(rows: list[dict], path: str | Path) -> Path:
    """One sorted-key JSON line per row (numpy values made plain)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as fh:
        for r in rows:
            fh.write(json.dumps(r, sort_keys=True, default=_plain) + "\n")
    return path


def _plain(x):
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    raise TypeError(f"not JSON-serialisable: {type(x).__name__}")


def read_rows(path: str | Path) -> list[dict]:
    with Path(path).open() as fh:
        return [json.loads(line) for line in fh if line.strip()]


def prediction_files(eval_dir: str | Path) -> dict[str, Path]:
    """``{split: path}`` of the prediction rows found for dev / test / ood / external.

    Looked up, first hit wins: ``<eval_dir>/<split>/predictions.jsonl`` (one folder per split),
    ``<eval_dir>/predictions_<split>.jsonl``, and, for an ``eval_dir`` that is itself one
    split's folder (``eval/test``), its siblings ``../<split>/predictions.jsonl`` and its own
    ``predictions.jsonl`` as that split.
    """
    d = Path(eval_dir)
    out: dict[str, Path] = {}
    for split in SPLITS:
        for cand in (d / split / "predictions.jsonl", d / f"predictions_{split}.jsonl",
                     d.parent / split / "predictions.jsonl",
                     d / "predictions.jsonl" if d.name == split else None):
            if cand is not None and cand.is_file():
                out[split] = cand
                break
    return out


# ---------------------------------------------------------------- parsing
def norm_args(a):
    """Call arguments as canonical JSON values (a JSON string is parsed; key order dropped)."""
    if isinstance(a, str):  # the spec allows arguments as a JSON string
        try:
            a = json.loads(a)
        except json.JSONDecodeError:
            return a
    return json.loads(json.dumps(a or {}, sort_keys=True, default=str))


def objarr(seq) -> np.ndarray:
    out = np.empty(len(seq), dtype=object)  # element-wise: numpy must not unpack dicts or lists
    out[:] = list(seq)
    return out


def as_dict(x) -> dict:
    return x if isinstance(x, dict) else {}  # a DataFrame row holds NaN where a field is absent


def num(d: dict | None, key: str, default=np.nan) -> float:
    v = as_dict(d).get(key)
    return default if v is None or (isinstance(v, float) and np.isnan(v)) else float(v)


def judged(rows: list[dict], pred, calls) -> dict:
    """correct (type) / strict / tool_name_correct / call_exact of one source of actions."""
    n = len(rows)
    calls = [c if p in TOOL_LABELS else None for p, c in zip(pred, calls)]  # format_action drops it
    tool, exact = np.full(n, np.nan), np.full(n, np.nan)
    for i, r in enumerate(rows):
        gc = as_dict(r.get("gold_call"))
        if r["label"] in TOOL_LABELS and gc.get("name"):
            c = as_dict(calls[i])
            tool[i] = c.get("name") == gc["name"]
            exact[i] = tool[i] and norm_args(c.get("arguments")) == norm_args(gc.get("arguments"))
    return {"pred": objarr(pred), "call": objarr(calls),
            "correct": judge_many(rows, pred, calls, "type").astype(float),
            "strict": judge_many(rows, pred, calls, "strict").astype(float),
            "tool_name_correct": tool, "call_exact": exact}


def flops_per_token(roles: dict | None, role: str) -> float:
    info = (roles or {}).get(role) or {}
    if info.get("flops_per_token") is not None:
        return float(info["flops_per_token"])
    if info.get("params") is not None:
        return 2.0 * float(info["params"])  # DESIGN.md: 2 x non-embedding params per token
    return float("nan")


def probs(logp) -> np.ndarray:
    """Rows of label log-scores as probabilities (renormalised over the nine labels)."""
    z = np.asarray(logp, float)
    z = np.exp(z - z.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


def as_rows(preds) -> list[dict]:
    rows = preds.to_dict("records") if isinstance(preds, pd.DataFrame) else list(preds)
    if not rows:
        raise ValueError("no prediction rows")
    bad = sorted({r["label"] for r in rows} - set(LABELS))
    if bad:
        raise ValueError(f"unknown gold label(s) {bad}; allowed: {list(LABELS)}")
    return rows


def group_keys(rows: list[dict]) -> list[str]:
    """The cluster of each step for intervals and paired tests: the row's ``group`` (the
    record's scenario group, data.build.group_of), else its trajectory, else the step itself."""
    return [str(r.get("group") or r.get("trajectory_id") or r["id"]) for r in rows]


# ---------------------------------------------------------------- column arrays
class Steps:
    """Column arrays of the prediction rows: each role judged and priced once, the deferral
    signals on the cheap proposal, and the E candidates of each step."""

    def __init__(self, preds, roles: dict | None = None):
        rows = self.rows = as_rows(preds)
        self.roles = roles or {}
        self.n = len(rows)
        self.ids = [r["id"] for r in rows]
        self.source = [r.get("source", "") for r in rows]
        self.domain = [r.get("domain") or r.get("source", "") for r in rows]
        self.group = group_keys(rows)
        self.gold = [r["label"] for r in rows]
        self.role: dict[str, dict] = {}
        for role in MODEL_ROLES:
            if all(isinstance(r.get(role), dict) for r in rows):  # e.g. no strong_frozen without zero_shot
                self.role[role] = self._role(rows, role, roles)
        v = [as_dict(r.get("verifier_cheap")) for r in rows]
        self.ver_fpt = flops_per_token(roles, "verifier")
        self.ver_prob = np.array([num(x, "prob") for x in v])
        self.ver_tokens = np.array([num(x, "tokens", 0.0) for x in v])
        self.ver_flops = self.ver_fpt * self.ver_tokens
        self.ver_seconds = np.array([num(x, "seconds") for x in v])

    def _role(self, rows, role, roles) -> dict:
        cs = [r[role] for r in rows]
        d = judged(rows, [c["pred"] for c in cs], [c.get("call") for c in cs])
        # A frozen strong model has the strong model's size when roles omit it.
        fpt = flops_per_token(roles, role if (roles or {}).get(role) or role != "strong_frozen" else "strong")
        d["prompt_tokens"] = np.array([num(c, "prompt_tokens", 0.0) for c in cs])
        d["gen_tokens"] = np.array([num(c, "gen_tokens", 0.0) for c in cs])
        d["flops"] = fpt * (d["prompt_tokens"] + d["gen_tokens"])
        if role == "linear":  # TF-IDF + logistic regression: no model FLOPs worth counting (cost 0)
            d["flops"] = np.zeros(self.n)
        d["seconds"] = np.array([num(c, "seconds", 0.0 if role == "linear" else np.nan) for c in cs])
        if all(isinstance(c.get("logp"), list) and len(c["logp"]) == len(LABELS) for c in cs):
            d["probs"] = probs([c["logp"] for c in cs])
        return d

    def need(self, role: str) -> dict:
        if role not in self.role:
            raise KeyError(f"prediction rows lack the '{role}' role (every row needs a '{role}' dict)")
        return self.role[role]

    def a_mean_flops(self) -> float:
        return float(np.mean(self.need("strong")["flops"])) if "strong" in self.role else float("nan")

    def signal(self, name: str) -> np.ndarray:
        """A score of the cheap proposal per step (higher = more likely right):
        ``verifier`` (calibrated P(accept)), ``conf_top`` (the proposer's top label probability),
        ``conf_margin`` (top-1 minus top-2 probability), ``strong_likelihood`` (the strong
        model's probability of the proposed label: what C pays a strong call for)."""
        if name == "verifier":
            return self.ver_prob
        if name in ("conf_top", "conf_margin"):
            p = np.sort(self._probs("cheap"), axis=1)
            return p[:, -1] if name == "conf_top" else p[:, -1] - p[:, -2]
        if name == "strong_likelihood":
            idx = [LABELS.index(x) for x in self.need("cheap")["pred"]]
            return self._probs("strong")[np.arange(self.n), idx]
        raise ValueError(f"unknown signal {name!r}")

    def _probs(self, role: str) -> np.ndarray:
        d = self.need(role)
        if "probs" not in d:
            raise KeyError(f"the '{role}' rows carry no 9-label logp")
        return d["probs"]

    def candidates(self, n: int, picker: str) -> dict:
        """E: per step the best of the first ``n`` proposals in ``samples`` by ``picker``
        (``verifier``: its P(accept); ``proposer``: the proposer's probability of the label):
        ``score``, the judged pick, ``n`` proposals, and the FLOPs and seconds they cost."""
        cheap, probs_c = self.need("cheap"), self.role["cheap"].get("probs")
        best, labels, calls = np.full(self.n, -np.inf), [], []
        count, flops, secs = np.zeros(self.n), np.zeros(self.n), np.zeros(self.n)
        fpt_c = flops_per_token(self.roles, "cheap")
        for i, r in enumerate(self.rows):
            ss = (r["samples"] if isinstance(r.get("samples"), list) else [])[:n]
            count[i] = len(ss)
            if picker == "verifier":
                sc = [num(s, "prob") for s in ss]
            elif probs_c is not None:
                sc = [probs_c[i, LABELS.index(s["label"])] for s in ss]
            else:
                raise KeyError("picker 'proposer' needs the cheap role's logp")
            j = int(np.nanargmax(sc)) if ss and not np.all(np.isnan(sc)) else -1
            labels.append(ss[j]["label"] if j >= 0 else None)
            calls.append(ss[j].get("call") if j >= 0 else None)
            best[i] = sc[j] if j >= 0 else -np.inf  # no proposal: never accepted
            flops[i], secs[i] = self._sample_cost(i, ss, cheap, fpt_c, picker == "verifier")
        pick = judged(self.rows, labels, calls)
        return {"score": best, "pick": pick, "n": count, "flops": flops, "seconds": secs}

    def _sample_cost(self, i, ss, cheap, fpt_c, verified: bool) -> tuple[float, float]:
        """FLOPs and seconds of step i's proposals: one shared prefill plus each continuation
        (a sample's ``tokens``, default the greedy call's), and a verifier read per proposal when
        the verifier picks (``verifier_tokens`` / ``verifier_seconds``, default the cheap
        proposal's read)."""
        P, G = cheap["prompt_tokens"][i], cheap["gen_tokens"][i]
        toks = [num(s, "tokens", G) for s in ss]
        per_tok = cheap["seconds"][i] / (P + G) if P + G > 0 else np.nan
        gen_s = [num(s, "seconds", np.nan) for s in ss]
        cheap_s = sum(gen_s) if ss and not np.isnan(gen_s).any() else per_tok * (P + sum(toks))
        flops = fpt_c * (P + sum(toks))
        if not verified:
            return flops, cheap_s
        vt = sum(num(s, "verifier_tokens", self.ver_tokens[i]) for s in ss)
        vs = sum(num(s, "verifier_seconds", self.ver_seconds[i]) for s in ss)
        return flops + self.ver_fpt * vt, cheap_s + vs
