"""The runner on toy notebooks: parameters, validation, resume, records, locks, failure. (The real notebooks run in test_e2e.)"""

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import nbformat
import pytest

from specact.config import ParamsError, load_params, to_dict
from specact.pipeline import (
    PACKAGE, OutputExistsError, RunExistsError, RunLockedError, RunPaths, StageError, evaluate_external,
    reusable_dev_predictions, run_lock, run_seeds, run_study, stages_for,
)

# What each toy stage writes: the artifacts the runner declares for it (relative to run_dir / report_dir).
ARTIFACTS = {
    "data": ["data/decisions.txt"],
    "train_proposer": ["proposer/model.txt"],
    "train_verifier": ["verifier/model.txt"],
    "train_strong": ["strong/model.txt"],
    "predict": ["{eval_dir}/predictions.jsonl", "{eval_dir}/predictions_dev.jsonl", "{eval_dir}/roles.json"],
    "eval": ["{eval_dir}/{configuration}/metrics.json"],
    "report": ["{report_dir}/results.json", "{report_dir}/report.md"],
}


def toy_notebooks(nb_dir, cfg, paths, fail_stage=None, extra=None):
    """One notebook per stage: declares exactly the stage's parameters, logs that it ran and writes its artifacts.

    ``extra`` maps a stage name to code appended to its body."""
    nb_dir.mkdir(exist_ok=True)
    for st in stages_for(cfg):
        params = st.params(cfg, paths)
        if st.name == "predict":
            params = {**params, "dev_predictions": ""}  # what `evaluate` may pass to reuse the run's dev rows
        decl = "\n".join(f"{k} = {v!r}" for k, v in params.items())
        kind = "eval" if st.name.startswith("eval_") else st.name
        body = (
            "import json, os, pathlib\n"
            "log = pathlib.Path(run_dir) / 'ran.log'\n"
            f"name = 'eval_' + configuration if {kind!r} == 'eval' else {st.name!r}\n"
            "log.open('a').write(name + '\\n')\n"
            "(pathlib.Path(run_dir) / 'env.log').write_text(os.environ.get('TQDM_DISABLE', 'unset'))\n"
            f"for rel in {ARTIFACTS[kind]!r}:\n"
            "    p = pathlib.Path(run_dir) / rel.format(**globals())\n"
            "    p.parent.mkdir(parents=True, exist_ok=True)\n"
            "    p.write_text(name + ' ' + str(seed))\n"
        )
        if st.name == "predict":
            body += "pathlib.Path(eval_dir, 'dev_source.txt').write_text(dev_predictions or 'scored')\n"
        if kind == "eval":
            body += "import specact.actions  # noqa: the library an eval stage runs\n"
        if st.name == fail_stage:
            body += "raise RuntimeError('planted failure')\n"
        body += (extra or {}).get(st.name, "")
        cells = [nbformat.v4.new_code_cell(decl), nbformat.v4.new_code_cell(body)]
        cells[0].metadata["tags"] = ["parameters"]
        nb = nbformat.v4.new_notebook(cells=cells)
        nb.metadata["kernelspec"] = {"name": "specact", "display_name": "Python (specact)", "language": "python"}
        nbformat.write(nb, nb_dir / st.notebook)


def make_study(tmp_path, text="run_id: toy\nconfigurations: [B, D]\n", package=None, **kw):
    package = package or tmp_path / "pkg" / "specact"
    if not package.exists():
        shutil.copytree(PACKAGE, package, ignore=shutil.ignore_patterns("__pycache__"))
    params = tmp_path / "p.yaml"
    params.write_text(text)
    cfg = load_params(params)
    paths = RunPaths.for_run(cfg.run_id, tmp_path)
    nbs = tmp_path / "nbs"
    toy_notebooks(nbs, cfg, paths, **kw)
    run = lambda **k: run_study(params, root=tmp_path, notebooks=nbs, log=lambda m: None, **{"package": package, **k})  # noqa: E731
    return params, paths, nbs, run


@pytest.fixture
def study(tmp_path):
    return make_study(tmp_path)


def ran(paths):
    log = paths.run_dir / "ran.log"
    return log.read_text().split() if log.exists() else []


def rerun(paths, run, **kw):
    (paths.run_dir / "ran.log").unlink(missing_ok=True)
    run(**kw)
    return ran(paths)


