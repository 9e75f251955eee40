import importlib
import json
from copy import deepcopy

import pytest

from specact.actions import LABELS
from specact.data import bfcl
from specact.records import validate_record


def entry(eid):
    return next(e for e in bfcl.load_entries(bfcl.category_of({"id": eid})) if e["id"] == eid)


def calls_and_outputs(records):
    """(name, arguments, tool output) in order, read off the last record's context."""
    msgs = records[-1]["messages"]
    calls = {c["id"]: c["function"] for m in msgs if m["role"] == "assistant" for c in m.get("tool_calls") or []}
    return [(calls[m["tool_call_id"]]["name"], calls[m["tool_call_id"]]["arguments"], m["content"]) for m in msgs if m["role"] == "tool"]


def test_every_method_of_the_eight_classes_has_a_label():
    envs = bfcl.make_envs({"id": "x", "involved_classes": list(bfcl.CLASSES), "initial_config": {}})
    methods = set(bfcl.method_table(envs))
    assert methods == set(bfcl.FUNCTION_LABELS)
    docs = {t["function"]["name"] for c in bfcl.CLASSES for t in bfcl._class_tools(c)}
    assert docs == methods
    assert set(bfcl.FUNCTION_LABELS.values()) <= set(LABELS)
    # spec decisions documented in the module docstring
    assert bfcl.FUNCTION_LABELS["cd"] == bfcl.FUNCTION_LABELS["sort"] == "file_read"
    assert bfcl.call_label("echo", {"content": "hi"}) == "tool_call"
    assert bfcl.call_label("echo", {"content": "hi", "file_name": "a.txt"}) == "file_write"


@pytest.mark.parametrize("eid", ["multi_turn_base_0", "multi_turn_long_context_3", "multi_turn_base_120",
                                 "multi_turn_miss_func_160", "multi_turn_base_55", "multi_turn_base_14", "multi_turn_long_context_150"])
def test_replayed_outputs_match_the_environment_called_directly(eid):
    e = entry(eid)
    recs = bfcl.replay(e)
    # An independent replay: import the classes ourselves, call the methods with the recorded arguments.
    envs = {}
    for cls in e["involved_classes"]:
        mod = importlib.import_module(f"bfcl_eval.eval_checker.multi_turn_eval.func_source_code.{bfcl.CLASSES[cls][0]}")
        inst = getattr(mod, cls)()
        if hasattr(inst, "_load_scenario"):
            inst._load_scenario(deepcopy(e["initial_config"].get(cls, {})), long_context="long_context" in eid)
        envs[cls] = inst
    seen = calls_and_outputs(recs)
    assert len(seen) == sum(len(t) for t in e["ground_truth"])
    for name, args, content in seen:
        inst = next(i for i in envs.values() if hasattr(i, name) and not name.startswith("_"))
        direct = getattr(inst, name)(**args)
        assert json.loads(content) == json.loads(json.dumps(direct, default=lambda o: float(o) if hasattr(o, "__float__") else str(o)))


def first_using(fn_name, category="base"):
    return next(e for e in bfcl.load_entries(category) if any(fn_name + "(" in c for turn in e["ground_truth"] for c in turn))


@pytest.mark.parametrize("fn_name", ["book_flight", "place_order", "send_message"])
def test_replay_is_deterministic_despite_env_randomness(fn_name):
    e = first_using(fn_name)  # these draw ids / timestamps from the env's seeded Random
    a = json.dumps(bfcl.replay(e), sort_keys=True)
    b = json.dumps(bfcl.replay(deepcopy(e)), sort_keys=True)
    assert a == b


def test_positional_arguments_are_named():
    recs = bfcl.replay(entry("multi_turn_base_0"))
    sort = [r for r in recs if (r["target"] or {}).get("name") == "sort"]
    assert sort and sort[0]["target"]["arguments"] == {"file_name": "final_report.pdf"}


