"""One prefill per prompt in evaluation: calls decoded on the label scorer's KV cache, and a
step's verifier reads sharing one prefill.

:func:`specact.scoring.predict_role` scores the nine labels (one prefill per prompt) and then
generates each tool call with ``model.generate``, which prefills the same prompt again, once per
call (E's samples: once per extra label); the verifier then reads the whole prompt once per
proposal. On the ``default`` CPU run those repeated prefills were most of generation's time.

* Calls: decoded greedily on the cache the scoring pass leaves behind (:func:`score_and_generate`).
  It holds the prompt and the label tree (``scoring.label_tree``), so a branch (a row and one of
  its labels) feeds its label's last token and then one token per step, attending to its
  prompt's real tokens, its label's tree tokens and its own tokens through a 4-D additive mask.
* Verifier: the proposals of one step (the cheap one and E's samples) share the prompt and the
  proposer summary; the shared token prefix is prefilled once and the actions after it run as
  branches of one packed sequence (:func:`verifier_scores_shared`); a repeated proposal is read once.

Labels and log-probabilities are bit-identical to scoring's (the same batches and forwards). Calls
come from logits equal to ``generate``'s up to floating-point summation order (other batch shapes):
a greedy token would change only at a near-tie of ~1e-6; ``tests/test_prefix_sharing.py`` and
``tests/test_evaluate.py`` check calls and token counts equal the unshared path's, and the
benchmark checks them on the ``default`` run. Verifier scores differ from the unshared reads by
rounding (the unshared path's own reads of one text differ as much between batches).
"""

from __future__ import annotations

import time

import numpy as np
import torch
from transformers.cache_utils import DynamicLayer

from specact.actions import LABELS, uses_tool
from specact.calibration import apply_calibration
from specact.prompts import parse_action
from specact.scoring import (
    CallStop, _batches, cache_kwarg, label_scorer, length_order, pad_batch, score_batch, verifier_ids, verifier_scores,
)


def _branch_start(scorer: dict, mask: torch.Tensor, branches: list[tuple[int, str]]):
    """Step 0 of the branches ``(row, label)`` of one scored batch: (visibility bias [n, W + C] over
    the cache, first input token [n, 1] = the label's last token, its position [n, 1])."""
    dev, conts, dtype = mask.device, scorer["conts"], scorer["tree"][4].dtype
    rows = torch.tensor([k for k, _ in branches], device=dev)
    labs = [LABELS.index(lab) for _, lab in branches]
    own_label = scorer["tree"][3][None, :] == torch.tensor(labs, device=dev)[:, None]  # [n, C]: this label's tree tokens
    seen = torch.cat([mask[rows] > 0, own_label], dim=-1)
    bias = torch.zeros(seen.shape, dtype=dtype, device=dev).masked_fill(~seen, torch.finfo(dtype).min)
    first = torch.tensor([[conts[j][-1]] for j in labs], device=dev)
    pos = mask[rows].sum(-1, keepdim=True) + torch.tensor([[len(conts[j]) - 1] for j in labs], device=dev)
    return rows, bias, first, pos


# Decode steps gather the branches of several scored batches: on the 2-core CPU a step of these
# small models costs about the same at 12 rows as at 80 (4-8 ms: per-forward overhead, measured on
# the default run), so fewer, wider steps. The bound keeps the caches held meanwhile small (~0.2 GB
# at the default run's sizes).
DECODE_ROWS = 256


def _branch_part(scorer: dict, pre, mask: torch.Tensor, branches: list[tuple[int, str]]) -> dict:
    """The branches ``(row, tool label)`` of one scored batch, ready to decode: their rows of the
    cache of :func:`scoring.score_batch`'s output ``pre`` (the prompt, then the label tree), the
    visibility bias over it, the first input token and its position."""
    cache = pre.cache if getattr(pre, "cache", None) is not None else pre.past_key_values
    rows, bias, first, pos = _branch_start(scorer, mask, branches)
    cache.reorder_cache(rows)  # one cache row per branch (a row with several labels is copied)
    return {"cache": cache, "bias": bias, "first": first, "pos": pos, "width": mask.shape[1]}


