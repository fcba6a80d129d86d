#!/usr/bin/env bash
# What a GPU runner's CI job runs: fail the job when the torch/diffusers/GPU stack is broken, then make one
# real image with a cached model.
#
#   examples/ci-smoke.sh OUT_DIR [MODEL [sdcli generate options...]]
#   examples/ci-smoke.sh smoke stable-diffusion-v1-5/stable-diffusion-v1-5 --offline --steps 20
#
# MODEL defaults to SDCLI_MODEL; without either, only the stack is checked. SDCLI_DEVICE and SDCLI_DTYPE
# (default cuda and fp16) say what to check; the test suite runs this with cpu and fp32. Leaves in OUT_DIR:
# info.json (versions, GPUs, cache, the check's stages) and, with a model, smoke.png and generate.jsonl.
# Exit codes are sdcli's: 5 the device is not there, 7 a check failed (NaN or black image, a failed stage),
# 3 the model is not cached, 4 out of memory.
set -euo pipefail

if [[ $# -lt 1 ]]; then
    echo "usage: $0 OUT_DIR [MODEL [sdcli generate options...]]" >&2
    exit 2
fi
out=$1
model=${2:-${SDCLI_MODEL:-}}
shift $(($# < 2 ? $# : 2))
device=${SDCLI_DEVICE:-cuda}
dtype=${SDCLI_DTYPE:-fp16}
mkdir -p "$out"

# 1. The environment report and the end-to-end check of a tiny random-weight pipeline (no download) in one
#    process: with --check, --json carries both. Show the report even when the check fails.
status=0
sdcli info --check --device "$device" --dtype "$dtype" --json >"$out/info.json" || status=$?
if command -v jq >/dev/null; then
    jq '{sdcli, torch, gpus: [(.devices.cuda // [])[] | "\(.name), \(.total_memory_bytes / 1e9 | floor) GB"],
         choice: (.choice // {} | {device, dtype, reason}),
         check: (.check // {} | {ok, failed_stage, error, total_seconds})}' \
        "$out/info.json" >&2 || true
fi
if [[ $status -ne 0 ]]; then
    echo "ci-smoke: sdcli info --check failed (exit $status)" >&2
    exit "$status"
fi

# 2. A real model, end to end: load, denoise, decode, write a PNG with its metadata. sdcli fails with 7
#    when the VAE decodes NaN even in fp32, or when the safety checker blanks the image.
if [[ -z $model ]]; then
    echo "ci-smoke: no MODEL or SDCLI_MODEL: the stack is checked, no model was run" >&2
    exit 0
fi
sdcli generate "a lighthouse on a cliff at sunset" -m "$model" --seed 1 --device "$device" --dtype "$dtype" \
    -o "$out/smoke.png" --overwrite --json "$@" >"$out/generate.jsonl"
echo "ci-smoke: wrote $out/smoke.png" >&2