def test_turn_structure_and_labels_per_category():
    for e in bfcl.load_entries("miss_param")[:20]:
        recs = bfcl.replay(e)
        for turn, gold in enumerate(e["ground_truth"]):
            turn_recs = [r for r in recs if r["meta"]["turn"] == turn]
            if gold:
                assert [r["label"] for r in turn_recs][-1] == "final_answer"
                assert len(turn_recs) == len(gold) + 1
            else:
                assert [r["label"] for r in turn_recs] == ["ask_clarification"]
    for e in bfcl.load_entries("miss_func")[:20]:
        recs = bfcl.replay(e)
        (release, names), = e["missed_function"].items()
        blocked = [r for r in recs if r["label"] == "BLOCKED"]
        assert blocked and blocked[0]["meta"]["turn"] == int(release) - 1
        for r in recs:
            tools = {t["function"]["name"] for t in r["tools"]}
            assert (r["meta"]["turn"] >= int(release)) == (set(names) <= tools)
            assert not tools & set(e.get("excluded_function") or [])


def test_records_validate_and_carry_meta():
    recs = bfcl.load_bfcl(["base", "long_context"], max_trajectories=3, seed=1)
    assert {r["meta"]["source"] for r in recs} == {"bfcl/multi_turn_base", "bfcl/multi_turn_long_context"}
    assert len({r["meta"]["trajectory_id"] for r in recs}) == 6
    for r in recs:
        assert validate_record(r) == r
        assert r["messages"][-1]["role"] in ("user", "tool")
    assert bfcl.load_bfcl(["base"], 3, seed=1) == bfcl.load_bfcl(["base"], 3, seed=1)
    assert bfcl.load_bfcl(["base"], 3, seed=1) != bfcl.load_bfcl(["base"], 3, seed=2)


def test_schemas_are_json_schema():
    text = json.dumps([t for c in bfcl.CLASSES for t in bfcl._class_tools(c)] + [r["tools"] for r in bfcl.load_irrelevance(40)])
    for bad in ('"type": "dict"', '"type": "float"', '"type": "tuple"', '"type": "any"', '"response"'):
        assert bad not in text


def test_irrelevance_is_blocked_and_seeded():
    a = bfcl.load_irrelevance(10, seed=0)
    assert len(a) == 10 and {r["label"] for r in a} == {"BLOCKED"}
    assert all(r["target"] is None and r["tools"] for r in a)
    assert a == bfcl.load_irrelevance(10, seed=0)
    assert [r["id"] for r in a] != [r["id"] for r in bfcl.load_irrelevance(10, seed=1)]
    assert bfcl.load_irrelevance(0) == []


def test_parse_call_rejects_non_literals():
    with pytest.raises(ValueError):
        bfcl.parse_call("os.system('rm -rf /')")
    with pytest.raises(ValueError):
        bfcl.parse_call("cat(file_name=open('x').read())")


# ---------------------------------------------------------------- single-turn sets
def single(set_name, eid):
    recs = bfcl.load_single_turn({set_name: 10_000})
    return next(r for r in recs if r["meta"]["trajectory_id"] == eid)


@pytest.mark.parametrize("set_name, eid, label, name", [
    # hand-checked against ACTIONS.md: a lookup of a record -> retrieval
    ("live_simple", "live_simple_0-0-0", "retrieval", "get_user_info"),
    # booking a ride acts -> tool_call
    ("live_simple", "live_simple_2-2-0", "tool_call", "uber.ride"),
    # changing an order acts (a dotted SGD-style name, nested arguments)
    ("live_multiple", "live_multiple_0-0-0", "tool_call", "ChaDri.change_drink"),
    # a calculation -> tool_call
    ("simple_python", "simple_python_0", "tool_call", "calculate_triangle_area"),
    # two calculations in one turn ("Find the sum ..." is still a calculation)
    ("parallel_multiple", "parallel_multiple_0", "tool_call", "math_toolkit.sum_of_multiples"),
    # listing workspace files -> file_read; creating a Dockerfile in a directory -> file_write
    ("live_multiple", "live_multiple_96-42-0", "file_read", "list_files"),
    ("live_parallel_multiple", "live_parallel_multiple_8-7-0", "file_write", "create_a_docker_file"),
])
def test_single_turn_mapping_yields_the_spec_label(set_name, eid, label, name):
    rec = single(set_name, eid)
    assert (rec["label"], rec["target"]["name"]) == (label, name)
    assert rec["meta"]["source"] == f"bfcl/{set_name}" and rec["meta"]["domain"] == f"bfcl_{set_name}"
    assert rec["messages"][0]["role"] == "system" and [m["role"] for m in rec["messages"][1:]] == ["user"]


