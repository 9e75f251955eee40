"""Tables, figures, provenance and the written report of one study run.

Every function takes the :class:`~specact.deferral.StepResults` of the configurations found
on disk (or the table built from them) and returns a DataFrame or a matplotlib ``Figure``; the
configurations come from the results, ordered by :mod:`specact.configurations`. Figures are
built with ``matplotlib.figure.Figure`` rather than pyplot (no global figure state between
cells) and shown with :func:`specact.nbutil.show`, which draws them as inline PNGs: a bare
``Figure`` has no image representation in IPython and would print as ``<Figure size ...>``.
Tables are shown with :func:`show_table` (HTML in the notebook, Markdown in ``report.md``).
:func:`publish` renders the executed report notebook as ``report.html`` and ``report.md``
(nbconvert, code hidden, cells tagged ``hide`` removed), so the two never drift apart.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure
from statsmodels.stats.proportion import proportion_confint

from specact.actions import LABELS
from specact.deferral import StepResults
from specact.stats import (
    add_baseline_ratios,
    cluster_bootstrap_ci,
    macro_f1,
    paired_cluster_test,
    pareto_hull,
)

ALPHA = 0.05  # significance level of every statement in the written finding
PAIRED_TEST = "paired cluster test"  # what every p-value of the report is (see paired_p)
ORDER = ("A", "A_frozen", "B", "linear", "C", "D", "D_conf", "E", "oracle", "random")  # fallback order
# What each configuration is, for the reader of a table (the registry's own text wins when it has one).
DESCRIBE = {"A": "strong, fine-tuned", "A_frozen": "strong, zero-shot", "B": "cheap proposer only",
            "linear": "TF-IDF + logistic regression", "C": "strong model verifies", "D": "learned verifier",
            "D_conf": "proposer confidence", "E": "N samples, verifier picks", "oracle": "perfect verifier: the ceiling",
            "random": "random acceptance at D's rate"}


def _registry() -> list[str]:
    """Configuration names in the order of ``specact.configurations.CONFIGURATIONS`` when it exists."""
    try:
        from specact.configurations import CONFIGURATIONS
    except ImportError:
        return list(ORDER)
    return list(CONFIGURATIONS) + [c for c in ("oracle", "random") if c not in CONFIGURATIONS]


def describe(name: str) -> str:
    """``D: learned verifier``: the name plus what it runs."""
    try:
        from specact.configurations import CONFIGURATIONS
        rule = CONFIGURATIONS.get(name) if hasattr(CONFIGURATIONS, "get") else None
        text = getattr(rule, "description", None) or (rule.get("description") if isinstance(rule, dict) else None)
    except ImportError:
        text = None
    text = text or DESCRIBE.get(name)
    return f"{name}: {text}" if text else name


def _ordered(results) -> list[str]:
    reg = _registry()
    return [c for c in reg if c in results] + [c for c in results if c not in reg]


# ---------------------------------------------------------------- reading a run's results
REPORTED_SPLITS = ("test", "ood", "dev")  # shown side by side in this order; dev only chooses thresholds


def find_splits(eval_root: str | Path) -> dict[str, Path]:
    """``{split: folder}`` of every ``<eval_root>/<split>/`` holding at least one configuration's
    results (``<config>/metrics.json``), test and ood first. ``eval_root`` may also be one split's
    folder (``eval/test``): its parent is searched."""
    root = Path(eval_root)
    if (root / "metrics.json").is_file() or root.name in REPORTED_SPLITS:
        root = root.parent
    found = {d.name: d for d in sorted(root.iterdir()) if d.is_dir() and any(d.glob("*/metrics.json"))} if root.is_dir() else {}
    return {k: found[k] for k in [s for s in REPORTED_SPLITS if s in found] + [s for s in found if s not in REPORTED_SPLITS]}


def load_split(split_dir: str | Path) -> dict[str, StepResults]:
    """Every configuration whose per-step results (``steps.jsonl`` + ``metrics.json``) the folder
    holds, in the registry's order: the configurations come from the results, not from a list."""
    d = Path(split_dir)
    names = [c.name for c in sorted(d.iterdir()) if (c / "metrics.json").is_file() and (c / "steps.jsonl").is_file()]
    out = {n: StepResults.load(d / n) for n in _ordered(names)}
    for n, res in out.items():  # the eval stage's intervals (over scenario groups) and dev choice
        extra = d / n / "extra.json"
        if extra.is_file():
            res.meta = {**(res.meta or {}), "extra": json.loads(extra.read_text())}
    return out


def prediction_rows(eval_dir: str | Path, split: str) -> list[dict]:
    """The per-step prediction rows of ``split`` ([] when none were written): ``<eval>/<split>/
    predictions.jsonl`` or ``<eval>/predictions_<split>.jsonl``, also beside a split folder."""
    d = Path(eval_dir)
    roots = [d, d.parent] if d.name in REPORTED_SPLITS else [d]
    for root in roots:
        for cand in (root / split / "predictions.jsonl", root / f"predictions_{split}.jsonl",
                     *[root / s / f"predictions_{split}.jsonl" for s in REPORTED_SPLITS]):
            if cand.is_file():
                return [json.loads(line) for line in cand.read_text().splitlines() if line.strip()]
    legacy = d / "predictions.jsonl"  # the old layout: eval/test/predictions.jsonl is the test split
    return [json.loads(x) for x in legacy.read_text().splitlines() if x.strip()] if d.name == split and legacy.is_file() else []


def reference_points(results: dict, rows: list[dict], roles: dict, cfg) -> dict:
    """Add random acceptance at D's rate and the oracle cascade when the eval stage did not write
    them (runs that evaluated only A-E); results that exist are kept as they are."""
    from specact.deferral import run_configuration

    if "D" not in results or not rows:
        return results
    out = dict(results)
    if "random" not in out:
        out["random"] = run_configuration("random", rows, roles, cfg, accept_rate=results["D"].accept_rate)
    if "oracle" not in out:
        out["oracle"] = run_configuration("oracle", rows, roles, cfg)
    return {n: out[n] for n in _ordered(out)}


def threshold_sweeps(rows: list[dict], roles: dict, cfg, names) -> dict[str, pd.DataFrame]:
    """Accuracy and cost at every threshold of each thresholded configuration in ``names``, on its
    first deferral signal in the registry (:mod:`specact.configurations`)."""
    from specact.configurations import CONFIGURATIONS, THRESHOLDED
    from specact.thresholds import threshold_sweep

    if not rows:
        return {}
    return {n: threshold_sweep(rows, roles, cfg, n, CONFIGURATIONS[n].signals[0]) for n in names if n in THRESHOLDED}


def verifier_quality(rows: list[dict], n_resamples: int = 1000, seed: int = 0) -> dict | None:
    """AUROC (with its 95% cluster-bootstrap interval over the rows' scenario groups) and reliability
    of the verifier's probability that the cheap model's top proposal is right (judged by
    :func:`specact.judge.proposal_correct`)."""
    from specact.judge import proposal_correct
    from specact.predictions import group_keys
    from specact.stats import cluster_auroc, reliability

    rows = [r for r in rows if isinstance(r.get("verifier_cheap"), dict)]
    if not rows:
        return None
    y = [proposal_correct(r, r["cheap"]["pred"], r["cheap"].get("call")) for r in rows]
    p = [r["verifier_cheap"]["prob"] for r in rows]
    return {"auroc": cluster_auroc(y, p, group_keys(rows), n_resamples, seed), "reliability": reliability(y, p)}


def threshold_choices(split_dir: str | Path, results: dict) -> dict:
    """The dev-chosen operating point of each thresholded configuration, as its eval stage saved it."""
    out = {}
    for name, res in results.items():
        extra = Path(split_dir) / name / "extra.json"
        choice = json.loads(extra.read_text()).get("choice") if extra.is_file() else (res.meta or {}).get("choice")
        if choice:
            out[name] = choice
    return out


