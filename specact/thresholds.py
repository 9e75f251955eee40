"""Operating points of the thresholded configurations (D, D_conf, E), chosen on dev only, and
their threshold sweeps and the prices every configuration is charged.

A thresholded configuration accepts the cheap proposal when a score clears a threshold and
otherwise asks the strong model. :func:`operating_parts` gives, for one configuration, the
score, the proposal and the costs paid whether or not it is accepted; :func:`choose` picks the
signal (where the table offers several), the threshold, and for E its picker, all on DEV rows.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from specact.config import EvalConfig
from specact.configurations import CONFIGURATIONS, THRESHOLDED
from specact.predictions import Steps


@dataclass
class ThresholdChoice:
    threshold: float
    dev_accept_precision: float
    dev_accept_rate: float
    dev_n_accepted: int
    rule: str  # "target" (lowest threshold reaching it), "max_f1" (target unreachable), "below_B" (rejects all)
    target: float
    signal: str = ""  # the score thresholded (D_conf: conf_top or conf_margin; E: its picker)
    judge: str = "type"  # the correctness the precision was measured with

    def asdict(self) -> dict:
        return asdict(self)


def prices(s: Steps, cfg: EvalConfig) -> dict[str, float]:
    """Nominal price of one call of each role. The verifier's is its measured FLOPs per call
    over a strong call's on these rows (it reads the whole prompt plus the proposal) unless
    ``cfg.verifier_cost_measured`` is off or the rows cannot tell."""
    ver = cfg.cost_verifier
    if cfg.verifier_cost_measured and "strong" in s.role:
        ratio = float(np.mean(s.ver_flops) / np.mean(s.role["strong"]["flops"])) * cfg.cost_strong
        ver = ratio if np.isfinite(ratio) and ratio > 0 else ver
    return {"cheap": cfg.cost_cheap, "strong": cfg.cost_strong, "verifier": ver, "linear": 0.0}


def operating_parts(s: Steps, name: str, cfg: EvalConfig, signal: str) -> dict:
    """Score, proposal (judged), and the nominal / FLOPs / seconds paid at every step of a
    thresholded, oracle or random configuration (the fallback's cost comes on top on reject)."""
    conf, price = CONFIGURATIONS[name], prices(s, cfg)
    cheap = s.need("cheap")
    if conf.source == "candidates":
        c = s.candidates(cfg.n_samples, signal)
        per_call = price["verifier"] if signal == "verifier" else 0.0
        return {"score": c["score"], "prop": c["pick"], "nominal": price["cheap"] + c["n"] * per_call,
                "flops": c["flops"], "seconds": c["seconds"]}
    verified = "verifier" in conf.cost
    score = s.signal(signal) if signal else np.full(s.n, np.nan)
    return {"score": score, "prop": cheap,
            "nominal": np.full(s.n, price["cheap"] + (price["verifier"] if verified else 0.0)),
            "flops": cheap["flops"] + (s.ver_flops if verified else 0.0),
            "seconds": cheap["seconds"] + (s.ver_seconds if verified else 0.0)}


def threshold_for(score, right, target: float, min_accepted: int = 1) -> tuple[float, float, int, str]:
    """(threshold, precision, n accepted, rule) on one score array and the truth it predicts.

    The lowest candidate (a unique score) whose accept precision -- the share of accepted
    proposals that are right -- reaches ``target`` with at least ``min_accepted`` accepts: the
    lowest such threshold accepts the most, so it is the cheapest. When none does, the
    threshold maximising F1 of "accept" as a detector of right proposals (price-free).
    """
    score, right = np.asarray(score, float), np.asarray(right, bool)
    best_f1, out = None, (np.inf, np.nan, 0, "none")
    for t in np.unique(score[np.isfinite(score)]):
        acc = score >= t
        k, tp = int(acc.sum()), int((acc & right).sum())
        prec = tp / k if k else np.nan
        if k >= min_accepted and prec >= target:
            return float(t), float(prec), k, "target"  # candidates ascend: the first hit is the lowest
        f1 = 2 * tp / (k + right.sum()) if k + right.sum() else 0.0
        if best_f1 is None or f1 > best_f1:
            best_f1, out = f1, (float(t), float(prec), k, "max_f1")
    return out


def _auroc(y, score) -> float:
    ok = np.isfinite(score)
    y, score = np.asarray(y, bool)[ok], np.asarray(score, float)[ok]
    return float(roc_auc_score(y, score)) if len(np.unique(y)) == 2 else float("nan")


def choose(dev_preds, name: str, cfg: EvalConfig | None = None, judge: str = "type",
           min_accepted: int = 1) -> ThresholdChoice:
    """The operating point of thresholded configuration ``name``, from DEV rows only.

    Where the table offers several signals, the one chosen is D_conf's with the higher dev AUROC
    and E's picker with the higher dev accuracy at its own threshold. E must not fall below B on
    dev: if it would, its threshold rejects every proposal (the strong model answers).
    """
    cfg = cfg or EvalConfig()
    if name not in THRESHOLDED:
        raise ValueError(f"{name!r} has no threshold; thresholded: {list(THRESHOLDED)}")
    s = Steps(dev_preds)
    key = "correct" if judge == "type" else "strict"
    options = [sig for sig in CONFIGURATIONS[name].signals if has_signal(s, name, sig, cfg)]
    if not options:
        raise KeyError(f"{name}: the dev rows carry none of the signals {CONFIGURATIONS[name].signals}")
    picks = []
    for sig in options:
        part = operating_parts(s, name, cfg, sig)
        right = part["prop"][key].astype(bool)
        t, prec, k, rule = threshold_for(part["score"], right, cfg.target_accept_precision, min_accepted)
        strong = s.need("strong")[key] if "strong" in s.role else np.zeros(s.n)
        acc = float(np.where(part["score"] >= t, right, strong).mean())
        picks.append((ThresholdChoice(t, prec, k / s.n, k, rule, cfg.target_accept_precision, sig, judge),
                      _auroc(right, part["score"]), acc))
    best = max(picks, key=(lambda p: p[2]) if name == "E" else (lambda p: np.nan_to_num(p[1], nan=-1.0)))
    choice = best[0]
    if name == "E" and best[2] < float(s.need("cheap")[key].mean()):
        choice.threshold, choice.rule = float("inf"), "below_B"
    return choice


def has_signal(s: Steps, name: str, signal: str, cfg: EvalConfig) -> bool:
    """Whether the rows give ``name`` a finite score under ``signal``."""
    try:
        part = operating_parts(s, name, cfg, signal)
    except KeyError:
        return False
    return bool(np.isfinite(part["score"]).any())


def threshold_sweep(preds, roles: dict | None, cfg: EvalConfig | None, name: str, signal: str,
                    judge: str = "type") -> pd.DataFrame:
    """Accuracy and costs of ``name`` thresholded on ``signal`` at every unique score, plus
    "accept none" -- the same parts as :func:`specact.deferral.run_configuration`."""
    cfg = cfg or EvalConfig()
    s = Steps(preds, roles)
    key, strong, price = ("correct" if judge == "type" else "strict"), s.need("strong"), prices(s, cfg)
    part = operating_parts(s, name, cfg, signal)
    score, right = part["score"], part["prop"][key]
    rows = []
    for t in np.append(np.unique(score[np.isfinite(score)]), np.inf):
        w = score >= t
        rej = (~w).astype(float)
        rows.append({"threshold": t, "accuracy": float(np.where(w, right, strong[key]).mean()),
                     "nominal_cost": float((part["nominal"] + rej * price["strong"]).mean()),
                     "measured_cost": float((part["flops"] + rej * strong["flops"]).mean() / s.a_mean_flops()),
                     "accept_rate": float(w.mean()),
                     "accept_precision": float(right[w].mean()) if w.any() else np.nan})
    out = pd.DataFrame(rows)
    out.insert(0, "config", name)
    out.insert(1, "signal", signal)
    return out