def _widen(x: torch.Tensor, w: int, width: int, dim: int, fill: float) -> torch.Tensor:
    """``x``'s prompt region (its first ``w`` entries along ``dim``) padded with ``fill`` to ``width``."""
    if w == width:
        return x
    shape = list(x.shape)
    shape[dim] = width - w
    return torch.cat([x.narrow(dim, 0, w), x.new_full(shape, fill), x.narrow(dim, w, x.shape[dim] - w)], dim=dim)


class _SpareLayer(DynamicLayer):
    """A KV-cache layer with room for ``spare`` more tokens: a decode step writes its keys and values
    in place, where ``DynamicLayer`` concatenates, copying the whole cache at every step (on the CPU
    that copy cost about as much as the attention reading it)."""

    def __init__(self, keys: torch.Tensor, values: torch.Tensor, spare: int):
        super().__init__()
        self.n, shape = keys.shape[-2], list(keys.shape)
        shape[-2] += spare
        self.k_buf, self.v_buf = keys.new_empty(shape), values.new_empty(shape)
        self.k_buf[..., : self.n, :], self.v_buf[..., : self.n, :] = keys, values
        self.is_initialized, self.device = True, keys.device
        self._view()

    def _view(self):
        self.keys, self.values = self.k_buf[..., : self.n, :], self.v_buf[..., : self.n, :]

    def update(self, key_states, value_states, *args, **kwargs):
        m = self.n + key_states.shape[-2]
        self.k_buf[..., self.n: m, :], self.v_buf[..., self.n: m, :] = key_states, value_states
        self.n = m
        self._view()
        return self.keys, self.values

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        self.k_buf, self.v_buf = self.k_buf[indices], self.v_buf[indices]
        self._view()


def _merge_parts(parts: list[dict], spare: int):
    """One decode batch from several :func:`_branch_part`: each prompt region widened to the widest
    with masked zeros, the label tree after it, room for ``spare`` tokens (:class:`_SpareLayer`).
    Returns (cache, bias, first tokens, positions)."""
    width, cache = max(p["width"] for p in parts), parts[0]["cache"]
    merged = [[torch.cat([_widen(getattr(p["cache"].layers[i], name), p["width"], width, -2, 0.0) for p in parts])
               for name in ("keys", "values")] for i in range(len(cache.layers))]
    cache.layers = [_SpareLayer(k, v, spare) for k, v in merged]
    neg = torch.finfo(parts[0]["bias"].dtype).min
    bias = torch.cat([_widen(p["bias"], p["width"], width, -1, neg) for p in parts])
    return cache, bias, torch.cat([p["first"] for p in parts]), torch.cat([p["pos"] for p in parts])


@torch.inference_mode()
def decode_greedy(model, tokenizer, cache_kw: str, cache, bias: torch.Tensor, nxt: torch.Tensor, pos: torch.Tensor,
                  max_new_tokens: int, stop_early: bool = True) -> list[list[int]]:
    """Greedy tokens of each branch (row of ``cache``; ``bias`` [n, cache length] says which cache
    entries it sees; ``nxt``, ``pos`` [n, 1]: its next input token and position).

    Stops as ``generate`` does in :func:`scoring.generate_calls`: per branch at a settled call
    (:class:`scoring.CallStop`) or, with ``stop_early=False``, at eos (kept); else at the budget.
    Finished branches leave the batch, so a long call does not keep short ones decoding.
    """
    eos, n = tokenizer.eos_token_id, nxt.shape[0]
    stop = CallStop(tokenizer, 0, n, eos)
    out: list[list[int]] = [[] for _ in range(n)]
    live = list(range(n))  # branches still decoding, in the cache's batch order
    for _ in range(max_new_tokens):
        bias = torch.cat([bias, bias.new_zeros(len(live), 1)], dim=-1)  # the new token sees itself
        logits = model(input_ids=nxt, attention_mask=bias[:, None, None, :], position_ids=pos, use_cache=True,
                       **{cache_kw: cache}).logits[:, -1]
        tok = logits.float().argmax(-1)  # greedy, on float32 logits as generate's
        for b, t in zip(live, tok.tolist()):
            out[b].append(t)
        if stop_early:
            width = len(out[live[0]])  # live branches all have this many tokens; finished ones are padded (CallStop skips them)
            done = stop(torch.tensor([r + [eos] * (width - len(r)) for r in out])).tolist()
        else:
            done = [bool(out[b]) and out[b][-1] == eos for b in range(n)]
        keep = [k for k, b in enumerate(live) if not done[b]]
        if not keep:
            break
        if len(keep) < len(live):
            sel = torch.tensor(keep, device=bias.device)
            cache.batch_select_indices(sel)
            bias, tok, pos = bias[sel], tok[sel], pos[sel]
            live = [live[k] for k in keep]
        nxt, pos = tok[:, None], pos + 1
    return [r[: stop.lengths[b]] for b, r in enumerate(out)] if stop_early else out