def test_runs_all_stages_then_resume_skips_unchanged(study):
    params, paths, nbs, run = study
    summary = run()
    assert [s for s, v in summary.items() if v["status"] == "ran"] == ran(paths)
    assert ran(paths) == ["data", "train_proposer", "train_verifier", "train_strong", "predict", "eval_B", "eval_D", "report"]
    for name in ("01_data", "06_evaluate_B", "07_report"):
        assert (paths.report_dir / f"{name}.ipynb").exists() and (paths.report_dir / f"{name}.html").exists()
    rec = json.loads((paths.run_dir / "stages" / "train_strong.json").read_text())
    assert "runs/toy/strong/model.txt" in rec["outputs"] and rec["status"] == "ok"
    assert rerun(paths, run) == []


def test_changed_param_redoes_only_downstream(study):
    params, paths, nbs, run = study
    run()
    params.write_text("run_id: toy\nconfigurations: [B, D]\nproposer:\n  max_steps: 7\n")
    with pytest.raises(RunExistsError):
        run()  # a changed run is never silently overwritten
    assert rerun(paths, run, resume=True) == ["train_proposer", "train_verifier", "predict", "eval_B", "eval_D", "report"]


def test_unknown_parameter_fails_before_any_stage(study, tmp_path):
    params, paths, nbs, run = study
    params.write_text("run_id: toy\ndata:\n  synthetic_trajectorys: 3\n")
    with pytest.raises(ParamsError, match="synthetic_trajectorys"):
        run()
    assert not paths.run_dir.exists()


def test_notebook_missing_a_parameter_fails_before_any_stage(study):
    params, paths, nbs, run = study
    nb = nbformat.read(nbs / "03_train_verifier.ipynb", as_version=4)
    nb.cells[0].source = nb.cells[0].source.replace("verifier =", "verifier_section =")
    nbformat.write(nb, nbs / "03_train_verifier.ipynb")
    with pytest.raises(ParamsError, match=r"03_train_verifier.ipynb does not declare parameter\(s\) \['verifier'\]"):
        run()
    assert not paths.run_dir.exists()


def test_failed_stage_names_stage_notebook_and_exception(tmp_path):
    params, paths, nbs, run = make_study(tmp_path, "run_id: toy\nconfigurations: [B]\n", fail_stage="train_strong")
    with pytest.raises(StageError) as err:
        run()
    nb = paths.report_dir / "04_train_strong.ipynb"
    assert str(err.value) == f"stage train_strong failed: RuntimeError: planted failure (executed notebook: {nb})"
    out = nbformat.read(nb, as_version=4)
    assert any(o.get("ename") == "RuntimeError" for c in out.cells for o in c.get("outputs", []))
    assert (paths.report_dir / "04_train_strong.html").exists()
    assert json.loads((paths.run_dir / "stages" / "train_strong.json").read_text())["status"] == "failed"
    assert "predict" not in ran(paths)


def test_missing_artifact_is_redone(study):
    params, paths, nbs, run = study
    run()
    (paths.run_dir / "strong" / "model.txt").unlink()
    (paths.run_dir / "eval" / "test" / "D" / "metrics.json").unlink()
    again = rerun(paths, run)
    assert again[:2] == ["train_strong", "predict"] and "eval_D" in again and again[-1] == "report"
    assert (paths.run_dir / "strong" / "model.txt").is_file()


def test_changed_artifact_is_redone(study):
    params, paths, nbs, run = study
    run()
    (paths.report_dir / "results.json").write_text("{}")  # e.g. another command wrote over the report
    assert rerun(paths, run) == ["report"]


def test_interrupted_stage_is_not_taken_as_complete(tmp_path):
    # The case: SIGKILL a --resume run while train_strong rewrites its model, revert the params.
    extra = {"train_strong": "if train['max_steps'] == 3:\n    (pathlib.Path(run_dir) / 'killme').write_text('')\n    import time; time.sleep(120)\n"}
    params, paths, nbs, run = make_study(tmp_path, "run_id: toy\nconfigurations: [B]\n", extra=extra)
    run()
    params.write_text("run_id: toy\nconfigurations: [B]\nstrong:\n  max_steps: 3\n")
    code = (f"from specact.pipeline import run_study; run_study({str(params)!r}, root={str(tmp_path)!r}, "
            f"notebooks={str(nbs)!r}, resume=True, log=print, package=__import__('pathlib').Path({str(tmp_path / 'pkg' / 'specact')!r}))")
    proc = subprocess.Popen([sys.executable, "-c", code], start_new_session=True)
    try:
        for _ in range(600):
            if (paths.run_dir / "killme").exists() or proc.poll() is not None:
                break
            time.sleep(0.1)
        assert (paths.run_dir / "killme").exists()
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # the runner and its kernel, as a hard kill would
        proc.wait()
    assert json.loads((paths.run_dir / "stages" / "train_strong.json").read_text())["status"] == "running"
    params.write_text("run_id: toy\nconfigurations: [B]\n")
    assert rerun(paths, run, resume=True)[0] == "train_strong"


