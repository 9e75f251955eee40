"""Size a GPU profile: seconds per training step and per scored / generated decision point.

Runs the study's own code (specact.train._train_sft, specact.scoring) on the real data for a
few steps per role and prompt setting, and prints one JSON line per measurement, e.g.

    python -m scripts.gpu.bench_throughput --model .weights/smollm2-135m-instruct \
        --prompts compact:3072 full:6144 --steps 12 --batch-size 16

A step's cost is the difference between a long and a short run (model load, CUDA start-up
and first-step autotuning cancel out). Not a test; nothing of the study depends on it.
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
from specact.prompts import PromptConfig, prompt_ids


def emit(**kw):
    print(json.dumps(kw, default=lambda o: round(float(o), 4)), flush=True)


def train_seconds(records, spec, lora, steps, batch, prompt_cfg, max_length, tmp):
    from specact.train import _train_sft

    cfg = TrainConfig(model=spec, lora=lora, max_steps=steps, per_device_train_batch_size=batch,
                      max_length=max_length, logging_steps=max(steps, 1), learning_rate=1e-4)
    t0 = time.perf_counter()
    model, tok, metrics, trainer = _train_sft(records, cfg, prompt_cfg, Path(tmp), 0, None, True)
    wall = time.perf_counter() - t0
    peak = torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else 0.0
    del model, trainer
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    return wall, metrics, peak


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="save_pretrained directory of the base model")
    ap.add_argument("--prompts", nargs="+", default=["compact:3072"], help="tool_schema:max_prompt_tokens settings")
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--cheap-layers", type=int, default=6)
    ap.add_argument("--n-score", type=int, default=256)
    ap.add_argument("--n-generate", type=int, default=64)
    ap.add_argument("--score-batch", type=int, default=32)
    ap.add_argument("--max-new-tokens", type=int, default=48)
    ap.add_argument("--roles", nargs="+", default=["strong", "cheap"])
    return ap.parse_args(argv)


def prompt_lengths(tok, train, setting: str, pcfg) -> np.ndarray:
    t1 = time.perf_counter()
    sample = train[:: max(1, len(train) // 200)][:200]  # spread over sources (records come in collection order)
    lens = np.array([len(prompt_ids(tok, r, pcfg)) for r in sample])
    emit(what="prompt_tokens", setting=setting, render_ms_per_record=1000 * (time.perf_counter() - t1) / len(sample),
         mean=lens.mean(), p50=np.median(lens), p90=np.percentile(lens, 90), max=lens.max())
    return lens


def measure_training(args, train_sub, role, spec, lora, setting, pcfg, max_length, lens) -> None:
    """Seconds per step: the difference between a (2 + steps)-step and a 2-step run."""
    with tempfile.TemporaryDirectory() as tmp:
        try:
            short, _, _ = train_seconds(train_sub, spec, lora, 2, args.batch_size, pcfg, max_length, tmp + "/a")
            long, m, peak = train_seconds(train_sub, spec, lora, 2 + args.steps, args.batch_size, pcfg, max_length, tmp + "/b")
            per_step = (long - short) / args.steps
            emit(what="train", role=role, lora=lora, setting=setting, batch=args.batch_size, s_per_step=per_step,
                 examples_per_s=args.batch_size / per_step, tokens_per_s_est=args.batch_size * lens.mean() / per_step,
                 wall_short=short, wall_long=long, peak_gib=peak, final_loss=m.get("final_loss"))
        except Exception as e:  # noqa: BLE001 - report and carry on with the other measurements
            emit(what="train", role=role, setting=setting, error=f"{type(e).__name__}: {str(e)[:300]}")


def measure_inference(args, dev, role, spec, tok, setting, pcfg) -> None:
    """Seconds per scored point and per generated call, the role's base model untrained."""
    from specact.models import load_model
    from specact.scoring import generate_calls, score_labels

    try:
        model = load_model(spec, "causal-lm", tokenizer=tok)
        sub = dev[:: max(1, len(dev) // args.n_score)][: args.n_score]
        score_labels(model, tok, sub[:8], pcfg, args.score_batch, quiet=True)  # warm-up
        res = score_labels(model, tok, sub, pcfg, args.score_batch, quiet=True)
        emit(what="score", role=role, setting=setting, n=len(sub), s_per_point=res["seconds"] / len(sub))
        gsub = [r for r in dev if r["label"] in ("tool_call", "file_read", "file_write", "retrieval")][: args.n_generate]
        g = generate_calls(model, tok, gsub, [r["label"] for r in gsub], pcfg, args.max_new_tokens, args.score_batch, quiet=True)
        emit(what="generate", role=role, setting=setting, n=len(gsub), s_per_point=g["seconds"] / max(len(gsub), 1),
             mean_gen_tokens=g["gen_tokens"].mean())
        del model
    except Exception as e:  # noqa: BLE001
        emit(what="score", role=role, setting=setting, error=f"{type(e).__name__}: {str(e)[:300]}")
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def main(argv=None):
    args = parse_args(argv)
    from specact.data.build import build_records
    from specact.models import load_tokenizer

    t0 = time.perf_counter()
    recs = build_records(DataConfig(max_steps_per_trajectory=6), 0)
    emit(what="data", seconds=time.perf_counter() - t0, sizes={k: len(v) for k, v in recs.items()})
    train, dev = recs["train"], recs["dev"]
    emit(what="device", name=torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
         torch=torch.__version__, bf16=torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    roles = {"strong": (ModelSpec(name=args.model), True), "cheap": (ModelSpec(name=args.model, num_layers=args.cheap_layers), False)}
    tok = load_tokenizer(ModelSpec(name=args.model))
    for setting in args.prompts:
        schema, budget = setting.split(":")
        pcfg = PromptConfig(max_prompt_tokens=int(budget), tool_schema=schema, max_message_chars=2000)
        lens = prompt_lengths(tok, train, setting, pcfg)
        need = args.batch_size * (args.steps + 2)
        train_sub = train[:: max(1, len(train) // need)][:need]  # tokenizing all of train would cost minutes of CPU
        for role in args.roles:
            spec, lora = roles[role]
            measure_training(args, train_sub, role, spec, lora, setting, pcfg, int(budget) + 128, lens)
            measure_inference(args, dev, role, spec, tok, setting, pcfg)


if __name__ == "__main__":
    main()
