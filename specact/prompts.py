"""The one prompt builder: training, verification and evaluation all render through here.

v2 trained its proposer on ``"Action: <type>\\n<reason>"`` text and evaluated it on chat
messages; the mismatch cost most of its accuracy. Here a decision point becomes

* a **prompt**: the trajectory in the model's own chat template, tools passed as JSON
  schemas, with the generation prompt appended (``render_prompt``), and
* a **completion**: the action, its label on the first line and, for tool-using actions,
  the call as one line of JSON (``format_action``).

Training concatenates ``prompt_ids + completion_ids (+ eos)``; label scoring prefills
``prompt_ids`` and scores each label's ``completion`` tokens; the verifier reads
``prompt + completion`` of a proposed action. The same strings, byte for byte.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections import OrderedDict
from dataclasses import astuple, dataclass
from typing import Any

from specact.actions import LABELS, uses_tool
from specact.config import PromptConfig  # re-exported: the class lives with the other params sections

INSTRUCTION = (
    "You are the next-action policy of a tool-using agent. Given the conversation so far, "
    "reply with the agent's next action: its type on the first line, one of "
    + ", ".join(LABELS)
    + "; then, if the action calls a tool, the call as JSON on the second line: "
    '{"name": ..., "arguments": {...}}.'
)
SHORT_INSTRUCTION = "Next action type (" + ", ".join(LABELS) + '); a tool call as JSON on line 2.'
# Part of every prompt-cache key: texts rendered by an earlier builder are never handed out.
BUILDER = "priority-v1"  # same texts as before the token-count guesses: only the search got faster


def format_action(label: str, call: dict | None = None) -> str:
    """The completion text for an action. ``call`` is ``{"name", "arguments"}`` or None."""
    if label not in LABELS:
        raise ValueError(f"unknown label {label!r}; allowed: {list(LABELS)}")
    if call is not None and uses_tool(label) and call.get("name"):
        payload = {"name": call["name"], "arguments": call.get("arguments") or {}}
        return f"{label}\n{json.dumps(payload, sort_keys=True, ensure_ascii=False)}"
    return label


def parse_action(text: str) -> tuple[str | None, dict | None]:
    """Inverse of :func:`format_action`, tolerant of trailing text. Unknown label -> None."""
    lines = text.strip().split("\n", 1)
    label = lines[0].strip() if lines and lines[0].strip() in LABELS else None
    call = None
    if len(lines) > 1:
        body = lines[1].strip()
        try:
            obj, _ = json.JSONDecoder().raw_decode(body)
            if isinstance(obj, dict) and isinstance(obj.get("name"), str):
                args = obj.get("arguments")
                call = {"name": obj["name"], "arguments": args if isinstance(args, dict) else {}}
        except json.JSONDecodeError:
            call = None
    return label, call


def _compact_tool(tool: dict) -> dict:
    fn = tool["function"]
    params = fn.get("parameters") or {}
    props = {k: {"type": (v or {}).get("type", "string")} for k, v in (params.get("properties") or {}).items()}
    return {"type": "function", "function": {"name": fn["name"], "parameters": {"type": "object", "properties": props, "required": params.get("required", [])}}}


def _clip(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    half = limit // 2
    return text[:half] + f" …[{len(text) - limit} chars clipped]… " + text[-half:]


def _as_template_messages(messages: list[dict], cfg: PromptConfig) -> list[dict]:
    out = []
    for m in messages:
        m2: dict[str, Any] = {"role": m["role"], "content": _clip(m.get("content") or "", cfg.max_message_chars)}
        if m.get("tool_calls"):
            m2["tool_calls"] = [
                {"type": "function", "id": c.get("id"), "function": {"name": c["function"]["name"], "arguments": c["function"]["arguments"]}}
                for c in m["tool_calls"]
            ]
        if m["role"] == "tool" and m.get("name"):
            m2["name"] = m["name"]
        out.append(m2)
    return out


def _with_instruction(messages: list[dict], cfg: PromptConfig) -> list[dict]:
    if not cfg.instruction:
        return messages
    if messages and messages[0]["role"] == "system":
        return [{**messages[0], "content": INSTRUCTION + "\n\n" + messages[0]["content"]}] + messages[1:]
    return [{"role": "system", "content": INSTRUCTION}] + messages


def _textual(messages: list[dict], tools: list[dict]) -> list[dict]:
    """Fallback for chat templates without tool support: tools and calls as plain text."""
    out = []
    for m in messages:
        if m["role"] == "tool":
            out.append({"role": "user", "content": f"<tool_response name={m.get('name', '')}>\n{m['content']}\n</tool_response>"})
        elif m["role"] == "assistant" and m.get("tool_calls"):
            calls = "\n".join(
                "<tool_call>" + json.dumps({"name": c["function"]["name"], "arguments": c["function"]["arguments"]}, sort_keys=True) + "</tool_call>"
                for c in m["tool_calls"]
            )
            out.append({"role": "assistant", "content": ((m.get("content") or "") + "\n" + calls).strip()})
        else:
            out.append({"role": m["role"], "content": m["content"]})
    if tools:
        spec = "Tools:\n" + "\n".join(json.dumps(t, sort_keys=True) for t in tools)
        if out and out[0]["role"] == "system":
            out[0] = {"role": "system", "content": out[0]["content"] + "\n\n" + spec}
        else:
            out.insert(0, {"role": "system", "content": spec})
    # Merge consecutive same-role turns: strict templates (Gemma) demand alternation.
    merged: list[dict] = []
    for m in out:
        if merged and merged[-1]["role"] == m["role"] and m["role"] != "system":
            merged[-1] = {"role": m["role"], "content": merged[-1]["content"] + "\n\n" + m["content"]}
        else:
            merged.append(m)
    return merged


def _apply(tokenizer, messages: list[dict], tools: list[dict]) -> str:
    kwargs = dict(add_generation_prompt=True, tokenize=False, enable_thinking=False)
    native_ok = getattr(tokenizer, "chat_template", None) is not None
    if native_ok:
        try:
            text = tokenizer.apply_chat_template(messages, tools=tools or None, **kwargs)
            # A template that silently ignores tools would hide them from the model.
            if all(t["function"]["name"] in text for t in tools):
                return text
        except Exception:  # noqa: BLE001 - templates raise anything (jinja, TypeError) on roles they lack
            pass
        return tokenizer.apply_chat_template(_textual(messages, tools), **kwargs)
    raise ValueError(f"tokenizer {type(tokenizer).__name__} has no chat_template; specact needs one")


_CACHE: "OrderedDict[tuple, str]" = OrderedDict()
_CACHE_SIZE = 20000  # prompts of one run's dev/test + a training stage; ~1-4 KB each
UNLIMITED = 10**9  # a max_prompt_tokens meaning "no budget" (the BPE corpus renders whole trajectories)
_PARTS: dict[tuple, dict] = {}  # memo key -> which prompt parts survived whole (prompt_parts_survival)
_LOADED: dict[str, tuple[int, int]] = {}  # cache file -> (mtime_ns, size) when this process last read it


def _evict() -> None:
    while len(_CACHE) > _CACHE_SIZE:
        _PARTS.pop(_CACHE.popitem(last=False)[0], None)


def tokenizer_fingerprint(tokenizer) -> str:
    """A content hash of a tokenizer (vocabulary, merges, specials, chat template), computed once per
    object: the memo key, so that rendered prompts can be shared across processes and stages."""
    fp = getattr(tokenizer, "_specact_fp", None)
    if fp is None:
        backend = getattr(tokenizer, "backend_tokenizer", None)
        if backend is None and not hasattr(tokenizer, "get_vocab"):
            return f"object-{id(tokenizer)}"  # not a transformers tokenizer: memoise per object only
        body = backend.to_str() if backend is not None else repr(sorted(tokenizer.get_vocab().items()))
        extra = json.dumps([getattr(tokenizer, "chat_template", None), getattr(tokenizer, "all_special_tokens", None)], default=str)
        fp = hashlib.sha1((body + extra).encode()).hexdigest()[:16]
        try:
            tokenizer._specact_fp = fp
        except AttributeError:
            pass
    return fp


def _key(tokenizer, record: dict, cfg: PromptConfig) -> tuple:
    record_hash = hashlib.sha1(json.dumps(record, sort_keys=True, default=str).encode()).digest()
    return (tokenizer_fingerprint(tokenizer), astuple(cfg), record_hash, BUILDER)


def save_prompt_cache(path, tokenizer=None) -> int:
    """Write the memoised prompts (of ``tokenizer`` only, if given) to ``path``; returns how many.

    Stages run in separate kernels: the first one that renders a split saves it, the next ones
    load it (:func:`load_prompt_cache`) instead of rendering again (~5-7 ms a prompt on a CPU, the
    same prompts in every training stage). Entries are keyed by tokenizer content, prompt config
    and record content, so a cache can never hand out a prompt for other inputs.
    """
    import pickle
    from pathlib import Path

    fp = tokenizer_fingerprint(tokenizer) if tokenizer is not None else None
    entries = {k: (v, _PARTS.get(k)) for k, v in _CACHE.items() if (fp is None or k[0] == fp) and k[1][0] < UNLIMITED}  # [1][0]: max_prompt_tokens
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")  # one per writer: stages side by side may save at once
    tmp.write_bytes(pickle.dumps(entries, protocol=pickle.HIGHEST_PROTOCOL))
    tmp.replace(path)  # atomic: a reader never sees half a file
    return len(entries)


def load_prompt_cache(path) -> int:
    """Add the prompts saved by :func:`save_prompt_cache` to the memo; returns how many were read
    (0 for a missing file, or one this process already read and nobody rewrote since: every
    training call of a stage asks for the run's cache, and a GPU profile's is tens of MB)."""
    import pickle
    from pathlib import Path

    path = Path(path)
    if not path.is_file():
        return 0
    st = path.stat()
    if _LOADED.get(str(path)) == (st.st_mtime_ns, st.st_size):
        return 0
    entries = pickle.loads(path.read_bytes())
    _LOADED[str(path)] = (st.st_mtime_ns, st.st_size)
    for k, (text, survived) in entries.items():
        _CACHE.setdefault(k, text)
        if survived is not None:
            _PARTS.setdefault(k, survived)
    _evict()
    return len(entries)


def render_prompt(tokenizer, record: dict, cfg: PromptConfig | None = None) -> str:
    """The prompt text of a decision point in ``tokenizer``'s chat template, within budget.

    Memoised per (tokenizer content, config, record content): a stage renders the same record for
    scoring, call generation and the verifier, and rendering dominates CPU scoring time.
    """
    cfg = cfg or PromptConfig()
    key = _key(tokenizer, record, cfg)
    if key in _CACHE and key in _PARTS:
        _CACHE.move_to_end(key)
        return _CACHE[key]
    text, survived = _build(tokenizer, record, cfg)
    _CACHE[key] = text
    _PARTS[key] = survived
    _evict()
    return text


def _ordered_tools(record: dict, cfg: PromptConfig) -> list[dict]:
    """The record's tools (compact or full schemas), those the trajectory already called first
    (most recent use first): their signatures are the likeliest to matter for the next call."""
    tools = record.get("tools") or []
    if cfg.tool_schema == "compact":
        tools = [_compact_tool(t) for t in tools]
    elif cfg.tool_schema != "full":
        raise ValueError(f"tool_schema must be 'full' or 'compact', got {cfg.tool_schema!r}")
    used: list[str] = []
    for m in reversed(record["messages"]):
        for c in m.get("tool_calls") or []:
            if c["function"]["name"] not in used:
                used.append(c["function"]["name"])
    rank = {name: i for i, name in enumerate(used)}
    return sorted(tools, key=lambda t: rank.get(t["function"]["name"], len(rank)))  # stable: the rest keep their order


@dataclass(frozen=True)
class _Plan:
    """What one candidate prompt keeps: the builder searches over these, highest priority first."""

    instruction: str  # INSTRUCTION, SHORT_INSTRUCTION or "" (cfg.instruction false)
    n_names: int  # tool names listed (of the ordered tools)
    n_sigs: int  # tool signatures passed to the template (the first n of the ordered tools)
    user_chars: int | None  # the latest user turn clipped to this many characters (None: as is)
    last_chars: int | None  # the latest message, likewise
    n_history: int  # older messages kept, newest first (the original system prompt is the oldest)


class _Parts:
    """A decision point cut into the builder's parts; :meth:`render` assembles one :class:`_Plan`."""

    def __init__(self, record: dict, cfg: PromptConfig):
        self.tools = _ordered_tools(record, cfg)
        msgs = _as_template_messages(record["messages"], cfg)
        self.system = msgs[0]["content"] if msgs and msgs[0]["role"] == "system" else ""
        self.body = msgs[1:] if msgs and msgs[0]["role"] == "system" else msgs
        self.last = len(self.body) - 1
        users = [i for i, m in enumerate(self.body) if m["role"] == "user"]
        self.user = users[-1] if users else None
        pinned = {self.last, self.user}
        # History, newest first; None stands for the original system prompt (the oldest context).
        self.history: list = [i for i in reversed(range(len(self.body))) if i not in pinned]
        if self.system:
            self.history.append(None)

    def text_of(self, i) -> str:
        """The text a history item adds (content and calls; the system prompt for None), to estimate its tokens."""
        if i is None:
            return self.system
        m = self.body[i]
        return m["content"] + "".join(json.dumps(c["function"], default=str) for c in m.get("tool_calls") or [])

    def render(self, tokenizer, plan: _Plan) -> str:
        kept = set(self.history[:plan.n_history])
        keep = sorted(i for i in kept | {self.last, self.user} if i is not None and i >= 0)
        msgs = []
        for i in keep:
            m = dict(self.body[i])
            clip = plan.last_chars if i == self.last else plan.user_chars if i == self.user else None
            if clip is not None:
                m["content"] = _clip(m["content"], clip)
            msgs.append(m)
        names = [t["function"]["name"] for t in self.tools]
        unsigned = names[plan.n_sigs:plan.n_names] if plan.n_names > plan.n_sigs else []
        sys_parts = [plan.instruction] if plan.instruction else []
        if unsigned or plan.n_names < len(names):
            more = len(names) - max(plan.n_names, plan.n_sigs)
            sys_parts.append("Other tools: " + ", ".join(unsigned) + (f" (+{more} more)" if more > 0 else "") + ".")
        if None in kept:
            sys_parts.append(self.system)
        system = [{"role": "system", "content": "\n\n".join(sys_parts)}] if sys_parts else []
        return _apply(tokenizer, system + msgs, self.tools[:plan.n_sigs])

    def survival(self, plan: _Plan, cfg: PromptConfig) -> dict:
        """Which parts the plan keeps whole (after ``max_message_chars``; None: the record has no such part)."""
        n = len(self.tools)
        return {"instruction": plan.instruction == INSTRUCTION if cfg.instruction else None,
                "tool_names": max(plan.n_names, plan.n_sigs) >= n if n else None,
                "tool_signatures": plan.n_sigs >= n if n else None,
                "latest_user": plan.user_chars is None if self.user is not None else None,
                "latest_message": plan.last_chars is None if self.last >= 0 else None,
                "system": None in self.history[:plan.n_history] if self.system else None,
                "history": plan.n_history >= len(self.history) if self.history else None}


