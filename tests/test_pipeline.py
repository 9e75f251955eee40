"""The runner on toy notebooks: parameters, validation, resume, failure. (The real notebooks run in test_e2e.)"""

import json

import nbformat
import pytest

from specact.config import ParamsError, load_params
from specact.pipeline import RunExistsError, RunPaths, run_study, stages_for


def toy_notebooks(nb_dir, cfg, paths, fail_stage=None):
    """One notebook per stage: declares exactly the stage's parameters and logs that it ran."""
    nb_dir.mkdir(exist_ok=True)
    for st in stages_for(cfg):
        params = st.params(cfg, paths)
        decl = "\n".join(f"{k} = {v!r}" for k, v in params.items())
        body = (
            "import json, pathlib\n"
            "log = pathlib.Path(run_dir) / 'ran.log'\n"
            f"name = 'eval_' + configuration if {st.name!r}.startswith('eval_') else {st.name!r}\n"
            "log.open('a').write(name + '\\n')\n"
        )
        if st.name == fail_stage:
            body += "raise RuntimeError('planted failure')\n"
        cells = [nbformat.v4.new_code_cell(decl), nbformat.v4.new_code_cell(body)]
        cells[0].metadata["tags"] = ["parameters"]
        nb = nbformat.v4.new_notebook(cells=cells)
        nb.metadata["kernelspec"] = {"name": "specact", "display_name": "Python (specact)", "language": "python"}
        nbformat.write(nb, nb_dir / st.notebook)


@pytest.fixture
def study(tmp_path):
    params = tmp_path / "p.yaml"
    params.write_text("run_id: toy\nconfigurations: [B, D]\n")
    cfg = load_params(params)
    paths = RunPaths.for_run("toy", tmp_path)
    nbs = tmp_path / "nbs"
    toy_notebooks(nbs, cfg, paths)
    run = lambda **kw: run_study(params, root=tmp_path, notebooks=nbs, log=lambda m: None, **kw)  # noqa: E731
    return params, paths, nbs, run


def ran(paths):
    return (paths.run_dir / "ran.log").read_text().split()


def test_runs_all_stages_then_resume_skips_unchanged(study):
    params, paths, nbs, run = study
    summary = run()
    assert [s for s, v in summary.items() if v["status"] == "ran"] == ran(paths)
    assert ran(paths) == ["data", "train_proposer", "train_verifier", "train_strong", "predict", "eval_B", "eval_D", "report"]
    for name in ("01_data", "06_evaluate_B", "07_report"):
        assert (paths.report_dir / f"{name}.ipynb").exists() and (paths.report_dir / f"{name}.html").exists()
    (paths.run_dir / "ran.log").unlink()
    summary = run()
    assert all(v["status"] == "skipped" for v in summary.values())
    assert not (paths.run_dir / "ran.log").exists()


def test_changed_param_redoes_only_downstream(study):
    params, paths, nbs, run = study
    run()
    (paths.run_dir / "ran.log").unlink()
    params.write_text("run_id: toy\nconfigurations: [B, D]\nproposer:\n  max_steps: 7\n")
    with pytest.raises(RunExistsError):
        run()  # a changed run is never silently overwritten
    run(resume=True)
    assert ran(paths) == ["train_proposer", "train_verifier", "predict", "eval_B", "eval_D", "report"]


def test_unknown_parameter_fails_before_any_stage(study, tmp_path):
    params, paths, nbs, run = study
    params.write_text("run_id: toy\ndata:\n  synthetic_trajectorys: 3\n")
    with pytest.raises(ParamsError, match="synthetic_trajectorys"):
        run()
    assert not paths.run_dir.exists()


def test_notebook_missing_a_parameter_fails_before_any_stage(study):
    params, paths, nbs, run = study
    nb = nbformat.read(nbs / "03_train_verifier.ipynb", as_version=4)
    nb.cells[0].source = nb.cells[0].source.replace("learning_rate", "lr")
    nbformat.write(nb, nbs / "03_train_verifier.ipynb")
    with pytest.raises(ParamsError, match=r"03_train_verifier.ipynb does not declare parameter\(s\) \['learning_rate'\]"):
        run()
    assert not paths.run_dir.exists()


def test_failed_stage_keeps_traceback_and_raises(tmp_path):
    params = tmp_path / "p.yaml"
    params.write_text("run_id: toy\nconfigurations: [B]\n")
    cfg = load_params(params)
    paths = RunPaths.for_run("toy", tmp_path)
    toy_notebooks(tmp_path / "nbs", cfg, paths, fail_stage="train_strong")
    with pytest.raises(Exception, match="planted failure"):
        run_study(params, root=tmp_path, notebooks=tmp_path / "nbs", log=lambda m: None)
    out = nbformat.read(paths.report_dir / "04_train_strong.ipynb", as_version=4)
    assert any(o.get("ename") == "RuntimeError" for c in out.cells for o in c.get("outputs", []))
    assert (paths.report_dir / "04_train_strong.html").exists()
    assert json.loads((paths.run_dir / "stages" / "train_strong.json").read_text())["status"] == "failed"
    assert "predict" not in ran(paths)
