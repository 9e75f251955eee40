"""Statistics of the study: intervals, paired tests, discrimination, calibration, frontiers.

Everything that a library already does is delegated to it -- ``scipy.stats.bootstrap``,
``statsmodels``' McNemar, sklearn's metrics and ``calibration_curve`` -- so the numbers in the
report are the textbook ones. What is left here is the glue a study needs and libraries lack:
degenerate inputs (one class, all-equal values) answered with NaN or a zero-width interval
and a reason instead of an exception, and the cost-accuracy frontier summaries.
"""

from __future__ import annotations

import warnings
from typing import Callable, NamedTuple, Sequence

import numpy as np
import pandas as pd
from scipy import stats as sps
from sklearn.calibration import calibration_curve
from sklearn.metrics import (
    accuracy_score,
    brier_score_loss,
    confusion_matrix,
    f1_score,
    precision_recall_fscore_support,
    roc_auc_score,
)
from statsmodels.stats.contingency_tables import mcnemar as _sm_mcnemar

from specact.actions import LABELS


class CI(NamedTuple):
    estimate: float
    low: float
    high: float


# ---------------------------------------------------------------- bootstrap
def bootstrap_ci(
    data,
    statistic: Callable | None = None,
    n_resamples: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
    method: str = "percentile",
) -> CI:
    """Point estimate and bootstrap interval of ``statistic`` (default: the mean).

    ``data`` is one array (``statistic(values)``) or a tuple of equally long arrays resampled
    together by row (``statistic(y_true, y_pred)``, e.g. macro-F1). Rows are resampled through
    their indices, so any element type (label strings, dicts) works. ``percentile`` is the
    default because BCa's jackknife costs n extra statistic calls per interval; pass
    ``method="BCa"`` where that is affordable. Constant data (every resample equal) gives a
    zero-width interval rather than scipy's NaN + warning; fewer than 2 rows give NaN bounds.
    """
    arrays = [np.asarray(a) for a in (data if isinstance(data, tuple) else (data,))]
    n = len(arrays[0])
    if any(len(a) != n for a in arrays):
        raise ValueError(f"bootstrap_ci: arrays of unequal length {[len(a) for a in arrays]}")
    if statistic is None:  # the mean, vectorised over resamples (fast path)
        vals = arrays[0].astype(float)
        point = float(vals.mean()) if n else float("nan")
        stat, vectorized = (lambda idx, axis=-1: vals[idx].mean(axis=axis)), True
    else:
        point = float(statistic(*arrays)) if n else float("nan")
        stat, vectorized = (lambda idx: statistic(*[a[idx] for a in arrays])), False
    if n < 2 or not np.isfinite(point):
        return CI(point, float("nan"), float("nan"))
    if statistic is None and np.all(vals == vals[0]):
        return CI(point, point, point)  # every resample has the same mean
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # DegenerateDataWarning: handled below
        res = sps.bootstrap(
            (np.arange(n),), stat, n_resamples=n_resamples, vectorized=vectorized,
            confidence_level=confidence, method=method, rng=np.random.default_rng(seed),
        )
    lo, hi = float(res.confidence_interval.low), float(res.confidence_interval.high)
    if not (np.isfinite(lo) and np.isfinite(hi)):
        dist = np.asarray(res.bootstrap_distribution, float)
        if np.all(dist == dist[0]):  # a degenerate statistic: all resamples agree
            lo = hi = float(dist[0])
    return CI(point, lo, hi)


def paired_bootstrap_diff(values_a, values_b, n_resamples: int = 1000, seed: int = 0,
                          confidence: float = 0.95) -> CI:
    """Interval of mean(a) - mean(b) over the same steps, resampled as pairs.

    Pairing removes the between-step variance both configurations share, so the interval of
    the difference is much narrower than the two marginal intervals suggest.
    """
    d = np.asarray(values_a, float) - np.asarray(values_b, float)
    return bootstrap_ci(d, None, n_resamples=n_resamples, seed=seed, confidence=confidence)


# ---------------------------------------------------------------- paired test
class McNemar(NamedTuple):
    statistic: float
    pvalue: float
    b: int  # a right, b wrong
    c: int  # a wrong, b right
    exact: bool


