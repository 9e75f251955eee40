"""Data-parallel training through ``accelerate launch``, started from a notebook or a script.

A training function (``"specact.train:train_sft"``, ``"specact.train:crossfit"``,
``"specact.verifier:train_verifier"``) whose config asks for ``num_processes > 1`` re-runs
itself under ``accelerate launch --multi_gpu --num_processes N -m specact.launch <job>``: one
process per GPU, the HF Trainer wraps the model in DDP, and process 0 saves the model and
writes the metrics the notebook then reads. The calling notebook never initialises CUDA for
training, which is what ``accelerate.notebook_launcher`` also requires; a subprocess keeps
the kernel free of a process group that outlives the stage.

Same results as one process, up to numerical noise: :func:`split_batch` keeps the **global**
batch (per-device batch x accumulation x processes) that the config states, and the Trainer's
sharded sampler gives step ``s`` the same examples in either layout. On a machine without GPUs
the processes use the ``gloo`` backend on CPU, which is how the tests check all of this.
"""

from __future__ import annotations

import dataclasses
import os
import pickle
import re
import subprocess
import sys
from collections import deque
from pathlib import Path

_JOB_ENV = "SPECACT_LAUNCHED"  # set in the children: a launched function must not launch again
# The runner sets this to "1" in the kernel of a stage it re-runs after an attempt with the same key
# (parameters, library code, upstream outputs) was interrupted or failed, and to "0" otherwise
# (read by specact.trainer_common.resuming; here, where the torch-free runner can import it too).
RESUME_ENV = "SPECACT_RESUME"


def in_launched_job() -> bool:
    return os.environ.get(_JOB_ENV) == "1"


def world() -> tuple[int, int]:
    """(rank, world size) of this process; (0, 1) outside a distributed launch."""
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def is_main() -> bool:
    return world()[0] == 0


def global_batch(cfg, n: int) -> int:
    """Examples per optimizer step across ``n`` processes."""
    return cfg.per_device_train_batch_size * cfg.gradient_accumulation_steps * n


def split_batch(cfg, n: int):
    """``cfg`` with gradient accumulation (first) or the per-device batch divided by ``n``, so the
    global batch per optimizer step is unchanged; an error if neither divides."""
    if n <= 1:
        return cfg
    if cfg.gradient_accumulation_steps % n == 0:
        return dataclasses.replace(cfg, gradient_accumulation_steps=cfg.gradient_accumulation_steps // n)
    if cfg.per_device_train_batch_size % n == 0:
        return dataclasses.replace(cfg, per_device_train_batch_size=cfg.per_device_train_batch_size // n)
    raise ValueError(
        f"num_processes={n} divides neither gradient_accumulation_steps={cfg.gradient_accumulation_steps} nor "
        f"per_device_train_batch_size={cfg.per_device_train_batch_size}; the global batch could not be kept")


def launch_command(n: int, job: Path) -> list[str]:
    """The ``accelerate launch`` command line (also what a user would type for a script)."""
    return [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(n),
            "--num_machines", "1", "--mixed_precision", "no",  # the Trainer sets bf16 from the config itself
            "--dynamo_backend", "no", "--main_process_port", str(_free_port()), "-m", "specact.launch", str(job)]


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def child_error(lines) -> str:
    """The first exception line the children printed (torchrun prefixes them with ``[rankN]: ``)."""
    for ln in lines:
        ln = re.sub(r"^\[rank\d+\]:\s*", "", ln.strip())
        if re.match(r"^[\w.]+(Error|Exception): ", ln):
            return ln
    return "see the output above"


def _release_gpu_cache() -> None:
    """Hand this process's cached GPU memory back before the children start: a model trained or
    scored earlier in the same kernel leaves the caching allocator holding it, and process 0
    shares GPU 0 with us (on an H100 the 1-process run of ``scripts/gpu/scaleout.py`` left 76 GiB
    reserved and the 2-process run died of OOM)."""
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.empty_cache()
        held = torch.cuda.memory_allocated() / 2**30
        if held > 1:
            print(f"warning: this process still holds {held:.1f} GiB on GPU {torch.cuda.current_device()} "
                  "(live tensors: a model kept in a variable?); process 0 may run out of memory", flush=True)


def resolve_target(target: str) -> tuple[str, str]:
    """``"module:function"`` -> (module, function); a bare name means ``specact.train:<name>`` (older callers)."""
    module, _, fn = target.rpartition(":")
    return module or "specact.train", fn


def run(target: str, n: int, job_dir: str | Path, kwargs: dict, result_file: str | Path):
    """Run ``target`` (``"module:function"``, e.g. ``"specact.train:train_sft"``) with ``kwargs`` on ``n``
    processes; return what process 0 wrote to ``result_file`` (metrics JSON, or the cross-fit rows
    JSONL). Output streams to the caller. The target is imported by name in the children only."""
    module, fn_name = resolve_target(target)
    job_dir = Path(job_dir)
    job_dir.mkdir(parents=True, exist_ok=True)
    job = job_dir / f"launch_{fn_name}.pkl"
    job.write_bytes(pickle.dumps({"module": module, "fn": fn_name, "kwargs": kwargs}))
    env = {**os.environ, _JOB_ENV: "1", "TOKENIZERS_PARALLELISM": "false"}
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // n)))
    cmd = launch_command(n, job)
    _release_gpu_cache()
    print("launching:", " ".join(cmd[1:]), flush=True)
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
    tail: deque[str] = deque(maxlen=400)
    for line in proc.stdout:  # relayed, so papermill's log and the notebook show the children's progress
        print(line, end="", flush=True)
        tail.append(line)
    if proc.wait() != 0:
        # torchrun ends with its own summary; name the children's exception first.
        raise RuntimeError(f"accelerate launch of {target} on {n} processes failed (exit {proc.returncode}): "
                           f"{child_error(tail)}\n" + "".join(list(tail)[-25:]))
    job.unlink(missing_ok=True)
    return _read_result(Path(result_file))


def _read_result(path: Path):
    import json

    if path.suffix == ".jsonl":
        return [json.loads(line) for line in path.open() if line.strip()]
    return json.loads(path.read_text())


def main(argv: list[str] | None = None) -> None:
    import importlib

    job = pickle.loads(Path((argv or sys.argv[1:])[0]).read_bytes())
    getattr(importlib.import_module(job.get("module", "specact.train")), job["fn"])(**job["kwargs"])
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()  # process 0 may still be saving / evaluating: nobody tears the group down early
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
