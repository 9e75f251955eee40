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

import dataclasses
import json
import shutil
import time
from collections import Counter
from pathlib import Path

import numpy as np
import torch
from datasets import Dataset

from specact import launch, packing
from specact import trainer_common as tc
from specact.actions import LABELS
from specact.config import ModelSpec, PromptConfig, TrainConfig
from specact.models import load_model, load_tokenizer, pick_device
from specact.predictions import read_rows, write_rows
from specact.prompts import completion_ids, gold_call, prompt_ids
# Re-exported: the Trainer plumbing lives in specact.trainer_common (shared with specact.verifier).
from specact.trainer_common import (META_FILE, _save_prompts, adapter_inputs_uncast, common_args,  # noqa: F401
                                    last_checkpoint, one_gpu_per_process, prompt_cache_path, role_tokenizer,
                                    save_model, save_prompts, write_logs)

MIN_PROMPT_TOKENS = 32  # a context clipped for a long completion keeps at least this much prompt


def tokenize_sft(tokenizer, records: list[dict], prompt_cfg: PromptConfig, max_length: int) -> tuple[Dataset, dict]:
    """Pre-tokenized prompt-completion rows for SFTTrainer, and what fitting them to ``max_length`` did.

    No example is dropped for length (dropping was not at random: 60% of ``repair`` steps, whose
    gold call is long): where prompt + completion overflow, the prompt is rendered again by the
    same priority builder with the budget the completion leaves, so the completion always fits
    whole. Returns ``(dataset, {"n_examples", "n_context_clipped", "labels_before", "labels_after"})``.
    """
    rows = {"input_ids": [], "completion_mask": []}
    clipped, after = 0, Counter()
    for rec in records:
        comp = completion_ids(tokenizer, rec["label"], gold_call(rec)) + [tokenizer.eos_token_id]
        prompt = prompt_ids(tokenizer, rec, prompt_cfg)
        if len(prompt) + len(comp) > max_length:
            budget = max(max_length - len(comp), MIN_PROMPT_TOKENS)
            prompt = prompt_ids(tokenizer, rec, dataclasses.replace(prompt_cfg, max_prompt_tokens=budget))
            comp = comp[:max_length - len(prompt)]  # only a completion longer than max_length itself is cut
            clipped += 1
        rows["input_ids"].append(prompt + comp)
        rows["completion_mask"].append([0] * len(prompt) + [1] * len(comp))
        after[rec["label"]] += 1
    before = Counter(r["label"] for r in records)
    return Dataset.from_dict(rows), {"n_examples": len(records), "n_context_clipped": clipped,
                                     "labels_before": dict(before), "labels_after": dict(after)}


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


def _sft_trainer(model, tok, cfg: TrainConfig, ds: Dataset, eval_ds: Dataset | None, out_dir: Path, seed: int,
                 dev, quiet: bool, eval_batch: int):
    """trl SFTTrainer (completion-only loss) with dev evaluation, best checkpoint and early stopping
    when ``eval_ds`` is given."""
    from peft import LoraConfig
    from trl import SFTConfig

    peft_cfg = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                          target_modules="all-linear", task_type="CAUSAL_LM") if cfg.lora else None
    args = tc.common_args(cfg, out_dir, seed, dev, quiet)
    if eval_ds is not None:
        args.update(tc.eval_args(cfg, eval_batch))
        if cfg.save_steps and cfg.eval_steps:
            args["save_steps"] = cfg.eval_steps  # load_best_model_at_end needs the two schedules equal
    # Padding-free: trl flattens each micro-batch (over-long contexts are already clipped, so no max_length).
    sft_args = tc.one_gpu_per_process(SFTConfig(**args, completion_only_loss=True, packing=False,
                                                max_length=None if cfg.padding_free else cfg.max_length,
                                                padding_free=cfg.padding_free))
    return _completion_trainer_cls()(model=model, args=sft_args, train_dataset=ds, eval_dataset=eval_ds,
                                     processing_class=tok, peft_config=peft_cfg,
                                     callbacks=tc.early_stopping(cfg) if eval_ds is not None else None)


