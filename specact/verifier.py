"""Training the learned verifier: P(a proposed action is right | context, proposer, proposal).

Method ``classifier`` (the default, and the only one implemented): a sequence classifier with one
logit, BCE on accept 0/1 (the study's judge, :mod:`specact.judge`), LoRA on the backbone with the
``score`` head fully trained (``modules_to_save``). Chosen over a pairwise reward model (trl
``RewardTrainer``) because the cascade needs a **pointwise, calibratable probability** per
proposal to compare with a threshold; Bradley-Terry rewards are only defined up to a per-context
shift, so "accept when r >= t" would mean something different in every context.

What it reads (``prompts.verifier_text``): the proposer's prompt, the proposer's top labels with
their probabilities when the pair carries them (``logp``), and the proposed action. It learns
from the deployed proposer's **real** proposals (cross-fitted on train; ``kind`` ``crossfit``)
with each row's loss ``weight`` (synthetic confusions are the auxiliary), keeps the checkpoint
with the best dev loss, and is calibrated (isotonic / Platt) on the real dev proposals when the
dev pairs hold them (``kind`` ``proposer``), else on every dev pair. The calibration is stored as
plain numbers in ``calibration.json``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch
from datasets import Dataset

from specact import launch
from specact import trainer_common as tc
from specact.calibration import apply_calibration, fit_calibration
from specact.config import PromptConfig, VerifierConfig
from specact.models import load_model, pick_device
from specact.scoring import verifier_ids, verifier_scores

THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95)
REAL_KINDS = ("crossfit", "proposer")  # pairs holding the proposer's own proposals


def parse_pairs(pairs) -> tuple[list[dict], list[tuple[str, dict | None]], np.ndarray]:
    """(records, proposals, accept) of verifier-pair rows ``{record, label, call, accept}``.

    Rows sharing a record string share one parsed dict, so its prompt is rendered once.
    """
    cache: dict[str, dict] = {}
    recs, props, y = [], [], []
    for row in pairs:
        rec = cache.setdefault(row["record"], json.loads(row["record"]))
        call = row.get("call") or ""
        recs.append(rec)
        props.append((row["label"], json.loads(call) if isinstance(call, str) and call else (call or None)))
        y.append(int(row["accept"]))
    return recs, props, np.array(y)


def pair_extras(pairs) -> tuple[list | None, np.ndarray, list[str]]:
    """(proposer logp per row or None when no row has one, loss weight per row, kind per row)."""
    lp = [json.loads(r["logp"]) if r.get("logp") else None for r in pairs]
    weights = np.array([float(r["weight"]) if r.get("weight") is not None else 1.0 for r in pairs])
    return (lp if any(x is not None for x in lp) else None), weights, [r.get("kind", "") for r in pairs]


class _Collator:
    """Right-pad ids, float labels of shape [B, 1] (what BCE-with-logits expects), per-row weights."""

    def __init__(self, pad_id: int):
        self.pad_id = pad_id

    def __call__(self, feats):
        width = max(len(f["input_ids"]) for f in feats)
        ids = torch.full((len(feats), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for i, f in enumerate(feats):
            ids[i, : len(f["input_ids"])] = torch.tensor(f["input_ids"])
            mask[i, : len(f["input_ids"])] = 1
        return {"input_ids": ids, "attention_mask": mask, "labels": torch.tensor([[float(f["labels"])] for f in feats]),
                "weight": torch.tensor([float(f.get("weight", 1.0)) for f in feats])}


def _weighted_trainer_class():
    from transformers import Trainer

    class WeightedTrainer(Trainer):
        """BCE with each pair's weight: real proposals count more than synthetic confusions."""

        def compute_loss(self, model, inputs, return_outputs=False, **kw):
            weight, labels = inputs.pop("weight"), inputs.pop("labels")
            out = model(**inputs)
            logit = out.logits[:, 0].float()
            loss = torch.nn.functional.binary_cross_entropy_with_logits(logit, labels[:, 0], reduction="none")
            loss = (loss * weight).sum() / weight.sum().clamp(min=1e-8)
            return (loss, out) if return_outputs else loss

    return WeightedTrainer


def _auroc(y, s) -> float | None:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, s)) if len(np.unique(y)) == 2 else None


def precision_table(y: np.ndarray, prob: np.ndarray, thresholds=THRESHOLDS) -> list[dict]:
    rows = []
    for t in thresholds:
        acc = prob >= t
        n = int(acc.sum())
        rows.append({"threshold": t, "accept_rate": float(acc.mean()) if len(y) else 0.0, "n_accepted": n,
                     "precision": float(y[acc].mean()) if n else None,
                     "recall": float(acc[y == 1].mean()) if (y == 1).any() else None})
    return rows


