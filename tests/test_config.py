import pytest

from specact.config import ParamsError, StudyConfig, load_params
from specact.pipeline import REPO

PROFILES = sorted((REPO / "params").glob("*.yaml")) + sorted((REPO / "params" / "ablations").glob("*.yaml"))


def write(tmp_path, text, name="p.yaml"):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_defaults_load(tmp_path):
    cfg = load_params(write(tmp_path, "run_id: x\n"))
    assert isinstance(cfg, StudyConfig) and cfg.run_id == "x"


def test_unknown_key_names_key_and_allowed(tmp_path):
    with pytest.raises(ParamsError, match=r"unknown parameter 'proposer.learning_rat'.*allowed in TrainConfig: .*learning_rate"):
        load_params(write(tmp_path, "proposer:\n  learning_rat: 0.1\n"))


def test_wrong_type_is_rejected(tmp_path):
    with pytest.raises(ParamsError, match=r"proposer.max_steps: expected an integer"):
        load_params(write(tmp_path, "proposer:\n  max_steps: many\n"))


def test_yaml_scientific_notation_string_is_a_float(tmp_path):
    # YAML 1.1 reads 1e-4 as the string '1e-4'.
    cfg = load_params(write(tmp_path, "proposer:\n  learning_rate: 1e-4\n"))
    assert cfg.proposer.learning_rate == pytest.approx(1e-4)


def test_include_states_only_differences(tmp_path):
    write(tmp_path, "run_id: base\nseed: 3\nproposer:\n  max_steps: 10\n  lora_r: 4\n", "base.yaml")
    cfg = load_params(write(tmp_path, "include: base.yaml\nrun_id: child\nproposer:\n  max_steps: 20\n"))
    assert (cfg.run_id, cfg.seed, cfg.proposer.max_steps, cfg.proposer.lora_r) == ("child", 3, 20, 4)


def test_unknown_configuration(tmp_path):
    with pytest.raises(ParamsError, match="configurations"):
        load_params(write(tmp_path, "configurations: [A, Z]\n"))


def test_missing_file():
    with pytest.raises(ParamsError, match="not found"):
        load_params("params/does-not-exist.yaml")


@pytest.mark.parametrize("path", PROFILES, ids=lambda p: p.name)
def test_every_shipped_profile_loads(path):
    load_params(path)


def test_num_processes_must_keep_the_global_batch(tmp_path):
    with pytest.raises(ParamsError, match=r"strong.num_processes=3 must divide gradient_accumulation_steps"):
        load_params(write(tmp_path, "strong:\n  num_processes: 3\n  per_device_train_batch_size: 16\n"))
    with pytest.raises(ParamsError, match=r"verifier.num_processes must be >= 1"):
        load_params(write(tmp_path, "verifier:\n  num_processes: 0\n"))
    cfg = load_params(write(tmp_path, "proposer:\n  num_processes: 2\n  per_device_train_batch_size: 16\n"))
    assert cfg.proposer.num_processes == 2


def test_negative_crossfit_weight_is_rejected(tmp_path):
    with pytest.raises(ParamsError, match=r"verifier.crossfit_weight must be >= 0"):
        load_params(write(tmp_path, "verifier:\n  crossfit_weight: -1\n"))
    assert load_params(write(tmp_path, "verifier:\n  crossfit_weight: 5\n")).verifier.crossfit_weight == 5
