"""Training throughput and model FLOPs utilisation (MFU) of a role, per batching setting (not a test).

    python -m scripts.gpu.bench_mfu --model .weights/smollm2-135m-instruct --steps 30 \
        --variants lora:grouped:16 lora:flat:16 full:flat:16 full:flat:16:liger

Trains through the study's own path (``specact.train._train_sft``: trl SFTTrainer, completion-only
loss) on the real training prompts of the ``gpu`` profile, one run per variant
``<lora|full>:<random|grouped|flat>:<per-device batch>[:flag...]``. ``flat`` is the padding-free
path (``TrainConfig.padding_free``: one row per micro-batch, torch's varlen flash attention).
Flags: ``nodrop`` (LoRA dropout 0: no dropout kernels), ``liger`` (liger-kernel's fused Triton
RMSNorm / rotary / SwiGLU patched into transformers' Llama classes -- a class-level patch, so
list liger variants last), ``compile`` (``TrainConfig.torch_compile``), ``peftcast`` (LoRA as
before ``specact.train.adapter_inputs_uncast``: peft casts every adapter input to fp32), ``prof`` (a
torch.profiler table of steps 6-8). Steady-state rate: a callback times every
step (CUDA synchronised) and the rate comes from the second half of the steps, leaving out
start-up, autotuning and any outlier step (over 3x the median).

MFU = model FLOPs per second / the card's measured dense bf16 matmul rate (8192^3 products).
Model FLOPs per trained token, counted as the work this trainer must do (PaLM appendix B style):

* linear layers: 6 x non-embedding params (forward 2, backward 4); LoRA: 4 x (the frozen weights
  need input gradients only) + 6 x adapter params;
* attention scores and values: 6 x layers x (heads x head_dim) x T per token of a length-T
  sequence (causal: half of 12), averaged over the real length distribution;
* vocabulary head: 6 x hidden x vocab on completion tokens only (the loss projects only those).

The common ``6 x params`` convention is printed beside it.

``--config`` measures a wider model of the same trainer with random weights (the paper-scale
shapes cannot be downloaded here): e.g. Qwen3-1.7B's, with the SmolLM2 tokenizer,

    python -m scripts.gpu.bench_mfu --tokenizer .weights/smollm2-tokenizer --config \
        '{"hidden_size": 2048, "intermediate_size": 6144, "num_hidden_layers": 28, "num_attention_heads": 16,
          "num_key_value_heads": 8, "head_dim": 128, "tie_word_embeddings": true}' --variants lora:flat:8:nodrop:compile
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from specact.config import DataConfig, ModelSpec, TrainConfig
from specact.prompts import PromptConfig
from benchmarks.bench_scoring import matmul_rate  # the same measurement the scoring floor uses


def emit(**kw):
    print(json.dumps(kw, default=lambda o: round(float(o), 4)), flush=True)


CUDA = torch.cuda.is_available()


def _sync():
    if CUDA:
        torch.cuda.synchronize()


class StepClock:
    """TrainerCallback: wall time and tokens seen at the end of each step (after a CUDA sync)."""

    def __init__(self, profile: bool = False):
        self.marks = []
        self.profile, self.prof = profile, None

    def on_step_begin(self, args, state, control, **kw):
        if self.profile and state.global_step == 5:  # steps 6-8: past warm-up and autotuning
            self.prof = torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]
                                               + ([torch.profiler.ProfilerActivity.CUDA] if CUDA else []))
            self.prof.__enter__()

    def __getattr__(self, name):  # every other callback event is a no-op
        if name.startswith("on_"):
            return lambda *a, **k: None
        raise AttributeError(name)

    def on_step_end(self, args, state, control, **kw):
        _sync()
        self.marks.append((time.perf_counter(), int(state.num_input_tokens_seen or 0)))
        if self.prof is not None and state.global_step == 8:
            self.prof.__exit__(None, None, None)
            ka = self.prof.key_averages()
            dev_key = "device_time_total" if CUDA else "cpu_time_total"
            busy = sum(getattr(e, "self_device_time_total", 0) for e in ka) / 1e6 / 3
            print(f"PROFILE 3 steps: device-busy {busy:.3f} s per step (kernel time); wall {self.marks[-1][0] - self.marks[-4][0]:.3f} s for 3 steps")
            print(ka.table(sort_by="self_" + dev_key, row_limit=25, max_name_column_width=60))
            print(ka.table(sort_by="self_cpu_time_total", row_limit=12, max_name_column_width=60))
            self.prof = None


def flops_per_token(model_cfg, n_nonemb: int, n_lora: int, lens: np.ndarray, comp: np.ndarray, lora: bool) -> dict:
    L = model_cfg.num_hidden_layers
    d_attn = model_cfg.num_attention_heads * getattr(model_cfg, "head_dim", model_cfg.hidden_size // model_cfg.num_attention_heads)
    linear = (4 * n_nonemb + 6 * n_lora) if lora else 6 * n_nonemb
    attn = 6 * L * d_attn * float((lens**2).sum() / lens.sum())
    head = 6 * model_cfg.hidden_size * model_cfg.vocab_size * float(comp.sum() / lens.sum())
    return {"linear": linear, "attention": attn, "head": head, "total": linear + attn + head}


def run_variant(train, spec, lora, order, batch, flags, steps, pcfg, max_length, rate, tmp, profile=False):
    from specact.train import _train_sft, tokenize_sft

    clock = StepClock(profile)
    import contextlib
    from unittest import mock

    import transformers

    import specact.train

    orig = transformers.Trainer.__init__

    def init(self, *a, **k):  # add the clock to whatever trainer _train_sft builds
        orig(self, *a, **k)
        self.add_callback(clock)

    if "liger" in flags:
        from liger_kernel.transformers import apply_liger_kernel_to_llama

        apply_liger_kernel_to_llama(rope=True, rms_norm=True, swiglu=True, cross_entropy=False, fused_linear_cross_entropy=False)
    cfg = TrainConfig(model=spec, lora=lora, max_steps=steps, per_device_train_batch_size=batch, max_length=max_length,
                      logging_steps=steps, learning_rate=1e-4, group_by_length=order == "grouped",
                      padding_free=order == "flat", torch_compile="compile" in flags, lora_dropout=0.0 if "nodrop" in flags else TrainConfig.lora_dropout)
    if CUDA:
        torch.cuda.reset_peak_memory_stats()
    with contextlib.ExitStack() as patches:
        patches.enter_context(mock.patch.object(transformers.Trainer, "__init__", init))
        if "peftcast" in flags:  # the behaviour before: peft casts each adapter input up to fp32
            patches.enter_context(mock.patch.object(specact.train, "adapter_inputs_uncast",
                                                    lambda model, active: contextlib.nullcontext()))
        model, tok, metrics, trainer = _train_sft(train, cfg, pcfg, Path(tmp), 0, None, True)
    ds, _ = tokenize_sft(tok, train, pcfg, max_length)  # the examples trained on (prompts are memoised)
    lens = np.array([len(x) for x in ds["input_ids"]])
    comp = np.array([sum(m) for m in ds["completion_mask"]])
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    emb = sum(p.numel() for n, p in base.named_parameters() if "embed_tokens" in n or "lm_head" in n)
    n_lora = sum(p.numel() for n, p in model.named_parameters() if "lora_" in n)
    n_all = sum(p.numel() for p in base.parameters()) - n_lora
    fpt = flops_per_token(base.config, n_all - emb, n_lora, lens, comp, lora)
    # Steady state: the second half of the steps, without any step slower than 3x the median.
    d = [(t1 - t0, k1 - k0) for (t0, k0), (t1, k1) in zip(clock.marks[:-1], clock.marks[1:])][len(clock.marks) // 2:]
    med = float(np.median([x for x, _ in d]))
    kept = [(x, k) for x, k in d if x <= 3 * med]
    tps = sum(k for _, k in kept) / sum(x for x, _ in kept)
    emit(what="train", lora=lora, order=order, flags=flags, batch=batch, steps=len(clock.marks), s_per_step=med,
         steps_timed=len(kept),
         tokens_per_s=tps, mean_len=lens.mean(), flops_per_token=fpt, model_tflops=tps * fpt["total"] / 1e12,
         mfu=tps * fpt["total"] / rate, mfu_6n=tps * 6 * n_all / rate, peak_gib=torch.cuda.max_memory_allocated() / 2**30 if CUDA else None,
         final_loss=metrics.get("final_loss"),
         compile_stats=dict(torch._dynamo.utils.counters["stats"]) if "compile" in flags else None)
    del model, trainer
    if CUDA:
        torch.cuda.empty_cache()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="", help="save_pretrained directory of the strong model")
    ap.add_argument("--config", default="", help="instead of --model: a from-config Qwen3 (JSON of Qwen3Config fields, random "
                    "weights -- MFU does not depend on their values), e.g. Qwen3-1.7B's shape")
    ap.add_argument("--tokenizer", default="", help="tokenizer directory for --config (default: --model)")
    ap.add_argument("--num-layers", type=int, default=0, help="keep the first k layers (the cheap roles)")
    ap.add_argument("--max-prompt-tokens", type=int, default=3072)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--profile", action="store_true", help="print torch.profiler tables of steps 6-8 of each variant")
    ap.add_argument("--dtype", default="bfloat16", help="model dtype of the spec (float32 for a CPU smoke run)")
    ap.add_argument("--examples", type=int, default=1200, help="training examples tokenized (a spread sample)")
    ap.add_argument("--variants", nargs="+", default=["lora:grouped:16", "lora:flat:16", "full:grouped:16", "full:flat:16"])
    args = ap.parse_args(argv)

    from specact.data.build import build_records

    recs = build_records(DataConfig(max_steps_per_trajectory=6), 0)["train"]
    train = recs[:: max(1, len(recs) // args.examples)][: args.examples]
    pcfg = PromptConfig(max_prompt_tokens=args.max_prompt_tokens, tool_schema="compact", max_message_chars=2000)
    # bf16 8192^3 products on a GPU; fp32 1024^3 on a CPU, for a smoke run only
    rate = matmul_rate(torch.device("cuda" if CUDA else "cpu"), torch.bfloat16 if CUDA else torch.float32, 8192 if CUDA else 1024)
    emit(what="device", name=torch.cuda.get_device_name() if CUDA else "cpu", torch=torch.__version__, bf16_matmul_tflops=rate / 1e12)
    if bool(args.model) == bool(args.config):
        ap.error("give exactly one of --model and --config")
    spec = (ModelSpec(name=args.model, num_layers=args.num_layers, dtype=args.dtype) if args.model else
            ModelSpec(config=json.loads(args.config), tokenizer=args.tokenizer, num_layers=args.num_layers, dtype=args.dtype))
    for v in args.variants:
        kind, order, batch, *flags = v.split(":")
        with tempfile.TemporaryDirectory() as tmp:
            try:
                run_variant(train, spec, kind == "lora", order, int(batch), flags, args.steps, pcfg,
                            args.max_prompt_tokens + 128, rate, tmp, args.profile or "prof" in flags)
            except Exception as e:  # noqa: BLE001 - report and go on with the other variants
                emit(what="train", variant=v, error=f"{type(e).__name__}: {str(e)[:400]}")
                if CUDA:
                    torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
