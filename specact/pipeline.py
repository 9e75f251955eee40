"""The study runner: params YAML -> stages -> papermill-executed notebooks.

Each stage is one parameterized notebook. The runner

* validates the whole params file before any stage starts (:func:`specact.config.load_params`)
  and checks every notebook declares the parameters it will be given;
* holds an advisory lock on ``runs/<run_id>/.lock`` while it runs, so two runs of one id never
  write the same directory (the second fails at once, naming the holder's pid);
* executes a stage with papermill's Python API under a named kernel (progress bars off), writing
  the executed notebook and its HTML rendering to ``reports/<run_id>/``;
* keeps one record per stage, ``runs/<run_id>/stages/<stage>.json``: removed before the stage runs
  and written last, atomically, with the content hashes of the artifacts the stage declares. A stage
  is skipped only if its record's key -- notebook bytes, parameters, the source of the ``specact``
  modules the notebook imports, and the recorded outputs of its upstream stages -- is unchanged
  *and* every artifact it recorded is present with the same hash.

A failed stage keeps its executed notebook (with the traceback) and the run exits non-zero,
naming the stage, the notebook and the cell's exception.
"""

from __future__ import annotations

import ast
import contextlib
import fcntl
import hashlib
import json
import logging
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import yaml

from specact.config import ParamsError, StudyConfig, load_params, to_dict
from specact.launch import RESUME_ENV

REPO = Path(__file__).resolve().parent.parent
NOTEBOOKS = REPO / "notebooks"
PACKAGE = REPO / "specact"
KERNEL = "specact"  # registered by `make venv`; see ensure_kernel()
# Headless kernels: a progress bar in an executed notebook is hundreds of carriage-return updates
# in the .ipynb and its HTML, and nobody watches it (papermill's own bar is off too).
HEADLESS_ENV = {"TQDM_DISABLE": "1", "HF_DATASETS_DISABLE_PROGRESS_BARS": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1"}
EVALUATE_MARKER = ".specact-evaluate"  # marks a directory `specact evaluate` wrote (may be replaced with --overwrite)


class StageError(RuntimeError):
    """A stage that failed: the message names the stage, its executed notebook and the cell's exception."""


class StageInterrupted(RuntimeError):
    """Ctrl-C during a stage: its record was removed first, so a rerun redoes it."""


class RunLockedError(RuntimeError):
    """Another specact process holds the run directory's lock."""


class RunExistsError(RuntimeError):
    pass


@dataclass(frozen=True)
class Output:
    """An artifact a stage writes: ``pattern`` (a glob) under ``base``; a directory counts with every file in it."""

    base: Path
    pattern: str
    required: bool = True


@dataclass
class Stage:
    name: str
    notebook: str
    deps: tuple[str, ...]
    params: Callable[[StudyConfig, "RunPaths"], dict]
    outputs: Callable[[StudyConfig, "RunPaths"], list[Output]] = field(default=lambda c, p: [])


@dataclass
class RunPaths:
    run_dir: Path
    report_dir: Path

    @classmethod
    def for_run(cls, run_id: str, root: Path = REPO) -> "RunPaths":
        return cls(root / "runs" / run_id, root / "reports" / run_id)


def _run_params(cfg: StudyConfig, run_dir: Path) -> dict:
    """What every stage notebook gets besides its sections: the run's directory and training seed."""
    return {"run_dir": str(run_dir), "seed": cfg.seed}


def _role_params(section: str, parameter: str) -> Callable[[StudyConfig, RunPaths], dict]:
    """A training stage's parameters: the prompt section and the role's section, each one dict
    (``parameter``: the notebook's name for it; 02 and 04 call either SFT role's section ``train``)."""
    return lambda cfg, paths: {**_run_params(cfg, paths.run_dir), "prompt": to_dict(cfg.prompt),
                               parameter: to_dict(getattr(cfg, section))}


def _evaluation_params(cfg: StudyConfig, run_dir: Path, eval_dir: Path) -> dict:
    """What notebooks 05, 06 and 07 share: the eval section as one dict and the folder of the prediction rows."""
    return {**_run_params(cfg, run_dir), "eval": to_dict(cfg.eval), "eval_dir": str(eval_dir)}


def _predict_params(cfg: StudyConfig, run_dir: Path, eval_dir: Path, data_file: str = "") -> dict:
    return {**_evaluation_params(cfg, run_dir, eval_dir), "prompt": to_dict(cfg.prompt),
            "data_seed": cfg.split_seed, "data_file": data_file}


def _eval_dir(paths: RunPaths) -> Path:
    return paths.run_dir / "eval" / "test"


def _trained(role: str) -> Callable[[StudyConfig, RunPaths], list[Output]]:
    # The BPE tokenizer (from-config profiles only) is written by whichever training stage needs it first.
    return lambda cfg, paths: [Output(paths.run_dir, role), Output(paths.run_dir, "tokenizer-bpe-*", required=False)]


def stages_for(cfg: StudyConfig) -> list[Stage]:
    """The stage graph of a run: data, three trainings, predictions, one eval per configuration, report.

    Each config section reaches its notebook as one dict parameter (``data``, ``prompt``, ``train`` /
    ``verifier``, ``eval``), built into its dataclass there by :func:`specact.nbutil.section_dict`.
    """
    out = [
        Stage("data", "01_data.ipynb", (),
              lambda cfg, paths: {**_run_params(cfg, paths.run_dir), "seed": cfg.split_seed, "data": to_dict(cfg.data)},
              lambda cfg, paths: [Output(paths.run_dir, "data")]),
        Stage("train_proposer", "02_train_proposer.ipynb", ("data",), _role_params("proposer", "train"), _trained("proposer")),
        Stage("train_verifier", "03_train_verifier.ipynb", ("data", "train_proposer"), _role_params("verifier", "verifier"),
              _trained("verifier")),
        Stage("train_strong", "04_train_strong.ipynb", ("data",), _role_params("strong", "train"), _trained("strong")),
        Stage(
            "predict", "05_predict.ipynb", ("train_proposer", "train_verifier", "train_strong"),
            lambda cfg, paths: _predict_params(cfg, paths.run_dir, _eval_dir(paths)),
            # every split's prediction rows and role summaries, wherever under eval/ the notebook puts them
            lambda cfg, paths: [Output(paths.run_dir / "eval", "**/predictions*.jsonl"),
                                Output(paths.run_dir / "eval", "**/roles*.json", required=False)],
        ),
    ]
    for conf in cfg.configurations:
        out.append(Stage(
            f"eval_{conf}", "06_evaluate.ipynb", ("predict",),
            lambda cfg, paths, conf=conf: {**_evaluation_params(cfg, paths.run_dir, _eval_dir(paths)), "configuration": conf},
            # optional: a configuration whose role the predictions lack (e.g. no linear baseline) writes nothing
            lambda cfg, paths, conf=conf: [Output(paths.run_dir / "eval", f"**/{conf}", required=False)],
        ))
    out.append(Stage(
        "report", "07_report.ipynb", tuple(f"eval_{c}" for c in cfg.configurations),
        lambda cfg, paths: {**_evaluation_params(cfg, paths.run_dir, _eval_dir(paths)), "report_dir": str(paths.report_dir)},
        lambda cfg, paths: [Output(paths.report_dir, name) for name in ("results.json", "report.md", "report.html")],
    ))
    return out


# ---------------------------------------------------------------- content keys
def _sha256(path: Path) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def _imports(source: str, package: str = "specact") -> set[str]:
    """Every ``specact`` module a piece of code imports (at any depth, lazy imports included)."""
    lines = [ln for ln in source.splitlines() if not ln.lstrip().startswith(("%", "!"))]  # IPython magics are not Python
    try:
        tree = ast.parse("\n".join(lines))
    except SyntaxError:
        return set()
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.split(".")[0] == package}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module and node.module.split(".")[0] == package:
            out.add(node.module)
            out |= {f"{node.module}.{a.name}" for a in node.names}  # `from specact import train` names a module
    return out


