import json
from collections import Counter

import pytest

from specact.actions import LABELS, TOOL_LABELS
from specact.config import DataConfig
from specact.data import build
from specact.prompts import PromptConfig, gold_call


def cfg(**kw):
    base = dict(bfcl_categories=["base", "long_context", "miss_param", "miss_func"], bfcl_max_trajectories=12,
                bfcl_irrelevance=20, synthetic_trajectories=150, max_steps_per_trajectory=6, split_fractions=[0.7, 0.15, 0.15],
                bfcl_single_turn={"live_simple": 40, "live_multiple": 20, "live_irrelevance": 20, "simple_python": 20},
                bfcl_clarifications=10, ood_domains=["synthetic:support", "bfcl_live_multiple"])
    return DataConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def dd():
    return build.build_decisions(cfg(), seed=0)


def test_columns_and_records(dd):
    assert set(dd) == {"train", "dev", "test", "ood"}
    for split in dd:
        assert dd[split].column_names == list(build.COLUMNS)
        recs = build.to_records(dd[split])
        assert [r["id"] for r in recs] == dd[split]["id"]
        assert [r["label"] for r in recs] == dd[split]["label"]
        assert [build.domain_of(r) for r in recs] == dd[split]["domain"]


def test_every_label_in_train_and_test(dd):
    for split in ("train", "test"):
        assert set(dd[split]["label"]) == set(LABELS), split


def test_no_trajectory_or_scenario_crosses_splits(dd):
    where = {}
    for split in dd:
        for rec in build.to_records(dd[split]):
            for key in (rec["meta"]["trajectory_id"], build.group_of(rec)):
                assert where.setdefault(key, split) == split, key


def test_fractions_roughly_hold(dd):
    n = {s: len(dd[s]) for s in ("train", "dev", "test")}
    total = sum(n.values())
    assert 0.6 < n["train"] / total < 0.8 and 0.08 < n["test"] / total < 0.25


def test_steps_are_capped_deterministically():
    recs = [{"id": f"t{i}-{j}", "label": "tool_call", "meta": {"trajectory_id": f"t{i}", "source": "x"}} for i in range(3) for j in range(10)]
    a = build.cap_steps(recs, 4, seed=1)
    assert max(Counter(r["meta"]["trajectory_id"] for r in a).values()) == 4
    assert a == build.cap_steps(recs, 4, seed=1) and a != build.cap_steps(recs, 4, seed=2)
    assert build.cap_steps(recs, 0, seed=1) == recs


def test_same_seed_gives_byte_identical_jsonl(tmp_path):
    small = cfg(bfcl_categories=["base", "miss_func"], bfcl_max_trajectories=4, bfcl_irrelevance=5, synthetic_trajectories=30,
                bfcl_single_turn={"live_simple": 6}, bfcl_clarifications=2, ood_domains=[])
    paths = []
    for run in ("a", "b"):
        paths.append(build.export_jsonl(build.build_decisions(small, seed=3), tmp_path / run))
    for split in paths[0]:
        assert paths[0][split].read_bytes() == paths[1][split].read_bytes()
    other = build.export_jsonl(build.build_decisions(small, seed=4), tmp_path / "c")
    assert other["train"].read_bytes() != paths[0]["train"].read_bytes()


def test_save_load_roundtrip(dd, tmp_path):
    build.save_decisions(dd, tmp_path / "d")
    back = build.load_decisions(tmp_path / "d")
    assert {s: back[s]["record"] for s in back} == {s: dd[s]["record"] for s in dd}


def test_tiny_build_repairs_label_coverage():
    tiny = cfg(bfcl_categories=[], bfcl_irrelevance=0, synthetic_trajectories=40, max_steps_per_trajectory=4,
               bfcl_single_turn={}, bfcl_clarifications=0, ood_domains=[])
    recs = build.build_records(tiny, seed=0)
    comp = build.near_duplicate_components([r for s in recs for r in recs[s]], tiny.near_duplicate_max_groups)
    pairs = {(r["label"], comp[build.group_of(r)]) for s in recs for r in recs[s]}  # splits move whole components
    per_label = Counter(lab for lab, _ in pairs)
    multi = {lab for lab, n in per_label.items() if n >= 2}  # labels a split repair can cover
    for split in ("train", "test"):
        assert multi <= {r["label"] for r in recs[split]}, split


def default_data():
    from specact.config import load_params

    return load_params(build.Path(__file__).parents[1] / "params" / "default.yaml").data


