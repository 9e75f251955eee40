"""Trainer plumbing shared by the SFT roles (:mod:`specact.train`) and the verifier
(:mod:`specact.verifier`): training arguments and version shims, evaluation and best-checkpoint
arguments, saving and logs, the role tokenizer and the run's prompt cache, the finishing tail.

A low module: it imports neither trainer, so the trainers import it and never each other.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import shutil
from dataclasses import asdict
from pathlib import Path

import torch

from specact import launch
from specact.config import ModelSpec, PromptConfig
from specact.models import load_tokenizer, model_stats
from specact.prompts import load_prompt_cache, save_prompt_cache, tokenizer_fingerprint

META_FILE = "specact_model.json"  # how to rebuild a saved model: spec, seed, task, adapter or not


def _precision(device: torch.device) -> dict:
    bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()
    return {"bf16": bf16, "fp16": False, "use_cpu": device.type == "cpu"}


def adapter_inputs_uncast(model, active: bool):
    """Context: peft's LoRA layers stop casting their input to the adapter's fp32 dtype.

    peft keeps the adapters in fp32 over a bf16 base and casts every adapter input up to fp32;
    under bf16 autocast the adapter's matmul then casts it straight back to bf16. The two copies
    of a [tokens, width] activation per adapter (210 adapters in SmolLM2: all-linear x 30 layers)
    are pure memory traffic: the round trip bf16 -> fp32 -> bf16 is exact, so the matmul, the
    loss and the fp32 master weights of the adapters are the same without it
    (``tests/test_train.py``). Only for autocast: without it the dtypes would not match.
    """
    from peft.helpers import disable_input_dtype_casting

    return disable_input_dtype_casting(model, active=active)


def _training_arg_names() -> set[str]:
    from transformers import TrainingArguments

    return {f.name for f in dataclasses.fields(TrainingArguments)}


def _version_args(warmup_ratio: float) -> dict:
    """Argument names that moved in transformers 5: warmup ratio and activation checkpointing."""
    names = _training_arg_names()
    # transformers 5 folded warmup_ratio into warmup_steps (a float in [0, 1) is a ratio).
    out = {"warmup_ratio": warmup_ratio} if "warmup_ratio" in names else {"warmup_steps": warmup_ratio}
    # trl's SFTConfig turns checkpointing on by default: ~20-30% slower steps small models don't need.
    out["activation_checkpointing" if "activation_checkpointing" in names else "gradient_checkpointing"] = False
    return out


def _sampling_args(group_by_length: bool) -> dict:
    """Length-grouped batches: ``train_sampling_strategy`` in newer transformers 5, ``group_by_length`` before."""
    if not group_by_length:
        return {}
    return {"train_sampling_strategy": "group_by_length"} if "train_sampling_strategy" in _training_arg_names() else {"group_by_length": True}


def report_to(choice: str) -> str:
    """The Trainer's ``report_to`` for ``OptimConfig.report_to``: TensorBoard only where it is installed."""
    import importlib.util
    import warnings

    if choice == "tensorboard" and not any(importlib.util.find_spec(m) for m in ("tensorboard", "tensorboardX")):
        warnings.warn("report_to=tensorboard but tensorboard is not installed: training logs go to log_history.json only")
        return "none"
    return choice


