"""Decision-point datasets: collect, subsample, split by trajectory, derive verifier pairs.

Sources: BFCL v4 multi-turn replays + BFCL irrelevance (``bfcl.py``) and the synthetic
generator (``synthetic.py``). Rows of the ``datasets`` tables are flat columns plus the full
spec record as sorted-key JSON (``DESIGN.md``), so equal data gives equal bytes.

Splits are made by *group*, never by row: a group is ``meta.group`` (BFCL's four categories
replay the same 200 scenarios, so ``multi_turn_base_7`` and ``multi_turn_miss_func_7`` share the
group ``bfcl_7`` -- splitting them apart would leak the task) or else the trajectory id.
"""

from __future__ import annotations

import json
import random
from collections import Counter, defaultdict
from pathlib import Path

from specact.actions import LABELS
from specact.records import validate_record, write_jsonl

SPLITS = ("train", "dev", "test")
COLUMNS = ("id", "label", "source", "trajectory_id", "step", "record")


# ---------------------------------------------------------------- collect + subsample
def collect(cfg, seed: int) -> list[dict]:
    """All decision points the data config asks for, validated, in a fixed source order."""
    from specact.data import bfcl, synthetic

    if cfg.nestful > 0:
        raise ValueError("data.nestful > 0 is not supported: NESTFUL needs the nestful-wrapper package, which this "
                         "environment does not have. Set data.nestful: 0.")
    records = bfcl.load_bfcl(cfg.bfcl_categories, cfg.bfcl_max_trajectories, seed) if cfg.bfcl_categories else []
    records += bfcl.load_irrelevance(cfg.bfcl_irrelevance, seed)
    records += synthetic.generate(cfg.synthetic_trajectories, seed)
    records = cap_steps(records, cfg.max_steps_per_trajectory, seed)
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


# ---------------------------------------------------------------- split
def group_of(rec: dict) -> str:
    return rec["meta"].get("group") or rec["meta"]["trajectory_id"]


def assign_splits(records: list[dict], fractions, seed: int) -> dict[str, str]:
    """group -> split. Stratified: groups are ordered rarest-label-first (each group's stratum
    is the rarest label it contains), shuffled within a stratum by ``seed``, and dealt to the
    split furthest behind its share of decision points. Then a best-effort repair pass moves
    whole groups so every label appears in test and train (and dev), where that is possible
    without taking a label away from another split (it is, at the default sizes; tiny smoke
    builds may lack a label held by a single group)."""
    if len(fractions) != 3 or min(fractions) < 0 or abs(sum(fractions) - 1) > 1e-6:
        raise ValueError(f"split_fractions must be three non-negative numbers summing to 1, got {fractions}")
    frac = dict(zip(SPLITS, fractions))
    size, labels = Counter(), defaultdict(Counter)
    for r in records:
        g = group_of(r)
        size[g] += 1
        labels[g][r["label"]] += 1
    freq = Counter(lab for g in labels for lab in labels[g])  # groups containing each label
    rank = {lab: (freq[lab], LABELS.index(lab)) for lab in freq}
    strata = defaultdict(list)
    for g in sorted(labels):
        strata[min(labels[g], key=rank.__getitem__)].append(g)
    order = []
    for lab in sorted(strata, key=rank.__getitem__):
        gs = strata[lab]
        random.Random(f"split-{seed}-{lab}").shuffle(gs)
        order += gs
    split_of, filled, total = {}, Counter(), 0
    for g in order:
        total += size[g]
        s = max(SPLITS, key=lambda s: (frac[s] * total - filled[s], -SPLITS.index(s)))
        split_of[g] = s
        filled[s] += size[g]
    _repair_splits(split_of, labels, size)
    return split_of


def _repair_splits(split_of: dict, labels: dict, size: Counter) -> None:
    """Move whole groups so each label is in test, train and (last, best effort) dev: take the
    smallest group holding the missing label from the split with the most such groups, and only
    a group whose split keeps every one of its labels. No move removes a label from a split;
    repeat because one move can make another possible."""
    count = Counter((split_of[g], lab) for g in labels for lab in labels[g])  # (split, label) -> groups
    for _ in range(3):
        moved = False
        for lab in LABELS:
            for need in ("test", "train", "dev"):
                if count[need, lab]:
                    continue
                donors = [g for g in sorted(labels) if lab in labels[g]
                          and all(count[split_of[g], other] >= 2 for other in labels[g])]
                if donors:
                    g = min(donors, key=lambda g: (-count[split_of[g], lab], size[g], g))
                    for other in labels[g]:
                        count[split_of[g], other] -= 1
                        count[need, other] += 1
                    split_of[g] = need
                    moved = True
        if not moved:
            return


def build_records(cfg, seed: int) -> dict[str, list[dict]]:
    """split -> decision points (records in collection order)."""
    records = collect(cfg, seed)
    split_of = assign_splits(records, cfg.split_fractions, seed)
    out = {s: [] for s in SPLITS}
    for r in records:
        out[split_of[group_of(r)]].append(r)
    return out


def _features():
    from datasets import Features, Value

    return Features({"id": Value("string"), "label": Value("string"), "source": Value("string"),
                     "trajectory_id": Value("string"), "step": Value("int64"), "record": Value("string")})


def to_dataset(records: list[dict]):
    from datasets import Dataset

    cols = {c: [] for c in COLUMNS}
    for r in records:
        cols["id"].append(r["id"])
        cols["label"].append(r["label"])
        cols["source"].append(r["meta"]["source"])
        cols["trajectory_id"].append(r["meta"]["trajectory_id"])
        cols["step"].append(int(r["meta"].get("step", 0)))
        cols["record"].append(json.dumps(r, sort_keys=True, ensure_ascii=False))
    return Dataset.from_dict(cols, features=_features())


def build_decisions(cfg, seed: int):
    """``DataConfig`` -> ``DatasetDict`` train/dev/test of decision points."""
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


# The verifier-pair and data-card helpers live in their own modules; re-exported here so
# callers have one import site for the data stage.
from specact.data.pairs import crossfit_pairs, is_correct, make_verifier_pairs, verifier_pairs_dataset  # noqa: E402
from specact.data.card import card_to_json, datacard, plot_label_distribution, render_examples  # noqa: E402

__all__ = ["build_decisions", "build_records", "collect", "cap_steps", "assign_splits", "to_dataset", "to_records",
           "save_decisions", "load_decisions", "export_jsonl", "proposer_sft", "make_verifier_pairs", "crossfit_pairs",
           "is_correct", "verifier_pairs_dataset", "datacard", "card_to_json", "plot_label_distribution", "render_examples"]