def _train_sft(records_train, cfg: TrainConfig, prompt_cfg, out_dir: Path, seed: int, run_dir, quiet: bool,
               device=None, train_texts=None, tok=None, records_dev=None, eval_batch: int = 16):
    """Train and return (model, tokenizer, partial metrics, trainer); the public functions add evaluation.

    With ``records_dev``, the dev loss (on ``cfg.eval_examples`` of them) is evaluated during training
    and the best checkpoint is the model returned.
    """
    dev = pick_device(device)
    world = launch.world()[1]
    cfg = launch.split_batch(cfg, world)  # the same global batch on 1 or N processes
    if cfg.torch_compile:  # as benchmarked: room for the re-traces that dynamic lengths and graph breaks cause
        torch._dynamo.config.cache_size_limit = max(torch._dynamo.config.cache_size_limit, 64)
    tok = tok or role_tokenizer(cfg.model, run_dir, records_train, prompt_cfg, train_texts)
    # Full FT keeps fp32 master weights (bf16 autocast on GPU); LoRA freezes the base, bf16 is fine.
    model = load_model(cfg.model, "causal-lm", dev, run_dir, tokenizer=tok, seed=seed, dtype=None if cfg.lora else torch.float32)
    ds, fitting = tokenize_sft(tok, records_train, prompt_cfg, cfg.max_length)
    eval_ds = tokenize_sft(tok, tc.dev_subset(records_dev, cfg.eval_examples, seed), prompt_cfg, cfg.max_length)[0] if records_dev else None
    trainer = _sft_trainer(model, tok, cfg, ds, eval_ds, out_dir, seed, dev, quiet, eval_batch)
    t0 = time.perf_counter()
    with packing.training_attention(trainer.model, cfg.padding_free), adapter_inputs_uncast(trainer.model, cfg.lora and trainer.args.bf16):
        out = trainer.train(resume_from_checkpoint=last_checkpoint(out_dir))
    wall = time.perf_counter() - t0
    if launch.is_main():
        write_logs(out_dir, trainer.state.log_history)
    metrics = _run_metrics(trainer, out, wall, cfg, world, dev)
    metrics.update(fitting, n_train=len(ds))
    return trainer.model.eval(), tok, metrics, trainer