def _module_file(name: str, package_dir: Path) -> Path | None:
    parts = name.split(".")[1:]
    if not parts:
        return package_dir / "__init__.py"
    rel = Path(*parts)
    for cand in (package_dir / rel.with_suffix(".py"), package_dir / rel / "__init__.py"):
        if cand.is_file():
            return cand
    return None  # a name imported from a module (`from specact.x import func`), not a module


def module_closure(source: str, package_dir: Path = PACKAGE) -> list[Path]:
    """The package files a notebook's code runs: its ``specact`` imports, theirs, and their parent packages."""
    todo, seen = list(_imports(source, package_dir.name)), set()
    files: set[Path] = set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        parts = name.split(".")
        todo += [".".join(parts[:i]) for i in range(1, len(parts))]  # importing a.b.c runs a and a.b
        path = _module_file(name, package_dir)
        if path is not None:
            files.add(path)
            todo += sorted(_imports(path.read_text(encoding="utf-8"), package_dir.name))
    return sorted(files)


def code_key(nb_path: Path, package_dir: Path = PACKAGE) -> str:
    """Hash of the package source a notebook runs, plus the package's data files (e.g. the chat template)."""
    import nbformat

    nb = nbformat.read(nb_path, as_version=4)
    source = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    data = [f for f in package_dir.rglob("*") if f.is_file() and f.suffix not in (".py", ".pyc")]
    digest = hashlib.sha256()
    for file in sorted(module_closure(source, package_dir)) + sorted(data):
        digest.update(str(file.relative_to(package_dir)).encode() + b"\0" + file.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def stage_key(nb_path: Path, params: dict, upstream: list[str], code: str = "") -> str:
    """Content key of a stage: notebook bytes, parameters, library source, and what its upstream stages produced."""
    digest = hashlib.sha256()
    digest.update(nb_path.read_bytes())
    digest.update(json.dumps(params, sort_keys=True, default=str).encode())
    digest.update(code.encode())
    for token in sorted(upstream):  # records store upstream tokens by name: order-free
        digest.update(token.encode() + b"\0")
    return digest.hexdigest()[:16]


# ---------------------------------------------------------------- stage records
def collect_outputs(outputs: list[Output], root: Path) -> tuple[dict[str, str], list[str]]:
    """(content hash of every file the declared outputs match, keyed by path under ``root``; required patterns that matched nothing)."""
    files: dict[str, str] = {}
    missing: list[str] = []
    for out in outputs:
        matched = sorted(out.base.glob(out.pattern)) if out.base.is_dir() else []
        if not matched and out.required:
            missing.append(str(out.base / out.pattern))
        for match in matched:
            for file in [match] if match.is_file() else sorted(x for x in match.rglob("*") if x.is_file()):
                files[os.path.relpath(file, root)] = _sha256(file)
    return files, missing


def write_record(path: Path, record: dict) -> None:
    """Write a stage record atomically: a reader sees the old record or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(record, indent=1, sort_keys=True))
    os.replace(tmp, path)


def read_record(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):  # absent, or unreadable: either way nothing to trust
        return {}


def check_record(record: dict, key: str, root: Path) -> str:
    """Why a stage with this record is not current for ``key`` ('' when it is)."""
    if not record:
        return "never completed"
    if record.get("status") != "ok":
        return f"last run {record.get('status', 'incomplete')}"
    if record.get("key") != key:
        return "notebook, parameters, library code or upstream outputs changed"
    for rel, digest in sorted(record.get("outputs", {}).items()):
        f = root / rel
        if not f.is_file():
            return f"artifact {rel} is missing"
        if _sha256(f) != digest:
            return f"artifact {rel} changed since the stage wrote it"
    return ""


def record_token(record: dict) -> str:
    """What a downstream stage's key sees of this stage: its key and the hashes of what it wrote."""
    outs = json.dumps(record.get("outputs", {}), sort_keys=True).encode()
    return f"{record['key']}:{hashlib.sha256(outs).hexdigest()[:16]}"


@contextlib.contextmanager
def run_lock(run_dir: Path, shared: bool = False) -> Iterator[None]:
    """Hold ``run_dir/.lock`` (flock; released on any exit, even SIGKILL). Readers (``shared``) exclude writers only."""
    run_dir.mkdir(parents=True, exist_ok=True)
    fh = open(run_dir / ".lock", "a+")
    try:
        fcntl.flock(fh, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
    except BlockingIOError:
        fh.seek(0)
        holder = fh.read().strip() or "unknown"
        fh.close()
        raise RunLockedError(f"run directory {run_dir} is in use by another specact process (pid {holder}); "
                             f"wait for it to finish or choose another run_id") from None
    fh.seek(0)
    fh.truncate()
    fh.write(str(os.getpid()))  # the holder a refused run names
    fh.flush()
    try:
        yield
    finally:
        fcntl.flock(fh, fcntl.LOCK_UN)
        fh.close()


# ---------------------------------------------------------------- execution
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


def executed_path(st: Stage, params: dict, paths: RunPaths) -> Path:
    """Where a stage's executed notebook goes: reports/<run_id>/<notebook>[_<configuration>].ipynb."""
    suffix = "_" + params["configuration"] if "configuration" in params else ""
    return paths.report_dir / f"{Path(st.notebook).stem}{suffix}.ipynb"


@contextlib.contextmanager
def headless_env() -> Iterator[None]:
    """The kernel inherits this process's environment: progress bars off while a stage runs."""
    saved = {k: os.environ.get(k) for k in HEADLESS_ENV}
    os.environ.update(HEADLESS_ENV)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@contextlib.contextmanager
def interrupt_kills_kernel() -> Iterator[None]:
    """On Ctrl-C, kill the stage's kernel (and whatever it started) before stopping.

    papermill would shut a busy kernel down gracefully, and the kernel then races its own interrupted
    reply against its closing sockets, printing zmq tracebacks. The stage's record is already gone,
    so nothing the killed kernel leaves half-written is ever taken as complete.
    """
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():  # signal handlers live in the main thread
        yield
        return

    def on_sigint(signum, frame):
        import psutil  # an ipykernel dependency

        # the kernels die on purpose: a stage's thread (--stage-jobs) that sees it need not log it
        logging.getLogger("papermill").setLevel(logging.CRITICAL)

        for child in psutil.Process().children():
            with contextlib.suppress(psutil.Error, OSError):
                if any("ipykernel" in part for part in child.cmdline()):
                    # jupyter_client starts kernels in their own session: the group holds the kernel's children too
                    if os.getpgid(child.pid) == child.pid:
                        os.killpg(child.pid, signal.SIGKILL)
                    else:
                        child.kill()
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _kernel_manager(env: dict[str, str]) -> type:
    """A kernel manager whose kernel gets ``env`` on top of this process's environment: stages running
    side by side in threads of one process cannot each set os.environ for their own kernel."""
    from jupyter_client.manager import AsyncKernelManager

    class StageKernelManager(AsyncKernelManager):
        async def _async_launch_kernel(self, kernel_cmd, **kw):
            kw["env"] = {**kw.get("env", os.environ), **env}
            return await super()._async_launch_kernel(kernel_cmd, **kw)

    return StageKernelManager


def execute_stage(st: Stage, params: dict, paths: RunPaths, kernel: str, notebooks: Path = NOTEBOOKS, log_output: bool = True,
                  env: dict[str, str] | None = None) -> Path:
    """Run one stage's notebook (``env``: extra environment for its kernel); failures raise StageError /
    StageInterrupted naming the stage and the executed notebook."""
    import papermill as pm
    from papermill.exceptions import PapermillExecutionError

    paths.report_dir.mkdir(parents=True, exist_ok=True)
    out_nb = executed_path(st, params, paths)
    engine = {"kernel_manager_class": _kernel_manager(env)} if env else {}
    try:
        with headless_env(), interrupt_kills_kernel():
            pm.execute_notebook(
                str(notebooks / st.notebook), str(out_nb), parameters=params, kernel_name=kernel,
                log_output=log_output, progress_bar=False, cwd=str(REPO), **engine,
            )
    except PapermillExecutionError as e:
        if e.ename == "KeyboardInterrupt":
            raise StageInterrupted(f"stage {st.name} interrupted; rerun the same command to resume (finished stages are kept)") from None
        raise StageError(f"stage {st.name} failed: {e.ename}: {e.evalue} (executed notebook: {out_nb})") from None
    except KeyboardInterrupt:
        raise StageInterrupted(f"stage {st.name} interrupted; rerun the same command to resume (finished stages are kept)") from None
    except Exception as e:  # the kernel died, a timeout, a notebook papermill could not read
        raise StageError(f"stage {st.name} failed: {type(e).__name__}: {e} (executed notebook: {out_nb})") from e
    finally:
        if out_nb.exists():  # a failed stage's notebook holds the traceback: render it too
            with contextlib.suppress(Exception):
                _html(out_nb)
    if st.name == "report":  # the published report.html + report.md: the same notebook, code and `hide` cells removed
        from specact.report import publish

        publish(out_nb, Path(params["report_dir"]))
    return out_nb


def prepare_run(cfg: StudyConfig, paths: RunPaths, resume: bool) -> None:
    """Create the run directory, or refuse to reuse one whose params differ unless resume=True."""
    params_file = paths.run_dir / "params.yaml"
    resolved = yaml.safe_dump(to_dict(cfg), sort_keys=True)
    current = params_file.read_text() if params_file.exists() else None
    if current is not None and current != resolved and not resume:
        raise RunExistsError(
            f"run directory {paths.run_dir} exists with different params; pass --resume to redo the "
            f"changed stages (their outputs are replaced) or choose another run_id"
        )
    (paths.run_dir / "stages").mkdir(parents=True, exist_ok=True)
    if current != resolved:  # unchanged params are left alone (mtime and all)
        params_file.write_text(resolved)


@dataclass
class _Ctx:
    cfg: StudyConfig
    paths: RunPaths
    kernel: str
    notebooks: Path
    package: Path
    root: Path
    log: Callable[[str], None]
    cpus: int = 1  # cores this run may use: its stages' kernels share them (see _stage_threads)


def _stage_outputs(st: Stage, ctx: _Ctx, params: dict) -> list[Output]:
    nb = executed_path(st, params, ctx.paths)
    return st.outputs(ctx.cfg, ctx.paths) + [Output(nb.parent, nb.name)]


def _run_one(st: Stage, params: dict, key: str, upstream: dict, ctx: _Ctx, tag: str, env: dict | None = None) -> dict:
    """Run a stage: its record goes first, and is written again only after its declared outputs are hashed."""
    record_path = ctx.paths.run_dir / "stages" / f"{st.name}.json"
    # Never complete-looking while it runs; the key tells a later attempt whether it may resume this one.
    write_record(record_path, {"key": key, "status": "running", "upstream": upstream,
                               "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
    resuming = (env or {}).get(RESUME_ENV) == "1"
    ctx.log(f"{tag} {st.name}: running {st.notebook}{' (resuming an unfinished attempt)' if resuming else ''} ...")
    t0 = time.perf_counter()
    try:
        execute_stage(st, params, ctx.paths, ctx.kernel, ctx.notebooks, env=env)
        outputs, missing = collect_outputs(_stage_outputs(st, ctx, params), ctx.root)
        if missing:
            raise StageError(f"stage {st.name} finished but did not write {', '.join(missing)}")
    except StageInterrupted:
        ctx.log(f"{tag} {st.name}: interrupted after {time.perf_counter() - t0:.1f}s")
        raise
    except StageError:
        secs = time.perf_counter() - t0
        write_record(record_path, {"key": key, "status": "failed", "seconds": secs, "upstream": upstream})
        ctx.log(f"{tag} {st.name}: FAILED after {secs:.1f}s; see {ctx.paths.report_dir}")
        raise
    secs = time.perf_counter() - t0
    record = {"key": key, "status": "ok", "seconds": secs, "upstream": upstream, "outputs": outputs,
              "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    write_record(record_path, record)
    ctx.log(f"{tag} {st.name}: done in {secs:.1f}s")
    return record


def _decide(st: Stage, ctx: _Ctx, tokens: dict, only: list[str], force: list[str], tag: str) -> dict:
    """Whether a stage whose upstream stages are settled is current: {"settled": summary, "token"} or {"run": ...}."""
    params = st.params(ctx.cfg, ctx.paths)
    nb = ctx.notebooks / st.notebook
    upstream = {d: tokens.get(d) for d in st.deps}
    key = stage_key(nb, params, [f"{d}={t}" for d, t in upstream.items()], code_key(nb, ctx.package))
    record = read_record(ctx.paths.run_dir / "stages" / f"{st.name}.json")
    why = check_record(record, key, ctx.root)
    if only and st.name not in only:
        return {"token": None if why else record_token(record), "settled": {
            "status": "not selected" + (f" (not current: {why})" if why else ""), "seconds": record.get("seconds", 0.0), "key": key}}
    if not why and st.name not in force:
        ctx.log(f"{tag} {st.name}: unchanged, skipped ({record['seconds']:.1f}s when run)")
        return {"token": record_token(record), "settled": {"status": "skipped", "seconds": record["seconds"], "key": key}}
    stale = [d for d, t in upstream.items() if t is None]
    if stale:  # only reachable with --only: never build on outputs that do not match their inputs
        raise StageError(f"stage {st.name} needs upstream stages that are not current: {', '.join(stale)}; "
                         f"add them to --only or run without --only")
    # An attempt with this very key that did not finish (interrupted, failed) left checkpoints and finished
    # parts that this one may continue from; anything else (or --force) starts the stage's trainings afresh.
    resume = st.name not in force and record.get("key") == key and record.get("status") in ("running", "failed")
    return {"run": (params, key, upstream, resume)}


def _ran(record: dict, key: str) -> dict:
    return {"status": "ran", "seconds": record["seconds"], "key": key}


def _run_stages(stages: list[Stage], ctx: _Ctx, only: list[str], force: list[str], stage_jobs: int = 1) -> dict:
    """Walk the stage graph; returns {stage: {"status", "seconds", "key"}} (seconds: last real wall time).

    ``stage_jobs`` > 1 runs up to that many stages whose upstream stages are done side by side (each in its
    own kernel): train_strong beside train_proposer -> train_verifier, the eval stages beside each other.
    """
    if stage_jobs > 1:
        return _run_stages_parallel(stages, ctx, only, force, stage_jobs)
    tokens: dict[str, str | None] = {}  # stage -> what downstream keys see; None = not current
    summary: dict[str, dict] = {}
    for i, st in enumerate(stages, 1):
        tag = f"[{i}/{len(stages)}]"
        decision = _decide(st, ctx, tokens, only, force, tag)
        if "settled" in decision:
            tokens[st.name], summary[st.name] = decision["token"], decision["settled"]
            continue
        params, key, upstream, resume = decision["run"]
        record = _run_one(st, params, key, upstream, ctx, tag, {RESUME_ENV: "1" if resume else "0"})
        tokens[st.name], summary[st.name] = record_token(record), _ran(record, key)
    return summary


def _stage_threads(running: int, cpus: int) -> dict[str, str]:
    """CPU threads for a stage's kernel when ``running`` stages share ``cpus`` cores: torch and BLAS
    otherwise each take every core, and two kernels spinning 2 threads each on 2 cores run slower than
    one. An OMP_NUM_THREADS the user set wins."""
    if "OMP_NUM_THREADS" in os.environ:
        return {}
    n = str(max(1, cpus // max(1, running)))
    return {"OMP_NUM_THREADS": n, "MKL_NUM_THREADS": n}


def _run_stages_parallel(stages: list[Stage], ctx: _Ctx, only: list[str], force: list[str], stage_jobs: int) -> dict:
    from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

    tokens: dict[str, str | None] = {}
    summary: dict[str, dict] = {}
    pending = {st.name: (i, st) for i, st in enumerate(stages, 1)}
    running: dict = {}  # future -> (stage name, key)
    errors: list[BaseException] = []
    # Threads, not processes: each stage's work happens in its own kernel; a thread only waits on it.
    # The signal handler lives in this (main) thread: Ctrl-C kills every stage's kernel.
    with headless_env(), interrupt_kills_kernel(), ThreadPoolExecutor(max_workers=stage_jobs) as pool:
        try:
            while True:
                for name, (i, st) in list(pending.items()):  # in graph order: earlier stages get free slots first
                    if errors or any(d not in tokens for d in st.deps) or len(running) >= stage_jobs:
                        continue
                    tag = f"[{i}/{len(stages)}]"
                    decision = _decide(st, ctx, tokens, only, force, tag)
                    del pending[name]
                    if "settled" in decision:
                        tokens[name], summary[name] = decision["token"], decision["settled"]
                        continue
                    params, key, upstream, resume = decision["run"]
                    env = {**_stage_threads(len(running) + 1, ctx.cpus), RESUME_ENV: "1" if resume else "0"}
                    running[pool.submit(_run_one, st, params, key, upstream, ctx, tag, env)] = (name, key)
                if not running:
                    if errors or not pending:
                        break
                    # a pass that starts nothing leaves only stages whose upstream never settles (not on a DAG)
                    raise StageError(f"stages wait on upstream stages that never run: {', '.join(pending)}")
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for fut in done:
                    name, key = running.pop(fut)
                    try:
                        record = fut.result()
                    except BaseException as e:  # noqa: BLE001 -- the first failure is raised once the running stages end
                        errors.append(e)
                        continue
                    tokens[name], summary[name] = record_token(record), _ran(record, key)
        except KeyboardInterrupt:  # as the sequential runner says it, naming every stage that was running
            names = ", ".join(name for name, _ in running.values())
            raise StageInterrupted(f"stage {names} interrupted; rerun the same command to resume (finished stages are kept)") from None
    if errors:
        raise errors[0]
    return {st.name: summary[st.name] for st in stages if st.name in summary}


def _write_timings(paths: RunPaths, summary: dict, wall: float) -> None:
    """timings.json: each stage's last real wall time (a skip keeps it), their sum, and this call's wall time."""
    paths.report_dir.mkdir(parents=True, exist_ok=True)
    total = sum(v["seconds"] for v in summary.values())
    write_record(paths.report_dir / "timings.json", {"stages": summary, "total_seconds": total, "this_call_seconds": wall})


def run_study(
    params_path: str | Path, *, overrides: dict | None = None, resume: bool = False, kernel: str = KERNEL,
    root: Path = REPO, notebooks: Path = NOTEBOOKS, only: list[str] | None = None, force: list[str] | None = None,
    log: Callable[[str], None] = print, package: Path = PACKAGE, stage_jobs: int = 1, cpus: int | None = None,
) -> dict:
    """Run every stage of a study. Returns {stage: {"status", "seconds", "key"}}.

    ``stage_jobs``: stages run at once where the graph allows; ``cpus``: the cores their kernels share
    (default: every core this process may use).
    """
    if stage_jobs < 1:
        raise ParamsError(f"--stage-jobs must be >= 1, got {stage_jobs}")
    root, notebooks, package = Path(root), Path(notebooks), Path(package)
    cfg = load_params(params_path, overrides)
    paths = RunPaths.for_run(cfg.run_id, root)
    stages = stages_for(cfg)
    names = [s.name for s in stages]
    for s in (only or []) + (force or []):
        if s not in names:
            raise ParamsError(f"unknown stage '{s}'; stages: {', '.join(names)}")
    check_stages(stages, cfg, paths, notebooks)
    kernel = ensure_kernel(kernel)
    t_all = time.perf_counter()
    with run_lock(paths.run_dir):
        prepare_run(cfg, paths, resume)
        ctx = _Ctx(cfg, paths, kernel, notebooks, package, root, log, cpus or len(os.sched_getaffinity(0)))
        summary = _run_stages(stages, ctx, only or [], force or [], stage_jobs)
        wall = time.perf_counter() - t_all
        _write_timings(paths, summary, wall)
    log(f"study {cfg.run_id}: {wall:.1f}s in all; report: {paths.report_dir / 'report.html'}")
    return summary


def _log_prefixed(prefix: str, message: str) -> None:
    print(f"{prefix} {message}", flush=True)


def seed_run_id(run_id: str, seed: int) -> str:
    return f"{run_id}-s{seed}"


def run_seeds(params_path: str | Path, seeds: list[int], *, jobs: int = 1, overrides: dict | None = None, **kw) -> dict[int, dict]:
    """Run one study per seed, as ``runs/<run_id>-s<seed>``; ``jobs`` > 1 runs that many seeds at once, each in its own process.

    Within a seed the stages run in order (each in its own papermill kernel); seeds share nothing on
    disk, so their stages are independent. Every seed runs to its end; then a failure of any is raised.
    """
    from concurrent.futures import ProcessPoolExecutor
    from functools import partial
    from multiprocessing import get_context

    if jobs < 1:
        raise ParamsError(f"--jobs must be >= 1, got {jobs}")
    if len(set(seeds)) != len(seeds):
        raise ParamsError(f"--seeds repeats a seed: {seeds}")
    base_cfg = load_params(params_path, overrides)  # every value checked once, before any seed starts
    base = base_cfg.run_id
    # Seeds vary training only: every seed gets the params file's data (same splits, same test points).
    calls = {s: {**(overrides or {}), "seed": s, "run_id": seed_run_id(base, s), "data_seed": base_cfg.split_seed}
             for s in seeds}
    results: dict[int, dict] = {}
    errors: dict[int, str] = {}
    if jobs == 1:
        for s, ov in calls.items():
            try:
                results[s] = run_study(params_path, overrides=ov, **kw)
            except (StageError, RunLockedError, RunExistsError) as e:
                errors[s] = str(e)
    else:  # spawn, not fork: the parent may hold zmq / torch threads a fork would copy half of
        cpus = max(1, len(os.sched_getaffinity(0)) // jobs)  # the seeds' kernels share the cores
        with ProcessPoolExecutor(max_workers=jobs, mp_context=get_context("spawn")) as pool:
            futs = {s: pool.submit(run_study, params_path, overrides=ov,
                                   **{"cpus": cpus, **kw, "log": partial(_log_prefixed, f"[seed {s}]")})
                    for s, ov in calls.items()}
            for s, fut in futs.items():
                try:
                    results[s] = fut.result()
                except Exception as e:  # noqa: BLE001 -- reported below with its seed
                    errors[s] = f"{type(e).__name__}: {e}"
    if errors:
        raise StageError("; ".join(f"seed {s}: {msg}" for s, msg in sorted(errors.items())))
    return results


# ---------------------------------------------------------------- external evaluation
class OutputExistsError(ParamsError):
    """An ``evaluate --out`` that would overwrite a study's own outputs, or a non-empty directory without --overwrite."""


def _inside(path: Path, parent: Path) -> bool:
    return path == parent or parent in path.parents


def prepare_out(out: Path, run_dir: Path, report_dir: Path, overwrite: bool, stamp: dict) -> Path:
    """Refuse an output directory that is (inside) the study's run or report directory, or holds anything, unless --overwrite."""
    out = out.resolve()
    external = report_dir / "external"  # the default home of evaluate outputs, inside the study's report dir
    for own in (run_dir, report_dir):
        if (_inside(out, own) and not _inside(out, external)) or _inside(own, out):
            raise OutputExistsError(f"--out {out} would write into the study's own {'run' if own == run_dir else 'report'} "
                                    f"directory {own}; choose a directory of its own")
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise OutputExistsError(f"--out {out} is not empty; pass --overwrite to replace it")
        if not (out / EVALUATE_MARKER).is_file():
            raise OutputExistsError(f"--out {out} was not written by `specact evaluate`; not deleting it, even with --overwrite")
        shutil.rmtree(out)  # replaced whole: no file of the earlier evaluation stays mixed in
    out.mkdir(parents=True, exist_ok=True)
    (out / EVALUATE_MARKER).write_text(json.dumps(stamp, indent=1))
    return out


def reusable_dev_predictions(run_dir: Path, notebooks: Path = NOTEBOOKS, package: Path = PACKAGE) -> tuple[Path | None, str]:
    """The run's dev prediction rows, if its predict stage is current: same models (artifact hashes), params,
    notebook and library code as when the rows were made -- so scoring dev again would give the same rows.

    Returns (path, '') or (None, why not). The thresholds of D/E are a function of these rows and the
    run's params, so reusing the rows reuses the run's chosen thresholds.
    """
    root, stages = run_dir.parent.parent, run_dir / "stages"
    predict_record = read_record(stages / "predict.json")
    upstream = predict_record.get("upstream")
    if predict_record.get("status") != "ok" or "outputs" not in predict_record or not upstream:
        return None, "the run has no content-hashed predict record"
    for dep, token in upstream.items():
        dep_record = read_record(stages / f"{dep}.json")
        why = check_record(dep_record, dep_record.get("key", ""), root)
        if why or record_token(dep_record) != token:
            return None, f"{dep}: {why}" if why else f"{dep} was redone after the run's predictions were made"
    cfg = load_params(run_dir / "params.yaml")
    paths = RunPaths.for_run(cfg.run_id, root)
    predict = next(stage for stage in stages_for(cfg) if stage.name == "predict")
    nb = notebooks / predict.notebook
    key = stage_key(nb, predict.params(cfg, paths), [f"{d}={t}" for d, t in upstream.items()], code_key(nb, package))
    if key != predict_record["key"]:
        return None, "the run's predict stage is not current (its params, notebook or library code changed)"
    for rel, digest in sorted(predict_record["outputs"].items()):
        rows_file = Path(rel)
        in_dev_folder = rows_file.name == "predictions.jsonl" and rows_file.parent.name == "dev"
        if rows_file.name == "predictions_dev.jsonl" or in_dev_folder:
            if (root / rel).is_file() and _sha256(root / rel) == digest:
                return root / rel, ""
            return None, f"{rel} is missing or changed"
    return None, "the run's predict stage recorded no dev predictions"


def _external_plan(cfg: StudyConfig, run_dir: Path, data_file: Path, out: Path, dev_rows: Path | None) -> list[Stage]:
    evaluation = _evaluation_params(cfg, run_dir, out / "eval")
    predict = _predict_params(cfg, run_dir, out / "eval", str(data_file))
    if dev_rows is not None:
        predict["dev_predictions"] = str(dev_rows)
    plan = [Stage("predict", "05_predict.ipynb", (), lambda cfg, paths: predict)]
    plan += [Stage(f"eval_{conf}", "06_evaluate.ipynb", (), lambda cfg, paths, conf=conf: {**evaluation, "configuration": conf})
             for conf in cfg.configurations]
    plan.append(Stage("report", "07_report.ipynb", (), lambda cfg, paths: {**evaluation, "report_dir": str(out)}))
    return plan


def evaluate_external(run_dir: Path, data_file: Path, out: Path | None = None, kernel: str = KERNEL,
                      log: Callable[[str], None] = print, overwrite: bool = False, rescore_dev: bool = False,
                      notebooks: Path = NOTEBOOKS, package: Path = PACKAGE) -> Path:
    """Evaluate every configuration of a trained run on a spec-format JSONL (no split needed).

    Reuses the predict / evaluate / report notebooks with ``data_file`` set. The run's own dev
    predictions (hence its D/E thresholds) are reused when its records show they were made by the
    models now on disk and notebook 05 accepts ``dev_predictions``; ``rescore_dev`` scores dev again.
    The output directory defaults to ``reports/<run_id>/external/<stem>-<sha256 of the file>``.
    """
    from specact.evaluate import load_study
    from specact.records import read_jsonl

    run_dir, data_file = Path(run_dir).resolve(), Path(data_file).resolve()
    if not (run_dir / "params.yaml").is_file():
        raise FileNotFoundError(f"{run_dir} is not a trained run (no params.yaml); run `specact run` first")
    read_jsonl(data_file)  # validate before any model loads: errors name file, line and field
    cfg = load_study(run_dir)
    report_dir = run_dir.parent.parent / "reports" / cfg.run_id
    digest = _sha256(data_file)
    out = prepare_out(out or report_dir / "external" / f"{data_file.stem}-{digest[:12]}", run_dir, report_dir, overwrite,
                      {"data_file": str(data_file), "sha256": digest, "run_dir": str(run_dir)})
    kernel = ensure_kernel(kernel)
    with run_lock(run_dir, shared=True):  # the run's models must not change under us
        dev_rows, why = (None, "--rescore-dev") if rescore_dev else reusable_dev_predictions(run_dir, notebooks, package)
        if dev_rows is not None and "dev_predictions" not in declared_parameters(notebooks / "05_predict.ipynb"):
            dev_rows, why = None, "notebook 05 has no dev_predictions parameter"
        log(f"dev predictions: {'reusing ' + str(dev_rows) if dev_rows else 'scoring dev again (' + why + ')'}")
        paths = RunPaths(run_dir, out)
        plan = _external_plan(cfg, run_dir, data_file, out, dev_rows)
        check_stages(plan, cfg, paths, notebooks)
        for st in plan:
            t0 = time.perf_counter()
            execute_stage(st, st.params(cfg, paths), paths, kernel, notebooks)
            log(f"{st.name}: done in {time.perf_counter() - t0:.1f}s")
    log(f"report: {out / 'report.html'}")
    return out