# ---------------------------------------------------------------- tables
TABLE_COLUMNS = ("config", "n", "n_clusters", "accuracy", "accuracy_lo", "accuracy_hi", "macro_f1", "tool_name_acc",
                 "call_exact", "accept_rate", "accept_precision", "acc_rejected", "nominal_cost", "nominal_cost_lo",
                 "nominal_cost_hi", "measured_cost", "seconds", "x_random", "x_majority", "p_vs_B", "p_vs_A", "threshold")


def step_groups(steps: pd.DataFrame):
    """The cluster of each step: its ``group`` (scenario group / trajectory, written by the eval stage);
    None -- every step its own cluster -- for results saved without one."""
    g = steps["group"] if "group" in steps else None
    return None if g is None or g.isna().any() else g.astype(str).to_numpy()


def paired_p(a: StepResults, b: StepResults, n_resamples: int = 1000, seed: int = 0):
    """:func:`specact.stats.paired_cluster_test` of ``a``'s against ``b``'s correctness on the same
    steps (matched by id), over ``a``'s clusters: the clusters of the accuracy intervals."""
    other = b.steps.set_index("id")["correct"].reindex(a.steps["id"])
    if other.isna().any():
        raise ValueError(f"{a.name} and {b.name} were not scored on the same steps")
    return paired_cluster_test(a.steps["correct"].astype(float).to_numpy(), other.astype(float).to_numpy(),
                               step_groups(a.steps), n_resamples, seed)


def config_table(results: dict[str, StepResults], base: dict | None = None, n_resamples: int = 1000,
                 seed: int = 0, ref_b: str = "B", ref_a: str = "A") -> pd.DataFrame:
    """One row per configuration, every number needed to compare them (numeric columns).

    ``accept_precision`` is also the accuracy on accepted steps (an accepted proposal is the
    final action); ``acc_rejected`` is the strong fallback's accuracy on the rest. ``base``
    is :func:`specact.stats.baselines` (random 1/9, train-majority) for the x-columns.
    Intervals (accuracy, nominal cost) are cluster bootstraps over the steps' scenario groups
    (``n_clusters`` of them); ``p_vs_B`` / ``p_vs_A`` are the paired cluster test (:func:`paired_p`)
    of each configuration against B and A on the same steps and clusters.
    """
    rows = []
    for name in _ordered(results):
        r = results[name]
        s, summ, groups = r.steps, r.summary(), step_groups(r.steps)
        acc = cluster_bootstrap_ci(s["correct"].astype(float).to_numpy(), groups, n_resamples, seed)
        cost = cluster_bootstrap_ci(s["nominal_cost"].to_numpy(float), groups, n_resamples, seed)
        defined = s["pred"].notna().all()  # random in expectation has no single action per step
        row = {**summ, "n_clusters": len(s) if groups is None else len(set(groups)),
               "accuracy_lo": acc.low, "accuracy_hi": acc.high,
               "macro_f1": macro_f1(s["gold"], s["pred"]) if defined else np.nan,
               "nominal_cost_lo": cost.low, "nominal_cost_hi": cost.high}
        for ref, col in ((ref_b, "p_vs_B"), (ref_a, "p_vs_A")):
            ok = ref in results and ref != name
            row[col] = paired_p(r, results[ref], n_resamples, seed).pvalue if ok else np.nan
        rows.append(row)
    df = pd.DataFrame(rows)
    if base:
        df = add_baseline_ratios(df, base)
    return df[[c for c in TABLE_COLUMNS if c in df.columns]]


def _nan(x) -> bool:
    return x is None or (isinstance(x, (float, np.floating)) and not math.isfinite(x))


def _f(x, nd=3) -> str:
    return "–" if _nan(x) else f"{x:.{nd}f}"


def _pct(x, nd=1, sign=False) -> str:
    """A share as a percentage for reading (``0.5775`` -> ``57.8%``); ``–`` for a missing value."""
    if _nan(x):
        return "–"
    return f"{100 * x:+.{nd}f}" if sign else f"{100 * x:.{nd}f}%"


def _ci(a, lo, hi, nd=1) -> str:
    """``57.8% [53.2, 63.0]``: a share and its interval in percent."""
    if _nan(a):
        return "–"
    return _pct(a, nd) if _nan(lo) else f"{100 * a:.{nd}f}% [{100 * lo:.{nd}f}, {100 * hi:.{nd}f}]"


def _p(p) -> str:
    return "–" if _nan(p) else ("<0.001" if p < 1e-3 else f"{p:.2g}")


def headline_table(table: pd.DataFrame, ood: pd.DataFrame | None = None, names: dict | None = None,
                   test: str = PAIRED_TEST) -> pd.DataFrame:
    """The results-section table (at most 9 columns): configuration, accuracy [95% CI], measured and
    nominal cost, accept rate, accept precision, p vs A and vs B (headed by ``test``: the paired
    cluster test, or the test a republished older run used); with ``ood`` (the same
    :func:`config_table` on the held-out domains) its accuracy sits beside the test accuracy. ``names``
    overrides a row's label (a run older than the registry's current rule for that name)."""
    def acc(t):
        return [_ci(a, lo, hi) for a, lo, hi in zip(t["accuracy"], t["accuracy_lo"], t["accuracy_hi"])]

    out = pd.DataFrame({"configuration": [(names or {}).get(c) or describe(c) for c in table["config"]]})
    out["accuracy, test [95% CI]" if ood is not None else "accuracy [95% CI]"] = acc(table)
    if ood is not None:
        o = ood.set_index("config").reindex(table["config"]).reset_index()
        out["accuracy, ood [95% CI]"] = acc(o)
    out["measured cost (A = 1)"] = [_f(v, 2) for v in table["measured_cost"]]
    out["nominal cost"] = [_f(v, 2) for v in table["nominal_cost"]]
    out["accept rate"] = [_pct(v, 0) for v in table["accept_rate"]]
    out["accept precision"] = [_f(v, 2) for v in table["accept_precision"]]
    out[f"p vs A ({test})"] = [_p(v) for v in table.get("p_vs_A", [np.nan] * len(table))]
    out[f"p vs B ({test})"] = [_p(v) for v in table.get("p_vs_B", [np.nan] * len(table))]
    return out


def frontier_summary(table: pd.DataFrame, sweeps: dict[str, pd.DataFrame], shares=(0.5, 0.8, 0.95)) -> pd.DataFrame:
    """Per threshold sweep: APGR (:func:`specact.stats.apgr`, RouteLLM's average performance gap
    recovered over the share of steps sent to the strong model, B = 0, A = 1) and the measured cost
    of the cheapest threshold reaching 50/80/95% of A's accuracy (:func:`specact.stats.cost_to_share`).
    Empty without A and B."""
    from specact.stats import apgr, cost_to_share

    t = table.set_index("config")
    if not ({"A", "B"} <= set(t.index)) or not sweeps:
        return pd.DataFrame()
    acc_b, acc_a = t.loc["B", "accuracy"], t.loc["A", "accuracy"]
    rows = []
    for name, sw in sweeps.items():
        row = {"config": name, "apgr": apgr(sw.assign(strong_share=1 - sw["accept_rate"]), acc_b, acc_a)}
        row.update({f"cost_to_{round(100 * k)}pct": v for k, v in cost_to_share(sw, acc_a, shares).items()})
        rows.append(row)
    return pd.DataFrame(rows)


