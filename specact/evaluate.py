"""Run every role once per split and write the per-step prediction rows of DESIGN.md.

Configurations A-E are then pure functions of these rows (:mod:`specact.deferral`), each
charged for every call it would make. Computing each role once keeps the comparison paired
(the same steps, the same model outputs) and the evaluation cheap.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import random
import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from specact.actions import LABELS, uses_tool
from specact.config import EvalConfig, ModelSpec, StudyConfig, build
from specact.predictions import read_rows, write_rows  # noqa: F401 -- the row files' one reader/writer, re-exported
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


def base_row(record: dict) -> dict:
    """The gold side of a prediction row: id, source, domain, group (the split unit: scenario group or
    trajectory, for cluster statistics), label and gold call."""
    from specact.data.build import domain_of, group_of

    return {"id": record["id"], "source": record["meta"]["source"], "domain": domain_of(record),
            "group": group_of(record), "label": record["label"], "gold_call": gold_call(record)}


def predict(records: list[dict], roles: dict, eval_cfg: EvalConfig, prompt_cfg: PromptConfig, seed: int = 0,
            quiet: bool = False, linear=None, stop_early: bool = True, share_prefill: bool | None = None) -> list[dict]:
    """Per-step rows: every model role's prediction, the verifier on the cheap proposal, E's N samples,
    and (given a fitted ``linear`` baseline pipeline) the linear role's ``{pred, logp}``.

    Each role generates calls within its ``call_budget`` (:func:`set_call_budgets`; else
    ``eval_cfg.max_new_tokens``), stopping once a call is settled unless ``stop_early=False``.
    ``share_prefill`` (default ``eval_cfg.share_prefill``): calls (E's samples' too) are decoded on
    the label scorer's KV cache and a step's verifier reads share one prefill
    (:mod:`specact.prefix_sharing`); ``False``: each prompt is prefilled again in ``generate`` and per
    verifier read, the path before it (the benchmark's baseline).
    """
    from specact.prompts import prompt_ids, tokenizer_fingerprint

    share_prefill = eval_cfg.share_prefill if share_prefill is None else share_prefill
    rows = [base_row(r) for r in records]
    prompts: dict[str, list[list[int]]] = {}  # per tokenizer: the roles of a profile usually share one
    extra = None  # E's samples' calls, when decoded with the proposer's labels
    for role in ("cheap", "strong", "strong_frozen"):
        if role not in roles:
            continue
        tok = roles[role][1]
        key = tokenizer_fingerprint(tok)
        if key not in prompts:
            prompts[key] = [prompt_ids(tok, r, prompt_cfg) for r in records]
        out, calls = _predict_role(roles[role], records, prompts[key], eval_cfg, seed, quiet, stop_early,
                                   share_prefill, samples=role == "cheap")
        extra = calls if role == "cheap" else extra
        for row, o in zip(rows, out):
            row[role] = o
    if linear is not None:
        _linear_rows(rows, records, linear, roles["cheap"][1], prompt_cfg)
    owners, props = [], []
    if eval_cfg.n_samples > 0:
        cheap_cfg = dataclasses.replace(eval_cfg, max_new_tokens=roles["cheap"][2].get("call_budget", eval_cfg.max_new_tokens))
        owners, props = _sample_proposals(rows, records, roles, cheap_cfg, prompt_cfg, seed, quiet, stop_early, extra)
    cheap = [(row["cheap"]["pred"], row["cheap"]["call"]) for row in rows]
    verify = functools.partial(_verify, rows, records, roles, eval_cfg, prompt_cfg, quiet, share_prefill)
    if share_prefill:  # one read per distinct proposal, one prefill per step (the cheap proposal is E's first)
        v_cheap, v_samples = _split(verify(list(range(len(rows))) + [i for i, _, _ in owners], cheap + props), len(rows))
    else:
        v_cheap, v_samples = verify(list(range(len(rows))), cheap), verify([i for i, _, _ in owners], props)
    for i, row in enumerate(rows):
        row["verifier_cheap"] = {"score": float(v_cheap["score"][i]), "prob": float(v_cheap["prob"][i]),
                                 "tokens": int(v_cheap["tokens"][i]), "seconds": v_cheap["seconds"] / max(len(rows), 1)}
    if eval_cfg.n_samples > 0:
        _fill_samples(rows, owners, props, v_samples)
    return rows


def _predict_role(role, records, prompts, eval_cfg: EvalConfig, seed, quiet, stop_early, share_prefill, samples):
    """One role's rows, and (``samples``, on the shared-prefill path) E's extra calls
    ``{(i, label): (call, tokens, seconds)}`` decoded in the same pass (else None)."""
    from specact.prefix_sharing import plain_greedy, predict_role_shared
    from specact.scoring import predict_role, sample_proposals

    model, tok, info = role
    budget = info.get("call_budget", eval_cfg.max_new_tokens)
    if not (share_prefill and eval_cfg.generate_calls and plain_greedy(model)):
        return predict_role(model, tok, records, None, eval_cfg.batch_size, eval_cfg.generate_calls, budget, quiet,
                            stop_early, prompts, generate_batch_size=eval_cfg.generation_batch_size), None
    picks = None
    if samples and eval_cfg.n_samples > 0:
        def picks(idx, logp):  # E's top-N (or drawn) labels; each row's draw depends on its index only
            return [[LABELS[j] for j in js] for js in sample_proposals(logp, eval_cfg.n_samples, eval_cfg.sample_temperature, seed, idx)]
    out, calls = predict_role_shared(model, tok, prompts, eval_cfg.batch_size, budget, quiet, stop_early, picks)
    return out, calls if picks else None


def _verify(rows, records, roles, eval_cfg: EvalConfig, prompt_cfg, quiet, shared: bool, owners: list[int], props) -> dict:
    """The verifier's scores of ``props``, proposal k made at step ``owners[k]``
    (:func:`prefix_sharing.verifier_scores_shared` when ``shared``: a prefill per step)."""
    from specact.prefix_sharing import verifier_scores_shared
    from specact.scoring import verifier_scores

    vmodel, vtok, vinfo = roles["verifier"]
    cal = vinfo["calibration"]
    reads = (cal or {}).get("reads_proposer")  # DEFERRAL: a verifier trained on the proposer's distribution reads it
    fn = verifier_scores_shared if shared else verifier_scores
    return fn(vmodel, vtok, [records[i] for i in owners], props, prompt_cfg, cal, eval_cfg.batch_size, quiet=quiet,
              logps=[rows[i]["cheap"]["logp"] for i in owners] if reads else None)


def _split(v: dict, n: int) -> tuple[dict, dict]:
    """One verifier pass's outputs as two: its first ``n`` reads and the rest, seconds shared per read."""
    per = v["seconds"] / max(len(v["score"]), 1)

    def part(sl: slice) -> dict:
        return {k: (x[sl] if k != "seconds" else per * len(v["score"][sl])) for k, x in v.items()}

    return part(slice(0, n)), part(slice(n, None))


def _extra_calls(picks, rows, records, roles, eval_cfg, prompt_cfg, quiet, stop_early) -> tuple[dict, float]:
    """The calls of E's ``picks`` that use a tool and are not the cheap proposal, generated now:
    ({(i, label): (call, tokens)}, seconds per generated token)."""
    from specact.scoring import generate_calls

    model, tok, _ = roles["cheap"]
    need = [(i, lab) for i, labs in enumerate(picks) for lab in labs
            if uses_tool(lab) and lab != rows[i]["cheap"]["pred"] and eval_cfg.generate_calls]
    gen = generate_calls(model, tok, [records[i] for i, _ in need], [lab for _, lab in need], prompt_cfg,
                         eval_cfg.max_new_tokens, eval_cfg.generation_batch_size, quiet, stop_early) if need else {"calls": [], "gen_tokens": [], "seconds": 0.0}
    per_tok = gen["seconds"] / max(sum(int(t) for t in gen["gen_tokens"]), 1)
    return {key: (c, int(t)) for key, c, t in zip(need, gen["calls"], gen["gen_tokens"])}, per_tok


def _sample_proposals(rows, records, roles, eval_cfg, prompt_cfg, seed, quiet, stop_early, extra=None):
    """E: the cheap model's top-N distinct labels (``sample_temperature`` 0; else drawn from its one
    prefill), each with a call where it uses a tool (the greedy call is reused for the cheap model's
    own label; ``extra``: the others' ``{(i, label): (call, tokens, seconds)}`` already decoded with
    the proposer's labels, else generated now). Returns (owners [(step, tokens, seconds)], proposals
    [(label, call)])."""
    from specact.scoring import sample_proposals

    logp = np.array([row["cheap"]["logp"] for row in rows])
    picks = [[LABELS[j] for j in js] for js in sample_proposals(logp, eval_cfg.n_samples, eval_cfg.sample_temperature, seed)]
    if extra is None:
        extra, per_tok = _extra_calls(picks, rows, records, roles, eval_cfg, prompt_cfg, quiet, stop_early)
        extra = {k: (c, t, t * per_tok) for k, (c, t) in extra.items()}
    props, owners = [], []
    for i, labs in enumerate(picks):
        for lab in labs:
            if lab == rows[i]["cheap"]["pred"]:
                call, toks, secs = rows[i]["cheap"]["call"], 0, 0.0  # already generated (and charged) for the cheap call
            else:
                call, toks, secs = extra.get((i, lab), (None, 0, 0.0))
            props.append((lab, call))
            owners.append((i, toks, secs))
    return owners, props


def _fill_samples(rows, owners, props, v) -> None:
    """``row["samples"]``: E's proposals of each step with the verifier's scores ``v`` of them."""
    for row in rows:
        row["samples"] = []
    for k, ((i, toks, secs), (lab, call)) in enumerate(zip(owners, props)):
        rows[i]["samples"].append({
            "label": lab, "call": call, "score": float(v["score"][k]), "prob": float(v["prob"][k]),
            "tokens": toks, "seconds": secs,
            "verifier_tokens": int(v["tokens"][k]), "verifier_seconds": v["seconds"] / max(len(props), 1),
        })


def set_call_budgets(roles: dict, train_records: list[dict], cap: int, run_dir: str | Path | None = None) -> dict:
    """Store each generating role's ``call_budget`` (``max_new_tokens`` of its calls) in its info:
    sized from the train split's gold calls with its tokenizer (:func:`specact.scoring.call_token_budget`),
    at most ``cap`` (``EvalConfig.max_new_tokens``). Computed once per tokenizer and cap, kept in
    ``<run_dir>/cache/call_budgets.json``. Returns ``{role: budget}``."""
    from specact.prompts import tokenizer_fingerprint
    from specact.scoring import call_token_budget

    path = Path(run_dir) / "cache" / "call_budgets.json" if run_dir else None
    stored = json.loads(path.read_text()) if path and path.is_file() else {}
    out = {}
    for role in ("cheap", "strong", "strong_frozen"):
        if role in roles:
            _, tok, info = roles[role]
            key = f"{tokenizer_fingerprint(tok)}-{cap}"
            if key not in stored:
                stored[key] = call_token_budget(tok, train_records, cap)
            out[role] = info["call_budget"] = stored[key]
    if path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(stored, indent=1, sort_keys=True))
    return out


