"""Results of several runs side by side: ``specact compare RUN_OR_REPORT_DIR...``.

:func:`load_results` reads one run's ``results.json`` (written by the report notebook) into a
long table, one row per split and configuration; :func:`compare` stacks several runs and
:func:`compare_table` formats them for reading, as Markdown (README, terminal) and HTML.
Older results files (one split, no provenance) load too: their split is ``test``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from specact.report import REPO, REPORTED_SPLITS, _ci, _f, _ordered, describe, markdown_table

MEASURES = ("n", "accuracy", "accuracy_lo", "accuracy_hi", "nominal_cost", "measured_cost", "accept_rate",
            "accept_precision", "p_vs_A", "p_vs_B")


def results_file(path: str | Path) -> Path:
    """``results.json`` itself, a report folder holding it, or a run folder ``runs/<id>`` (its report
    is ``reports/<id>/results.json`` beside it)."""
    p = Path(path)
    for cand in (p, p / "results.json", p.parent.parent / "reports" / p.name / "results.json",
                 REPO / "reports" / p.name / "results.json"):
        if cand.is_file():
            return cand
    raise FileNotFoundError(f"no results.json for {path} (give a report folder, a run folder or the file)")


def tables_by_split(tables: dict, kind: str) -> dict[str, list[dict]]:
    """``{split: rows}`` of results.json's ``<kind>_<split>`` tables (kind: configurations, signals, ...)."""
    return {k.removeprefix(f"{kind}_"): v for k, v in tables.items() if k.startswith(f"{kind}_")}


def _split_tables(res: dict) -> dict[str, list[dict]]:
    tables = res.get("tables", {})
    return tables_by_split(tables, "configurations") or {res.get("main_split", "test"): tables.get("configurations", [])}


def _signals(tables: dict) -> tuple[dict, dict]:
    """From the eval stage's deferral-signal tables (``signals_<split>``): per split, each configuration's
    first curve (APGR, measured cost to 50/80/95% of A) and the learned verifier's AUROC."""
    curves, aucs = {}, {}
    for split, rows in tables_by_split(tables, "signals").items():
        for r in rows:
            if r.get("config") and r["config"] not in curves.setdefault(split, {}):
                curves[split][r["config"]] = {"apgr": r.get("apgr"), **{f"{k}pct": v for k, v in r.items()
                                                                        if k.startswith("cost_to_")}}
            elif not r.get("config") and r.get("signal") == "verifier":
                aucs[split] = {"auroc": r.get("auroc"), "low": r.get("auroc_low"), "high": r.get("auroc_high")}
    return curves, aucs


def load_results(path: str | Path) -> pd.DataFrame:
    """One run's results as a DataFrame: one row per split and configuration, with accuracy and
    its 95% interval, nominal and measured cost, accept rate and precision, p vs A and B (the report's
    paired cluster test; McNemar in reports rendered before it),
    the threshold sweep's APGR and cost to close 50/80/95% of B→A (thresholded rows), the
    verifier's AUROC on the report's main split, and the run's id, commit and date."""
    f = results_file(path)
    res = json.loads(f.read_text())
    prov = res.get("provenance") or {}
    run = ((prov.get("params") or {}).get("run_id")) or f.parent.name
    frontier = res.get("frontier") or {}
    frontier = {r["config"]: r for r in frontier} if isinstance(frontier, list) else frontier
    auc = ((res.get("verifier") or {}).get("auroc")) or {}
    main = res.get("main_split", "test")
    names = res.get("descriptions") or {}
    curves, signal_auc = _signals(res.get("tables", {}))
    rows = []
    for split, table in _split_tables(res).items():
        for r in table:
            row = {"run": run, "split": split, "config": r["config"], "description": names.get(r["config"]),
                   **{m: r.get(m) for m in MEASURES}}
            fr = curves.get(split, {}).get(r["config"]) or (frontier.get(r["config"], {}) if split == main else {})
            if "apgr" in fr:  # older reports measured cost_to_* against the best point, not A: left out
                row.update({k: v for k, v in fr.items() if k == "apgr" or k.startswith("cost_to_")})
            a = signal_auc.get(split) or (auc if split == main else {})
            row.update(verifier_auroc=a.get("auroc"), verifier_auroc_lo=a.get("low"), verifier_auroc_hi=a.get("high"))
            rows.append(row)
    df = pd.DataFrame(rows)
    return df.assign(git_commit=(prov.get("git_commit") or "")[:12] or None, date=prov.get("date"), path=str(f.parent))


