"""Decision points per second: one-prefill label scoring vs naive generate-and-parse (not a test).

    python benchmarks/bench_scoring.py                        # CPU, from-config Qwen3, synthetic records
    python benchmarks/bench_scoring.py --device cuda --model-spec '{"name": "Qwen/Qwen3-1.7B"}'

Rows printed:
* ``score_labels``: the batched one-prefill scorer end to end (prompt rendering included), and
  the same on pre-tokenized prompts (9 label continuations packed as a tree on the prompt's cache);
* ``9 forwards``: the same scores without cache reuse (prompt+label, 9 forwards per point, batched);
* ``generate``: one example at a time, greedy ``generate`` of the completion, then ``parse_action``
  -- what a naive "ask the model for its action" loop costs;
* ``floor``: 2 x params x context tokens / the measured dense-matmul rate: the compute a single
  prefill needs at best. The gap to ``score_labels`` is overhead (attention, padding, framework).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from specact.actions import LABELS  # noqa: E402
from specact.config import ModelSpec  # noqa: E402
from specact.models import load_model, load_tokenizer, model_stats, pick_device  # noqa: E402
from specact.prompts import PromptConfig, parse_action, prompt_ids  # noqa: E402
from specact.scoring import compile_scorer, score_labels, score_prompt_ids  # noqa: E402
from specact.tokenization import bpe_corpus  # noqa: E402

DEFAULT_CONFIG = {"hidden_size": 256, "intermediate_size": 768, "num_hidden_layers": 6, "num_attention_heads": 8,
                  "num_key_value_heads": 4, "head_dim": 32}  # the default profile's strong model (~4.7 M)


def records(n: int, seed: int) -> list[dict]:
    from specact.data.synthetic import generate

    out = generate(max(4, n // 3), seed=seed)
    while len(out) < n:
        out += generate(max(4, n // 3), seed=seed + len(out))
    return out[:n]


def matmul_rate(device: torch.device, dtype: torch.dtype, size: int = 2048, reps: int = 20) -> float:
    """Dense matmul FLOP/s on this device and dtype (the roofline a prefill can approach)."""
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(reps):
        a @ b
    _sync(device)
    return 2 * size**3 * reps / (time.perf_counter() - t0)


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


@torch.inference_mode()
def nine_forwards(model, tok, prompts, batch_size):
    """Label scores without KV reuse: each (prompt, label) pair is its own padded sequence."""
    from specact.scoring import _continuations, _pad

    conts = _continuations(tok)
    seqs = [p + list(c) for p in prompts for c in conts]
    dev = next(model.parameters()).device
    for s in range(0, len(seqs), batch_size):
        ids, mask = _pad(seqs[s: s + batch_size], tok.pad_token_id, dev)
        model(input_ids=ids, attention_mask=mask, position_ids=(mask.cumsum(-1) - 1).clamp(min=0))


@torch.inference_mode()
def score_left_padded(model, tok, prompts, batch_size):
    """The scorer before right padding (for a same-run comparison): left-padded prompts, a padding
    mask and explicit positions in the prefill -- SDPA then runs its masked kernel. The continuation
    forward is the scorer's own."""
    from specact.scoring import _cache_kwarg, _continuations, _pad, _tree, continuation_scores

    conts = _continuations(tok)
    dev, dtype = next(model.parameters()).device, next(model.parameters()).dtype
    tree, cache_kw = _tree(conts, dev, dtype), _cache_kwarg(model)
    first_tok = torch.tensor([c[0] for c in conts], device=dev)
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    out = []
    for s in range(0, len(order), batch_size):
        ids, mask = _pad([prompts[i] for i in order[s: s + batch_size]], tok.pad_token_id, dev)
        pre = model(input_ids=ids, attention_mask=mask, position_ids=(mask.cumsum(-1) - 1).clamp(min=0), use_cache=True, logits_to_keep=1)
        head = torch.log_softmax(pre.logits[:, -1].float(), -1)[:, first_tok]
        out.append(head + continuation_scores(model, pre, mask, tree, cache_kw, len(conts)))
    return torch.cat(out).cpu()


