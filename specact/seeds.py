"""One study's training seeds side by side: ``specact compare --seeds reports/<id>-s0 reports/<id>-s1 ...``.

``specact run params/X.yaml --seeds 0 1 2`` writes ``reports/<id>-s<seed>/results.json``, one per
seed, every seed evaluated on the same steps. :func:`seed_table` reads them and summarises each
measure with :func:`specact.stats.across_seeds` -- mean, sample sd, min and max across the seeds --
beside each seed's own value and its cluster-bootstrap interval: per split and configuration the
accuracy and the measured cost; per split and deferral signal the AUROC on the cheap model's real
proposals; per thresholded curve its APGR, where the report has one. :func:`seed_tables` formats
it for reading, :func:`write_seeds` as Markdown (README, terminal) and HTML, also into files.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd

from specact.compare import _split_tables, results_file, tables_by_split, write_texts
from specact.report import REPORTED_SPLITS, describe, markdown_table
from specact.stats import across_seeds

MEASURES = ("accuracy", "measured cost", "AUROC", "APGR")  # the table's order; accuracy and AUROC carry intervals
PERCENT = ("accuracy",)  # shown in percent; the others with 2 decimals
CONFIG_MEASURES = ("accuracy", "measured cost")  # measures of a configuration (the others: of a signal or curve)


def seed_of(res: dict, path: Path) -> tuple[str, int | str]:
    """(study id, seed) of one seed's results: the run's params (``run_id`` ``<id>-s<seed>``, ``seed``),
    else the report folder's name."""
    params = (res.get("provenance") or {}).get("params") or {}
    run = str(params.get("run_id") or path.parent.name)
    m = re.fullmatch(r"(.*)-s(\d+)", run)
    seed = params.get("seed", int(m.group(2)) if m else run)
    return (m.group(1) if m else run), seed


def seed_measures(res: dict) -> dict[tuple, list]:
    """``{(split, item, measure): [estimate, low, high]}`` of one seed's results.json: accuracy (with
    its interval) and measured cost of every configuration, AUROC (with its interval) of every deferral
    signal, APGR of every thresholded curve (``D (verifier)``). Reports older than the signal tables
    give the verifier's AUROC on their main split."""
    out: dict[tuple, list] = {}
    for split, table in _split_tables(res).items():
        for r in table:
            out[(split, r["config"], "accuracy")] = [r.get("accuracy"), r.get("accuracy_lo"), r.get("accuracy_hi")]
            out[(split, r["config"], "measured cost")] = [r.get("measured_cost"), None, None]
    signals = tables_by_split(res.get("tables", {}), "signals")
    for split, rows in signals.items():
        for r in rows:
            if not r.get("config"):
                out[(split, r["signal"], "AUROC")] = [r.get("auroc"), r.get("auroc_low"), r.get("auroc_high")]
            elif r.get("apgr") is not None:
                out[(split, f"{r['config']} ({r['signal']})", "APGR")] = [r["apgr"], None, None]
    auc = (res.get("verifier") or {}).get("auroc")
    if not signals and auc:
        out[(res.get("main_split", "test"), "verifier", "AUROC")] = [auc.get("auroc"), auc.get("low"), auc.get("high")]
    return out


def _load(paths) -> dict:
    """``{seed: results.json}``; refuses two results of one seed, of two studies, or of different steps."""
    loaded, studies, steps = {}, set(), {}
    for p in paths:
        f = results_file(p)
        res = json.loads(f.read_text())
        study, seed = seed_of(res, f)
        if seed in loaded:
            raise ValueError(f"seed {seed} given twice ({f})")
        loaded[seed] = res
        studies.add(study)
        for split, table in _split_tables(res).items():
            steps.setdefault(split, set()).update(int(r["n"]) for r in table if r.get("n") is not None)
    if len(studies) > 1:
        raise ValueError(f"results of different studies: {sorted(studies)} (one study's seeds: <id>-s0, <id>-s1, ...)")
    uneven = {s: sorted(n) for s, n in steps.items() if len(n) > 1}
    if uneven:
        raise ValueError(f"the seeds were not evaluated on the same steps: {uneven}")
    return loaded


def _order(df: pd.DataFrame, keys: list[tuple]) -> pd.DataFrame:
    """Splits as the report shows them (test, ood, dev), then measures as MEASURES, then items as the
    seeds' results list them (configurations in the registry's order, signals as the eval stage wrote them)."""
    split_rank = {k: i for i, k in enumerate(REPORTED_SPLITS)}
    first = {k: i for i, k in enumerate(keys)}
    rank = [(split_rank.get(sp, len(split_rank)), MEASURES.index(m), first[(sp, it, m)])
            for sp, it, m in zip(df["split"], df["item"], df["measure"])]
    return df.iloc[sorted(range(len(df)), key=rank.__getitem__)].reset_index(drop=True)