MIN_CLIP_CHARS = 48  # a latest turn is never clipped below this: it stays readable, never dropped


def _largest(fits, lo: int, hi: int, guess: int | None = None) -> int:
    """Largest k in [lo, hi] with fits(k), given fits(lo) and fits monotone decreasing.

    Starts from ``guess`` (an estimate from per-part token counts: then one or two renders usually
    settle it), else from hi; gallops away from the start (up if it fits, down if not) and bisects
    the last gap, so a small budget never renders a whole long conversation.
    """
    if lo >= hi:
        return lo
    first = hi if guess is None else min(max(guess, lo), hi)
    if first == lo:
        first = lo + 1
    if fits(first):
        good, bad, step = first, hi + 1, 1
        while good + step < bad and fits(good + step):
            good, step = good + step, step * 2
        bad = min(bad, good + step)
    else:
        good, bad, step = lo, first, 1
        while bad - step > good and not fits(bad - step):
            bad, step = bad - step, step * 2
        good = max(good, bad - step)
    while bad - good > 1:
        mid = (good + bad) // 2
        good, bad = (mid, bad) if fits(mid) else (good, mid)
    return good


def _guess(costs: list[int], room: int) -> int:
    """How many of the parts (in order) fit in ``room`` tokens by their own token counts."""
    total, k = 0, 0
    for c in costs:
        total += c
        if total > room:
            break
        k += 1
    return k


