"""Batched inference for every role: label scores, call generation, proposal sampling, verifier scores.

The proposer's distribution over the nine action types costs **one prefill** per decision point:
the prompts of a batch are right-padded and prefilled once with a KV cache and no mask
(causality hides the pads from the real tokens before them), then the nine short label
continuations run in one more forward, packed as a tree that shares the cache (a 4-D mask lets
each branch see the prompt's real tokens and its own earlier tokens). Repeating the cache 9x
(``DynamicCache.batch_repeat_interleave``) would be simpler but copies it 9x: on CPU that copy
cost more than the prefill. A record scores the same alone or in any batch
(``tests/test_scoring.py`` checks both against a naive full forward).
"""

from __future__ import annotations

import json
import time
import warnings

import numpy as np
import torch
from tqdm.auto import tqdm
from transformers import StoppingCriteria, StoppingCriteriaList

from specact.actions import LABELS, uses_tool
from specact.calibration import apply_calibration
from specact.prompts import proposer_summary  # the verifier's view of the proposer
from specact.prompts import (
    PromptConfig, completion_ids, format_action, gold_call, parse_action, prompt_ids, render_prompt,
)

_DUMMY_CALL = {"name": "f", "arguments": {}}


def label_continuations(tokenizer) -> list[list[int]]:
    """Token ids scored for each label: the label, then the first token after it in the gold format.

    Tool labels continue with the ``"\\n"`` that precedes the call JSON, text labels with eos,
    exactly as ``format_action(...) + eos`` tokenizes in training. The terminator makes the nine
    events disjoint: without it "verifier" would also collect mass from "verifiers..." and a
    label could be rewarded for being a prefix of a longer string.
    """
    return list(_continuations(tokenizer))


def _continuations(tokenizer) -> tuple[tuple[int, ...], ...]:
    cached = getattr(tokenizer, "_specact_label_conts", None)
    if cached is None:
        out = []
        for label in LABELS:
            ids = tokenizer(label, add_special_tokens=False)["input_ids"]
            if uses_tool(label):
                full = tokenizer(format_action(label, _DUMMY_CALL), add_special_tokens=False)["input_ids"]
                if full[: len(ids)] != ids:
                    raise ValueError(f"tokenizer merges label {label!r} with the newline after it; label scoring needs a token boundary there")
                out.append(tuple(full[: len(ids) + 1]))
            else:
                out.append(tuple(ids) + (tokenizer.eos_token_id,))
        cached = tuple(out)
        tokenizer._specact_label_conts = cached  # per tokenizer object: 9 tiny encodes, once
    return cached


def compile_scorer(model, enabled: bool = True):
    """Run the label scorer's two forwards through ``torch.compile(model, dynamic=True)``.

    The compiled module is kept on the model (outside its submodules, so not in its state dict)
    and used by :func:`score_prompt_ids` only; ``generate`` and training see the eager model.
    Dynamic shapes: batch widths vary with prompt length, so one graph serves them all (plus the
    continuation forward's, which takes a cache). What it buys, measured: BENCHMARKS.md.
    """
    if enabled:
        model.__dict__["_specact_compiled"] = torch.compile(model, dynamic=True)
    else:
        model.__dict__.pop("_specact_compiled", None)
    return model


def _device(model) -> torch.device:
    return next(model.parameters()).device


def cache_kwarg(model) -> str:
    """``cache`` (transformers >= 5.2x) or ``past_key_values`` (older): a wrong name is swallowed by
    ``**kwargs`` and silently drops the prompt from the continuation forward, so look it up."""
    import inspect

    fwd = (model.get_base_model() if hasattr(model, "get_base_model") else model).forward
    return "cache" if "cache" in inspect.signature(fwd).parameters else "past_key_values"


def pad_batch(seqs: list[list[int]], pad_id: int, device, side: str = "left") -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        cols = slice(0, len(s)) if side == "right" else slice(width - len(s), width)
        ids[i, cols] = torch.tensor(s, dtype=torch.long)
        mask[i, cols] = 1
    return ids.to(device), mask.to(device)


