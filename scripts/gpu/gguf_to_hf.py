"""Turn a GGUF checkpoint into an ordinary ``save_pretrained`` directory (dense safetensors + tokenizer).

Why the study's GPU profile reads this directory rather than the GGUF itself (transformers 5.17):

* a model loaded with ``from_pretrained(dir, gguf_file=...)`` keeps a ``GgufHfQuantizer``
  attached even when no GGUF kernel is available and every weight was unpacked to a dense
  tensor; ``Trainer`` then refuses to train it, LoRA adapter or not ("quantized with
  QuantizationMethod.GGUF but that quantization method do not support training");
* every GGUF load re-parses the file's metadata in Python and unpacks every block: ~30-45 s
  per load on a CPU core, and a study run loads the weights about ten times. A safetensors
  directory loads in about a second.

The conversion is exact: Q4_1 blocks unpack to float32 and are stored as float32 (the study
casts to bf16 at load time, as it would have from the GGUF). The tokenizer and its chat template
come from the GGUF; its special tokens are set from the GGUF's own ``tokenizer.ggml.*_token_id``
keys, because transformers 5.17 turns SmolLM2's GGUF into a tokenizer whose eos is
``<|im_start|>`` and which has no pad token (5.24 gets both right: eos = pad = ``<|im_end|>``).
A wrong eos would teach SFT to end every action with ``<|im_start|>`` and let generation run on.

Usage: python gguf_to_hf.py FILE.gguf OUT_DIR
"""

from __future__ import annotations

import json
import struct
import sys
import time
from pathlib import Path

import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer


_SCALAR = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}


def gguf_scalars(path: Path) -> dict:
    """The scalar and string metadata of a GGUF (v2/v3) file; arrays are skipped."""
    with path.open("rb") as fh:
        if fh.read(4) != b"GGUF":
            raise ValueError(f"{path} is not a GGUF file")
        version, _tensors, n_kv = struct.unpack("<IQQ", fh.read(20))
        if version < 2:
            raise ValueError(f"{path}: GGUF version {version} is not supported")

        def string() -> str:
            (n,) = struct.unpack("<Q", fh.read(8))
            return fh.read(n).decode("utf-8", errors="replace")

        def value(t: int):
            if t in _SCALAR:
                fmt = _SCALAR[t]
                return struct.unpack(fmt, fh.read(struct.calcsize(fmt)))[0]
            if t == 8:
                return string()
            if t == 9:
                et, n = struct.unpack("<IQ", fh.read(12))
                for _ in range(n):
                    value(et)
                return None
            raise ValueError(f"{path}: unknown GGUF value type {t}")

        meta = {}
        for _ in range(n_kv):
            key = string()
            (t,) = struct.unpack("<I", fh.read(4))
            v = value(t)
            if v is not None:
                meta[key] = v
        return meta


def fix_special_tokens(tok, model_cfg, meta: dict) -> dict:
    """Set bos/eos/pad/unk of ``tok`` and the model config to the ids the GGUF declares."""
    fixed = {}
    for role, key in (("bos", "bos_token_id"), ("eos", "eos_token_id"), ("pad", "padding_token_id"), ("unk", "unknown_token_id")):
        tid = meta.get(f"tokenizer.ggml.{key}")
        if tid is None:
            continue
        setattr(tok, f"{role}_token", tok.convert_ids_to_tokens(int(tid)))
        if role != "unk":
            setattr(model_cfg, f"{role}_token_id", int(tid))
        fixed[role] = f"{tok.convert_ids_to_tokens(int(tid))} ({tid})"
    if tok.pad_token is None:  # no padding id in the file: eos is the usual choice for chat models
        tok.pad_token = tok.eos_token
        model_cfg.pad_token_id = tok.eos_token_id
        fixed["pad"] = f"{tok.eos_token} (= eos)"
    # transformers 5.17 writes clean_up_tokenization_spaces=True, a WordPiece-era cleanup that deletes the
    # space before punctuation on decode (it would alter decoded calls); SmolLM2's own tokenizer has False.
    tok.clean_up_tokenization_spaces = False
    ctx = next((v for k, v in meta.items() if k.endswith(".context_length")), None)
    if ctx:
        tok.model_max_length = int(ctx)
    gguf_template = meta.get("tokenizer.chat_template")
    if gguf_template and tok.chat_template != gguf_template:
        tok.chat_template = gguf_template
    return fixed


def convert(gguf: Path, out: Path) -> dict:
    t0 = time.perf_counter()
    meta = gguf_scalars(gguf)
    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    t_tok = time.perf_counter() - t0
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    t_model = time.perf_counter() - t0 - t_tok
    # Rebuild on a clean config so nothing of the GGUF quantizer survives into the checkpoint.
    cfg = model.config
    if hasattr(cfg, "quantization_config"):
        del cfg.quantization_config
    dense = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)
    missing, unexpected = dense.load_state_dict(model.state_dict(), strict=False)
    missing = [k for k in missing if k != "lm_head.weight"]  # tied to the embedding
    if missing or unexpected:
        raise RuntimeError(f"state dict mismatch: missing {missing}, unexpected {unexpected}")
    dense.tie_weights()
    special = fix_special_tokens(tok, dense.config, meta)
    gen = dense.generation_config
    gen.bos_token_id, gen.eos_token_id, gen.pad_token_id = dense.config.bos_token_id, dense.config.eos_token_id, dense.config.pad_token_id
    ids = torch.tensor([tok("Hello, world")["input_ids"]])
    with torch.inference_mode():
        diff = (dense.eval()(input_ids=ids).logits - model.eval()(input_ids=ids).logits).abs().max().item()
    if diff > 1e-4:
        raise RuntimeError(f"converted model disagrees with the GGUF model: max |logit diff| {diff}")
    out.mkdir(parents=True, exist_ok=True)
    dense.save_pretrained(out)
    tok.save_pretrained(out)
    info = {
        "source": gguf.name, "architecture": type(dense).__name__,
        "params": sum(p.numel() for p in dense.parameters()), "layers": cfg.num_hidden_layers,
        "vocab": len(tok), "special_tokens": special, "chat_template": bool(tok.chat_template), "max_logit_diff": diff,
        "seconds": {"tokenizer": round(t_tok, 1), "model": round(t_model, 1), "total": round(time.perf_counter() - t0, 1)},
    }
    (out / "converted_from.json").write_text(json.dumps(info, indent=2))
    return info


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    print(json.dumps(convert(Path(sys.argv[1]), Path(sys.argv[2])), indent=2))
