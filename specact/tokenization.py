"""Tokenizers for from-config models: a byte-level BPE trained on the run's own text.

A from-config Qwen3 has no pretrained vocabulary, and Qwen's 151k-token vocabulary would make
the embedding matrix of a 2-M-parameter model 100x larger than its transformer. So we train a
small byte-level BPE on the training prompts, wrap it as a ``PreTrainedTokenizerFast`` with the
ChatML special tokens and :data:`CHAT_TEMPLATE` (Qwen-style, with tools), and cache it under
``run_dir/tokenizer-bpe-<vocab>-<data hash>/`` so every stage of a run shares the exact same ids.
"""

from __future__ import annotations

import hashlib
import json
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Iterable

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import AutoTokenizer, PreTrainedTokenizerFast

from specact.prompts import UNLIMITED, PromptConfig, format_action, gold_call, render_prompt

IM_START, IM_END, PAD = "<|im_start|>", "<|im_end|>", "<|endoftext|>"
SPECIAL_TOKENS = [PAD, IM_START, IM_END]  # ids 0, 1, 2 in every BPE tokenizer we train


@lru_cache(maxsize=1)
def chat_template() -> str:
    """The ChatML-with-tools template shipped as ``specact/chat_template.jinja``."""
    return resources.files("specact").joinpath("chat_template.jinja").read_text(encoding="utf-8").rstrip("\n")


def _wrap(tok: Tokenizer) -> PreTrainedTokenizerFast:
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token=IM_END, pad_token=PAD, bos_token=None, unk_token=None,
        additional_special_tokens=[IM_START],
    )
    fast.chat_template = chat_template()
    return fast


def _byte_level(tok: Tokenizer) -> Tokenizer:
    # GPT-2 style regex split + byte fallback: every string is encodable, and "\n" never merges
    # with the letters of a label, so "file_read\n{...}" starts with the tokens of "file_read".
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    return tok


@lru_cache(maxsize=1)
def byte_tokenizer() -> PreTrainedTokenizerFast:
    """A merge-free byte-level tokenizer with the chat template: renders prompts before any BPE exists."""
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {t: i for i, t in enumerate(SPECIAL_TOKENS + sorted(alphabet))}
    tok = _byte_level(Tokenizer(models.BPE(vocab=vocab, merges=[])))
    tok.add_special_tokens(SPECIAL_TOKENS)
    return _wrap(tok)


def bpe_corpus(records: Iterable[dict], prompt_cfg: PromptConfig | None = None) -> list[str]:
    """Training text for the BPE: each record's prompt + gold completion, through the one prompt builder.

    Rendered with :func:`byte_tokenizer` and no token budget (the BPE should see whole
    trajectories; the budget only decides which turns a model sees later).
    """
    cfg = PromptConfig(**{**(prompt_cfg.__dict__ if prompt_cfg else {}), "max_prompt_tokens": UNLIMITED})
    tok = byte_tokenizer()
    return [render_prompt(tok, r, cfg) + format_action(r["label"], gold_call(r)) + IM_END for r in records]


def train_bpe(texts: list[str], vocab_size: int) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE with ``vocab_size`` entries (specials and the 256 bytes included).

    Deterministic for a given text list: the trainer breaks count ties by pair order, and
    ``tests/test_models.py`` checks two trainings give the same vocab and merges.
    """
    n_base = len(SPECIAL_TOKENS) + 256
    if vocab_size < n_base:
        raise ValueError(f"bpe vocab {vocab_size} is below the {n_base} specials + bytes it must hold")
    if not texts:
        raise ValueError("training a BPE tokenizer needs training texts (pass train_texts=bpe_corpus(records))")
    tok = _byte_level(Tokenizer(models.BPE()))
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, min_frequency=2, show_progress=False,  # a pair seen once is noise
        special_tokens=SPECIAL_TOKENS, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    # Split the specials out first: "<|im_start|>" must stay one token, not train merges.
    pieces = (p for t in texts for p in _split_specials(t))
    tok.train_from_iterator(pieces, trainer=trainer)
    return _wrap(tok)


def _split_specials(text: str) -> list[str]:
    for s in SPECIAL_TOKENS:
        text = text.replace(s, "\x00")
    return [p for p in text.split("\x00") if p]


def data_fingerprint(run_dir: str | Path) -> str:
    """Content hash of the run's training split on disk (``data/decisions/train``); '' when the run has none."""
    split = Path(run_dir) / "data" / "decisions" / "train"
    files = sorted(f for f in split.rglob("*") if f.is_file()) if split.is_dir() else []
    h = hashlib.sha256()
    for f in files:
        h.update(f.name.encode() + b"\0" + f.read_bytes())
    return h.hexdigest()[:12] if files else ""