# generate()'s logits processors that change a greedy token; the shared path decodes by argmax alone.
_GREEDY_PROCESSORS = ("repetition_penalty", "no_repeat_ngram_size", "bad_words_ids", "suppress_tokens",
                      "begin_suppress_tokens", "min_new_tokens", "min_length", "forced_bos_token_id",
                      "forced_eos_token_id", "sequence_bias", "exponential_decay_length_penalty")


def plain_greedy(model) -> bool:
    """Whether ``generate(do_sample=False)`` is a plain argmax for ``model``: its generation config
    sets none of :data:`_GREEDY_PROCESSORS` (a hub model's may; :func:`evaluate.predict` then
    generates with ``generate``)."""
    gc = getattr(model, "generation_config", None)
    vals = {k: getattr(gc, k, None) for k in _GREEDY_PROCESSORS}
    return (vals.pop("repetition_penalty") or 1.0) == 1.0 and not any(vals.values())


@torch.inference_mode()
def score_and_generate(model, tokenizer, prompts: list[list[int]], wants, batch_size: int = 16,
                       max_new_tokens: int = 64, quiet: bool = False, stop_early: bool = True) -> dict:
    """:func:`scoring.score_prompt_ids`'s label scores (the same batches, hence the same numbers) and,
    in the same pass, the greedy call tokens of every label ``wants(indices, logp)`` lists per row
    of a batch (tool labels only), decoded on the batches' caches (:func:`decode_greedy`, at least
    :data:`DECODE_ROWS` branches a decode batch while there are that many).

    Returns ``{logp: [n, 9] float64, tokens: {(i, label): [int]}, score_seconds, gen_seconds}``.
    """
    scorer = label_scorer(model, tokenizer)
    logp = np.zeros((len(prompts), scorer["n_lab"]))
    tokens: dict[tuple[int, str], list[int]] = {}
    parts, keys = [], []
    order, t_gen, t0 = length_order(prompts), 0.0, time.perf_counter()
    for s in _batches(len(order), batch_size, "score labels, generate calls", quiet):
        idx = order[s: s + batch_size]
        scores, mask, pre = score_batch(scorer, [prompts[i] for i in idx])
        logp[idx] = scores.double().cpu().numpy()
        t = time.perf_counter()
        branches = [(k, lab) for k, labs in enumerate(wants(idx, logp[idx])) for lab in labs if uses_tool(lab)]
        if branches:
            parts.append(_branch_part(scorer, pre, mask, branches))
            keys += [(idx[k], lab) for k, lab in branches]
        del pre
        if keys and (len(keys) >= DECODE_ROWS or s + batch_size >= len(order)):
            gen = decode_greedy(model, tokenizer, scorer["cache_kw"], *_merge_parts(parts, max_new_tokens), max_new_tokens, stop_early)
            tokens.update(zip(keys, gen))
            parts, keys = [], []
        t_gen += time.perf_counter() - t
    return {"logp": logp, "tokens": tokens, "score_seconds": time.perf_counter() - t0 - t_gen, "gen_seconds": t_gen}


