#!/usr/bin/env bash
# Put the two parts of SmolLM2-135M-Instruct.Q4_1.gguf back together and check them.
#
# The parts travel to the GPU machine in separate calls (64 MiB per call; scripts/gpu/README.md),
# so every part that arrives is first checked against scripts/gpu/smollm2.sha256 and copied
# to a stash outside the repository copy, where it waits for the other one:
#
#   join_weights.sh stash   keep whatever parts are in .weights/ (exit 0 even if one is missing)
#   join_weights.sh         stash, then join once both parts are there and check the whole file;
#                           exit 3, naming the missing part, if one never arrived (a fresh machine)
#
# Variables: WEIGHTS_SRC (.weights) where parts arrive; WEIGHTS_STASH (/tmp/specact-weights);
# GGUF_OUT (.weights/SmolLM2-135M-Instruct.Q4_1.gguf) the joined file.
set -euo pipefail
cd "$(dirname "$0")/../.."
SUMS=scripts/gpu/smollm2.sha256
SRC=${WEIGHTS_SRC:-.weights}
STASH=${WEIGHTS_STASH:-/tmp/specact-weights}
NAME=$(awk '$2 !~ /\.part[0-9]+$/ {print $2}' "$SUMS")
OUT=${GGUF_OUT:-.weights/$NAME}
mkdir -p "$STASH" "$(dirname "$OUT")"
sum_of() { awk -v f="$1" '$2 == f {print $1}' "$SUMS"; }

if [[ -f "$OUT" ]] && [[ "$(sha256sum "$OUT" | cut -d' ' -f1)" == "$(sum_of "$NAME")" ]]; then
  echo "join_weights: $OUT already joined and checked"; exit 0
fi

parts=$(awk '$2 ~ /\.part[0-9]+$/ {print $2}' "$SUMS" | sort)
missing=()
for p in $parts; do
  if [[ -f "$SRC/$p" && ! -f "$STASH/$p" ]]; then
    if [[ "$(sha256sum "$SRC/$p" | cut -d' ' -f1)" != "$(sum_of "$p")" ]]; then
      echo "join_weights: $SRC/$p does not match $SUMS (a broken transfer?)" >&2; exit 4
    fi
    cp "$SRC/$p" "$STASH/$p.tmp" && mv "$STASH/$p.tmp" "$STASH/$p"
    echo "join_weights: stashed $p ($(du -h "$STASH/$p" | cut -f1))"
  fi
  [[ -f "$STASH/$p" ]] || missing+=("$p")
done
[[ "${1:-join}" == stash ]] && { echo "join_weights: stash holds $(ls "$STASH" | tr '\n' ' ')"; exit 0; }
if (( ${#missing[@]} )); then
  echo "join_weights: missing ${missing[*]} -- it came in an earlier call to a machine that has since been" \
       "given back; send the parts again, in back-to-back calls (scripts/gpu/README.md)" >&2
  exit 3
fi
# shellcheck disable=SC2086
( cd "$STASH" && cat $parts ) >"$OUT.tmp"
if [[ "$(sha256sum "$OUT.tmp" | cut -d' ' -f1)" != "$(sum_of "$NAME")" ]]; then
  echo "join_weights: joined file does not match $SUMS" >&2; rm -f "$OUT.tmp"; exit 4
fi
mv "$OUT.tmp" "$OUT"
echo "join_weights: $OUT ($(du -h "$OUT" | cut -f1)) joined, sha256 OK"
