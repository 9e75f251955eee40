import pytest

from specact.actions import LABELS
from specact.prompts import PromptConfig, format_action, parse_action, prompt_ids, render_prompt, sft_example, verifier_text
from specact.tokenization import byte_tokenizer


def record(n_turns=1, tool_out="ok"):
    msgs = [{"role": "system", "content": "You manage files."}]
    for i in range(n_turns):
        msgs += [
            {"role": "user", "content": f"Request number {i}: list the folder."},
            {"role": "assistant", "content": None, "tool_calls": [{"type": "function", "id": f"c{i}", "function": {"name": "ls", "arguments": {"a": True}}}]},
            {"role": "tool", "tool_call_id": f"c{i}", "name": "ls", "content": tool_out},
        ]
    msgs.append({"role": "user", "content": "Now create the folder temp."})
    tools = [{"type": "function", "function": {"name": "mkdir", "description": "Create a directory. " * 20,
                                               "parameters": {"type": "object", "properties": {"dir_name": {"type": "string", "description": "name"}}, "required": ["dir_name"]}}}]
    return {"id": "r", "messages": msgs, "tools": tools, "label": "file_write",
            "target": {"name": "mkdir", "arguments": {"dir_name": "temp"}}, "meta": {"source": "t", "trajectory_id": "t"}}


@pytest.mark.parametrize("label", LABELS)
def test_format_parse_roundtrip(label):
    call = {"name": "mkdir", "arguments": {"dir_name": "temp"}}
    text = format_action(label, call)
    got_label, got_call = parse_action(text)
    assert got_label == label
    assert got_call == (call if label in ("tool_call", "retrieval", "file_read", "file_write", "repair", "verifier") else None)


def test_parse_tolerates_garbage():
    assert parse_action("nonsense\n{bad") == (None, None)
    assert parse_action("file_read\n{\"name\": \"cat\", \"arguments\": {}} trailing") == ("file_read", {"name": "cat", "arguments": {}})


def test_prompt_uses_chat_template_with_tools_and_generation_prompt():
    tok = byte_tokenizer()
    text = render_prompt(tok, record())
    assert "mkdir" in text and text.rstrip().endswith("<|im_start|>assistant")
    assert "Now create the folder temp." in text


def test_budget_drops_oldest_turns_first():
    tok = byte_tokenizer()
    rec = record(n_turns=12)
    cfg = PromptConfig(max_prompt_tokens=1400, tool_schema="compact")
    ids = prompt_ids(tok, rec, cfg)
    assert len(ids) <= 1400
    text = render_prompt(tok, rec, cfg)
    assert "Now create the folder temp." in text and "Request number 11" in text
    assert "Request number 0:" not in text


def test_compact_schema_drops_descriptions():
    tok = byte_tokenizer()
    assert "Create a directory." not in render_prompt(tok, record(), PromptConfig(tool_schema="compact"))
    assert "Create a directory." in render_prompt(tok, record(), PromptConfig(tool_schema="full"))


def test_long_tool_output_is_clipped():
    tok = byte_tokenizer()
    text = render_prompt(tok, record(tool_out="x" * 5000), PromptConfig(max_message_chars=100, max_prompt_tokens=10**6))
    assert "chars clipped" in text and "x" * 200 not in text


def test_training_and_verifier_text_share_the_prompt():
    tok = byte_tokenizer()
    rec = record()
    ex = sft_example(tok, rec)
    assert ex["prompt"] == render_prompt(tok, rec)
    assert ex["completion"] == 'file_write\n{"arguments": {"dir_name": "temp"}, "name": "mkdir"}'
    assert verifier_text(tok, rec, "file_read", None) == ex["prompt"] + "file_read"


class NoToolsTemplate:
    """A tokenizer whose chat template ignores tools and rejects the tool role (like many small models)."""

    chat_template = "x"

    def apply_chat_template(self, messages, tools=None, **kw):
        out = ""
        for m in messages:
            if m["role"] == "tool" or m.get("tool_calls"):
                raise ValueError("role not supported")
            out += f"<{m['role']}>{m['content']}</{m['role']}>"
        return out + "<assistant>"

    def __call__(self, text, add_special_tokens=False):
        return {"input_ids": list(text.encode())}


def test_fallback_renders_tools_and_calls_as_text():
    text = render_prompt(NoToolsTemplate(), record(), PromptConfig(max_prompt_tokens=10**6))
    assert "mkdir" in text and "<tool_response name=ls>" in text and "<tool_call>" in text


def test_budget_is_a_hard_cap_even_when_the_last_turn_overflows():
    tok = byte_tokenizer()
    rec = record(n_turns=1)
    rec["messages"][-1]["content"] = "please " * 400
    ids = prompt_ids(tok, rec, PromptConfig(max_prompt_tokens=300, max_message_chars=10**6))
    assert len(ids) <= 300
    assert render_prompt(tok, rec, PromptConfig(max_prompt_tokens=300, max_message_chars=10**6)).endswith("<|im_start|>assistant\n")


@pytest.mark.parametrize("budget", [900, 1100, 1400, 2000, 3000, 10**6])
def test_kept_turns_are_the_most_that_fit(budget):
    tok = byte_tokenizer()
    rec = record(n_turns=9)
    cfg = PromptConfig(max_prompt_tokens=budget, tool_schema="compact")
    text = render_prompt(tok, rec, cfg)
    kept = [i for i in range(9) if f"Request number {i}:" in text]
    assert kept == list(range(9 - len(kept), 9))  # a suffix of the turns
    if len(kept) < 9:  # one more turn would not have fit
        bigger = {**rec, "messages": [rec["messages"][0]] + rec["messages"][1 + 3 * (8 - len(kept)):]}
        assert len(prompt_ids(tok, bigger, PromptConfig(max_prompt_tokens=10**6, tool_schema="compact"))) > budget
    assert render_prompt(tok, rec, cfg) == text  # memoised, same text


