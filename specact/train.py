"""Supervised training of the proposer and the strong model, cross-fitting, and reloading.

The alignment-handbook recipe around a :class:`~specact.config.TrainConfig`: trl ``SFTTrainer``
with completion-only loss, peft LoRA on every linear projection (or full fine-tuning for the
from-config CPU models), accelerate device handling through the Trainer.

Train-time ids are eval-time ids, by construction: the prompt/completion text comes from
:func:`specact.prompts.sft_example` and we tokenize it ourselves exactly as scoring does
(``add_special_tokens=False``; completion ``+ eos``) and hand trl a pre-tokenized dataset
(``input_ids`` + ``completion_mask``). trl's own text path would call ``tokenizer(text)`` with
special tokens on (a second BOS for Llama/Gemma-style tokenizers) and tokenize
prompt+completion jointly (merges across the boundary); ``tests/test_train.py`` checks the ids.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import shutil
import time
from collections import Counter
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from datasets import Dataset

from specact import launch, packing
from specact.actions import LABELS
from specact.config import ModelSpec, TrainConfig
from specact.models import load_model, load_tokenizer, model_stats, pick_device
from specact.prompts import PromptConfig, load_prompt_cache, save_prompt_cache, sft_example, tokenizer_fingerprint

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


def common_args(cfg, out_dir: Path, seed: int, device: torch.device, quiet: bool) -> dict:
    """TrainingArguments fields shared by SFT and verifier training (both config dataclasses have them)."""
    return dict(
        output_dir=str(out_dir / "checkpoints"), seed=seed, data_seed=seed,
        learning_rate=cfg.learning_rate, max_steps=cfg.max_steps or -1, num_train_epochs=cfg.num_train_epochs,
        per_device_train_batch_size=cfg.per_device_train_batch_size,
        gradient_accumulation_steps=cfg.gradient_accumulation_steps,
        logging_steps=cfg.logging_steps, logging_first_step=True, report_to="none", disable_tqdm=quiet,
        save_strategy="steps" if getattr(cfg, "save_steps", 0) else "no", save_steps=getattr(cfg, "save_steps", 0) or 500,
        save_total_limit=1, dataloader_num_workers=0,  # workers cost more than they save on 2 cores
        # Padding-free rows hold no padding, and a pad id equal to eos would miss each example's eos.
        include_num_input_tokens_seen="all" if getattr(cfg, "padding_free", False) else "non_padding", **_precision(device), **_version_args(cfg.warmup_ratio),
        **_sampling_args(getattr(cfg, "group_by_length", False)), torch_compile=getattr(cfg, "torch_compile", False),
        # Every trainable parameter gets a gradient each step (LoRA on all linear layers, or the whole
        # model): Trainer's default (True without checkpointing) costs an extra autograd-graph pass per step.
        ddp_find_unused_parameters=False,
    )


def one_gpu_per_process(args):
    """Training arguments that drive one GPU per process. Several GPUs visible to one process make
    the Trainer wrap the model in ``nn.DataParallel`` (slower than DDP; trl refuses it): here more
    GPUs mean ``num_processes`` (DDP through ``accelerate launch``), so force one (as Trainer does
    for model parallelism)."""
    if args.n_gpu > 1:
        args._n_gpu = 1
    return args


def last_checkpoint(out_dir: Path) -> str | None:
    from transformers.trainer_utils import get_last_checkpoint

    ck = Path(out_dir) / "checkpoints"
    return get_last_checkpoint(str(ck)) if ck.is_dir() else None


def tokenize_sft(tokenizer, records: list[dict], prompt_cfg: PromptConfig, max_length: int) -> tuple[Dataset, int]:
    """Pre-tokenized prompt-completion rows for SFTTrainer, and how many were too long to keep.

    An over-long example is dropped, not truncated: truncation would cut the completion (trl
    keeps the start) or the prompt's start (then train and eval prompts differ).
    """
    rows = {"input_ids": [], "completion_mask": []}
    dropped = 0
    for rec in records:
        ex = sft_example(tokenizer, rec, prompt_cfg)
        p = tokenizer(ex["prompt"], add_special_tokens=False)["input_ids"]
        c = tokenizer(ex["completion"], add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        if len(p) + len(c) > max_length:
            dropped += 1
            continue
        rows["input_ids"].append(p + c)
        rows["completion_mask"].append([0] * len(p) + [1] * len(c))
    return Dataset.from_dict(rows), dropped


def write_logs(out_dir: Path, log_history: list[dict]) -> None:
    """``log_history.json`` as the Trainer kept it, and ``loss_curve.csv`` (step, epoch, loss, lr) to plot."""
    (out_dir / "log_history.json").write_text(json.dumps(log_history, indent=1))
    with (out_dir / "loss_curve.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["step", "epoch", "loss", "learning_rate", "grad_norm"])
        for e in log_history:
            if "loss" in e:
                w.writerow([e.get("step"), e.get("epoch"), e["loss"], e.get("learning_rate"), e.get("grad_norm")])


def save_model(trainer_model, tokenizer, out: Path, spec: ModelSpec, seed: int, task: str, **extra) -> None:
    out.mkdir(parents=True, exist_ok=True)
    trainer_model.save_pretrained(str(out))  # a PeftModel writes only the adapter (+ modules_to_save)
    tokenizer.save_pretrained(str(out))
    adapter = (out / "adapter_config.json").is_file()
    meta = {"spec": asdict(spec), "seed": seed, "task": task, "adapter": adapter, **extra}
    (out / META_FILE).write_text(json.dumps(meta, indent=1, sort_keys=True))


def _completion_trainer_cls():
    """trl ``SFTTrainer`` with a loss that projects only the completion positions onto the vocabulary.

    The completion is ~5-40 tokens after a prompt of hundreds. trl's fused head computes log-probs
    (and entropy / token-accuracy metrics) at every position: about half the step time of the
    small CPU models, and a vocabulary-sized row per position for a 151k-vocab model on GPU.
    Same loss and gradients (sum over completion tokens / their count); those metrics go unlogged.
    """
    import torch.nn.functional as F
    from trl import SFTTrainer

    class CompletionOnlySFTTrainer(SFTTrainer):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            base = getattr(model, "module", model)  # DDP wrapper
            base = base.get_base_model() if hasattr(base, "get_base_model") else base  # LoRA layers stay injected
            cfg = base.config.get_text_config() if hasattr(base.config, "get_text_config") else base.config
            if getattr(cfg, "final_logit_softcapping", None) or getattr(cfg, "logit_scale", None):
                return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)  # heads we'd bypass
            # Through `model` (DDP / PeftModel wrappers included): calling the inner module directly
            # would skip DDP's forward and leave the gradients unsynchronised across processes.
            # logits_to_keep=1 makes the full head cost one position; hidden_states[-1] is the
            # final-normed last hidden state.
            # Padding-free batches bring position_ids and the example boundaries (specact.packing).
            out = model(**packing.model_inputs(inputs), use_cache=False, logits_to_keep=1, output_hidden_states=True)
            hidden = out.hidden_states[-1]
            target = inputs["labels"][:, 1:]
            keep = target != -100
            head = base.get_output_embeddings()
            # LoRA adapters run in fp32 (peft's default), so the hidden state may be fp32 over a bf16 head.
            logits = head(hidden[:, :-1][keep].to(head.weight.dtype)).float()
            n = num_items_in_batch if num_items_in_batch is not None else keep.sum()
            loss = F.cross_entropy(logits, target[keep], reduction="sum") / torch.as_tensor(n, device=logits.device).clamp(min=1)
            if num_items_in_batch is not None and self.args.average_tokens_across_devices:
                # n counts the completion tokens of every process; DDP then averages the gradients
                # over processes, so scale back up, as Trainer.compute_loss does (x1 on one process).
                loss = loss * self.accelerator.num_processes
            return (loss, None) if return_outputs else loss

    return CompletionOnlySFTTrainer


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


def _save_prompts(run_dir, tokenizer) -> None:
    if run_dir is not None and launch.is_main():
        save_prompt_cache(prompt_cache_path(run_dir, tokenizer), tokenizer)


def _train_sft(records_train, cfg: TrainConfig, prompt_cfg, out_dir: Path, seed: int, run_dir, quiet: bool,
               device=None, train_texts=None, tok=None):
    """Train and return (model, tokenizer, partial metrics, trainer); the public functions add evaluation."""
    from peft import LoraConfig
    from trl import SFTConfig

    dev = pick_device(device)
    world = launch.world()[1]
    cfg = launch.split_batch(cfg, world)  # the same global batch on 1 or N processes
    if cfg.torch_compile:  # as benchmarked: room for the re-traces that dynamic lengths and graph breaks cause
        torch._dynamo.config.cache_size_limit = max(torch._dynamo.config.cache_size_limit, 64)
    tok = tok or role_tokenizer(cfg.model, run_dir, records_train, prompt_cfg, train_texts)
    # Full FT keeps fp32 master weights (bf16 autocast on GPU); LoRA freezes the base, bf16 is fine.
    dtype = None if cfg.lora else torch.float32
    model = load_model(cfg.model, "causal-lm", dev, run_dir, tokenizer=tok, seed=seed, dtype=dtype)
    ds, dropped = tokenize_sft(tok, records_train, prompt_cfg, cfg.max_length)
    if len(ds) == 0:
        raise ValueError(f"no training example fits max_length={cfg.max_length} (all {dropped} dropped); raise train.max_length or lower prompt.max_prompt_tokens")
    peft_cfg = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                          target_modules="all-linear", task_type="CAUSAL_LM") if cfg.lora else None
    # Padding-free: trl flattens each micro-batch (over-long examples are already dropped, so no max_length).
    args = one_gpu_per_process(SFTConfig(**common_args(cfg, out_dir, seed, dev, quiet), completion_only_loss=True,
                                         max_length=None if cfg.padding_free else cfg.max_length, packing=False,
                                         padding_free=cfg.padding_free))
    trainer = _completion_trainer_cls()(model=model, args=args, train_dataset=ds, processing_class=tok, peft_config=peft_cfg)
    t0 = time.perf_counter()
    with packing.training_attention(trainer.model, cfg.padding_free), adapter_inputs_uncast(trainer.model, cfg.lora and args.bf16):
        out = trainer.train(resume_from_checkpoint=last_checkpoint(out_dir))
    wall = time.perf_counter() - t0
    if launch.is_main():
        write_logs(out_dir, trainer.state.log_history)
    losses = [e["loss"] for e in trainer.state.log_history if "loss" in e]
    tokens = int(trainer.state.num_input_tokens_seen or 0)
    metrics = {
        "n_train": len(ds), "n_dropped_overlong": dropped, "steps": trainer.state.global_step,
        "train_loss": out.training_loss, "first_loss": losses[0] if losses else None, "final_loss": losses[-1] if losses else None,
        "train_seconds": wall, "train_tokens": tokens, "tokens_per_second": tokens / wall if wall > 0 else None,
        "lora": cfg.lora, "device": str(dev), "bf16": args.bf16, "num_processes": world, "padding_free": cfg.padding_free,
        "global_batch": launch.global_batch(cfg, world),
    }
    model = trainer.model.eval()
    return model, tok, metrics, trainer


def _label_accuracy(model, tok, records, prompt_cfg, batch_size, quiet) -> tuple[dict, np.ndarray]:
    from specact.scoring import score_labels

    res = score_labels(model, tok, records, prompt_cfg, batch_size, quiet=quiet)
    pred = res["logp"].argmax(1)
    gold = np.array([LABELS.index(r["label"]) for r in records])
    return {"dev_acc": float((pred == gold).mean()), "dev_score_seconds": res["seconds"],
            "dev_prompt_tokens_mean": float(res["prompt_tokens"].mean())}, res["logp"]


def train_sft(records_train: list[dict], records_dev: list[dict], cfg: TrainConfig, prompt_cfg: PromptConfig | None,
              out_dir, seed: int = 0, run_dir=None, *, batch_size: int = 16, quiet: bool = False,
              device=None, train_texts: list[str] | None = None) -> dict:
    """SFT ``cfg.model`` on the decision points; save to ``out_dir/model``; return and write metrics.json.

    A ``bpe:<vocab>`` tokenizer not cached in ``run_dir`` yet is trained on ``records_train``
    (or on ``train_texts``). Resumes from ``out_dir/checkpoints`` if present.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    prompt_cfg = prompt_cfg or PromptConfig()
    if cfg.num_processes > 1 and not launch.in_launched_job():
        role_tokenizer(cfg.model, run_dir, records_train, prompt_cfg, train_texts)  # once, before the processes share it
        return launch.run("train_sft", cfg.num_processes, out_dir, dict(
            records_train=records_train, records_dev=records_dev, cfg=cfg, prompt_cfg=prompt_cfg, out_dir=str(out_dir),
            seed=seed, run_dir=run_dir, batch_size=batch_size, quiet=quiet, train_texts=train_texts), out_dir / "metrics.json")
    model, tok, metrics, _ = _train_sft(records_train, cfg, prompt_cfg, out_dir, seed, run_dir, quiet, device, train_texts)
    if not launch.is_main():
        return metrics  # process 0 saves and evaluates
    save_model(model, tok, out_dir / "model", cfg.model, seed, "causal-lm")
    shutil.rmtree(out_dir / "checkpoints", ignore_errors=True)  # the saved model supersedes them
    majority = Counter(r["label"] for r in records_train).most_common(1)[0][0]
    metrics.update({"majority_label": majority, "n_dev": len(records_dev)})
    if records_dev:
        acc, _ = _label_accuracy(model, tok, records_dev, prompt_cfg, batch_size, quiet)
        metrics.update(acc, majority_acc=float(np.mean([r["label"] == majority for r in records_dev])))
    metrics.update(model_stats(model, tok, context=min(prompt_cfg.max_prompt_tokens, cfg.max_length)))
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=1))
    _save_prompts(run_dir, tok)
    return metrics


