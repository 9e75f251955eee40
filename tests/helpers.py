"""Seeded synthetic per-step prediction rows (DESIGN.md format) for the deferral and report tests."""

from __future__ import annotations

import numpy as np

from specact.actions import LABELS, TOOL_LABELS

ROLES = {"cheap": {"params": 0.5e9, "flops_per_token": 1.0e9}, "strong": {"params": 2.0e9, "flops_per_token": 4.0e9},
         "strong_frozen": {"params": 2.0e9, "flops_per_token": 4.0e9}, "verifier": {"params": 0.5e9, "flops_per_token": 1.0e9}}
SHARE = np.array([0.2, 0.2, 0.1, 0.1, 0.05, 0.05, 0.1, 0.15, 0.05])  # skewed, like real traces


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def _action(rng, g, gc, right):
    """(label, call) of a role that is right about the type or not; a right tool call names the
    gold tool 80% of the time (60% with the gold arguments)."""
    lab = g if right else str(rng.choice([x for x in LABELS if x != g]))
    call = None
    if lab in TOOL_LABELS:
        u = rng.random()
        call = ({"name": "other", "arguments": {"x": 1}} if not (right and gc) or u >= 0.8
                else gc if u < 0.6 else {"name": gc["name"], "arguments": {"x": -1}})
    return lab, call


def _logp(rng, pred, gold, right, separation):
    """Label log-probabilities with ``pred`` on top; the top probability is higher when right
    (by ``separation`` on the logit scale) and a wrong role puts gold second half the time."""
    top = float(np.clip(_sigmoid(0.5 + separation * (right - 0.5) + rng.normal()), 0.2, 0.99))  # 0.2: pred stays on top
    p = np.full(len(LABELS), (1 - top) * 0.3 / (len(LABELS) - 2))
    second = gold if (not right and rng.random() < 0.5) else str(rng.choice([x for x in LABELS if x != pred]))
    p[LABELS.index(second)] = (1 - top) * 0.7
    p[LABELS.index(pred)] = top
    p[LABELS.index(second)] = min(p[LABELS.index(second)], top * 0.999)  # pred stays the argmax
    return np.log(p / p.sum()).tolist()


def _samples(rng, row, g, gc, n_samples, separation):
    """E: the cheap proposer's top-N distinct labels, each scored by an informative verifier."""
    order = np.argsort(-np.asarray(row["cheap"]["logp"]), kind="stable")[:n_samples]
    out = []
    for j in order:
        lab = LABELS[j]
        call = row["cheap"]["call"] if lab == row["cheap"]["pred"] else _action(rng, g, gc, lab == g)[1] if lab in TOOL_LABELS else None
        if lab == row["cheap"]["pred"]:
            prob, toks = row["verifier_cheap"]["prob"], 0
        else:
            prob, toks = float(_sigmoid(separation * ((lab == g) - 0.5) + rng.normal())), int(rng.integers(2, 25))
        out.append({"label": lab, "call": call if lab in TOOL_LABELS else None, "score": float(np.log(prob / (1 - prob))),
                    "prob": prob, "tokens": toks})
    return out


def synthetic_predictions(n: int = 300, seed: int = 0, p_cheap: float = 0.6, p_strong: float = 0.8,
                          n_samples: int = 3, separation: float = 2.0) -> tuple[list[dict], dict]:
    """Rows + roles: each role is right with its probability, independently; the verifier's
    logit and each role's top label probability are ``separation`` higher when right (plus unit
    noise), so every signal is informative but imperfect. Steps come in groups of 4 (``group``)."""
    rng = np.random.default_rng(seed)
    gold = rng.choice(LABELS, n, p=SHARE)
    rows = []
    for i, g in enumerate(map(str, gold)):
        gc = {"name": f"fn{i % 3}", "arguments": {"x": int(i % 5)}} if g in TOOL_LABELS else None
        row = {"id": f"syn-{i}", "source": ["bfcl/base", "synthetic/shop", "synthetic/files"][i % 3],
               "domain": ["bfcl:A", "synthetic:shop", "synthetic:files"][i % 3], "group": f"g{i // 4}",
               "label": g, "gold_call": gc}
        for role, p, (pt, size) in (("cheap", p_cheap, (400, 0.5)), ("strong", p_strong, (400, 2.0)),
                                    ("strong_frozen", p_strong - 0.2, (420, 2.0))):
            right = rng.random() < p
            lab, call = _action(rng, g, gc, right)
            gen = int(rng.integers(5, 25)) if call else 2
            row[role] = {"logp": _logp(rng, lab, g, right, separation), "pred": lab, "call": call,
                         "prompt_tokens": pt + i % 50, "gen_tokens": gen, "seconds": size * 0.01 * (pt + gen) / 100}
        prob = float(_sigmoid(separation * ((row["cheap"]["pred"] == g) - 0.5) + rng.normal()))
        row["verifier_cheap"] = {"score": float(np.log(prob / (1 - prob))), "prob": prob,
                                 "tokens": row["cheap"]["prompt_tokens"] + row["cheap"]["gen_tokens"], "seconds": 0.02}
        row["samples"] = _samples(rng, row, g, gc, n_samples, separation)
        rows.append(row)
    return rows, {k: dict(v) for k, v in ROLES.items()}