@torch.inference_mode()
def generate_one_by_one(model, tok, prompts, max_new_tokens):
    dev = next(model.parameters()).device
    labels = []
    for p in prompts:
        out = model.generate(input_ids=torch.tensor([p], device=dev), max_new_tokens=max_new_tokens, do_sample=False,
                             eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
        labels.append(parse_action(tok.decode(out[0, len(p):], skip_special_tokens=True))[0])
    return labels


def timed(fn, device):
    _sync(device)
    t0 = time.perf_counter()
    out = fn()
    _sync(device)
    return time.perf_counter() - t0, out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default=None)
    ap.add_argument("--model-spec", default="", help="ModelSpec fields as JSON (default: a from-config Qwen3)")
    ap.add_argument("--n", type=int, default=64, help="decision points")
    ap.add_argument("--n-generate", type=int, default=16, help="decision points for the slow one-by-one baseline")
    ap.add_argument("--batch-size", type=int, nargs="+", default=[16],
                    help="decision points per batch; several values add one pre-tokenized scoring row each (the first is used elsewhere)")
    ap.add_argument("--max-prompt-tokens", type=int, default=384)
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: leave as is)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--profile", action="store_true", help="print a torch.profiler table of one scoring pass")
    ap.add_argument("--compile", action="store_true", help="add a row: the one-prefill scorer under torch.compile (specact.scoring.compile_scorer), "
                    "and its scores and the eager ones against float32 (bf16 models)")
    a = ap.parse_args(argv)
    sweep, a.batch_size = a.batch_size, a.batch_size[0]
    if a.threads:
        torch.set_num_threads(a.threads)
    spec = ModelSpec(**json.loads(a.model_spec)) if a.model_spec else ModelSpec(config=DEFAULT_CONFIG, tokenizer="bpe:2048")
    cfg = PromptConfig(max_prompt_tokens=a.max_prompt_tokens, tool_schema="compact", max_message_chars=600)
    recs = records(a.n, a.seed)
    dev = pick_device(a.device)
    tok = load_tokenizer(spec, None, bpe_corpus(recs, cfg) if spec.config else None)
    model = load_model(spec, "causal-lm", dev, tokenizer=tok, seed=a.seed)
    dtype = next(model.parameters()).dtype
    stats = model_stats(model, tok, context=a.max_prompt_tokens)
    prompts = [prompt_ids(tok, r, cfg) for r in recs]
    ctx = float(np.mean([len(p) for p in prompts]))
    score_prompt_ids(model, tok, prompts[: a.batch_size], a.batch_size, quiet=True)  # warm-up (kernels, allocator)

    t_score, res = timed(lambda: score_labels(model, tok, recs, cfg, a.batch_size, quiet=True), dev)
    t_prompt, _ = timed(lambda: [prompt_ids(tok, r, cfg) for r in recs], dev)
    t_tok, eager_scores = timed(lambda: score_prompt_ids(model, tok, prompts, a.batch_size, quiet=True), dev)
    t_sweep = {}
    for bs in sweep[1:]:
        score_prompt_ids(model, tok, prompts[:bs], bs, quiet=True)  # warm-up at this shape
        t_sweep[bs], _ = timed(lambda: score_prompt_ids(model, tok, prompts, bs, quiet=True), dev)  # noqa: B023
    score_left_padded(model, tok, prompts[: a.batch_size], a.batch_size)  # warm-up
    t_left, _ = timed(lambda: score_left_padded(model, tok, prompts, a.batch_size), dev)
    if a.profile:
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]
                                    + ([torch.profiler.ProfilerActivity.CUDA] if dev.type == "cuda" else [])) as prof:
            timed(lambda: score_prompt_ids(model, tok, prompts, a.batch_size, quiet=True), dev)
        key = "self_cuda_time_total" if dev.type == "cuda" else "self_cpu_time_total"
        print(prof.key_averages().table(sort_by=key, row_limit=15, max_name_column_width=60))
    t_compiled = None
    if a.compile:  # the same scorer through specact.scoring.compile_scorer (torch.compile, dynamic shapes)
        compile_scorer(model)
        t_first, _ = timed(lambda: score_prompt_ids(model, tok, prompts[: 2 * a.batch_size], a.batch_size, quiet=True), dev)
        score_prompt_ids(model, tok, prompts[: 2 * a.batch_size], a.batch_size, quiet=True)  # warm-up, compiled
        t_compiled, got = timed(lambda: score_prompt_ids(model, tok, prompts, a.batch_size, quiet=True), dev)
        print(f"torch.compile: first two batches {t_first:.1f} s (compiling); dynamo {dict(torch._dynamo.utils.counters['stats'])}")
        compile_scorer(model, False)
        if dtype != torch.float32:
            # bf16 rounds differently under fusion: judge both against float32 scores, not each other.
            ref_n = min(a.n, 128)
            m32 = load_model(ModelSpec(**{**asdict(spec), "dtype": "float32"}), "causal-lm", dev, tokenizer=tok, seed=a.seed)
            ref = score_prompt_ids(m32, tok, prompts[:ref_n], a.batch_size, quiet=True)
            del m32
            for name, x in (("eager", eager_scores[:ref_n]), ("compiled", got[:ref_n])):
                d = np.abs(x - ref)
                print(f"{name} {dtype} vs float32 scores ({ref_n} points): max |diff| {d.max():.3f}, mean {d.mean():.4f}, "
                      f"same argmax {np.mean(x.argmax(1) == ref.argmax(1)):.3f}")
        print(f"torch.compile vs eager scores: max |diff| {np.abs(got - eager_scores).max():.2e}, "
              f"same argmax {np.mean(got.argmax(1) == eager_scores.argmax(1)):.3f}")
    nine_n = min(a.n, 4 * a.n_generate)  # 9x the tokens: a subset is enough for a rate
    t_nine, _ = timed(lambda: nine_forwards(model, tok, prompts[:nine_n], a.batch_size), dev)
    gen_prompts = prompts[: a.n_generate]
    t_gen, labels = timed(lambda: generate_one_by_one(model, tok, gen_prompts, a.max_new_tokens), dev)
    rate = matmul_rate(dev, dtype)
    # The card's dense rate: big square products (8192^3 on a GPU) reach what small ones do not.
    peak = matmul_rate(dev, dtype, 8192 if dev.type == "cuda" else 2048, 10)
    floor = 2 * stats["params_total"] * ctx / rate  # seconds per decision point at the matmul roofline
    floor_peak = 2 * stats["params_total"] * ctx / peak

    print(f"device={dev} dtype={dtype} params={stats['params_total']:,} (non-emb {stats['params_non_embedding']:,}) "
          f"mean prompt={ctx:.0f} tokens batch={a.batch_size} threads={torch.get_num_threads()}")
    print(f"matmul rate: {rate / 1e12:.3f} TFLOP/s at 2048^3, {peak / 1e12:.3f} TFLOP/s at the card's largest shape ({dtype})")
    print("(the first row renders prompts too; the rows after it take pre-tokenized prompts)")
    print(f"{'method':<44}{'points/s':>12}{'s/point':>12}")
    rows = [("score_labels (render + score)", a.n / t_score, t_score / a.n),
            ("  prompt rendering alone", a.n / t_prompt, t_prompt / a.n),
            (f"one-prefill scoring (pre-tokenized, b{a.batch_size})", a.n / t_tok, t_tok / a.n),
            *[(f"one-prefill scoring (pre-tokenized, b{bs})", a.n / t, t / a.n) for bs, t in t_sweep.items()],
            (f"  the same, left-padded + mask (before, b{a.batch_size})", a.n / t_left, t_left / a.n),
            *([(f"  the same, torch.compile (b{a.batch_size})", a.n / t_compiled, t_compiled / a.n)] if t_compiled else []),
            ("9 forwards (no KV reuse, batched)", nine_n / t_nine, t_nine / nine_n),
            ("generate + parse, one at a time", len(gen_prompts) / t_gen, t_gen / len(gen_prompts)),
            ("floor: 2 x params x ctx / rate (2048^3)", 1 / floor, floor),
            ("floor: 2 x params x ctx / rate (peak shape)", 1 / floor_peak, floor_peak)]
    for name, pps, spp in rows:
        print(f"{name:<44}{pps:>12.1f}{spp:>12.5f}")
    best = min([t_tok, *t_sweep.values(), *([t_compiled] if t_compiled else [])]) / a.n
    print(f"best one-prefill scoring: {best / floor:.2f}x the floor at the 2048^3 rate, {best / floor_peak:.2f}x at the peak-shape rate; "
          f"{t_gen / len(gen_prompts) / best:.0f}x the naive baseline; right padding {t_left / t_tok:.2f}x faster than left")
    pred = [LABELS[j] for j in res["logp"].argmax(1)]
    print(f"(untrained unless the spec is: score_labels predicts {len(set(pred))} distinct labels; "
          f"generate parsed a label for {sum(x is not None for x in labels)}/{len(labels)})")


if __name__ == "__main__":
    main()
