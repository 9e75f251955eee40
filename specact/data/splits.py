"""Splits of decision points: by group, stratified within each source, near-duplicates kept together,
whole held-out domains apart (``ood``).

A group is ``meta.group`` (BFCL's four categories replay the same 200 scenarios, so
``multi_turn_base_7`` and ``multi_turn_miss_func_7`` share the group ``bfcl_7`` -- splitting them
apart would leak the task) or else the trajectory id. A domain is ``meta.domain``
(``bfcl:<Class>+<Class>``, ``synthetic:<name>``, ``bfcl_<set>``) or else the source.
"""

from __future__ import annotations

import json
import random
import re
from collections import Counter, defaultdict

from specact.actions import LABELS

SPLITS = ("train", "dev", "test")


def group_of(rec: dict) -> str:
    return rec["meta"].get("group") or rec["meta"]["trajectory_id"]


def domain_of(rec: dict) -> str:
    """``meta.domain`` (e.g. ``bfcl:TicketAPI+TravelAPI``, ``synthetic:calendar``, ``bfcl_live_simple``), else the source."""
    return rec["meta"].get("domain") or rec["meta"]["source"]


def domain_parts(domain: str) -> set[str]:
    """A BFCL multi-turn scenario's domain names every environment class it uses:
    ``bfcl:A+B`` -> ``{bfcl:A, bfcl:B}``; any other domain is its own single part."""
    prefix, sep, rest = domain.partition(":")
    return {f"{prefix}:{p}" for p in rest.split("+")} if sep else {domain}


def is_ood(rec: dict, ood_domains) -> bool:
    """True when the record touches a held-out domain (one of its parts is named)."""
    return bool(domain_parts(domain_of(rec)) & set(ood_domains))


_DIGITS = re.compile(r"\d+")


def near_duplicate_key(rec: dict) -> str:
    """The last two messages (contents and calls, call ids left out), digit runs masked:
    two decision points with the same key read the same up to numbers."""
    tail = [{"role": m["role"], "content": m.get("content"),
             "calls": [c["function"] for c in m.get("tool_calls") or []]} for m in rec["messages"][-2:]]
    return _DIGITS.sub("#", json.dumps(tail, sort_keys=True, ensure_ascii=False))


def near_duplicate_components(records: list[dict], max_groups: int = 0) -> dict[str, str]:
    """group -> component: groups that share a near-duplicate key are joined (transitively:
    connected components of the group-key graph). A key shared by more than ``max_groups``
    groups is boilerplate (a fixed prompt, a common tool output, e.g. BFCL's function-release
    turn in 122 scenarios) and joins nothing; 0 = every key joins."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    groups = sorted({group_of(r) for r in records})
    gi = {g: i for i, g in enumerate(groups)}
    by_key = defaultdict(set)
    for r in records:
        by_key[near_duplicate_key(r)].add(gi[group_of(r)])
    rows, cols = [], []
    for members in by_key.values():
        if len(members) > 1 and (max_groups <= 0 or len(members) <= max_groups):
            first, *rest = sorted(members)
            rows += [first] * len(rest)
            cols += rest
    graph = coo_matrix(([1] * len(rows), (rows, cols)), shape=(len(groups), len(groups)))
    _, comp = connected_components(graph, directed=False)
    root = {}
    for g in groups:  # name each component by its first group (sorted): stable, readable
        root.setdefault(int(comp[gi[g]]), g)
    return {g: root[int(comp[gi[g]])] for g in groups}


def cross_split_duplicates(split_records: dict[str, list[dict]], max_groups: int = 0) -> dict[str, int]:
    """Decision points of each split other than train whose near-duplicate key also occurs in
    train (keys of more than ``max_groups`` groups, the boilerplate the rule exempts, are
    counted apart under ``<split>_boilerplate``)."""
    train_keys = {near_duplicate_key(r) for r in split_records.get("train", [])}
    n_groups = defaultdict(set)
    for recs in split_records.values():
        for r in recs:
            n_groups[near_duplicate_key(r)].add(group_of(r))
    out = {}
    for split, recs in split_records.items():
        if split == "train":
            continue
        keys = [near_duplicate_key(r) for r in recs]
        boiler = [k in train_keys and 0 < max_groups < len(n_groups[k]) for k in keys]
        out[split] = sum(k in train_keys for k in keys) - sum(boiler)
        out[f"{split}_boilerplate"] = sum(boiler)
    return out


def _stratum(sources: Counter) -> str:
    return min(sources, key=lambda s: (-sources[s], s))  # the component's main source


def assign_splits(records: list[dict], fractions, seed: int, max_dup_groups: int = 0) -> dict[str, str]:
    """group -> split, whole near-duplicate components at a time (:func:`near_duplicate_components`).

    Stratified within each source: components are grouped by their main source, and within it
    dealt largest first (ties in a seeded order) to the split furthest behind its share of that
    source's decision points -- so each source's share of train, dev and test stays near its
    share overall. Then a best-effort repair pass moves whole components so every label appears
    in test and train (and dev), where that is possible without taking a label away from another
    split (tiny smoke builds may lack a label held by a single component)."""
    if len(fractions) != 3 or min(fractions) < 0 or abs(sum(fractions) - 1) > 1e-6:
        raise ValueError(f"split_fractions must be three non-negative numbers summing to 1, got {fractions}")
    frac = dict(zip(SPLITS, fractions))
    comp_of = near_duplicate_components(records, max_dup_groups)
    size, labels, sources = Counter(), defaultdict(Counter), defaultdict(Counter)
    for r in records:
        c = comp_of[group_of(r)]
        size[c] += 1
        labels[c][r["label"]] += 1
        sources[c][r["meta"]["source"]] += 1
    strata = defaultdict(list)
    for c in sorted(size):
        strata[_stratum(sources[c])].append(c)
    split_of = {}
    for name, comps in sorted(strata.items()):
        random.Random(f"split-{seed}-{name}").shuffle(comps)
        comps.sort(key=lambda c: -size[c])  # stable: the seeded order breaks ties
        filled, total = Counter(), 0
        for c in comps:
            total += size[c]
            s = max(SPLITS, key=lambda s: (frac[s] * total - filled[s], -SPLITS.index(s)))
            split_of[c] = s
            filled[s] += size[c]
    _repair_splits(split_of, labels, size)
    return {g: split_of[c] for g, c in comp_of.items()}


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