def predict_role_shared(model, tokenizer, prompts: list[list[int]], batch_size: int = 16, max_new_tokens: int = 64,
                        quiet: bool = False, stop_early: bool = True, extra_labels=None) -> tuple[list[dict], dict]:
    """:func:`scoring.predict_role`'s rows (``generate=True``) from :func:`score_and_generate`, and
    the calls of ``extra_labels(indices, logp) -> [[label]]`` (E's samples of the proposer) as
    ``{(i, label): (call, gen_tokens, seconds)}``.

    ``seconds``: the scoring time split evenly over the records, plus the decoding time per
    generated token times the row's (or extra call's) tokens.
    """
    def wants(idx, logp):
        preds = [LABELS[j] for j in logp.argmax(1)]
        extra = extra_labels(idx, logp) if extra_labels else [[] for _ in idx]
        return [[p] + [x for x in xs if x != p] for p, xs in zip(preds, extra)]

    res = score_and_generate(model, tokenizer, prompts, wants, batch_size, max_new_tokens, quiet, stop_early)
    eos, n = tokenizer.eos_token_id, max(len(prompts), 1)
    per_tok = res["gen_seconds"] / max(sum(len(t) for t in res["tokens"].values()), 1)
    calls = {}
    for (i, lab), row in res["tokens"].items():
        text = tokenizer.decode([t for t in row if t != eos], skip_special_tokens=False)
        calls[(i, lab)] = (parse_action(lab + "\n" + text)[1], len(row), len(row) * per_tok)
    rows = []
    for i, lp in enumerate(res["logp"]):
        pred = LABELS[int(lp.argmax())]
        call, toks, secs = calls.pop((i, pred), (None, 0, 0.0))
        rows.append({"logp": lp.tolist(), "pred": pred, "call": call, "prompt_tokens": len(prompts[i]),
                     "gen_tokens": toks, "seconds": res["score_seconds"] / n + secs})
    return rows, calls


# ---------------------------------------------------------------- the verifier
def prefix_groups(seqs: list[list[int]], keys: list) -> list[tuple[int, list[int]]]:
    """Verifier inputs grouped to share one prefill: ``[(prefix length P, [indices])]``, one group per
    key (the step: its proposals share the prompt and proposer summary and differ in the action),
    each distinct sequence once (a sample equal to the cheap proposal is read once). ``P`` is the
    members' common token prefix, less what leaves every member at least one token of its own."""
    first: dict[tuple[int, ...], int] = {}
    by_key: dict = {}
    for i, s in enumerate(seqs):
        if tuple(s) not in first:
            first[tuple(s)] = i
            by_key.setdefault(keys[i], []).append(i)
    out = []
    for members in by_key.values():
        head, p = seqs[members[0]], len(seqs[members[0]]) - 1
        for i in members[1:]:
            s = seqs[i]
            lcp = next((k for k, (x, y) in enumerate(zip(head, s)) if x != y), min(len(head), len(s)))
            p = min(p, lcp, len(s) - 1)
        out.append((p, members))
    return out


def _suffix_tree(seqs, groups, device, dtype):
    """Per group, its members' suffixes (after the shared prefix) packed as one sequence, padded to the
    batch's longest: ids [g, C], offsets [g, C], branch-causal bias [g, C, C], and each member's
    last position in it."""
    width = max(sum(len(seqs[i]) - p for i in m) for p, m in groups)
    ids = torch.zeros((len(groups), width), dtype=torch.long)
    off = torch.zeros((len(groups), width), dtype=torch.long)
    branch = torch.full((len(groups), width), -1, dtype=torch.long)
    last: list[list[int]] = []
    for g, (p, members) in enumerate(groups):
        k, ends = 0, []
        for b, i in enumerate(members):
            suf = seqs[i][p:]
            ids[g, k: k + len(suf)] = torch.tensor(suf)
            off[g, k: k + len(suf)] = torch.arange(len(suf))
            branch[g, k: k + len(suf)] = b
            k += len(suf)
            ends.append(k - 1)
        last.append(ends)
    pos = torch.arange(width)
    see = (branch[:, :, None] == branch[:, None, :]) & (off[:, None, :] <= off[:, :, None])
    see |= pos[None, :, None] == pos[None, None, :]  # padding slots see themselves (no all-masked row)
    bias = torch.zeros(see.shape, dtype=dtype).masked_fill(~see, torch.finfo(dtype).min)
    return ids.to(device), off.to(device), bias.to(device), last