def test_an_unfinished_attempt_is_resumed_only_under_the_same_key(tmp_path):
    # train_strong fails on its first attempt; what each attempt's kernel is told lands in resume.log
    extra = {"train_strong": ("pathlib.Path(run_dir, 'resume.log').open('a').write(os.environ['SPECACT_RESUME'])\n"
                              "if not pathlib.Path(run_dir, 'failed_once').exists():\n"
                              "    pathlib.Path(run_dir, 'failed_once').touch()\n"
                              "    raise RuntimeError('first attempt dies')\n")}
    params, paths, nbs, run = make_study(tmp_path, "run_id: toy\nconfigurations: [B]\n", extra=extra)
    with pytest.raises(StageError):
        run()
    run()  # same key: continue from what the failed attempt left
    run(force=["train_strong"])  # asked for afresh
    params.write_text("run_id: toy\nconfigurations: [B]\nstrong:\n  max_steps: 3\n")
    (paths.run_dir / "failed_once").unlink()
    with pytest.raises(StageError):
        run(resume=True)  # changed params: fails fresh...
    params.write_text("run_id: toy\nconfigurations: [B]\n")
    run(resume=True)  # ...and the old key's attempt is not resumed either (the record holds the other key)
    assert (paths.run_dir / "resume.log").read_text() == "01000"


def test_library_edit_redoes_the_stages_that_import_it(tmp_path):
    params, paths, nbs, run = make_study(tmp_path, "run_id: toy\nconfigurations: [B]\n")
    run()
    with open(tmp_path / "pkg" / "specact" / "actions.py", "a") as fh:
        fh.write("\n# an edit\n")
    assert rerun(paths, run) == ["eval_B", "report"]  # only the toy eval stage imports specact (.actions)


def test_only_never_builds_on_a_stale_upstream(study):
    params, paths, nbs, run = study
    run()
    params.write_text("run_id: toy\nconfigurations: [B, D]\nstrong:\n  max_steps: 3\n")
    with pytest.raises(StageError, match="stage report needs upstream stages that are not current: eval_B, eval_D"):
        run(resume=True, only=["report"])
    assert ran(paths).count("report") == 1  # not run again on outputs older than their inputs
    assert rerun(paths, run, resume=True, only=["train_strong"]) == ["train_strong"]
    assert rerun(paths, run, resume=True) == ["predict", "eval_B", "eval_D", "report"]


def test_second_writer_is_refused_naming_the_holder(study):
    params, paths, nbs, run = study
    with run_lock(paths.run_dir):
        with pytest.raises(RunLockedError, match=rf"in use by another specact process \(pid {os.getpid()}\)"):
            run()
    assert ran(paths) == []
    run()  # released on exit
    with pytest.raises(RunLockedError):
        with run_lock(paths.run_dir, shared=True):
            run()


def test_lock_is_held_by_a_running_study(tmp_path):
    extra = {"data": "(pathlib.Path(run_dir) / 'started').write_text('')\nimport time; time.sleep(60)\n"}
    params, paths, nbs, run = make_study(tmp_path, "run_id: toy\nconfigurations: [B]\n", extra=extra)
    code = f"from specact.pipeline import run_study; run_study({str(params)!r}, root={str(tmp_path)!r}, notebooks={str(nbs)!r})"
    proc = subprocess.Popen([sys.executable, "-c", code], start_new_session=True)
    try:
        for _ in range(600):
            if (paths.run_dir / "started").exists() or proc.poll() is not None:
                break
            time.sleep(0.1)
        with pytest.raises(RunLockedError, match=rf"pid {proc.pid}\)"):
            run()
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def test_timings_keep_real_times_and_params_are_not_rewritten(study):
    params, paths, nbs, run = study
    run()
    first = json.loads((paths.report_dir / "timings.json").read_text())
    mtime = (paths.run_dir / "params.yaml").stat().st_mtime_ns
    time.sleep(0.05)
    run()
    again = json.loads((paths.report_dir / "timings.json").read_text())
    assert all(v["status"] == "skipped" for v in again["stages"].values())
    assert {k: v["seconds"] for k, v in again["stages"].items()} == {k: v["seconds"] for k, v in first["stages"].items()}
    assert min(v["seconds"] for v in again["stages"].values()) > 0 and again["total_seconds"] == pytest.approx(first["total_seconds"])
    assert (paths.run_dir / "params.yaml").stat().st_mtime_ns == mtime


