"""SFT (full and LoRA), cross-fitting, verifier training: losses fall, ids match eval, reloads predict the same."""

from __future__ import annotations

import json

import numpy as np
import pytest
from specact_toy import PROMPT, make_records, tiny_spec, toy_run_dir

from specact.actions import LABELS
from specact.config import ProposerConfig, TrainConfig, VerifierConfig
from specact.models import load_model, load_tokenizer
from specact.predictions import read_rows
from specact.prompts import completion_ids, gold_call, prompt_ids, sft_example
from specact.scoring import score_labels, verifier_scores
from specact.train import crossfit, folds_by_trajectory, load_trained, tokenize_sft, train_sft
from specact.verifier import train_verifier

RECS = make_records(24)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return toy_run_dir(tmp_path_factory, RECS)


def _cfg(**kw) -> TrainConfig:
    base = dict(model=tiny_spec(), lora=False, learning_rate=5e-3, max_steps=12, per_device_train_batch_size=4,
                logging_steps=1, warmup_ratio=0.0, max_length=512)
    return ProposerConfig(**{**base, **kw})


def test_train_ids_equal_eval_ids_through_trl(run_dir, tmp_path):
    from trl import SFTConfig, SFTTrainer

    from specact.train import common_args

    tok = load_tokenizer(tiny_spec(), run_dir)
    rec = RECS[0]  # file_read with a gold call
    ds, fitting = tokenize_sft(tok, [rec], PROMPT, 512)
    p, c = prompt_ids(tok, rec, PROMPT), completion_ids(tok, rec["label"], gold_call(rec)) + [tok.eos_token_id]
    assert fitting["n_context_clipped"] == 0 and ds[0]["input_ids"] == p + c
    args = SFTConfig(**common_args(_cfg(), tmp_path, 0, __import__("torch").device("cpu"), True), completion_only_loss=True, max_length=512)
    model = load_model(tiny_spec(), run_dir=run_dir)
    trainer = SFTTrainer(model=model, args=args, train_dataset=ds, processing_class=tok)
    row = trainer.train_dataset[0]
    assert row["input_ids"] == p + c
    assert row["labels"] == [-100] * len(p) + c  # loss on the completion (and its eos) only
    # trl's own text path agrees for this tokenizer (no BOS, no merge across the prompt/label boundary)
    from datasets import Dataset

    text_ds = Dataset.from_list([sft_example(tok, rec, PROMPT)])
    t2 = SFTTrainer(model=model, args=args, train_dataset=text_ds, processing_class=tok)
    assert t2.train_dataset[0]["input_ids"] == p + c


def test_no_example_is_dropped_for_length(run_dir):
    """A context too long beside its completion is clipped (by the prompt builder), never dropped:
    the completion fits whole and the label counts before and after match."""
    tok = load_tokenizer(tiny_spec(), run_dir)
    recs = [dict(r, messages=r["messages"][:1] + [{"role": "user", "content": "show " + "words and more " * 60}]) for r in RECS[:8]]
    ds, fitting = tokenize_sft(tok, recs, PROMPT, 96)
    assert len(ds) == len(recs) and fitting["n_context_clipped"] == len(recs)
    assert fitting["labels_before"] == fitting["labels_after"]
    for rec, ids, mask in zip(recs, ds["input_ids"], ds["completion_mask"]):
        comp = completion_ids(tok, rec["label"], gold_call(rec)) + [tok.eos_token_id]
        assert len(ids) <= 96 and sum(mask) == len(comp) and ids[-len(comp):] == comp


def test_dev_loss_during_training_keeps_the_best_checkpoint(run_dir, tmp_path):
    from specact.train import _train_sft

    cfg = _cfg(max_steps=4, eval_steps=1, learning_rate=1.0)  # a rate that overshoots: the last model is not the best
    model, tok, m, trainer = _train_sft(RECS[:16], cfg, PROMPT, tmp_path, 0, run_dir, True, records_dev=RECS[16:])
    losses = [loss for _, loss in m["dev_losses"]]
    assert [s for s, _ in m["dev_losses"]] == [1, 2, 3, 4] and m["best_dev_loss"] == min(losses) < losses[-1]
    assert trainer.evaluate()["eval_loss"] == pytest.approx(m["best_dev_loss"], rel=1e-5)  # the best model is the one returned
    curve = (tmp_path / "loss_curve.csv").read_text()
    assert curve.count(",dev,") == 4 and ",train," in curve