def common_args(cfg, out_dir: Path, seed: int, device: torch.device, quiet: bool) -> dict:
    """TrainingArguments fields shared by SFT and verifier training (both config dataclasses have them)."""
    return dict(
        output_dir=str(out_dir / "checkpoints"), seed=seed, data_seed=seed,
        learning_rate=cfg.learning_rate, max_steps=cfg.max_steps or -1, num_train_epochs=cfg.num_train_epochs,
        per_device_train_batch_size=cfg.per_device_train_batch_size,
        gradient_accumulation_steps=cfg.gradient_accumulation_steps,
        logging_steps=cfg.logging_steps, logging_first_step=True, report_to=report_to(getattr(cfg, "report_to", "none")), disable_tqdm=quiet,
        save_strategy="steps" if getattr(cfg, "save_steps", 0) else "no", save_steps=getattr(cfg, "save_steps", 0) or 500,
        save_total_limit=1, dataloader_num_workers=0,  # workers cost more than they save on 2 cores
        # Padding-free rows hold no padding, and a pad id equal to eos would miss each example's eos.
        include_num_input_tokens_seen="all" if getattr(cfg, "padding_free", False) else "non_padding", **_precision(device), **_version_args(cfg.warmup_ratio),
        **_sampling_args(getattr(cfg, "group_by_length", False)), torch_compile=getattr(cfg, "torch_compile", False),
        # Every trainable parameter gets a gradient each step (LoRA on all linear layers, or the whole
        # model): Trainer's default (True without checkpointing) costs an extra autograd-graph pass per step.
        ddp_find_unused_parameters=False,
    )


def eval_args(cfg, batch_size: int) -> dict:
    """Dev loss during training and the best checkpoint kept (``cfg.eval_steps``; 0 = once per epoch).

    Checkpoints follow the evaluations (``load_best_model_at_end`` needs the two schedules equal);
    ``save_total_limit=1`` still keeps the best one beside the latest.
    """
    strategy = "steps" if cfg.eval_steps else "epoch"
    return dict(eval_strategy=strategy, eval_steps=cfg.eval_steps or None, save_strategy=strategy,
                save_steps=cfg.eval_steps or 500, load_best_model_at_end=True, metric_for_best_model="eval_loss",
                greater_is_better=False, per_device_eval_batch_size=batch_size, prediction_loss_only=True)


def early_stopping(cfg) -> list:
    """Trainer callbacks: stop after ``cfg.early_stopping_patience`` evaluations without a better dev loss."""
    from transformers import EarlyStoppingCallback

    return [EarlyStoppingCallback(cfg.early_stopping_patience)] if cfg.early_stopping_patience else []


def dev_subset(records: list[dict], n: int, seed: int) -> list[dict]:
    """A seeded sample of ``n`` dev records for the loss evaluated during training (0 or more = all)."""
    import numpy as np

    if not n or len(records) <= n:
        return list(records)
    keep = np.sort(np.random.default_rng(seed).choice(len(records), n, replace=False))
    return [records[i] for i in keep]


def one_gpu_per_process(args):
    """Training arguments that drive one GPU per process. Several GPUs visible to one process make
    the Trainer wrap the model in ``nn.DataParallel`` (slower than DDP; trl refuses it): here more
    GPUs mean ``num_processes`` (DDP through ``accelerate launch``), so force one (as Trainer does
    for model parallelism)."""
    if args.n_gpu > 1:
        args._n_gpu = 1
    return args


def resuming() -> bool:
    """True only where what an earlier attempt left (checkpoints, a finished model, a fold's held-out
    predictions) was made by the same job: the runner's stage key vouches for it. Outside the runner
    (a notebook by hand, a sweep) every training starts fresh."""
    return os.environ.get(launch.RESUME_ENV) == "1"


def start_fresh(out_dir: Path, *names: str) -> None:
    """Unless :func:`resuming`, remove ``out_dir/checkpoints`` and ``names`` an earlier attempt left:
    the Trainer would otherwise resume another configuration's checkpoint, and a finished part of
    another configuration would be reused. Call it in the launching process, before any rank trains."""
    if resuming() or launch.in_launched_job():
        return
    for name in ("checkpoints", *names):
        path = Path(out_dir) / name
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


def finished_metrics(out_dir: Path, *needs: str) -> dict | None:
    """The metrics of a training this attempt's job already finished (resuming only): ``metrics.json``
    and every path in ``needs`` present under ``out_dir``."""
    out_dir = Path(out_dir)
    if not resuming() or not (out_dir / "metrics.json").is_file() or not all((out_dir / n).exists() for n in needs):
        return None
    return json.loads((out_dir / "metrics.json").read_text())


def last_checkpoint(out_dir: Path) -> str | None:
    from transformers.trainer_utils import get_last_checkpoint

    ck = Path(out_dir) / "checkpoints"
    return get_last_checkpoint(str(ck)) if ck.is_dir() else None