def test_kernels_run_without_progress_bars(study):
    params, paths, nbs, run = study
    run(only=["data"])
    assert (paths.run_dir / "env.log").read_text() == "1"


def test_seeds_run_concurrently_as_separate_runs(tmp_path):
    params, paths, nbs, _ = make_study(tmp_path, "run_id: toy\nconfigurations: [B]\n")
    out = run_seeds(params, [0, 1], jobs=2, root=tmp_path, notebooks=nbs, package=tmp_path / "pkg" / "specact")
    assert set(out) == {0, 1}
    for s in (0, 1):
        run_dir = tmp_path / "runs" / f"toy-s{s}"
        ran = load_params(run_dir / "params.yaml")
        assert ran.seed == s and ran.split_seed == 0  # seeds vary training; the data stays the params file's
        assert (run_dir / "ran.log").read_text().split()[-1] == "report"
        assert (run_dir / "strong" / "model.txt").read_text() == f"train_strong {s}"


# Each of two stages says it started, then waits for the other: they finish only if they run side by side.
MEET = ("import time\n"
        "pathlib.Path(run_dir, {me!r}).touch()\n"
        "t0 = time.time()\n"
        "while not pathlib.Path(run_dir, {other!r}).exists():\n"
        "    assert time.time() - t0 < 60, 'the other stage never started: stages ran one after another'\n"
        "    time.sleep(0.05)\n"
        "pathlib.Path(run_dir, {me!r} + '.threads').write_text(os.environ.get('OMP_NUM_THREADS', 'unset'))\n")


