"""Decision points per second: one-prefill label scoring vs naive generate-and-parse (not a test).

    python -m benchmarks.bench_scoring                        # CPU, from-config Qwen3, synthetic records
    python -m benchmarks.bench_scoring --device cuda --model-spec '{"name": "Qwen/Qwen3-1.7B"}'

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
import time
from dataclasses import asdict

import numpy as np
import torch

from specact.actions import LABELS
from specact.config import ModelSpec
from specact.models import load_model, load_tokenizer, model_stats, pick_device
from specact.prompts import PromptConfig, parse_action, prompt_ids
from specact.scoring import (
    cache_kwarg, compile_scorer, continuation_scores, label_continuations, label_tree, pad_batch, score_labels,
    score_prompt_ids,
)
from specact.tokenization import bpe_corpus

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
    conts = label_continuations(tok)
    seqs = [p + list(c) for p in prompts for c in conts]
    dev = next(model.parameters()).device
    for s in range(0, len(seqs), batch_size):
        ids, mask = pad_batch(seqs[s: s + batch_size], tok.pad_token_id, dev)
        model(input_ids=ids, attention_mask=mask, position_ids=(mask.cumsum(-1) - 1).clamp(min=0))


@torch.inference_mode()
def score_left_padded(model, tok, prompts, batch_size):
    """The scorer before right padding (for a same-run comparison): left-padded prompts, a padding
    mask and explicit positions in the prefill -- SDPA then runs its masked kernel. The continuation
    forward is the scorer's own."""
    conts = label_continuations(tok)
    dev, dtype = next(model.parameters()).device, next(model.parameters()).dtype
    tree, cache_kw = label_tree(conts, dev, dtype), cache_kwarg(model)
    first_tok = torch.tensor([c[0] for c in conts], device=dev)
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    out = []
    for s in range(0, len(order), batch_size):
        ids, mask = pad_batch([prompts[i] for i in order[s: s + batch_size]], tok.pad_token_id, dev)
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


def parse_args(argv=None):
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
    a.sweep, a.batch_size = a.batch_size, a.batch_size[0]
    return a


class Bench:
    """The model, prompts and device every row of the table is measured on."""

    def __init__(self, a):
        if a.threads:
            torch.set_num_threads(a.threads)
        self.a = a
        self.spec = ModelSpec(**json.loads(a.model_spec)) if a.model_spec else ModelSpec(config=DEFAULT_CONFIG, tokenizer="bpe:2048")
        self.cfg = PromptConfig(max_prompt_tokens=a.max_prompt_tokens, tool_schema="compact", max_message_chars=600)
        self.recs = records(a.n, a.seed)
        self.dev = pick_device(a.device)
        self.tok = load_tokenizer(self.spec, None, bpe_corpus(self.recs, self.cfg) if self.spec.config else None)
        self.model = load_model(self.spec, "causal-lm", self.dev, tokenizer=self.tok, seed=a.seed)
        self.dtype = next(self.model.parameters()).dtype
        self.stats = model_stats(self.model, self.tok, context=a.max_prompt_tokens)
        self.prompts = [prompt_ids(self.tok, r, self.cfg) for r in self.recs]
        self.ctx = float(np.mean([len(p) for p in self.prompts]))

    def score(self, batch_size: int, n: int | None = None):
        return score_prompt_ids(self.model, self.tok, self.prompts[:n], batch_size, quiet=True)

    def timed(self, fn):
        return timed(fn, self.dev)


def time_scorers(b: Bench) -> dict:
    """Seconds of each scoring row (warm: one batch first at each shape), and the eager scores."""
    a, t = b.a, {}
    b.score(a.batch_size, a.batch_size)  # warm-up (kernels, allocator)
    t["render+score"], t["res"] = b.timed(lambda: score_labels(b.model, b.tok, b.recs, b.cfg, a.batch_size, quiet=True))
    t["render"], _ = b.timed(lambda: [prompt_ids(b.tok, r, b.cfg) for r in b.recs])
    t["score"], t["eager"] = b.timed(lambda: b.score(a.batch_size))
    t["sweep"] = {}
    for bs in a.sweep[1:]:
        b.score(bs, bs)  # warm-up at this shape
        t["sweep"][bs], _ = b.timed(lambda: b.score(bs))  # noqa: B023
    score_left_padded(b.model, b.tok, b.prompts[: a.batch_size], a.batch_size)  # warm-up
    t["left"], _ = b.timed(lambda: score_left_padded(b.model, b.tok, b.prompts, a.batch_size))
    return t


def profile_scorer(b: Bench) -> None:
    cuda = b.dev.type == "cuda"
    acts = [torch.profiler.ProfilerActivity.CPU] + ([torch.profiler.ProfilerActivity.CUDA] if cuda else [])
    with torch.profiler.profile(activities=acts) as prof:
        b.timed(lambda: b.score(b.a.batch_size))
    key = "self_cuda_time_total" if cuda else "self_cpu_time_total"
    print(prof.key_averages().table(sort_by=key, row_limit=15, max_name_column_width=60))