def test_prompt_cache_persists_across_processes(tmp_path, monkeypatch):
    """A later stage (another kernel) loads the prompts an earlier one rendered, keyed by tokenizer
    *content*: a fresh tokenizer object hits, a different config misses and renders."""
    import specact.prompts as P

    cfg = PromptConfig(max_prompt_tokens=60)
    recs = [record(n, tool_out=f"out {n}") for n in range(1, 4)]
    texts = [render_prompt(byte_tokenizer(), r, cfg) for r in recs]
    assert P.save_prompt_cache(tmp_path / "p.pkl", byte_tokenizer()) >= len(recs)
    P._CACHE.clear()
    assert P.load_prompt_cache(tmp_path / "p.pkl") >= len(recs)
    assert P.load_prompt_cache(tmp_path / "p.pkl") == 0  # unchanged since this process read it: not read again
    monkeypatch.setattr(P, "_build", lambda *a: (_ for _ in ()).throw(AssertionError("rendered again")))
    assert [render_prompt(byte_tokenizer(), r, cfg) for r in recs] == texts
    with pytest.raises(AssertionError, match="rendered again"):
        render_prompt(byte_tokenizer(), recs[0], PromptConfig(max_prompt_tokens=61))
    assert P.load_prompt_cache(tmp_path / "missing.pkl") == 0


def observation_record(n_turns=6, obs="result line " * 40, tools=12):
    """A tool-heavy step: many tools, older turns, and the latest message a long tool output."""
    rec = record(n_turns=n_turns)
    rec["messages"] = rec["messages"][:-1] + [
        {"role": "user", "content": "LATEST-USER: copy report.txt into temp."},
        {"role": "assistant", "content": None, "tool_calls": [{"type": "function", "id": "z", "function": {"name": "ls", "arguments": {}}}]},
        {"role": "tool", "tool_call_id": "z", "name": "ls", "content": "OBS-START " + obs + " OBS-END"}]
    extra = [{"type": "function", "function": {"name": f"tool_{i}", "parameters": {"type": "object", "properties": {f"arg_{i}": {"type": "string"}}}}}
             for i in range(tools)]
    rec["tools"] = rec["tools"] + extra + [{"type": "function", "function": {"name": "ls", "parameters": {"type": "object", "properties": {}}}}]
    return rec


@pytest.mark.parametrize("budget", [260, 400, 700, 1000, 1500, 2500])
def test_latest_user_turn_and_observation_always_survive(budget):
    import specact.prompts as P

    tok = byte_tokenizer()
    rec = observation_record()
    cfg = PromptConfig(max_prompt_tokens=budget, tool_schema="compact", max_message_chars=10**6)
    text = render_prompt(tok, rec, cfg)
    assert len(prompt_ids(tok, rec, cfg)) <= budget
    assert "LATEST-USER" in text and "OBS-START" in text and "OBS-END" in text  # clipped in the middle at worst
    assert text.endswith("<|im_start|>assistant\n")
    parts = P._PARTS[P._key(tok, rec, cfg)]
    assert parts["latest_user"] and (parts["latest_message"] or "chars clipped" in text)


def test_priority_order_of_what_is_given_up():
    """What is given up as the budget shrinks: older turns, then tool signatures (the used tool's
    last), then the instruction's full form, then the latest message (middle-clipped), then names."""
    import specact.prompts as P

    tok = byte_tokenizer()
    rec = observation_record(obs="x" * 60)
    whole = len(prompt_ids(tok, rec, PromptConfig(max_prompt_tokens=P.UNLIMITED, tool_schema="compact")))
    seen = []
    for budget in range(whole, 150, -40):
        cfg = PromptConfig(max_prompt_tokens=budget, tool_schema="compact")
        text = render_prompt(tok, rec, cfg)
        s = P._PARTS[P._key(tok, rec, cfg)]
        seen.append((s["history"], s["tool_signatures"], s["instruction"], s["latest_message"], s["tool_names"]))
        if not s["tool_signatures"] and "<tools>" in text:  # some signatures: the used tool's among them
            assert text.split("<tools>")[1].startswith("\nls(")
    # Each part is given up only after every lower-priority part: the flags are sorted per budget.
    for row in seen:
        assert list(row) == sorted(row)
    assert seen[0] == (True,) * 5 and not any(seen[-1][:4])
    assert any(r[0] is False and r[1] for r in seen)  # history gone while signatures whole


def test_prompt_parts_survival_table():
    from specact.prompts import prompt_parts_survival

    tok = byte_tokenizer()
    recs = [dict(observation_record(), id=f"o{i}", meta={"source": "a" if i % 2 else "b", "trajectory_id": "t"}) for i in range(4)]
    df = prompt_parts_survival(tok, recs, PromptConfig(max_prompt_tokens=700, tool_schema="compact"))
    assert set(df.index) == {"a", "b", "all"} and df.loc["all", "n"] == 4
    assert df.loc["all", "latest_user"] == 1.0 and df.loc["all", "history"] == 0.0


def test_largest_fitting_count_matches_brute_force_from_any_guess():
    from specact.prompts import _largest

    for hi in range(0, 12):
        for limit in range(0, hi + 1):
            for guess in [None, *range(-1, hi + 3)]:
                tried = []
                got = _largest(lambda k: tried.append(k) or k <= limit, 0, hi, guess)
                assert got == limit, (hi, limit, guess)
                assert max(tried, default=0) <= hi
