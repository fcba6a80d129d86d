#!/usr/bin/env bash
# GPU smoke test for whoever has a CUDA machine; pytest never runs it (no GPU in CI).
# Usage: tests/gpu/gpu_check.sh [python]   (default: python on PATH, with sdcli installed or on PYTHONPATH)
# DEVICE and DTYPE (default cuda, fp16) let the script itself be tried on a machine without a GPU.
# Runs `sdcli info --json`, `sdcli info --check --device cuda --dtype fp16`, and a tiny generate on the GPU,
# printing the wall time of each. Exits non-zero at the first failure.
set -euo pipefail

PY="${1:-python}"
DEVICE="${DEVICE:-cuda}"
DTYPE="${DTYPE:-fp16}"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/sdcli-gpu-check.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
export HF_HUB_OFFLINE=1 # nothing here needs the network

sdcli() { "$PY" -m sdcli "$@"; }

timed() {
    local label="$1"
    shift
    local began=$EPOCHREALTIME
    "$@"
    awk -v label="$label" -v began="$began" -v ended="$EPOCHREALTIME" \
        'BEGIN { printf "== %s: %.2f s\n", label, ended - began > "/dev/stderr" }'
}

echo "== python -c 'import torch' (baseline for info's speed)" >&2
timed "import torch" "$PY" -c "import torch"

echo "== sdcli info --json" >&2
timed "info --json" sdcli info --json >"$WORK/info.json"
"$PY" -c "
import json, sys
info = json.load(open(sys.argv[1]))
print('torch', info['torch'], file=sys.stderr)
for gpu in info['devices']['cuda']:
    print('gpu', gpu, file=sys.stderr)
print('choice', info['choice'], file=sys.stderr)
assert not sys.argv[2].startswith('cuda') or info['devices']['cuda'], 'torch sees no CUDA GPU'
" "$WORK/info.json" "$DEVICE"

echo "== sdcli info --check --device $DEVICE --dtype $DTYPE" >&2
timed "info --check ($DEVICE, $DTYPE)" sdcli info --check --device "$DEVICE" --dtype "$DTYPE"
timed "info --check --json ($DEVICE, $DTYPE)" \
    sdcli info --check --device "$DEVICE" --dtype "$DTYPE" --json >"$WORK/check.json"
"$PY" -c "
import json, sys
check = json.load(open(sys.argv[1]))['check']
for stage in check['stages']:
    print(f\"{stage['name']:>15}: {stage['seconds']:.3f} s\", file=sys.stderr)
assert check['ok'], check['error']
" "$WORK/check.json"

echo "== tiny generate on $DEVICE, $DTYPE" >&2
"$PY" -c "
import sys
from sdcli.diagnostics.tiny import build_tiny_pipeline
build_tiny_pipeline().save_pretrained(sys.argv[1])
" "$WORK/tiny-sd"
timed "generate (tiny, $DEVICE, $DTYPE, 4 steps)" \
    sdcli generate "a red apple" -m "$WORK/tiny-sd" --device "$DEVICE" --dtype "$DTYPE" --steps 4 --seed 1 \
    -o "$WORK/out.png" --json
test -s "$WORK/out.png"

# The memory and speed options, each on a larger (256x256) random model: time and peak GPU memory per run.
"$PY" -c "
import sys
from sdcli.diagnostics.tiny import TinySpec, build_tiny_pipeline
build_tiny_pipeline(TinySpec(width=32, sample_size=128)).save_pretrained(sys.argv[1])
" "$WORK/small-sd"
for options in "--dtype $DTYPE" "--dtype $DTYPE --offload model" "--dtype $DTYPE --low-vram" \
    "--dtype $DTYPE --compile -c 4" "--dtype $DTYPE --channels-last"; do
    # shellcheck disable=SC2086 # the options are meant to split into words
    timed "generate $options" sdcli generate "a red apple" -m "$WORK/small-sd" --device "$DEVICE" \
        $options --steps 8 --seed 1 -o "$WORK/opts/" --json >"$WORK/opts.jsonl"
    "$PY" -c "
import json, sys
lines = [json.loads(line) for line in open(sys.argv[1])]
images = [line for line in lines if line['type'] == 'image']
peak = max(i['parameters']['timings'].get('peak_gpu_bytes') or 0 for i in images)
print(f\"   {sys.argv[2]}: {len(images)} image(s), last {images[-1]['seconds']:.3f} s, peak GPU {peak / 2**20:.0f} MiB\",
      file=sys.stderr)
" "$WORK/opts.jsonl" "$options"
done
echo "== all GPU checks passed" >&2
