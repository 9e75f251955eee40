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
        self.rng: random.Random | None = None  # surface variety (observation formats, typing noise); None: as written

    def user(self, text: str) -> None:
        self.messages.append({"role": "user", "content": add_noise(text, self.rng)})

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
        content = render_observation(observation, self.rng)
        self.messages.append({"role": "assistant", "content": None,
                              "tool_calls": [{"type": "function", "id": cid, "function": {"name": name, "arguments": arguments}}]})
        self.messages.append({"role": "tool", "tool_call_id": cid, "name": name, "content": content})
        if self.rng is not None and self.rng.random() < INTERJECTION_RATE:
            self.messages.append({"role": "user", "content": self.rng.choice(INTERJECTIONS)})
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
    t.rng = random.Random(rng.random())  # its own stream (seeded from the path's), so rendering never shifts the branching
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


# ---------------------------------------------------------------- surface variety
# Real tools answer in many shapes. Rendering every observation in one of several formats, and
# every failure in one of several error shapes (each still recognised by
# ``specact.data.pairs.observation_failed``), keeps keys like ``ok: true`` / ``error`` /
# ``status: created`` from naming the next label; success shapes carry "errors": [] or
# "warnings" and failure shapes carry "ok" / "status" for the same reason.
_KEY_SYNONYMS = {"ok": ("success", "succeeded", "done"), "status": ("state", "result"), "id": ("uid", "ref"),
                 "created": ("created_at", "new"), "sent": ("delivered", "queued"), "message": ("msg", "detail"),
                 "count": ("n", "total_count"), "rows": ("records", "items"), "path": ("file", "location")}
_ERROR_CODES = ("400", "404", "409", "422", "500", "E_INVALID", "E_CONFLICT", "ERR_TIMEOUT")


def _is_failure(obs: dict) -> bool:
    """A failed check's keys, as ``specact.data.pairs.observation_failed`` reads them (a test keeps the two in step)."""
    return ("error" in obs or obs.get("exit_code") not in (None, 0) or obs.get("passed") is False
            or obs.get("valid") is False or bool(obs.get("conflicts")))


def _render_failure(obs: dict, rng: random.Random) -> str:
    """A ``{"error": msg}`` observation in one of several real error shapes."""
    msg = str(obs["error"])
    code = rng.choice(_ERROR_CODES)
    shapes = [lambda: json.dumps(obs, ensure_ascii=False),
              lambda: json.dumps({"ok": False, "error": msg}),
              lambda: json.dumps({"status": "failed", "error": {"code": code, "message": msg}}),
              lambda: json.dumps({"success": False, "error": msg, "request_id": f"req_{rng.randrange(16 ** 6):06x}"}),
              lambda: f"Error: {msg}",
              lambda: f"Error {code}: {msg}"]
    return rng.choice(shapes)()


def _lines(obj: dict) -> str:
    return "\n".join(f"{k}: {json.dumps(v, ensure_ascii=False) if isinstance(v, (dict, list)) else v}" for k, v in obj.items())


def _table(rows: list[dict]) -> str:
    cols = list(dict.fromkeys(k for r in rows for k in r))
    head = "| " + " | ".join(cols) + " |\n|" + "---|" * len(cols)
    return head + "".join("\n| " + " | ".join(str(r.get(c, "")) for c in cols) + " |" for r in rows)


def _render_success(obs: dict, rng: random.Random) -> str:
    renamed = {rng.choice(_KEY_SYNONYMS[k]) if k in _KEY_SYNONYMS and rng.random() < 0.5 else k: v for k, v in obs.items()}
    tables = [k for k, v in obs.items() if isinstance(v, list) and v and all(isinstance(x, dict) for x in v)]
    shapes = [lambda: json.dumps(obs, ensure_ascii=False),
              lambda: json.dumps(renamed, ensure_ascii=False),
              lambda: json.dumps({"data": obs, "errors": [], "request_id": f"req_{rng.randrange(16 ** 6):06x}"}, ensure_ascii=False),
              lambda: _lines(renamed),
              lambda: json.dumps({**renamed, "warnings": rng.choice([[], ["deprecated field ignored"], ["slow response"]])}, ensure_ascii=False),
              lambda: rng.choice(["200 OK\n", "OK\n", "done\n", "result:\n"]) + json.dumps(obs, ensure_ascii=False)]
    if tables:
        k = tables[0]
        shapes.append(lambda: _lines({kk: v for kk, v in renamed.items() if kk != k and not (isinstance(v, list) and v is obs[k])}) + "\n" + _table(obs[k]))
    return rng.choice(shapes)()


def render_observation(obs, rng: random.Random | None) -> str:
    """A tool's result as the text the agent sees: strings as given; a dict in one of several
    real formats (JSON, renamed keys, wrapped, ``key: value`` lines, a table), chosen by ``rng``;
    a failure stays a failure (:func:`specact.data.pairs.observation_failed`) in every shape."""
    if isinstance(obs, str) or rng is None or not isinstance(obs, dict):
        return obs if isinstance(obs, str) else json.dumps(obs, ensure_ascii=False)
    if "error" in obs and len(obs) == 1:
        return _render_failure(obs, rng)
    if _is_failure(obs):  # a failed check (exit_code / passed / valid / conflicts): keep its keys, vary the rest
        return json.dumps(obs, ensure_ascii=False) if rng.random() < 0.5 else json.dumps({**obs, "errors": [], "duration_s": round(rng.uniform(0.1, 9), 2)}, ensure_ascii=False)
    return _render_success(obs, rng)


# Users interject while an agent works; the next action is still whatever the task needs, so an
# interjection names no label (none ends in "?": a question would be a request of its own).
INTERJECTIONS = ("ok", "thanks, go on", "take your time", "sure", "ok, continue please", "np", "fine", "great, keep going",
                 "I'm here if you need anything", "alright")
INTERJECTION_RATE = 0.1
_GREETINGS = ("hi, ", "hey - ", "hello! ", "Hi team, ", "quick one: ", "", "", "")
_SIGN_OFFS = (" thanks", " thx!", " asap please", " ty", " cheers", "", "", "")


def _typo(word: str, rng: random.Random) -> str:
    if len(word) < 5 or not word.isalpha():
        return word
    i = rng.randrange(1, len(word) - 2)
    return word[:i] + word[i + 1] + word[i] + word[i + 2:]


def add_noise(text: str, rng: random.Random | None) -> str:
    """A user turn as people type it: sometimes a greeting or sign-off, lower case, a dropped
    final full stop, one swapped-letter typo. Identifiers are left alone (only alphabetic words of
    5+ letters get a typo) and a question mark stays."""
    if rng is None or rng.random() < 0.3:
        return text
    words = text.split(" ")
    if rng.random() < 0.3:
        k = rng.randrange(len(words))
        words[k] = _typo(words[k], rng)
    out = " ".join(words)
    if rng.random() < 0.3:
        out = out[:1].lower() + out[1:]
    if rng.random() < 0.3 and out.endswith("."):
        out = out[:-1]
    return rng.choice(_GREETINGS) + out + rng.choice(_SIGN_OFFS)
