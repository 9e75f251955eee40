"""The committed notebooks: thin, output-free, and in step with the params dataclasses."""

import ast
import dataclasses

import nbformat
import pytest

from specact.config import DataConfig, EvalConfig, VerifierConfig, load_params
from specact.pipeline import NOTEBOOKS, REPO, RunPaths, check_stages, stages_for
from specact.prompts import PromptConfig

ALL = sorted(NOTEBOOKS.glob("*.ipynb"))
SECTIONS = {"01_data": DataConfig, "03_train_verifier": VerifierConfig,
            "05_predict": EvalConfig, "06_evaluate": EvalConfig, "07_report": EvalConfig}
DICT_SECTIONS = {"02_train_proposer": "train", "04_train_strong": "train"}  # one dict parameter: no restated defaults


@pytest.mark.parametrize("path", ALL, ids=lambda p: p.name)
def test_committed_notebook_has_no_outputs(path):
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert not cell.outputs and cell.execution_count is None, f"{path.name}: clear outputs before committing"


@pytest.mark.parametrize("path", ALL, ids=lambda p: p.name)
def test_parameter_defaults_match_the_dataclasses(path):
    nb = nbformat.read(path, as_version=4)
    cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    values = {t.targets[0].id: ast.literal_eval(t.value) for t in ast.parse(cell.source).body if isinstance(t, ast.Assign)}
    if path.stem in DICT_SECTIONS:
        assert values[DICT_SECTIONS[path.stem]] == {} and values["prompt"] == {}
        return
    defaults = {f.name: getattr(SECTIONS[path.stem](), f.name) for f in dataclasses.fields(SECTIONS[path.stem])}
    for k, v in defaults.items():
        assert values[k] == (dataclasses.asdict(v) if dataclasses.is_dataclass(v) else v), f"{path.name}: {k}"
    if "prompt" in values:
        assert values["prompt"] == dataclasses.asdict(PromptConfig())


@pytest.mark.parametrize("profile", ["smoke", "default", "qwen3", "gpu"])
def test_every_stage_notebook_declares_what_the_runner_passes(profile):
    path = REPO / "params" / f"{profile}.yaml"
    if not path.exists():
        pytest.skip(f"no {profile} profile")
    cfg = load_params(path)
    check_stages(stages_for(cfg), cfg, RunPaths.for_run(cfg.run_id))