def fit_linear(train_records: list[dict], tokenizer, prompt_cfg: PromptConfig):
    """The TF-IDF + logistic-regression baseline (``specact.baseline``) fitted on the train prompts as
    the proposer sees them, or None while that module is absent (the ``linear`` role is then left out)."""
    try:
        from specact.baseline import fit_linear as fit
    except ImportError:  # TRAIN's baseline module has not landed in this checkout
        return None
    from specact.prompts import render_prompt

    return fit(train_records, [render_prompt(tokenizer, r, prompt_cfg) for r in train_records])


def _linear_rows(rows: list[dict], records: list[dict], pipe, tokenizer, prompt_cfg: PromptConfig) -> None:
    from specact.baseline import predict_linear
    from specact.prompts import render_prompt

    pred, logp = predict_linear(pipe, [render_prompt(tokenizer, r, prompt_cfg) for r in records])
    for row, p, lp in zip(rows, pred, np.asarray(logp)):
        row["linear"] = {"pred": str(p), "logp": [float(x) for x in lp]}


PREDICTED_SPLITS = ("dev", "test", "ood")  # dev chooses thresholds; the others are reported


def prediction_targets(decisions, eval_cfg: EvalConfig, seed: int, data_file: str | Path = "") -> dict[str, list[dict]]:
    """``{split: records}`` to predict: dev plus test and ood where the run has them (each a seeded
    whole-trajectory subsample of at most ``max_examples``), or dev plus ``external`` (the whole
    file) when a ``data_file`` is evaluated instead of the run's splits."""
    from specact.data.build import to_records
    from specact.records import read_jsonl

    names = ["dev"] if data_file else [s for s in PREDICTED_SPLITS if s in decisions]
    out = {s: select(to_records(decisions[s]), eval_cfg.max_examples, seed) for s in names}
    if data_file:
        out["external"] = read_jsonl(data_file)
    return out