def test_single_turn_arguments_take_the_first_accepted_value():
    rec = single("live_multiple", "live_multiple_0-0-0")
    assert rec["target"]["arguments"]["new_preferences"]["size"] == "large"  # nested: {"size": ["large"]} -> "large"
    assert single("simple_python", "simple_python_0")["target"]["arguments"] == {"base": 10, "height": 5, "unit": "units"}


def test_function_kind_rules():
    assert bfcl.function_kind("Hotels_4_SearchHotel") == "retrieval"
    assert bfcl.function_kind("Hotels_4_ReserveHotel") == "tool_call"
    assert bfcl.function_kind("museum_info", "Retrieves opening hours of a museum.") == "retrieval"
    assert bfcl.function_kind("segment", "Segments an image into regions.") == "tool_call"  # no known verb: acts
    # a dotted name's method decides before its namespace's words ("reserve", "requests" are nouns there)
    assert bfcl.function_kind("nature_reserve.find_nearby") == "retrieval"
    assert bfcl.function_kind("requests.get") == "retrieval"
    assert bfcl.function_kind("uber.eat.order") == "tool_call"


def test_live_irrelevance_is_blocked():
    recs = bfcl.load_single_turn({"live_irrelevance": 12}, seed=0)
    assert len(recs) == 12 and {r["label"] for r in recs} == {"BLOCKED"} and all(r["tools"] for r in recs)
    assert bfcl.load_single_turn({"live_irrelevance": 0}) == []
    with pytest.raises(ValueError, match="unknown BFCL single-turn"):
        bfcl.load_single_turn({"live_nowhere": 3})


def test_derived_clarification_loses_the_removed_value():
    recs = bfcl.load_single_turn({"live_simple": 258, "simple_python": 120}, seed=0)
    derived = bfcl.derive_clarifications(recs, 10_000)
    assert len(derived) > 100
    by_id = {r["id"]: r for r in recs}
    for d in derived:
        src = by_id[d["id"].replace("-clarify", "")]
        arg = d["meta"]["derived"].split("'")[1]
        value = str(src["target"]["arguments"][arg])
        assert value.lower() in src["messages"][-1]["content"].lower()
        assert value.lower() not in d["messages"][-1]["content"].lower()
        assert d["label"] == "ask_clarification" and d["target"] is None
        assert d["meta"]["group"] == src["meta"]["group"] and d["meta"]["domain"] == src["meta"]["domain"]
        assert d["messages"][:-1] == src["messages"][:-1]


def test_derived_clarification_by_hand():
    rec = single("live_simple", "live_simple_0-0-0")  # "... for the user with the ID 7890, who has black ..."
    d = bfcl.derive_clarification(rec)
    assert d["messages"][-1]["content"] == "Can you retrieve the details for the user, who has black as their special request?"
    assert bfcl._cut("I'm in the mood for a Comedy movie with Jim Carrey.", "Comedy") == "I'm in the mood for a movie with Jim Carrey."
    assert bfcl._cut("What is the weather like in Boston, MA today?", "Boston, MA") == "What is the weather like today?"
    assert bfcl._cut("Cancel order 55 and order 55 again", "55") is None  # not exactly once