def folds_by_trajectory(records: list[dict], k: int, seed: int) -> list[int]:
    """Fold index of each record; a trajectory's steps always share a fold (no leakage across folds)."""
    trajs = sorted({r["meta"]["trajectory_id"] for r in records})
    if k < 2 or k > len(trajs):
        raise ValueError(f"crossfit needs 2 <= k <= #trajectories ({len(trajs)}), got k={k}")
    perm = np.random.default_rng(seed).permutation(len(trajs))
    fold_of = {trajs[j]: i % k for i, j in enumerate(perm)}
    return [fold_of[r["meta"]["trajectory_id"]] for r in records]


def crossfit(records_train: list[dict], cfg: TrainConfig, prompt_cfg: PromptConfig | None, k: int, out_dir, seed: int = 0,
             run_dir=None, *, batch_size: int = 16, max_new_tokens: int = 64, quiet: bool = False, device=None) -> list[dict]:
    """Held-out-fold proposer predictions on the training set: ``[{id, label, call, logp, gold}]``
    (every training point, or ``cfg.crossfit_examples`` sampled per fold).

    Each of ``k`` proposers (folds by trajectory) predicts the fold it never saw, so the verifier
    later trains on the mistakes a proposer really makes on unseen data, not on memorised rows.
    ``run_dir`` (holding the BPE tokenizer) defaults to ``out_dir``'s parent, as in DESIGN.md.
    Fold models are not kept; their logs go to ``out_dir/crossfit/fold<i>/``.
    """
    from specact.scoring import generate_calls, score_labels

    out_dir = Path(out_dir)
    run_dir = run_dir if run_dir is not None else out_dir.parent
    prompt_cfg = prompt_cfg or PromptConfig()
    fold = folds_by_trajectory(records_train, k, seed)
    tok = role_tokenizer(cfg.model, run_dir, records_train, prompt_cfg)  # the whole split, not a fold
    if cfg.num_processes > 1 and not launch.in_launched_job():
        return launch.run("crossfit", cfg.num_processes, out_dir, dict(
            records_train=records_train, cfg=cfg, prompt_cfg=prompt_cfg, k=k, out_dir=str(out_dir), seed=seed,
            run_dir=run_dir, batch_size=batch_size, max_new_tokens=max_new_tokens, quiet=quiet), out_dir / "crossfit.jsonl")
    rows: dict[int, dict] = {}
    for f in range(k):
        train = [r for r, g in zip(records_train, fold) if g != f]
        held_idx = [i for i, g in enumerate(fold) if g == f]
        if cfg.crossfit_examples and len(held_idx) > cfg.crossfit_examples:
            # A seeded sample of the fold: the verifier needs a sample of real mistakes, and
            # generating calls for every held-out point dominated the stage (CPU and GPU alike).
            pick = np.random.default_rng([seed, f]).choice(len(held_idx), cfg.crossfit_examples, replace=False)
            held_idx = [held_idx[j] for j in sorted(pick)]
        held = [records_train[i] for i in held_idx]
        fdir = out_dir / "crossfit" / f"fold{f}"
        fdir.mkdir(parents=True, exist_ok=True)
        fold_cfg = dataclasses.replace(cfg, max_steps=cfg.crossfit_max_steps or cfg.max_steps)
        model, _, metrics, _ = _train_sft(train, fold_cfg, prompt_cfg, fdir, seed + f, run_dir, quiet, device, tok=tok)
        if not launch.is_main():
            continue  # process 0 predicts the held-out fold; the others wait for it in the next fold's DDP setup
        res = score_labels(model, tok, held, prompt_cfg, batch_size, quiet=quiet)
        labels = [LABELS[j] for j in res["logp"].argmax(1)]
        calls = generate_calls(model, tok, held, labels, prompt_cfg, max_new_tokens, batch_size, quiet=quiet)["calls"]
        metrics["heldout_acc"] = float(np.mean([lab == r["label"] for lab, r in zip(labels, held)]))
        (fdir / "metrics.json").write_text(json.dumps(metrics, indent=1))
        shutil.rmtree(fdir / "checkpoints", ignore_errors=True)
        for i, lab, call, lp in zip(held_idx, labels, calls, res["logp"]):
            rows[i] = {"id": records_train[i]["id"], "label": lab, "call": call, "logp": lp.tolist(), "gold": records_train[i]["label"]}
        del model
    out = [rows[i] for i in sorted(rows)]
    if not launch.is_main():
        return out
    _save_prompts(run_dir, tok)
    with (out_dir / "crossfit.jsonl").open("w") as fh:
        for r in out:
            fh.write(json.dumps(r, sort_keys=True) + "\n")
    return out


