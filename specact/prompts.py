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

import hashlib
import json
from collections import OrderedDict
from dataclasses import astuple, dataclass
from typing import Any

from specact.actions import LABELS, uses_tool

INSTRUCTION = (
    "You are the next-action policy of a tool-using agent. Given the conversation so far, "
    "reply with the agent's next action: its type on the first line, one of "
    + ", ".join(LABELS)
    + "; then, if the action calls a tool, the call as JSON on the second line: "
    '{"name": ..., "arguments": {...}}.'
)


@dataclass
class PromptConfig:
    """How a decision point is turned into a prompt. Shared by every role and stage."""

    max_prompt_tokens: int = 1024
    """Token budget of a prompt. Older turns are dropped first (the next action depends
    mostly on the latest turns); then long message contents are clipped."""
    max_message_chars: int = 2000
    """A tool output or message longer than this is clipped in the middle (BFCL's long-context
    observations run to tens of thousands of characters)."""
    tool_schema: str = "full"
    """``full`` passes the JSON schemas as shipped; ``compact`` drops descriptions (CPU profiles:
    BFCL's file-system schemas alone are several thousand tokens)."""
    instruction: bool = True
    """Prepend :data:`INSTRUCTION` to the system message, so frozen zero-shot models know the format."""


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
_LOADED: dict[str, tuple[int, int]] = {}  # cache file -> (mtime_ns, size) when this process last read it


def _evict() -> None:
    while len(_CACHE) > _CACHE_SIZE:
        _CACHE.popitem(last=False)


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
    return (tokenizer_fingerprint(tokenizer), astuple(cfg), hashlib.sha1(json.dumps(record, sort_keys=True, default=str).encode()).digest())


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
    entries = {k: v for k, v in _CACHE.items() if (fp is None or k[0] == fp) and k[1][0] < UNLIMITED}  # [1][0]: max_prompt_tokens
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
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
    for k, v in entries.items():
        _CACHE.setdefault(k, v)
    _evict()
    return len(entries)


def render_prompt(tokenizer, record: dict, cfg: PromptConfig | None = None) -> str:
    """The prompt text of a decision point in ``tokenizer``'s chat template, within budget.

    Memoised per (tokenizer content, config, record content): a stage renders the same record for
    scoring, call generation and the verifier, and rendering dominates CPU scoring time.
    """
    cfg = cfg or PromptConfig()
    key = _key(tokenizer, record, cfg)
    if key in _CACHE:
        _CACHE.move_to_end(key)
        return _CACHE[key]
    text = _render(tokenizer, record, cfg)
    _CACHE[key] = text
    _evict()
    return text


def _render(tokenizer, record: dict, cfg: PromptConfig) -> str:
    tools = record.get("tools") or []
    if cfg.tool_schema == "compact":
        tools = [_compact_tool(t) for t in tools]
    elif cfg.tool_schema != "full":
        raise ValueError(f"tool_schema must be 'full' or 'compact', got {cfg.tool_schema!r}")
    msgs = _as_template_messages(record["messages"], cfg)
    system = [m for m in msgs[:1] if m["role"] == "system"]
    body = msgs[len(system):]
    # Cut points: drop whole leading turns so the kept part starts at a user message when possible.
    cuts = [0] + [i for i in range(1, len(body)) if body[i]["role"] == "user"] or [0]
    cuts = sorted(set(cuts + [len(body) - 1]))
    if cfg.max_prompt_tokens >= UNLIMITED:  # no budget: the whole conversation, no token count needed
        return _apply(tokenizer, _with_instruction(system + body, cfg), tools)
    renders: dict[int, tuple[str, list[int]]] = {}

    def fits(k: int) -> bool:
        if k not in renders:
            text = _apply(tokenizer, _with_instruction(system + body[cuts[k]:], cfg), tools)
            renders[k] = (text, tokenizer(text, add_special_tokens=False)["input_ids"])
        return len(renders[k][1]) <= cfg.max_prompt_tokens

    # Fewest dropped turns that fit (fit is monotone in k). Gallop back from the latest turn so a
    # small budget never renders a whole long conversation, then bisect the last gap.
    hi = len(cuts) - 1
    chars = sum(len(m["content"]) for m in body) + len(json.dumps(tools))
    if chars <= 3 * cfg.max_prompt_tokens and fits(0):  # likely fits whole (>= 3 chars a token): one render
        return renders[0][0]
    if fits(hi):
        step, lo = 1, hi
        while lo > 0:
            cand = max(lo - step, 0)
            if not fits(cand):
                break
            lo, step = cand, step * 2
        else:
            return renders[0][0]
        bad = max(lo - step, 0)  # the last candidate tried did not fit
        while lo - bad > 1:
            mid = (lo + bad) // 2
            lo, bad = (mid, bad) if fits(mid) else (lo, mid)
        return renders[lo][0]
    # Even the latest turn with the tool schemas overflows: keep the latest tokens (the end of
    # the prompt decides the action). Every consumer tokenizes this same text, so they agree.
    return tokenizer.decode(renders[hi][1][-cfg.max_prompt_tokens:], skip_special_tokens=False)


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


def verifier_text(tokenizer, record: dict, label: str, call: dict | None, cfg: PromptConfig | None = None) -> str:
    """What the verifier reads: the proposer's prompt followed by the proposed action."""
    return render_prompt(tokenizer, record, cfg) + format_action(label, call)