def _dataset(tok, pairs, prompt_cfg, max_length: int) -> Dataset:
    recs, props, y = parse_pairs(pairs)
    logps, weights, _ = pair_extras(pairs)
    ids = verifier_ids(tok, recs, props, prompt_cfg, max_length, logps)
    return Dataset.from_dict({"input_ids": ids, "labels": y.tolist(), "weight": weights.tolist()})


def _sample(pairs, n: int, seed: int) -> list:
    """A seeded sample of ``n`` pair rows (all when n is 0 or more than there are)."""
    pairs = list(pairs)
    if not n or len(pairs) <= n:
        return pairs
    return [pairs[i] for i in np.sort(np.random.default_rng(seed).choice(len(pairs), n, replace=False))]


def _model(cfg: VerifierConfig, tok, device, run_dir, seed: int):
    model = load_model(cfg.model, "classifier", device, run_dir, tokenizer=tok, seed=seed,
                       dtype=None if cfg.lora else torch.float32)
    if not cfg.lora:
        return model
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(model, LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=0.0,
                                             target_modules="all-linear", modules_to_save=["score"], task_type="SEQ_CLS"))
    for p in model.parameters():  # the head copy in modules_to_save keeps the base dtype; Adam wants fp32
        if p.requires_grad and p.dtype != torch.float32:
            p.data = p.data.float()
    return model


def calibrate(model, tok, pairs_dev, prompt_cfg, cfg: VerifierConfig, batch_size: int, quiet: bool) -> tuple[dict, dict]:
    """(calibration, dev metrics): fitted on the real dev proposals when there are both classes of
    them, else on every dev pair; AUROC reported on real and synthetic dev pairs apart."""
    recs, props, y = parse_pairs(pairs_dev)
    logps, _, kinds = pair_extras(pairs_dev)
    sc = verifier_scores(model, tok, recs, props, prompt_cfg, None, batch_size, cfg.max_length, quiet=quiet, logps=logps)
    real = np.isin(kinds, REAL_KINDS)
    fit_on = real if len(np.unique(y[real])) == 2 else np.ones(len(y), bool)
    method = cfg.calibration if len(np.unique(y[fit_on])) == 2 else "none"
    calibration = fit_calibration(sc["score"][fit_on], y[fit_on], method)
    prob = apply_calibration(sc["score"], calibration)
    metrics = {"n_dev": len(y), "n_dev_real": int(real.sum()), "calibrated_on": "real" if fit_on is real else "all",
               "dev_pos_rate": float(y.mean()), "dev_auroc_raw": _auroc(y, sc["score"]),
               "dev_auroc_real": _auroc(y[real], sc["score"][real]) if real.any() else None,
               "dev_auroc_synthetic": _auroc(y[~real], sc["score"][~real]) if (~real).any() else None,
               "dev_brier": float(np.mean((prob[fit_on] - y[fit_on]) ** 2)),
               "precision_at_threshold": precision_table(y[fit_on], prob[fit_on]), "dev_score_seconds": sc["seconds"]}
    return calibration, metrics


def train_verifier(pairs_train, pairs_dev, cfg: VerifierConfig, prompt_cfg: PromptConfig | None, out_dir, seed: int = 0,
                   run_dir=None, *, batch_size: int = 16, quiet: bool = False, device=None) -> dict:
    """Train on pair rows (dev loss evaluated, best checkpoint kept), calibrate on dev, save ``model/``,
    ``calibration.json``, ``metrics.json``."""
    if cfg.method != "classifier":
        raise ValueError(f"verifier.method {cfg.method!r} is not implemented; use 'classifier' (pointwise "
                         "calibrated probabilities are what an accept threshold needs; see specact/verifier.py)")
    out_dir, prompt_cfg = Path(out_dir), prompt_cfg or PromptConfig()
    out_dir.mkdir(parents=True, exist_ok=True)
    tc.start_fresh(out_dir, "metrics.json", "model", "calibration.json")
    done = tc.finished_metrics(out_dir, "model", "calibration.json")
    if done is not None:  # an interrupted attempt of this stage finished the training and calibration
        return done
    recs, _, y = parse_pairs(pairs_train)
    if len(np.unique(y)) < 2:
        raise ValueError("verifier training pairs need both accept=1 and accept=0 rows")
    tok = tc.role_tokenizer(cfg.model, run_dir, list({id(r): r for r in recs}.values()), prompt_cfg)
    launched = tc.maybe_launch("specact.verifier:train_verifier", cfg.num_processes, out_dir, dict(
        pairs_train=pairs_train, pairs_dev=pairs_dev, cfg=cfg, prompt_cfg=prompt_cfg, out_dir=str(out_dir), seed=seed,
        run_dir=run_dir, batch_size=batch_size, quiet=quiet), out_dir / "metrics.json")
    if launched is not None:
        return launched
    world = launch.world()[1]
    cfg = launch.split_batch(cfg, world)  # the same global batch on 1 or N processes
    trainer, wall, res = _fit(pairs_train, pairs_dev, cfg, tok, prompt_cfg, out_dir, seed, run_dir, batch_size, quiet, device)
    if not launch.is_main():
        return {}  # process 0 saves, calibrates and evaluates
    tc.write_logs(out_dir, trainer.state.log_history)
    model = trainer.model.eval()
    tc.save_model(model, tok, out_dir / "model", cfg.model, seed, "classifier", max_length=cfg.max_length)
    metrics = _train_metrics(trainer, res, wall, y, cfg, world)
    calibration = {"method": "none"}
    if pairs_dev is not None and len(pairs_dev):
        calibration, dev = calibrate(model, tok, pairs_dev, prompt_cfg, cfg, batch_size, quiet)
        metrics.update(dev)
    calibration.update(max_length=cfg.max_length,  # scoring must cut texts the same way
                       reads_proposer=pair_extras(pairs_train)[0] is not None)
    (out_dir / "calibration.json").write_text(json.dumps(calibration, indent=1))
    return tc.finish(model, tok, out_dir, metrics, prompt_cfg, cfg.max_length, run_dir)