@pytest.fixture(scope="module")
def default_records():
    """The default profile's data config: builds in seconds."""
    return build.build_records(default_data(), seed=0)


def test_each_source_share_is_within_3_points_in_every_split(default_records):
    """#12: stratified within each source, on the default profile's data."""
    n = {s: Counter(r["meta"]["source"] for r in default_records[s]) for s in ("train", "dev", "test")}
    total = sum(n.values(), Counter())
    for src in total:
        overall = total[src] / sum(total.values())
        for split in n:
            share = n[split][src] / sum(n[split].values())
            assert abs(share - overall) <= 0.03, (src, split, share, overall)


def test_ood_is_whole_held_out_domains(dd):
    ood = build.to_records(dd["ood"])
    assert {build.domain_of(r) for r in ood} == {"synthetic:support", "bfcl_live_multiple"}
    held = set(cfg().ood_domains)
    for split in ("train", "dev", "test"):
        assert not any(build.domain_parts(d) & held for d in dd[split]["domain"]), split
    assert {"ask_clarification", "BLOCKED", "retrieval", "tool_call"} <= set(dd["ood"]["label"])


def test_ood_class_takes_every_scenario_using_it():
    recs = build.build_records(cfg(bfcl_categories=["base"], bfcl_max_trajectories=30, synthetic_trajectories=10,
                                   bfcl_single_turn={}, bfcl_clarifications=0, ood_domains=["bfcl:TicketAPI"]), seed=0)
    ood = {build.domain_of(r) for r in recs["ood"]}
    assert ood and all("TicketAPI" in d for d in ood) and len(ood) > 1  # e.g. TicketAPI+TravelAPI, TicketAPI+TradingBot
    assert not any("TicketAPI" in build.domain_of(r) for s in ("train", "dev", "test") for r in recs[s])


def test_unknown_ood_domain_is_an_error():
    with pytest.raises(ValueError, match="ood_domains"):
        build.build_records(cfg(ood_domains=["synthetic:nowhere"]), seed=0)


def test_domain_parts():
    assert build.domain_parts("bfcl:A+B") == {"bfcl:A", "bfcl:B"}
    assert build.domain_parts("bfcl_live_simple") == {"bfcl_live_simple"}


def _rec(gid, last, label="tool_call"):
    return {"id": f"{gid}-{last}", "label": label, "messages": [{"role": "user", "content": last}],
            "meta": {"source": "s", "trajectory_id": gid, "group": gid}}