def test_early_stopping_ends_training_when_dev_loss_stops_falling(run_dir, tmp_path):
    from specact.train import _train_sft

    cfg = _cfg(max_steps=40, eval_steps=1, learning_rate=0.5, early_stopping_patience=1)  # a rate that overshoots
    _, _, m, _ = _train_sft(RECS[:16], cfg, PROMPT, tmp_path, 0, run_dir, True, records_dev=RECS[16:])
    assert m["stopped_early"] and m["steps"] < 40 and m["steps"] == m["best_step"] + 1


def test_full_sft_loss_falls_saves_and_reloads(run_dir, tmp_path):
    m = train_sft(RECS[:16], RECS[16:], _cfg(max_steps=20, learning_rate=1.5e-2), PROMPT, tmp_path / "p", 0, run_dir, quiet=True)
    assert m["final_loss"] < 0.7 * m["first_loss"], m
    for k in ("dev_acc", "majority_acc", "params_total", "flops_per_token", "flops_per_token_measured", "tokens_per_second"):
        assert m[k] is not None
    for f in ("metrics.json", "log_history.json", "loss_curve.csv", "model/specact_model.json", "model/tokenizer.json"):
        assert (tmp_path / "p" / f).is_file(), f
    assert not (tmp_path / "p" / "checkpoints").exists()
    model, tok = load_trained(tmp_path / "p")
    again = score_labels(model, tok, RECS[16:], PROMPT, quiet=True)["logp"].argmax(1)
    assert np.mean([LABELS[j] == r["label"] for j, r in zip(again, RECS[16:])]) == m["dev_acc"]


def test_lora_adapter_reloads_and_predicts_identically(run_dir, tmp_path):
    from specact.train import _train_sft

    cfg = _cfg(lora=True, lora_r=4, lora_alpha=8, max_steps=6, learning_rate=2e-2)
    model, tok, metrics, _ = _train_sft(RECS[:16], cfg, PROMPT, tmp_path, 0, run_dir, True)
    from specact.train import save_model

    save_model(model, tok, tmp_path / "model", cfg.model, 0, "causal-lm")
    assert (tmp_path / "model" / "adapter_config.json").is_file()
    assert metrics["final_loss"] < metrics["first_loss"]
    before = score_labels(model, tok, RECS[16:20], PROMPT, quiet=True)["logp"]
    reloaded, tok2 = load_trained(tmp_path)  # merged into the seeded from-config base
    after = score_labels(reloaded, tok2, RECS[16:20], PROMPT, quiet=True)["logp"]
    # merged vs unmerged LoRA: 1e-6-level on CPU; rtol covers TF32 matmuls when this runs on a GPU
    np.testing.assert_allclose(after, before, atol=1e-4, rtol=1e-4)
    assert (after.argmax(1) == before.argmax(1)).all()


def test_resume_from_checkpoint(run_dir, tmp_path):
    from specact.train import _train_sft, last_checkpoint

    _train_sft(RECS[:8], _cfg(max_steps=2, save_steps=2), PROMPT, tmp_path, 0, run_dir, True)
    assert last_checkpoint(tmp_path).endswith("checkpoint-2")
    m = train_sft(RECS[:8], [], _cfg(max_steps=3, save_steps=2), PROMPT, tmp_path, 0, run_dir, quiet=True)
    hist = json.loads((tmp_path / "log_history.json").read_text())
    assert m["steps"] == 3 and [e["step"] for e in hist if "loss" in e] == [1, 2, 3]  # steps 1-2 restored, not redone


def test_crossfit_predicts_each_row_from_a_model_that_never_saw_its_trajectory(run_dir, tmp_path, monkeypatch):
    import specact.scoring as sc

    widths = []  # held-out scoring and generation batch at crossfit_batch_size, not the caller's batch_size
    for name, pos in (("score_labels", 4), ("generate_calls", 6)):  # the batch size's position in each signature
        real = getattr(sc, name)
        monkeypatch.setattr(sc, name, lambda *a, _real=real, _pos=pos, **k: widths.append(a[_pos]) or _real(*a, **k))
    folds = folds_by_trajectory(RECS, 2, 0)
    by_traj = {}
    for r, f in zip(RECS, folds):
        by_traj.setdefault(r["meta"]["trajectory_id"], set()).add(f)
    assert all(len(s) == 1 for s in by_traj.values()) and set(folds) == {0, 1}
    rows = crossfit(RECS[:12], _cfg(max_steps=5, crossfit_max_steps=2, crossfit_batch_size=5), PROMPT, 2,
                    tmp_path / "proposer", 0, run_dir, max_new_tokens=4, quiet=True)
    assert widths and set(widths) == {5}
    assert [r["id"] for r in rows] == [r["id"] for r in RECS[:12]]
    for f in (0, 1):  # fold models train crossfit_max_steps, not the proposer's max_steps
        assert json.loads((tmp_path / "proposer" / "crossfit" / f"fold{f}" / "metrics.json").read_text())["steps"] == 2
    assert all(len(r["logp"]) == 9 and set(r) >= {"id", "label", "call", "logp"} for r in rows)
    assert len((tmp_path / "proposer" / "crossfit.jsonl").read_text().splitlines()) == 12
    with pytest.raises(ValueError, match="2 <= k"):
        folds_by_trajectory(RECS[:2], 2, 0)


