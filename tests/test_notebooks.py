"""The committed notebooks: thin, output-free, and taking each params section as one dict."""

import ast
import dataclasses

import nbformat
import pytest

import specact.config as config
import specact.nbutil as nbu
from specact.config import (DataConfig, EvalConfig, ParamsError, PromptConfig, ProposerConfig, StrongConfig,
                            VerifierConfig, load_params)
from specact.pipeline import NOTEBOOKS, REPO, RunPaths, check_stages, stages_for

ALL = sorted(NOTEBOOKS.glob("*.ipynb"))
# notebook -> its dict parameters and the dataclass each is built into (the runner passes the run's section)
SECTIONS = {
    "01_data": {"data": DataConfig},
    "02_train_proposer": {"prompt": PromptConfig, "train": ProposerConfig},
    "03_train_verifier": {"prompt": PromptConfig, "verifier": VerifierConfig},
    "04_train_strong": {"prompt": PromptConfig, "train": StrongConfig},
    "05_predict": {"prompt": PromptConfig, "eval": EvalConfig},
    "06_evaluate": {"eval": EvalConfig},
    "07_report": {"eval": EvalConfig},
}
EVERY_FIELD = {f.name for cls in (DataConfig, PromptConfig, ProposerConfig, StrongConfig, VerifierConfig, EvalConfig)
               for f in dataclasses.fields(cls)}


def _code(path) -> str:
    return "\n".join(c.source for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code")


def _parameters(path) -> dict:
    nb = nbformat.read(path, as_version=4)
    cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    return {t.targets[0].id: ast.literal_eval(t.value) for t in ast.parse(cell.source).body if isinstance(t, ast.Assign)}


def _section_builds(path) -> dict[str, str]:
    """``{parameter: dataclass name}`` of every ``nbu.section_dict(Class, parameter)`` call in the notebook."""
    out = {}
    for node in ast.walk(ast.parse(_code(path))):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "section_dict":
            cls, value = node.args
            out[value.id] = cls.id
    return out


def test_every_notebook_is_listed():
    assert sorted(p.stem for p in ALL) == sorted(SECTIONS)


@pytest.mark.parametrize("path", ALL, ids=lambda p: p.name)
def test_committed_notebook_has_no_outputs(path):
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert not cell.outputs and cell.execution_count is None, f"{path.name}: clear outputs before committing"


@pytest.mark.parametrize("path", ALL, ids=lambda p: p.name)
def test_each_section_is_one_dict_parameter_with_no_restated_defaults(path):
    values = _parameters(path)
    for name in SECTIONS[path.stem]:
        assert values[name] == {}, f"{path.name}: {name} restates values; its defaults live in specact/config.py"
    restated = sorted(set(values) & EVERY_FIELD)
    assert restated == [], f"{path.name}: parameters named after section fields: {restated}"


@pytest.mark.parametrize("path", ALL, ids=lambda p: p.name)
def test_each_dict_parameter_is_built_and_an_unknown_key_rejected(path):
    """papermill only warns about an unknown parameter and never sees a dict's keys: section_dict refuses them."""
    builds = _section_builds(path)
    assert {name: cls.__name__ for name, cls in SECTIONS[path.stem].items()} == builds
    for cls_name in builds.values():
        cls = getattr(config, cls_name)
        assert nbu.section_dict(cls, {}) == cls()
        with pytest.raises(ParamsError, match=rf"unknown parameter 'not_a_field'; allowed in {cls_name}"):
            nbu.section_dict(cls, {"not_a_field": 1})


def test_a_notebook_given_an_unknown_key_fails(tmp_path):
    """The same through papermill: the executed notebook stops at the section's build, naming the key."""
    import papermill as pm
    from papermill.exceptions import PapermillExecutionError

    with pytest.raises(PapermillExecutionError, match="unknown parameter 'bootstrapp'"):
        pm.execute_notebook(str(NOTEBOOKS / "06_evaluate.ipynb"), str(tmp_path / "out.ipynb"), kernel_name="specact",
                            parameters={"eval": {"bootstrapp": 10}, "eval_dir": str(tmp_path)}, progress_bar=False,
                            cwd=str(REPO))


@pytest.mark.parametrize("profile", ["smoke", "default", "qwen3", "gpu"])
def test_every_stage_notebook_declares_what_the_runner_passes(profile):
    path = REPO / "params" / f"{profile}.yaml"
    if not path.exists():
        pytest.skip(f"no {profile} profile")
    cfg = load_params(path)
    check_stages(stages_for(cfg), cfg, RunPaths.for_run(cfg.run_id))


def test_readme_notebook_table_names_every_parameter():
    """README's "Notebooks: what each stage gets and calls": each row names its notebook's dict sections and other
    parameters (all but run_dir and seed, which every notebook takes)."""
    import re

    text = (REPO / "README.md").read_text()
    table = text[text.index("## Notebooks: what each stage gets and calls"):].split("\n## ")[0]
    rows = {m.group(1): m.group(2) for m in re.finditer(r"^\| `(\d\d_\w+)`[^|]*\| ([^|]*) \|", table, re.M)}
    assert sorted(rows) == sorted(SECTIONS)
    for path in ALL:
        named = set(re.findall(r"`(\w+)`", rows[path.stem]))
        assert set(_parameters(path)) - {"run_dir", "seed"} <= named, path.stem


@pytest.mark.parametrize("path", ALL, ids=lambda p: p.name)
def test_every_name_a_notebook_reads_is_defined_in_it(path):
    """A section field read bare (``split`` for ``cfg.split``) would be a NameError only when the stage runs."""
    import builtins

    tree = ast.parse(_code(path))
    names = [n for n in ast.walk(tree) if isinstance(n, ast.Name)]
    defined = {n.id for n in names if isinstance(n.ctx, ast.Store)}
    defined |= {a.asname or a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))
                for a in n.names}
    defined |= {a.arg for n in ast.walk(tree) if isinstance(n, ast.Lambda) for a in n.args.args}
    undefined = {n.id for n in names if isinstance(n.ctx, ast.Load)} - defined - set(dir(builtins))
    assert undefined == set(), f"{path.name} reads names it never defines: {sorted(undefined)}"
