"""Stateful synthetic agent trajectories for the action types BFCL lacks.

BFCL's gold has no failing call, no check and no refusal on policy grounds, so ``verifier``
and ``repair`` never occur there and ``BLOCKED`` / ``ask_clarification`` only in one form.
This generator plays whole trajectories in five domains (``specact.data.domains``: coding,
support, calendar, data, devops) whose steps follow from state, not from a keyword:

* a write is (mostly) followed by a check; a check of the agent's own work that fails opens a
  *failure*, and the call that corrects it is ``repair`` (spec precedence over the tool's own
  kind), even if an investigating read or a user answer comes in between; then a passing check
  and a reply;
* a vague or under-specified request -> ``ask_clarification`` -> the user answers -> the action;
  the same request with the detail present goes straight to the action;
* a failing *reproduction* of a pre-existing bug opens no failure: the first fix is a plain
  ``file_write`` (the agent corrects no action of its own);
* a request against the domain's stated policy, unsafe, or needing a tool the agent lacks
  -> ``BLOCKED``; the same verbs inside policy -> the action.

Labels are never written by hand in the domain code: :meth:`Trajectory.call` derives them from
the tool's kind (:func:`tool_label`) and whether the call fixes an open failure, through
``specact.actions.resolve`` (the spec precedence). Text replies name their label.

Deterministic given ``seed``: trajectory ``i`` uses its own ``random.Random(f"...{seed}-{i}")``,
so a trajectory does not depend on how many others are generated (no global random state).
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from typing import Callable

from specact.actions import resolve
from specact.records import validate_record

TEXT_LABELS = ("final_answer", "ask_clarification", "BLOCKED")
# Commands that check work (tests, linters, type checkers, validators): run_command -> verifier.
CHECK_COMMANDS = ("pytest", "python -m pytest", "ruff", "flake8", "mypy", "pyright", "black --check",
                  "npm test", "make test", "tox", "python -m unittest", "terraform validate")


def tool(name: str, description: str, params: dict, required: list | None = None) -> dict:
    """A JSON-schema tool spec. ``params``: name -> (json type, description[, extra schema])."""
    props = {}
    for p, spec in params.items():
        typ, desc, *extra = spec
        props[p] = {"type": typ, "description": desc, **(extra[0] if extra else {})}
    return {"type": "function", "function": {"name": name, "description": description,
            "parameters": {"type": "object", "properties": props, "required": list(required or [])}}}


# Tool name -> label of a plain call (no open failure). Filled by the domain modules through
# :func:`register`; the same name must mean the same kind in every domain.
_KINDS: dict[str, str | Callable[[dict], str]] = {}


def register(kinds: dict) -> None:
    for name, kind in kinds.items():
        if name in _KINDS and _KINDS[name] != kind:
            raise ValueError(f"synthetic tool {name!r} registered with two kinds")
        _KINDS[name] = kind


def _command_kind(args: dict) -> str:
    cmd = str(args.get("command", "")).strip()
    return "verifier" if cmd.startswith(CHECK_COMMANDS) else "tool_call"


register({"run_command": _command_kind})


def tool_label(name: str, arguments: dict | None = None) -> str | None:
    """The label of a call to a synthetic tool when it fixes nothing; None if unknown."""
    _domains()
    kind = _KINDS.get(name)
    return kind(arguments or {}) if callable(kind) else kind


class Trajectory:
    """One conversation being played; every assistant step becomes a decision point."""

    def __init__(self, domain: str, index: int, path: str, system: str, tools: list[dict]):
        self.tid = f"synthetic_{domain}_{index:05d}"
        self.meta = {"source": f"synthetic/{domain}", "trajectory_id": self.tid, "group": self.tid, "domain": f"synthetic:{domain}",
                     "path": path}
        self.messages: list[dict] = [{"role": "system", "content": system}]
        self.tools = tools
        self.records: list[dict] = []
        self.open_failure = False  # the agent's own last action/check failed and is not yet corrected

    def user(self, text: str) -> None:
        self.messages.append({"role": "user", "content": text})

    def _emit(self, label: str, target: dict) -> None:
        step = len(self.records)
        rec = {"id": f"syn-{self.tid.removeprefix('synthetic_')}-s{step}", "messages": list(self.messages),
               "tools": self.tools, "label": label, "target": target, "meta": {**self.meta, "step": step}}
        self.records.append(validate_record(rec))

    def call(self, name: str, arguments: dict, observation, *, fails: bool = False, fix: bool = False) -> str:
        """Emit a tool-call step and append its observation.

        ``fix``: this call corrects the open failure (-> ``repair``). ``fails``: the observation
        reports that the agent's own work failed (an error, a failed check of its edit), which
        opens a failure. A failing check of pre-existing code passes ``fails=False``.
        """
        kind = tool_label(name, arguments)
        if kind is None:
            raise KeyError(f"synthetic tool {name!r} has no registered kind")
        if fix and not self.open_failure:
            raise ValueError(f"{self.tid}: {name} marked as a fix but no failure is open")
        label = resolve({kind, "repair"} if fix else {kind})
        self._emit(label, {"name": name, "arguments": arguments})
        cid = f"call_{len(self.records)}"
        content = observation if isinstance(observation, str) else json.dumps(observation, ensure_ascii=False)
        self.messages.append({"role": "assistant", "content": None,
                              "tool_calls": [{"type": "function", "id": cid, "function": {"name": name, "arguments": arguments}}]})
        self.messages.append({"role": "tool", "tool_call_id": cid, "name": name, "content": content})
        if fix:
            self.open_failure = False
        if fails:
            self.open_failure = True
        return label

    def say(self, label: str, text: str) -> None:
        """Emit a text reply step (final answer, clarification question or refusal)."""
        if label not in TEXT_LABELS:
            raise ValueError(f"say() takes a text label {TEXT_LABELS}, got {label!r}")
        self._emit(label, {"text": text})
        self.messages.append({"role": "assistant", "content": text})


@dataclass
class Path:
    """One way a domain's trajectory can go: ``run(t, rng)`` plays it; ``expect`` is a regex
    over the space-joined label sequence (each label followed by a space) the tests check."""

    run: Callable[[Trajectory, random.Random], None]
    weight: float
    expect: str


@dataclass
class Domain:
    name: str
    systems: list[str]
    tools: list[dict]
    paths: dict[str, Path]


def _domains() -> dict[str, Domain]:
    from specact.data.domains import DOMAINS  # late: the domain modules import this one

    return DOMAINS


def play(domain: str, path: str, rng: random.Random, index: int = 0) -> list[dict]:
    """Play one trajectory of ``domain`` along ``path``; its decision points."""
    d = _domains()[domain]
    t = Trajectory(domain, index, path, rng.choice(d.systems), d.tools)
    d.paths[path].run(t, rng)
    return t.records


def generate_path(domain: str, path: str, seed: int = 0, index: int = 0) -> list[dict]:
    return play(domain, path, random.Random(f"synthetic-{domain}-{path}-{seed}-{index}"), index)


def generate(n_trajectories: int, seed: int = 0) -> list[dict]:
    """``n_trajectories`` trajectories spread round-robin over the domains; their decision points."""
    domains = _domains()
    names = sorted(domains)
    out: list[dict] = []
    for i in range(n_trajectories):
        rng = random.Random(f"synthetic-{seed}-{i}")
        d = domains[names[i % len(names)]]
        paths = sorted(d.paths)
        path = rng.choices(paths, weights=[d.paths[p].weight for p in paths])[0]
        out.extend(play(d.name, path, rng, index=i))
    return out