def test_a_resumed_stage_reuses_finished_parts_and_a_fresh_one_never_does(run_dir, tmp_path, monkeypatch):
    """What the runner's SPECACT_RESUME means to the trainings: resuming (an unfinished attempt with the same
    stage key), the finished proposer and finished folds are reused as they are; otherwise they and any
    checkpoint are removed before training, so another configuration's checkpoint is never resumed."""
    import specact.train as tr

    cfg, out = _cfg(max_steps=3, crossfit_max_steps=2), tmp_path / "proposer"
    monkeypatch.setenv("SPECACT_RESUME", "0")
    train_sft(RECS[:12], RECS[12:16], cfg, PROMPT, out, 0, run_dir, quiet=True)
    first = json.loads((out / "metrics.json").read_text())
    rows = crossfit(RECS[:12], cfg, PROMPT, 2, out, 0, run_dir, max_new_tokens=4, quiet=True)
    stale = out / "checkpoints" / "checkpoint-99"
    stale.mkdir(parents=True)  # what an interrupted run of another configuration would leave
    (out / "crossfit" / "fold1" / "heldout.jsonl").unlink()  # fold 1 "was interrupted" before finishing

    monkeypatch.setenv("SPECACT_RESUME", "1")
    trained = []
    real = tr._train_sft
    monkeypatch.setattr(tr, "_train_sft", lambda recs, *a, **k: trained.append(len(recs)) or real(recs, *a, **k))
    assert train_sft(RECS[:12], RECS[12:16], cfg, PROMPT, out, 0, run_dir, quiet=True) == first and trained == []
    again = crossfit(RECS[:12], cfg, PROMPT, 2, out, 0, run_dir, max_new_tokens=4, quiet=True)
    assert len(trained) == 1  # only the unfinished fold trained again
    fold0 = {r["id"] for r in read_rows(out / "crossfit" / "fold0" / "heldout.jsonl")}
    assert [r for r in again if r["id"] in fold0] == [r for r in rows if r["id"] in fold0]

    monkeypatch.setenv("SPECACT_RESUME", "0")
    train_sft(RECS[:12], RECS[12:16], cfg, PROMPT, out, 0, run_dir, quiet=True)
    assert len(trained) == 2 and not stale.exists()  # fresh: trained again, the foreign checkpoint gone


def _pairs(recs):
    """Positive: the gold action. Planted easy negative: ask_clarification, never right in the toy set."""
    out = []
    for r in recs:
        call = gold_call(r)
        out.append({"record": json.dumps(r, sort_keys=True), "label": r["label"], "call": json.dumps(call) if call else "", "accept": 1})
        out.append({"record": json.dumps(r, sort_keys=True), "label": "ask_clarification", "call": "", "accept": 0})
    return out


def test_verifier_separates_a_planted_negative(run_dir, tmp_path):
    cfg = VerifierConfig(model=tiny_spec(), lora=False, learning_rate=1e-2, max_steps=25, per_device_train_batch_size=8,
                         logging_steps=1, warmup_ratio=0.0, max_length=512, calibration="platt")
    m = train_verifier(_pairs(RECS[:16]), _pairs(RECS[16:]), cfg, PROMPT, tmp_path / "v", 0, run_dir, quiet=True)
    assert m["final_loss"] < m["first_loss"] and m["dev_auroc_raw"] == 1.0, m
    cal = json.loads((tmp_path / "v" / "calibration.json").read_text())
    assert cal["method"] == "platt" and cal["max_length"] == 512 and len(m["precision_at_threshold"]) == 6
    model, tok = load_trained(tmp_path / "v")
    recs = RECS[20:24]
    pos = verifier_scores(model, tok, recs, [(r["label"], gold_call(r)) for r in recs], PROMPT, cal, quiet=True)
    neg = verifier_scores(model, tok, recs, [("ask_clarification", None)] * 4, PROMPT, cal, quiet=True)
    assert (pos["score"] > neg["score"]).all() and (pos["prob"] > neg["prob"]).all()
    with pytest.raises(ValueError, match="not implemented; use 'classifier'"):
        train_verifier(_pairs(RECS[:2]), [], VerifierConfig(model=tiny_spec(), method="reward"), PROMPT, tmp_path / "r", 0, run_dir)


