"""Data-parallel scale-out check: one role trained on 1 and on N GPUs through ``accelerate launch``.

    python -m scripts.gpu.scaleout --params params/gpu.yaml --role strong --steps 40 --processes 1 2

Trains the role exactly as its notebook does (``specact.train.train_sft`` with the profile's
settings; ``num_processes > 1`` re-launches it under ``accelerate launch``), on the same
training examples, with the same global batch, then prints one JSON line per run and a
comparison: per-step loss difference, dev accuracy, tokens/s and the speed-up. Not a test.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
import time
from pathlib import Path

import numpy as np


def emit(**kw):
    print(json.dumps(kw, default=lambda o: round(float(o), 5)), flush=True)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", default="params/gpu.yaml")
    ap.add_argument("--role", default="strong", choices=["proposer", "strong"])
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--n-dev", type=int, default=200)
    ap.add_argument("--out", default="", help="keep the runs here (default: a temporary directory)")
    args = ap.parse_args(argv)

    from specact.config import load_params
    from specact.data.build import build_records
    from specact.train import train_sft

    study = load_params(args.params)
    role = getattr(study, args.role)
    recs = build_records(study.data, study.seed)
    cfg0 = dataclasses.replace(role, max_steps=args.steps, crossfit_folds=0, save_steps=0, logging_steps=1)
    need = args.steps * cfg0.per_device_train_batch_size * cfg0.gradient_accumulation_steps
    train = recs["train"][:: max(1, len(recs["train"]) // need)][:need]  # rendering all of train costs minutes
    dev = recs["dev"][:: max(1, len(recs["dev"]) // args.n_dev)][: args.n_dev]
    root = Path(args.out or tempfile.mkdtemp(prefix="scaleout-"))
    runs = {}
    for n in args.processes:
        t0 = time.perf_counter()
        m = train_sft(train, dev, dataclasses.replace(cfg0, num_processes=n), study.prompt, root / f"np{n}", study.seed, root, quiet=True)
        hist = json.loads((root / f"np{n}" / "log_history.json").read_text())
        runs[n] = {"loss": [e["loss"] for e in hist if "loss" in e], **m}
        emit(what="run", role=args.role, processes=n, wall_s=time.perf_counter() - t0, steps=m["steps"],
             global_batch=m["global_batch"], train_seconds=m["train_seconds"], tokens_per_s=m["tokens_per_second"],
             dev_acc=m["dev_acc"], first_loss=m["first_loss"], final_loss=m["final_loss"], loss_curve=runs[n]["loss"])
    if len(runs) > 1:
        a, *rest = args.processes
        for b in rest:
            la, lb = np.array(runs[a]["loss"]), np.array(runs[b]["loss"])
            k = min(len(la), len(lb))
            rel = np.abs(la[:k] - lb[:k]) / np.abs(la[:k])
            emit(what="compare", processes=[a, b], logged_steps=k, loss_max_rel_diff=rel.max(), loss_mean_rel_diff=rel.mean(),
                 dev_acc=[runs[a]["dev_acc"], runs[b]["dev_acc"]],
                 speedup_tokens_per_s=runs[b]["tokens_per_second"] / runs[a]["tokens_per_second"])


if __name__ == "__main__":
    main()
