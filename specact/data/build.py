"""Decision-point datasets: collect, subsample, split by trajectory, derive verifier pairs.

Sources: BFCL v4 multi-turn replays, BFCL's single-turn sets (live and curated queries against real
API schemas, irrelevance -> BLOCKED, derived clarifications) (``bfcl.py``) and the synthetic
generator (``synthetic.py``). Rows of the ``datasets`` tables are flat columns plus the full
spec record as sorted-key JSON (``DESIGN.md``), so equal data gives equal bytes.

Splits are made by *group*, never by row, stratified within each source, with near-duplicates
kept together and whole held-out domains apart (``splits.py``).
"""

from __future__ import annotations

import json
import random
from collections import Counter, defaultdict
from pathlib import Path

from specact.data.splits import (SPLITS, assign_splits, cross_split_duplicates, domain_of, domain_parts,  # noqa: F401
                                 group_of, is_ood, near_duplicate_components, near_duplicate_key)
from specact.records import validate_record, write_jsonl

COLUMNS = ("id", "label", "source", "domain", "trajectory_id", "step", "record")


# ---------------------------------------------------------------- collect + subsample
def collect(cfg, seed: int, cap: bool = True) -> list[dict]:
    """All decision points the data config asks for, validated, in a fixed source order
    (``cap=False``: before the per-trajectory step cap, for the data card's counts)."""
    from specact.data import bfcl, synthetic

    if cfg.nestful > 0:
        raise ValueError("data.nestful > 0 is not supported: NESTFUL needs the nestful-wrapper package, which this "
                         "environment does not have. Set data.nestful: 0.")
    records = bfcl.load_bfcl(cfg.bfcl_categories, cfg.bfcl_max_trajectories, seed) if cfg.bfcl_categories else []
    records += bfcl.load_irrelevance(cfg.bfcl_irrelevance, seed)
    single = bfcl.load_single_turn(cfg.bfcl_single_turn, seed)
    records += single + bfcl.derive_clarifications(single, cfg.bfcl_clarifications, seed)
    records += synthetic.generate(cfg.synthetic_trajectories, seed)
    records = cap_steps(records, cfg.max_steps_per_trajectory if cap else 0, seed)
    dup = [k for k, n in Counter(r["id"] for r in records).items() if n > 1]
    if dup:
        raise ValueError(f"duplicate decision-point ids, e.g. {dup[:3]}")
    return records


def cap_steps(records: list[dict], k: int, seed: int) -> list[dict]:
    """Keep at most ``k`` decision points per trajectory: a seeded uniform sample per
    trajectory (seeded by its id, so one trajectory's choice does not depend on the others),
    in original order. ``k <= 0`` keeps all."""
    if k <= 0:
        return records
    by_tid = defaultdict(list)
    for i, r in enumerate(records):
        by_tid[r["meta"]["trajectory_id"]].append(i)
    keep = set()
    for tid, idx in by_tid.items():
        keep.update(idx if len(idx) <= k else random.Random(f"cap-{seed}-{tid}").sample(idx, k))
    return [r for i, r in enumerate(records) if i in keep]


def build_records(cfg, seed: int) -> dict[str, list[dict]]:
    """split -> decision points (records in collection order). Groups that touch a domain in
    ``cfg.ood_domains`` form the ``ood`` split (whole held-out domains, present only when some
    are named); the rest is split by :func:`assign_splits`."""
    records = collect(cfg, seed)
    ood_domains = list(cfg.ood_domains)
    present = set().union(*(domain_parts(domain_of(r)) for r in records)) if records else set()
    missing = [d for d in ood_domains if d not in present]
    if missing:
        raise ValueError(f"data.ood_domains {missing} have no decision points in this data; present: {sorted(present)}")
    ood_groups = {group_of(r) for r in records if is_ood(r, ood_domains)}
    rest = [r for r in records if group_of(r) not in ood_groups]
    split_of = assign_splits(rest, cfg.split_fractions, seed, cfg.near_duplicate_max_groups)
    split_of.update({g: "ood" for g in ood_groups})
    out = {s: [] for s in SPLITS + (("ood",) if ood_groups else ())}
    for r in records:
        out[split_of[group_of(r)]].append(r)
    return out


