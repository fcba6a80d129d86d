#!/usr/bin/env bash
# A prompt list -> images, every image's JSON collected into OUT_DIR/manifest.jsonl; re-running resumes.
#
#   examples/batch.sh PROMPTS OUT_DIR [sdcli generate options...]
#   examples/batch.sh prompts.txt shots -m stabilityai/stable-diffusion-xl-base-1.0 --steps 25
#
# PROMPTS is what `sdcli generate --prompts-file` reads: a prompt per line, # comments, or JSON Lines with
# per-line options ({"prompt": "a cat", "seed": 7, "count": 2}). The model is `-m MODEL` or SDCLI_MODEL.
# SEED (default 1) and COUNT (images per prompt, default 1) stand in for --seed and -c: the resume needs
# them. Needs jq. The manifest is an append-only log of sdcli's `--json` lines (one per image, then a
# summary) from every run; a path listed twice was made again, and its last entry is the one that counts.
#
# How a re-run resumes, and why it is safe:
# - Seeds are fixed up front, numbered as sdcli numbers them (the k-th prompt gets SEED + k*COUNT), and
#   written into a JSON Lines work file: an image's seed never depends on which prompts are left to do.
# - Images are named OUT_DIR/{line}-{seed}.png (the prompt's line in PROMPTS, the seed). Finished prompts
#   become comments in the work file, so line numbers, and with them the names, stay those of PROMPTS.
# - A prompt is finished when the manifest lists all its images (same line, prompt and seed) and they exist.
# - The rest is made with --overwrite. An explicitly named output that exists makes sdcli exit 6, and one
#   can exist here: a run killed after writing an image but before its JSON line reached the manifest.
#   Making it again is harmless: the same seed gives the same image, and it is replaced atomically.
set -euo pipefail

if [[ $# -lt 2 ]]; then
    echo "usage: $0 PROMPTS OUT_DIR [sdcli generate options...]" >&2
    exit 2
fi
prompts=$1
mkdir -p "$2"
out=$(cd "$2" && pwd) # absolute, so manifest paths do not depend on where the script is run from
shift 2
seed=${SEED:-1}
count=${COUNT:-1}
manifest=$out/manifest.jsonl
touch "$manifest"
have=$(mktemp "${TMPDIR:-/tmp}/sdcli-batch.XXXXXX")
work=$(mktemp "${TMPDIR:-/tmp}/sdcli-batch.XXXXXX")
trap 'rm -f "$have" "$work"' EXIT

# [line, prompt, seed] of every image the manifest lists whose file still exists.
jq -r 'select(.type == "image") | .path, ([.line, .prompt, .seed] | tojson)' "$manifest" |
    while IFS= read -r path && IFS= read -r key; do
        if [[ -f $path ]]; then printf '%s\n' "$key"; fi
    done >"$have"

# The work file: one line for each line of PROMPTS ("#" for blanks, comments and finished prompts), each
# prompt as JSON with its seed. A line that is not valid JSON passes unchanged: sdcli names it.
jq -nRr --argjson seed "$seed" --argjson count "$count" --slurpfile have "$have" '
    (reduce $have[] as $key ({}; .[$key | tojson] = true)) as $done
    | foreach inputs as $raw ({n: 0, k: -1};
        .n += 1
        | .text = ($raw | sub("^\\s+"; "") | sub("\\s+$"; ""))
        | if .text == "" or (.text | startswith("#")) then .job = "#"
          else .k += 1
            | .job = (if (.text | startswith("{")) then (.text | fromjson? // .) else {prompt: .text} end)
            | if (.job | type) == "object" then .job.seed //= ($seed + .k * $count) else . end
          end;
        . as $s
        | if ($s.job | type) != "object" then $s.job
          elif ($s.job.seed | type) == "number" and (($s.job.count // $count) | type) == "number"
            and ([range($s.job.seed; $s.job.seed + ($s.job.count // $count)) as $x
                  | $done[[$s.n, $s.job.prompt, $x] | tojson]] | all)
          then "#"
          else $s.job | tojson
          end)' "$prompts" >"$work"

if ! grep -qv '^#' "$work"; then
    echo "every prompt in $prompts is done: $manifest" >&2
    exit 0
fi
sdcli generate --prompts-file "$work" -c "$count" -o "$out/{line}-{seed}.png" --overwrite --json "$@" \
    >>"$manifest"