def _batches(n: int, batch_size: int, desc: str, quiet: bool):
    starts = range(0, n, max(1, batch_size))
    return tqdm(starts, desc=desc, disable=quiet or n <= batch_size, leave=False)


def label_tree(conts, device, dtype):
    """The nine continuations (minus their last token) packed as one branch-per-label sequence.

    Returns (ids [C], offsets [C], targets [C], label index [C], causal-within-branch bias [C, C]):
    token k is at ``offsets[k]`` within its label and predicts ``targets[k]``, the next token of
    the same label; it may see earlier tokens of its own branch only.
    """
    ids, off, tgt, lab = [], [], [], []
    for j, c in enumerate(conts):
        for t in range(len(c) - 1):  # the last token is only ever a target
            ids.append(c[t]), off.append(t), tgt.append(c[t + 1]), lab.append(j)
    lab_t, off_t = torch.tensor(lab), torch.tensor(off)
    same = (lab_t[:, None] == lab_t[None, :]) & (off_t[None, :] <= off_t[:, None])
    bias = torch.zeros(same.shape, dtype=dtype).masked_fill(~same, torch.finfo(dtype).min)
    return [torch.tensor(x, device=device) for x in (ids, off, tgt, lab)] + [bias.to(device)]


def continuation_scores(model, prefill, mask, tree, cache_kw: str, n_lab: int) -> torch.Tensor:
    """[b, 9]: log p of each label's tokens after its first, in one forward of the ``label_tree`` on the
    prefill's cache; ``mask`` marks each row's real prompt tokens (either padding side)."""
    t_ids, t_off, t_tgt, t_lab, t_bias = tree
    b, n_c, dtype = mask.shape[0], t_ids.shape[0], t_bias.dtype
    cache = prefill.cache if getattr(prefill, "cache", None) is not None else prefill.past_key_values
    prompt_bias = torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill(mask == 0, torch.finfo(dtype).min)
    bias = torch.cat([prompt_bias[:, None, None, :].expand(b, 1, n_c, -1), t_bias.expand(b, 1, n_c, n_c)], dim=-1)
    c_pos = mask.sum(-1, keepdim=True) + t_off[None]  # continue right after each row's last real token
    nxt = model(input_ids=t_ids.expand(b, -1), attention_mask=bias, position_ids=c_pos, use_cache=True, **{cache_kw: cache})
    lp = torch.log_softmax(nxt.logits.float(), -1).gather(-1, t_tgt.expand(b, -1)[..., None]).squeeze(-1)  # [b, C]
    return torch.zeros(b, n_lab, device=mask.device).index_add_(1, t_lab, lp)


def label_scorer(model, tokenizer) -> dict:
    """What every batch of :func:`score_batch` needs, set up once per model and tokenizer: the
    forward to call (``compile_scorer``'s if set), the label tree, each label's first token, the
    cache keyword, the pad id."""
    impl = getattr(model.config, "_attn_implementation", "sdpa") or "sdpa"
    if impl not in ("eager", "sdpa"):
        raise ValueError(f"label scoring packs continuations with a 4-D mask, which attn_implementation={impl!r} "
                         "does not take; load the model with attn_implementation='sdpa'")
    conts = _continuations(tokenizer)
    dev = _device(model)
    return {"fwd": model.__dict__.get("_specact_compiled", model), "conts": conts, "n_lab": len(conts),
            "tree": label_tree(conts, dev, next(model.parameters()).dtype),
            "first_tok": torch.tensor([c[0] for c in conts], device=dev), "cache_kw": cache_kwarg(model),
            "pad": tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0, "device": dev}