def test_near_duplicates_are_kept_in_one_split():
    recs = []
    for i in range(60):
        word = "abcdefghij"[i % 10] + "klmnopqrst"[i // 10]  # not digits: those are masked
        recs += [_rec(f"g{i}", f"unique request {word}"), _rec(f"g{i}", f"second step of {word}")]
    # digit-masked duplicates: g0~g1 (numbers differ only), g1~g2 (chain) -> one component of three
    recs += [_rec("g0", "Where is order A123?"), _rec("g1", "Where is order A98765?"), _rec("g1", "cancel 5"), _rec("g2", "cancel 7")]
    comp = build.near_duplicate_components(recs)
    assert comp["g0"] == comp["g1"] == comp["g2"] and len(set(comp.values())) == 58
    for seed in range(5):
        split = build.assign_splits(recs, [0.34, 0.33, 0.33], seed)
        assert split["g0"] == split["g1"] == split["g2"]
    # a text in more groups than max_groups is boilerplate: it joins nothing
    boiler = recs + [_rec(f"g{i}", "I have updated some more functions.") for i in range(10, 20)]
    assert len(set(build.near_duplicate_components(boiler, max_groups=4).values())) == 58
    assert len(set(build.near_duplicate_components(boiler, max_groups=0).values())) == 58 - 9


def test_no_near_duplicate_crosses_splits(default_records):
    counts = build.cross_split_duplicates(default_records, default_data().near_duplicate_max_groups)
    assert counts["dev"] == counts["test"] == 0


def test_default_ood_size_domains_and_labels(default_records):
    """#14's target: >= 400 points from >= 3 held-out domains, every label those domains hold."""
    ood = default_records["ood"]
    parts = Counter(p for r in ood for p in build.domain_parts(build.domain_of(r)) if p in default_data().ood_domains)
    assert len(ood) >= 400 and len(parts) >= 3
    assert {"ask_clarification", "BLOCKED", "final_answer", "retrieval", "tool_call", "repair", "file_read", "file_write"} <= {r["label"] for r in ood}


def test_nestful_is_refused_clearly():
    with pytest.raises(ValueError, match="nestful"):
        build.collect(cfg(nestful=5), seed=0)


# ---------------------------------------------------------------- verifier pairs
def test_verifier_pairs_have_both_classes_and_the_confusion_kinds(dd):
    recs = build.to_records(dd["train"])
    rows = build.make_verifier_pairs(recs, negatives_per_positive=3, seed=0)
    assert Counter(r["accept"] for r in rows)[1] == len(recs)
    kinds = Counter(r["kind"] for r in rows)
    # a wrong tool of the right type is right under the study's type-only judge (specact.judge), so it is a
    # negative only under the strict judge
    strict = Counter(r["kind"] for r in build.make_verifier_pairs(recs, negatives_per_positive=3, seed=0, judge="strict"))
    assert strict["confusion:wrong_tool"] > 0 and kinds["confusion:wrong_tool"] == 0
    for k in ("gold", "confusion:read_for_write", "confusion:write_for_read",
              "confusion:answer_for_clarification", "confusion:tool_call_for_retrieval", "confusion:retrieval_for_tool_call",
              "confusion:retry_for_repair", "confusion:answer_for_verifier", "confusion:verifier_for_answer",
              "confusion:answer_for_blocked", "confusion:act_for_blocked"):
        assert kinds[k] > 0, k
    by_id = {r["id"]: r for r in recs}
    for row in rows:
        rec = by_id[row["id"].split("::")[0]]
        assert json.loads(row["record"])["id"] == rec["id"]
        call = json.loads(row["call"]) if row["call"] else None
        assert row["label"] in LABELS and (call is not None) == (row["label"] in TOOL_LABELS)
        assert build.is_correct(rec, row["label"], call, match="exact") == bool(row["accept"]), row["kind"]
    assert rows == build.make_verifier_pairs(recs, negatives_per_positive=3, seed=0)


def test_retry_for_repair_repeats_the_failed_call(dd):
    recs = [r for r in build.to_records(dd["train"]) if r["label"] == "repair"]
    rows = [r for r in build.make_verifier_pairs(recs, 5, seed=0) if r["kind"] == "confusion:retry_for_repair"]
    assert rows
    for row in rows:
        rec = json.loads(row["record"])
        failed = [c["function"] for m in rec["messages"] if m["role"] == "assistant" for c in m.get("tool_calls") or []]
        assert json.loads(row["call"])["name"] in {f["name"] for f in failed}


def test_is_correct_rule():
    rec = {"label": "file_write", "target": {"name": "mkdir", "arguments": {"dir_name": "a"}}}
    assert build.is_correct(rec, "file_write", {"name": "mkdir", "arguments": {"dir_name": "b"}})
    assert not build.is_correct(rec, "file_write", {"name": "mkdir", "arguments": {"dir_name": "b"}}, match="exact")
    assert not build.is_correct(rec, "file_write", {"name": "touch", "arguments": {}})
    assert not build.is_correct(rec, "file_write", None)
    assert not build.is_correct(rec, "file_read", {"name": "mkdir", "arguments": {"dir_name": "a"}})
    text = {"label": "final_answer", "target": None}
    assert build.is_correct(text, "final_answer", None) and not build.is_correct(text, "BLOCKED", None)


def test_crossfit_pairs_and_dataset(dd):
    recs = build.to_records(dd["train"])[:20]
    preds = [{"id": r["id"], "label": r["label"], "call": gold_call(r)} for r in recs[:10]]
    preds += [{"id": r["id"], "label": "BLOCKED" if r["label"] != "BLOCKED" else "final_answer", "call": None} for r in recs[10:]]
    rows = build.crossfit_pairs(recs, preds)
    assert [r["accept"] for r in rows] == [1] * 10 + [0] * 10 and {r["kind"] for r in rows} == {"crossfit"}
    with pytest.raises(KeyError):
        build.crossfit_pairs(recs, [{"id": "nope", "label": "tool_call", "call": None}])
    vp = build.verifier_pairs_dataset({"train": recs, "dev": recs[:5]}, 1, seed=0, crossfit=preds)
    assert set(vp) == {"train", "dev"} and vp["train"].column_names == ["id", "record", "label", "call", "accept", "kind", "logp", "weight"]
    assert sum(vp["train"]["accept"]) == 20 + 10 and "crossfit" in set(vp["train"]["kind"])
    # the proposer's distribution rides on real proposals only: on synthetic pairs the proposed label's
    # probability in it is a shortcut (gold = top label) that real proposals (always the top label) lack
    lp = [0.0] * 9
    vp = build.verifier_pairs_dataset({"train": recs, "dev": recs[:5]}, 1, seed=0, crossfit=[dict(p, logp=lp) for p in preds])
    rows = vp["train"].to_pandas()
    assert (rows.loc[rows["kind"] == "crossfit", "logp"] != "").all() and (rows.loc[rows["kind"] != "crossfit", "logp"] == "").all()


# ---------------------------------------------------------------- views
class TinyTokenizer:
    """Just enough of a chat tokenizer for the prompt builder (no hub download)."""

    chat_template = "tiny"

    def apply_chat_template(self, messages, tools=None, add_generation_prompt=True, tokenize=False, **kw):
        text = "".join(f"<{m['role']}>{m.get('content') or ''}" for m in messages)
        if tools:
            text = "".join(t["function"]["name"] + ";" for t in tools) + text
        return text + ("<assistant>" if add_generation_prompt else "")

    def __call__(self, text, add_special_tokens=False):
        return {"input_ids": list(range(len(text.split())))}


def test_proposer_sft(dd):
    recs = build.to_records(dd["dev"])[:15]
    ds = build.proposer_sft(TinyTokenizer(), recs, PromptConfig(max_prompt_tokens=10_000))
    assert ds.column_names == ["id", "label", "prompt", "completion"]
    assert [c.split("\n")[0] for c in ds["completion"]] == [r["label"] for r in recs]


def test_datacard_plot_and_examples(dd):
    card = build.datacard(dd, tokenizer=TinyTokenizer(), prompt_cfg=PromptConfig(max_prompt_tokens=10_000))
    assert card["counts"]["n"].sum() == sum(len(dd[s]) for s in dd)
    assert list(card["label_by_split"].index) == list(LABELS)
    assert card["label_by_split"]["total"].sum() == sum(len(dd[s]) for s in dd)
    assert {"trajectories", "lengths", "source_by_label", "prompt_tokens"} <= set(card)
    assert json.loads(json.dumps(build.card_to_json(card)))["label_by_split"][0]["label"] == LABELS[0]
    import matplotlib

    matplotlib.use("Agg")
    ax = build.plot_label_distribution(dd)
    assert ax.get_ylabel() == "decision points"
    ex = build.render_examples(dd, per_label=1)
    assert len(ex) == len(LABELS) and all(e.startswith("[") for e in ex)


# ---------------------------------------------------------------- data card: shortcuts, duplicates, filtering
def test_shortcut_diagnostic_reports_each_family_and_finds_a_planted_shortcut(dd):
    sc = build.shortcut_diagnostic(dd)
    fam = sc["by_family"]
    assert set(zip(fam["split"], fam["family"])) == {(s, f) for s in ("test", "ood") for f in ("bfcl", "synthetic")}
    assert fam["accuracy"].between(0, 1).all() and (fam["n"] > 0).all()
    assert set(sc["by_source"]["source"]) == set(dd["test"]["source"]) | set(dd["ood"]["source"])
    # plant a giveaway: every test point's last message names its label -> the probe reads it off
    from datasets import DatasetDict

    def planted(split):
        recs = build.to_records(dd[split])
        for r in recs:
            r["messages"][-1]["content"] = f"marker{LABELS.index(r['label'])}x " + (r["messages"][-1].get("content") or "")
        return build.to_dataset(recs)

    sc2 = build.shortcut_diagnostic(DatasetDict({s: planted(s) for s in ("train", "test")}))["by_family"]
    assert (sc2["accuracy"] > 0.9).all() and set(sc2["split"]) == {"test"}


def test_near_duplicate_table_and_label_filtering(dd):
    dup = build.near_duplicate_table(dd, cfg().near_duplicate_max_groups)
    assert set(dup["split"]) == {"dev", "test", "ood"} and (dup[dup["split"] != "ood"]["duplicates"] == 0).all()
    collected = build.collect(cfg(), seed=0, cap=False)
    capped = build.cap_steps(collected, cfg().max_steps_per_trajectory, seed=0)
    table = build.label_filtering(collected, capped, dd)
    assert list(table.index) == list(LABELS) and (table["dropped"] == 0).all()
    assert (table["collected"] >= table["after_step_cap"]).all() and table["collected"].sum() > table["after_step_cap"].sum()
    assert build.label_filtering(collected, capped[:-5], dd)["dropped"].sum() == -5  # a mismatch shows


def test_smoke_profile_builds_every_split_in_seconds():
    import time

    from specact.config import load_params

    smoke = load_params(build.Path(__file__).parents[1] / "params" / "smoke.yaml").data
    t0 = time.perf_counter()
    recs = build.build_records(smoke, seed=0)
    assert time.perf_counter() - t0 < 10  # ~0.5 s here; generous for a loaded 2-core machine
    assert set(recs) == {"train", "dev", "test", "ood"} and all(recs[s] for s in recs)
    held = set(smoke.ood_domains)
    assert all(build.domain_parts(build.domain_of(r)) & held for r in recs["ood"])
    assert len({p for r in recs["ood"] for p in build.domain_parts(build.domain_of(r)) if p in held}) == len(held)


def test_card_functions_take_parsed_records_alike(dd):
    recs = build.split_records(dd)
    assert recs["test"] == build.to_records(dd["test"])
    assert build.near_duplicate_table(recs, 4).equals(build.near_duplicate_table(dd, 4))
    assert build.shortcut_diagnostic(recs)["by_family"].equals(build.shortcut_diagnostic(dd)["by_family"])
    collected = build.collect(cfg(), seed=0, cap=False)
    capped = build.cap_steps(collected, cfg().max_steps_per_trajectory, seed=0)
    assert build.label_filtering(collected, capped, recs).equals(build.label_filtering(collected, capped, dd))


# ---------------------------------------------------------------- data card: what notebook 01 shows and writes
def test_source_shares_by_hand():
    import pandas as pd

    counts = pd.DataFrame({"split": ["train", "train", "train", "test"], "source": ["a", "b", "a", "a"],
                           "label": ["x", "x", "y", "x"], "n": [2, 1, 1, 2]})
    shares = build.source_shares(counts)
    assert shares.to_dict() == {"test": {"a": 100.0, "b": 0.0}, "train": {"a": 75.0, "b": 25.0}}


def test_ood_label_counts(dd):
    table = build.ood_label_counts(dd)
    assert table.to_numpy().sum() == len(dd["ood"]) and set(table.index) == set(dd["ood"]["domain"])
    assert set(table.columns) == set(dd["ood"]["label"])
    assert build.ood_label_counts({"train": dd["train"]}) == "no ood split"


def test_pair_kind_counts_and_split_sizes(dd):
    from datasets import Dataset

    pairs = Dataset.from_dict({"kind": ["gold", "wrong_tool", "gold"], "accept": [1, 0, 1], "text": ["a", "b", "c"]})
    assert build.pair_kind_counts(pairs).to_dict(orient="records") == [{"kind": "gold", "accept": 1, "n": 2},
                                                                      {"kind": "wrong_tool", "accept": 0, "n": 1}]
    assert build.split_sizes(dd) == {s: len(dd[s]) for s in ("train", "dev", "test", "ood")}


def test_collect_label_filtering_is_label_filtering_of_the_config(dd):
    collected = build.collect(cfg(), seed=0, cap=False)
    capped = build.cap_steps(collected, cfg().max_steps_per_trajectory, seed=0)
    assert build.collect_label_filtering(cfg(), 0, dd).equals(build.label_filtering(collected, capped, dd))


def test_card_document_holds_every_table_as_records():
    import pandas as pd

    from specact.jsonable import to_jsonable

    recs = {"train": [{"label": "tool_call"}] * 3, "test": [{"label": "answer"}]}
    card = {"counts": pd.DataFrame({"split": ["train"], "source": ["a"], "label": ["tool_call"], "n": [3]})}
    shortcut = {"by_family": pd.DataFrame({"split": ["test"], "family": ["bfcl"], "accuracy": [0.5]})}
    duplicates = pd.DataFrame({"split": ["test"], "family": ["bfcl"], "n": [1], "duplicates": [0], "boilerplate": [0]})
    filtering = pd.DataFrame({"collected": [4]}, index=pd.Index(["tool_call"], name="label"))
    doc = build.card_document(recs, card, shortcut, duplicates, filtering, {"train": [0, 1], "dev": [0]})
    assert json.loads(json.dumps(to_jsonable(doc))) == {
        "counts": [{"split": "train", "source": "a", "label": "tool_call", "n": 3}],
        "shortcut_by_family": [{"split": "test", "family": "bfcl", "accuracy": 0.5}],
        "near_duplicates": [{"split": "test", "family": "bfcl", "n": 1, "duplicates": 0, "boilerplate": 0}],
        "label_filtering": [{"label": "tool_call", "collected": 4}],
        "sizes": {"train": 3, "test": 1}, "verifier_pairs": {"train": 2, "dev": 1}}
