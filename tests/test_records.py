import json

import pytest

from specact.records import RecordError, read_jsonl, validate_record, write_jsonl


def good():
    return {
        "id": "x-1",
        "messages": [
            {"role": "user", "content": "Move a.txt into tmp."},
            {"role": "assistant", "content": None, "tool_calls": [{"type": "function", "id": "c1", "function": {"name": "ls", "arguments": "{\"a\": false}"}}]},
            {"role": "tool", "tool_call_id": "c1", "name": "ls", "content": "{\"current_directory_content\": [\"a.txt\"]}"},
        ],
        "tools": [{"type": "function", "function": {"name": "mkdir", "parameters": {"type": "object", "properties": {}}}}],
        "label": "file_write",
        "target": {"name": "mkdir", "arguments": "{\"dir_name\": \"tmp\"}"},
        "meta": {"source": "test", "trajectory_id": "t1", "step": 1},
    }


def test_valid_record_parses_string_arguments():
    rec = validate_record(good())
    assert rec["messages"][1]["tool_calls"][0]["function"]["arguments"] == {"a": False}
    assert rec["target"]["arguments"] == {"dir_name": "tmp"}


@pytest.mark.parametrize(
    "mutate, field",
    [
        (lambda r: r.update(label="jump"), "label"),
        (lambda r: r["meta"].pop("trajectory_id"), "meta.trajectory_id"),
        (lambda r: r["messages"][0].update(role="robot"), "messages[0].role"),
        (lambda r: r["messages"][2].update(content=None), "messages[2].content"),
        (lambda r: r.update(target={"name": "mkdir", "arguments": "{not json"}), "target.arguments"),
        (lambda r: r.pop("messages"), "messages"),
    ],
)
def test_malformed_record_names_the_field(mutate, field):
    rec = good()
    mutate(rec)
    with pytest.raises(RecordError) as err:
        validate_record(rec)
    assert err.value.field == field


def test_malformed_line_names_file_line_and_field(tmp_path):
    bad = good()
    bad["label"] = "teleport"
    path = tmp_path / "user.jsonl"
    path.write_text(json.dumps(good()) + "\n\n" + json.dumps(bad) + "\n")
    with pytest.raises(RecordError) as err:
        read_jsonl(path)
    msg = str(err.value)
    assert f"{path}:3" in msg and "'label'" in msg and "teleport" in msg


def test_invalid_json_line(tmp_path):
    path = tmp_path / "broken.jsonl"
    path.write_text(json.dumps(good()) + "\n{oops\n")
    with pytest.raises(RecordError, match=r"broken.jsonl:2: field '<line>'"):
        read_jsonl(path)


def test_roundtrip_is_byte_stable(tmp_path):
    recs = [validate_record(good())]
    a = write_jsonl(recs, tmp_path / "a.jsonl").read_bytes()
    b = write_jsonl(read_jsonl(tmp_path / "a.jsonl"), tmp_path / "b.jsonl").read_bytes()
    assert a == b