def test_verifier_lora_head_is_saved(run_dir, tmp_path):
    cfg = VerifierConfig(model=tiny_spec(), lora=True, lora_r=4, lora_alpha=8, learning_rate=1e-2, max_steps=3,
                         per_device_train_batch_size=8, logging_steps=1, max_length=512, calibration="isotonic")
    train_verifier(_pairs(RECS[:8]), _pairs(RECS[8:12]), cfg, PROMPT, tmp_path, 0, run_dir, quiet=True)
    model, tok = load_trained(tmp_path)
    clf0 = load_model(tiny_spec(), "classifier", run_dir=run_dir, seed=0)
    assert not np.allclose(model.score.weight.detach().cpu().numpy(), clf0.score.weight.detach().cpu().numpy())  # trained head came back


def test_role_tokenizer_trains_one_bpe_whatever_the_order(tmp_path):
    from specact.train import role_tokenizer

    a = role_tokenizer(tiny_spec(), tmp_path / "a", RECS[:16], PROMPT)
    b = role_tokenizer(tiny_spec(), tmp_path / "b", RECS[:16][::-1], PROMPT)  # e.g. the verifier's pair order
    assert (tmp_path / "a" / "tokenizer-bpe-480" / "tokenizer.json").is_file()
    assert a.backend_tokenizer.to_str() == b.backend_tokenizer.to_str()


def test_completion_only_loss_equals_the_models_own_loss(run_dir, tmp_path):
    import torch
    from trl import SFTConfig

    from specact.train import _completion_trainer_cls, common_args

    tok = load_tokenizer(tiny_spec(), run_dir)
    ds, _ = tokenize_sft(tok, RECS[:4], PROMPT, 512)
    args = SFTConfig(**common_args(_cfg(), tmp_path, 0, torch.device("cpu"), True), completion_only_loss=True, max_length=512)
    model = load_model(tiny_spec(), run_dir=run_dir, device="cpu")
    trainer = _completion_trainer_cls()(model=model, args=args, train_dataset=ds, processing_class=tok)
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(4)])
    ours = trainer.compute_loss(model, dict(batch))
    ref = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"]).loss
    assert torch.allclose(ours, ref, atol=1e-5) and (batch["labels"] != -100).sum() < batch["attention_mask"].sum() / 4


def test_two_processes_through_accelerate_launch_match_one(run_dir, tmp_path):
    """num_processes=2 re-runs train_sft under `accelerate launch` (gloo on CPU): the global batch is
    kept (4 = 2 x 2), so every step sees the same examples and the losses agree up to float noise."""
    kw = dict(max_steps=6, per_device_train_batch_size=4, learning_rate=5e-3)
    one = train_sft(RECS[:16], RECS[16:], _cfg(**kw), PROMPT, tmp_path / "one", 0, run_dir, quiet=True)
    two = train_sft(RECS[:16], RECS[16:], _cfg(**kw, num_processes=2), PROMPT, tmp_path / "two", 0, run_dir, quiet=True)
    assert (one["num_processes"], two["num_processes"]) == (1, 2)
    assert one["global_batch"] == two["global_batch"] == 4
    hist = {k: [e for e in json.loads((tmp_path / k / "log_history.json").read_text()) if "loss" in e] for k in ("one", "two")}
    assert len(hist["one"]) == len(hist["two"]) == 6
    # Step 1: same examples, same init -> the same loss and the same (all-reduced) gradient norm;
    # a loss scaled per process instead of globally shows up here as a factor of 2.
    for key in ("loss", "grad_norm"):
        np.testing.assert_allclose(hist["two"][0][key], hist["one"][0][key], rtol=1e-4)
    # Later steps drift by float noise only: Adam's first updates are ~lr x sign(g), so near-zero
    # gradient entries summed in another order move by a whole step; a few % over 6 steps.
    np.testing.assert_allclose([e["loss"] for e in hist["two"]], [e["loss"] for e in hist["one"]], rtol=0.03)
    assert abs(two["dev_acc"] - one["dev_acc"]) <= 1 / len(RECS[16:])  # process 0 saved and evaluated
    model, tok = load_trained(tmp_path / "two")
    a = score_labels(model, tok, RECS[16:], PROMPT, quiet=True)["logp"]
    b = score_labels(*load_trained(tmp_path / "one"), RECS[16:], PROMPT, quiet=True)["logp"]
    np.testing.assert_allclose(a, b, atol=0.1)  # the few-% drift above, seen through 6 steps of training