def _fit_core(parts: _Parts, plan: _Plan, measure, budget: int) -> _Plan:
    """Make the priority parts fit, clipping inside them from the lowest priority up: the short
    instruction, then the latest message and the latest user turn (middle-clipped, never below
    :data:`MIN_CLIP_CHARS`), then the list of tool names."""
    if measure(plan) > budget and plan.instruction:
        plan = dataclasses.replace(plan, instruction=SHORT_INSTRUCTION)
    for field, idx in (("last_chars", parts.last), ("user_chars", parts.user)):
        if idx is None or idx < 0 or (field == "user_chars" and idx == parts.last):
            continue
        length = len(parts.body[idx]["content"])
        for _ in range(12):
            over = measure(plan) - budget
            if over <= 0 or length <= MIN_CLIP_CHARS:
                break
            length = max(MIN_CLIP_CHARS, min(length, getattr(plan, field) or length) - 3 * over - 32)
            plan = dataclasses.replace(plan, **{field: length})
    if measure(plan) > budget:
        n = _largest(lambda k: measure(dataclasses.replace(plan, n_names=k)) <= budget, 0, plan.n_names)
        plan = dataclasses.replace(plan, n_names=n)
    return plan


def _build(tokenizer, record: dict, cfg: PromptConfig) -> tuple[str, dict]:
    """The prompt within ``cfg.max_prompt_tokens``, spent by priority, and which parts survived whole.

    Priority: the instruction (its short form if needed), the tool names, the latest user turn,
    the latest message (a tool output, often), then tool signatures (tools the trajectory used
    first), then older messages newest first, the original system prompt last.
    """
    parts = _Parts(record, cfg)
    full = _Plan(INSTRUCTION if cfg.instruction else "", len(parts.tools), len(parts.tools), None, None, len(parts.history))
    if cfg.max_prompt_tokens >= UNLIMITED:  # no budget: the whole conversation, no token count needed
        return parts.render(tokenizer, full), parts.survival(full, cfg)
    cache: dict = {}

    def measure(plan: _Plan) -> int:
        if plan not in cache:
            text = parts.render(tokenizer, plan)
            cache[plan] = (text, len(tokenizer(text, add_special_tokens=False)["input_ids"]))
        return cache[plan][1]

    budget = cfg.max_prompt_tokens
    chars = sum(len(m["content"]) for m in parts.body) + len(parts.system) + len(json.dumps(parts.tools))
    if chars <= 3 * budget and measure(full) <= budget:  # likely fits whole (>= 3 chars a token): one render
        return cache[full][0], parts.survival(full, cfg)
    plan = _fit_core(parts, dataclasses.replace(full, n_sigs=0, n_history=0), measure, budget)
    if measure(plan) > budget:
        # Even the clipped priority parts overflow: keep the latest tokens (the end decides the action).
        ids = tokenizer(cache[plan][0], add_special_tokens=False)["input_ids"]
        text = tokenizer.decode(ids[-budget:], skip_special_tokens=False)
        return text, {k: (v and False) if k not in ("latest_user", "latest_message") else v
                      for k, v in parts.survival(plan, cfg).items()}
    def counts(texts: list[str]) -> list[int]:  # one batched call: per-call overhead dominates short texts
        return [len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]] if texts else []

    room = budget - measure(plan)
    guess = _guess([c + 2 for c in counts([json.dumps(t) for t in parts.tools])], room)
    plan = dataclasses.replace(plan, n_sigs=_largest(lambda k: measure(dataclasses.replace(plan, n_sigs=k)) <= budget, 0, len(parts.tools), guess))
    if plan.n_sigs == len(parts.tools) and plan.n_names == len(parts.tools):
        room = budget - measure(plan)
        guess = _guess([c + 8 for c in counts([parts.text_of(i) for i in parts.history])], room)
        plan = dataclasses.replace(plan, n_history=_largest(lambda k: measure(dataclasses.replace(plan, n_history=k)) <= budget, 0, len(parts.history), guess))
    return cache[plan][0] if plan in cache else parts.render(tokenizer, plan), parts.survival(plan, cfg)


