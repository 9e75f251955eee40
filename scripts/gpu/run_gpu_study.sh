#!/usr/bin/env bash
# The whole GPU run of the study on a machine with no network: wheels -> kernel -> weights ->
# `python -m specact run params/gpu.yaml` -> benchmarks -> results under $OUT, then a summary.
#
#   scripts/gpu/run_gpu_study.sh prepare   install wheels, register the kernel, stash weight parts
#   scripts/gpu/run_gpu_study.sh weights   the same, then join + convert the weights, and stop
#   scripts/gpu/run_gpu_study.sh [run]     the same, then join + convert the weights, run, package
#   scripts/gpu/run_gpu_study.sh sweep     the same as weights, then a learning-rate sweep (SWEEP_ARGS)
#   scripts/gpu/run_gpu_study.sh bench     the same as weights, then the throughput benchmarks only
#                                          (MFU, label scoring, and the 2-GPU scale-out where there are 2 GPUs)
#
# Every step is idempotent: calling `run` again on the same machine resumes (installed wheels
# and converted weights are kept, and the study runner skips every finished stage).
# Exit status: that of the study (0 ok, 1 a stage failed, 124 stopped at the deadline), 2 a
# setup step failed, or 3 if wheels or a weight part are missing (they went to a machine that
# is gone: send them again, starting with `prepare`).
#
# Settings (environment, all optional):
#   PY=python3                  the interpreter that has torch + transformers
#   WHEELS=.whl                 wheels to install (scripts/gpu/fetch_wheels.sh); WHEELS=none: PY has them all
#   SITE=/tmp/specact-site      where the wheels go (pip --target; emptied first when the set changes)
#   WORK=/tmp/specact-gpu       Jupyter kernelspec + runtime files
#   PARAMS=params/gpu.yaml      the profile;   RUN_ARGS=   extra `specact run` arguments
#   MODEL_DIR=.weights/smollm2-135m-instruct   the converted model the profile names
#   OUT=$WORK/out               results (at most 8 files, each <= 16 MB, no subfolders)
#   DEADLINE_S=0                wall seconds this script may take in all (0: no limit); the study
#                               is stopped RESERVE_S before it so that results are still packaged
#   RESERVE_S=40  BENCH=1  BENCH_MIN_S=90   benchmarks run only if BENCH_MIN_S are left
#   `bench` mode: BENCHES="scaleout profile scoring mfu" (which, in order), MFU_VARIANTS / MFU_STEPS /
#   MFU_ARGS (scripts/gpu/bench_mfu.py), SCORE_BATCHES / SCORE_ARGS (benchmarks/bench_scoring.py),
#   SCALEOUT_STEPS
set -uo pipefail
MODE=${1:-run}
REPO=$(cd "$(dirname "$0")/../.." && pwd)
cd "$REPO"
PY=${PY:-python3}
WHEELS=${WHEELS:-.whl}
SITE=${SITE:-/tmp/specact-site}
WORK=${WORK:-/tmp/specact-gpu}
PARAMS=${PARAMS:-params/gpu.yaml}
RUN_ARGS=${RUN_ARGS:-}
MODEL_DIR=${MODEL_DIR:-.weights/smollm2-135m-instruct}
OUT=${OUT:-$WORK/out}
DEADLINE_S=${DEADLINE_S:-0}
RESERVE_S=${RESERVE_S:-40}
BENCH=${BENCH:-1}
BENCH_MIN_S=${BENCH_MIN_S:-90}
T0=$SECONDS
mkdir -p "$OUT" "$WORK"
SUMMARY="$OUT/summary.txt"
: >"$SUMMARY"
say() { echo "[gpu $((SECONDS - T0))s] $*" | tee -a "$SUMMARY"; }
left() { (( DEADLINE_S > 0 )) && echo $((DEADLINE_S - (SECONDS - T0))) || echo 999999; }

# ---- 1. wheels -> $SITE (pip --target: nothing of the interpreter's own environment changes)
shopt -s nullglob
wheels=("$WHEELS"/*.whl)
if (( ${#wheels[@]} )); then
  stamp=$(printf '%s\n' "${wheels[@]##*/}" | sort | sha256sum | cut -c1-16)
  if [[ "$(cat "$SITE/.specact-wheels" 2>/dev/null)" != "$stamp" ]]; then
    rm -rf "$SITE"  # a package left from another wheel set would shadow the interpreter's own
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" "${wheels[@]}" \
      || { say "pip install of $WHEELS failed"; exit 2; }
    echo "$stamp" >"$SITE/.specact-wheels"
    say "installed ${#wheels[@]} wheels into $SITE"
  else
    say "wheels already installed in $SITE"
  fi
