"""Padding-free training: the flattened row's attention, loss and gradients equal the padded batch's."""

from __future__ import annotations

import pytest
import torch
from specact_toy import PROMPT, make_records, tiny_spec, toy_run_dir

from specact import packing
from specact.config import TrainConfig
from specact.models import load_model, load_tokenizer
from specact.train import _completion_trainer_cls, _train_sft, tokenize_sft

RECS = make_records(24)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return toy_run_dir(tmp_path_factory, RECS)


def _collate(tok, ds, padding_free: bool) -> dict:
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    rows = [{"input_ids": r["input_ids"], "labels": [t if m else -100 for t, m in zip(r["input_ids"], r["completion_mask"])]}
            for r in ds]
    return DataCollatorForLanguageModeling(pad_token_id=tok.pad_token_id, padding_free=padding_free)(rows)


@pytest.mark.parametrize("kv_heads", [4, 2])  # 2: grouped-query attention, as SmolLM2 / Qwen3 use
def test_varlen_attention_matches_padded_forward(run_dir, kv_heads):
    """Each example's hidden states in the flattened row equal its hidden states in a padded batch."""
    tok = load_tokenizer(tiny_spec(), run_dir)
    model = load_model(tiny_spec(config={"num_key_value_heads": kv_heads}), run_dir=run_dir).float()
    ds, _ = tokenize_sft(tok, RECS[:4], PROMPT, 512)
    lens = [len(r["input_ids"]) for r in ds]
    assert len(set(lens)) > 1  # the test needs padding in the padded batch
    padded, flat = _collate(tok, ds, False), _collate(tok, ds, True)
    assert flat["input_ids"].shape == (1, sum(lens)) and flat["cu_seq_lens_q"].tolist()[-1] == sum(lens)
    with torch.no_grad():
        ref = model(**packing.model_inputs(padded), output_hidden_states=True).hidden_states[-1]
        with packing.training_attention(model):
            assert model.config._attn_implementation == packing.NAME
            got = model(**packing.model_inputs(flat), output_hidden_states=True).hidden_states[-1]
        assert model.config._attn_implementation != packing.NAME  # put back for scoring
    starts = [0] + torch.tensor(lens).cumsum(0).tolist()
    for i, n in enumerate(lens):
        torch.testing.assert_close(got[0, starts[i]:starts[i] + n], ref[i, :n], atol=1e-5, rtol=1e-4)
    # Without the boundaries the row would be one long sequence: examples would see each other.
    with torch.no_grad(), packing.training_attention(model):
        leak = model(input_ids=flat["input_ids"], position_ids=flat["position_ids"], output_hidden_states=True).hidden_states[-1]
    assert not torch.allclose(leak[0, starts[1]:starts[2]], ref[1, :lens[1]], atol=1e-3)


def test_padding_free_loss_and_gradients_equal_padded(run_dir, tmp_path):
    """The completion-only loss (and its gradients) of a flattened batch equal the padded batch's."""
    from trl import SFTConfig

    from specact.train import common_args

    tok = load_tokenizer(tiny_spec(), run_dir)
    ds, _ = tokenize_sft(tok, RECS[:4], PROMPT, 512)
    cfg = TrainConfig(model=tiny_spec(), lora=False, max_steps=1, per_device_train_batch_size=4, max_length=512)
    results = []
    for flat in (False, True):
        model = load_model(tiny_spec(), run_dir=run_dir).float().train()
        args = SFTConfig(**common_args(cfg, tmp_path, 0, torch.device("cpu"), True), completion_only_loss=True,
                         max_length=None if flat else 512, padding_free=flat)
        trainer = _completion_trainer_cls()(model=model, args=args, train_dataset=ds, processing_class=tok)
        batch = _collate(tok, ds, flat)
        with packing.training_attention(model, flat):
            loss = trainer.compute_loss(model, batch)
        loss.backward()
        results.append((loss.item(), torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])))
    (l0, g0), (l1, g1) = results
    assert l1 == pytest.approx(l0, rel=1e-5)
    torch.testing.assert_close(g1, g0, atol=1e-6, rtol=1e-4)