def mcnemar(correct_a, correct_b, exact: bool | None = None) -> McNemar:
    """McNemar's test of two configurations scored on the same steps (statsmodels).

    The exact binomial version is used when the discordant pairs number fewer than 25 (the
    chi-square approximation is poor there). Non-binary inputs (e.g. the random-accept
    reference in expectation) have no McNemar test: NaN.
    """
    a, b_ = np.asarray(correct_a, float), np.asarray(correct_b, float)
    if a.shape != b_.shape:
        raise ValueError(f"mcnemar: unequal lengths {a.shape} vs {b_.shape}")
    if not (np.isin(a, (0.0, 1.0)).all() and np.isin(b_, (0.0, 1.0)).all()):
        return McNemar(float("nan"), float("nan"), -1, -1, False)
    a, b_ = a.astype(bool), b_.astype(bool)
    table = [[int((a & b_).sum()), int((a & ~b_).sum())], [int((~a & b_).sum()), int((~a & ~b_).sum())]]
    b, c = table[0][1], table[1][0]
    if exact is None:
        exact = (b + c) < 25
    if b + c == 0:  # no discordant pair: the configurations cannot be told apart
        return McNemar(0.0, 1.0, 0, 0, bool(exact))
    r = _sm_mcnemar(table, exact=exact, correction=True)
    return McNemar(float(r.statistic), float(r.pvalue), b, c, bool(exact))


# ---------------------------------------------------------------- discrimination / calibration
def auroc(y, score, n_resamples: int = 1000, seed: int = 0) -> dict:
    """AUROC of ``score`` for binary ``y`` with a bootstrap interval; NaN + reason when undefined."""
    y, score = np.asarray(y).astype(int), np.asarray(score, float)
    classes = np.unique(y)
    if len(classes) < 2:
        what = "no rows" if len(y) == 0 else f"only one class (all {classes[0]})"
        return {"auroc": float("nan"), "low": float("nan"), "high": float("nan"), "n": len(y), "reason": what}

    def stat(yy, ss):
        return roc_auc_score(yy, ss) if len(np.unique(yy)) == 2 else np.nan

    ci = bootstrap_ci((y, score), stat, n_resamples=n_resamples, seed=seed)
    reason = "" if np.isfinite(ci.low) else "some resamples held one class only"
    return {"auroc": ci.estimate, "low": ci.low, "high": ci.high, "n": len(y), "reason": reason}


def reliability(y, prob, n_bins: int = 10, strategy: str = "uniform") -> dict:
    """Reliability table (sklearn ``calibration_curve``) plus ECE, MCE and Brier score.

    ECE = sum over non-empty bins of (bin share) * |observed frequency - mean predicted prob|.
    The bin counts use sklearn's own bin edges and assignment, so the table matches its curve.
    """
    y, prob = np.asarray(y).astype(int), np.clip(np.asarray(prob, float), 0.0, 1.0)
    if len(y) == 0:
        return {"table": pd.DataFrame(columns=["bin", "count", "mean_prob", "frac_positive"]),
                "ece": float("nan"), "mce": float("nan"), "brier": float("nan")}
    frac_pos, mean_prob = calibration_curve(y, prob, n_bins=n_bins, strategy=strategy, pos_label=1)
    edges = (np.percentile(prob, np.linspace(0, 100, n_bins + 1)) if strategy == "quantile"
             else np.linspace(0.0, 1.0, n_bins + 1))
    counts = np.bincount(np.searchsorted(edges[1:-1], prob), minlength=n_bins)  # sklearn's binning
    nonzero = np.flatnonzero(counts)
    table = pd.DataFrame({"bin": nonzero, "low": edges[nonzero], "high": edges[nonzero + 1],
                          "count": counts[nonzero], "mean_prob": mean_prob, "frac_positive": frac_pos})
    gap = np.abs(table["frac_positive"] - table["mean_prob"])
    return {"table": table, "ece": float((table["count"] / len(y) * gap).sum()),
            "mce": float(gap.max()), "brier": float(brier_score_loss(y, prob))}


def classification_summary(gold, pred, labels: Sequence[str] = LABELS) -> dict:
    """Accuracy, macro-F1, per-class precision / recall / F1 / support and confusion matrix.

    Macro-F1 averages over the labels that occur in gold or predictions (sklearn's default
    set, kept in ``labels`` order): a label absent from both has no F1 and would otherwise
    count as 0.
    """
    gold, pred = [str(g) for g in gold], [str(p) for p in pred]
    present = [lab for lab in labels if lab in set(gold) | set(pred)]
    p, r, f, s = precision_recall_fscore_support(gold, pred, labels=list(labels), zero_division=0)
    per_class = pd.DataFrame({"label": list(labels), "precision": p, "recall": r, "f1": f, "support": s})
    cm = pd.DataFrame(confusion_matrix(gold, pred, labels=list(labels)), index=list(labels), columns=list(labels))
    cm.index.name, cm.columns.name = "gold", "pred"
    return {
        "n": len(gold),
        "accuracy": float(accuracy_score(gold, pred)) if gold else float("nan"),
        "macro_f1": float(f1_score(gold, pred, labels=present, average="macro", zero_division=0)) if gold else float("nan"),
        "per_class": per_class,
        "confusion": cm,
    }