def score_batch(scorer: dict, seqs: list[list[int]]):
    """One batch of prompts: ([b, 9] label log-scores on the device, right-padding mask, the prefill's
    output, whose cache now holds the prompts and then the label tree).

    Right padding, no mask: a padding mask would send SDPA to a slower masked kernel (and per-shape
    set-up work); pads only ever follow the real tokens, which causality hides. Logits only at the
    positions where some row ends ([b, <=b, vocab]; sorted lengths repeat).
    """
    ids, mask = pad_batch(seqs, scorer["pad"], scorer["device"], side="right")
    b, fwd = ids.shape[0], scorer["fwd"]
    keep, col = torch.unique(mask.sum(-1) - 1, return_inverse=True)
    pre = fwd(input_ids=ids, use_cache=True, logits_to_keep=keep)
    row_logits = pre.logits[torch.arange(b, device=ids.device), col]
    head = torch.log_softmax(row_logits.float(), -1)[:, scorer["first_tok"]]  # [b, 9]: each label's first token
    cont = continuation_scores(fwd, pre, mask, scorer["tree"], scorer["cache_kw"], scorer["n_lab"])
    return head + cont, mask, pre


def length_order(prompts: list[list[int]]) -> list[int]:
    """Indices by prompt length: batches of similar lengths keep padding (wasted prefill) small."""
    return sorted(range(len(prompts)), key=lambda i: len(prompts[i]))


@torch.inference_mode()
def score_prompt_ids(model, tokenizer, prompts: list[list[int]], batch_size: int = 16, quiet: bool = False) -> np.ndarray:
    """log p(label continuation | prompt) for pre-tokenized prompts -> float64 array [n, 9].

    Two forwards per batch (:func:`score_batch`): the right-padded prompts with a KV cache and *no*
    mask -- causal attention alone keeps each real token from the pads after it, so SDPA runs its
    mask-free flash kernel -- then the nine continuations packed as one tree-shaped sequence
    (``label_tree``) that attends to the cache's real positions through an explicit 4-D additive
    mask: no 9x copy of the cache, ~one prefill of cost. Needs an attention kernel that takes 4-D
    masks (eager / sdpa, transformers' defaults). Results come back in input order.
    """
    scorer = label_scorer(model, tokenizer)
    out = np.zeros((len(prompts), scorer["n_lab"]))
    done = []
    order = length_order(prompts)
    for s in _batches(len(order), batch_size, "score labels", quiet):
        idx = order[s: s + batch_size]
        scores, _, pre = score_batch(scorer, [prompts[i] for i in idx])
        done.append((idx, scores))  # on the device: no sync per batch
        del pre
    for idx, scores in done:
        out[idx] = scores.double().cpu().numpy()
    return out


def score_labels(model, tokenizer, records: list[dict], prompt_cfg: PromptConfig | None = None,
                 batch_size: int = 16, quiet: bool = False, prompts: list[list[int]] | None = None) -> dict:
    """Per-record log-probabilities of the nine labels (columns in ``LABELS`` order).

    Returns ``{logp: [n, 9] float64, prompt_tokens: [n] int, seconds: float}``; ``logp`` is
    unnormalised over the nine (their mass need not sum to one); argmax is the prediction.
    ``prompts``: the records' ``prompt_ids`` when the caller already has them.
    """
    t0 = time.perf_counter()
    prompts = prompts if prompts is not None else [prompt_ids(tokenizer, r, prompt_cfg) for r in records]
    logp = score_prompt_ids(model, tokenizer, prompts, batch_size, quiet)
    return {"logp": logp, "prompt_tokens": np.array([len(p) for p in prompts]), "seconds": time.perf_counter() - t0}