def test_train_sft_padding_free_matches_padded_first_step(run_dir, tmp_path):
    """Through the whole trainer: the same first loss, every token counted, the kernel restored."""
    base = dict(model=tiny_spec(), lora=False, learning_rate=5e-3, max_steps=4, per_device_train_batch_size=4,
                logging_steps=1, warmup_ratio=0.0, max_length=512)
    runs = {}
    for flat in (False, True):
        model, _, m, trainer = _train_sft(RECS[:16], TrainConfig(**base, padding_free=flat), PROMPT, tmp_path / str(flat), 0, run_dir, True)
        runs[flat] = m
        assert model.config._attn_implementation != packing.NAME
    assert runs[True]["padding_free"] and not runs[False]["padding_free"]
    assert runs[True]["first_loss"] == pytest.approx(runs[False]["first_loss"], rel=1e-4)
    assert runs[True]["final_loss"] == pytest.approx(runs[False]["final_loss"], rel=2e-2)
    # padded batches count non-pad tokens; flattened rows have none, and count every token (eos included)
    assert runs[True]["train_tokens"] >= runs[False]["train_tokens"]


def test_varlen_attention_rejects_masks_and_batches():
    q = torch.zeros(1, 2, 4, 8)
    with pytest.raises(ValueError, match="no mask"):
        packing.varlen_attention(None, q, q, q, torch.ones(1, 1, 4, 4))
    with pytest.raises(ValueError, match="no attention dropout"):
        packing.varlen_attention(None, q, q, q, None, dropout=0.1)
    with pytest.raises(ValueError, match="one flattened row"):
        packing.varlen_attention(None, q.expand(2, -1, -1, -1), q, q, None)


def test_padding_free_under_torch_compile_matches_eager(run_dir, tmp_path):
    """The GPU recipe (padding-free + torch.compile; the attention is a graph break) trains the same steps."""
    base = dict(model=tiny_spec(), lora=False, learning_rate=5e-3, max_steps=3, per_device_train_batch_size=4,
                logging_steps=1, warmup_ratio=0.0, max_length=512, padding_free=True)
    eager = _train_sft(RECS[:12], TrainConfig(**base), PROMPT, tmp_path / "e", 0, run_dir, True)[2]
    graphs = torch._dynamo.utils.counters["stats"]["unique_graphs"]
    compiled = _train_sft(RECS[:12], TrainConfig(**base, torch_compile=True), PROMPT, tmp_path / "c", 0, run_dir, True)[2]
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] > graphs  # it really compiled
    assert compiled["first_loss"] == pytest.approx(eager["first_loss"], rel=1e-4)
    assert compiled["final_loss"] == pytest.approx(eager["final_loss"], rel=1e-2)


def test_lora_padding_free_matches_padded_first_step(run_dir, tmp_path):
    """The GPU profiles' strong role: LoRA on padding-free batches takes the same first step."""
    base = dict(model=tiny_spec(), lora=True, lora_r=4, lora_alpha=8, learning_rate=2e-2, max_steps=3,
                per_device_train_batch_size=4, logging_steps=1, warmup_ratio=0.0, max_length=512)
    padded = _train_sft(RECS[:12], TrainConfig(**base), PROMPT, tmp_path / "p", 0, run_dir, True)[2]
    flat = _train_sft(RECS[:12], TrainConfig(**base, padding_free=True), PROMPT, tmp_path / "f", 0, run_dir, True)[2]
    assert flat["first_loss"] == pytest.approx(padded["first_loss"], rel=1e-4)
    assert flat["final_loss"] == pytest.approx(padded["final_loss"], rel=2e-2)


def test_padding_free_on_two_processes_matches_one(run_dir, tmp_path):
    """Padding-free batches under `accelerate launch` (two gloo processes): each process flattens its
    own half of the global batch; step 1's loss and gradient norm equal one process's."""
    import json

    from specact.train import train_sft

    kw = dict(model=tiny_spec(), lora=False, learning_rate=5e-3, max_steps=4, per_device_train_batch_size=4,
              logging_steps=1, warmup_ratio=0.0, max_length=512, padding_free=True)
    one = train_sft(RECS[:16], RECS[16:], TrainConfig(**kw), PROMPT, tmp_path / "one", 0, run_dir, quiet=True)
    two = train_sft(RECS[:16], RECS[16:], TrainConfig(**kw, num_processes=2), PROMPT, tmp_path / "two", 0, run_dir, quiet=True)
    assert two["num_processes"] == 2 and two["padding_free"]
    first = {k: next(e for e in json.loads((tmp_path / k / "log_history.json").read_text()) if "loss" in e) for k in ("one", "two")}
    for key in ("loss", "grad_norm"):
        assert first["two"][key] == pytest.approx(first["one"][key], rel=1e-4)
    assert two["train_tokens"] == one["train_tokens"]  # every token of the global batch, counted across processes
