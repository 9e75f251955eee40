"""Run every role once per split and write the per-step prediction rows of DESIGN.md.

Configurations A-E are then pure functions of these rows (:mod:`specact.cascade`), each
charged for every call it would make. Computing each role once keeps the comparison paired
(the same steps, the same model outputs) and the evaluation cheap.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pandas as pd

from specact.actions import LABELS, uses_tool
from specact.config import EvalConfig, ModelSpec, StudyConfig, build
from specact.prompts import PromptConfig, gold_call

ROLE_DIRS = {"cheap": "proposer", "strong": "strong", "verifier": "verifier"}


def select(records: list[dict], max_examples: int, seed: int) -> list[dict]:
    """A seeded subsample of whole trajectories, up to ``max_examples`` points (0 = all)."""
    if not max_examples or len(records) <= max_examples:
        return records
    trajs = sorted({r["meta"]["trajectory_id"] for r in records})
    random.Random(seed).shuffle(trajs)
    by_traj: dict[str, list[dict]] = {}
    for r in records:
        by_traj.setdefault(r["meta"]["trajectory_id"], []).append(r)
    out: list[dict] = []
    for t in trajs:
        if len(out) + len(by_traj[t]) > max_examples and out:
            continue
        out += by_traj[t]
    return out


def load_study(run_dir: str | Path) -> StudyConfig:
    import yaml

    return build(StudyConfig, yaml.safe_load((Path(run_dir) / "params.yaml").read_text()))


def load_roles(run_dir: str | Path, strong_spec: ModelSpec | None, seed: int = 0, device=None) -> dict:
    """``{role: (model, tokenizer, info)}`` for cheap, strong, verifier and (if a spec is given) strong_frozen."""
    from specact.models import load_model, load_tokenizer, model_stats
    from specact.prompts import load_prompt_cache
    from specact.train import load_trained, prompt_cache_path
    from specact.verifier import load_calibration

    run_dir = Path(run_dir)
    roles = {}
    for role, sub in ROLE_DIRS.items():
        model, tok = load_trained(run_dir / sub, device=device)
        load_prompt_cache(prompt_cache_path(run_dir, tok))  # dev prompts the training stages rendered
        info = json.loads((run_dir / sub / "metrics.json").read_text())
        stats = {k: info[k] for k in ("params_total", "params_non_embedding", "flops_per_token", "flops_per_token_measured") if k in info}
        if role == "verifier":
            stats["calibration"] = load_calibration(run_dir / sub)
        roles[role] = (model, tok, stats)
    if strong_spec is not None:  # A_frozen: the strong model before any fine-tuning, same prompt
        tok = load_tokenizer(strong_spec, run_dir)
        model = load_model(strong_spec, "causal-lm", device, run_dir, tokenizer=tok, seed=seed)
        roles["strong_frozen"] = (model, tok, model_stats(model, tok))
    return roles


def role_info(roles: dict) -> dict:
    return {r: {k: v for k, v in info.items() if k != "calibration"} for r, (_, _, info) in roles.items()}


def predict(records: list[dict], roles: dict, eval_cfg: EvalConfig, prompt_cfg: PromptConfig, seed: int = 0,
            quiet: bool = False) -> list[dict]:
    """Per-step rows: every model role's prediction, the verifier on the cheap proposal, and E's N samples."""
    from specact.scoring import generate_calls, predict_role, sample_proposals, verifier_scores

    bs, n = eval_cfg.batch_size, len(records)
    rows = [{"id": r["id"], "source": r["meta"]["source"], "label": r["label"], "gold_call": gold_call(r)} for r in records]
    for role in ("cheap", "strong", "strong_frozen"):
        if role not in roles:
            continue
        model, tok, _ = roles[role]
        out = predict_role(model, tok, records, prompt_cfg, bs, eval_cfg.generate_calls, eval_cfg.max_new_tokens, quiet)
        for row, o in zip(rows, out):
            row[role] = o
    vmodel, vtok, vinfo = roles["verifier"]
    cal = vinfo["calibration"]
    cheap_props = [(row["cheap"]["pred"], row["cheap"]["call"]) for row in rows]
    v = verifier_scores(vmodel, vtok, records, cheap_props, prompt_cfg, cal, bs, quiet=quiet)
    for i, row in enumerate(rows):
        row["verifier_cheap"] = {"score": float(v["score"][i]), "prob": float(v["prob"][i]), "tokens": int(v["tokens"][i]),
                                 "seconds": v["seconds"] / max(n, 1)}
    if eval_cfg.n_samples > 0:
        _samples(rows, records, roles, eval_cfg, prompt_cfg, seed, quiet, generate_calls, sample_proposals, verifier_scores)
    return rows


def _samples(rows, records, roles, eval_cfg, prompt_cfg, seed, quiet, generate_calls, sample_proposals, verifier_scores):
    """E: N distinct labels drawn from the cheap model's one prefill; calls generated where a sampled
    label uses a tool (the greedy call is reused for the cheap model's own label); each scored by the verifier."""
    model, tok, _ = roles["cheap"]
    vmodel, vtok, vinfo = roles["verifier"]
    logp = np.array([row["cheap"]["logp"] for row in rows])
    picks = sample_proposals(logp, eval_cfg.n_samples, eval_cfg.sample_temperature, seed)
    need = [(i, LABELS[j]) for i, js in enumerate(picks) for j in js
            if uses_tool(LABELS[j]) and LABELS[j] != rows[i]["cheap"]["pred"] and eval_cfg.generate_calls]
    gen = generate_calls(model, tok, [records[i] for i, _ in need], [lab for _, lab in need], prompt_cfg,
                         eval_cfg.max_new_tokens, eval_cfg.batch_size, quiet) if need else {"calls": [], "gen_tokens": [], "seconds": 0.0}
    extra = {key: (c, int(t)) for key, c, t in zip(need, gen["calls"], gen["gen_tokens"])}
    per_tok = gen["seconds"] / max(sum(int(t) for t in gen["gen_tokens"]), 1)
    props, owners = [], []
    for i, js in enumerate(picks):
        for j in js:
            lab = LABELS[j]
            if lab == rows[i]["cheap"]["pred"]:
                call, toks = rows[i]["cheap"]["call"], 0  # already generated (and charged) for the cheap call
            else:
                call, toks = extra.get((i, lab), (None, 0))
            props.append((lab, call))
            owners.append((i, toks))
    v = verifier_scores(vmodel, vtok, [records[i] for i, _ in owners], props, prompt_cfg, vinfo["calibration"],
                        eval_cfg.batch_size, quiet=quiet)
    for i in range(len(rows)):
        rows[i]["samples"] = []
    for k, ((i, toks), (lab, call)) in enumerate(zip(owners, props)):
        rows[i]["samples"].append({
            "label": lab, "call": call, "score": float(v["score"][k]), "prob": float(v["prob"][k]),
            "tokens": toks, "seconds": toks * per_tok,
            "verifier_tokens": int(v["tokens"][k]), "verifier_seconds": v["seconds"] / max(len(props), 1),
        })


def write_rows(rows: list[dict], path: str | Path) -> Path:
    from specact.report import to_jsonable

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as fh:
        for r in rows:
            fh.write(json.dumps(to_jsonable(r), sort_keys=True) + "\n")
    return path


def read_rows(path: str | Path) -> list[dict]:
    with Path(path).open() as fh:
        return [json.loads(line) for line in fh if line.strip()]


def save_steps(res, directory: str | Path) -> None:
    """One configuration's per-step results + summary, for the report notebook to gather."""
    from specact.nbutil import write_json

    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    res.steps.to_json(d / "steps.jsonl", orient="records", lines=True)
    write_json(d / "metrics.json", {"summary": res.summary(), "threshold": res.threshold, "meta": res.meta})


def load_steps(directory: str | Path):
    from specact.cascade import StepResults
    from specact.nbutil import read_json

    d = Path(directory)
    m = read_json(d / "metrics.json")
    steps = pd.read_json(d / "steps.jsonl", orient="records", lines=True)
    return StepResults(m["summary"]["config"], steps, m["threshold"], m["meta"])