class CallStop(StoppingCriteria):
    """Per-row stop once a generated call's parsed outcome can no longer change.

    A row stops at eos (the trained format's end), at the close of its first complete JSON object
    (``parse_action`` reads that object with ``raw_decode`` and ignores whatever follows), or as
    soon as its text cannot start an object at all (any first character but ``{`` parses to no
    call; see :func:`call_is_settled`). So a call is the one a full-budget generation would parse,
    while a model that never emits eos (the frozen strong model) stops after the object or a few
    wasted tokens instead of running out its ``max_new_tokens``. ``lengths[i]`` is the number of tokens row i generated.
    """

    def __init__(self, tokenizer, start: int, rows: int, eos: int):
        self.tokenizer, self.start, self.eos = tokenizer, start, eos
        self.lengths = [0] * rows
        self.done = [False] * rows
        # Once a row's text has opened its object ("{" first), only a token holding "}" can settle it
        # (complete the object), so only those rows are decoded again. Decoding every row's whole
        # text at every step grows with rows x tokens: at a GPU's 128-row batches it is per-step
        # Python work of the same order as the decode step itself.
        self.opened = [False] * rows
        self._has_brace: dict[int, bool] = {}

    def _may_close(self, token: int) -> bool:
        if token not in self._has_brace:
            self._has_brace[token] = "}" in self.tokenizer.decode([token], skip_special_tokens=False)
        return self._has_brace[token]

    def __call__(self, input_ids, scores=None, **kwargs) -> torch.BoolTensor:
        last = input_ids[:, -1].tolist()
        n_new = input_ids.shape[1] - self.start
        check = []
        for i, token in enumerate(last):
            if self.done[i]:
                continue
            self.lengths[i] = n_new
            if token == self.eos:
                self.done[i] = True
            elif not self.opened[i] or self._may_close(token):
                check.append(i)
        if check:
            rows = input_ids[check, self.start:].tolist()
            for i, row in zip(check, rows):
                text = self.tokenizer.decode(row, skip_special_tokens=False)
                self.done[i] = call_is_settled(text)
                self.opened[i] = not self.done[i] and bool(text.strip())
        return torch.tensor(self.done, device=input_ids.device)


# Whitespace tolerated before a call's "{": training puts the object right after the label's
# newline, but a pretrained zero-shot model may write " {" or "\\n{" (parse_action accepts both).
# A longer run of it is a degenerate model repeating a blank token: an untrained one does that
# to the end of its budget.
MAX_LEADING_SPACE = 2


def call_is_settled(text: str) -> bool:
    """True once the call ``parse_action(label + "\\n" + text + more)`` reads is fixed whatever ``more``
    is: a complete first JSON object, or a body whose first character cannot start one. One
    approximation: more than :data:`MAX_LEADING_SPACE` leading whitespace characters also count
    as settled (no call), although an object could in principle still follow them."""
    body = text.lstrip()
    if len(text) - len(body) > MAX_LEADING_SPACE:
        return True
    if not body:
        return False
    if body[0] != "{":
        return True
    try:
        json.JSONDecoder().raw_decode(body)
    except json.JSONDecodeError:
        return False
    return True


def _generate_batch(model, tokenizer, seqs: list[list[int]], pad: int, max_new_tokens: int, stop_early: bool):
    """Greedy continuations of one batch: (generated ids per row, cut at its stop)."""
    ids, mask = pad_batch(seqs, pad, _device(model))
    eos = tokenizer.eos_token_id
    stop = CallStop(tokenizer, ids.shape[1], len(seqs), eos)
    extra = {"stopping_criteria": StoppingCriteriaList([stop])} if stop_early else {}
    gen = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=max_new_tokens, do_sample=False,
                         eos_token_id=eos, pad_token_id=pad, **extra)
    rows = gen[:, ids.shape[1]:].cpu().tolist()
    if stop_early:
        return [row[:n] for row, n in zip(rows, stop.lengths)]
    return [row[: row.index(eos) + 1] if eos in row else row for row in rows]