def predict_splits(targets: dict[str, list[dict]], roles: dict, eval_cfg: EvalConfig, prompt_cfg: PromptConfig,
                   seed: int = 0, reuse: dict[str, str | Path] | None = None, done_dir: str | Path | None = None,
                   **kw) -> dict[str, list[dict]]:
    """:func:`predict` on every split of ``targets``, except where ``reuse`` names the file of rows a
    run already computed for that split (``{"dev": path}``: an external evaluation keeps the run's
    dev predictions, hence its thresholds). ``kw`` goes to :func:`predict`.

    ``done_dir`` keeps each split's rows once predicted; a resumed attempt of the stage (see
    :func:`specact.trainer_common.resuming`) takes the splits it finished from there, a fresh one empties it.
    """
    from specact import trainer_common as tc

    reuse = {k: v for k, v in (reuse or {}).items() if v}
    if done_dir is not None:
        if not tc.resuming():
            shutil.rmtree(done_dir, ignore_errors=True)  # another attempt's rows (other models, other params)
        Path(done_dir).mkdir(parents=True, exist_ok=True)
    out = {}
    for split, recs in targets.items():
        done = Path(done_dir) / f"{split}.jsonl" if done_dir is not None else None
        if split in reuse:
            out[split] = read_rows(reuse[split])
        elif done is not None and tc.resuming() and done.is_file():
            out[split] = read_rows(done)
        else:
            out[split] = predict(recs, roles, eval_cfg, prompt_cfg, seed, **kw)
            if done is not None:
                write_rows(out[split], done)
    return out