def load_trained(out_dir, spec: ModelSpec | None = None, task: str | None = None, device=None, merge: bool = True):
    """(model, tokenizer) saved by :func:`train_sft` / :func:`train_verifier` in ``out_dir/model``.

    An adapter is put back on a base rebuilt from the saved spec and seed (``spec`` / ``task``
    override them) and merged for inference speed (``merge=False`` keeps the PeftModel).
    """
    mdir = Path(out_dir) / "model"
    meta_file = mdir / META_FILE
    if not meta_file.is_file():
        raise FileNotFoundError(f"no trained model at {mdir} (missing {META_FILE}); run the training stage first")
    meta = json.loads(meta_file.read_text())
    spec = spec or ModelSpec(**meta["spec"])
    task = task or meta["task"]
    tok = load_tokenizer(ModelSpec(name=str(mdir)))
    if not meta["adapter"]:
        return load_model(ModelSpec(name=str(mdir), dtype=spec.dtype), task, device, tokenizer=tok), tok
    from peft import PeftModel

    base = load_model(spec, task, device, tokenizer=tok, seed=meta["seed"])
    model = PeftModel.from_pretrained(base, str(mdir))
    return (model.merge_and_unload() if merge else model).eval(), tok


from specact.verifier import train_verifier  # noqa: E402,F401  (public API lives here; split for length)