def test_stage_jobs_run_independent_stages_side_by_side(tmp_path, monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    extra = {"train_strong": MEET.format(me="strong.start", other="proposer.start"),
             "train_proposer": MEET.format(me="proposer.start", other="strong.start")}
    params, paths, nbs, run = make_study(tmp_path, "run_id: toy\nconfigurations: [B, D]\n", extra=extra)
    summary = run(stage_jobs=2, cpus=4)
    assert all(v["status"] == "ran" for v in summary.values()) and list(summary) == [s.name for s in stages_for(
        load_params(params))]
    order = ran(paths)
    assert order[0] == "data" and order[-1] == "report"
    assert order.index("train_verifier") > order.index("train_proposer") and order.index("predict") > order.index("train_strong")
    assert (paths.run_dir / "strong.start.threads").read_text() == "2"  # two kernels share the 4 cores
    assert rerun(paths, run, stage_jobs=2, cpus=4) == []  # records as the sequential runner writes them


def test_stage_jobs_let_running_stages_finish_then_raise_the_failure(tmp_path):
    params, paths, nbs, run = make_study(tmp_path, "run_id: toy\nconfigurations: [B]\n", fail_stage="train_strong")
    with pytest.raises(StageError, match="stage train_strong failed: RuntimeError: planted failure"):
        run(stage_jobs=2)
    # the stage running beside the failure finished and was recorded; nothing new started after the failure
    # (train_verifier ran only if train_proposer ended before train_strong failed: a race, not checked)
    assert "train_proposer" in ran(paths) and "predict" not in ran(paths)
    assert json.loads((paths.run_dir / "stages" / "train_proposer.json").read_text())["status"] == "ok"


def test_data_seed_defaults_to_seed_and_feeds_the_data_and_predict_stages(tmp_path):
    params, paths, nbs, _ = make_study(tmp_path, "run_id: toy\nseed: 3\nconfigurations: [B]\n")
    cfg = load_params(params)
    assert cfg.split_seed == 3
    cfg.data_seed = 1
    by_name = {st.name: st.params(cfg, paths) for st in stages_for(cfg)}
    assert by_name["data"]["seed"] == 1 and by_name["predict"]["data_seed"] == 1
    assert by_name["train_strong"]["seed"] == 3
    with pytest.raises(ParamsError, match="data_seed"):
        load_params(params, {"data_seed": -2})


def test_each_section_reaches_its_notebook_as_one_dict(tmp_path):
    """Every field of a section (fields added later too) travels inside its dict; none is passed flat."""
    params, paths, nbs, _ = make_study(tmp_path, "run_id: toy\nconfigurations: [B, D]\neval:\n  bootstrap: 7\n"
                                                 "verifier:\n  crossfit_weight: 3\n")
    cfg = load_params(params)
    by_name = {st.name: st.params(cfg, paths) for st in stages_for(cfg)}
    sections = {"data": {"data": "data"}, "train_proposer": {"prompt": "prompt", "train": "proposer"},
                "train_verifier": {"prompt": "prompt", "verifier": "verifier"},
                "train_strong": {"prompt": "prompt", "train": "strong"},
                "predict": {"prompt": "prompt", "eval": "eval"}, "eval_B": {"eval": "eval"}, "eval_D": {"eval": "eval"},
                "report": {"eval": "eval"}}
    flat = {f for section in ("data", "prompt", "proposer", "verifier", "strong", "eval")
            for f in to_dict(getattr(cfg, section))}
    for stage, expected in sections.items():
        got = by_name[stage]
        assert {k for k, v in got.items() if isinstance(v, dict)} == set(expected), stage
        for parameter, section in expected.items():
            assert got[parameter] == to_dict(getattr(cfg, section)), (stage, parameter)
        assert not flat & set(got), (stage, sorted(flat & set(got)))
    assert by_name["eval_D"]["eval"]["bootstrap"] == 7 and by_name["train_verifier"]["verifier"]["crossfit_weight"] == 3
    assert by_name["eval_D"]["configuration"] == "D" and by_name["report"]["report_dir"] == str(paths.report_dir)


def test_evaluate_refuses_to_overwrite_and_reuses_dev(study, tmp_path):
    params, paths, nbs, run = study
    run()
    pkg = tmp_path / "pkg" / "specact"
    reuse = lambda: reusable_dev_predictions(paths.run_dir, nbs, pkg)  # noqa: E731
    assert reuse()[0] == paths.run_dir / "eval" / "test" / "predictions_dev.jsonl"
    data = tmp_path / "a" / "ext.jsonl"
    data.parent.mkdir()
    shutil.copy(_valid_jsonl(data), data)
    ev = lambda out=None, **kw: evaluate_external(paths.run_dir, data, out, notebooks=nbs, package=pkg, log=lambda m: None, **kw)  # noqa: E731
    for bad in (paths.report_dir, paths.run_dir / "x", tmp_path / "runs"):
        with pytest.raises(OutputExistsError, match="the study's own"):
            ev(bad)
    out = ev()
    assert out.parent == paths.report_dir / "external" and out.name.startswith("ext-")
    assert (out / "eval" / "dev_source.txt").read_text() == str(paths.run_dir / "eval" / "test" / "predictions_dev.jsonl")
    other = tmp_path / "b" / "ext.jsonl"  # same stem, other content: its own default output
    other.parent.mkdir()
    other.write_text(data.read_text().splitlines()[0] + "\n")
    assert evaluate_external(paths.run_dir, other, notebooks=nbs, package=pkg, log=lambda m: None) != out
    with pytest.raises(OutputExistsError, match="not empty; pass --overwrite"):
        ev()
    (out / "stale.txt").write_text("old")
    assert not (ev(overwrite=True, rescore_dev=True) / "stale.txt").exists()
    assert (out / "eval" / "dev_source.txt").read_text() == "scored"
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep")
    with pytest.raises(OutputExistsError, match="not written by `specact evaluate`"):
        ev(foreign, overwrite=True)
    with open(pkg / "chat_template.jinja", "a") as fh:  # the package changed: the old rows may not be today's
        fh.write("\n")
    assert reuse() == (None, "the run's predict stage is not current (its params, notebook or library code changed)")
    (paths.run_dir / "strong" / "model.txt").write_text("retrained")
    assert reuse() == (None, "train_strong: artifact runs/toy/strong/model.txt changed since the stage wrote it")


def _valid_jsonl(dest):
    rec = {"id": "x{}", "messages": [{"role": "user", "content": "hi"}], "label": "final_answer",
           "meta": {"source": "t", "trajectory_id": "t{}"}}
    lines = [json.dumps(rec).replace("{}", str(i)) for i in range(3)]
    tmp = dest.parent / "src.jsonl"
    tmp.write_text("\n".join(lines) + "\n")
    return tmp


def test_bpe_cache_is_keyed_by_its_training_data(tmp_path):
    from specact.tokenization import bpe_dir, load_bpe, train_bpe

    run = tmp_path / "run"
    texts_a = [f"alpha beta gamma {i} " * 8 for i in range(40)]
    texts_b = [f"delta epsilon zeta {i} " * 8 for i in range(40)]
    a = load_bpe(300, run, texts_a)
    b = load_bpe(300, run, texts_b)  # the data changed: trained again, not the cached one
    assert b.get_vocab() == train_bpe(sorted(texts_b), 300).get_vocab() != a.get_vocab()
    assert load_bpe(300, run, None).get_vocab() == b.get_vocab()  # a stage that only loads gets the current one
    split = run / "data" / "decisions" / "train"
    split.mkdir(parents=True)
    (split / "data-00000-of-00001.arrow").write_bytes(b"one")
    first = bpe_dir(run, 300)
    (split / "data-00000-of-00001.arrow").write_bytes(b"two")
    assert bpe_dir(run, 300) != first and bpe_dir(run, 300).name.startswith("tokenizer-bpe-300-")


@pytest.mark.parametrize("stage_jobs", [1, 2])
def test_ctrl_c_stops_with_one_line_and_no_kernel_traceback(tmp_path, stage_jobs):
    # train_strong signals once train_verifier has finished (it always has in sequential order): with
    # stage_jobs 2 it is then the only stage running, so the one line names it alone
    extra = {"train_strong": ("import time\nrec = pathlib.Path(run_dir, 'stages', 'train_verifier.json')\n"
                              "while not (rec.exists() and json.loads(rec.read_text())['status'] == 'ok'):\n"
                              "    time.sleep(0.1)\n"
                              "(pathlib.Path(run_dir) / 'started').write_text('')\ntime.sleep(60)\n")}
    params, paths, nbs, run = make_study(tmp_path, "run_id: toy\nconfigurations: [B]\n", extra=extra)
    code = ("import sys, pathlib\nfrom specact.pipeline import run_study, StageInterrupted\n"
            f"try:\n    run_study({str(params)!r}, root={str(tmp_path)!r}, notebooks={str(nbs)!r}, log=print, "
            f"package=pathlib.Path({str(tmp_path / 'pkg' / 'specact')!r}), stage_jobs={stage_jobs})\n"
            "except StageInterrupted as e:\n    print(e, file=sys.stderr)\n    sys.exit(130)\n")
    # a terminal's Ctrl-C: SIGINT to the runner's process group (a test runner may have SIGINT ignored: restore it)
    proc = subprocess.Popen([sys.executable, "-c", code], start_new_session=True, stderr=subprocess.PIPE, text=True,
                            stdout=subprocess.DEVNULL, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    for _ in range(1200):
        if (paths.run_dir / "started").exists() or proc.poll() is not None:
            break
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    # the kernel's own one-line log records ('[IPKernelApp] ...') may appear; tracebacks may not
    lines = [ln for ln in err.splitlines() if not ln.startswith("[IPKernelApp]")]
    assert proc.returncode == 130 and "Traceback" not in err
    assert lines == ["stage train_strong interrupted; rerun the same command to resume (finished stages are kept)"]
    # not complete: the sequential runner stops inside the stage; a stage's thread sees its kernel die and records that
    status = json.loads((paths.run_dir / "stages" / "train_strong.json").read_text())["status"]
    assert status == ("running" if stage_jobs == 1 else "failed")


@pytest.mark.parametrize("error, rc", [
    (StageError("stage train_strong failed: RuntimeError: planted failure (executed notebook: reports/x/04_train_strong.ipynb)"), 1),
    (RunLockedError("run directory runs/x is in use by another specact process (pid 42); wait"), 2),
])
def test_cli_prints_what_failed(monkeypatch, capsys, error, rc):
    import specact.pipeline as pipeline
    from specact.__main__ import main

    def fail(*a, **k):
        raise error

    monkeypatch.setattr(pipeline, "run_study", fail)
    assert main(["run", "params/smoke.yaml"]) == rc
    assert str(error) in capsys.readouterr().err
    assert main(["run", "params/smoke.yaml", "--jobs", "2"]) == 2  # --jobs runs seeds side by side: needs --seeds
    assert "--jobs needs --seeds" in capsys.readouterr().err


def test_training_stages_do_not_depend_on_the_report_code():
    """A stage's key hashes the modules its notebook reaches: editing a figure must not re-run training."""
    import nbformat

    from specact.pipeline import NOTEBOOKS, module_closure

    for name in ("01_data", "02_train_proposer", "03_train_verifier", "04_train_strong", "05_predict"):
        nb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
        files = {p.name for p in module_closure("\n".join(c.source for c in nb.cells if c.cell_type == "code"))}
        assert "report.py" not in files and "compare.py" not in files, name