def time_compiled(b: Bench, eager: np.ndarray) -> float:
    """Seconds of the scorer under compile_scorer (after compiling and one warm run); prints its scores' agreement."""
    a = b.a
    compile_scorer(b.model)
    t_first, _ = b.timed(lambda: b.score(a.batch_size, 2 * a.batch_size))
    b.score(a.batch_size, 2 * a.batch_size)  # warm-up, compiled
    t_compiled, got = b.timed(lambda: b.score(a.batch_size))
    print(f"torch.compile: first two batches {t_first:.1f} s (compiling); dynamo {dict(torch._dynamo.utils.counters['stats'])}")
    compile_scorer(b.model, False)
    if b.dtype != torch.float32:
        # bf16 rounds differently under fusion: judge both against float32 scores, not each other.
        ref_n = min(a.n, 128)
        m32 = load_model(ModelSpec(**{**asdict(b.spec), "dtype": "float32"}), "causal-lm", b.dev, tokenizer=b.tok, seed=a.seed)
        ref = score_prompt_ids(m32, b.tok, b.prompts[:ref_n], a.batch_size, quiet=True)
        del m32
        for name, x in (("eager", eager[:ref_n]), ("compiled", got[:ref_n])):
            d = np.abs(x - ref)
            print(f"{name} {b.dtype} vs float32 scores ({ref_n} points): max |diff| {d.max():.3f}, mean {d.mean():.4f}, "
                  f"same argmax {np.mean(x.argmax(1) == ref.argmax(1)):.3f}")
    print(f"torch.compile vs eager scores: max |diff| {np.abs(got - eager).max():.2e}, "
          f"same argmax {np.mean(got.argmax(1) == eager.argmax(1)):.3f}")
    return t_compiled


def time_baselines(b: Bench) -> dict:
    """Nine forwards without KV reuse, one-by-one generate + parse, and the matmul floors (s per point)."""
    a = b.a
    nine_n = min(a.n, 4 * a.n_generate)  # 9x the tokens: a subset is enough for a rate
    t_nine, _ = b.timed(lambda: nine_forwards(b.model, b.tok, b.prompts[:nine_n], a.batch_size))
    gen_prompts = b.prompts[: a.n_generate]
    t_gen, labels = b.timed(lambda: generate_one_by_one(b.model, b.tok, gen_prompts, a.max_new_tokens))
    rate = matmul_rate(b.dev, b.dtype)
    # The card's dense rate: big square products (8192^3 on a GPU) reach what small ones do not.
    peak = matmul_rate(b.dev, b.dtype, 8192 if b.dev.type == "cuda" else 2048, 10)
    work = 2 * b.stats["params_total"] * b.ctx  # FLOPs of one decision point's prefill
    return {"nine": t_nine / nine_n, "gen": t_gen / len(gen_prompts), "labels": labels, "rate": rate, "peak": peak,
            "floor": work / rate, "floor_peak": work / peak}


def print_table(b: Bench, t: dict, base: dict, t_compiled: float | None) -> None:
    a, n = b.a, b.a.n
    print(f"device={b.dev} dtype={b.dtype} params={b.stats['params_total']:,} (non-emb {b.stats['params_non_embedding']:,}) "
          f"mean prompt={b.ctx:.0f} tokens batch={a.batch_size} threads={torch.get_num_threads()}")
    print(f"matmul rate: {base['rate'] / 1e12:.3f} TFLOP/s at 2048^3, {base['peak'] / 1e12:.3f} TFLOP/s at the card's largest shape ({b.dtype})")
    print("(the first row renders prompts too; the rows after it take pre-tokenized prompts)")
    print(f"{'method':<44}{'points/s':>12}{'s/point':>12}")
    per_point = [("score_labels (render + score)", t["render+score"] / n), ("  prompt rendering alone", t["render"] / n),
                 (f"one-prefill scoring (pre-tokenized, b{a.batch_size})", t["score"] / n),
                 *[(f"one-prefill scoring (pre-tokenized, b{bs})", s / n) for bs, s in t["sweep"].items()],
                 (f"  the same, left-padded + mask (before, b{a.batch_size})", t["left"] / n),
                 *([(f"  the same, torch.compile (b{a.batch_size})", t_compiled / n)] if t_compiled else []),
                 ("9 forwards (no KV reuse, batched)", base["nine"]), ("generate + parse, one at a time", base["gen"]),
                 ("floor: 2 x params x ctx / rate (2048^3)", base["floor"]),
                 ("floor: 2 x params x ctx / rate (peak shape)", base["floor_peak"])]
    for name, spp in per_point:
        print(f"{name:<44}{1 / spp:>12.1f}{spp:>12.5f}")
    best = min([t["score"], *t["sweep"].values(), *([t_compiled] if t_compiled else [])]) / n
    print(f"best one-prefill scoring: {best / base['floor']:.2f}x the floor at the 2048^3 rate, "
          f"{best / base['floor_peak']:.2f}x at the peak-shape rate; {base['gen'] / best:.0f}x the naive baseline; "
          f"right padding {t['left'] / t['score']:.2f}x faster than left")
    pred = [LABELS[j] for j in t["res"]["logp"].argmax(1)]
    print(f"(untrained unless the spec is: score_labels predicts {len(set(pred))} distinct labels; "
          f"generate parsed a label for {sum(x is not None for x in base['labels'])}/{len(base['labels'])})")


def main(argv=None):
    b = Bench(parse_args(argv))
    t = time_scorers(b)
    if b.a.profile:
        profile_scorer(b)
    t_compiled = time_compiled(b, t["eager"]) if b.a.compile else None
    print_table(b, t, time_baselines(b), t_compiled)


if __name__ == "__main__":
    main()
