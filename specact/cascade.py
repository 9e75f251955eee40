"""Configurations A-E, the oracle and random-accept references, and their cost accounting.

Every configuration is a pure function of the per-step prediction rows of DESIGN.md
("Per-step predictions"): each role was run once per split, and a configuration is charged
for every call it would make. One step is **correct** when the final action *type* equals the
gold label (the primary metric). For gold labels that call a tool, two secondary metrics:
``tool_name_correct`` (the emitted call names the gold tool) and ``call_exact`` (name and
arguments equal after JSON normalisation). A call only counts when the final type uses a
tool, as ``prompts.format_action`` drops it otherwise.

Costs, per step:

========  ====================================================  ==========================
config    nominal (EvalConfig units)                            measured FLOPs
========  ====================================================  ==========================
A         cost_strong                                           strong call
A_frozen  cost_strong                                           strong_frozen call
B         cost_cheap                                            cheap call
C         cost_cheap + cost_strong (the strong model must run)  cheap + strong
D         cost_cheap + cost_verifier + 1[reject] cost_strong    cheap + verifier (+ strong)
E         cost_cheap + N cost_verifier + 1[none pass] strong    prefill once + N sample
                                                                continuations + N verifier
oracle    as D (a perfect verifier of the same price)           as D
random    as D at D's accept rate                               as D
========  ====================================================  ==========================

E's N proposals share one prefill, so nominally they are one cheap call; what the extra
continuations really cost shows in the measured FLOPs. Measured FLOPs = flops_per_token x
tokens the call processed (prompt + generated), normalised by config A's mean per step on
the same rows, so A is 1.0 by construction.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from specact.actions import LABELS, TOOL_LABELS
from specact.config import EvalConfig
from specact.stats import cost_to_reach, frontier_auc, pareto_hull  # noqa: F401  (re-exported)

CONFIGS = ("A", "A_frozen", "B", "C", "D", "E", "oracle", "random")
MODEL_ROLES = ("cheap", "strong", "strong_frozen")


@dataclass
class StepResults:
    """One configuration on one split: a per-step DataFrame plus how it was run."""

    name: str
    steps: pd.DataFrame
    threshold: float | None = None
    meta: dict = field(default_factory=dict)

    def _w(self) -> np.ndarray:  # acceptance as a weight: bool, or p for random in expectation
        return self.steps["accepted"].astype(float).to_numpy()

    @property
    def accuracy(self) -> float:
        return float(self.steps["correct"].astype(float).mean())

    @property
    def accept_rate(self) -> float:
        return float(np.mean(self._w()))

    @property
    def accept_precision(self) -> float:
        """Share of accepted proposals that were right (= accuracy on accepted steps)."""
        w, pc = self._w(), self.steps["proposal_correct"].astype(float).to_numpy()
        return float((w * pc).sum() / w.sum()) if np.nansum(w) > 0 else float("nan")

    @property
    def acc_rejected(self) -> float:
        """Accuracy of the strong fallback on the rejected steps."""
        w, fc = 1.0 - self._w(), self.steps["fallback_correct"].astype(float).to_numpy()
        return float((w * fc).sum() / w.sum()) if np.nansum(w) > 0 else float("nan")

    def summary(self) -> dict:
        s = self.steps
        return {"config": self.name, "n": len(s), "accuracy": self.accuracy,
                "tool_name_acc": float(s["tool_name_correct"].astype(float).mean()),
                "call_exact": float(s["call_exact"].astype(float).mean()),
                "accept_rate": self.accept_rate, "accept_precision": self.accept_precision,
                "acc_rejected": self.acc_rejected, "nominal_cost": float(s["nominal_cost"].mean()),
                "measured_cost": float(s["measured_cost"].mean()), "seconds": float(s["seconds"].mean()),
                "threshold": self.threshold}


# ---------------------------------------------------------------- parsing the rows
def _norm_args(a):
    if isinstance(a, str):  # the spec allows arguments as a JSON string
        try:
            a = json.loads(a)
        except json.JSONDecodeError:
            return a
    return json.loads(json.dumps(a or {}, sort_keys=True, default=str))


def _objarr(seq) -> np.ndarray:
    out = np.empty(len(seq), dtype=object)  # element-wise: numpy must not unpack dicts or lists
    out[:] = list(seq)
    return out


def _score(pred, calls, gold, gold_calls) -> dict:
    """correct / tool_name_correct / call_exact of one source of actions against gold."""
    n = len(gold)
    correct = np.array([p == g for p, g in zip(pred, gold)], dtype=float)
    tool, exact = np.full(n, np.nan), np.full(n, np.nan)
    for i in range(n):
        gc = gold_calls[i]
        if gold[i] in TOOL_LABELS and isinstance(gc, dict) and gc.get("name"):
            c = calls[i] if pred[i] in TOOL_LABELS else None
            name_ok = isinstance(c, dict) and c.get("name") == gc["name"]
            tool[i] = name_ok
            exact[i] = name_ok and _norm_args(c.get("arguments")) == _norm_args(gc.get("arguments"))
    return {"pred": _objarr(pred), "call": _objarr(calls),
            "correct": correct, "tool_name_correct": tool, "call_exact": exact}


def _fpt(roles: dict | None, role: str) -> float:
    info = (roles or {}).get(role) or {}
    if info.get("flops_per_token") is not None:
        return float(info["flops_per_token"])
    if info.get("params") is not None:
        return 2.0 * float(info["params"])  # DESIGN.md: 2 x non-embedding params per token
    return float("nan")


def _dict(x) -> dict:
    return x if isinstance(x, dict) else {}  # a DataFrame row holds NaN where a field is absent


def _num(d: dict | None, key: str, default=np.nan) -> float:
    v = _dict(d).get(key)
    return default if v is None or (isinstance(v, float) and np.isnan(v)) else float(v)


class _Steps:
    """Column arrays of the prediction rows, each role scored and priced once."""

    def __init__(self, preds, roles: dict | None, cfg: EvalConfig):
        rows = preds.to_dict("records") if isinstance(preds, pd.DataFrame) else list(preds)
        if not rows:
            raise ValueError("no prediction rows")
        self.n = len(rows)
        self.ids = [r["id"] for r in rows]
        self.source = [r.get("source", "") for r in rows]
        self.gold = [r["label"] for r in rows]
        bad = sorted(set(self.gold) - set(LABELS))
        if bad:
            raise ValueError(f"unknown gold label(s) {bad}; allowed: {list(LABELS)}")
        self.gold_call = [_dict(r.get("gold_call")) or None for r in rows]
        self.role: dict[str, dict] = {}
        for role in MODEL_ROLES:
            if not all(isinstance(r.get(role), dict) for r in rows):
                continue  # e.g. strong_frozen absent when train.zero_shot is off
            cs = [r[role] for r in rows]
            d = _score([c["pred"] for c in cs], [c.get("call") for c in cs], self.gold, self.gold_call)
            # A frozen strong model has the strong model's size when roles omit it.
            fpt = _fpt(roles, role if (roles or {}).get(role) or role != "strong_frozen" else "strong")
            d["prompt_tokens"] = np.array([_num(c, "prompt_tokens", 0.0) for c in cs])
            d["gen_tokens"] = np.array([_num(c, "gen_tokens", 0.0) for c in cs])
            d["flops"] = fpt * (d["prompt_tokens"] + d["gen_tokens"])
            d["seconds"] = np.array([_num(c, "seconds") for c in cs])
            self.role[role] = d
        v = [_dict(r.get("verifier_cheap")) for r in rows]
        self.ver_fpt = _fpt(roles, "verifier")
        self.ver_prob = np.array([_num(x, "prob") for x in v])
        self.ver_flops = self.ver_fpt * np.array([_num(x, "tokens", 0.0) for x in v])
        self.ver_seconds = np.array([_num(x, "seconds") for x in v])
        self._samples(rows, v, roles, cfg)

    def _samples(self, rows, v, roles, cfg):
        """E: the best-scoring of the first ``cfg.n_samples`` proposals, and what they cost.

        Optional per-sample fields and their fallbacks: ``tokens`` (its generated tokens;
        default the greedy call's gen_tokens), ``seconds`` (its wall time, the shared prefill
        counted in one of them; default the cheap call's time per token x tokens),
        ``verifier_tokens`` / ``verifier_seconds`` (default those of ``verifier_cheap``).
        """
        cheap = self.role.get("cheap")
        fpt_c = _fpt(roles, "cheap")
        best_prob, labels, calls = np.full(self.n, -np.inf), [], []
        self.e_n = np.zeros(self.n)
        self.e_flops, self.e_seconds = np.zeros(self.n), np.zeros(self.n)
        for i, r in enumerate(rows):
            ss = (r["samples"] if isinstance(r.get("samples"), list) else [])[: cfg.n_samples]
            self.e_n[i] = len(ss)
            probs = [_num(s, "prob") for s in ss]
            j = int(np.nanargmax(probs)) if ss and not np.all(np.isnan(probs)) else -1
            labels.append(ss[j]["label"] if j >= 0 else None)
            calls.append(ss[j].get("call") if j >= 0 else None)
            best_prob[i] = probs[j] if j >= 0 else -np.inf  # no proposal: never accepted
            P = cheap["prompt_tokens"][i] if cheap else 0.0
            G = cheap["gen_tokens"][i] if cheap else 0.0
            toks = [_num(s, "tokens", G) for s in ss]
            per_tok = (cheap["seconds"][i] / (P + G)) if cheap and P + G > 0 else np.nan
            gen_s = [_num(s, "seconds", np.nan) for s in ss]
            cheap_s = (sum(gen_s) if ss and not np.isnan(gen_s).any() else per_tok * (P + sum(toks)))
            self.e_flops[i] = fpt_c * (P + sum(toks)) + self.ver_fpt * sum(
                _num(s, "verifier_tokens", _num(v[i], "tokens", 0.0)) for s in ss)
            self.e_seconds[i] = cheap_s + sum(_num(s, "verifier_seconds", self.ver_seconds[i]) for s in ss)
        self.e_prob = best_prob
        self.e_pick = _score(labels, calls, self.gold, self.gold_call)

    def need(self, role: str) -> dict:
        if role not in self.role:
            raise KeyError(f"prediction rows lack the '{role}' role (every row needs a '{role}' dict)")
        return self.role[role]

    def a_mean_flops(self) -> float:
        return float(np.mean(self.need("strong")["flops"])) if "strong" in self.role else float("nan")


# ---------------------------------------------------------------- configurations
def _cascade_parts(s: _Steps, config: str, cfg: EvalConfig):
    """(score, proposal, base nominal, base flops, base seconds) of a verifier cascade."""
    cheap = s.need("cheap")
    if config == "E":
        return s.e_prob, s.e_pick, cfg.cost_cheap + s.e_n * cfg.cost_verifier, s.e_flops, s.e_seconds
    if config in ("D", "oracle", "random"):
        return (s.ver_prob, cheap, np.full(s.n, cfg.cost_cheap + cfg.cost_verifier),
                cheap["flops"] + s.ver_flops, cheap["seconds"] + s.ver_seconds)
    raise ValueError(f"not a verifier cascade: {config!r}")


def run_configuration(name: str, preds, roles: dict | None, eval_cfg: EvalConfig | None = None,
                      threshold: float | None = None, *, accept_rate: float | None = None,
                      random_mode: str = "expectation", seed: int = 0) -> StepResults:
    """Evaluate configuration ``name`` (one of :data:`CONFIGS`) on prediction rows.

    D and E need ``threshold`` (choose it on dev with :func:`choose_threshold`). ``random``
    accepts at ``accept_rate`` or, given ``threshold``, at D's accept rate on these rows;
    ``random_mode="expectation"`` scores each step by its exact expected correctness
    p*cheap + (1-p)*strong (no seed noise; pred is then undefined), ``"simulate"`` draws the
    accepts with ``seed``.
    """
    cfg = eval_cfg or EvalConfig()
    if name not in CONFIGS:
        raise ValueError(f"unknown configuration {name!r}; allowed: {list(CONFIGS)}")
    s = _Steps(preds, roles, cfg)
    strong = s.need("strong") if name not in ("A_frozen", "B") else None
    nan = np.full(s.n, np.nan)
    meta: dict = {"a_mean_flops": s.a_mean_flops()}
    if name in ("A", "A_frozen", "B"):
        src = s.need({"A": "strong", "A_frozen": "strong_frozen", "B": "cheap"}[name])
        w, prop, fb = nan, None, None
        nominal = np.full(s.n, cfg.cost_cheap if name == "B" else cfg.cost_strong)
        flops, secs, out = src["flops"], src["seconds"], src
    elif name == "C":
        cheap = s.need("cheap")
        w, prop, fb = np.asarray(cheap["pred"] == strong["pred"], dtype=bool), cheap, strong
        nominal = np.full(s.n, cfg.cost_cheap + cfg.cost_strong)
        flops, secs = cheap["flops"] + strong["flops"], cheap["seconds"] + strong["seconds"]
        out = strong  # lossless: verifying the whole action greedily reproduces the strong output
    else:
        score, prop, base_nom, base_flops, base_secs = _cascade_parts(s, name, cfg)
        if name in ("D", "E"):
            if threshold is None:
                raise ValueError(f"{name} needs a threshold chosen on dev (choose_threshold)")
            w = score >= threshold
        elif name == "oracle":
            w = prop["correct"].astype(bool)
        else:  # random-accept reference
            p = accept_rate if accept_rate is not None else (
                float(np.mean(s.ver_prob >= threshold)) if threshold is not None else None)
            if p is None:
                raise ValueError("random needs accept_rate or D's threshold")
            meta.update(accept_rate=p, mode=random_mode)
            w = (np.random.default_rng(seed).random(s.n) < p) if random_mode == "simulate" else np.full(s.n, p)
        fb = strong
        wf = np.asarray(w, float)
        nominal = base_nom + (1 - wf) * cfg.cost_strong
        flops, secs = base_flops + (1 - wf) * strong["flops"], base_secs + (1 - wf) * strong["seconds"]
        out = None
    expect = name == "random" and random_mode != "simulate"
    if expect:  # blend every metric by the accept probability; the action itself is undefined
        out = {k: w * prop[k] + (1 - w) * fb[k] for k in ("correct", "tool_name_correct", "call_exact")}
        out.update(pred=np.full(s.n, None, dtype=object), call=np.full(s.n, None, dtype=object))
    elif out is None:
        out = {k: np.where(w, prop[k], fb[k]) for k in ("pred", "call", "correct", "tool_name_correct", "call_exact")}
    fallback = np.zeros(s.n, bool) if prop is None else (1 - w if expect else ~w)
    steps = pd.DataFrame({
        "id": s.ids, "source": s.source, "gold": s.gold, "pred": out["pred"], "call": out["call"],
        "correct": out["correct"] if expect else out["correct"].astype(bool),
        "tool_name_correct": out["tool_name_correct"], "call_exact": out["call_exact"],
        "accepted": w, "fallback": fallback,
        "proposal_correct": prop["correct"] if prop is not None else nan,
        "fallback_correct": fb["correct"] if fb is not None else nan,
        "nominal_cost": nominal, "measured_flops": flops, "measured_cost": flops / meta["a_mean_flops"],
        "seconds": secs,
    })
    return StepResults(name, steps, threshold if name in ("D", "E", "random") else None, meta)


# ---------------------------------------------------------------- operating point and sweeps
@dataclass
class ThresholdChoice:
    threshold: float
    dev_accept_precision: float
    dev_accept_rate: float
    dev_n_accepted: int
    rule: str  # "target" (lowest threshold reaching it) or "max_f1" (target unreachable)
    target: float


def choose_threshold(dev_preds, target_accept_precision: float = 0.9, config: str = "D",
                     eval_cfg: EvalConfig | None = None, min_accepted: int = 1) -> ThresholdChoice:
    """The operating threshold, from DEV rows only (the test split only applies it).

    Rule: the lowest candidate (a unique dev score) whose dev accept precision -- the share
    of accepted proposals that are right -- reaches the target with at least ``min_accepted``
    accepts; the lowest such threshold accepts the most, so it is the cheapest. When no
    threshold reaches the target, fall back to the threshold maximising F1 of "accept" as a
    detector of right proposals (cost-free, so it does not depend on the price assumptions).
    """
    cfg = eval_cfg or EvalConfig()
    s = _Steps(dev_preds, None, cfg)
    score = s.e_prob if config == "E" else s.ver_prob
    right = (s.e_pick if config == "E" else s.need("cheap"))["correct"].astype(bool)
    cands = np.unique(score[np.isfinite(score)])
    stats = []
    for t in cands:
        acc = score >= t
        k, tp = int(acc.sum()), int((acc & right).sum())
        prec = tp / k if k else np.nan
        f1 = 2 * tp / (k + right.sum()) if k + right.sum() else 0.0
        stats.append((t, prec, k, f1))
    hit = [x for x in stats if x[2] >= min_accepted and x[1] >= target_accept_precision]
    if hit:
        t, prec, k, _ = hit[0]  # candidates ascend: the first hit is the lowest
        rule = "target"
    elif stats:
        t, prec, k, _ = max(stats, key=lambda x: (x[3], -x[0]))
        rule = "max_f1"
    else:
        t, prec, k, rule = np.inf, np.nan, 0, "none"
    return ThresholdChoice(float(t), float(prec), k / s.n, k, rule, target_accept_precision)


def threshold_sweep(preds, roles: dict | None, eval_cfg: EvalConfig | None = None, config: str = "D") -> pd.DataFrame:
    """Accuracy and costs of D or E at every unique score as threshold, plus "accept none".

    Uses the same parts as :func:`run_configuration`, so a row equals that run's summary.
    """
    cfg = eval_cfg or EvalConfig()
    s = _Steps(preds, roles, cfg)
    strong = s.need("strong")
    score, prop, base_nom, base_flops, _ = _cascade_parts(s, config, cfg)
    a_mean = s.a_mean_flops()
    rows = []
    for t in np.append(np.unique(score[np.isfinite(score)]), np.inf):
        w = score >= t
        rej = (~w).astype(float)
        rows.append({"threshold": t, "accuracy": float(np.where(w, prop["correct"], strong["correct"]).mean()),
                     "nominal_cost": float((base_nom + rej * cfg.cost_strong).mean()),
                     "measured_cost": float((base_flops + rej * strong["flops"]).mean() / a_mean),
                     "accept_rate": float(w.mean()),
                     "accept_precision": float(prop["correct"][w].mean()) if w.any() else np.nan})
    out = pd.DataFrame(rows)
    out.insert(0, "config", config)
    return out


def two_by_two(preds, strong_role: str = "strong") -> dict:
    """Cheap right/wrong x strong right/wrong counts and the oracle ceiling they imply.

    An oracle cascade keeps the cheap proposal exactly when it is right and otherwise asks
    the strong model, so it is wrong only where both are: ceiling = 1 - both_wrong / n.
    """
    s = _Steps(preds, None, EvalConfig())
    c, g = s.need("cheap")["correct"].astype(bool), s.need(strong_role)["correct"].astype(bool)
    table = pd.DataFrame([[int((c & g).sum()), int((c & ~g).sum())], [int((~c & g).sum()), int((~c & ~g).sum())]],
                         index=pd.Index(["cheap right", "cheap wrong"]), columns=pd.Index([f"{strong_role} right", f"{strong_role} wrong"]))
    return {"table": table, "n": s.n, "both_right": int(table.iat[0, 0]), "cheap_only": int(table.iat[0, 1]),
            "strong_only": int(table.iat[1, 0]), "both_wrong": int(table.iat[1, 1]),
            "acc_cheap": float(c.mean()), "acc_strong": float(g.mean()), "oracle_accuracy": float(1 - (~c & ~g).mean())}


def run_all(dev_preds, eval_preds, roles: dict, eval_cfg: EvalConfig | None = None,
            configs=CONFIGS) -> tuple[dict[str, StepResults], dict[str, ThresholdChoice]]:
    """Every configuration on ``eval_preds``, D's and E's thresholds chosen on ``dev_preds`` only."""
    cfg = eval_cfg or EvalConfig()
    choices = {c: choose_threshold(dev_preds, cfg.target_accept_precision, c, cfg) for c in ("D", "E")}
    results = {}
    for name in configs:
        if name == "A_frozen" and not all(isinstance(r.get("strong_frozen"), dict) for r in
                                          (eval_preds.to_dict("records") if isinstance(eval_preds, pd.DataFrame) else eval_preds)):
            continue  # no frozen strong model in this run
        t = choices["E" if name == "E" else "D"].threshold if name in ("D", "E", "random") else None
        results[name] = run_configuration(name, eval_preds, roles, cfg, threshold=t)
    return results, choices


# ---------------------------------------------------------------- synthetic rows
def synthetic_predictions(n: int = 300, seed: int = 0, p_cheap: float = 0.6, p_strong: float = 0.8,
                          n_samples: int = 3, separation: float = 2.0) -> tuple[list[dict], dict]:
    """Seeded fake prediction rows + roles in the DESIGN.md format, for tests and report dry runs.

    Each role is right with its probability, independently; the verifier's logit is
    ``separation`` higher on right cheap proposals than on wrong ones (plus unit noise), so its
    prob is informative but imperfect. Sample 0 of E is the cheap model's own proposal.
    """
    rng = np.random.default_rng(seed)
    share = np.array([0.2, 0.2, 0.1, 0.1, 0.05, 0.05, 0.1, 0.15, 0.05])  # skewed, like real traces
    gold = rng.choice(LABELS, n, p=share)
    sigmoid = lambda z: 1.0 / (1.0 + np.exp(-z))  # noqa: E731

    def action(g, gc, p_right):
        right = rng.random() < p_right
        lab = g if right else str(rng.choice([x for x in LABELS if x != g]))
        call = None
        if lab in TOOL_LABELS:  # right type: the gold call 60%, the gold tool with other arguments 20%
            u = rng.random()
            call = ({"name": "other", "arguments": {"x": 1}} if not (right and gc) or u >= 0.8
                    else gc if u < 0.6 else {"name": gc["name"], "arguments": {"x": -1}})
        return lab, call, right

    rows = []
    for i, g in enumerate(map(str, gold)):
        gc = {"name": f"fn{i % 3}", "arguments": {"x": int(i % 5)}} if g in TOOL_LABELS else None
        row = {"id": f"syn-{i}", "source": ["bfcl/base", "synthetic/shop", "synthetic/files"][i % 3],
               "label": g, "gold_call": gc}
        for role, p, (pt, size) in (("cheap", p_cheap, (400, 0.5)), ("strong", p_strong, (400, 2.0)),
                                    ("strong_frozen", p_strong - 0.2, (420, 2.0))):
            lab, call, _ = action(g, gc, p)
            logp = np.log(np.full(len(LABELS), 0.3 / (len(LABELS) - 1)))
            logp[LABELS.index(lab)] = np.log(0.7)
            gen = int(rng.integers(5, 25)) if call else 2
            row[role] = {"logp": logp.tolist(), "pred": lab, "call": call, "prompt_tokens": pt + i % 50,
                         "gen_tokens": gen, "seconds": size * 0.01 * (pt + gen) / 100}
        right = row["cheap"]["pred"] == g
        prob = float(sigmoid(separation * (2 * right - 1) / 2 + rng.normal()))
        row["verifier_cheap"] = {"score": float(np.log(prob / (1 - prob))), "prob": prob,
                                 "tokens": row["cheap"]["prompt_tokens"] + row["cheap"]["gen_tokens"], "seconds": 0.02}
        samples = [{"label": row["cheap"]["pred"], "call": row["cheap"]["call"], "score": row["verifier_cheap"]["score"],
                    "prob": prob, "tokens": row["cheap"]["gen_tokens"]}]
        for _ in range(n_samples - 1):
            lab, call, r = action(g, gc, p_cheap * 0.9)  # later samples are a bit worse
            q = float(sigmoid(separation * (2 * r - 1) / 2 + rng.normal()))
            samples.append({"label": lab, "call": call, "score": float(np.log(q / (1 - q))), "prob": q,
                            "tokens": int(rng.integers(2, 25))})
        row["samples"] = samples
        rows.append(row)
    roles = {"cheap": {"params": 0.5e9, "flops_per_token": 1.0e9}, "strong": {"params": 2.0e9, "flops_per_token": 4.0e9},
             "strong_frozen": {"params": 2.0e9, "flops_per_token": 4.0e9}, "verifier": {"params": 0.5e9, "flops_per_token": 1.0e9}}
    return rows, roles