def _verify_groups(model, seqs: list[list[int]], groups, pad: int) -> dict[int, float]:
    """Verifier logits of the members of a batch of :func:`prefix_groups`: the prefixes prefilled
    right-padded without a mask (as :func:`scoring.score_batch`), then every group's suffixes as one
    branch-packed sequence on that cache; each member is scored at its last token, as the
    sequence-classification head pools a whole sequence at its last (non-pad) token."""
    base = getattr(model, model.base_model_prefix)
    dev, dtype = next(model.parameters()).device, next(model.parameters()).dtype
    ids, mask = pad_batch([seqs[m[0]][:p] for p, m in groups], pad, dev, side="right")
    pre = base(input_ids=ids, use_cache=True)
    cache = pre.cache if getattr(pre, "cache", None) is not None else pre.past_key_values
    t_ids, t_off, t_bias, last = _suffix_tree(seqs, groups, dev, dtype)
    g, c = t_ids.shape
    prompt_bias = torch.zeros(mask.shape, dtype=dtype, device=dev).masked_fill(mask == 0, torch.finfo(dtype).min)
    bias = torch.cat([prompt_bias[:, None, None, :].expand(g, 1, c, -1), t_bias[:, None]], dim=-1)
    h = base(input_ids=t_ids, attention_mask=bias, position_ids=mask.sum(-1, keepdim=True) + t_off, use_cache=True,
             **{cache_kwarg(base): cache}).last_hidden_state
    at = [(k, e, i) for k, ((_, members), ends) in enumerate(zip(groups, last)) for e, i in zip(ends, members)]
    logits = model.score(h[[k for k, _, _ in at], [e for _, e, _ in at]])[:, 0].float().cpu().tolist()
    return {i: x for (_, _, i), x in zip(at, logits)}


@torch.inference_mode()
def verifier_scores_shared(model, tokenizer, records: list[dict], proposals: list[tuple[str, dict | None]],
                           prompt_cfg=None, calibration: dict | None = None, batch_size: int = 16,
                           max_length: int | None = None, quiet: bool = False, logps=None) -> dict:
    """:func:`scoring.verifier_scores` (same arguments and outputs) with one prefill per step: the
    pairs of one record (the cheap proposal and E's samples) share their prompt's prefill and are
    read once each (:func:`prefix_groups`). Falls back to :func:`scoring.verifier_scores` for a
    model without a plain ``score`` head (a PEFT wrapper) or an input ending in the pad token
    (which the head's pooling would skip) or shorter than two tokens (no prefix to share)."""
    t0 = time.perf_counter()
    max_length = max_length or (calibration or {}).get("max_length")
    seqs = verifier_ids(tokenizer, records, proposals, prompt_cfg, max_length, logps)
    pad = model.config.pad_token_id
    if not hasattr(model, "score") or not hasattr(model, model.base_model_prefix) or any(len(s) < 2 or s[-1] == pad for s in seqs):
        return verifier_scores(model, tokenizer, records, proposals, prompt_cfg, calibration, batch_size, max_length, quiet, logps)
    groups = sorted(prefix_groups(seqs, [id(r) for r in records]), key=lambda g: g[0])
    raw_of: dict[int, float] = {}
    for s in _batches(len(groups), batch_size, "verifier", quiet):
        raw_of.update(_verify_groups(model, seqs, groups[s: s + batch_size], pad))
    first: dict[tuple[int, ...], int] = {}
    raw = np.array([raw_of[first.setdefault(tuple(x), i)] for i, x in enumerate(seqs)])
    return {"score": raw, "prob": apply_calibration(raw, calibration),
            "tokens": np.array([len(x) for x in seqs]), "seconds": time.perf_counter() - t0}
