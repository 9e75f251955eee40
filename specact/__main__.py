"""Command line: ``python -m specact run params/<profile>.yaml`` and ``python -m specact evaluate``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from specact.config import ParamsError
from specact.records import RecordError


def _overrides(pairs: list[str]) -> dict:
    """``--set proposer.max_steps=50`` -> nested dict (values parsed as YAML)."""
    import yaml

    out: dict = {}
    for pair in pairs:
        if "=" not in pair:
            raise ParamsError(f"--set expects key=value, got {pair!r}")
        key, value = pair.split("=", 1)
        node = out
        *parents, leaf = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = yaml.safe_load(value)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="specact", description=__doc__)
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="run a study profile end to end (papermill over notebooks/)")
    r.add_argument("params", help="params YAML, e.g. params/default.yaml")
    r.add_argument("--resume", action="store_true", help="reuse a run directory whose params changed (redoes changed stages)")
    r.add_argument("--only", nargs="*", default=None, help="run only these stages")
    r.add_argument("--force", nargs="*", default=None, help="rerun these stages even if unchanged")
    r.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="override a param, e.g. proposer.max_steps=50")
    r.add_argument("--kernel", default="specact", help="Jupyter kernel name")
    e = sub.add_parser("evaluate", help="evaluate every configuration of a trained run on any spec-format JSONL")
    e.add_argument("--run", required=True, help="a trained run directory, e.g. runs/default")
    e.add_argument("--data", required=True, help="decision points in the ACTIONS.md JSONL format")
    e.add_argument("--out", default=None, help="output directory (default reports/<run>/external/<file stem>)")
    e.add_argument("--kernel", default="specact")
    c = sub.add_parser("compare", help="one table of several runs' results (accuracy, costs, APGR, verifier AUROC)")
    c.add_argument("paths", nargs="+", metavar="RUN_OR_REPORT_DIR", help="reports/<id>, runs/<id> or a results.json")
    c.add_argument("--out", default=None, help="also write compare.md / compare.html / compare.csv here")
    c.add_argument("--html", action="store_true", help="print HTML instead of Markdown")
    args = ap.parse_args(argv)
    try:
        if args.cmd == "run":
            from specact.pipeline import run_study

            run_study(args.params, overrides=_overrides(args.set), resume=args.resume, kernel=args.kernel,
                      only=args.only, force=args.force)
        elif args.cmd == "compare":
            from specact.compare import compare, write_compare

            print(write_compare(compare(args.paths), args.out)["html" if args.html else "markdown"])
        else:
            from specact.pipeline import evaluate_external

            evaluate_external(Path(args.run), Path(args.data), Path(args.out) if args.out else None, kernel=args.kernel)
    except (ParamsError, RecordError, FileNotFoundError) as err:  # bad input: nothing ran
        print(f"specact: error: {err}", file=sys.stderr)
        return 2
    except Exception as err:  # a failed stage: its notebook with the traceback is in reports/
        print(f"specact: {type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