def prompt_parts_survival(tokenizer, records: list[dict], cfg: PromptConfig | None = None):
    """Per source (and overall): the share of prompts in which each part survives whole, and n.

    A part counts where the record has it (a record without tools says nothing about tool names).
    """
    import pandas as pd

    cfg = cfg or PromptConfig()
    rows = []
    for rec in records:
        render_prompt(tokenizer, rec, cfg)
        rows.append({"source": rec.get("meta", {}).get("source", "?"), **_PARTS[_key(tokenizer, rec, cfg)]})
    df = pd.DataFrame(rows)
    if df.empty:
        return df
    shares = pd.concat([df, df.assign(source="all")]).groupby("source").agg(lambda col: col.dropna().astype(float).mean())
    return shares.assign(n=pd.concat([df, df.assign(source="all")]).groupby("source").size())


def prompt_ids(tokenizer, record: dict, cfg: PromptConfig | None = None) -> list[int]:
    """Token ids of :func:`render_prompt` (the exact ids training and scoring both use)."""
    return tokenizer(render_prompt(tokenizer, record, cfg), add_special_tokens=False)["input_ids"]


def completion_ids(tokenizer, label: str, call: dict | None = None) -> list[int]:
    return tokenizer(format_action(label, call), add_special_tokens=False)["input_ids"]