def _fit(pairs_train, pairs_dev, cfg, tok, prompt_cfg, out_dir, seed, run_dir, batch_size, quiet, device):
    """(trainer, wall seconds, train result): weighted BCE, the dev loss evaluated on a sample of
    ``cfg.eval_examples`` dev pairs, the best checkpoint loaded at the end."""
    from transformers import TrainingArguments

    dev = pick_device(device)
    # max_steps reaches only this many pairs: tokenize a seeded sample of them, not all (the trainer would
    # draw that many from the shuffled set anyway; on the CPU profile 2/3 of tokenizing was for unread pairs)
    reach = cfg.max_steps * launch.global_batch(cfg, launch.world()[1]) if cfg.max_steps else 0
    train_ds = _dataset(tok, _sample(pairs_train, reach, seed), prompt_cfg, cfg.max_length)
    has_dev = pairs_dev is not None and len(pairs_dev) > 0
    eval_ds = _dataset(tok, _sample(pairs_dev, cfg.eval_examples, seed), prompt_cfg, cfg.max_length) if has_dev else None
    model = _model(cfg, tok, dev, run_dir, seed)
    extra = tc.eval_args(cfg, batch_size) if has_dev else {}
    args = TrainingArguments(**{**tc.common_args(cfg, out_dir, seed, dev, quiet), **extra}, remove_unused_columns=False,
                             label_names=["labels"])
    trainer = _weighted_trainer_class()(model=model, args=tc.one_gpu_per_process(args), train_dataset=train_ds,
                                        eval_dataset=eval_ds, data_collator=_Collator(model.config.pad_token_id),
                                        callbacks=tc.early_stopping(cfg) if has_dev else [])
    t0 = time.perf_counter()
    with tc.adapter_inputs_uncast(trainer.model, cfg.lora and args.bf16):  # as in SFT: peft's fp32 round trip is exact
        res = trainer.train(resume_from_checkpoint=tc.last_checkpoint(out_dir))
    return trainer, time.perf_counter() - t0, res


def _train_metrics(trainer, res, wall: float, y, cfg: VerifierConfig, world: int) -> dict:
    log = trainer.state.log_history
    losses = [e["loss"] for e in log if "loss" in e]
    dev_losses = [e["eval_loss"] for e in log if "eval_loss" in e]
    tokens = int(trainer.state.num_input_tokens_seen or 0)
    return {"n_train": len(trainer.train_dataset), "n_pairs_available": len(y), "train_pos_rate": float(y.mean()),
            "steps": trainer.state.global_step,
            "train_loss": res.training_loss, "first_loss": losses[0] if losses else None,
            "final_loss": losses[-1] if losses else None, "best_dev_loss": min(dev_losses) if dev_losses else None,
            "best_checkpoint": trainer.state.best_model_checkpoint, "train_seconds": wall, "train_tokens": tokens,
            "tokens_per_second": tokens / wall if wall > 0 else None, "method": cfg.method, "lora": cfg.lora,
            "num_processes": world, "global_batch": launch.global_batch(cfg, world)}


def load_calibration(out_dir) -> dict:
    path = Path(out_dir) / "calibration.json"
    if not path.is_file():
        raise FileNotFoundError(f"no calibration at {path}; run train_verifier first")
    return json.loads(path.read_text())
