"""Padding-free training: a micro-batch flattened into one row, attention kept within each example.

trl's ``padding_free`` collator concatenates the batch's examples into a single row and returns
``position_ids`` restarting at 0 per example plus the boundaries ``cu_seq_lens_q/k`` and
``max_length_q/k``. transformers then needs an attention kernel that reads those boundaries;
its own ones (``flash_attention_2/3``) need the ``flash-attn`` package, which has no wheel for
this stack. :func:`varlen_attention` is that kernel from torch itself:

* CUDA: ``torch.nn.attention.varlen.varlen_attn`` (FlashAttention-2 inside torch, causal, no
  mask tensor): no compute on padding and none of the per-shape mask work SDPA does with a
  padding mask;
* CPU (tests, smoke runs): one causal SDPA call per example, the same arithmetic.

The name is registered with transformers' ``AttentionInterface`` and set on the model only for
the training loop (:func:`training_attention`), then put back: scoring's label-tree forward
attends through a 4-D mask, which needs a mask-taking kernel. ``tests/test_packing.py`` checks
that the padding-free loss and gradients equal the padded ones.
"""

from __future__ import annotations

import contextlib
import functools
import inspect

import torch
import torch.nn.functional as F

NAME = "specact_varlen"


def _repeat_kv(x: torch.Tensor, groups: int) -> torch.Tensor:
    return x if groups == 1 else x.repeat_interleave(groups, dim=1)


@functools.lru_cache(maxsize=1)
def _varlen_api() -> tuple[dict, bool]:
    """(causal keyword, takes grouped-query k/v) for this torch's ``varlen_attn``: the API moved
    between releases (torch 2.11: ``window_size`` only; earlier ``is_causal``; later ``enable_gqa``)."""
    from torch.nn.attention.varlen import varlen_attn

    params = inspect.signature(varlen_attn).parameters
    causal = {"is_causal": True} if "is_causal" in params else {"window_size": (-1, 0)}
    return causal, "enable_gqa" in params


def _cuda_varlen(q, k, v, cu, max_len, scale):
    """q/k/v: [T, heads, dim] in fp16/bf16 -> [T, heads, dim]; causal within each [cu[i], cu[i+1])."""
    from torch.nn.attention.varlen import varlen_attn

    causal, gqa = _varlen_api()
    kw = dict(causal, scale=scale)
    if gqa:
        kw["enable_gqa"] = True
    else:  # give keys/values as many heads as queries (safe on every kernel)
        k, v = (_repeat_kv(x, q.shape[1] // k.shape[1]) for x in (k, v))
    return varlen_attn(q, k, v, cu, cu, max_len, max_len, **kw)


@torch.compiler.disable  # under torch.compile: a graph break, not a recompile per batch's max length
def varlen_attention(module, query, key, value, attention_mask, dropout: float = 0.0, scaling=None, **kwargs):
    """transformers attention function: query [1, H, T, D], key/value [1, Hkv, T, D] -> ([1, T, H, D], None).

    Reads ``cu_seq_lens_q`` / ``max_length_q`` from the forward's kwargs (the padding-free
    collator's); without them the row is one causal sequence.
    """
    if attention_mask is not None:
        raise ValueError(f"{NAME} attention takes no mask: it is for padding-free batches (see specact.packing)")
    if dropout:
        raise ValueError(f"{NAME} attention has no attention dropout (the model's attention_dropout is {dropout})")
    if query.shape[0] != 1:
        raise ValueError(f"{NAME} attention expects one flattened row per micro-batch, got batch {query.shape[0]}")
    T = query.shape[2]
    cu = kwargs.get("cu_seq_lens_q")
    if cu is None:
        cu = torch.tensor([0, T], dtype=torch.int32, device=query.device)
        max_len = T
    else:
        cu = cu.to(device=query.device, dtype=torch.int32)
        max_len = int(kwargs.get("max_length_q") or T)
    q, k, v = (x[0].transpose(0, 1) for x in (query, key, value))  # [T, heads, D]
    if query.is_cuda:
        if q.dtype not in (torch.float16, torch.bfloat16):  # fp32 master weights under autocast: rotary gives fp32
            low = torch.get_autocast_dtype("cuda") if torch.is_autocast_enabled("cuda") else torch.bfloat16
            q, k, v = q.to(low), k.to(low), v.to(low)
        out = _cuda_varlen(q, k, v, cu, max_len, scaling)
    else:
        groups = q.shape[1] // k.shape[1]
        bounds = cu.tolist()
        parts = []
        for s, e in zip(bounds[:-1], bounds[1:]):
            if e > s:
                qs, ks, vs = (x[s:e].transpose(0, 1) for x in (q, _repeat_kv(k, groups), _repeat_kv(v, groups)))
                parts.append(F.scaled_dot_product_attention(qs, ks, vs, is_causal=True, scale=scaling).transpose(0, 1))
        out = torch.cat(parts, 0)
    return out[None], None


def register() -> str:
    """Register :func:`varlen_attention` under ``NAME`` with transformers (idempotent) and return the name."""
    from transformers import AttentionInterface

    AttentionInterface.register(NAME, varlen_attention)
    return NAME


def _inner(model):
    base = getattr(model, "module", model)
    return base.get_base_model() if hasattr(base, "get_base_model") else base


@contextlib.contextmanager
def training_attention(model, enabled: bool = True):
    """Within the block the model runs :func:`varlen_attention`; its previous kernel comes back after."""
    if not enabled:
        yield model
        return
    inner = _inner(model)
    before = inner.config._attn_implementation
    inner.set_attn_implementation(register())
    try:
        yield model
    finally:
        inner.set_attn_implementation(before)


def model_inputs(inputs: dict) -> dict:
    """The keys of a (padding-free or padded) collated batch that the model's forward takes."""
    keep = ("input_ids", "attention_mask", "position_ids", "cu_seq_lens_q", "cu_seq_lens_k", "max_length_q", "max_length_k")
    return {k: inputs[k] for k in keep if inputs.get(k) is not None}