elif [[ "$WHEELS" != none && ! -f "$SITE/.specact-wheels" ]]; then
  say "no wheels in $WHEELS and none installed in $SITE: a fresh machine? send the wheels again (call 1);" \
      "WHEELS=none uses the interpreter's own packages"
  exit 3
fi
export PYTHONPATH="$SITE:$REPO${PYTHONPATH:+:$PYTHONPATH}"
# nbconvert finds its HTML templates under share/jupyter, which pip --target puts in $SITE.
export JUPYTER_PATH="$SITE/share/jupyter${JUPYTER_PATH:+:$JUPYTER_PATH}"
export MPLBACKEND=Agg HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 \
       TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1 PYDEVD_DISABLE_FILE_VALIDATION=1
export JUPYTER_PATH="$WORK/jupyter/share/jupyter${JUPYTER_PATH:+:$JUPYTER_PATH}"
# Padding-free batches change shape every step: the caching allocator's fixed blocks fragment (one strong
# full-FT training held 84 GiB on 2026-12-01, and a third beside two others ran out of memory); growable
# segments keep what each process holds near what it uses, so several trainings share one GPU.
export PYTORCH_CUDA_ALLOC_CONF=${PYTORCH_CUDA_ALLOC_CONF:-expandable_segments:True}
export JUPYTER_RUNTIME_DIR="$WORK/runtime" JUPYTER_DATA_DIR="$WORK/data" IPYTHONDIR="$WORK/ipython"

"$PY" - <<'PYEOF' || { say "imports failed: see above (missing wheels? run scripts/gpu/fetch_wheels.sh)"; exit 2; }
import importlib, importlib.util
mods = ["torch", "transformers", "peft", "accelerate", "trl", "datasets", "papermill", "nbclient", "nbconvert",
        "ipykernel", "jupyter_client", "gguf", "specact", "specact.pipeline"]
vers = {m: getattr(importlib.import_module(m), "__version__", "") for m in mods}
assert importlib.util.find_spec("bfcl_eval") is not None, "bfcl_eval is not installed"
print("imports ok:", " ".join(f"{m}={v}" for m, v in vers.items() if v))
PYEOF

# ---- 2. the `specact` kernel for this interpreter, with the same PYTHONPATH (kernelspec env)
"$PY" -m ipykernel install --prefix "$WORK/jupyter" --name specact --display-name "Python (specact)" >/dev/null \
  || { say "kernel registration failed"; exit 2; }
"$PY" - "$WORK/jupyter/share/jupyter/kernels/specact/kernel.json" <<'PYEOF'
import json, os, sys
p = sys.argv[1]; spec = json.load(open(p))
keep = ["PYTHONPATH", "MPLBACKEND", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE",
        "TOKENIZERS_PARALLELISM", "PYTHONUNBUFFERED", "PYDEVD_DISABLE_FILE_VALIDATION",
        "NCCL_NVLS_ENABLE", "TORCH_SYMM_MEM_DISABLE_MULTICAST", "NVSHMEM_DISABLE_NVLS"]
spec["env"] = {k: os.environ[k] for k in keep if k in os.environ}
json.dump(spec, open(p, "w"), indent=1)
print("kernel specact:", spec["argv"][0], "env:", sorted(spec["env"]))
PYEOF

# ---- 3. weights: stash what arrived; join + convert once both parts are here
if [[ "$MODE" == prepare ]]; then
  scripts/gpu/join_weights.sh stash | tee -a "$SUMMARY"
  say "prepare done"; exit 0