def load_signals(split_dir: str | Path) -> pd.DataFrame | None:
    """The deferral signals the eval stage compared on this split (``signals.csv``), if any."""
    f = Path(split_dir) / "signals.csv"
    return pd.read_csv(f) if f.is_file() else None


def signals_tables(sig: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """For reading: (AUROC of each signal with its interval; each thresholded curve's APGR and
    measured cost to reach 50/80/95% of A, beside random acceptance at the same prices)."""
    is_curve = sig["config"].fillna("").astype(str) != ""
    a = sig[~is_curve]
    auroc = pd.DataFrame({"signal": a["signal"], "AUROC [95% CI]": [
        "–" if _nan(x) else f"{x:.2f} [{_f(lo, 2)}, {_f(hi, 2)}]" for x, lo, hi in zip(a["auroc"], a["auroc_low"], a["auroc_high"])]})
    c = sig[is_curve]
    curves = pd.DataFrame({"configuration (signal)": [f"{n} ({g})" for n, g in zip(c["config"], c["signal"])],
                           "APGR": [_f(v, 2) for v in c["apgr"]], "APGR, random": [_f(v, 2) for v in c.get("apgr_random", np.nan)]})
    for k in (50, 80, 95):
        if f"cost_to_{k}" in c:
            curves[f"cost to {k}% of A"] = [_f(v, 2) for v in c[f"cost_to_{k}"]]
            curves[f"random: {k}%"] = [_f(v, 2) for v in c.get(f"random_cost_to_{k}", np.nan)]
    return auroc.reset_index(drop=True), curves.reset_index(drop=True)


READABLE = {"apgr": "APGR", "cost_to_50pct": "measured cost to 50% of A", "cost_to_80pct": "measured cost to 80% of A",
            "cost_to_95pct": "measured cost to 95% of A", "n": "steps"}


def appendix_table(table: pd.DataFrame) -> pd.DataFrame:
    """Every measure of :func:`config_table` for reading: intervals folded into ``x [lo, hi]``,
    3 decimals, p-values to 2 significant figures, ``–`` for what does not apply."""
    out = table[[c for c in TABLE_COLUMNS if c in table] + [c for c in table if c not in TABLE_COLUMNS]].copy()
    for col in ("accuracy", "nominal_cost"):
        if f"{col}_lo" in out:
            out[col] = [_f(a, 3) if _nan(lo) else f"{a:.3f} [{lo:.3f}, {hi:.3f}]"
                        for a, lo, hi in zip(out[col], out[f"{col}_lo"], out[f"{col}_hi"])]
            out = out.drop(columns=[f"{col}_lo", f"{col}_hi"])
    for col in out.columns:
        if col.startswith("p_vs_"):
            out[col] = [_p(v) for v in out[col]]
        elif pd.api.types.is_float_dtype(out[col]):
            out[col] = [_f(v, 3) for v in out[col]]
    return out.rename(columns=lambda c: READABLE.get(c, c.replace("_", " ")))


def per_source_table(results: dict[str, StepResults], n_resamples: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Accuracy of each configuration on each data source (long format) with its 95% interval: the
    cluster bootstrap over the source's scenario groups (NaN bounds for a source of one group).

    The source is the step's ``domain`` where the rows carry one (e.g. ``bfcl:GorillaFileSystem``),
    else its ``source``. Random acceptance's "correct" is an expectation, bootstrapped as it is.
    """
    rows = []
    for name, r in results.items():
        s = r.steps
        key = (s["domain"] if "domain" in s and s["domain"].notna().all() else s["source"]).astype(str)
        groups = step_groups(s)
        for src in dict.fromkeys(key):
            on = (key == src).to_numpy()
            g = None if groups is None else groups[on]
            ci = cluster_bootstrap_ci(s["correct"].astype(float).to_numpy()[on], g, n_resamples, seed)
            rows.append({"config": name, "source": src, "accuracy": ci.estimate, "n": int(on.sum()),
                         "n_clusters": int(on.sum()) if g is None else len(set(g)), "accuracy_lo": ci.low, "accuracy_hi": ci.high})
    return pd.DataFrame(rows)


def with_wilson(per_source: pd.DataFrame) -> pd.DataFrame:
    """Add 95% Wilson intervals to a saved per-source table (config, source, accuracy, n): for runs
    published without per-step results, whose clusters are no longer known."""
    lo, hi = proportion_confint((per_source["accuracy"] * per_source["n"]).to_numpy(float), per_source["n"].to_numpy(float),
                                alpha=ALPHA, method="wilson")
    return per_source.assign(accuracy_lo=lo, accuracy_hi=hi)


def per_source_grid(per_source: pd.DataFrame) -> pd.DataFrame:
    """Source x configuration grid for reading: ``58% [49, 66]`` cells, sources labelled with n."""
    cell = [_ci(a, lo, hi, 0) for a, lo, hi in zip(per_source["accuracy"], per_source["accuracy_lo"], per_source["accuracy_hi"])]
    n = per_source.groupby("source", sort=False)["n"].max()
    grid = per_source.assign(cell=cell).pivot(index="source", columns="config", values="cell")
    grid = grid.reindex(index=list(n.index), columns=list(dict.fromkeys(per_source["config"])))
    grid.index = [f"{s} (n={n[s]})" for s in grid.index]
    return grid.rename_axis("source (steps)").rename_axis(None, axis=1).fillna("–").reset_index()


def markdown_table(df: pd.DataFrame) -> str:
    """A GitHub-flavoured markdown table (no ``tabulate`` dependency)."""
    cells = [[str(c) for c in df.columns]] + [["–" if pd.isna(v) else str(v) for v in row] for row in df.itertuples(index=False)]
    cells = [[c.replace("|", "\\|").replace("\n", " ") for c in row] for row in cells]
    lines = ["| " + " | ".join(cells[0]) + " |", "|" + "|".join("---" for _ in cells[0]) + "|"]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in cells[1:]])


# ---------------------------------------------------------------- figures
def _palette(names) -> dict:
    """One fixed colour per configuration name (its place in the registry), so every figure of
    every run agrees; names outside the registry take the colours after it."""
    order = _registry() + [n for n in dict.fromkeys(names) if n not in _registry()]
    return dict(zip(order, sns.color_palette("tab10", len(order)) if len(order) <= 10 else sns.color_palette("tab20", len(order))))


def _place_labels(ax, pts: list[tuple[str, float, float]], min_dx: float = 0.09, min_dy: float = 0.05) -> None:
    """Direct labels beside points, nudged vertically (in axes fractions) until none overlap.

    A simple greedy stand-in for adjustText: points are labelled top to bottom and a label
    moves down by one line while it collides with one already placed; a moved label gets a
    thin leader line back to its point.
    """
    to_axes = ax.transData + ax.transAxes.inverted()
    placed: list[tuple[float, float]] = []
    for name, x, y in sorted(pts, key=lambda p: -p[2]):
        px, py = to_axes.transform((x, y))
        lx, ly = px + 0.015, py + 0.02
        while any(abs(lx - qx) < min_dx and abs(ly - qy) < min_dy for qx, qy in placed):
            ly -= min_dy
        placed.append((lx, ly))
        moved = abs(ly - py - 0.02) > 1e-9
        ax.annotate(name, (x, y), xytext=(lx, ly), textcoords="axes fraction", fontsize=9, va="center",
                    arrowprops={"arrowstyle": "-", "color": "grey", "lw": 0.6} if moved else None)


def _sweep_lines(ax, sweeps: dict, x: str, pal: dict) -> None:
    for name, sw in (sweeps or {}).items():
        sw = sw.sort_values(x)
        ax.plot(sw[x], sw["accuracy"], ":", lw=0.8, alpha=0.6, color=pal.get(name, "k"), label=f"{name}: every threshold")
        hull = pareto_hull(sw, x=x)
        ax.plot(hull[x], hull["accuracy"], drawstyle="steps-post", color=pal.get(name, "k"), lw=2,
                label=f"{name}: Pareto frontier")
        if name == "D" and "accept_rate" in sw:
            ends = sw.loc[[sw["accept_rate"].idxmax(), sw["accept_rate"].idxmin()]]
            ax.plot(ends[x], ends["accuracy"], "--", color="grey", lw=1, label="random acceptance, any rate")


def _bar(value, lo, hi) -> np.ndarray:
    """Error-bar lengths below and above ``value``, never negative: an interval need not contain its
    point estimate (a Wilson interval of an expected accuracy, as for random acceptance, or bootstrap
    percentiles of a skewed statistic), and matplotlib refuses negative lengths."""
    value, lo, hi = (np.atleast_1d(np.asarray(v, dtype=float)) for v in (value, lo, hi))
    return np.clip(np.vstack([value - lo, hi - value]), 0, None)


def frontier_figure(table: pd.DataFrame, sweeps: dict[str, pd.DataFrame] | None = None) -> Figure:
    """Accuracy vs nominal cost (left) and measured cost (right).

    Each sweep (D, E) is drawn with its Pareto frontier; every configuration is a point with
    its 95% accuracy interval (and nominal-cost interval), labelled directly beside the point
    (no legend entry per configuration). The dashed segment joining a D sweep's accept-all and
    accept-none ends is random acceptance at every rate: in expectation both accuracy and cost
    are linear in the accept rate.
    """
    fig = Figure(figsize=(12, 5), layout="constrained")
    pal = _palette(table["config"])
    units = {"nominal_cost": "nominal cost per step (strong call = 1)", "measured_cost": "measured cost per step (FLOPs, A = 1)"}
    for ax, x in zip(fig.subplots(1, 2), ("nominal_cost", "measured_cost")):
        _sweep_lines(ax, sweeps, x, pal)
        pts = []
        for _, r in table.dropna(subset=[x, "accuracy"]).iterrows():
            yerr = _bar(r["accuracy"], r["accuracy_lo"], r["accuracy_hi"]) if np.isfinite(r["accuracy_lo"]) else None
            xerr = (_bar(r[x], r["nominal_cost_lo"], r["nominal_cost_hi"])
                    if x == "nominal_cost" and np.isfinite(r.get("nominal_cost_lo", np.nan)) else None)
            ax.errorbar(r[x], r["accuracy"], yerr=yerr, xerr=xerr, fmt="*" if r["config"] in ("oracle", "random") else "o",
                        ms=8, capsize=3, color=pal.get(r["config"], "k"))
            pts.append((str(r["config"]), float(r[x]), float(r["accuracy"])))
        ax.margins(x=0.12, y=0.08)
        ax.autoscale_view()  # settle the limits: labels are placed in axes fractions
        _place_labels(ax, pts)
        ax.set_xlabel(units[x])
        ax.set_ylabel("accuracy (share of steps, action type)")
        ax.grid(alpha=0.3)
    handles, labels = fig.axes[0].get_legend_handles_labels()
    if handles:  # sweep lines only; each configuration is labelled on the plot
        fig.legend(handles, labels, loc="outside lower center", ncols=min(len(labels), 5), fontsize=8, frameon=False)
    fig.suptitle("Cost–accuracy frontier (points: configurations with 95% intervals)")
    return fig


def confusion_grid(results: dict[str, StepResults], configs=None, labels=LABELS, ncols: int = 3) -> Figure:
    """Row-normalised confusion matrices (gold x predicted), one panel per configuration.

    Colour and printed number are the same quantity: the share of each gold row (in %); the
    row's step count is in its tick label, and one colour bar serves every panel.
    """
    names = [c for c in (configs or _ordered(results)) if results[c].steps["pred"].notna().all()]
    ncols = max(1, min(ncols, len(names)))
    nrows = max(1, math.ceil(len(names) / ncols))
    fig = Figure(figsize=(4.8 * ncols + 1, 4.4 * nrows), layout="constrained")
    axes = np.atleast_1d(fig.subplots(nrows, ncols)).ravel()
    mappable = None
    for ax, name in zip(axes, names):
        s = results[name].steps
        cm = pd.crosstab(s["gold"], s["pred"]).reindex(index=list(labels), columns=list(labels), fill_value=0)
        share = 100 * cm.div(cm.sum(axis=1).replace(0, np.nan), axis=0)
        share.index = [f"{lab} ({n})" for lab, n in zip(share.index, cm.sum(axis=1))]
        sns.heatmap(share, ax=ax, vmin=0, vmax=100, cmap="Blues", annot=True, fmt=".0f", cbar=False, annot_kws={"size": 7})
        mappable = ax.collections[0]
        ax.set_title(f"{name} (accuracy {100 * results[name].accuracy:.1f}%)")
        ax.set_xlabel("predicted action type")
        ax.set_ylabel("gold action type (steps)")
    for ax in axes[len(names):]:
        ax.set_visible(False)
    if mappable is not None:
        fig.colorbar(mappable, ax=axes[: len(names)].tolist(), shrink=0.6, label="share of the gold row (%)")
    return fig


def reliability_figure(rel: dict, title: str = "Verifier reliability") -> Figure:
    """Reliability diagram from :func:`specact.stats.reliability` with the prob histogram below."""
    fig = Figure(figsize=(4.5, 4.8), layout="constrained")
    top, bottom = fig.subplots(2, 1, height_ratios=[3, 1], sharex=True)
    t = rel["table"]
    top.plot([0, 1], [0, 1], ":", color="grey", label="perfect calibration")
    top.plot(t["mean_prob"], t["frac_positive"], "o-", label=f"verifier (ECE {_f(rel['ece'])})")
    top.set_ylabel("share of proposals that were right")
    top.legend(loc="upper left")
    top.set_title(title)
    bottom.bar((t["low"] + t["high"]) / 2, t["count"], width=(t["high"] - t["low"]) * 0.9, color="grey")
    bottom.set_xlabel("verifier probability that the proposal is right")
    bottom.set_ylabel("steps")
    return fig


def per_source_figure(results: dict[str, StepResults] | pd.DataFrame, configs=None) -> Figure:
    """Accuracy per data source (rows, with n) and configuration (colours), with their 95% intervals;
    ``results`` may also be a :func:`per_source_table` already computed.

    The legend sits outside the axes, so no source is hidden behind it.
    """
    d = results if isinstance(results, pd.DataFrame) else per_source_table({c: results[c] for c in (configs or _ordered(results))})
    sources = list(dict.fromkeys(d["source"]))
    names = _ordered(list(dict.fromkeys(d["config"])))
    pal = _palette(names)
    fig = Figure(figsize=(10, 1.2 + len(sources) * (0.25 + 0.09 * len(names))), layout="constrained")  # ~0.1 in per point
    ax = fig.subplots()
    step = 0.8 / max(len(names), 1)
    for j, name in enumerate(names):
        sub = d[d["config"] == name].set_index("source").reindex(sources)
        y = np.arange(len(sources)) - 0.4 + step * (j + 0.5)
        err = _bar(sub["accuracy"], sub["accuracy_lo"], sub["accuracy_hi"])
        ax.errorbar(sub["accuracy"], y, xerr=err, fmt="o", ms=4, capsize=2, color=pal[name], label=name)
    n = d.groupby("source", sort=False)["n"].max().reindex(sources)
    ax.set_yticks(np.arange(len(sources)), [f"{s} (n={k})" for s, k in zip(sources, n)])
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("accuracy (share of steps, action type) with 95% interval")
    ax.set_title("Accuracy by data source")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8, title="configuration")
    return fig


def label_distribution_figure(labels_by_split: dict[str, list]) -> Figure:
    """Share of each action label per split (train / dev / test)."""
    d = pd.concat([pd.Series(list(v), dtype=object).value_counts(normalize=True).rename("share")
                   .rename_axis("label").reset_index().assign(split=k) for k, v in labels_by_split.items()])
    fig = Figure(figsize=(9, 4), layout="constrained")
    ax = fig.subplots()
    sns.barplot(data=d, x="label", y="share", hue="split", order=list(LABELS), ax=ax)
    ax.tick_params(axis="x", rotation=30)
    ax.set_title("Label distribution")
    return fig


# ---------------------------------------------------------------- writing
from specact.jsonable import to_jsonable  # noqa: E402,F401 -- re-exported: results.json's writer


PACKAGES = ("torch", "transformers", "trl", "peft", "accelerate", "datasets", "tokenizers", "scikit-learn", "scipy",
            "statsmodels", "numpy", "pandas", "matplotlib", "seaborn", "papermill", "nbconvert")
REPO = Path(__file__).resolve().parent.parent


def _git(*args: str) -> str | None:
    import subprocess

    try:
        return subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True, timeout=20, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None


def _device() -> dict:
    import os
    import platform

    cpu = platform.processor() or platform.machine()
    info = Path("/proc/cpuinfo")
    if info.is_file():
        cpu = next((ln.split(":", 1)[1].strip() for ln in info.read_text().splitlines() if ln.startswith("model name")), cpu)
    out = {"cpu": cpu, "cpu_count": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(), "gpus": []}
    try:
        import torch

        if torch.cuda.is_available():
            out["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    except ImportError:
        pass
    return out


def provenance(run_dir: str | Path | None = None, report_dir: str | Path | None = None) -> dict:
    """Where a result came from: git commit and dirty flag, date (UTC), package versions, device,
    the run's resolved params and the wall time of each stage run so far."""
    from datetime import datetime, timezone
    from importlib import metadata

    import yaml

    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    status = _git("status", "--porcelain", "--untracked-files=no")
    run = Path(run_dir) if run_dir else None
    params = yaml.safe_load((run / "params.yaml").read_text()) if run and (run / "params.yaml").is_file() else None
    stages = {f.stem: {k: v for k, v in json.loads(f.read_text()).items() if k in ("status", "seconds")}
              for f in sorted((run / "stages").glob("*.json"))} if run and (run / "stages").is_dir() else {}
    timings = Path(report_dir) / "timings.json" if report_dir else None
    return {"git_commit": _git("rev-parse", "HEAD"), "git_dirty": None if status is None else bool(status),
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "packages": versions, "device": _device(),
            "params": params, "stages": stages,
            "timings": json.loads(timings.read_text()) if timings and timings.is_file() else None}


def provenance_table(prov: dict) -> pd.DataFrame:
    """The foot of the report: one readable line per provenance item (full detail in results.json)."""
    dev = prov.get("device") or {}
    secs = {k: v.get("seconds") for k, v in (prov.get("stages") or {}).items() if v.get("seconds")}
    params = prov.get("params") or {}
    rows = [("git commit", f"{(prov.get('git_commit') or 'unknown')[:12]}" + (" (uncommitted changes)" if prov.get("git_dirty") else "")),
            ("date (UTC)", prov.get("date")), ("run", f"{params.get('run_id', '–')} (seed {params.get('seed', '–')})"),
            ("device", ", ".join(dev.get("gpus") or []) or f"CPU: {dev.get('cpu')} ({dev.get('cpu_count')} cores)"),
            ("python", dev.get("python")),
            ("packages", ", ".join(f"{k} {v}" for k, v in (prov.get("packages") or {}).items() if v)),
            ("stage wall times", "; ".join(f"{k} {v:.0f} s" for k, v in secs.items()) + (f" (total {sum(secs.values()):.0f} s)" if secs else "–"))]
    return pd.DataFrame(rows, columns=["item", "value"])


def save_figure(fig, out_dir: str | Path, name: str) -> dict[str, Path]:
    """Save ``fig`` as ``<name>.png`` and ``<name>.svg`` in ``out_dir`` (beside report.md)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {ext: out / f"{name}.{ext}" for ext in ("png", "svg")}
    import matplotlib

    fig.savefig(paths["png"], dpi=110, bbox_inches="tight", metadata={"Software": None})
    with matplotlib.rc_context({"svg.hashsalt": name}):  # same figure, same bytes: no churn when re-rendered
        fig.savefig(paths["svg"], bbox_inches="tight", metadata={"Date": None})
    return paths


def write_report(out_dir, results_json: dict, tables: dict[str, pd.DataFrame], figures: dict[str, Figure],
                 finding: str, prov: dict | None = None) -> dict[str, Path]:
    """Write ``results.json`` (with ``provenance``) and each figure as PNG + SVG into ``out_dir``.

    ``results.json`` holds ``results_json`` plus every table as records, so nothing shown in
    the report exists only as a picture or a formatted string. ``report.md`` / ``report.html``
    are rendered from the executed notebook by :func:`publish`, so they never drift from it.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"results": out / "results.json"}
    names = tables["configurations"]["config"] if "configurations" in tables else []
    payload = {"descriptions": {c: describe(c) for c in names},  # what each name meant when this run was reported
               **to_jsonable(results_json), "finding": finding, "provenance": to_jsonable(prov or provenance()),
               "tables": {k: to_jsonable(v) for k, v in tables.items()}}
    paths["results"].write_text(json.dumps(payload, indent=2, sort_keys=True, allow_nan=False))
    for name, fig in figures.items():
        paths[name] = save_figure(fig, out, name)["png"]
    return paths


def show_figure(fig, name: str | None = None, dpi: int = 110) -> None:
    """Display ``fig`` as an inline PNG (notebook, its HTML, report.html); ``name`` becomes the
    image's file name when nbconvert exports report.md (``<name>.png``, beside the SVG that
    :func:`save_figure` writes). A bare ``Figure`` would otherwise print as ``<Figure size ...>``."""
    import io

    from IPython.display import Image, display

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    display(Image(data=buf.getvalue(), format="png"), metadata={"filename": f"{name}.png"} if name else None)


def show_table(df: pd.DataFrame, caption: str = "") -> None:
    """Display a table as HTML in the notebook / report.html and as a Markdown table in report.md,
    without the pandas index, under its caption."""
    from IPython.display import display

    html = df.to_html(index=False, escape=True, na_rep="–", border=0, classes="specact-table")
    cap = f"<p><b>{caption}</b></p>" if caption else ""
    md = (f"**{caption}**\n\n" if caption else "") + markdown_table(df)
    display({"text/html": cap + html, "text/markdown": md, "text/plain": df.to_string(index=False)}, raw=True)


def publish(executed_nb: str | Path, out_dir: str | Path, hide_tag: str = "hide") -> dict[str, Path]:
    """Render an executed report notebook as ``report.html`` and ``report.md`` (nbconvert), code
    hidden and cells tagged ``hide_tag`` removed; the figures it shows become files beside report.md."""
    import nbformat
    from nbconvert import HTMLExporter, MarkdownExporter
    from traitlets.config import Config

    nb = nbformat.read(str(executed_nb), as_version=4)
    c = Config()
    c.TagRemovePreprocessor.remove_cell_tags = {hide_tag}
    c.TagRemovePreprocessor.enabled = True
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    html, _ = HTMLExporter(config=c, exclude_input=True, exclude_input_prompt=True, exclude_output_prompt=True).from_notebook_node(nb)
    c.NbConvertBase.display_data_priority = ["text/markdown", "image/png", "text/html", "text/plain"]
    md, res = MarkdownExporter(config=c, exclude_input=True).from_notebook_node(nb)
    for name, data in res.get("outputs", {}).items():
        (out / Path(name).name).write_bytes(data)
    paths = {"html": out / "report.html", "md": out / "report.md"}
    paths["html"].write_text(html, encoding="utf-8")
    paths["md"].write_text(md, encoding="utf-8")
    return paths


GLOSSARY = {
    "accuracy": "**Accuracy**: share of evaluated steps whose final action type equals the gold type. ",
    "interval": "**95% interval**: percentile interval of a cluster bootstrap: the split's scenario groups / trajectories "
                "are resampled whole (the steps of one group share their context and are not independent draws), in every "
                "table including the per-source one. ",
    "costs": "**Accept rate**: share of steps whose cheap proposal is kept; **accept precision**: share of kept proposals "
             "that are right. **Nominal cost**: calls charged per step (strong 1.00, cheap and verifier at their `eval.cost_*` "
             "prices); **measured cost**: FLOPs of the tokens each call processed, A = 1. ",
    "p": f"**p** ({PAIRED_TEST}): two configurations on the same steps and the same clusters as the intervals; under no "
         "difference each cluster's summed difference in correctness is as likely negative as positive, and p is the share "
         "of sign flips whose total reaches the observed one (two-sided); *significant* means p < 0.05. ",
    "test": "**test** holds unseen trajectories of the training domains.",
}
OOD_TERM = " **ood** holds whole domains never trained or tuned on."


def terms(test: str = PAIRED_TEST) -> str:
    """The glossary under the finding; a republished older run names its own test and intervals."""
    g = dict(GLOSSARY)
    if test != PAIRED_TEST:
        g["interval"] = "**95% interval**: as the run published it. "
        g["p"] = f"**p** ({test}): as the run published it, a paired test on the same steps treated as independent; *significant* means p < 0.05. "
    return "".join(g.values())


TERMS = terms()


def _vs(t: pd.DataFrame, c: str, ref: str, test: str = PAIRED_TEST) -> str:
    p = t.loc[c, f"p_vs_{ref}"] if f"p_vs_{ref}" in t else np.nan
    d = 100 * (t.loc[c, "accuracy"] - t.loc[ref, "accuracy"])
    if _nan(p):
        return f"{d:+.1f} points vs {ref} (no paired test)"
    return f"{d:+.1f} points vs {ref} ({test} {p_text(p)}, {'significant' if p < ALPHA else 'not significant'})"


def p_text(p: float) -> str:
    """``p=0.0087`` or ``p<0.001`` (a p-value printed as 0 would claim certainty)."""
    return "p<0.001" if p < 1e-3 else f"p={p:.2g}"


def _acc(t: pd.DataFrame, c: str) -> str:
    r = t.loc[c]
    return _ci(r.accuracy, r.accuracy_lo, r.accuracy_hi)


def _deferral_statement(t: pd.DataFrame, c: str, choices: dict | None, test: str = PAIRED_TEST) -> str:
    r = t.loc[c]
    thr = f", threshold {r.threshold:.3g} chosen on dev" if "threshold" in t and not _nan(r.threshold) else ""
    ch = (choices or {}).get(c)
    ch = ch if ch is None or isinstance(ch, dict) else vars(ch)
    if ch is not None and not _nan(ch.get("dev_accept_precision")):
        thr += f" (dev accept precision {ch['dev_accept_precision']:.2f}, rule '{ch.get('rule')}')"
    kept = (f"accepting {100 * r.accept_rate:.0f}% of proposals with precision {r.accept_precision:.2f}"
            if r.accept_rate > 0 and not _nan(r.accept_precision) else "accepting no proposal")
    s = (f"**{c}** reaches {_acc(t, c)} at nominal cost {r.nominal_cost:.2f} (measured {_f(r.measured_cost, 2)}, A = 1), "
         f"{kept}{thr}; " + "; ".join(_vs(t, c, ref, test) for ref in ("B", "A") if ref in t.index and ref != c) + " (Table 1, Figure 1).")
    if "A" in t.index and t.loc[c, "accuracy_hi"] >= t.loc["A", "accuracy_lo"] and t.loc[c, "accuracy_lo"] <= t.loc["A", "accuracy_hi"]:
        # Overlapping marginal intervals are not a test: the paired test decides.
        s += (f" The 95% intervals of {c} and A overlap; " +
              ("the paired test on the same steps still separates them." if t.loc[c, "p_vs_A"] < ALPHA
               else f"with the paired test also not significant, this sample cannot tell {c} from A."))
    return s


def _steps_text(t: pd.DataFrame, split: str = "test") -> str:
    """``400 test steps from 84 scenario groups`` (the clusters of every interval and test)."""
    n = int(t["n"].iloc[0])
    k = t["n_clusters"].iloc[0] if "n_clusters" in t else np.nan
    return f"{n} {split} steps" + ("" if _nan(k) or k == n else f" from {int(k)} scenario groups")


def _vs_random(results: dict[str, StepResults], t: pd.DataFrame, n_resamples: int, seed: int) -> str:
    d = paired_p(results["D"], results["random"], n_resamples, seed)
    return (f"Against **random** acceptance at D's rate (expected accuracy {_pct(t.loc['random', 'accuracy'])}), "
            f"the verifier adds {100 * d.diff:+.1f} points [{100 * d.low:+.1f}, {100 * d.high:+.1f}] ({PAIRED_TEST} {p_text(d.pvalue)})"
            + ("" if d.low > 0 else ", an interval that includes no gain: no evidence the verifier beats chance") + " (Table 1).")


def written_finding(results: dict[str, StepResults], table: pd.DataFrame | None = None,
                    choices: dict | None = None, n_resamples: int = 1000, seed: int = 0,
                    ood_table: pd.DataFrame | None = None, verifier_auroc: dict | None = None,
                    test: str = PAIRED_TEST) -> str:
    """Short statements (a Markdown list), each stating only what the numbers and intervals support
    and naming the table or figure that backs it; then the definition of every term used.

    Significance is the table's p-values at ALPHA: the paired cluster test (``test`` names another
    for a republished older run); "no evidence" replaces any claim whose test or paired interval
    does not exclude no difference. No missing value is printed.
    """
    t = (table if table is not None else config_table(results, n_resamples=n_resamples, seed=seed)).set_index("config")
    out = []
    if {"A", "B"} <= set(t.index):
        out.append(f"On {_steps_text(t)} the strong model (**A**) is right on {_acc(t, 'A')} of action types and the "
                   f"cheap proposer (**B**) on {_acc(t, 'B')}; {_vs(t, 'A', 'B', test)} (Table 1).")
    out += [_deferral_statement(t, c, choices, test) for c in ("D", "D_conf", "E") if c in t.index]
    if "D" in results and "random" in results:
        out.append(_vs_random(results, t, n_resamples, seed))
    if verifier_auroc and not _nan(verifier_auroc.get("auroc")):
        a = verifier_auroc
        out.append(f"The verifier ranks right above wrong cheap proposals with AUROC {a['auroc']:.2f} "
                   f"[{_f(a.get('low'), 2)}, {_f(a.get('high'), 2)}] (0.5 = chance; Figure 2).")
    if "oracle" in t.index:
        out.append(f"A perfect verifier at D's price (**oracle**) would reach {_acc(t, 'oracle')} at nominal cost "
                   f"{t.loc['oracle', 'nominal_cost']:.2f}: the ceiling of any verifier of the cheap model's top proposal (Table 1).")
    if "C" in t.index:
        out.append(f"**C** matches A's accuracy by construction but costs {t.loc['C', 'nominal_cost']:.2f} nominal: the strong "
                   "model runs on every step to verify, so under this cost model it saves no compute (Table 1).")
    if ood_table is not None and {"A", "B"} <= set(ood_table["config"]):
        o = ood_table.set_index("config")
        out.append(f"On the held-out domains (**ood**, {_steps_text(o, 'ood')}) A reaches {_acc(o, 'A')} and B "
                   f"{_acc(o, 'B')}; {_vs(o, 'A', 'B', test)} (Table 1, ood column).")
    return "\n".join("- " + x for x in out) + "\n\n" + terms(test) + (OOD_TERM if ood_table is not None else "")


# ---------------------------------------------------------------- one run's evaluation, gathered for notebook 07
MAIN_CONFIGURATIONS = ("A", "B", "linear", "D", "D_conf", "E")  # Figure 3 draws these (where present); Table 3 holds all


@dataclass
class GatheredResults:
    """What notebook 07 reports on one run, read from ``eval/<split>/`` and derived once, so every
    table, figure and ``results.json`` is drawn from the same objects.

    ``results`` and ``tables`` hold every reported split (dev only chooses thresholds and is left
    out); the prediction rows, roles, threshold sweeps, verifier quality and dev choices belong to
    ``main_split`` (``eval.split`` when the run evaluated it, else the first split found).
    ``signals`` holds each split's deferral-signal table where the eval stage wrote one."""

    split_dirs: dict[str, Path]
    main_split: str
    rows: list[dict]
    roles: dict
    results: dict[str, dict[str, StepResults]]
    tables: dict[str, pd.DataFrame]
    per_source: dict[str, pd.DataFrame]
    sweeps: dict[str, pd.DataFrame]
    verifier: dict | None
    choices: dict
    frontier: pd.DataFrame
    signals: dict[str, pd.DataFrame]
    n_resamples: int = 1000
    seed: int = 0

    @property
    def main_results(self) -> dict[str, StepResults]:
        return self.results[self.main_split]

    @property
    def main_table(self) -> pd.DataFrame:
        return self.tables[self.main_split]

    @property
    def ood_table(self) -> pd.DataFrame | None:
        """The held-out domains' configuration table, shown beside the main split's (None when the
        run has no ood split or reports ood itself)."""
        return self.tables.get("ood") if self.main_split != "ood" else None


def gather(eval_dir: str | Path, cfg, seed: int = 0) -> GatheredResults:
    """Read every split the eval stage wrote under ``eval_dir``'s parent (:func:`find_splits`) and
    derive what the report shows: configuration and per-source tables per split, and on the main
    split random acceptance and the oracle where missing (:func:`reference_points`), threshold
    sweeps, verifier quality, the dev-chosen thresholds and the frontier summary. ``cfg`` is the
    run's ``EvalConfig`` (``split``, ``bootstrap`` resamples and the configurations' prices)."""
    split_dirs = find_splits(eval_dir)
    main = cfg.split if cfg.split in split_dirs else next(iter(split_dirs))
    rows = prediction_rows(eval_dir, main)
    roles_file = split_dirs[main] / "roles.json"
    roles = json.loads(roles_file.read_text()) if roles_file.is_file() else {}
    results = {s: load_split(d) for s, d in split_dirs.items() if s != "dev"}
    results[main] = reference_points(results[main], rows, roles, cfg)
    tables = {s: config_table(r, None, cfg.bootstrap, seed) for s, r in results.items()}
    sweeps = threshold_sweeps(rows, roles, cfg, results[main])
    signals = {s: load_signals(d) for s, d in split_dirs.items()}
    return GatheredResults(
        split_dirs=split_dirs, main_split=main, rows=rows, roles=roles, results=results, tables=tables,
        per_source={s: per_source_table(r) for s, r in results.items()}, sweeps=sweeps,
        verifier=verifier_quality(rows, cfg.bootstrap, seed), choices=threshold_choices(split_dirs[main], results[main]),
        frontier=frontier_summary(tables[main], sweeps), signals={s: v for s, v in signals.items() if v is not None},
        n_resamples=cfg.bootstrap, seed=seed)


def gathered_finding(gathered: GatheredResults) -> str:
    """:func:`written_finding` on the main split, with the ood table and the verifier's AUROC beside it."""
    auroc = gathered.verifier["auroc"] if gathered.verifier else None
    return written_finding(gathered.main_results, gathered.main_table, gathered.choices, gathered.n_resamples,
                           gathered.seed, ood_table=gathered.ood_table, verifier_auroc=auroc)


def headline(gathered: GatheredResults) -> tuple[pd.DataFrame, str]:
    """Table 1 (:func:`headline_table`, ood beside the main split) and its caption."""
    t = gathered.main_table
    caption = f"Table 1. {len(t)} configurations, {int(t['n'].iloc[0])} {gathered.main_split} steps"
    return headline_table(t, gathered.ood_table), caption


def deferral_signal_tables(gathered: GatheredResults) -> list:
    """Table 2 (gap recovered per deferral signal) and 2b (each signal's AUROC) from the eval stage's
    ``signals.csv``; without it, the frontier summary of the report's own sweeps; without A and B, a
    note saying so. Items for :func:`show_tables`."""
    main = gathered.main_split
    if main in gathered.signals:
        auroc, curves = signals_tables(gathered.signals[main])
        return [(curves, f"Table 2. Gap recovered by each deferral signal, {main} split"),
                (auroc, f"Table 2b. AUROC of each deferral signal on the cheap model's {main} proposals")]
    if len(gathered.frontier):
        return [(appendix_table(gathered.frontier), "Table 2. Gap recovered by each threshold sweep")]
    return ["*No thresholded configuration with both A and B: no frontier summary.*"]


def verifier_summary(gathered: GatheredResults) -> str:
    """One Markdown line: the verifier's AUROC with its interval and its calibration error on the main
    split's steps, or that the run has no verifier scores there."""
    if not gathered.verifier:
        return "*This run has no verifier scores on the reported steps.*"
    a = gathered.verifier["auroc"]
    return (f"Verifier AUROC **{a['auroc']:.2f}** [95% CI {a['low']:.2f}, {a['high']:.2f}] on {len(gathered.rows)} "
            f"{gathered.main_split} steps; expected calibration error {gathered.verifier['reliability']['ece']:.3f}.")


def show_verifier_quality(gathered: GatheredResults) -> dict[str, Figure]:
    """Show :func:`verifier_summary` and, with verifier scores, the reliability figure; returns
    ``{"reliability": figure}`` when one was drawn (for :func:`write_report`), else ``{}``."""
    from IPython.display import Markdown, display

    display(Markdown(verifier_summary(gathered)))
    if not gathered.verifier:
        return {}
    figure = reliability_figure(gathered.verifier["reliability"])
    show_figure(figure, "reliability")
    return {"reliability": figure}


def per_source_tables(gathered: GatheredResults) -> list[tuple[pd.DataFrame, str]]:
    """Table 3 (main split) and 3b (each other split): accuracy by source x configuration."""
    return [(per_source_grid(t), f"Table 3{'' if s == gathered.main_split else 'b'}. Accuracy by source, {s} split")
            for s, t in gathered.per_source.items()]


def main_configurations(results: dict) -> list[str] | None:
    """The configurations Figure 3 draws: those of :data:`MAIN_CONFIGURATIONS` the run has (None, i.e.
    every configuration, when it has none of them); a figure of all ten would be unreadable."""
    return [c for c in MAIN_CONFIGURATIONS if c in results] or None


def confusion_figure(results: dict[str, StepResults]) -> Figure:
    """Figure 4: :func:`confusion_grid` of every configuration but ``random``, whose acceptance is an
    expectation (or a simulation) at D's rate: it has no prediction of its own to draw."""
    return confusion_grid({c: r for c, r in results.items() if c != "random"})


def appendix_tables(gathered: GatheredResults) -> list[tuple[pd.DataFrame, str]]:
    """Appendix A: every measure of every configuration, one table per split."""
    return [(appendix_table(t), f"Appendix A ({s}). All measures") for s, t in gathered.tables.items()]


def show_tables(items) -> None:
    """Show each item: a ``(table, caption)`` pair with :func:`show_table`, a string as Markdown."""
    from IPython.display import Markdown, display

    for item in items:
        if isinstance(item, str):
            display(Markdown(item))
        else:
            show_table(*item)


def results_document(gathered: GatheredResults) -> dict:
    """``results.json``'s numbers besides its tables (:func:`write_report` adds those, the finding and
    provenance): every split's and the main split's configuration summaries, the frontier summary,
    the verifier's AUROC / ECE / Brier score, the dev-chosen thresholds, the roles and the step count."""
    v = gathered.verifier
    verifier = {"auroc": v["auroc"], "ece": v["reliability"]["ece"], "brier": v["reliability"]["brier"]} if v else None
    return {"splits": {s: {c: r.summary() for c, r in rs.items()} for s, rs in gathered.results.items()},
            "main_split": gathered.main_split, "configurations": {c: r.summary() for c, r in gathered.main_results.items()},
            "frontier": gathered.frontier, "verifier": verifier, "thresholds": gathered.choices, "roles": gathered.roles,
            "n_steps": len(gathered.rows)}


def results_tables(gathered: GatheredResults) -> dict[str, pd.DataFrame]:
    """The tables ``results.json`` holds as records: ``configurations`` (main split) and, per split,
    ``configurations_<split>``, ``per_source_<split>`` and ``signals_<split>`` where written."""
    return {"configurations": gathered.main_table, **{f"configurations_{s}": t for s, t in gathered.tables.items()},
            **{f"per_source_{s}": t for s, t in gathered.per_source.items()},
            **{f"signals_{s}": t for s, t in gathered.signals.items()}}


# ---------------------------------------------------------------- republishing a saved run
def saved_provenance(pub_dir: str | Path, device: str, published_in: str) -> dict:
    """What a published run's folder still tells about its origin (runs before provenance was
    recorded): its params, stage times and device as published; the code commit is unknown."""
    import yaml

    d = Path(pub_dir)
    timings = json.loads((d / "timings.json").read_text()) if (d / "timings.json").is_file() else {}
    return {"git_commit": None, "git_dirty": None, "date": d.name[:10], "packages": {}, "device": {"gpus": [device] if "GPU" in device or "NVIDIA" in device else [], "cpu": device},
            "params": yaml.safe_load((d / "params.yaml").read_text()) if (d / "params.yaml").is_file() else None,
            "stages": {k: {"status": v.get("status"), "seconds": v.get("seconds")} for k, v in timings.get("stages", {}).items()},
            "note": f"reconstructed when republishing: the run recorded no commit or package versions; published in commit {published_in}"}


OLD_E = "E: N=3 proposals sampled at temperature 1, verifier picks"  # E of the runs published before issue 13
OLD_TEST = "McNemar"  # the paired test of the runs published before issue 13 (steps treated as independent)


def _rel(path: Path) -> str:
    """``path`` relative to the repository when inside it (notebooks run with the repository as cwd)."""
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)