@torch.inference_mode()
def generate_calls(model, tokenizer, records: list[dict], labels: list[str], prompt_cfg: PromptConfig | None = None,
                   max_new_tokens: int = 64, batch_size: int = 16, quiet: bool = False, stop_early: bool = True,
                   prompts: list[list[int]] | None = None) -> dict:
    """Greedy call generation after ``label + "\\n"`` for records whose label uses a tool.

    Rows of similar prompt length are batched across decision points; each stops as soon as its
    call is settled (:class:`CallStop`; ``stop_early=False``: at eos or the budget only, the
    behaviour before it, kept for the benchmark's baseline). ``prompts``: the records' ``prompt_ids``
    when the caller already has them.
    Returns ``{calls: [dict | None], gen_tokens: [n] int (0 where nothing was generated), seconds}``.
    """
    t0 = time.perf_counter()
    n = len(records)
    calls: list[dict | None] = [None] * n
    gen_tokens = np.zeros(n, dtype=int)
    todo = [i for i in range(n) if labels[i] in LABELS and uses_tool(labels[i])]
    conts = dict(zip(LABELS, _continuations(tokenizer)))
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    seqs = {i: (prompts[i] if prompts is not None else prompt_ids(tokenizer, records[i], prompt_cfg)) + list(conts[labels[i]])
            for i in todo}
    todo.sort(key=lambda i: len(seqs[i]))
    eos = tokenizer.eos_token_id  # the completion format ends with eos (trl appends it in training)
    for s in _batches(len(todo), batch_size, "generate calls", quiet):
        idx = todo[s: s + batch_size]
        for i, row in zip(idx, _generate_batch(model, tokenizer, [seqs[i] for i in idx], pad, max_new_tokens, stop_early)):
            gen_tokens[i] = len(row)
            text = tokenizer.decode([t for t in row if t != eos], skip_special_tokens=False)
            calls[i] = parse_action(labels[i] + "\n" + text)[1]
    return {"calls": calls, "gen_tokens": gen_tokens, "seconds": time.perf_counter() - t0}


def call_token_budget(tokenizer, records: list[dict], cap: int, quantile: float = 0.99, margin: int = 16) -> int:
    """``max_new_tokens`` for call generation sized from the gold calls of ``records`` (train):
    the ``quantile`` of their generated-token lengths (JSON + eos, after ``label + "\\n"``) plus
    ``margin``, at most ``cap``. The margin leaves room for a model's call to run a little longer
    than the gold ones; only a call that never closes its JSON object ever reaches the budget."""
    conts = dict(zip(LABELS, _continuations(tokenizer)))
    lengths = [len(completion_ids(tokenizer, r["label"], gold_call(r))) + 1 - len(conts[r["label"]])
               for r in records if uses_tool(r["label"]) and gold_call(r) is not None]
    if not lengths:
        return cap
    return int(min(cap, np.ceil(np.quantile(lengths, quantile)) + margin))


def sample_proposals(logp: np.ndarray, n: int, temperature: float = 0.0, seed: int = 0,
                     rows: list[int] | None = None) -> list[list[int]]:
    """``n`` distinct label indices per row: at ``temperature`` 0 the proposer's top-``n`` labels
    (the greedy proposal first), else sampled without replacement from softmax(logp / T).

    Gumbel-top-k: adding Gumbel noise to logp / T and keeping the k largest draws k labels
    without replacement with the right probabilities, from the one prefill already paid for.
    Row i's noise comes from ``seed`` and i only (``rows[i]`` when given: the rows' indices in the
    whole split, for a caller that draws batch by batch): other rows' scores never change its draw.
    """
    logp = np.asarray(logp, dtype=np.float64)
    k = min(n, logp.shape[1])
    if temperature <= 0:
        return [[int(j) for j in np.argsort(-row, kind="stable")[:k]] for row in logp]
    out = []
    for i, row in enumerate(logp):
        g = np.random.default_rng([seed, rows[i] if rows is not None else i]).gumbel(size=row.shape)
        keys = row / max(temperature, 1e-8) + g
        out.append([int(j) for j in np.argsort(-keys, kind="stable")[:k]])
    return out


def verifier_ids(tokenizer, records, proposals, prompt_cfg: PromptConfig | None, max_length: int | None,
                 logps=None) -> list[list[int]]:
    """Token ids of ``prompts.verifier_text`` (prompt, the proposer's top labels when ``logps`` gives
    its label log-probabilities per pair (None entries: none), proposed action) per pair, cut on the
    left to ``max_length``.

    Prompts are rendered once per distinct record object even when several proposals share it
    (config E); the left cut keeps the proposal -- the part being judged -- always in view.
    """
    rendered: dict[int, str] = {}
    out = []
    for i, (rec, (label, call)) in enumerate(zip(records, proposals)):
        if id(rec) not in rendered:
            rendered[id(rec)] = render_prompt(tokenizer, rec, prompt_cfg)
        lp = logps[i] if logps is not None else None
        text = rendered[id(rec)] + (proposer_summary(lp) if lp is not None else "") + format_action(label, call)
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        out.append(ids[-max_length:] if max_length else ids)
    return out


