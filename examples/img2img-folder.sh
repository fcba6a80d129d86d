#!/usr/bin/env bash
# Every image in a folder through img2img at one strength.
#
#   examples/img2img-folder.sh PROMPT IN_DIR OUT_DIR STRENGTH [sdcli img2img options...]
#   examples/img2img-folder.sh "a watercolor painting" photos/ painted/ 0.4 --seed 7 --steps 30
#
# The model is `-m MODEL` or SDCLI_MODEL. sdcli reads the folder itself (its .png, .jpg, .jpeg and .webp
# files, sorted, not recursive) and loads the model once for all of them. Outputs are named
# {date}-{time}-{input}-{seed}.png in OUT_DIR; an unreadable input is reported on stderr, the others are
# still made, and the exit code is then 2. Each input gets the same seed, so one made alone matches.
set -euo pipefail

if [[ $# -lt 4 ]]; then
    echo "usage: $0 PROMPT IN_DIR OUT_DIR STRENGTH [sdcli img2img options...]" >&2
    exit 2
fi
prompt=$1 in_dir=$2 out_dir=$3 strength=$4
shift 4

# diffusers runs int(steps * strength) steps: sdcli refuses, before loading anything, a pair that runs none.
# OUT_DIR ends in / so it is a folder: a taken name gets _1, _2 added and nothing is ever replaced.
sdcli img2img "$prompt" "$in_dir" --strength "$strength" -o "$out_dir/" "$@"