def bpe_dir(run_dir: str | Path, vocab_size: int) -> Path:
    """Where a run caches its ``bpe:<vocab>`` tokenizer: keyed by the vocabulary size *and* the training data
    (new data = a new directory, so a stage that only checks the directory exists never reuses a stale one)."""
    fp = data_fingerprint(run_dir)
    return Path(run_dir) / (f"tokenizer-bpe-{vocab_size}-{fp}" if fp else f"tokenizer-bpe-{vocab_size}")


INPUTS_FILE = "specact_inputs.json"  # beside tokenizer.json: what the cached tokenizer was trained on


def corpus_digest(texts: list[str], vocab_size: int) -> str:
    """Content hash of a BPE's training inputs: the sorted texts and the vocabulary size."""
    h = hashlib.sha256(str(vocab_size).encode())
    for t in sorted(texts):
        h.update(hashlib.sha256(t.encode("utf-8")).digest())
    return h.hexdigest()


def load_bpe(vocab_size: int, run_dir: str | Path | None, train_texts: list[str] | None) -> PreTrainedTokenizerFast:
    """The run's ``bpe:<vocab>`` tokenizer: loaded from ``run_dir`` if cached, else trained and cached.

    The cache is keyed by its training inputs, not only the vocabulary size: given ``train_texts``
    whose digest differs from the cached one's (the data changed), it is trained again and replaced.
    Without ``train_texts`` (a stage that only loads) the cached one is used.
    Texts are sorted before training, so the same set of records gives the same tokenizer
    whichever stage (proposer, cross-fitting, verifier, strong) happens to train it first.
    """
    cache = bpe_dir(run_dir, vocab_size) if run_dir else None
    if cache is None:
        return _load_or_train_bpe(vocab_size, None, train_texts)
    # Stages run side by side (`--stage-jobs`) may both find no tokenizer: one trains and saves it while
    # the other waits, then loads it -- never two writers in one directory, never a half-written file read.
    import fcntl

    cache.parent.mkdir(parents=True, exist_ok=True)
    with open(cache.parent / f".{cache.name}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return _load_or_train_bpe(vocab_size, cache, train_texts)


def _load_or_train_bpe(vocab_size: int, cache: Path | None, train_texts: list[str] | None) -> PreTrainedTokenizerFast:
    digest = corpus_digest(train_texts, vocab_size) if train_texts else None
    if cache is not None and (cache / "tokenizer.json").is_file() and digest in (None, _cached_digest(cache)):
        tok = AutoTokenizer.from_pretrained(str(cache))
        if tok.chat_template is None:  # older save without the template file
            tok.chat_template = chat_template()
        return tok
    if not train_texts:
        where = f" and none is cached at {cache}" if cache else ""
        raise ValueError(f"tokenizer 'bpe:{vocab_size}' must be trained{where}: pass train_texts=specact.tokenization.bpe_corpus(train_records)")
    tok = train_bpe(sorted(train_texts), vocab_size)
    if cache is not None:
        cache.mkdir(parents=True, exist_ok=True)
        tok.save_pretrained(str(cache))
        (cache / INPUTS_FILE).write_text(json.dumps({"sha256": digest, "texts": len(train_texts)}))
    return tok


def _cached_digest(cache: Path) -> str | None:
    try:
        return json.loads((cache / INPUTS_FILE).read_text())["sha256"]
    except (OSError, ValueError, KeyError):  # a cache from before inputs were recorded: retrain
        return None
