"""Statistics of the study: intervals, paired tests, discrimination, calibration, frontiers.

Everything that a library already does is delegated to it -- ``scipy.stats.bootstrap``,
sklearn's metrics and ``calibration_curve`` -- so the numbers in the report are the textbook
ones. What is left here is the glue a study needs and libraries lack: intervals and paired tests
at the level of clusters (scenario groups / trajectories: the steps of one group are not
independent draws), degenerate inputs (one class, all-equal values) answered with NaN or a
zero-width interval and a reason instead of an exception, the cost-accuracy frontier summaries
and the spread across training seeds.
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


# ---------------------------------------------------------------- clustered intervals and tests
def _codes(groups, n: int) -> tuple[np.ndarray, int]:
    if groups is None:
        return np.arange(n), n  # every step its own cluster: the iid bootstrap
    codes = pd.factorize(pd.Series(list(groups), dtype=object))[0]
    if len(codes) != n:
        raise ValueError(f"groups: {len(codes)} keys for {n} values")
    return codes, int(codes.max()) + 1 if n else 0


def cluster_draws(n_groups: int, n_resamples: int, seed: int) -> np.ndarray:
    """[n_resamples, n_groups] cluster indices drawn with replacement (the same for a given seed,
    so two statistics bootstrapped with one seed are resampled alike)."""
    return np.random.default_rng(seed).integers(0, n_groups, size=(n_resamples, n_groups))


def cluster_bootstrap_ci(values, groups=None, n_resamples: int = 1000, seed: int = 0,
                         confidence: float = 0.95) -> CI:
    """Mean of ``values`` with a percentile interval from resampling whole clusters.

    Steps of one scenario group or trajectory are not independent (the same context, the same
    model state), so the groups are resampled with replacement and each resample's mean is
    sum of its groups' values / sum of their sizes. ``groups=None`` is the iid bootstrap.
    """
    v = np.asarray(values, float)
    codes, g = _codes(groups, len(v))
    if len(v) < 2 or g < 2:
        return CI(float(v.mean()) if len(v) else float("nan"), float("nan"), float("nan"))
    sums, sizes = np.bincount(codes, v, g), np.bincount(codes, minlength=g).astype(float)
    draws = cluster_draws(g, n_resamples, seed)
    dist = sums[draws].sum(1) / sizes[draws].sum(1)
    a = (1 - confidence) / 2
    return CI(float(v.mean()), float(np.quantile(dist, a)), float(np.quantile(dist, 1 - a)))


def cluster_statistic_ci(data: tuple, statistic: Callable, groups=None, n_resamples: int = 1000,
                         seed: int = 0, confidence: float = 0.95) -> CI:
    """Any ``statistic(*arrays)`` (e.g. AUROC) with a cluster-bootstrap percentile interval;
    resamples where the statistic is undefined (NaN) are dropped."""
    arrays = [np.asarray(a) for a in data]
    n = len(arrays[0])
    codes, g = _codes(groups, n)
    point = float(statistic(*arrays)) if n else float("nan")
    if n < 2 or g < 2:
        return CI(point, float("nan"), float("nan"))
    members = [np.flatnonzero(codes == k) for k in range(g)]
    dist = []
    for draw in cluster_draws(g, n_resamples, seed):
        idx = np.concatenate([members[k] for k in draw])
        dist.append(statistic(*[a[idx] for a in arrays]))
    dist = np.asarray(dist, float)
    dist = dist[np.isfinite(dist)]
    if not len(dist):
        return CI(point, float("nan"), float("nan"))
    a = (1 - confidence) / 2
    return CI(point, float(np.quantile(dist, a)), float(np.quantile(dist, 1 - a)))


def cluster_auroc(y, score, groups=None, n_resamples: int = 1000, seed: int = 0) -> dict:
    """AUROC of ``score`` for binary ``y`` with a cluster-bootstrap interval (NaN + reason when undefined)."""
    y, score = np.asarray(y).astype(int), np.asarray(score, float)
    ok = np.isfinite(score)
    y, score = y[ok], score[ok]
    groups = None if groups is None else np.asarray(list(groups), dtype=object)[ok]
    if len(np.unique(y)) < 2:
        return {"auroc": float("nan"), "low": float("nan"), "high": float("nan"), "n": len(y),
                "reason": "no rows" if len(y) == 0 else "only one class"}

    def stat(yy, ss):
        return roc_auc_score(yy, ss) if len(np.unique(yy)) == 2 else np.nan

    ci = cluster_statistic_ci((y, score), stat, groups, n_resamples, seed)
    return {"auroc": ci.estimate, "low": ci.low, "high": ci.high, "n": len(y), "reason": ""}


class PairedTest(NamedTuple):
    diff: float  # mean(a) - mean(b)
    low: float
    high: float
    pvalue: float  # two-sided cluster sign-flip permutation test
    n_groups: int


def paired_cluster_test(values_a, values_b, groups=None, n_resamples: int = 1000, seed: int = 0,
                        confidence: float = 0.95, n_permutations: int = 10000) -> PairedTest:
    """Difference of two configurations scored on the same steps, at the cluster level.

    Interval: cluster bootstrap of the per-step differences (``n_resamples``, the same draws as
    :func:`cluster_bootstrap_ci` with this seed). Test: under "no difference" the two
    configurations are exchangeable within each cluster, so each cluster's summed difference may
    flip its sign; p = share of sign patterns whose |sum| reaches the observed one: every pattern
    when 2^groups <= ``n_permutations`` (exact), else ``n_permutations`` random ones counted with
    the observed pattern, (k + 1) / (n + 1), so a Monte Carlo p is never 0. Values may be
    expectations (random acceptance scored in expectation), not only 0/1.
    """
    d = np.asarray(values_a, float) - np.asarray(values_b, float)
    ci = cluster_bootstrap_ci(d, groups, n_resamples, seed, confidence)
    codes, g = _codes(groups, len(d))
    sums = np.bincount(codes, d, g)
    if g == 0 or not np.any(sums):
        return PairedTest(ci.estimate, ci.low, ci.high, 1.0, g)
    observed = abs(sums.sum()) - 1e-12  # tolerance: sums of floats
    if 2 ** g <= n_permutations:
        signs = 1 - 2 * ((np.arange(2 ** g)[:, None] >> np.arange(g)) & 1)
        p = float(np.mean(np.abs(signs @ sums) >= observed))
    else:
        signs = np.random.default_rng(seed).choice([-1, 1], size=(n_permutations, g))
        p = float((np.sum(np.abs(signs @ sums) >= observed) + 1) / (n_permutations + 1))
    return PairedTest(ci.estimate, ci.low, ci.high, p, g)


# ---------------------------------------------------------------- gap recovered, seeds
def pgr(accuracy: float, acc_weak: float, acc_strong: float) -> float:
    """Performance gap recovered: (acc - weak) / (strong - weak); NaN when there is no gap."""
    gap = acc_strong - acc_weak
    return float((accuracy - acc_weak) / gap) if gap > 0 else float("nan")


def apgr(curve: pd.DataFrame, acc_weak: float, acc_strong: float, x: str = "strong_share",
         y: str = "accuracy") -> float:
    """RouteLLM's average performance gap recovered: the area under PGR(x) for the share of
    steps sent to the strong model x in [0, 1] (trapezoids; the end points (0, weak) and
    (1, strong) are added, and at equal x the best accuracy is kept)."""
    if not acc_strong > acc_weak:
        return float("nan")
    d = curve[[x, y]].dropna().groupby(x)[y].max()
    pts = pd.concat([pd.Series({0.0: acc_weak}), d, pd.Series({1.0: acc_strong})])
    pts = pts.groupby(level=0).max().sort_index()
    g = (pts.to_numpy(float) - acc_weak) / (acc_strong - acc_weak)
    xs = pts.index.to_numpy(float)
    return float(np.sum((xs[1:] - xs[:-1]) * (g[1:] + g[:-1]) / 2))


def cost_to_share(curve: pd.DataFrame, acc_ref: float, shares=(0.5, 0.8, 0.95), x: str = "measured_cost",
                  y: str = "accuracy") -> dict[float, float]:
    """Cheapest ``x`` of a point reaching each share of the reference accuracy (A's); NaN if none."""
    d = curve[[x, y]].dropna()
    out = {}
    for s in shares:
        ok = d[y].to_numpy(float) >= s * acc_ref - 1e-12
        out[s] = float(d[x].to_numpy(float)[ok].min()) if ok.any() else float("nan")
    return out


def across_seeds(per_seed: dict) -> pd.DataFrame:
    """Mean and spread across training seeds beside each seed's own interval.

    ``per_seed``: ``{seed: {metric: value | (estimate, low, high) | {"estimate"|"auroc", "low", "high"}}}``;
    a missing or undefined (None / NaN) estimate leaves that seed out of the metric's row.
    Returns one row per metric (sorted): ``mean, std`` (sample sd, ddof=1; NaN for one seed),
    ``min, max, n_seeds`` and ``per_seed`` (``{seed: [estimate, low, high]}``, the seeds counted).
    """
    metrics = sorted({m for vals in per_seed.values() for m in vals})
    rows = []
    for m in metrics:
        got = {s: _triple(v[m]) for s, v in per_seed.items() if m in v}
        got = {s: t for s, t in got.items() if np.isfinite(t[0])}
        est = np.array([t[0] for t in got.values()], float)
        nan = float("nan")
        rows.append({"metric": m, "mean": float(np.mean(est)) if len(est) else nan,
                     "std": float(np.std(est, ddof=1)) if len(est) > 1 else nan,
                     "min": float(est.min()) if len(est) else nan, "max": float(est.max()) if len(est) else nan,
                     "n_seeds": len(est), "per_seed": got})
    return pd.DataFrame(rows)


def _float(x) -> float:
    return float("nan") if x is None else float(x)


def _triple(v) -> list[float]:
    if isinstance(v, dict):
        return [_float(v.get("estimate", v.get("auroc"))), _float(v.get("low")), _float(v.get("high"))]
    if isinstance(v, (tuple, list)):
        return [_float(x) for x in (list(v[:3]) + [None, None])[:3]]
    return [_float(v), float("nan"), float("nan")]