@torch.inference_mode()
def verifier_scores(model, tokenizer, records: list[dict], proposals: list[tuple[str, dict | None]],
                    prompt_cfg: PromptConfig | None = None, calibration: dict | None = None,
                    batch_size: int = 16, max_length: int | None = None, quiet: bool = False, logps=None) -> dict:
    """Verifier logit (``score``) and calibrated P(accept) (``prob``) of one proposal per record.

    Returns ``{score, prob, tokens: [n] int, seconds}``. ``max_length`` defaults to the one the
    verifier was trained with (stored in ``calibration.json``). ``logps``: the proposer's label
    log-probabilities per proposal, which a verifier trained on them (``reads_proposer``) reads.
    """
    t0 = time.perf_counter()
    max_length = max_length or (calibration or {}).get("max_length")
    if logps is None and (calibration or {}).get("reads_proposer"):
        warnings.warn("this verifier was trained reading the proposer's label distribution; pass logps", stacklevel=2)
    seqs = verifier_ids(tokenizer, records, proposals, prompt_cfg, max_length, logps)
    pad = model.config.pad_token_id
    dev = _device(model)
    raw = np.zeros(len(seqs))
    order = sorted(range(len(seqs)), key=lambda i: len(seqs[i]))
    for s in _batches(len(order), batch_size, "verifier", quiet):
        idx = order[s: s + batch_size]
        ids, mask = pad_batch([seqs[i] for i in idx], pad, dev)
        pos = (mask.cumsum(-1) - 1).clamp(min=0)
        logits = model(input_ids=ids, attention_mask=mask, position_ids=pos).logits
        raw[idx] = logits[:, 0].float().cpu().numpy()
    return {"score": raw, "prob": apply_calibration(raw, calibration),
            "tokens": np.array([len(x) for x in seqs]), "seconds": time.perf_counter() - t0}


def predict_role(model, tokenizer, records: list[dict], prompt_cfg: PromptConfig | None = None, batch_size: int = 16,
                 generate: bool = True, max_new_tokens: int = 64, quiet: bool = False, stop_early: bool = True,
                 prompts: list[list[int]] | None = None, generate_batch_size: int | None = None) -> list[dict]:
    """One role's per-step predictions (DESIGN.md): ``{logp, pred, call, prompt_tokens, gen_tokens, seconds}``.

    ``seconds`` splits the measured wall time evenly: the batched scoring over all records, the
    generation over the records that generated a call. Prompts are tokenized once for both (or
    taken from ``prompts``: roles that share a tokenizer share them). ``generate_batch_size``: rows
    per generation batch (default ``batch_size``).
    """
    if prompts is None:
        prompts = [prompt_ids(tokenizer, r, prompt_cfg) for r in records]
    res = score_labels(model, tokenizer, records, prompt_cfg, batch_size, quiet, prompts)
    preds = [LABELS[j] for j in res["logp"].argmax(1)]
    n = max(len(records), 1)
    gen = {"calls": [None] * len(records), "gen_tokens": np.zeros(len(records), dtype=int), "seconds": 0.0}
    if generate:
        gen = generate_calls(model, tokenizer, records, preds, prompt_cfg, max_new_tokens, generate_batch_size or batch_size,
                             quiet, stop_early, prompts)
    n_gen = max(sum(uses_tool(p) for p in preds), 1)
    return [{"logp": res["logp"][i].tolist(), "pred": preds[i], "call": gen["calls"][i],
             "prompt_tokens": int(res["prompt_tokens"][i]), "gen_tokens": int(gen["gen_tokens"][i]),
             "seconds": res["seconds"] / n + (gen["seconds"] / n_gen if generate and uses_tool(preds[i]) else 0.0)}
            for i in range(len(records))]
