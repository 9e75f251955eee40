#!/usr/bin/env bash
# Download, into .whl/, every wheel the GPU machine's Python lacks for a `gpu` run of the study.
#
# The target image (see scripts/gpu/README.md) is CPython 3.12, x86-64 Linux, with torch,
# transformers, accelerate, peft, numpy, pandas, pyarrow, fsspec, xxhash, mpmath, jinja2,
# pyyaml, requests, tqdm, aiohttp, psutil ... already installed and no network. This script
# runs on any machine that reaches PyPI and fetches the rest: the requirements of trl,
# datasets, papermill/nbclient/nbconvert/ipykernel and gguf, walked through each wheel's
# Requires-Dist (markers evaluated for CPython 3.12 on Linux) and cut wherever the image
# already satisfies the requirement. One version of each package: two stop the whole install.
#
# Usage: scripts/gpu/fetch_wheels.sh [--clean] [DEST]   (DEST defaults to .whl, git-ignored)
#   --clean  first delete wheels in DEST that are not in the list below (another version of a
#            package, or one the image already has, would stop or change the install)
# On the GPU machine:
#   python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl
#   export PYTHONPATH=/tmp/site:$PWD
set -euo pipefail
cd "$(dirname "$0")/../.."
CLEAN=0
[[ "${1:-}" == --clean ]] && { CLEAN=1; shift; }
DEST=${1:-.whl}
PY=${PY:-python3}
mkdir -p "$DEST"

# Exact pins: the versions the CPU venv runs the test suite with. Checked on the image
# (2026-11-26, Python 3.12.3, torch 2.11.0, transformers 5.17.0, peft 0.21.0, huggingface_hub
# 1.33.0, pyarrow 25.0.1, fsspec 2026.7.0): all import, and `pip check` reports only bfcl-eval's
# SDKs, which are left out on purpose.
PKGS=(
  # the study's own requirements the image lacks
  trl==1.16.0 datasets==5.2.0 gguf==0.19.0
  papermill==2.7.0 nbclient==0.11.0 nbformat==5.11.1 nbconvert==7.17.2
  ipykernel==7.4.0 jupyter_client==8.10.0 jupyter_core==5.9.1 traitlets==5.16.1
  # datasets (the image's fsspec 2026.7.0, xxhash 4.0.1 and pyarrow 25.0.1 satisfy it; if an image
  # brings fsspec > 2026.9.0, add fsspec==2026.9.0 here: datasets 5.2.0 pins fsspec<=2026.9.0)
  dill==0.4.1 multiprocess==0.70.19
  # papermill
  entrypoints==0.4.2 tenacity==9.2.1
  # nbformat
  fastjsonschema==2.22.3 jsonschema==4.26.0 jsonschema-specifications==2025.9.1
  referencing==0.37.0 rpds-py==2026.9.1
  # nbconvert (HTML rendering of every executed notebook)
  beautifulsoup4==4.15.0 soupsieve==4.1.3 bleach==6.4.0 tinycss2==1.5.1 webencodings==0.6.1
  defusedxml==0.7.1 jupyterlab-pygments==0.3.0 mistune==3.4.0 pandocfilters==1.5.1
  # ipykernel / jupyter_client (the kernel papermill talks to)
  pyzmq==27.3.0 tornado==6.6.1 comm==0.2.3 debugpy==1.8.22 matplotlib-inline==0.2.2
  nest-asyncio2==1.7.4 platformdirs==4.14.8
  ipython==9.18.1 ipython-pygments-lexers==1.1.1 jedi==0.20.1 parso==0.8.7
  prompt-toolkit==3.0.53 wcwidth==0.9.4 pexpect==4.9.0 ptyprocess==0.7.0
  stack-data==0.6.3 asttokens==3.0.2 executing==2.3.0 pure-eval==0.2.4
)
# bfcl-eval: only its data files and multi-turn tool environments are used; its declared
# dependencies (vLLM clients, SDKs, faiss, ...) are not needed and would pin numpy 1.26.
NODEPS_EXTRA=(bfcl-eval==2026.3.23)

if (( CLEAN )); then
  keep=$(printf '%s\n' "${PKGS[@]}" "${NODEPS_EXTRA[@]}" | sed 's/==/-/; s/[-_.]\+/_/g' | tr A-Z a-z)
  for w in "$DEST"/*.whl; do
    [[ -e "$w" ]] || continue
    base=$(basename "$w" | cut -d- -f1-2 | sed 's/[-_.]\+/_/g' | tr A-Z a-z)
    grep -qx "$base" <<<"$keep" || { echo "removing $(basename "$w") (not in the list)"; rm -f "$w"; }
  done
fi
PLATFORMS=(--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64
           --platform manylinux2014_x86_64 --platform manylinux1_x86_64)
$PY -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  "${PLATFORMS[@]}" -d "$DEST" "${PKGS[@]}" "${NODEPS_EXTRA[@]}"

# Exactly one wheel per distribution, none left over from another version.
$PY - "$DEST" "${PKGS[@]}" "${NODEPS_EXTRA[@]}" <<'PYEOF'
import re, sys
from pathlib import Path
dest, specs = Path(sys.argv[1]), sys.argv[2:]
norm = lambda s: re.sub(r"[-_.]+", "-", s).lower()
want = {norm(s.split("==")[0]): s.split("==")[1] for s in specs}
seen = {}
for w in sorted(dest.glob("*.whl")):
    name, ver = w.name.split("-")[:2]
    seen.setdefault(norm(name), []).append((ver, w))
bad = False
for n, vs in seen.items():
    if n not in want:
        print(f"stray wheel (not in the list): {[str(w) for _, w in vs]}"); bad = True
    elif len(vs) > 1 or vs[0][0] != want[n]:
        print(f"{n}: want {want[n]}, found {[v for v, _ in vs]}"); bad = True
missing = sorted(set(want) - set(seen))
if missing:
    print("missing:", missing); bad = True
size = sum(w.stat().st_size for vs in seen.values() for _, w in vs)
print(f"{sum(len(v) for v in seen.values())} wheels, {size / 2**20:.1f} MiB in {dest}/")
sys.exit(1 if bad else 0)
PYEOF
