"""Decision-point records in the JSONL format of ``shared/spec/ACTIONS.md``.

One record is a plain ``dict`` (what ``datasets`` and ``json`` both speak); this module
validates and normalises it. Anything that does not fit the spec raises
:class:`RecordError` naming the file, the line and the field -- never a silent skip.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable, Iterator

from specact.actions import LABELS

ROLES = ("system", "user", "assistant", "tool")


class RecordError(ValueError):
    """A record that does not follow the spec. ``str()`` reads ``file:line: field: problem``."""

    def __init__(self, problem: str, *, field: str, file: str | None = None, line: int | None = None):
        self.problem, self.field, self.file, self.line = problem, field, file, line
        where = f"{file or '<record>'}:{line}" if line is not None else (file or "<record>")
        super().__init__(f"{where}: field '{field}': {problem}")


def _parse_arguments(args: Any, field: str) -> dict:
    # The spec allows arguments as a JSON string; normalise to an object.
    if isinstance(args, str):
        try:
            args = json.loads(args) if args.strip() else {}
        except json.JSONDecodeError as e:
            raise RecordError(f"arguments string is not JSON ({e.msg})", field=field) from None
    if not isinstance(args, dict):
        raise RecordError(f"arguments must be an object, got {type(args).__name__}", field=field)
    return args


def _check_message(msg: Any, i: int) -> dict:
    f = f"messages[{i}]"
    if not isinstance(msg, dict):
        raise RecordError("must be an object", field=f)
    role = msg.get("role")
    if role not in ROLES:
        raise RecordError(f"role {role!r} is not one of {list(ROLES)}", field=f"{f}.role")
    out = dict(msg)
    content = msg.get("content")
    if role == "assistant":
        if content is not None and not isinstance(content, str):
            raise RecordError("must be a string or null", field=f"{f}.content")
        calls = msg.get("tool_calls") or []
        if not isinstance(calls, list):
            raise RecordError("must be a list", field=f"{f}.tool_calls")
        norm = []
        for j, call in enumerate(calls):
            cf = f"{f}.tool_calls[{j}]"
            fn = call.get("function") if isinstance(call, dict) else None
            if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
                raise RecordError("needs function.name", field=cf)
            try:
                args = _parse_arguments(fn.get("arguments", {}), f"{cf}.function.arguments")
            except RecordError as e:
                raise RecordError(e.problem, field=e.field) from None
            norm.append({"type": "function", "id": call.get("id"), "function": {"name": fn["name"], "arguments": args}})
        if content is None and not norm:
            raise RecordError("an assistant message needs content or tool_calls", field=f"{f}.content")
        out["content"] = content
        if norm:
            out["tool_calls"] = norm
        else:
            out.pop("tool_calls", None)
    else:
        if not isinstance(content, str):
            raise RecordError(f"must be a string for role {role}", field=f"{f}.content")
    return out


def validate_record(rec: Any) -> dict:
    """Check one record against the spec and return it normalised (arguments parsed)."""
    if not isinstance(rec, dict):
        raise RecordError("a record must be a JSON object", field="<root>")
    for key in ("id", "messages", "label", "meta"):
        if key not in rec:
            raise RecordError("is required", field=key)
    if not isinstance(rec["id"], str) or not rec["id"]:
        raise RecordError("must be a non-empty string", field="id")
    msgs = rec["messages"]
    if not isinstance(msgs, list) or not msgs:
        raise RecordError("must be a non-empty list", field="messages")
    messages = [_check_message(m, i) for i, m in enumerate(msgs)]
    tools = rec.get("tools") or []
    if not isinstance(tools, list):
        raise RecordError("must be a list", field="tools")
    for i, t in enumerate(tools):
        fn = t.get("function") if isinstance(t, dict) else None
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
            raise RecordError("needs function.name", field=f"tools[{i}]")
    label = rec["label"]
    if label not in LABELS:
        raise RecordError(f"{label!r} is not one of {list(LABELS)}", field="label")
    target = rec.get("target")
    if target is not None:
        if not isinstance(target, dict):
            raise RecordError("must be an object or null", field="target")
        if "name" in target:
            target = {**target, "arguments": _parse_arguments(target.get("arguments", {}), "target.arguments")}
        elif not isinstance(target.get("text"), str):
            raise RecordError("needs either name (+arguments) or text", field="target")
    meta = rec["meta"]
    if not isinstance(meta, dict):
        raise RecordError("must be an object", field="meta")
    for key in ("source", "trajectory_id"):
        if not isinstance(meta.get(key), str) or not meta.get(key):
            raise RecordError("is required (a non-empty string)", field=f"meta.{key}")
    return {"id": rec["id"], "messages": messages, "tools": tools, "label": label, "target": target, "meta": meta}


def read_jsonl(path: str | Path) -> list[dict]:
    """Read and validate every line of a decision-point JSONL file.

    Refused, naming file and line: bytes that are not UTF-8, a line that is not a valid record, an id seen
    on an earlier line; and a file with no record at all (empty, or blank lines only).
    """
    path = Path(path)
    records = list(iter_jsonl(path))
    if not records:
        raise RecordError("the file holds no decision point (empty, or blank lines only)", field="<file>", file=str(path))
    return records


def iter_jsonl(path: str | Path) -> Iterator[dict]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such decision-point file: {path}")
    seen: dict[str, int] = {}
    with path.open("rb") as fh:  # bytes, so a bad byte is reported at its line rather than as a bare UnicodeDecodeError
        for lineno, raw in enumerate(fh, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise RecordError(f"not UTF-8 (byte 0x{raw[e.start]:02x} at column {e.start + 1})", field="<line>",
                                  file=str(path), line=lineno) from None
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise RecordError(f"not valid JSON ({e.msg} at column {e.colno})", field="<line>", file=str(path), line=lineno) from None
            try:
                rec = validate_record(obj)
            except RecordError as e:
                raise RecordError(e.problem, field=e.field, file=str(path), line=lineno) from None
            if rec["id"] in seen:  # counted twice in every metric otherwise
                raise RecordError(f"duplicate id {rec['id']!r} (first on line {seen[rec['id']]})", field="id",
                                  file=str(path), line=lineno)
            seen[rec["id"]] = lineno
            yield rec


def write_jsonl(records: Iterable[dict], path: str | Path) -> Path:
    """Write records one per line, keys sorted, so equal data gives byte-identical files."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as fh:
        for rec in records:
            fh.write(json.dumps(rec, sort_keys=True, ensure_ascii=False) + "\n")
    return path
