"""The study runner: params YAML -> stages -> papermill-executed notebooks.

Each stage is one parameterized notebook. The runner

* validates the whole params file before any stage starts (:func:`specact.config.load_params`)
  and checks every notebook declares the parameters it will be given;
* executes a stage with papermill's Python API under a named kernel, writing the executed
  notebook and its HTML rendering to ``reports/<run_id>/``;
* skips a stage whose content key (notebook bytes + parameters + upstream keys) is unchanged
  since it last succeeded, so a rerun redoes only what changed and everything downstream.

A failed stage keeps its executed notebook (with the traceback) and the run exits non-zero.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import yaml

from specact.config import ParamsError, StudyConfig, load_params, to_dict

REPO = Path(__file__).resolve().parent.parent
NOTEBOOKS = REPO / "notebooks"
KERNEL = "specact"  # registered by `make venv`; see ensure_kernel()


@dataclass
class Stage:
    name: str
    notebook: str
    deps: tuple[str, ...]
    params: Callable[[StudyConfig, "RunPaths"], dict]


@dataclass
class RunPaths:
    run_dir: Path
    report_dir: Path

    @classmethod
    def for_run(cls, run_id: str, root: Path = REPO) -> "RunPaths":
        return cls(root / "runs" / run_id, root / "reports" / run_id)


def _common(cfg: StudyConfig, p: RunPaths) -> dict:
    return {"run_dir": str(p.run_dir), "seed": cfg.seed, "prompt": to_dict(cfg.prompt)}


def stages_for(cfg: StudyConfig) -> list[Stage]:
    """The stage graph of a run: data, three trainings, predictions, one eval per configuration, report."""
    eval_dir = lambda p: str(p.run_dir / "eval" / "test")  # noqa: E731
    out = [
        Stage("data", "01_data.ipynb", (), lambda c, p: {**_common(c, p), **to_dict(c.data)}),
        Stage("train_proposer", "02_train_proposer.ipynb", ("data",), lambda c, p: {**_common(c, p), "train": to_dict(c.proposer)}),
        Stage("train_verifier", "03_train_verifier.ipynb", ("data", "train_proposer"), lambda c, p: {**_common(c, p), **to_dict(c.verifier)}),
        Stage("train_strong", "04_train_strong.ipynb", ("data",), lambda c, p: {**_common(c, p), "train": to_dict(c.strong)}),
        Stage(
            "predict", "05_predict.ipynb", ("train_proposer", "train_verifier", "train_strong"),
            lambda c, p: {**_common(c, p), **to_dict(c.eval), "data_file": "", "eval_dir": eval_dir(p)},
        ),
    ]
    for conf in cfg.configurations:
        out.append(Stage(
            f"eval_{conf}", "06_evaluate.ipynb", ("predict",),
            lambda c, p, conf=conf: {"run_dir": str(p.run_dir), "seed": c.seed, **to_dict(c.eval), "configuration": conf, "eval_dir": eval_dir(p)},
        ))
    out.append(Stage(
        "report", "07_report.ipynb", tuple(f"eval_{c}" for c in cfg.configurations),
        lambda c, p: {"run_dir": str(p.run_dir), "seed": c.seed, **to_dict(c.eval), "configurations": list(c.configurations),
                      "eval_dir": eval_dir(p), "report_dir": str(p.report_dir)},
    ))
    return out


def stage_key(nb_path: Path, params: dict, upstream: list[str]) -> str:
    h = hashlib.sha256()
    h.update(nb_path.read_bytes())
    h.update(json.dumps(params, sort_keys=True, default=str).encode())
    for k in upstream:
        h.update(k.encode())
    return h.hexdigest()[:16]


def declared_parameters(nb_path: Path) -> set[str]:
    import papermill as pm

    return set(pm.inspect_notebook(str(nb_path)))


def check_stages(stages: list[Stage], cfg: StudyConfig, paths: RunPaths, notebooks: Path = NOTEBOOKS) -> None:
    """Fail before anything runs if a notebook is missing or does not declare a parameter it is given."""
    for st in stages:
        nb = notebooks / st.notebook
        if not nb.is_file():
            raise ParamsError(f"stage {st.name}: notebook not found: {nb}")
        missing = set(st.params(cfg, paths)) - declared_parameters(nb)
        if missing:
            raise ParamsError(f"stage {st.name}: notebook {nb.name} does not declare parameter(s) {sorted(missing)}")


def ensure_kernel(name: str = KERNEL) -> str:
    """Check the named kernel runs this interpreter; register it in this environment if absent."""
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    ksm = KernelSpecManager()
    try:
        spec = ksm.get_kernel_spec(name)
    except NoSuchKernel:
        from ipykernel.kernelspec import install

        install(kernel_name=name, display_name=f"Python ({name})", prefix=sys.prefix)
        return name
    exe = Path(spec.argv[0])
    if exe.name.startswith("python") and exe.is_absolute() and exe.resolve() != Path(sys.executable).resolve():
        raise RuntimeError(
            f"kernel '{name}' runs {exe}, not this interpreter ({sys.executable}); "
            f"re-register it: {sys.executable} -m ipykernel install --sys-prefix --name {name}"
        )
    return name


def _html(nb_out: Path, dest: Path | None = None, exclude_input: bool = False) -> Path:
    import nbformat
    from nbconvert import HTMLExporter

    body, _ = HTMLExporter(exclude_input=exclude_input).from_notebook_node(nbformat.read(nb_out, as_version=4))
    dest = dest or nb_out.with_suffix(".html")
    dest.write_text(body, encoding="utf-8")
    return dest


def execute_stage(st: Stage, params: dict, paths: RunPaths, kernel: str, notebooks: Path = NOTEBOOKS, log_output: bool = True) -> None:
    import papermill as pm

    paths.report_dir.mkdir(parents=True, exist_ok=True)
    out_nb = paths.report_dir / f"{Path(st.notebook).stem}{'_' + params['configuration'] if 'configuration' in params else ''}.ipynb"
    try:
        pm.execute_notebook(
            str(notebooks / st.notebook), str(out_nb), parameters=params, kernel_name=kernel,
            log_output=log_output, progress_bar=False, cwd=str(REPO),
        )
    finally:
        if out_nb.exists():  # a failed stage's notebook holds the traceback: render it too
            _html(out_nb)
    if st.name == "report":  # the published report.html + report.md: the same notebook, code and `hide` cells removed
        from specact.report import publish

        publish(out_nb, Path(params["report_dir"]))


class RunExistsError(RuntimeError):
    pass


def prepare_run(cfg: StudyConfig, paths: RunPaths, resume: bool) -> None:
    """Create the run directory, or refuse to reuse one whose params differ unless resume=True."""
    params_file = paths.run_dir / "params.yaml"
    resolved = yaml.safe_dump(to_dict(cfg), sort_keys=True)
    if params_file.exists():
        if params_file.read_text() != resolved and not resume:
            raise RunExistsError(
                f"run directory {paths.run_dir} exists with different params; pass --resume to redo the "
                f"changed stages (their outputs are replaced) or choose another run_id"
            )
    paths.run_dir.mkdir(parents=True, exist_ok=True)
    (paths.run_dir / "stages").mkdir(exist_ok=True)
    params_file.write_text(resolved)


def run_study(
    params_path: str | Path, *, overrides: dict | None = None, resume: bool = False, kernel: str = KERNEL,
    root: Path = REPO, notebooks: Path = NOTEBOOKS, only: list[str] | None = None, force: list[str] | None = None,
    log: Callable[[str], None] = print,
) -> dict:
    """Run every stage of a study. Returns {stage: {"status", "seconds", "key"}}."""
    cfg = load_params(params_path, overrides)
    paths = RunPaths.for_run(cfg.run_id, root)
    stages = stages_for(cfg)
    names = [s.name for s in stages]
    for s in (only or []) + (force or []):
        if s not in names:
            raise ParamsError(f"unknown stage '{s}'; stages: {', '.join(names)}")
    check_stages(stages, cfg, paths, notebooks)
    kernel = ensure_kernel(kernel)
    prepare_run(cfg, paths, resume)
    keys: dict[str, str] = {}
    summary: dict[str, dict] = {}
    t_all = time.perf_counter()
    for i, st in enumerate(stages, 1):
        params = st.params(cfg, paths)
        key = stage_key(notebooks / st.notebook, params, [keys[d] for d in st.deps])
        keys[st.name] = key
        record = paths.run_dir / "stages" / f"{st.name}.json"
        prev = json.loads(record.read_text()) if record.exists() else {}
        if only and st.name not in only:
            summary[st.name] = {"status": "not selected", "seconds": 0.0, "key": key}
            continue
        if prev.get("key") == key and prev.get("status") == "ok" and st.name not in (force or []):
            log(f"[{i}/{len(stages)}] {st.name}: unchanged, skipped ({prev['seconds']:.1f}s when run)")
            summary[st.name] = {"status": "skipped", "seconds": 0.0, "key": key}
            continue
        log(f"[{i}/{len(stages)}] {st.name}: running {st.notebook} ...")
        t0 = time.perf_counter()
        try:
            execute_stage(st, params, paths, kernel, notebooks)
        except Exception:
            secs = time.perf_counter() - t0
            record.write_text(json.dumps({"key": key, "status": "failed", "seconds": secs}))
            log(f"[{i}/{len(stages)}] {st.name}: FAILED after {secs:.1f}s; see {paths.report_dir}")
            raise
        secs = time.perf_counter() - t0
        record.write_text(json.dumps({"key": key, "status": "ok", "seconds": secs}))
        summary[st.name] = {"status": "ran", "seconds": secs, "key": key}
        log(f"[{i}/{len(stages)}] {st.name}: done in {secs:.1f}s")
    total = time.perf_counter() - t_all
    (paths.report_dir).mkdir(parents=True, exist_ok=True)
    (paths.report_dir / "timings.json").write_text(json.dumps({"stages": summary, "total_seconds": total}, indent=2))
    log(f"study {cfg.run_id}: {total:.1f}s in all; report: {paths.report_dir / 'report.html'}")
    return summary


def evaluate_external(run_dir: Path, data_file: Path, out: Path | None = None, kernel: str = KERNEL,
                      log: Callable[[str], None] = print) -> Path:
    """Evaluate every configuration of a trained run on a spec-format JSONL (no split needed).

    Reuses the predict / evaluate / report notebooks with ``data_file`` set; thresholds still
    come from the run's dev split. Writes the same results.json / report for that file.
    """
    from specact.evaluate import load_study
    from specact.records import read_jsonl

    run_dir = Path(run_dir).resolve()
    if not (run_dir / "params.yaml").is_file():
        raise FileNotFoundError(f"{run_dir} is not a trained run (no params.yaml); run `specact run` first")
    read_jsonl(data_file)  # validate before any model loads: errors name file, line and field
    cfg = load_study(run_dir)
    out = (out or REPO / "reports" / cfg.run_id / "external" / Path(data_file).stem).resolve()
    paths = RunPaths(run_dir, out)
    eval_dir = str(out / "eval")
    kernel = ensure_kernel(kernel)
    common = {"run_dir": str(run_dir), "seed": cfg.seed, **to_dict(cfg.eval), "eval_dir": eval_dir}
    plan = [Stage("predict", "05_predict.ipynb", (), lambda c, p: {**common, "prompt": to_dict(c.prompt), "data_file": str(Path(data_file).resolve())})]
    plan += [Stage(f"eval_{c}", "06_evaluate.ipynb", (), lambda _c, p, c=c: {**common, "configuration": c}) for c in cfg.configurations]
    plan.append(Stage("report", "07_report.ipynb", (), lambda c, p: {**common, "configurations": list(c.configurations), "report_dir": str(out)}))
    check_stages(plan, cfg, paths)
    for st in plan:
        t0 = time.perf_counter()
        execute_stage(st, st.params(cfg, paths), paths, kernel)
        log(f"{st.name}: done in {time.perf_counter() - t0:.1f}s")
    log(f"report: {out / 'report.html'}")
    return out
