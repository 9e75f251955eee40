"""Tokenizers for from-config models: a byte-level BPE trained on the run's own text.

A from-config Qwen3 has no pretrained vocabulary, and Qwen's 151k-token vocabulary would make
the embedding matrix of a 2-M-parameter model 100x larger than its transformer. So we train a
small byte-level BPE on the training prompts, wrap it as a ``PreTrainedTokenizerFast`` with the
ChatML special tokens and :data:`CHAT_TEMPLATE` (Qwen-style, with tools), and cache it under
``run_dir/tokenizer-bpe-<vocab>/`` so every stage of a run shares the exact same ids.
"""

from __future__ import annotations

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


def bpe_dir(run_dir: str | Path, vocab_size: int) -> Path:
    return Path(run_dir) / f"tokenizer-bpe-{vocab_size}"


def load_bpe(vocab_size: int, run_dir: str | Path | None, train_texts: list[str] | None) -> PreTrainedTokenizerFast:
    """The run's ``bpe:<vocab>`` tokenizer: loaded from ``run_dir`` if cached, else trained and cached.

    Texts are sorted before training, so the same set of records gives the same tokenizer
    whichever stage (proposer, cross-fitting, verifier, strong) happens to train it first.
    """
    cache = bpe_dir(run_dir, vocab_size) if run_dir else None
    if cache is not None and (cache / "tokenizer.json").is_file():
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
    return tok