def write_predictions(rows_by_split: dict[str, list[dict]], eval_dir: str | Path, reported: str) -> dict[str, Path]:
    """Each split's rows to ``<eval_dir>/predictions_<split>.jsonl``; the ``reported`` split's (the
    evaluated file's, for an external evaluation) also to ``predictions.jsonl``. Returns the paths."""
    d = Path(eval_dir)
    out = {s: write_rows(rows, d / f"predictions_{s}.jsonl") for s, rows in rows_by_split.items()}
    shown = "external" if "external" in rows_by_split else reported
    if shown in rows_by_split:
        out["reported"] = write_rows(rows_by_split[shown], d / "predictions.jsonl")
    return out


def role_table(rows: list[dict]) -> pd.DataFrame:
    """Each model role on its own: action-type accuracy, mean prompt and generated tokens, ms per decision."""
    from specact.judge import proposal_correct

    out = {}
    for role in ("cheap", "strong", "strong_frozen", "linear"):
        if rows and role in rows[0]:
            df = pd.DataFrame([r[role] for r in rows])
            out[role] = {"accuracy": float(np.mean([proposal_correct(r, r[role]["pred"]) for r in rows]))}
            for col in ("prompt_tokens", "gen_tokens"):
                if col in df:
                    out[role][col] = float(df[col].mean())
            if "seconds" in df:
                out[role]["ms_per_decision"] = 1000 * float(df["seconds"].mean())
    return pd.DataFrame(out).T