def _features():
    from datasets import Features, Value

    return Features({"id": Value("string"), "label": Value("string"), "source": Value("string"), "domain": Value("string"),
                     "trajectory_id": Value("string"), "step": Value("int64"), "record": Value("string")})


def to_dataset(records: list[dict]):
    from datasets import Dataset

    cols = {c: [] for c in COLUMNS}
    for r in records:
        cols["id"].append(r["id"])
        cols["label"].append(r["label"])
        cols["source"].append(r["meta"]["source"])
        cols["domain"].append(domain_of(r))
        cols["trajectory_id"].append(r["meta"]["trajectory_id"])
        cols["step"].append(int(r["meta"].get("step", 0)))
        cols["record"].append(json.dumps(r, sort_keys=True, ensure_ascii=False))
    return Dataset.from_dict(cols, features=_features())


def build_decisions(cfg, seed: int):
    """``DataConfig`` -> ``DatasetDict`` train/dev/test (+ ood) of decision points."""
    from datasets import DatasetDict

    return DatasetDict({s: to_dataset(recs) for s, recs in build_records(cfg, seed).items()})


def to_records(ds) -> list[dict]:
    """The validated spec dicts of a decision-point ``Dataset``."""
    return [validate_record(json.loads(s)) for s in ds["record"]]


def save_decisions(dd, directory) -> Path:
    dd.save_to_disk(str(directory))
    return Path(directory)


def load_decisions(directory):
    from datasets import load_from_disk

    return load_from_disk(str(directory))


def export_jsonl(dd, directory) -> dict[str, Path]:
    """``<split>.jsonl`` per split, sorted keys (byte-identical for equal data)."""
    return {s: write_jsonl(to_records(dd[s]), Path(directory) / f"{s}.jsonl") for s in dd}


# ---------------------------------------------------------------- SFT view
def proposer_sft(tokenizer, records: list[dict], prompt_cfg=None):
    """prompt/completion rows (``specact.prompts.sft_example``) plus id and label."""
    from datasets import Dataset

    from specact.prompts import sft_example

    rows = [{"id": r["id"], "label": r["label"], **sft_example(tokenizer, r, prompt_cfg)} for r in records]
    return Dataset.from_list(rows) if rows else Dataset.from_dict({"id": [], "label": [], "prompt": [], "completion": []})


# ---------------------------------------------------------------- data card: label filtering
def collect_label_filtering(cfg, seed: int, dd):
    """:func:`specact.data.card.label_filtering` of this data config: its decision points collected
    again without the step cap, capped as :func:`build_records` caps them, against ``dd`` (the
    datasets built, or their ``{split: records}``). It lives here, not in ``card.py``: the card
    importing :func:`collect` would be an import circle (this module re-exports the card)."""
    collected = collect(cfg, seed, cap=False)
    return label_filtering(collected, cap_steps(collected, cfg.max_steps_per_trajectory, seed), dd)


# The verifier-pair and data-card helpers live in their own modules; re-exported here so
# callers have one import site for the data stage.
from specact.data.pairs import crossfit_pairs, is_correct, make_verifier_pairs, verifier_pairs_dataset  # noqa: E402
from specact.data.card import (card_document, card_to_json, datacard, label_filtering, near_duplicate_table,  # noqa: E402
                               ood_label_counts, pair_kind_counts, plot_label_distribution, render_examples,
                               shortcut_diagnostic, source_shares, split_records, split_sizes)

__all__ = ["build_decisions", "build_records", "collect", "cap_steps", "assign_splits", "to_dataset", "to_records",
           "save_decisions", "load_decisions", "export_jsonl", "proposer_sft", "make_verifier_pairs", "crossfit_pairs",
           "is_correct", "verifier_pairs_dataset", "datacard", "card_to_json", "plot_label_distribution", "render_examples",
           "shortcut_diagnostic", "near_duplicate_table", "label_filtering", "collect_label_filtering", "split_records",
           "source_shares", "ood_label_counts", "pair_kind_counts", "split_sizes", "card_document", "domain_of",
           "domain_parts", "is_ood", "near_duplicate_key", "near_duplicate_components", "cross_split_duplicates"]
