#!/usr/bin/env bash
# Make an image again from the parameters stored in its PNG, with an option or two changed.
#
#   examples/reproduce.sh IMAGE [sdcli generate options...]
#   examples/reproduce.sh outputs/cat.png --steps 50          # same prompt, seed, size, sampler: more steps
#   examples/reproduce.sh outputs/cat.png --seed 8 -o cat-8.png
#
# `sdcli generate --from IMAGE` takes the prompt, negative prompt, model, seed, steps, guidance, size and
# sampler stored in IMAGE (sdcli's own metadata, or AUTOMATIC1111/ComfyUI/InvokeAI parameters); options given
# here win. With nothing changed the pixels come out identical (same device family). A model loaded from a
# local folder is stored by its folder's name only: pass `-m FOLDER` again (the stored name wins over
# SDCLI_MODEL, which is only a default).
# The new image goes to OUT_DIR (default: remakes/) unless -o is given; its path is printed.
set -euo pipefail

if [[ $# -lt 1 ]]; then
    echo "usage: $0 IMAGE [sdcli generate options...]" >&2
    exit 2
fi
image=$1
shift

sdcli generate --from "$image" -o "${OUT_DIR:-remakes}/" "$@"
