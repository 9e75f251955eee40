"""Tables, figures and the written report of one study run.

Every function takes the :class:`~specact.cascade.StepResults` of the configurations (or the
table built from them) and returns a DataFrame or a matplotlib ``Figure``, so the report
notebook can show each one inline and then hand them all to :func:`write_report`. Figures
are built with ``matplotlib.figure.Figure`` rather than pyplot: nothing is drawn twice in a
notebook and no global figure state leaks between cells.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

from specact.actions import LABELS
from specact.cascade import StepResults, pareto_hull
from specact.stats import add_baseline_ratios, bootstrap_ci, macro_f1, mcnemar, paired_bootstrap_diff

ALPHA = 0.05  # significance level of every statement in the written finding
ORDER = ("A", "A_frozen", "B", "C", "D", "E", "oracle", "random")


def _ordered(results: dict) -> list[str]:
    return [c for c in ORDER if c in results] + [c for c in results if c not in ORDER]


# ---------------------------------------------------------------- tables
def config_table(results: dict[str, StepResults], base: dict | None = None, n_resamples: int = 1000,
                 seed: int = 0, ref_b: str = "B", ref_a: str = "A") -> pd.DataFrame:
    """One row per configuration, every number needed to compare them (numeric columns).

    ``accept_precision`` is also the accuracy on accepted steps (an accepted proposal is the
    final action); ``acc_rejected`` is the strong fallback's accuracy on the rest. ``base``
    is :func:`specact.stats.baselines` (random 1/9, train-majority) for the x-columns.
    McNemar p-values pair each configuration with B and with A on the same steps.
    """
    rows = []
    for name in _ordered(results):
        r = results[name]
        s, summ = r.steps, r.summary()
        acc = bootstrap_ci(s["correct"].astype(float).to_numpy(), n_resamples=n_resamples, seed=seed)
        cost = bootstrap_ci(s["nominal_cost"].to_numpy(float), n_resamples=n_resamples, seed=seed)
        defined = s["pred"].notna().all()  # random in expectation has no single action per step
        row = {**summ, "accuracy_lo": acc.low, "accuracy_hi": acc.high,
               "macro_f1": macro_f1(s["gold"], s["pred"]) if defined else np.nan,
               "nominal_cost_lo": cost.low, "nominal_cost_hi": cost.high}
        for ref, col in ((ref_b, "p_vs_B"), (ref_a, "p_vs_A")):
            ok = ref in results and ref != name
            row[col] = mcnemar(s["correct"], results[ref].steps["correct"]).pvalue if ok else np.nan
        rows.append(row)
    df = pd.DataFrame(rows)
    if base:
        df = add_baseline_ratios(df, base)
    cols = ["config", "n", "accuracy", "accuracy_lo", "accuracy_hi", "macro_f1", "tool_name_acc", "call_exact",
            "accept_rate", "accept_precision", "acc_rejected", "nominal_cost", "nominal_cost_lo", "nominal_cost_hi",
            "measured_cost", "seconds", "x_random", "x_majority", "p_vs_B", "p_vs_A", "threshold"]
    return df[[c for c in cols if c in df.columns]]


def _f(x, nd=3) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{nd}f}"


def format_table(df: pd.DataFrame) -> pd.DataFrame:
    """Display version of :func:`config_table`: intervals as ``x [lo, hi]`` strings."""
    out = pd.DataFrame({"config": df["config"]})
    out["accuracy [95% CI]"] = [f"{_f(a)} [{_f(lo)}, {_f(hi)}]" for a, lo, hi in
                                zip(df["accuracy"], df["accuracy_lo"], df["accuracy_hi"])]
    out["nominal cost [95% CI]"] = [f"{_f(a, 2)} [{_f(lo, 2)}, {_f(hi, 2)}]" for a, lo, hi in
                                    zip(df["nominal_cost"], df["nominal_cost_lo"], df["nominal_cost_hi"])]
    for col, nd in (("macro_f1", 3), ("tool_name_acc", 3), ("call_exact", 3), ("accept_rate", 3),
                    ("accept_precision", 3), ("acc_rejected", 3), ("measured_cost", 2), ("seconds", 3),
                    ("x_random", 2), ("x_majority", 2), ("threshold", 3)):
        if col in df:
            out[col] = [_f(v, nd) for v in df[col]]
    for col in ("p_vs_B", "p_vs_A"):
        if col in df:
            out[col] = ["–" if pd.isna(p) else (f"{p:.2g}" if p >= 1e-4 else "<1e-4") for p in df[col]]
    return out


def per_source_table(results: dict[str, StepResults]) -> pd.DataFrame:
    """Accuracy of each configuration on each data source (long format)."""
    parts = [r.steps.assign(config=n, correct=r.steps["correct"].astype(float)) for n, r in results.items()]
    d = pd.concat(parts, ignore_index=True)
    return d.groupby(["config", "source"], sort=False)["correct"].agg(accuracy="mean", n="size").reset_index()


def markdown_table(df: pd.DataFrame) -> str:
    """A GitHub-flavoured markdown table (no ``tabulate`` dependency)."""
    cells = [[str(c) for c in df.columns]] + [["–" if pd.isna(v) else str(v) for v in row] for row in df.itertuples(index=False)]
    cells = [[c.replace("|", "\\|").replace("\n", " ") for c in row] for row in cells]
    lines = ["| " + " | ".join(cells[0]) + " |", "|" + "|".join("---" for _ in cells[0]) + "|"]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in cells[1:]])


# ---------------------------------------------------------------- figures
def frontier_figure(table: pd.DataFrame, sweeps: dict[str, pd.DataFrame] | None = None) -> Figure:
    """Accuracy vs nominal cost (left) and measured cost (right).

    Each sweep (D, E) is drawn with its Pareto frontier; every configuration is a point with
    its 95% accuracy interval (and nominal-cost interval). The dashed segment joining a D
    sweep's accept-all and accept-none ends is random acceptance at every rate: in
    expectation both accuracy and cost are linear in the accept rate.
    """
    fig = Figure(figsize=(13, 5), layout="constrained")
    pal = dict(zip(ORDER, sns.color_palette("tab10", len(ORDER))))
    for ax, x in zip(fig.subplots(1, 2), ("nominal_cost", "measured_cost")):
        for name, sw in (sweeps or {}).items():
            sw = sw.sort_values(x)
            ax.plot(sw[x], sw["accuracy"], ":", lw=0.8, alpha=0.5, color=pal.get(name), label=f"{name}: every threshold")
            hull = pareto_hull(sw, x=x)
            ax.plot(hull[x], hull["accuracy"], drawstyle="steps-post", color=pal.get(name), lw=2, label=f"{name}: Pareto frontier")
            if name == "D":
                ends = sw.loc[[sw["accept_rate"].idxmax(), sw["accept_rate"].idxmin()]]
                ax.plot(ends[x], ends["accuracy"], "--", color="grey", lw=1, label="random accept (any rate)")
        for _, r in table.iterrows():
            yerr = [[r["accuracy"] - r["accuracy_lo"]], [r["accuracy_hi"] - r["accuracy"]]]
            xerr = ([[r[x] - r["nominal_cost_lo"]], [r["nominal_cost_hi"] - r[x]]]
                    if x == "nominal_cost" and np.isfinite(r["nominal_cost_lo"]) else None)
            ax.errorbar(r[x], r["accuracy"], yerr=yerr if np.isfinite(r["accuracy_lo"]) else None, xerr=xerr,
                        fmt="*" if r["config"] in ("oracle", "random") else "o", ms=9, capsize=3,
                        color=pal.get(r["config"], "k"), label=r["config"])
            ax.annotate(r["config"], (r[x], r["accuracy"]), textcoords="offset points", xytext=(5, -12), fontsize=8)
        ax.set_xlabel(x.replace("_", " ") + (" (strong call = 1)" if x == "nominal_cost" else " (FLOPs, A = 1)"))
        ax.set_ylabel("accuracy (action type)")
        ax.grid(alpha=0.3)
    fig.legend(*fig.axes[0].get_legend_handles_labels(), loc="outside right center", fontsize=8)
    fig.suptitle("Cost–accuracy frontier")
    return fig


def confusion_grid(results: dict[str, StepResults], configs=None, labels=LABELS, ncols: int = 3) -> Figure:
    """Row-normalised confusion matrices (gold x predicted), one panel per configuration."""
    names = [c for c in (configs or _ordered(results)) if results[c].steps["pred"].notna().all()]
    nrows = max(1, math.ceil(len(names) / ncols))
    fig = Figure(figsize=(5 * ncols, 4.5 * nrows), layout="constrained")
    axes = np.atleast_1d(fig.subplots(nrows, ncols)).ravel()
    for ax, name in zip(axes, names):
        s = results[name].steps
        cm = pd.crosstab(s["gold"], s["pred"]).reindex(index=list(labels), columns=list(labels), fill_value=0)
        norm = cm.div(cm.sum(axis=1).replace(0, np.nan), axis=0)
        sns.heatmap(norm, ax=ax, vmin=0, vmax=1, cmap="Blues", annot=cm.to_numpy(), fmt="d", cbar=False, annot_kws={"size": 7})
        ax.set_title(f"{name} (acc {results[name].accuracy:.3f})")
        ax.set_xlabel("predicted")
        ax.set_ylabel("gold")
    for ax in axes[len(names):]:
        ax.set_visible(False)
    return fig


def reliability_figure(rel: dict, title: str = "Verifier reliability") -> Figure:
    """Reliability diagram from :func:`specact.stats.reliability` with the prob histogram below."""
    fig = Figure(figsize=(5, 6), layout="constrained")
    top, bottom = fig.subplots(2, 1, height_ratios=[3, 1], sharex=True)
    t = rel["table"]
    top.plot([0, 1], [0, 1], ":", color="grey", label="perfect calibration")
    top.plot(t["mean_prob"], t["frac_positive"], "o-", label=f"verifier (ECE {_f(rel['ece'])})")
    top.set_ylabel("fraction of proposals right")
    top.legend(loc="upper left")
    top.set_title(title)
    bottom.bar((t["low"] + t["high"]) / 2, t["count"], width=(t["high"] - t["low"]) * 0.9, color="grey")
    bottom.set_xlabel("verifier probability")
    bottom.set_ylabel("steps")
    return fig


def per_source_figure(results: dict[str, StepResults], configs=None) -> Figure:
    """Accuracy per data source and configuration (bars)."""
    d = per_source_table({c: results[c] for c in (configs or _ordered(results))})
    fig = Figure(figsize=(max(6, 1.5 * d["source"].nunique() + 3), 4.5), layout="constrained")
    ax = fig.subplots()
    sns.barplot(data=d, x="source", y="accuracy", hue="config", ax=ax)
    ax.set_ylim(0, 1)
    ax.tick_params(axis="x", rotation=30)
    ax.set_title("Accuracy by source")
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
def to_jsonable(obj):
    """numpy / pandas / dataclasses -> plain JSON types; NaN and infinities -> null."""
    if isinstance(obj, StepResults):
        return to_jsonable(obj.summary())
    if isinstance(obj, pd.DataFrame):
        return to_jsonable(obj.to_dict(orient="records"))
    if isinstance(obj, pd.Series):
        return to_jsonable(obj.to_dict())
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return to_jsonable(dataclasses.asdict(obj))
    if isinstance(obj, tuple) and hasattr(obj, "_asdict"):  # NamedTuple (CI, McNemar)
        return to_jsonable(obj._asdict())
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, np.ndarray)):
        return [to_jsonable(v) for v in (obj.tolist() if isinstance(obj, np.ndarray) else obj)]
    if isinstance(obj, (np.bool_, bool)):
        return bool(obj)
    if isinstance(obj, (np.integer, int)):
        return int(obj)
    if isinstance(obj, (np.floating, float)):
        return float(obj) if math.isfinite(obj) else None
    if obj is None or isinstance(obj, str):
        return obj
    if obj is pd.NA or obj is pd.NaT:
        return None
    return str(obj)


def write_report(out_dir, results_json: dict, tables: dict[str, pd.DataFrame], figures: dict[str, Figure],
                 finding: str, title: str = "Speculative tool actions: results") -> dict[str, Path]:
    """Write ``results.json``, ``report.md`` and one PNG per figure into ``out_dir``.

    ``results.json`` holds ``results_json`` plus every table as records, so nothing shown in
    the report exists only as a picture or a formatted string.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"results": out / "results.json", "report": out / "report.md"}
    payload = {**to_jsonable(results_json), "finding": finding, "tables": {k: to_jsonable(v) for k, v in tables.items()}}
    paths["results"].write_text(json.dumps(payload, indent=2, sort_keys=True, allow_nan=False))
    md = [f"# {title}", "", "## Finding", "", finding, ""]
    for name, df in tables.items():
        md += [f"## {name}", "", markdown_table(df), ""]
    for name, fig in figures.items():
        png = out / f"{name}.png"
        fig.savefig(png, dpi=110)
        paths[name] = png
        md += [f"## {name}", "", f"![{name}]({png.name})", ""]
    paths["report"].write_text("\n".join(md))
    return paths


