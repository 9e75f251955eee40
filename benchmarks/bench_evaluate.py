"""External evaluation, decision points per second: before and after, side by side (not a test).

    python benchmarks/bench_evaluate.py --run runs/smoke                  # the run's test split as the file
    python benchmarks/bench_evaluate.py --run runs/default --data my.jsonl --profile

Both modes predict every role on the same external file with the same trained run, each in a
fresh process (no prompt or model cache shared between them), and time what ``specact
evaluate``'s predict stage does after loading the models:

* ``before``: the run's dev split is scored again (to choose thresholds the run already chose),
  calls are generated with ``generate`` (each prompt prefilled again) to eos or the full
  ``eval.max_new_tokens`` budget, and the verifier reads each proposal's whole text;
* ``after``: the run's dev prediction rows are reused, each role's call budget is sized from the
  train split's gold calls, generation stops once a call is settled, calls are decoded on the
  label scorer's KV cache and a step's verifier reads share one prefill (``share_prefill``,
  :mod:`specact.prefix_sharing`).

Printed: points/second of the external file for each mode, the speed-up, tokens generated per
role, and whether every trained role's labels and calls are identical in both modes.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

import specact.evaluate as ev
from specact.data.build import load_decisions, to_records
from specact.records import read_jsonl, write_jsonl

TRAINED_ROLES = ("cheap", "strong")  # the frozen model is not trained: its calls may change (see docstring)


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", required=True, help="a trained run directory (runs/<id>)")
    ap.add_argument("--data", default="", help="spec-format JSONL to evaluate (default: the run's test split)")
    ap.add_argument("--profile", action="store_true", help="print the top functions of the 'after' mode by cumulative time")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads in both modes (0: torch's default)")
    ap.add_argument("--mode", choices=("before", "after"), help=argparse.SUPPRESS)  # one child process
    ap.add_argument("--out", default="", help=argparse.SUPPRESS)
    return ap.parse_args(argv)


def run_mode(args) -> dict:
    """One mode in this process: load the run, predict dev (before) and the file, write rows + timings."""
    if args.threads:
        torch.set_num_threads(args.threads)
    study = ev.load_study(args.run)
    cfg, prompt_cfg, out = study.eval, study.prompt, Path(args.out)
    dd = load_decisions(Path(args.run) / "data" / "decisions")
    t0 = time.perf_counter()
    roles = ev.load_roles(args.run, study.strong.model if study.strong.zero_shot else None, study.seed)
    t_load = time.perf_counter() - t0
    targets = {"dev": ev.select(to_records(dd["dev"]), cfg.max_examples, study.seed), "external": read_jsonl(args.data)}
    after = args.mode == "after"
    profiler = cProfile.Profile() if after and args.profile else None
    t0 = time.perf_counter()
    if profiler:
        profiler.enable()
    if after:
        ev.set_call_budgets(roles, to_records(dd["train"]), cfg.max_new_tokens, run_dir=None)
    reuse = {"dev": out / "dev_before.jsonl"} if after else {}
    rows = ev.predict_splits(targets, roles, cfg, prompt_cfg, study.seed, reuse=reuse, quiet=True, stop_early=after,
                             share_prefill=after)
    seconds = time.perf_counter() - t0
    if profiler:
        profiler.disable()
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(25)
    for split, r in rows.items():
        ev.write_rows(r, out / f"{split}_{args.mode}.jsonl")
    return {"mode": args.mode, "points": len(targets["external"]), "dev_points": 0 if after else len(targets["dev"]),
            "seconds": seconds, "load_seconds": t_load,
            "budgets": {r: info.get("call_budget", cfg.max_new_tokens) for r, (_, _, info) in roles.items() if r != "verifier"}}


def spawn(args, mode: str, out: Path) -> dict:
    cmd = [sys.executable, __file__, "--run", args.run, "--data", args.data, "--mode", mode, "--out", str(out)]
    cmd += (["--profile"] if args.profile else []) + ["--threads", str(args.threads)]
    subprocess.run(cmd, check=True)
    return json.loads((out / f"timing_{mode}.json").read_text())


def compare(before: list[dict], after: list[dict]) -> dict:
    """Per role: identical predicted labels / calls (fraction of points), mean generated tokens in each mode."""
    out = {}
    for role in ("cheap", "strong", "strong_frozen"):
        if role in before[0]:
            pairs = [(b[role], a[role]) for b, a in zip(before, after)]
            out[role] = {"same_label": sum(b["pred"] == a["pred"] for b, a in pairs) / len(pairs),
                         "same_call": sum(b["call"] == a["call"] for b, a in pairs) / len(pairs),
                         "gen_tokens_before": sum(b["gen_tokens"] for b, _ in pairs) / len(pairs),
                         "gen_tokens_after": sum(a["gen_tokens"] for _, a in pairs) / len(pairs)}
    out["ms per decision"] = {f"{path}_{m}": 1000 * sum(map(fn, rows)) / len(rows)
                              for path, fn in (("cheap_path", cheap_path_seconds), ("frozen", _frozen_seconds))
                              for m, rows in (("before", before), ("after", after))}
    samples = [(b.get("samples"), a.get("samples")) for b, a in zip(before, after)]
    out["samples"] = {"same": sum(b == a or _same_samples(b, a) for b, a in samples) / len(samples)}
    return out


def cheap_path_seconds(row: dict) -> float:
    """What the cheap side of a decision costs: the proposer, the verifier on its proposal, E's samples."""
    samples = row.get("samples") or []
    return (row["cheap"]["seconds"] + row["verifier_cheap"]["seconds"]
            + sum(x.get("seconds", 0.0) + x.get("verifier_seconds", 0.0) for x in samples))


