"""Label scoring and call generation in one pass: calls are decoded on the scorer's KV cache.

:func:`specact.scoring.predict_role` scores the nine labels (one prefill per prompt) and then
generates each tool call with ``model.generate``, which prefills the same prompt again: on the
``default`` CPU run that second prefill was most of generation's time. Here the call is decoded
greedily on the cache the scoring pass leaves behind: it holds the prompt and the label tree
(``scoring.label_tree``), so a branch (a row and one of its labels) only feeds its label's last
token and then one token per step, attending to its prompt's real tokens, its label's tree
tokens and its own generated tokens through a 4-D additive mask. E's extra labels branch off the
same cache (the proposer's prompt is prefilled once for the proposal and all its samples).

The numbers are those of ``generate`` up to floating-point summation order (other batch shapes):
``tests/test_decoding.py`` checks that labels, calls and token counts equal
:func:`scoring.predict_role` / :func:`scoring.generate_calls`'s.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from specact.actions import LABELS, uses_tool
from specact.prompts import parse_action
from specact.scoring import CallStop, _batches, label_scorer, length_order, score_batch


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


@torch.inference_mode()
def decode_branches(model, tokenizer, scorer: dict, pre, mask: torch.Tensor, branches: list[tuple[int, str]],
                    max_new_tokens: int, stop_early: bool = True) -> list[list[int]]:
    """Greedy tokens after ``label + "\\n"`` for each branch ``(row in the batch, tool label)``, on
    the cache of :func:`scoring.score_batch`'s output ``pre`` (consumed: it is re-indexed per branch).

    Stops as ``generate`` does in :func:`scoring.generate_calls`: per branch at a settled call
    (:class:`scoring.CallStop`) or, with ``stop_early=False``, at eos (kept); else at the budget.
    Finished branches leave the batch, so a long call does not keep short ones decoding.
    """
    cache = pre.cache if getattr(pre, "cache", None) is not None else pre.past_key_values
    rows, bias, nxt, pos = _branch_start(scorer, mask, branches)
    cache.reorder_cache(rows)  # one cache row per branch (a row with several labels is copied)
    eos, n = tokenizer.eos_token_id, len(branches)
    stop = CallStop(tokenizer, 0, n, eos)
    out: list[list[int]] = [[] for _ in range(n)]
    live = list(range(n))  # branches still decoding, in the cache's batch order
    for _ in range(max_new_tokens):
        bias = torch.cat([bias, bias.new_zeros(len(live), 1)], dim=-1)  # the new token sees itself
        logits = model(input_ids=nxt, attention_mask=bias[:, None, None, :], position_ids=pos, use_cache=True,
                       **{scorer["cache_kw"]: cache}).logits[:, -1]
        tok = logits.float().argmax(-1)  # greedy, on float32 logits as generate's
        for b, t in zip(live, tok.tolist()):
            out[b].append(t)
        if stop_early:
            width = len(out[live[0]])  # live branches all have this many tokens; finished ones are padded (CallStop skips them)
            ids = torch.tensor([r + [eos] * (width - len(r)) for r in out])
            done = stop(ids).tolist()
        else:
            done = [bool(out[b]) and out[b][-1] == eos for b in range(n)]
        keep = [k for k, b in enumerate(live) if not done[b]]
        if not keep:
            break
        if len(keep) < len(live):
            sel = torch.tensor(keep, device=mask.device)
            cache.batch_select_indices(sel)
            bias, tok, pos = bias[sel], tok[sel], pos[sel]
            live = [live[k] for k in keep]
        nxt, pos = tok[:, None], pos + 1
    return [r[: stop.lengths[b]] for b, r in enumerate(out)] if stop_early else out


@torch.inference_mode()
def score_and_generate(model, tokenizer, prompts: list[list[int]], wants, batch_size: int = 16,
                       max_new_tokens: int = 64, quiet: bool = False, stop_early: bool = True) -> dict:
    """:func:`scoring.score_prompt_ids`'s label scores (the same batches, hence the same numbers) and,
    in the same pass, the greedy call tokens of every label ``wants(indices, logp)`` lists per row
    of a batch (tool labels only), decoded on that batch's cache (:func:`decode_branches`).

    Returns ``{logp: [n, 9] float64, tokens: {(i, label): [int]}, score_seconds, gen_seconds}``.
    """
    scorer = label_scorer(model, tokenizer)
    logp = np.zeros((len(prompts), scorer["n_lab"]))
    tokens: dict[tuple[int, str], list[int]] = {}
    order, t_gen, t0 = length_order(prompts), 0.0, time.perf_counter()
    for s in _batches(len(order), batch_size, "score labels, generate calls", quiet):
        idx = order[s: s + batch_size]
        scores, mask, pre = score_batch(scorer, [prompts[i] for i in idx])
        logp[idx] = scores.double().cpu().numpy()
        t = time.perf_counter()
        branches = [(k, lab) for k, labs in enumerate(wants(idx, logp[idx])) for lab in labs if uses_tool(lab)]
        if branches:
            gen = decode_branches(model, tokenizer, scorer, pre, mask, branches, max_new_tokens, stop_early)
            tokens.update({(idx[k], lab): row for (k, lab), row in zip(branches, gen)})
        del pre
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