def written_finding(results: dict[str, StepResults], table: pd.DataFrame | None = None,
                    choices: dict | None = None, n_resamples: int = 1000, seed: int = 0) -> str:
    """A few sentences stating only what the numbers and their intervals support.

    Significance is McNemar at ALPHA on the same steps; "no evidence" replaces any claim
    whose test or paired interval does not exclude no difference.
    """
    t = (table if table is not None else config_table(results, n_resamples=n_resamples, seed=seed)).set_index("config")

    def acc(c):
        r = t.loc[c]
        return f"{100 * r.accuracy:.1f}% [{100 * r.accuracy_lo:.1f}, {100 * r.accuracy_hi:.1f}]"

    def vs(c, ref):
        p = t.loc[c, f"p_vs_{ref}"]
        d = 100 * (t.loc[c, "accuracy"] - t.loc[ref, "accuracy"])
        if pd.isna(p):
            return f"{d:+.1f} points vs {ref} (no paired test)"
        verdict = "significant" if p < ALPHA else "not significant"
        return f"{d:+.1f} points vs {ref} (McNemar p={p:.2g}, {verdict})"

    n = int(t["n"].iloc[0])
    out = []
    if {"A", "B"} <= set(t.index):
        out.append(f"On {n} evaluation steps the strong model (A) is right on {acc('A')} of action types and the "
                   f"cheap proposer (B) on {acc('B')}; {vs('A', 'B')}.")
    for c in ("D", "E"):
        if c not in t.index:
            continue
        r = t.loc[c]
        thr = f", threshold {r.threshold:.3g} chosen on dev" if pd.notna(r.threshold) else ""
        if choices and c in choices:
            ch = choices[c]
            thr += f" (dev accept precision {ch.dev_accept_precision:.2f}, rule '{ch.rule}')"
        s = (f"{c} reaches {acc(c)} at nominal cost {r.nominal_cost:.2f} (measured {r.measured_cost:.2f}, A = 1), "
             f"accepting {100 * r.accept_rate:.0f}% of proposals with precision {r.accept_precision:.2f}{thr}")
        s += "; " + "; ".join(vs(c, ref) for ref in ("B", "A") if ref in t.index) + "."
        if "A" in t.index and t.loc[c, "accuracy_hi"] >= t.loc["A", "accuracy_lo"] and t.loc[c, "accuracy_lo"] <= t.loc["A", "accuracy_hi"]:
            # Overlapping marginal intervals are not a test: the paired test decides.
            s += (f" The 95% intervals of {c} and A overlap; " +
                  ("the paired test on the same steps still separates them." if t.loc[c, "p_vs_A"] < ALPHA
                   else f"with the paired test also not significant, this sample cannot tell {c} from A."))
        out.append(s)
    if "D" in results and "random" in results:
        d = paired_bootstrap_diff(results["D"].steps["correct"], results["random"].steps["correct"], n_resamples, seed)
        beats = d.low > 0
        out.append(f"Against random acceptance at D's rate (expected accuracy {100 * t.loc['random', 'accuracy']:.1f}%), "
                   f"the verifier adds {100 * d.estimate:+.1f} points [{100 * d.low:+.1f}, {100 * d.high:+.1f}]"
                   + ("" if beats else ", an interval that includes no gain: no evidence the verifier beats chance") + ".")
    if "oracle" in t.index:
        out.append(f"A perfect verifier at D's price (oracle) would reach {acc('oracle')} at nominal cost "
                   f"{t.loc['oracle', 'nominal_cost']:.2f}: the ceiling of any verifier of the cheap model's top proposal "
                   "(E, choosing among several proposals, is not bound by it).")
    if "C" in t.index:
        out.append(f"C matches A's accuracy by construction but costs {t.loc['C', 'nominal_cost']:.2f} nominal "
                   f"(the strong model runs on every step to verify): under this cost model it cannot save compute; "
                   "speculative decoding's gain is latency, which these costs do not count.")
    return " ".join(out)