def _frozen_seconds(row: dict) -> float:
    return row.get("strong_frozen", {}).get("seconds", 0.0)


def _same_samples(before, after) -> bool:
    key = lambda s: [(x["label"], x["call"]) for x in s or []]  # noqa: E731
    return key(before) == key(after)


def report(timings: dict, diff: dict, args) -> None:
    b, a = timings["before"], timings["after"]
    pps = {m: t["points"] / t["seconds"] for m, t in timings.items()}
    print(f"run {args.run}, file {args.data}: {a['points']} external points; before also re-scores {b['dev_points']} dev points; "
          f"torch threads {args.threads or torch.get_num_threads()}")
    print(f"call budgets: before {b['budgets']}, after {a['budgets']}")
    for m, t in timings.items():
        print(f"{m:>6}: {t['seconds']:7.2f} s predicting ({t['load_seconds']:.1f} s loading models)  {pps[m]:7.2f} points/s")
    print(f"speed-up: {pps['after'] / pps['before']:.2f}x points/s")
    for role, d in diff.items():
        print(f"{role:>13}: " + "  ".join(f"{k} {v:.3g}" for k, v in d.items()))
    changed = [r for r in TRAINED_ROLES if r in diff and (diff[r]["same_label"] < 1 or diff[r]["same_call"] < 1)]
    print("trained roles' labels and calls identical: " + ("yes" if not changed else f"NO ({changed})"))


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.mode:
        timing = run_mode(args)
        (Path(args.out) / f"timing_{args.mode}.json").write_text(json.dumps(timing))
        return
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        if not args.data:
            args.data = str(out / "test.jsonl")
            write_jsonl(to_records(load_decisions(Path(args.run) / "data" / "decisions")["test"]), args.data)
        timings = {m: spawn(args, m, out) for m in ("before", "after")}  # after reads before's dev rows
        rows = {m: ev.read_rows(out / f"external_{m}.jsonl") for m in timings}
        report(timings, compare(rows["before"], rows["after"]), args)


if __name__ == "__main__":
    main()
