"""Toy decision points and a tiny from-config model spec shared by the model/train/scoring tests.

Records are short on purpose (no instruction, compact schemas): attention over long prompts is
what dominates CPU time, and the tests check plumbing and exactness, not accuracy.
"""

from __future__ import annotations

import torch

from specact.config import ModelSpec
from specact.prompts import PromptConfig
from specact.records import validate_record

torch.set_num_threads(1)  # 2 shared cores: one thread is faster than two fighting other jobs

TINY = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 64}
PROMPT = PromptConfig(instruction=False, tool_schema="compact", max_prompt_tokens=512)
TOOLS = [
    {"type": "function", "function": {"name": "cat", "description": "Read a file.",
     "parameters": {"type": "object", "properties": {"file": {"type": "string"}}, "required": ["file"]}}},
    {"type": "function", "function": {"name": "rm", "description": "Delete a file.",
     "parameters": {"type": "object", "properties": {"file": {"type": "string"}}, "required": ["file"]}}},
]
# (label, user verb, target tool): the verb alone decides the label, so a tiny model can learn it.
KINDS = [("file_read", "show", "cat"), ("file_write", "delete", "rm"), ("final_answer", "thanks", None), ("BLOCKED", "hack", None)]


def tiny_spec(vocab: int = 480, **kw) -> ModelSpec:
    # float32 everywhere: the exactness checks (1e-4) must hold on a GPU too, where "auto" means bf16.
    return ModelSpec(config=dict(TINY, **kw.pop("config", {})), tokenizer=f"bpe:{vocab}", dtype="float32", **kw)


def make_records(n: int = 24) -> list[dict]:
    out = []
    for i in range(n):
        label, verb, tool = KINDS[i % len(KINDS)]
        msgs = [{"role": "system", "content": "Files."}, {"role": "user", "content": f"{verb} f{i % 7}.txt"}]
        if i % 2:  # half the records carry a previous tool call + result (exercises the template)
            msgs += [{"role": "assistant", "content": None,
                      "tool_calls": [{"type": "function", "id": "c", "function": {"name": "cat", "arguments": {"file": "x"}}}]},
                     {"role": "tool", "tool_call_id": "c", "name": "cat", "content": "ok"}]
        target = {"name": tool, "arguments": {"file": f"f{i % 7}.txt"}} if tool else None
        out.append(validate_record({"id": f"r{i}", "messages": msgs, "tools": TOOLS, "label": label, "target": target,
                                    "meta": {"source": "toy", "trajectory_id": f"t{i // 2}", "step": i % 2}}))
    return out


def toy_run_dir(tmp_path_factory, records=None):
    """A run directory holding the toy BPE tokenizer (trained once per test module)."""
    from specact.models import load_tokenizer
    from specact.tokenization import bpe_corpus

    run = tmp_path_factory.mktemp("run")
    load_tokenizer(tiny_spec(), run, bpe_corpus(records or make_records(), PROMPT))
    return run