def gold_call(record: dict) -> dict | None:
    """The gold tool call of a record, or None for text actions."""
    t = record.get("target")
    if uses_tool(record["label"]) and isinstance(t, dict) and t.get("name"):
        return {"name": t["name"], "arguments": t.get("arguments") or {}}
    return None


def sft_example(tokenizer, record: dict, cfg: PromptConfig | None = None) -> dict:
    """A prompt-completion pair for trl's SFTTrainer (plain text: the template is already applied)."""
    return {"prompt": render_prompt(tokenizer, record, cfg), "completion": format_action(record["label"], gold_call(record))}


def proposer_summary(logp, k: int = 3) -> str:
    """The proposer's label distribution in a few tokens: its top-``k`` labels with probabilities."""
    import numpy as np

    z = np.asarray(logp, dtype=float)
    p = np.exp(z - z.max())
    p /= p.sum()
    top = np.argsort(-p, kind="stable")[:k]
    return "[proposer: " + ", ".join(f"{LABELS[j]} {p[j]:.2f}" for j in top) + "]\n"


def verifier_text(tokenizer, record: dict, label: str, call: dict | None, cfg: PromptConfig | None = None,
                  logp=None) -> str:
    """What the verifier reads: the proposer's prompt, then (given the proposer's nine label
    log-probabilities ``logp``) its top-3 labels with probabilities, then the proposed action:
    the distribution tells the verifier how sure the proposer was, which alone ranks proposals well."""
    return render_prompt(tokenizer, record, cfg) + (proposer_summary(logp) if logp is not None else "") + format_action(label, call)
