"""Command line: ``python -m specact run params/<profile>.yaml`` and ``python -m specact evaluate``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from specact.config import ParamsError
from specact.records import RecordError


def _overrides(pairs: list[str]) -> dict:
    """``--set proposer.max_steps=50`` -> ``{"proposer.max_steps": 50}`` (values parsed as YAML).

    Dotted keys stay dotted: :func:`specact.config.apply_overrides` changes that one key and keeps
    its siblings (``--set proposer.model.tokenizer=...`` keeps the model's ``config``).
    """
    import yaml

    out: dict = {}
    for pair in pairs:
        key, eq, value = pair.partition("=")
        if not eq or not key or any(not part for part in key.split(".")):
            raise ParamsError(f"--set expects key=value (key dotted like proposer.max_steps), got {pair!r}")
        try:
            out[key] = yaml.safe_load(value)
        except yaml.YAMLError as e:
            raise ParamsError(f"--set {key}: value is not valid YAML ({e})") from None
    return out


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="specact", description=__doc__)
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="run a study profile end to end (papermill over notebooks/)")
    r.add_argument("params", help="params YAML, e.g. params/default.yaml")
    r.add_argument("--resume", action="store_true", help="reuse a run directory whose params changed (redoes changed stages)")
    r.add_argument("--only", nargs="*", default=None, help="run only these stages (their upstream stages must be current)")
    r.add_argument("--force", nargs="*", default=None, help="rerun these stages even if unchanged")
    r.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="override a param, e.g. proposer.max_steps=50")
    r.add_argument("--seeds", nargs="+", type=int, default=None, metavar="SEED",
                   help="run the study once per seed, as runs/<run_id>-s<seed>")
    r.add_argument("--jobs", type=int, default=1, help="with --seeds: seeds run at once, each in its own process")
    r.add_argument("--stage-jobs", type=int, default=1,
                   help="stages of one run at once where the graph allows (train_strong beside train_proposer and "
                        "train_verifier; the eval stages side by side); with --seeds, per seed")
    r.add_argument("--kernel", default="specact", help="Jupyter kernel name")
    e = sub.add_parser("evaluate", help="evaluate every configuration of a trained run on any spec-format JSONL")
    e.add_argument("--run", required=True, help="a trained run directory, e.g. runs/default")
    e.add_argument("--data", required=True, help="decision points in the ACTIONS.md JSONL format")
    e.add_argument("--out", default=None, help="output directory (default reports/<run>/external/<file stem>-<content hash>)")
    e.add_argument("--overwrite", action="store_true", help="replace a non-empty --out that an earlier evaluate wrote")
    e.add_argument("--rescore-dev", action="store_true", help="score the run's dev split again instead of reusing its predictions")
    e.add_argument("--kernel", default="specact")
    c = sub.add_parser("compare", help="one table of several runs' results (accuracy, costs, APGR, verifier AUROC)")
    c.add_argument("paths", nargs="+", metavar="RUN_OR_REPORT_DIR", help="reports/<id>, runs/<id> or a results.json")
    c.add_argument("--seeds", action="store_true",
                   help="the paths are one study's seeds (reports/<id>-s0 ...): mean, sd and min-max across them "
                        "beside each seed's own interval")
    c.add_argument("--out", default=None, help="also write compare.md / .html / .csv (with --seeds: seeds.*) here")
    c.add_argument("--html", action="store_true", help="print HTML instead of Markdown")
    return ap


def _dispatch(args) -> None:
    if args.cmd == "run":
        from specact.pipeline import run_seeds, run_study

        kw = dict(overrides=_overrides(args.set), resume=args.resume, kernel=args.kernel, only=args.only, force=args.force,
                  stage_jobs=args.stage_jobs)
        if args.seeds:
            run_seeds(args.params, args.seeds, jobs=args.jobs, **kw)
        elif args.jobs != 1:
            raise ParamsError("--jobs needs --seeds: the stages of one run depend on each other")
        else:
            run_study(args.params, **kw)
    elif args.cmd == "compare" and args.seeds:
        from specact.seeds import seed_table, write_seeds

        print(write_seeds(seed_table(args.paths), args.out)["html" if args.html else "markdown"])
    elif args.cmd == "compare":
        from specact.compare import compare, write_compare

        print(write_compare(compare(args.paths), args.out)["html" if args.html else "markdown"])
    else:
        from specact.pipeline import evaluate_external

        evaluate_external(Path(args.run), Path(args.data), Path(args.out) if args.out else None, kernel=args.kernel,
                          overwrite=args.overwrite, rescore_dev=args.rescore_dev)


def main(argv: list[str] | None = None) -> int:
    from specact.pipeline import RunExistsError, RunLockedError, StageError, StageInterrupted

    args = _parser().parse_args(argv)
    try:
        _dispatch(args)
    except (ParamsError, RecordError, FileNotFoundError, RunExistsError, RunLockedError) as err:  # nothing ran
        print(f"specact: error: {err}", file=sys.stderr)
        return 2
    except StageError as err:  # names the stage, its executed notebook (traceback inside) and the exception
        print(f"specact: {err}", file=sys.stderr)
        return 1
    except (StageInterrupted, KeyboardInterrupt) as err:
        print(f"specact: {err or 'interrupted before any stage started'}", file=sys.stderr)
        return 130
    except Exception as err:  # not a stage: a bug or the environment; say what, in one line
        print(f"specact: {type(err).__name__}: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
