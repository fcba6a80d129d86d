#!/usr/bin/env bash
# One prompt file shared across GPUs: one process per GPU, each loads the model once and takes every n-th
# prompt (sdcli splits the lines itself, see sdcli/generation/distributed.py).
#
#   examples/multi-gpu.sh PROMPTS OUT_DIR [sdcli generate options...]
#   examples/multi-gpu.sh prompts.txt shots -m stabilityai/stable-diffusion-xl-base-1.0 --seed 7
#   PROCESSES=2 CPU=1 examples/multi-gpu.sh prompts.txt shots     # try it without a GPU
#
# PROCESSES (default: one per visible GPU, as accelerate counts them; narrow with CUDA_VISIBLE_DEVICES).
# CPU=1 runs the processes on the CPU; MAIN_PROCESS_PORT when the default, 29500, is taken.
# The model is `-m MODEL` or SDCLI_MODEL. Seeds, indices and names
# are those a single process would give, so the split never changes an image. Each process writes its
# images' JSON lines to stdout as they come; the main one adds the summary, counted over all of them.
# Everything goes to OUT_DIR/manifest.jsonl.
set -euo pipefail

if [[ $# -lt 2 ]]; then
    echo "usage: $0 PROMPTS OUT_DIR [sdcli generate options...]" >&2
    exit 2
fi
prompts=$1
mkdir -p "$2"
out=$(cd "$2" && pwd) # absolute, so manifest paths do not depend on where the script is run from
shift 2

# sdcli picks its own dtype and device (the process's GPU), so accelerate's mixed precision and dynamo stay
# off; naming them, and one machine, keeps `accelerate launch` from warning about unset defaults.
launch=(accelerate launch --num_machines 1 --mixed_precision no --dynamo_backend no)
if [[ -n ${PROCESSES:-} ]]; then launch+=(--num_processes "$PROCESSES"); fi
# accelerate's --cpu starts a single process; --multi_gpu is its way to start N torch.distributed processes,
# and sdcli itself picks the CPU (gloo) when told to or when there is no GPU.
if [[ ${CPU:-0} == 1 ]]; then
    launch+=(--multi_gpu)
    export SDCLI_DEVICE=cpu
fi
if [[ -n ${MAIN_PROCESS_PORT:-} ]]; then launch+=(--main_process_port "$MAIN_PROCESS_PORT"); fi

"${launch[@]}" -m sdcli generate --prompts-file "$prompts" -o "$out/" --json "$@" >>"$out/manifest.jsonl"
