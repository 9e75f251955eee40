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
    with pytest.raises(ParamsError, match=r"unknown parameter 'proposer.learning_rat'.*allowed in \w+Config: .*learning_rate"):
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


# ---- every value checked before any stage (issue 17)
@pytest.mark.parametrize("text, message", [
    ("proposer:\n  learning_rate: 0\n", r"proposer.learning_rate must be > 0, got 0.0"),
    ("verifier:\n  learning_rate: -1.0e-4\n", r"verifier.learning_rate must be > 0"),
    ("strong:\n  max_steps: -5\n", r"strong.max_steps must be >= 0, got -5"),
    ("strong:\n  num_train_epochs: 0\n", r"strong.num_train_epochs must be > 0"),
    ("proposer:\n  per_device_train_batch_size: 0\n", r"proposer.per_device_train_batch_size must be >= 1"),
    ("proposer:\n  warmup_ratio: 1.5\n", r"proposer.warmup_ratio must be in \[0, 1\)"),
    ("proposer:\n  crossfit_folds: 1\n", r"proposer.crossfit_folds must be 0 \(none\) or >= 2"),
    ("eval:\n  bootstrap: -1\n", r"eval.bootstrap must be >= 1, got -1"),
    ("eval:\n  n_samples: 0\n", r"eval.n_samples must be >= 1"),
    ("eval:\n  target_accept_precision: 1.2\n", r"eval.target_accept_precision must be in \(0, 1\]"),
    ("data:\n  split_fractions: [0.7, 0.3, 0.3]\n", r"data.split_fractions must be non-negative numbers summing to 1, got \[0.7, 0.3, 0.3\]"),
    ("data:\n  split_fractions: [1.2, -0.1, -0.1]\n", r"data.split_fractions must be non-negative"),
    ("data:\n  synthetic_trajectories: -3\n", r"data.synthetic_trajectories must be >= 0"),
    ("run_id: ../../x\n", r"run_id must be a plain name .*'../../x'"),
    ("run_id: a/b\n", r"run_id must be a plain name"),
    ("run_id: ''\n", r"run_id must be a plain name"),
    ("seed: -1\n", r"seed must be >= 0"),
])
def test_bad_value_is_refused_at_load(tmp_path, text, message):
    with pytest.raises(ParamsError, match=message):
        load_params(write(tmp_path, text))


def test_values_are_checked_when_built_in_code_too():
    from specact.config import EvalConfig, ProposerConfig

    with pytest.raises(ParamsError, match="learning_rate must be > 0"):
        ProposerConfig(learning_rate=0.0)
    with pytest.raises(ParamsError, match="bootstrap must be >= 1"):
        EvalConfig(bootstrap=0)


def test_empty_params_file_is_refused(tmp_path):
    for text in ("", "\n# only a comment\n"):
        with pytest.raises(ParamsError, match="the params file is empty"):
            load_params(write(tmp_path, text))


def test_yaml_syntax_error_keeps_file_and_line(tmp_path):
    p = write(tmp_path, "run_id: x\nproposer:\n  max_steps: [1, 2\n  lora: true\n")
    with pytest.raises(ParamsError, match=rf"{p}:4:\d+: YAML syntax error"):
        load_params(p)
    bad = tmp_path / "latin1.yaml"
    bad.write_bytes(b"run_id: caf\xe9\n")
    with pytest.raises(ParamsError, match="not UTF-8"):
        load_params(bad)


def test_set_of_a_nested_key_changes_that_key_only(tmp_path):
    from specact.__main__ import _overrides

    p = write(tmp_path, "proposer:\n  model:\n    config: {hidden_size: 32}\n    tokenizer: 'bpe:512'\n  max_steps: 4\n")
    cfg = load_params(p, _overrides(["proposer.model.tokenizer=bpe:300", "eval.bootstrap=50"]))
    assert cfg.proposer.model.tokenizer == "bpe:300" and cfg.proposer.model.config == {"hidden_size": 32}
    assert cfg.proposer.max_steps == 4 and cfg.eval.bootstrap == 50
    nested = load_params(p, {"proposer": {"model": {"tokenizer": "bpe:300"}}})
    assert nested.proposer.model.config == {"hidden_size": 32}
    whole = load_params(p, _overrides(["proposer.model={name: some/model}"]))  # a mapping value replaces that key
    assert whole.proposer.model.name == "some/model" and whole.proposer.model.config == {}
    with pytest.raises(ParamsError, match="--set expects key=value"):
        _overrides(["proposer.max_steps"])


# ---- external decision-point files (specact.records)
def _rec(i, **kw):
    import json

    return json.dumps({"id": f"p{i}", "messages": [{"role": "user", "content": "hi"}], "label": "final_answer",
                       "meta": {"source": "t", "trajectory_id": "t"}, **kw})


@pytest.mark.parametrize("content, message", [
    (b"", r"x.jsonl: field '<file>': the file holds no decision point"),
    (b"\n  \n\n", r"x.jsonl: field '<file>': the file holds no decision point"),
    (_rec(0).encode() + b"\n" + _rec(1).encode().replace(b"hi", b"h\xff") + b"\n", r"x.jsonl:2: field '<line>': not UTF-8 \(byte 0xff"),
    ((_rec(0) + "\n" + _rec(1) + "\n" + _rec(0) + "\n").encode(), r"x.jsonl:3: field 'id': duplicate id 'p0' \(first on line 1\)"),
])
def test_bad_external_file_is_refused(tmp_path, content, message):
    from specact.records import RecordError, read_jsonl

    (tmp_path / "x.jsonl").write_bytes(content)
    with pytest.raises(RecordError, match=message):
        read_jsonl(tmp_path / "x.jsonl")


def test_blank_lines_between_records_are_fine(tmp_path):
    from specact.records import read_jsonl

    (tmp_path / "x.jsonl").write_text(_rec(0) + "\n\n" + _rec(1) + "\n")
    assert [r["id"] for r in read_jsonl(tmp_path / "x.jsonl")] == ["p0", "p1"]