def compare(paths) -> pd.DataFrame:
    """:func:`load_results` of every path, stacked (run ids made unique by their folder if two clash)."""
    frames = [load_results(p) for p in paths]
    runs = [f["run"].iloc[0] if len(f) else "" for f in frames]
    for i, f in enumerate(frames):
        if runs.count(runs[i]) > 1:
            frames[i] = f.assign(run=f"{runs[i]} ({Path(f['path'].iloc[0]).name})")
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def compare_table(df: pd.DataFrame, split: str | None = None) -> pd.DataFrame:
    """For reading: one row per run, split and configuration; accuracy with its interval in percent,
    costs to 2 decimals, APGR and the cost to close 80% of B→A where a sweep exists, verifier AUROC."""
    d = df if split is None else df[df["split"] == split]
    order = _ordered(list(dict.fromkeys(d["config"])))
    split_rank = {k: i for i, k in enumerate(REPORTED_SPLITS)}  # test, then ood, as the report shows them
    d = d.assign(_o=d["config"].map(order.index), _s=d["split"].map(lambda x: split_rank.get(x, len(split_rank))))
    d = d.sort_values(["run", "_s", "_o"], kind="stable")
    desc = d["description"] if "description" in d else [None] * len(d)
    out = pd.DataFrame({"run": d["run"], "split": d["split"],
                        "configuration": [x if isinstance(x, str) else describe(c) for c, x in zip(d["config"], desc)]})
    out["accuracy [95% CI]"] = [_ci(a, lo, hi) for a, lo, hi in zip(*(d[c].astype(float) for c in ("accuracy", "accuracy_lo", "accuracy_hi")))]
    out["measured cost (A = 1)"] = [_f(v, 2) for v in d["measured_cost"].astype(float)]
    out["nominal cost"] = [_f(v, 2) for v in d["nominal_cost"].astype(float)]
    out["accept rate"] = ["–" if pd.isna(v) else f"{100 * v:.0f}%" for v in d["accept_rate"].astype(float)]
    out["accept precision"] = [_f(v, 2) for v in d["accept_precision"].astype(float)]
    if "apgr" in d and d["apgr"].notna().any():
        out["APGR"] = [_f(v, 2) for v in d["apgr"].astype(float)]
        if "cost_to_80pct" in d:
            out["measured cost to 80% of A"] = [_f(v, 2) for v in d["cost_to_80pct"].astype(float)]
    if d["verifier_auroc"].notna().any():
        out["verifier AUROC (D)"] = [f"{a:.2f} [{_f(lo, 2)}, {_f(hi, 2)}]" if c == "D" and np.isfinite(a) else "" for a, lo, hi, c in
                                     zip(*(d[k].astype(float) for k in ("verifier_auroc", "verifier_auroc_lo", "verifier_auroc_hi")), d["config"])]
    return out.reset_index(drop=True)


def write_texts(md: str, html: str, df: pd.DataFrame, out_dir: str | Path | None, stem: str) -> dict[str, str]:
    """``{"markdown", "html"}``; with ``out_dir`` also ``<stem>.md``, ``<stem>.html`` and ``<stem>.csv``
    (``df``: every number, missing ones empty) written there."""
    if out_dir:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / f"{stem}.md").write_text(md + "\n")
        (out / f"{stem}.html").write_text(html)
        df.replace({np.nan: None}).to_csv(out / f"{stem}.csv", index=False)
    return {"markdown": md, "html": html}


def write_compare(df: pd.DataFrame, out_dir: str | Path | None = None) -> dict[str, str]:
    """The comparison as Markdown and HTML text; also written to ``out_dir`` (compare.md/.html/.csv)."""
    shown = compare_table(df)
    return write_texts(markdown_table(shown), shown.to_html(index=False, border=0, na_rep="–"), df, out_dir, "compare")


def readme_table(path: str | Path, split: str = "test") -> str:
    """The Markdown table the README shows for one published run (``compare`` without run/split)."""
    return markdown_table(compare_table(load_results(path), split=split).drop(columns=["run", "split"]))