def test_lora_on_a_bf16_base_trains(run_dir, tmp_path):
    """The gpu profile's strong model: a bf16 base under LoRA. On an H200 (transformers 5.17, bf16
    autocast) the last hidden state reached the bf16 head in fp32 and the completion-only loss
    failed with a dtype mismatch; the loss now casts. This runs the same path on CPU (no autocast)."""
    import dataclasses

    from specact.train import _train_sft

    cfg = _cfg(lora=True, lora_r=4, lora_alpha=8, max_steps=3, model=dataclasses.replace(tiny_spec(), dtype="bfloat16"))
    model, _, metrics, _ = _train_sft(RECS[:8], cfg, PROMPT, tmp_path, 0, run_dir, True)
    assert metrics["steps"] == 3 and np.isfinite(metrics["final_loss"])
    assert next(model.get_base_model().parameters()).dtype == __import__("torch").bfloat16


def test_lora_inputs_uncast_under_autocast_same_loss_and_grads_fewer_copies(run_dir):
    """adapter_inputs_uncast: peft's fp32 adapters over a bf16 base, under bf16 autocast (the GPU
    profiles' LoRA training). Skipping peft's bf16 -> fp32 input cast (autocast casts it straight
    back for the matmul) gives the very same loss and adapter gradients with fewer copy kernels."""
    import dataclasses

    import torch
    from peft import LoraConfig, get_peft_model

    from specact.train import adapter_inputs_uncast

    spec = dataclasses.replace(tiny_spec(), dtype="bfloat16")
    tok = load_tokenizer(spec, run_dir)
    ids = torch.tensor([prompt_ids(tok, RECS[0], PROMPT)[:96]])
    model = get_peft_model(load_model(spec, run_dir=run_dir, device="cpu"),
                           LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules="all-linear"))
    lora = [p for n, p in model.named_parameters() if "lora_" in n]
    assert lora and all(p.dtype == torch.float32 for p in lora)  # peft's default: fp32 adapters
    with torch.no_grad():  # lora_B starts at zero; make the adapters matter
        for p in lora:
            p.normal_(0, 0.1)

    def step(uncast: bool):
        model.zero_grad()
        with adapter_inputs_uncast(model, uncast), torch.autocast("cpu", dtype=torch.bfloat16), \
                torch.profiler.profile() as prof:
            loss = model(input_ids=ids, labels=ids).loss
            loss.backward()
        copies = sum(e.count for e in prof.key_averages() if e.key in ("aten::_to_copy", "aten::copy_"))
        return loss.detach(), [p.grad.clone() for p in lora], copies

    (l0, g0, c0), (l1, g1, c1) = step(False), step(True)
    assert torch.equal(l0, l1)
    assert all(torch.equal(a, b) for a, b in zip(g0, g1))
    assert c1 < c0 - len(lora) // 2, (c0, c1)  # at least one copy fewer per adapter (A and B: 2 params each)
    assert all(m.cast_input_dtype_enabled for m in model.modules() if hasattr(m, "cast_input_dtype_enabled"))  # restored


def test_sweep_lr_reports_dev_figures_per_rate(run_dir, tmp_path):
    from specact.train import sweep_lr

    df = sweep_lr(RECS[:16], RECS[16:], _cfg(max_steps=4, eval_steps=2), PROMPT, [1e-3, 3e-2], tmp_path, 0, run_dir)
    assert list(df["learning_rate"]) == [1e-3, 3e-2] and df["best_dev_loss"].notna().all()
    assert df.loc[1, "best_dev_loss"] < df.loc[0, "best_dev_loss"]  # 1e-3 barely moves a from-scratch model in 4 steps
    assert (tmp_path / "sweep_lr.csv").is_file() and not (tmp_path / "lr0.001" / "model").exists()
