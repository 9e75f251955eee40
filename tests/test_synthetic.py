import json
import re
from collections import defaultdict

import pytest

from specact.actions import LABELS, TOOL_LABELS
from specact.data import synthetic
from specact.data.domains import DOMAINS
from specact.data.pairs import observation_failed
from specact.records import validate_record

PATHS = [(d, p) for d in sorted(DOMAINS) for p in sorted(DOMAINS[d].paths)]


@pytest.mark.parametrize("domain, path", PATHS)
def test_each_path_yields_the_labels_the_spec_assigns(domain, path):
    expect = DOMAINS[domain].paths[path].expect
    for seed in range(12):  # paths branch at random: cover the branches
        recs = synthetic.generate_path(domain, path, seed=seed)
        seq = "".join(r["label"] + " " for r in recs)
        assert re.match(expect, seq), f"{domain}/{path} seed {seed}: {seq}"
        for r in recs:
            assert r["meta"]["path"] == path and r["meta"]["source"] == f"synthetic/{domain}"


def test_tool_steps_follow_the_tool_kind_or_repair_an_open_failure():
    recs = synthetic.generate(150, seed=3)
    assert {r["label"] for r in recs} == set(LABELS)
    for r in recs:
        assert validate_record(r) == r
        if r["label"] in TOOL_LABELS:
            plain = synthetic.tool_label(r["target"]["name"], r["target"]["arguments"])
            assert plain is not None
            if r["label"] == "repair":
                # something the agent did earlier in this trajectory failed
                assert any(m["role"] == "tool" and observation_failed(m["content"]) for m in r["messages"])
            else:
                assert r["label"] == plain, (r["id"], r["target"])
        else:
            assert isinstance(r["target"]["text"], str) and r["target"]["text"]
        assert r["messages"][-1]["role"] in ("user", "tool")


def test_no_check_reruns_right_after_a_failure_without_a_fix():
    for r in synthetic.generate(200, seed=5):
        if r["label"] == "verifier" and r["messages"][-1]["role"] == "tool" and observation_failed(r["messages"][-1]["content"]):
            pytest.fail(f"{r['id']}: a check right after a failure without a repair")


def test_same_tool_gets_different_labels_by_state():
    by_tool = defaultdict(set)
    for r in synthetic.generate(300, seed=0):
        if r["target"] and "name" in r["target"]:
            by_tool[r["target"]["name"]].add(r["label"])
    assert {"file_write", "repair"} <= by_tool["edit_file"]
    assert {"tool_call", "verifier", "repair"} <= by_tool["run_command"]
    assert {"retrieval", "repair"} <= by_tool["get_order"]
    assert {"tool_call", "repair"} <= by_tool["create_event"]


def test_same_request_family_different_first_action():
    # "Cancel order X": confirmation first when it is cancellable, refusal once shipped.
    firsts = defaultdict(set)
    for seed in range(30):
        recs = synthetic.generate_path("support", "cancel", seed=seed)
        firsts[recs[1]["label"]].add(seed)
    assert set(firsts) == {"ask_clarification", "BLOCKED"}
    # "Is it healthy?" is a lookup before any change, a check of own work after scaling.
    status = synthetic.generate_path("devops", "status", seed=0)
    assert status[0]["label"] == "retrieval"
    checks = [r for s in range(20) for r in synthetic.generate_path("devops", "scale", seed=s)
              if r["messages"][-1]["role"] == "user" and "?" in r["messages"][-1]["content"]]
    assert checks and {r["label"] for r in checks} == {"verifier"}


def test_deterministic_and_prefix_stable():
    a = synthetic.generate(40, seed=7)
    assert json.dumps(a, sort_keys=True) == json.dumps(synthetic.generate(40, seed=7), sort_keys=True)
    assert a != synthetic.generate(40, seed=8)
    short = synthetic.generate(20, seed=7)
    assert short == a[: len(short)]


def test_every_domain_is_used_and_tools_are_json_schema():
    recs = synthetic.generate(50, seed=0)
    assert {r["meta"]["source"] for r in recs} == {f"synthetic/{d}" for d in DOMAINS}
    for d in DOMAINS.values():
        for t in d.tools:
            assert t["type"] == "function" and t["function"]["parameters"]["type"] == "object"
            assert synthetic.tool_label(t["function"]["name"], {}) in LABELS


def test_fix_without_failure_is_rejected():
    t = synthetic.Trajectory("coding", 0, "x", "sys", [])
    t.user("hi")
    with pytest.raises(ValueError):
        t.call("edit_file", {"path": "a", "old_text": "b", "new_text": "c"}, {"ok": True}, fix=True)


# ---------------------------------------------------------------- surface variety (#14: labels must not ride on keys)
def test_failures_and_successes_each_come_in_several_shapes_and_keep_their_meaning():
    rng = __import__("random").Random(0)
    fail = {"error": "order A1 not found"}
    shapes = {synthetic.render_observation(fail, rng) for _ in range(200)}
    assert len(shapes) >= 5 and all(observation_failed(s) for s in shapes)
    assert any('"ok": false' in s for s in shapes) and any(s.startswith("Error") for s in shapes)
    ok = {"ok": True, "path": "src/a.py"}
    shapes = {synthetic.render_observation(ok, rng) for _ in range(200)}
    assert len(shapes) >= 5 and not any(observation_failed(s) for s in shapes)
    assert any('"errors": []' in s for s in shapes) and any("ok" not in s for s in shapes)  # 'error' in a success, no 'ok'
    rows = {"rows": [{"month": 1, "amount": 10}, {"month": 2, "amount": 12}], "count": 2}
    assert any("| month | amount |" in synthetic.render_observation(rows, rng) for _ in range(100))
    failed_check = {"exit_code": 1, "output": "1 failed"}
    assert all(observation_failed(synthetic.render_observation(failed_check, rng)) for _ in range(50))
    assert synthetic.render_observation(fail, None) == json.dumps(fail)  # no rng: as written


def test_no_observation_key_names_the_next_label():
    """The keys the audit found (ok true -> verifier, error -> repair) are followed by several labels."""
    recs = synthetic.generate(400, seed=0)
    after = defaultdict(set)
    for r in recs:
        last = r["messages"][-1]
        if last["role"] == "tool":
            for token in ('"ok": true', "error", '"status"'):
                if token in last["content"]:
                    after[token].add(r["label"])
    assert all(len(after[t]) >= 3 for t in ('"ok": true', "error", '"status"')), dict(after)


def test_user_turns_are_varied():
    recs = synthetic.generate(400, seed=0)
    firsts = {r["meta"]["trajectory_id"]: next(m["content"] for m in r["messages"] if m["role"] == "user") for r in recs
              if any(m["role"] == "user" for m in r["messages"])}
    assert len(set(firsts.values())) > 0.9 * len(firsts)  # the audit found 312 distinct openings for 400 trajectories
    rng = __import__("random").Random(1)
    noisy = {synthetic.add_noise("Cancel order A12345 please.", rng) for _ in range(100)}
    assert len(noisy) > 10 and all("A12345" in n for n in noisy)  # identifiers survive the noise


def test_interjections_name_no_label():
    recs = synthetic.generate(400, seed=0)
    after = [r["label"] for r in recs if r["messages"][-1]["role"] == "user" and r["messages"][-1]["content"] in synthetic.INTERJECTIONS]
    assert len(after) > 50 and len(set(after)) >= 5  # checks, repairs, answers, more calls ... all follow the same words
    assert not any(i.endswith("?") for i in synthetic.INTERJECTIONS)
