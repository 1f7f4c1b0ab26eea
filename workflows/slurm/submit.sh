#!/usr/bin/env bash
# Submit a slide as a SLURM job array of PARTS parts plus a finalize job (or an
# array of FINALIZE_PARTS finalize tasks) that runs once every part has
# succeeded (--dependency=afterok).
#
#   SLIDE=slide.ome.tif OUT=slide.ome.zarr MODEL=nuclei.pt PARTS=8 \
#     BIOUNET_ARGS="--block 1024" bash workflows/slurm/submit.sh [sbatch options...]
#
# Environment:
#   SLIDE, OUT, MODEL, BIOUNET_ARGS, BIOUNET   see segment-array.sbatch
#   PARTS         number of array tasks (default 4): prediction and label pass 1
#   FINALIZE_PARTS number of finalize tasks (default 1): pass 2, pyramids, table; the
#                 last one to finish completes the output (needs no GPU)
#   ARRAY_LIMIT   run at most this many tasks at once (sbatch --array=0-N%LIMIT)
#   GRES          the parts' GPU request instead of the script's gpu:1 (e.g. gpu:a100:1,
#                 or "none" on nodes without GPUs)
#   LOGDIR        folder for the jobs' logs (default: the current folder)
# Options after the script name go to both sbatch calls (e.g. --partition=gpu
# --account=lab --mem=8G). Prints the two job ids ("ARRAY_ID FINALIZE_ID").
# Resubmitting the same command after a failure or a walltime kill resumes:
# finished blocks are kept.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
: "${SLIDE:?set SLIDE to the input slide}"
: "${OUT:?set OUT to the output OME-Zarr}"
PARTS=${PARTS:-4}
FINALIZE_PARTS=${FINALIZE_PARTS:-1}
for n in "$PARTS" "$FINALIZE_PARTS"; do
    [[ $n =~ ^[1-9][0-9]*$ ]] || { echo "submit: PARTS and FINALIZE_PARTS must be positive integers, not '$n'" >&2; exit 2; }
done
export SLIDE OUT MODEL="${MODEL:-}" BIOUNET_ARGS="${BIOUNET_ARGS:-}" BIOUNET="${BIOUNET:-biounet}"

array=(--array="0-$((PARTS - 1))${ARRAY_LIMIT:+%$ARRAY_LIMIT}")
[[ -n ${GRES:-} ]] && array+=(--gres="$GRES")
fin=()
(( FINALIZE_PARTS > 1 )) && fin+=(--array="0-$((FINALIZE_PARTS - 1))")
if [[ -n ${LOGDIR:-} ]]; then
    mkdir -p "$LOGDIR"
    array+=(--output="$LOGDIR/%x-%A_%a.out")
    if (( FINALIZE_PARTS > 1 )); then fin+=(--output="$LOGDIR/%x-%A_%a.out"); else fin+=(--output="$LOGDIR/%x-%j.out"); fi
fi

array_id=$(sbatch --parsable --export=ALL "${array[@]}" "$@" "$here/segment-array.sbatch")
array_id=${array_id%%;*}
fin_id=$(sbatch --parsable --export=ALL --dependency="afterok:$array_id" --kill-on-invalid-dep=yes \
         "${fin[@]}" "$@" "$here/finalize.sbatch")
fin_id=${fin_id%%;*}
echo "submit: $PARTS parts as array job $array_id, finalize job $fin_id ($FINALIZE_PARTS task(s), after all parts succeed)" >&2
echo "$array_id $fin_id"
