"""What the verifier stage (notebook 03) trains and calibrates on, for one run.

Train: the proposer's cross-fitted predictions on train (``proposer/crossfit.jsonl``, each fold
model predicting the fold it never saw) as real proposals, synthetic gold/confusion pairs beside
them at ``1 / crossfit_weight``. Dev: the deployed proposer's own dev predictions beside the
synthetic dev pairs. The pairs themselves are built by :func:`specact.data.pairs.verifier_pairs_dataset`.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from specact.config import PromptConfig, VerifierConfig, load_params
from specact.data import build as data
from specact.data import pairs as verifier_pairs
from specact.predictions import read_rows


def read_crossfit(run_dir: str | Path) -> list[dict]:
    """The proposer's cross-fitted predictions (``[]`` when the run trained no fold models)."""
    path = Path(run_dir) / "proposer" / "crossfit.jsonl"
    return read_rows(path) if path.is_file() else []


def run_pairs(run_dir: str | Path, cfg: VerifierConfig, prompt_cfg: PromptConfig, seed: int):
    """``DatasetDict`` train/dev of the verifier's pairs for the run in ``run_dir`` (scores dev with the trained proposer)."""
    from specact.scoring import predict_role
    from specact.train import load_trained

    run_dir = Path(run_dir)
    decisions = data.load_decisions(run_dir / "data" / "decisions")
    negatives = load_params(run_dir / "params.yaml").data.verifier_negatives
    crossfit = read_crossfit(run_dir)
    dev_records = data.to_records(decisions["dev"])
    proposer, tokenizer = load_trained(run_dir / "proposer")
    dev_rows = predict_role(proposer, tokenizer, dev_records, prompt_cfg, quiet=True)
    del proposer
    return verifier_pairs.verifier_pairs_dataset(
        decisions, negatives, seed, crossfit=crossfit,
        synthetic_weight=1.0 / max(cfg.crossfit_weight, 1) if crossfit else 1.0,
        dev_crossfit=verifier_pairs.proposals_from_rows(dev_records, dev_rows))


def pair_counts(pairs) -> pd.Series:
    """Pairs per split, kind (crossfit / proposer / gold / confusion) and accept label."""
    counts = {split: pairs[split].to_pandas().groupby(["kind", "accept"]).size().rename("n") for split in pairs}
    return pd.concat(counts, names=["split"])