def write_logs(out_dir: Path, log_history: list[dict]) -> None:
    """``log_history.json`` as the Trainer kept it, and ``loss_curve.csv`` (one row per logged training
    or dev loss: step, epoch, split, loss, learning rate, grad norm) to plot."""
    (out_dir / "log_history.json").write_text(json.dumps(log_history, indent=1))
    with (out_dir / "loss_curve.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["step", "epoch", "split", "loss", "learning_rate", "grad_norm"])
        for e in log_history:
            if "loss" in e:
                w.writerow([e.get("step"), e.get("epoch"), "train", e["loss"], e.get("learning_rate"), e.get("grad_norm")])
            if "eval_loss" in e:
                w.writerow([e.get("step"), e.get("epoch"), "dev", e["eval_loss"], None, None])


def save_model(trainer_model, tokenizer, out: Path, spec: ModelSpec, seed: int, task: str, **extra) -> None:
    out.mkdir(parents=True, exist_ok=True)
    trainer_model.save_pretrained(str(out))  # a PeftModel writes only the adapter (+ modules_to_save)
    tokenizer.save_pretrained(str(out))
    adapter = (out / "adapter_config.json").is_file()
    meta = {"spec": asdict(spec), "seed": seed, "task": task, "adapter": adapter, **extra}
    (out / META_FILE).write_text(json.dumps(meta, indent=1, sort_keys=True))


def role_tokenizer(spec: ModelSpec, run_dir, records: list[dict], prompt_cfg: PromptConfig, train_texts=None):
    """The tokenizer of ``spec``; a ``bpe:<vocab>`` one not yet cached in ``run_dir`` is trained on
    ``records`` (pass the whole training split: every stage then trains the same tokenizer).
    Prompts an earlier stage of the run rendered with this tokenizer are loaded into the memo."""
    from specact.tokenization import bpe_corpus, bpe_dir

    if (train_texts is None and spec.config and spec.tokenizer.startswith("bpe:") and run_dir is not None
            and not (bpe_dir(run_dir, int(spec.tokenizer[4:])) / "tokenizer.json").is_file()):
        train_texts = bpe_corpus(records, prompt_cfg)
    tok = load_tokenizer(spec, run_dir, train_texts)
    if run_dir is not None:
        load_prompt_cache(prompt_cache_path(run_dir, tok))
    return tok


def prompt_cache_path(run_dir, tokenizer) -> Path:
    """Where a run keeps the prompts rendered with ``tokenizer`` (shared by every stage that uses it)."""
    return Path(run_dir) / "cache" / f"prompts-{tokenizer_fingerprint(tokenizer)}.pkl"


def save_prompts(run_dir, tokenizer) -> None:
    """Save the prompts rendered with ``tokenizer`` for the run's later stages (process 0 only)."""
    if run_dir is not None and launch.is_main():
        save_prompt_cache(prompt_cache_path(run_dir, tokenizer), tokenizer)


_save_prompts = save_prompts  # the name specact.verifier still calls


def finish(model, tokenizer, out_dir: Path, metrics: dict, prompt_cfg: PromptConfig, max_length: int, run_dir) -> dict:
    """The tail every training role shares: drop the checkpoints (the saved model supersedes them), add
    parameter and FLOP counts, write ``metrics.json``, save the run's rendered prompts."""
    shutil.rmtree(out_dir / "checkpoints", ignore_errors=True)
    metrics.update(model_stats(model, tokenizer, context=min(prompt_cfg.max_prompt_tokens, max_length)))
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=1))
    save_prompts(run_dir, tokenizer)
    return metrics


def maybe_launch(target: str, n: int, out_dir: Path, kwargs: dict, result_file: Path):
    """Re-run ``target`` ("module:function") under ``accelerate launch`` on ``n`` processes and return
    process 0's result; None when this process should train itself (one process, or already launched)."""
    if n <= 1 or launch.in_launched_job():
        return None
    return launch.run(target, n, out_dir, kwargs, result_file)
