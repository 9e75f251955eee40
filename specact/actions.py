"""The nine action types of ``shared/spec/ACTIONS.md`` and the rule that orders them.

The spec's precedence (``BLOCKED`` > ``ask_clarification`` > ``repair`` > ``verifier`` >
``file_write`` > ``file_read`` > ``retrieval`` > ``tool_call``) decides when several
labels fit one step; :func:`resolve` applies it.
"""

from __future__ import annotations

from typing import Iterable

# Order of the label vocabulary everywhere (score columns, confusion matrices, reports).
LABELS: tuple[str, ...] = (
    "tool_call",
    "retrieval",
    "file_read",
    "file_write",
    "repair",
    "verifier",
    "ask_clarification",
    "final_answer",
    "BLOCKED",
)
LABEL2ID = {label: i for i, label in enumerate(LABELS)}

# Spec precedence, highest first. final_answer is the fallback for a plain text reply.
PRECEDENCE: tuple[str, ...] = (
    "BLOCKED",
    "ask_clarification",
    "repair",
    "verifier",
    "file_write",
    "file_read",
    "retrieval",
    "tool_call",
)

# Actions whose next assistant turn is a tool call (the target carries name + arguments).
# repair and verifier are tool calls too (a corrective call, a check); BLOCKED,
# ask_clarification and final_answer are text replies.
TOOL_LABELS: frozenset[str] = frozenset(
    {"tool_call", "retrieval", "file_read", "file_write", "repair", "verifier"}
)


def resolve(candidates: Iterable[str]) -> str:
    """The single label the spec assigns when every label in ``candidates`` fits."""
    cands = set(candidates)
    unknown = cands - set(LABELS)
    if unknown:
        raise ValueError(f"unknown action label(s) {sorted(unknown)}; allowed: {list(LABELS)}")
    for label in PRECEDENCE:
        if label in cands:
            return label
    return "final_answer"


def uses_tool(label: str) -> bool:
    return label in TOOL_LABELS
