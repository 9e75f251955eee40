"""specact.launch: keeping the global batch, the launch command, and a failing child surfacing its error.

The two-process training run itself (losses equal to one process) is in tests/test_train.py."""

from __future__ import annotations

import pytest
from specact_toy import tiny_spec

from specact import launch
from specact.config import TrainConfig, VerifierConfig


def _cfg(**kw) -> TrainConfig:
    return TrainConfig(**{"model": tiny_spec(), "per_device_train_batch_size": 4, **kw})


def test_split_batch_keeps_the_global_batch():
    assert launch.split_batch(_cfg(gradient_accumulation_steps=2), 2).gradient_accumulation_steps == 1  # accumulation first
    assert launch.split_batch(_cfg(), 2).per_device_train_batch_size == 2
    assert launch.split_batch(_cfg(), 1) == _cfg()
    v = launch.split_batch(VerifierConfig(per_device_train_batch_size=8, gradient_accumulation_steps=3), 2)
    assert (v.per_device_train_batch_size, v.gradient_accumulation_steps) == (4, 3)
    with pytest.raises(ValueError, match="global batch"):
        launch.split_batch(_cfg(per_device_train_batch_size=3), 2)


def test_launch_command_is_accelerate_multi_process(tmp_path):
    cmd = launch.launch_command(4, tmp_path / "job.pkl")
    assert cmd[1:4] == ["-m", "accelerate.commands.launch", "--multi_gpu"]
    assert cmd[cmd.index("--num_processes") + 1] == "4"
    assert cmd[-3:] == ["-m", "specact.launch", str(tmp_path / "job.pkl")]


def test_world_outside_a_launch(monkeypatch):
    for k in ("RANK", "WORLD_SIZE", launch._JOB_ENV):
        monkeypatch.delenv(k, raising=False)
    assert launch.world() == (0, 1) and launch.is_main() and not launch.in_launched_job()
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert launch.world() == (1, 2) and not launch.is_main()


def test_a_failing_child_raises_with_its_traceback(tmp_path):
    with pytest.raises(RuntimeError, match=r"(?s)failed \(exit .*no_such_function"):
        launch.run("no_such_function", 2, tmp_path, {}, tmp_path / "metrics.json")


def test_child_error_names_the_exception_behind_torchruns_rank_prefix():
    """What the 2-GPU OOM printed (H100, 2026-11-26): the exception line carries a ``[rank0]: `` prefix."""
    tail = ["[rank0]: Traceback (most recent call last):\n",
            "[rank0]:   File \"x.py\", line 1, in <module>\n",
            "[rank0]: torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 18.00 MiB.\n",
            "torch.distributed.elastic.multiprocessing.errors.ChildFailedError: \n"]
    assert launch.child_error(tail).startswith("torch.OutOfMemoryError: CUDA out of memory")
    assert launch.child_error(["ValueError: bad\n"]) == "ValueError: bad"
    assert launch.child_error(["no exception here\n"]) == "see the output above"


def test_target_is_module_colon_function_and_launch_imports_nothing_of_the_project():
    import ast
    from pathlib import Path

    assert launch.resolve_target("specact.verifier:train_verifier") == ("specact.verifier", "train_verifier")
    assert launch.resolve_target("train_sft") == ("specact.train", "train_sft")
    tree = ast.parse(Path(launch.__file__).read_text())
    imported = [n.module if isinstance(n, ast.ImportFrom) else a.name
                for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom)) for a in n.names]
    assert not [m for m in imported if m and m.startswith("specact")]
