"""Training the learned verifier: P(a proposed action is right | context, proposal).

Method ``classifier`` (the default, and the only one implemented): a sequence classifier with one
logit, BCE on accept 0/1, LoRA on the backbone with the ``score`` head fully trained
(``modules_to_save``). Chosen over a pairwise reward model (trl ``RewardTrainer``) because the
cascade needs a **pointwise, calibratable probability** per proposal to compare with a threshold;
Bradley-Terry rewards are only defined up to a per-context shift, so "accept when r >= t" would
mean something different in every context. Calibration (isotonic / Platt, on dev) then turns the
logit into a probability, stored as plain numbers in ``calibration.json``.

Re-exported as :func:`specact.train.train_verifier`.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch
from datasets import Dataset

from specact import launch
from specact.calibration import apply_calibration, fit_calibration
from specact.config import VerifierConfig
from specact.models import load_model, model_stats, pick_device
from specact.prompts import PromptConfig
from specact.scoring import verifier_ids, verifier_scores

THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95)


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


class _Collator:
    """Right-pad ids, float labels of shape [B, 1] (what BCE-with-logits in transformers expects)."""

    def __init__(self, pad_id: int):
        self.pad_id = pad_id

    def __call__(self, feats):
        width = max(len(f["input_ids"]) for f in feats)
        ids = torch.full((len(feats), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for i, f in enumerate(feats):
            ids[i, : len(f["input_ids"])] = torch.tensor(f["input_ids"])
            mask[i, : len(f["input_ids"])] = 1
        labels = torch.tensor([[float(f["labels"])] for f in feats])
        return {"input_ids": ids, "attention_mask": mask, "labels": labels}


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


def train_verifier(pairs_train, pairs_dev, cfg: VerifierConfig, prompt_cfg: PromptConfig | None, out_dir, seed: int = 0,
                   run_dir=None, *, batch_size: int = 16, quiet: bool = False, device=None) -> dict:
    """Train the verifier on pair rows, calibrate on dev, save ``model/``, ``calibration.json``, ``metrics.json``."""
    from peft import LoraConfig
    from transformers import Trainer, TrainingArguments

    from specact import train as T  # imported here: specact.train re-exports this function

    if cfg.method != "classifier":
        raise ValueError(f"verifier.method {cfg.method!r} is not implemented; use 'classifier' (pointwise "
                         "calibrated probabilities are what an accept threshold needs; see specact/verifier.py)")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    prompt_cfg = prompt_cfg or PromptConfig()
    dev = pick_device(device)
    recs, props, y = parse_pairs(pairs_train)
    tok = T.role_tokenizer(cfg.model, run_dir, list({id(r): r for r in recs}.values()), prompt_cfg)
    if cfg.num_processes > 1 and not launch.in_launched_job():
        return launch.run("train_verifier", cfg.num_processes, out_dir, dict(
            pairs_train=pairs_train, pairs_dev=pairs_dev, cfg=cfg, prompt_cfg=prompt_cfg, out_dir=str(out_dir), seed=seed,
            run_dir=run_dir, batch_size=batch_size, quiet=quiet), out_dir / "metrics.json")
    world = launch.world()[1]
    cfg = launch.split_batch(cfg, world)  # the same global batch on 1 or N processes
    n_pairs = len(y)
    need = cfg.max_steps * launch.global_batch(cfg, world)
    if cfg.max_steps and n_pairs > need:
        # max_steps reaches only `need` pairs: tokenize a seeded sample of that many, not all of them
        # (the trainer would draw a random `need` from the shuffled set anyway; 2/3 of the CPU stage's
        # tokenization was for pairs never trained on).
        keep = np.sort(np.random.default_rng(seed).choice(n_pairs, need, replace=False))
        recs, props, y = [recs[i] for i in keep], [props[i] for i in keep], y[keep]
    model = load_model(cfg.model, "classifier", dev, run_dir, tokenizer=tok, seed=seed,
                       dtype=None if cfg.lora else torch.float32)
    if len(np.unique(y)) < 2:
        raise ValueError("verifier training pairs need both accept=1 and accept=0 rows")
    ds = Dataset.from_dict({"input_ids": verifier_ids(tok, recs, props, prompt_cfg, cfg.max_length), "labels": y.tolist()})
    if cfg.lora:
        from peft import get_peft_model

        model = get_peft_model(model, LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=0.0,
                                                 target_modules="all-linear", modules_to_save=["score"], task_type="SEQ_CLS"))
        for p in model.parameters():  # the head copy in modules_to_save keeps the base dtype; Adam wants fp32
            if p.requires_grad and p.dtype != torch.float32:
                p.data = p.data.float()
    args = T.one_gpu_per_process(TrainingArguments(**T.common_args(cfg, out_dir, seed, dev, quiet), remove_unused_columns=False))
    trainer = Trainer(model=model, args=args, train_dataset=ds, data_collator=_Collator(model.config.pad_token_id))
    t0 = time.perf_counter()
    with T.adapter_inputs_uncast(trainer.model, cfg.lora and args.bf16):  # as in SFT: peft's fp32 round trip is exact
        res = trainer.train(resume_from_checkpoint=T.last_checkpoint(out_dir))
    wall = time.perf_counter() - t0
    if not launch.is_main():
        return {}  # process 0 saves, calibrates and evaluates
    T.write_logs(out_dir, trainer.state.log_history)
    model = trainer.model.eval()
    T.save_model(model, tok, out_dir / "model", cfg.model, seed, "classifier", max_length=cfg.max_length)
    losses = [e["loss"] for e in trainer.state.log_history if "loss" in e]
    tokens = int(trainer.state.num_input_tokens_seen or 0)
    metrics = {"n_train": len(ds), "n_pairs_available": n_pairs, "train_pos_rate": float(y.mean()), "steps": trainer.state.global_step,
               "train_loss": res.training_loss, "first_loss": losses[0] if losses else None,
               "final_loss": losses[-1] if losses else None, "train_seconds": wall, "train_tokens": tokens,
               "tokens_per_second": tokens / wall if wall > 0 else None, "method": cfg.method, "lora": cfg.lora,
               "num_processes": world, "global_batch": launch.global_batch(cfg, world)}
    calibration = {"method": "none"}
    if pairs_dev is not None and len(pairs_dev):
        drecs, dprops, dy = parse_pairs(pairs_dev)
        sc = verifier_scores(model, tok, drecs, dprops, prompt_cfg, None, batch_size, cfg.max_length, quiet=quiet)
        calibration = fit_calibration(sc["score"], dy, cfg.calibration if len(np.unique(dy)) == 2 else "none")
        prob = apply_calibration(sc["score"], calibration)
        metrics.update({"n_dev": len(dy), "dev_pos_rate": float(dy.mean()), "dev_auroc_raw": _auroc(dy, sc["score"]),
                        "dev_auroc_calibrated": _auroc(dy, prob),  # in-sample: isotonic ties can only lower it
                        "dev_acc_at_0.5": float(((prob >= 0.5) == dy).mean()),
                        "dev_brier": float(np.mean((prob - dy) ** 2)), "precision_at_threshold": precision_table(dy, prob),
                        "dev_score_seconds": sc["seconds"]})
    calibration["max_length"] = cfg.max_length  # scoring must cut texts the same way
    (out_dir / "calibration.json").write_text(json.dumps(calibration, indent=1))
    T.shutil.rmtree(out_dir / "checkpoints", ignore_errors=True)
    metrics.update(model_stats(model, tok, context=min(prompt_cfg.max_prompt_tokens, cfg.max_length)))
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=1))
    T._save_prompts(run_dir, tok)
    return metrics


def load_calibration(out_dir) -> dict:
    path = Path(out_dir) / "calibration.json"
    if not path.is_file():
        raise FileNotFoundError(f"no calibration at {path}; run train_verifier first")
    return json.loads(path.read_text())