def macro_f1(gold, pred) -> float:
    """Macro-F1 over the labels present in gold or predictions (bootstrap-friendly)."""
    present = sorted(set(map(str, gold)) | set(map(str, pred)))
    return float(f1_score(list(map(str, gold)), list(map(str, pred)), labels=present, average="macro", zero_division=0))


# ---------------------------------------------------------------- baselines
def baselines(train_labels, eval_labels, labels: Sequence[str] = LABELS) -> dict:
    """Chance levels: uniform random guessing (1/9) and always predicting the TRAIN majority.

    The majority label comes from the training distribution (what a model could know); its
    accuracy is measured on the evaluated split.
    """
    train = pd.Series(list(train_labels), dtype=object)
    if train.empty:
        raise ValueError("baselines: empty training label list")
    majority = str(train.value_counts().index[0])
    ev = np.asarray(list(eval_labels), dtype=object)
    return {"random": 1.0 / len(labels), "majority_label": majority,
            "majority": float(np.mean(ev == majority)) if len(ev) else float("nan")}


def add_baseline_ratios(df: pd.DataFrame, base: dict, col: str = "accuracy") -> pd.DataFrame:
    """``x_random`` / ``x_majority``: accuracy as a multiple of each chance level."""
    out = df.copy()
    out["x_random"] = out[col] / base["random"]
    out["x_majority"] = out[col] / base["majority"] if base["majority"] > 0 else np.nan
    return out


# ---------------------------------------------------------------- cost-accuracy frontier
def pareto_hull(df: pd.DataFrame, x: str = "nominal_cost", y: str = "accuracy", convex: bool = False) -> pd.DataFrame:
    """The Pareto-efficient points (no other point is cheaper and at least as accurate).

    ``convex=True`` keeps only the upper-left convex hull of those: the operating points
    reachable by mixing two thresholds at random, the fair frontier when comparing curves.
    """
    d = df.dropna(subset=[x, y]).sort_values([x, y], ascending=[True, False])
    keep, best = [], -np.inf
    for i, v in zip(d.index, d[y]):
        if v > best:
            keep.append(i)
            best = v
    front = d.loc[keep]
    if convex and len(front) > 2:
        pts = list(zip(front[x], front[y], front.index))
        hull: list = []
        for p in pts:  # monotone chain, keeping right turns only (upper hull)
            while len(hull) >= 2:
                (x1, y1, _), (x2, y2, _) = hull[-2], hull[-1]
                if (x2 - x1) * (p[1] - y1) - (y2 - y1) * (p[0] - x1) >= 0:
                    hull.pop()
                else:
                    break
            hull.append(p)
        front = front.loc[[h[2] for h in hull]]
    return front.reset_index(drop=True)


def frontier_auc(df: pd.DataFrame, cost_lo: float, cost_hi: float, x: str = "nominal_cost",
                 y: str = "accuracy", floor: float = 0.0) -> float:
    """Mean best accuracy attainable over costs in [cost_lo, cost_hi] (area / width).

    The frontier is the step function "best accuracy of any point costing at most c";
    below the cheapest point it is ``floor``. Pass B's and A's points along with the sweep
    so that the whole range from B's cost to A's cost is covered.
    """
    if not cost_hi > cost_lo:
        return float("nan")
    d = df.dropna(subset=[x, y])
    xs, ys = d[x].to_numpy(float), d[y].to_numpy(float)
    cuts = np.unique(np.concatenate([[cost_lo, cost_hi], xs[(xs > cost_lo) & (xs < cost_hi)]]))
    area = 0.0
    for a, b in zip(cuts[:-1], cuts[1:]):
        ok = xs <= a + 1e-12  # tolerance: costs are sums of floats
        area += (ys[ok].max() if ok.any() else floor) * (b - a)
    return float(area / (cost_hi - cost_lo))


def cost_to_reach(df: pd.DataFrame, fraction: float, acc_lo: float, acc_hi: float,
                  x: str = "nominal_cost", y: str = "accuracy") -> float:
    """Cheapest cost of a point closing ``fraction`` of the gap from ``acc_lo`` (B) to ``acc_hi``
    (the best accuracy); NaN when no point gets there. No interpolation between points."""
    target = acc_lo + fraction * (acc_hi - acc_lo)
    d = df.dropna(subset=[x, y])
    ok = d[y].to_numpy(float) >= target - 1e-12
    return float(d[x].to_numpy(float)[ok].min()) if ok.any() else float("nan")