def _run_metrics(trainer, out, wall: float, cfg: TrainConfig, world: int, dev) -> dict:
    """What a training run did: steps and epochs, first/final/best losses, throughput, the setup."""
    log = trainer.state.log_history
    losses = [e["loss"] for e in log if "loss" in e]
    evals = [(e["step"], e["eval_loss"]) for e in log if "eval_loss" in e]
    tokens = int(trainer.state.num_input_tokens_seen or 0)
    return {
        "steps": trainer.state.global_step, "epochs": trainer.state.epoch, "train_loss": out.training_loss,
        "first_loss": losses[0] if losses else None, "final_loss": losses[-1] if losses else None,
        "dev_losses": evals, "best_dev_loss": trainer.state.best_metric,
        "best_step": min(evals, key=lambda e: e[1])[0] if evals else None,
        "stopped_early": bool(evals) and trainer.state.global_step < trainer.state.max_steps,
        "train_seconds": wall, "train_tokens": tokens, "tokens_per_second": tokens / wall if wall > 0 else None,
        "lora": cfg.lora, "device": str(dev), "bf16": trainer.args.bf16, "num_processes": world,
        "padding_free": cfg.padding_free, "global_batch": launch.global_batch(cfg, world), "learning_rate": cfg.learning_rate,
    }


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

    The dev loss is evaluated during training and the best checkpoint kept (``cfg.eval_steps``,
    ``cfg.early_stopping_patience``); dev accuracy is scored at the end on all of ``records_dev``.
    A ``bpe:<vocab>`` tokenizer not cached in ``run_dir`` yet is trained on ``records_train``
    (or on ``train_texts``). Resumes from ``out_dir/checkpoints`` if present.
    """
    from specact.prompts import prompt_parts_survival

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    prompt_cfg = prompt_cfg or PromptConfig()
    tc.start_fresh(out_dir, "metrics.json", "model")
    done = tc.finished_metrics(out_dir, "model")
    if done is not None:  # an interrupted attempt of this stage finished this training (e.g. before the folds)
        return done
    if cfg.num_processes > 1 and not launch.in_launched_job():
        role_tokenizer(cfg.model, run_dir, records_train, prompt_cfg, train_texts)  # once, before the processes share it
    launched = tc.maybe_launch("specact.train:train_sft", cfg.num_processes, out_dir, dict(
        records_train=records_train, records_dev=records_dev, cfg=cfg, prompt_cfg=prompt_cfg, out_dir=str(out_dir),
        seed=seed, run_dir=run_dir, batch_size=batch_size, quiet=quiet, train_texts=train_texts), out_dir / "metrics.json")
    if launched is not None:
        return launched
    model, tok, metrics, _ = _train_sft(records_train, cfg, prompt_cfg, out_dir, seed, run_dir, quiet, device, train_texts,
                                        records_dev=records_dev, eval_batch=batch_size)
    if not launch.is_main():
        return metrics  # process 0 saves and evaluates
    save_model(model, tok, out_dir / "model", cfg.model, seed, "causal-lm")
    majority = Counter(r["label"] for r in records_train).most_common(1)[0][0]
    metrics.update({"majority_label": majority, "n_dev": len(records_dev)})
    if records_dev:
        acc, _ = _label_accuracy(model, tok, records_dev, prompt_cfg, batch_size, quiet)
        metrics.update(acc, majority_acc=float(np.mean([r["label"] == majority for r in records_dev])))
    metrics["prompt_parts_survival"] = prompt_parts_survival(tok, records_train, prompt_cfg).to_dict(orient="index")
    return tc.finish(model, tok, out_dir, metrics, prompt_cfg, cfg.max_length, run_dir)


def frozen_dev_accuracy(cfg: TrainConfig, records_dev: list[dict], prompt_cfg: PromptConfig, out_dir, seed: int = 0,
                        run_dir=None, *, batch_size: int = 16, quiet: bool = False) -> float:
    """Dev accuracy of the untouched base model (config A_frozen's model), scored like the trained one;
    added to ``out_dir/metrics.json`` as ``frozen_dev_acc``."""
    tok = role_tokenizer(cfg.model, run_dir, records_dev, prompt_cfg)
    frozen = load_model(cfg.model, "causal-lm", run_dir=run_dir, tokenizer=tok, seed=seed)
    acc = _label_accuracy(frozen, tok, records_dev, prompt_cfg, batch_size, quiet)[0]["dev_acc"]
    path = Path(out_dir) / "metrics.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "frozen_dev_acc": acc}, indent=1))
    return acc


def sweep_lr(records_train: list[dict], records_dev: list[dict], cfg: TrainConfig, prompt_cfg: PromptConfig,
             learning_rates: list[float], out_dir, seed: int = 0, run_dir=None, *, batch_size: int = 16, quiet: bool = True):
    """Train the role once per learning rate with its recipe (dev loss, best checkpoint, early stopping)
    and return a DataFrame per rate: best dev loss, dev accuracy, steps, seconds (also ``sweep_lr.csv``).

    The figures are what a params file's ``learning_rate`` comment cites.
    """
    import pandas as pd

    rows = []
    for lr in learning_rates:
        sub = Path(out_dir) / f"lr{lr:g}"
        m = train_sft(records_train, records_dev, dataclasses.replace(cfg, learning_rate=lr), prompt_cfg, sub, seed,
                      run_dir, batch_size=batch_size, quiet=quiet)
        rows.append({"learning_rate": lr, "best_dev_loss": m["best_dev_loss"], "dev_acc": m.get("dev_acc"),
                     "steps": m["steps"], "best_step": m["best_step"], "train_seconds": m["train_seconds"]})
        shutil.rmtree(sub / "model", ignore_errors=True)  # the sweep keeps figures, not models
    df = pd.DataFrame(rows)
    df.to_csv(Path(out_dir) / "sweep_lr.csv", index=False)
    return df


def dev_accuracy_table(metrics: dict, name: str):
    """The role's dev accuracy beside the majority-class and uniform-random floors (and the frozen base
    model's, once :func:`frozen_dev_accuracy` has run)."""
    import pandas as pd

    rows = {name: metrics["dev_acc"], f"majority ({metrics['majority_label']})": metrics["majority_acc"], "random": 1 / len(LABELS)}
    if "frozen_dev_acc" in metrics:
        rows["frozen base, zero-shot"] = metrics["frozen_dev_acc"]
    return pd.Series(rows, name="dev accuracy").to_frame()


def role_costs(run_dir, roles=("proposer", "strong")):
    """Parameter counts and FLOPs per token of the trained roles (their metrics.json), and their ratio:
    the measured cost column of the cascade comes from these."""
    import pandas as pd

    keys = ["params_total", "params_non_embedding", "flops_per_token", "flops_per_token_measured"]
    cost = pd.DataFrame({r: {k: json.loads((Path(run_dir) / r / "metrics.json").read_text())[k] for k in keys} for r in roles})
    cost[f"{roles[-1]} / {roles[0]}"] = cost[roles[-1]] / cost[roles[0]]
    return cost


HELDOUT_FILE = "heldout.jsonl"  # a fold's held-out predictions, kept so that a resumed stage skips the fold


def folds_by_trajectory(records: list[dict], k: int, seed: int) -> list[int]:
    """Fold index of each record; a trajectory's steps always share a fold (no leakage across folds)."""
    trajs = sorted({r["meta"]["trajectory_id"] for r in records})
    if k < 2 or k > len(trajs):
        raise ValueError(f"crossfit needs 2 <= k <= #trajectories ({len(trajs)}), got k={k}")
    perm = np.random.default_rng(seed).permutation(len(trajs))
    fold_of = {trajs[j]: i % k for i, j in enumerate(perm)}
    return [fold_of[r["meta"]["trajectory_id"]] for r in records]


def _heldout_sample(held_idx: list[int], n: int, seed: int, fold: int) -> list[int]:
    """A seeded sample of ``n`` held-out points of a fold (all when n is 0): the verifier needs a sample
    of real mistakes, and generating calls for every held-out point dominated the stage."""
    if not n or len(held_idx) <= n:
        return held_idx
    pick = np.random.default_rng([seed, fold]).choice(len(held_idx), n, replace=False)
    return [held_idx[j] for j in sorted(pick)]


def crossfit(records_train: list[dict], cfg: TrainConfig, prompt_cfg: PromptConfig | None, k: int, out_dir, seed: int = 0,
             run_dir=None, *, records_dev: list[dict] | None = None, batch_size: int = 16, max_new_tokens: int = 64,
             quiet: bool = False, device=None) -> list[dict]:
    """Held-out-fold proposer predictions on the training set: ``[{id, label, call, logp, gold}]``
    (every training point, or ``cfg.crossfit_examples`` sampled per fold).

    Each of ``k`` proposers (folds by trajectory) predicts the fold it never saw, so the verifier
    later trains on the mistakes a proposer really makes on unseen data, not on memorised rows.
    Fold models follow the deployed proposer's recipe (epochs, dev loss on ``records_dev``, best
    checkpoint, early stopping) unless ``cfg.crossfit_max_steps`` caps them.
    ``run_dir`` (holding the BPE tokenizer) defaults to ``out_dir``'s parent, as in DESIGN.md.
    Fold models are not kept; their logs and held-out rows go to ``out_dir/crossfit/fold<i>/``.
    """
    out_dir = Path(out_dir)
    run_dir = run_dir if run_dir is not None else out_dir.parent
    prompt_cfg = prompt_cfg or PromptConfig()
    fold = folds_by_trajectory(records_train, k, seed)
    for f in range(k):
        tc.start_fresh(out_dir / "crossfit" / f"fold{f}", "metrics.json", HELDOUT_FILE)
    tok = role_tokenizer(cfg.model, run_dir, records_train, prompt_cfg)  # the whole split, not a fold
    launched = tc.maybe_launch("specact.train:crossfit", cfg.num_processes, out_dir, dict(
        records_train=records_train, cfg=cfg, prompt_cfg=prompt_cfg, k=k, out_dir=str(out_dir), seed=seed, run_dir=run_dir,
        records_dev=records_dev, batch_size=batch_size, max_new_tokens=max_new_tokens, quiet=quiet), out_dir / "crossfit.jsonl")
    if launched is not None:
        return launched
    fold_cfg = dataclasses.replace(cfg, max_steps=cfg.crossfit_max_steps) if getattr(cfg, "crossfit_max_steps", 0) else cfg
    rows: dict[int, dict] = {}
    for f in range(k):
        held_idx = _heldout_sample([i for i, g in enumerate(fold) if g == f], getattr(cfg, "crossfit_examples", 0), seed, f)
        fdir = out_dir / "crossfit" / f"fold{f}"
        done = tc.finished_metrics(fdir, HELDOUT_FILE)
        if done is not None:  # this fold finished in an interrupted attempt of the same stage
            rows.update((i, r) for i, r in zip(held_idx, read_rows(fdir / HELDOUT_FILE)))
            continue
        train = [r for r, g in zip(records_train, fold) if g != f]
        rows.update(_crossfit_fold(train, [records_train[i] for i in held_idx], held_idx, fold_cfg, cfg, prompt_cfg,
                                   fdir, seed + f, run_dir, tok, records_dev, batch_size, max_new_tokens, quiet, device))
    out = [rows[i] for i in sorted(rows)]
    if launch.is_main():
        _write_crossfit(out_dir, out, run_dir, tok)
    return out


def _crossfit_fold(train, held, held_idx, fold_cfg, cfg, prompt_cfg, fdir: Path, seed: int, run_dir, tok, records_dev,
                   batch_size: int, max_new_tokens: int, quiet: bool, device) -> dict[int, dict]:
    """Train one fold model and predict its held-out points: {training-split index: row}. The rows are
    also written to ``fdir/heldout.jsonl``, so that a resumed attempt of the stage skips the fold."""
    from specact.scoring import generate_calls, score_labels

    fdir.mkdir(parents=True, exist_ok=True)
    model, _, metrics, _ = _train_sft(train, fold_cfg, prompt_cfg, fdir, seed, run_dir, quiet, device, tok=tok,
                                      records_dev=records_dev, eval_batch=batch_size)
    if not launch.is_main():
        return {}  # process 0 predicts the held-out fold; the others wait for it in the next fold's DDP setup
    held_bs = getattr(cfg, "crossfit_batch_size", batch_size)
    res = score_labels(model, tok, held, prompt_cfg, held_bs, quiet=quiet)
    labels = [LABELS[j] for j in res["logp"].argmax(1)]
    calls = generate_calls(model, tok, held, labels, prompt_cfg, max_new_tokens, held_bs, quiet=quiet)["calls"]
    metrics["heldout_acc"] = float(np.mean([lab == r["label"] for lab, r in zip(labels, held)]))
    rows = {i: {"id": r["id"], "label": lab, "call": call, "logp": lp.tolist(), "gold": r["label"]}
            for i, r, lab, call, lp in zip(held_idx, held, labels, calls, res["logp"])}
    write_rows(list(rows.values()), fdir / HELDOUT_FILE)
    (fdir / "metrics.json").write_text(json.dumps(metrics, indent=1))  # last: it marks the fold finished
    shutil.rmtree(fdir / "checkpoints", ignore_errors=True)
    return rows


def crossfit_confusion(rows: list[dict]):
    """Gold label x held-out prediction of the cross-fit rows, with margins (the mistakes the verifier learns)."""
    import pandas as pd

    df = pd.DataFrame(rows)
    return pd.crosstab(df["gold"], df["label"], margins=True)


def _write_crossfit(out_dir: Path, rows: list[dict], run_dir, tok) -> None:
    save_prompts(run_dir, tok)
    with (out_dir / "crossfit.jsonl").open("w") as fh:
        for r in rows:
            fh.write(json.dumps(r, sort_keys=True) + "\n")


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