def seed_table(paths) -> pd.DataFrame:
    """One row per split, item (configuration, signal or curve; ``description``: what a configuration ran,
    as its report named it) and measure: ``n_seeds, mean, std``
    (sample sd), ``min, max``, and per seed ``s<seed>`` (its value), ``s<seed>_lo``, ``s<seed>_hi``
    (its 95% cluster-bootstrap interval where the measure has one). A seed where a measure is
    undefined (no B→A gap: no APGR) is left out of that row's summary and shows NaN."""
    loaded = _load(paths)
    seeds = sorted(loaded, key=lambda s: (isinstance(s, str), s))
    measures = {s: seed_measures(loaded[s]) for s in seeds}
    summary = across_seeds(measures)
    names = {k: v for s in reversed(seeds) for k, v in (loaded[s].get("descriptions") or {}).items()}
    rows = []
    for _, r in summary.iterrows():
        split, item, measure = r["metric"]
        row = {"split": split, "item": item, "description": names.get(item) if measure in CONFIG_MEASURES else None,
               "measure": measure, "n_seeds": r["n_seeds"], "mean": r["mean"], "std": r["std"], "min": r["min"], "max": r["max"]}
        for s in seeds:
            est, lo, hi = r["per_seed"].get(s, [np.nan] * 3)
            row.update({f"s{s}": est, f"s{s}_lo": lo, f"s{s}_hi": hi})
        rows.append(row)
    return _order(pd.DataFrame(rows), list(dict.fromkeys(k for s in seeds for k in measures[s])))


def _seeds(df: pd.DataFrame) -> list[str]:
    return [c.removesuffix("_lo") for c in df.columns if c.endswith("_lo")]


def _missing(x) -> bool:
    return x is None or not np.isfinite(x)


def _num(x, measure: str) -> str:
    if _missing(x):
        return "–"
    return f"{100 * x:.1f}" if measure in PERCENT else f"{x:.2f}"


def _cells(r: pd.Series, seeds: list[str]) -> dict:
    """Reading cells of one row: ``mean ± sd``, ``min–max`` and each seed's value [interval]."""
    m, unit = r["measure"], "%" if r["measure"] in PERCENT else ""
    spread = "" if _missing(r["std"]) else f" ± {_num(r['std'], m)}"
    out = {"mean ± sd": "–" if _missing(r["mean"]) else f"{_num(r['mean'], m)}{unit}{spread}",
           "min–max": "–" if _missing(r["min"]) else f"{_num(r['min'], m)}–{_num(r['max'], m)}"}
    for s in seeds:
        iv = "" if _missing(r[f"{s}_lo"]) else f" [{_num(r[f'{s}_lo'], m)}, {_num(r[f'{s}_hi'], m)}]"
        out[f"seed {s[1:]}"] = "–" if _missing(r[s]) else f"{_num(r[s], m)}{unit}{iv}"
    return out


CAPTIONS = {
    "accuracy": "Accuracy (action type) across {k} seeds: mean ± sd, min–max, each seed with its 95% cluster-bootstrap interval",
    "measured cost": "Measured cost per step (FLOPs, A = 1) across {k} seeds",
    "AUROC": "AUROC of each deferral signal on the cheap model's real proposals across {k} seeds, each seed with its 95% "
             "cluster-bootstrap interval",
    "APGR": "APGR (share of the B→A gap recovered, RouteLLM's) of each thresholded curve across {k} seeds",
}


def seed_tables(df: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """For reading: (caption, table) per measure present (accuracy, measured cost, AUROC, APGR); each
    row a split and item with ``mean ± sd``, ``min–max`` and one column per seed."""
    seeds = _seeds(df)
    out = []
    for measure in MEASURES:
        d = df[df["measure"] == measure]
        if d.empty:
            continue
        label = "configuration" if measure in CONFIG_MEASURES else "signal" if measure == "AUROC" else "curve"
        shown = pd.DataFrame({"split": d["split"].to_numpy(), label: [
            (x if isinstance(x, str) else describe(i)) if label == "configuration" else i for i, x in zip(d["item"], d["description"])]})
        cells = pd.DataFrame([_cells(r, seeds) for _, r in d.iterrows()])
        out.append((CAPTIONS[measure].format(k=len(seeds)), pd.concat([shown, cells], axis=1)))
    return out


def write_seeds(df: pd.DataFrame, out_dir: str | Path | None = None) -> dict[str, str]:
    """The across-seed tables as Markdown and HTML text; also written to ``out_dir`` (seeds.md,
    seeds.html, and seeds.csv with every number of :func:`seed_table`)."""
    tables = seed_tables(df)
    md = "\n\n".join(f"**{cap}**\n\n{markdown_table(t)}" for cap, t in tables)
    html = "\n".join(f"<p><b>{cap}</b></p>\n" + t.to_html(index=False, border=0, na_rep="–") for cap, t in tables)
    return write_texts(md, html, df, out_dir, "seeds")
