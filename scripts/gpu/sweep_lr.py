"""Learning-rate sweep of one or more SFT roles on dev, each rate in its own process, all at once.

The study's roles are small enough that several trainings share one GPU (an H200 holds two
`gpu`-profile trainings with room to spare, and a 135M model leaves most of the card idle), so the
rates of a sweep run side by side instead of one after another. Each process trains the role with
its profile's recipe (dev loss, best checkpoint, early stopping) capped at ``--max-steps`` and
writes one CSV row; the parent prints the table and the rate with the lowest best dev loss per
role, which is what a params file's ``learning_rate`` comment cites.

    python -m scripts.gpu.sweep_lr --params params/gpu.yaml --roles proposer strong \\
        --rates proposer=2e-4,5e-4,1e-3 strong=2e-5,5e-5,1e-4 --max-steps 300 --out $OUT/sweep
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd


def parse_rates(specs: list[str]) -> dict[str, list[float]]:
    """``role=r1,r2`` items -> {role: [r1, r2]}."""
    out = {}
    for spec in specs:
        role, _, rates = spec.partition("=")
        out[role] = [float(r) for r in rates.split(",") if r]
    return out


def one_rate(params: str, role: str, rate: float, max_steps: int, out: Path, seed: int) -> dict:
    """Train ``role`` at ``rate`` (in this process) and return its dev figures."""
    from specact.config import load_params
    from specact.data.build import build_records
    from specact.train import sweep_lr

    cfg = load_params(params)
    records = build_records(cfg.data, cfg.seed)
    role_cfg = dataclasses.replace(getattr(cfg, role), max_steps=max_steps) if max_steps else getattr(cfg, role)
    run_dir = out / f"run-{role}-{rate:g}"  # a prompt cache of its own: no two processes write one file
    df = sweep_lr(records["train"], records["dev"], role_cfg, cfg.prompt, [rate], out / f"{role}-{rate:g}", seed,
                  run_dir, batch_size=cfg.eval.batch_size)
    return {"role": role, **df.iloc[0].to_dict()}


def launch_all(args, rates: dict[str, list[float]]) -> list[dict]:
    """One child process per (role, rate); wait for all; collect their rows."""
    procs = []
    for role, rs in rates.items():
        for rate in rs:
            log = open(args.out / f"{role}-{rate:g}.log", "w")
            cmd = [sys.executable, "-m", "scripts.gpu.sweep_lr", "--params", args.params, "--one", f"{role}={rate}",
                   "--max-steps", str(args.max_steps), "--out", str(args.out), "--seed", str(args.seed)]
            procs.append((role, rate, subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)))
    rows = []
    for role, rate, proc in procs:
        rc = proc.wait()
        row_file = args.out / f"{role}-{rate:g}.json"
        rows.append(json.loads(row_file.read_text()) if rc == 0 and row_file.exists()
                    else {"role": role, "learning_rate": rate, "error": f"exit {rc}: see {role}-{rate:g}.log"})
    return rows


def main(args) -> int:
    args.out = Path(args.out)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.one:
        role, rate = args.one.split("=")
        row = one_rate(args.params, role, float(rate), args.max_steps, args.out, args.seed)
        (args.out / f"{role}-{float(rate):g}.json").write_text(json.dumps(row))
        return 0
    t0 = time.time()
    df = pd.DataFrame(launch_all(args, parse_rates(args.rates)))
    df.to_csv(args.out / "sweep_lr.csv", index=False)
    print(df.to_string(index=False))
    ok = df[df["best_dev_loss"].notna()] if "best_dev_loss" in df else df.iloc[0:0]
    best = {r: float(g.loc[g["best_dev_loss"].idxmin(), "learning_rate"]) for r, g in ok.groupby("role")}
    (args.out / "best.json").write_text(json.dumps(best))
    print(f"best (lowest best dev loss): {best}   [{time.time() - t0:.0f} s for the sweep]")
    return 0 if len(best) == len(parse_rates(args.rates)) else 1


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--params", default="params/gpu.yaml")
    p.add_argument("--rates", nargs="*", default=[], help="role=r1,r2,... (one item per role)")
    p.add_argument("--max-steps", type=int, default=0, help="cap each training (0: the profile's epochs)")
    p.add_argument("--out", default="sweep")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--one", default="", help=argparse.SUPPRESS)  # a child: role=rate
    return p.parse_args(argv)


if __name__ == "__main__":
    sys.exit(main(parse_args()))