def _republish_cells(pub_dir: Path) -> list:
    from nbformat.v4 import new_code_cell, new_markdown_cell

    hide = {"tags": ["hide"]}
    return [
        new_markdown_cell(f"# Speculative tool actions: results (`{pub_dir.name}`)\n\nRe-rendered from this run's saved `results.json`: "
                          "the run kept no per-step predictions, so its threshold sweeps and confusion matrices cannot be redrawn "
                          "and the verifier-vs-random paired interval is not restated; every number below is the run's own."),
        new_code_cell(f"import json\nfrom pathlib import Path\n\nimport pandas as pd\nfrom IPython.display import Markdown, display\n\n"
                      f"from specact import report\n\nd = Path({_rel(pub_dir)!r})\nres = json.loads((d / 'results.json').read_text())\n"
                      "table = pd.DataFrame(res['tables']['configurations'])\n"
                      "auc = (res.get('verifier') or {}).get('auroc')", metadata=hide),
        new_markdown_cell("## Finding"),
        new_code_cell("display(Markdown(report.written_finding({}, table, res.get('thresholds'), verifier_auroc=auc, test=report.OLD_TEST)))"),
        new_markdown_cell("## Table 1. Configurations\n\nAccuracy of the action type with its 95% bootstrap interval; measured cost "
                          "counts FLOPs with A = 1, nominal cost charges strong 1.00, cheap 0.15, verifier 0.05; accept rate and "
                          "precision concern the cheap proposal; p-values: McNemar against A and B on the same steps."),
        new_code_cell("report.show_table(report.headline_table(table, names=res['descriptions'], test=report.OLD_TEST), f\"Table 1. {len(table)} configurations, {int(table['n'].iloc[0])} test steps\")"),
        new_markdown_cell("## Figure 1. Cost–accuracy frontier\n\nEach configuration with its 95% accuracy interval against nominal "
                          "(left) and measured (right) cost per step."),
        new_code_cell("fig = report.frontier_figure(table)\nreport.save_figure(fig, d, 'frontier')\nreport.show_figure(fig, 'frontier')"),
        new_markdown_cell("## Figure 2. Verifier reliability\n\nShare of cheap proposals that were right per bin of the verifier's "
                          "probability (diagonal: perfect calibration); steps per bin below."),
        new_code_cell("rel = {'table': pd.DataFrame(res['tables']['reliability']), 'ece': res['verifier']['ece']}\n"
                      "fig = report.reliability_figure(rel)\nreport.save_figure(fig, d, 'reliability')\nreport.show_figure(fig, 'reliability')"),
        new_markdown_cell("## Table 3 and Figure 3. Accuracy by data source\n\nAccuracy with its 95% Wilson interval; n steps per source."),
        new_code_cell("ps = report.with_wilson(pd.DataFrame(res['tables']['per_source']))\n"
                      "report.show_table(report.per_source_grid(ps), 'Table 3. Accuracy by source')\n"
                      "fig = report.per_source_figure(ps)\nreport.save_figure(fig, d, 'per_source')\nreport.show_figure(fig, 'per_source')"),
        new_markdown_cell("## Appendix A. Every column"),
        new_code_cell("report.show_table(report.appendix_table(table), 'Appendix A. All measures')"),
        new_markdown_cell("## Provenance"),
        new_code_cell("report.show_table(report.provenance_table(res['provenance']), 'Provenance')\n"
                      "display(Markdown(res['provenance'].get('note', '')))"),
    ]


def republish(pub_dir: str | Path, device: str, published_in: str, kernel: str = "specact") -> dict[str, Path]:
    """Re-render a published run's report.html / report.md (figures inline, PNG + SVG beside) from
    its saved results.json, adding the provenance the folder still holds to results.json."""
    import nbformat
    from nbclient import NotebookClient

    d = Path(pub_dir).resolve()
    res = json.loads((d / "results.json").read_text())
    res.setdefault("provenance", saved_provenance(d, device, published_in))
    names = [r["config"] for r in res["tables"]["configurations"]]
    res.setdefault("descriptions", {c: describe(c) for c in names} | {"E": OLD_E})
    (d / "results.json").write_text(json.dumps(res, indent=2, sort_keys=True, allow_nan=False))
    nb = nbformat.v4.new_notebook(cells=_republish_cells(d))
    NotebookClient(nb, kernel_name=kernel, resources={"metadata": {"path": str(REPO)}}).execute()
    nbformat.write(nb, d / "report_republished.ipynb")
    return publish(d / "report_republished.ipynb", d)