fi
scripts/gpu/join_weights.sh 2>&1 | tee -a "$SUMMARY"
rc=${PIPESTATUS[0]}
(( rc == 0 )) || { say "weights not ready (exit $rc)"; exit "$rc"; }
GGUF=$(ls .weights/*.gguf | head -1)
if [[ ! -f "$MODEL_DIR/converted_from.json" ]]; then
  "$PY" scripts/gpu/gguf_to_hf.py "$GGUF" "$MODEL_DIR" >"$OUT/convert.json" 2>"$WORK/convert.err" \
    || { cat "$WORK/convert.err"; say "GGUF conversion failed"; exit 2; }
  say "converted $GGUF -> $MODEL_DIR: $(tr -d '\n ' <"$OUT/convert.json" | head -c 400)"
fi
[[ "$MODE" == weights ]] && { say "weights ready in $MODEL_DIR"; exit 0; }
# ---- 3a. `sweep`: learning rates of the SFT roles on dev, side by side on this GPU (SWEEP_ARGS, e.g.
#   "--rates proposer=2e-4,5e-4,1e-3 strong=2e-5,5e-5,1e-4 --max-steps 300"); table + best.json under $OUT
if [[ "$MODE" == sweep ]]; then
  # shellcheck disable=SC2086
  timeout -k 10 $(( $(left) - RESERVE_S )) "$PY" -m scripts.gpu.sweep_lr --params "$PARAMS" ${SWEEP_ARGS:-} \
    --out "$WORK/sweep" >"$OUT/sweep.log" 2>&1
  rc=$?
  cp "$WORK/sweep/sweep_lr.csv" "$WORK/sweep/best.json" "$OUT/" 2>/dev/null
  tail -n 12 "$OUT/sweep.log" | tee -a "$SUMMARY"
  say "sweep exit $rc"; exit "$rc"
fi

# ---- 3b. `bench`: the throughput benchmarks alone, no study (logs under $OUT); BENCHES picks them
#   MFU per batching setting on GPU 0, label-scoring rate vs floor and naive baseline on GPU 0,
#   and, on a machine with >= 2 GPUs, the strong role trained on 1 and on 2 GPUs (accelerate launch).
if [[ "$MODE" == bench ]]; then
  ngpu=$(nvidia-smi -L 2>/dev/null | wc -l)
  bench() {  # name, then the command; each gets what is left before the deadline
    local name=$1; shift
    local b=$(( $(left) - RESERVE_S ))
    (( b > 30 )) || { say "$name skipped: no time left"; return; }
    timeout -k 5 "$b" "$@" >"$OUT/$name.log" 2>"$WORK/$name.err"
    local rc=$?
    (( rc == 0 )) || tail -n 30 "$WORK/$name.err" >>"$OUT/$name.log"
    say "$name exit $rc: $(grep -E '^\{|x the|best' "$OUT/$name.log" | tail -n 12 | cut -c1-400 | tr '\n' '|')"
  }
  for name in ${BENCHES:-scaleout profile scoring mfu}; do
    case $name in
      scaleout) (( ngpu >= 2 )) && bench scaleout "$PY" scripts/gpu/scaleout.py --params "$PARAMS" --role strong \
                  --steps "${SCALEOUT_STEPS:-30}" --processes 1 2 ;;
      profile)  CUDA_VISIBLE_DEVICES=0 bench profile_attention "$PY" scripts/gpu/profile_attention.py --model "$MODEL_DIR" ;;
      scoring)  CUDA_VISIBLE_DEVICES=0 bench bench_scoring "$PY" benchmarks/bench_scoring.py --device cuda \
                  --model-spec "{\"name\": \"$MODEL_DIR\"}" --max-prompt-tokens 3072 --n 512 --n-generate 16 \
                  --batch-size ${SCORE_BATCHES:-32 64 128} ${SCORE_ARGS:-} ;;
      # shellcheck disable=SC2086
      mfu)      CUDA_VISIBLE_DEVICES=0 bench bench_mfu "$PY" scripts/gpu/bench_mfu.py --model "$MODEL_DIR" \
                  --steps "${MFU_STEPS:-20}" --examples 640 ${MFU_ARGS:-} \
                  --variants ${MFU_VARIANTS:-lora:grouped:16 lora:flat:16 full:flat:16 full:flat:32:compile} ;;
    esac
  done
  say "bench done"; exit 0
fi

# ---- 4. the study (stopped RESERVE_S before the deadline; a later call resumes it)
# shellcheck disable=SC2086
read -r RUN_ID PROMPT_TOKENS < <("$PY" - "$PARAMS" $RUN_ARGS <<'PYEOF'
import sys
from specact.__main__ import _overrides
from specact.config import load_params
args, sets = sys.argv[2:], []
for i, a in enumerate(args):  # the --set KEY=VALUE pairs of RUN_ARGS, as `specact run` reads them
    if a == "--set":
        sets += [x for x in args[i + 1:] if "=" in x and not x.startswith("--")]
cfg = load_params(sys.argv[1], _overrides(sets))
print(cfg.run_id, cfg.prompt.max_prompt_tokens)
PYEOF
)
[[ -n "$RUN_ID" ]] || { say "cannot read $PARAMS $RUN_ARGS"; exit 2; }
# `specact run --seeds S...` writes runs/<run_id>-s<S>: package and summarise each of them
read -r -a SEEDS < <(echo " $RUN_ARGS " | sed -n 's/.* --seeds \([0-9 ]*\).*/\1/p')
RUN_IDS=("$RUN_ID"); (( ${#SEEDS[@]} )) && RUN_IDS=("${SEEDS[@]/#/$RUN_ID-s}")
budget=$(( $(left) - RESERVE_S ))
say "study $PARAMS (run_id $RUN_ID), $budget s allowed"
# shellcheck disable=SC2086
# GPU memory in use every 10 s while the study runs: what decides how many trainings share the GPU
nvidia-smi --query-gpu=timestamp,memory.used --format=csv,noheader -l 10 >>"$OUT/gpu_memory.csv" 2>/dev/null &
smi=$!
timeout -k 10 "$budget" "$PY" -m specact run "$PARAMS" $RUN_ARGS 2>&1 | tee -a "$OUT/study.log"
study_rc=${PIPESTATUS[0]}
kill "$smi" 2>/dev/null
say "study exit $study_rc"

# ---- 5. benchmarks, time permitting (logs under $OUT)
if [[ "$BENCH" == 1 && $study_rc == 0 ]] && (( $(left) - RESERVE_S >= BENCH_MIN_S )); then
  b=$(( $(left) - RESERVE_S ))
  timeout -k 5 "$b" "$PY" benchmarks/bench_scoring.py --device cuda --model-spec "{\"name\": \"$MODEL_DIR\"}" \
    --max-prompt-tokens "$PROMPT_TOKENS" \
    --n 128 --n-generate 16 --batch-size 32 >"$OUT/bench.log" 2>&1
  say "benchmarks/bench_scoring.py exit $? ($(tail -n 8 "$OUT/bench.log" | tr '\n' '|' | head -c 600))"
fi

# ---- 6. package: readable files + one tarball of the report folder and the run's small files
for f in report.md results.json; do  # the first run's, readable without unpacking
  [[ -f "reports/${RUN_IDS[0]}/$f" ]] && cp "reports/${RUN_IDS[0]}/$f" "$OUT/$f"
done
"$PY" - "$OUT/results.tgz" "${RUN_IDS[@]}" <<'PYEOF'
import os, sys, tarfile
from pathlib import Path
dest, run_ids = Path(sys.argv[1]), sys.argv[2:]
LIMIT = 15 * 2**20
small = (".json", ".jsonl", ".csv", ".yaml", ".md", ".txt")
def files(skip_html):
    for root in [Path(top) / run_id for run_id in run_ids for top in ("reports", "runs")]:
        for p in sorted(root.rglob("*")) if root.is_dir() else []:
            if not p.is_file() or "checkpoints" in p.parts or p.stat().st_size > 8 * 2**20:
                continue
            if root.parts[0] == "runs" and (p.suffix not in small or {"decisions", "verifier_pairs", "jsonl"} & set(p.parts)):
                continue  # weights, adapters and the datasets stay behind; metrics/predictions/logs travel
            if skip_html and p.suffix == ".html" and p.name != "report.html":
                continue
            yield p
for skip_html in (False, True):
    with tarfile.open(dest, "w:gz") as tar:
        for p in files(skip_html):
            tar.add(p)
    if dest.stat().st_size <= LIMIT:
        break
print(f"results.tgz: {dest.stat().st_size / 2**20:.1f} MiB{' (stage .html left out: too big)' if skip_html else ''}")
PYEOF

# ---- 7. summary
{
  echo "== $(nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null | head -1)"
  # stage records keep each stage's own wall time across resumed calls (timings.json is per call)
  for rid in "${RUN_IDS[@]}"; do
  echo "-- $rid"
  "$PY" - "runs/$rid/stages" <<'PYEOF'
import json, sys
from pathlib import Path
from datetime import datetime
total, spans = 0.0, []
for p in sorted(Path(sys.argv[1]).glob("*.json"), key=lambda p: p.stat().st_mtime):
    r = json.loads(p.read_text()); total += r.get("seconds", 0.0)
    print(f"  {p.stem:<16}{r.get('status', '?'):<8}{r.get('seconds', 0.0):8.1f}s")
    if "finished" in r:  # stages run side by side (--stage-jobs): the span, not the sum, is the wait
        end = datetime.strptime(r["finished"], "%Y-%m-%dT%H:%M:%S%z").timestamp()
        spans.append((end - r["seconds"], end))
print(f"  stages in all   {total:8.1f}s")
if spans:
    print(f"  first start to last finish {max(e for _, e in spans) - min(s for s, _ in spans):8.1f}s (across calls: includes the gaps)")
PYEOF
  done
  [[ -f "reports/${RUN_IDS[0]}/report.md" ]] && head -n 30 "reports/${RUN_IDS[0]}/report.md"
  echo "== $OUT: $(ls "$OUT" | tr '\n' ' ')"
} 2>&1 | tee -a "$SUMMARY"
say "done (study exit $study_rc)"
exit "$study_rc"
