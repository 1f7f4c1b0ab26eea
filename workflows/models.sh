#!/usr/bin/env bash
# The training runs of the shipped models and of the nuclei candidates (MODEL_CARD.md, issue 19):
# one command per run, which starts it or, when its checkpoint exists, continues it exactly.
#
#   workflows/models.sh list                  the runs and what they train
#   workflows/models.sh splits                make the data splits (folders of links under RUNS/data)
#   workflows/models.sh RUN [OPTION...]       start RUN, or resume it (`biounet train --resume`); extra
#                                             options go to `biounet train` (e.g. --iterations 8000)
#   workflows/models.sh park RUN              split RUN's checkpoint into parts under 45 MB, to commit them
#                                             when a run must outlive the session (the next RUN joins them)
#   workflows/models.sh clean RUN             remove RUN's checkpoint and its parts (the run is done)
#   workflows/models.sh select RUN [MODEL...] checkpoint and post-processing chosen together by two-fold
#                                             cross-fitting (its snapshots by default): nuclei runs on VAL40,
#                                             generalists on VAL40 + DSB-FLUO-VAL, H&E runs on MONU-SEL8 by AJI
#   workflows/models.sh evaluate RUN          membranes: ISBI 2012 scores of RUN.pt on slices 16-19
#   workflows/models.sh ship membranes        membranes.pt into biounet/weights/, its segmentation threshold the
#                                             Rand-optimal one on slices 16-19 (the selection slices)
#   workflows/models.sh ship nuclei RUN       RUN.selected.pt as biounet/weights/nuclei.pt, with its scores on
#                                             GUARD10 (never used to choose anything) in its provenance
#   workflows/models.sh ship he-nuclei RUN    RUN.selected.pt as biounet/weights/he-nuclei.pt with MoNuSeg's terms
#   workflows/models.sh ship nuclei-general RUN   a generalist run's RUN.selected.pt as biounet/weights/
#                                             nuclei-general.pt (`ship nuclei RUN` makes it the default instead),
#                                             with BBBC039 + DSB2018's terms and its GUARD10 scores
#
# Settings (environment): DATA (the shared data, default ../shared/data beside the repository), RUNS
# (where runs write, default runs/ in the repository: a checkpoint parked there can be committed),
# BIOUNET (the command, default biounet), NICE (default 10), WORKERS (data processes, default 1),
# ITERATIONS, VAL_EVERY, SNAPSHOT_EVERY (override a run's own; tiny values smoke-test a run), TTA (test-time
# augmentation of select and evaluate: none, flips or d4; default none), SHIP_TO (where ship writes, default
# biounet/weights), PYTHON (the interpreter of ship, default python).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DATA=${DATA:-$ROOT/../shared/data}
RUNS=${RUNS:-$ROOT/runs}
BIOUNET=${BIOUNET:-biounet}
read -r -a BIOUNET_CMD <<< "$BIOUNET"  # e.g. BIOUNET="python -m biounet"
NICE=${NICE:-10}
WORKERS=${WORKERS:-1}
TTA=${TTA:-none}
SHIP_TO=${SHIP_TO:-$ROOT/biounet/weights}
PART_SIZE=45m

die() { echo "models.sh: $*" >&2; exit 2; }

# Folders of symlinks that select the splits: ISBI 2012 slices 0-15 (training) and 16-19 (selection and
# report; 20-29 are held back by the data's owners); of bbbc039/val sorted by name, VAL10 (the first 10: the
# validation curves of the nuclei runs), VAL40 (the first 40: checkpoints, post-processing and the default
# model are chosen there, by cross-fitting) and GUARD10 (the last 10: the held-out figure of the shipped model
# and its guard test, never used to choose). Idempotent, and no link is ever removed: runs started side by
# side share these folders while they read them.
link() {  # link TARGET FOLDER: FOLDER/basename -> TARGET, made once
    [ -L "$2/$(basename "$1")" ] || ln -s "$1" "$2/$(basename "$1")"
}
# MoNuSeg (H&E, 30 training tiles, 4 large organ groups of 6 and 3 of 2): MONU-SEL8 (2 tiles of each large
# group, named so that cross-fitting's alternate halves hold one of each group: checkpoint and post-processing
# are chosen there, and the reported figure is cross-fitted) and MONU-TRAIN22 (the rest: training).
# DSB2018's colour brightfield tiles (dsb2018/manifest.csv, class bright) form DSB-BRIGHT-TRAIN / -VAL.
MONU_SEL8="TCGA-21-5786-01Z-00-DX1 TCGA-49-4488-01Z-00-DX1 TCGA-A7-A13F-01Z-00-DX1 TCGA-AR-A1AS-01Z-00-DX1 \
TCGA-B0-5710-01Z-00-DX1 TCGA-CH-5767-01Z-00-DX1 TCGA-G9-6356-01Z-00-DX1 TCGA-HE-7129-01Z-00-DX1"
he_splits() {
    local monu=$DATA/monuseg/train dsb=$DATA/dsb2018 sub name split cls
    [ -d "$monu/images" ] && [ -f "$dsb/manifest.csv" ] || die "no MoNuSeg / DSB2018 data under DATA=$DATA"
    monu=$(cd "$monu" && pwd); dsb=$(cd "$dsb" && pwd)
    for sub in images labels; do
        mkdir -p "$RUNS"/data/{MONU-SEL8,MONU-TRAIN22,DSB-BRIGHT-TRAIN,DSB-BRIGHT-VAL,HE-TRAIN-DSB}/"$sub"
        mkdir -p "$RUNS"/data/{DSB-FLUO-TRAIN,DSB-FLUO-VAL,GENERAL-TRAIN,GENERAL-VAL20,GENERAL-SEL}/"$sub"
        for name in $(cd "$monu/images" && ls); do
            case " $MONU_SEL8 " in *" ${name%.tif} "*) link "$monu/$sub/$name" "$RUNS/data/MONU-SEL8/$sub" ;;
            *) link "$monu/$sub/$name" "$RUNS/data/MONU-TRAIN22/$sub"; link "$monu/$sub/$name" "$RUNS/data/HE-TRAIN-DSB/$sub" ;;
            esac
        done
        while IFS=, read -r name cls bg _ _ _ split; do
            case $cls/$bg/$split in
            bright/*/train) link "$dsb/train/$sub/$name.tif" "$RUNS/data/DSB-BRIGHT-TRAIN/$sub"
                            link "$dsb/train/$sub/$name.tif" "$RUNS/data/HE-TRAIN-DSB/$sub" ;;
            bright/*/val) link "$dsb/val/$sub/$name.tif" "$RUNS/data/DSB-BRIGHT-VAL/$sub" ;;
            fluo/dark/train) link "$dsb/train/$sub/$name.tif" "$RUNS/data/DSB-FLUO-TRAIN/$sub"
                             link "$dsb/train/$sub/$name.tif" "$RUNS/data/GENERAL-TRAIN/$sub" ;;
            fluo/dark/val) link "$dsb/val/$sub/$name.tif" "$RUNS/data/DSB-FLUO-VAL/$sub"
                           link "$dsb/val/$sub/$name.tif" "$RUNS/data/GENERAL-SEL/$sub" ;;
            esac
        done < <(tail -n +2 "$dsb/manifest.csv")
        for name in $(cd "$DATA/bbbc039/train/$sub" && ls); do
            link "$(cd "$DATA/bbbc039/train/$sub" && pwd)/$name" "$RUNS/data/GENERAL-TRAIN/$sub"
        done
        # the generalists choose on VAL40 and DSB-FLUO-VAL together (GUARD10 still chooses nothing)
        for name in $(cd "$RUNS/data/VAL40/$sub" && ls); do link "$(readlink -f "$RUNS/data/VAL40/$sub/$name")" "$RUNS/data/GENERAL-SEL/$sub"; done
        # the curves of the generalist runs: BBBC039's VAL10 and the first 10 of DSB-FLUO-VAL by name
        for name in $(cd "$RUNS/data/VAL10/$sub" && ls) ; do link "$(readlink -f "$RUNS/data/VAL10/$sub/$name")" "$RUNS/data/GENERAL-VAL20/$sub"; done
        for name in $(cd "$dsb/val/$sub" && ls | sort); do
            [ -L "$RUNS/data/DSB-FLUO-VAL/$sub/$name" ] || continue
            [ "$(ls "$RUNS/data/GENERAL-VAL20/$sub" | wc -l)" -lt 20 ] || break
            link "$dsb/val/$sub/$name" "$RUNS/data/GENERAL-VAL20/$sub"
        done
    done
}

splits() {
    local isbi=$DATA/isbi2012/train nuclei=$DATA/bbbc039/val
    [ -d "$isbi/images" ] && [ -d "$nuclei/images" ] || die "no data under DATA=$DATA (see its README.md)"
    isbi=$(cd "$isbi" && pwd); nuclei=$(cd "$nuclei" && pwd)
    local sub name i n
    for sub in images labels; do
        mkdir -p "$RUNS"/data/{isbi-train,isbi-val,VAL10,VAL40,GUARD10}/"$sub"
        for i in $(seq -w 0 19); do
            [ "$((10#$i))" -le 15 ] && name=isbi-train || name=isbi-val
            link "$isbi/$sub/slice$i.tif" "$RUNS/data/$name/$sub"
        done
        n=0
        for name in $(cd "$nuclei/images" && ls | sort); do
            n=$((n + 1))
            [ $n -le 10 ] && link "$nuclei/$sub/$name" "$RUNS/data/VAL10/$sub"
            if [ $n -le 40 ]; then link "$nuclei/$sub/$name" "$RUNS/data/VAL40/$sub"
            else link "$nuclei/$sub/$name" "$RUNS/data/GUARD10/$sub"; fi
        done
    done
}

# The runs: "description|iterations|val_every|snapshot_every|biounet train options".
# Nuclei candidates share one budget (iterations, batch 2, tile 380) and the settings of the shipped model's
# runs 4 and 5 (MODEL_CARD.md), so that width and target are compared one at a time.
NUCLEI="--images $DATA/bbbc039/train/images --labels $DATA/bbbc039/train/labels \
--val-images RUNS/data/VAL10/images --val-labels RUNS/data/VAL10/labels \
--normalize-over folder --intensity-scale 0.75 1.3 --schedule cosine --batch-size 2 --tile 380"
MEMBRANES="--images RUNS/data/isbi-train/images --labels RUNS/data/isbi-train/labels \
--val-images RUNS/data/isbi-val/images --val-labels RUNS/data/isbi-val/labels \
--target binary --w0 10 --sigma 5 --depth 5 --padding valid --tile 572 --batch-size 1 \
--optimizer adam --lr 1e-3 --schedule cosine --metric rand_error --seed 12"
HE="--val-images RUNS/data/MONU-SEL8/images --val-labels RUNS/data/MONU-SEL8/labels --value-range 0 255 \
--color-augment he --pixel-size 0.25 --schedule cosine --batch-size 2 --tile 380 --target 3class --lr 1e-3"
GENERAL="--images RUNS/data/GENERAL-TRAIN/images --labels RUNS/data/GENERAL-TRAIN/labels \
--val-images RUNS/data/GENERAL-VAL20/images --val-labels RUNS/data/GENERAL-VAL20/labels --zoom 0.5 2.0 \
--intensity-scale 0.75 1.3 --schedule cosine --batch-size 2 --tile 380 --target 3class --width 16"
run_spec() {
    case $1 in
    nuclei-general-ft) echo "generalist fluorescence nuclei: the shipped nuclei model fine-tuned on BBBC039 train and \
DSB2018's dark-background fluorescence (351), scale augmentation 0.5-2x|6000|500|1000|$GENERAL --init nuclei --lr 3e-4 --seed 27" ;;
    nuclei-general-aw) echo "generalist fluorescence nuclei: nuclei-general-ft with its 3class targets computed after the \
warp, so boundaries stay 1 px at any zoom|6000|500|1000|$GENERAL --init nuclei --lr 3e-4 --seed 27 --targets-after-warp" ;;
    nuclei-general-w16) echo "generalist fluorescence nuclei: as nuclei-general-ft, from scratch|6000|500|1000|$GENERAL \
--lr 1e-3 --seed 27" ;;
    he-w16) echo "H&E nuclei: MoNuSeg 22 training tiles, 3class, width 16, from scratch, H&E colour augmentation|\
8000|500|1000|--images RUNS/data/MONU-TRAIN22/images --labels RUNS/data/MONU-TRAIN22/labels $HE --width 16 --seed 27" ;;
    he-w16-dsb) echo "H&E nuclei: he-w16 plus DSB2018's 70 colour brightfield training tiles|\
8000|500|1000|--images RUNS/data/HE-TRAIN-DSB/images --labels RUNS/data/HE-TRAIN-DSB/labels $HE --width 16 --seed 27" ;;
    he-w32) echo "H&E nuclei: he-w16 at width 32|8000|500|1000|--images RUNS/data/MONU-TRAIN22/images \
--labels RUNS/data/MONU-TRAIN22/labels $HE --width 32 --seed 27" ;;
    membranes) echo "ISBI 2012 membranes, the paper's recipe: binary, w0 10, sigma 5, elastic deformation, valid \
convolutions, depth 5; width 16 (CPU), tile 572, batch 1; selected on slices 16-19 by Rand error|5000|250|0|$MEMBRANES \
--width 16" ;;
    membranes-w32) echo "the membranes run at width 32 (2.7x the time per iteration; checkpoint 93 MB: park it)|\
5000|250|0|$MEMBRANES --width 32" ;;
    nuclei-3class-w32) echo "nuclei candidate: 3class, width 32, from scratch|6000|500|1000|$NUCLEI \
--target 3class --width 32 --lr 1e-3 --seed 19" ;;
    nuclei-3class-w16) echo "nuclei candidate: 3class, width 16, from scratch (the reference at this budget)|\
6000|500|1000|$NUCLEI --target 3class --width 16 --lr 1e-3 --seed 19" ;;
    nuclei-binary-w16) echo "nuclei candidate: binary (the paper's target), width 16, from scratch|6000|500|1000|\
$NUCLEI --target binary --width 16 --lr 1e-3 --seed 19" ;;
    nuclei-distance-w16) echo "nuclei candidate: distance to the border (regression), width 16, from scratch|\
6000|500|1000|$NUCLEI --target distance --width 16 --lr 1e-3 --seed 19" ;;
    nuclei-longer) echo "nuclei candidate: the shipped model trained longer (run 5 continued, cosine from 3e-4)|\
4000|500|1000|$NUCLEI --target 3class --width 16 --init nuclei --lr 3e-4 --seed 20" ;;
    nuclei-longer2) echo "nuclei candidate: nuclei-longer (the shipped nuclei.pt) trained longer again, cosine from 3e-4|\
4000|500|1000|$NUCLEI --target 3class --width 16 --init nuclei --lr 3e-4 --seed 21" ;;
    *) return 1 ;;
    esac
}
RUN_NAMES="membranes membranes-w32 nuclei-3class-w32 nuclei-3class-w16 nuclei-binary-w16 nuclei-distance-w16 nuclei-longer nuclei-longer2 nuclei-general-ft nuclei-general-aw nuclei-general-w16 he-w16 he-w16-dsb he-w32"

field() { run_spec "$1" | cut -d'|' -f"$2"; }
checkpoint() { echo "$RUNS/$1.pt.ckpt"; }

train() {
    local run=$1; shift
    run_spec "$run" > /dev/null || die "unknown run '$run'; runs: $RUN_NAMES"
    splits
    he_splits
    local ckpt iterations val_every snapshot_every
    ckpt=$(checkpoint "$run")
    iterations=${ITERATIONS:-$(field "$run" 2)}
    val_every=${VAL_EVERY:-$(field "$run" 3)}
    snapshot_every=${SNAPSHOT_EVERY:-$(field "$run" 4)}
    if [ ! -f "$ckpt" ] && compgen -G "$ckpt.part-*" > /dev/null; then
        cat "$ckpt".part-* > "$ckpt.joining" && mv "$ckpt.joining" "$ckpt"   # unpark (parts sort in order)
        echo "models.sh: joined $(ls "$ckpt".part-* | wc -l) parts into $ckpt" >&2
    fi
    local cmd
    if [ -f "$ckpt" ]; then
        cmd=("${BIOUNET_CMD[@]}" train --resume "$ckpt" --iterations "$iterations" --workers "$WORKERS" "$@")
    else
        # shellcheck disable=SC2046 # the options are words
        cmd=("${BIOUNET_CMD[@]}" train --out "$RUNS/$run.pt" --iterations "$iterations" --val-every "$val_every"
             --snapshot-every "$snapshot_every" --workers "$WORKERS"
             $(field "$run" 5 | sed "s|RUNS/|$RUNS/|g") "$@")
    fi
    echo "+ ${cmd[*]}" >&2
    local started=$SECONDS
    nice -n "$NICE" "${cmd[@]}"
    echo "models.sh: $run: $((SECONDS - started)) s wall this session" >&2
}

park() {
    local ckpt
    ckpt=$(checkpoint "$1")
    [ -f "$ckpt" ] || die "no checkpoint $ckpt to park"
    rm -f "$ckpt".part-*
    split -b "$PART_SIZE" -d -a 2 "$ckpt" "$ckpt.part-"
    rm "$ckpt"
    ls -l "$ckpt".part-*
}

clean() {
    local ckpt
    ckpt=$(checkpoint "$1")
    rm -f "$ckpt" "$ckpt".part-* "$ckpt.joining"
}

select_nuclei() {
    local run=$1; shift
    local models=("$@")
    if [ ${#models[@]} -eq 0 ]; then
        mapfile -t models < <(ls "$RUNS/$run".it*.pt 2>/dev/null)
        [ ${#models[@]} -gt 0 ] || die "no snapshots $RUNS/$run.it*.pt; pass the models to choose from"
    fi
    local args=() m folder=VAL40 by=average_f1
    for m in "${models[@]}"; do args+=(--model "$m"); done
    splits
    he_splits
    case $run in  # where each family chooses: H&E on MoNuSeg by AJI (its field's score), generalists on both vals
    he-*) folder=MONU-SEL8; by=aji ;;
    nuclei-general-*) folder=GENERAL-SEL ;;
    esac
    nice -n "$NICE" "${BIOUNET_CMD[@]}" tune "${args[@]}" --images "$RUNS/data/$folder/images" \
        --labels "$RUNS/data/$folder/labels" --cross-fit --select-by "$by" --tta "$TTA" --progress \
        --out "$RUNS/$run.selected.pt" --overwrite
}

evaluate_membranes() {
    splits
    nice -n "$NICE" "${BIOUNET_CMD[@]}" evaluate --model "$RUNS/$1.pt" --images "$RUNS/data/isbi-val/images" \
        --labels "$RUNS/data/isbi-val/labels" --tta "$TTA" --csv "$RUNS/$1.isbi-val.$TTA.csv"
}

ship() {  # ship membranes | ship nuclei RUN | ship he-nuclei RUN
    splits
    he_splits
    local python=${PYTHON:-python}
    if [ "$1" = he-nuclei ]; then
        [ -f "$RUNS/$2.selected.pt" ] || die "no $RUNS/$2.selected.pt: run 'models.sh select $2' first"
        nice -n "$NICE" "$python" "$ROOT/workflows/ship.py" he-nuclei "$RUNS/$2.selected.pt" "$RUNS/data/MONU-SEL8" \
            "$SHIP_TO/he-nuclei.pt"
    elif [ "$1" = membranes ]; then
        nice -n "$NICE" "$python" "$ROOT/workflows/ship.py" membranes "$RUNS/membranes.pt" "$RUNS/data/isbi-val" \
            "$SHIP_TO/membranes.pt"
    else  # nuclei or nuclei-general: a generalist run carries the generalist's data and terms either way
        [ -f "$RUNS/$2.selected.pt" ] || die "no $RUNS/$2.selected.pt: run 'models.sh select $2' first"
        local facts=nuclei
        case $2 in nuclei-general-*) facts=nuclei-general ;; esac
        nice -n "$NICE" "$python" "$ROOT/workflows/ship.py" "$facts" "$RUNS/$2.selected.pt" "$RUNS/data/GUARD10" \
            "$SHIP_TO/$1.pt"
    fi
}

case ${1:-} in
splits) splits; he_splits; ls "$RUNS/data" ;;
list) for r in $RUN_NAMES; do printf '%-20s %s (%s iterations)\n' "$r" "$(field "$r" 1)" "$(field "$r" 2)"; done ;;
park) [ $# -eq 2 ] || die "usage: models.sh park RUN"; park "$2" ;;
clean) [ $# -eq 2 ] || die "usage: models.sh clean RUN"; clean "$2" ;;
select) [ $# -ge 2 ] || die "usage: models.sh select RUN [MODEL...]"; shift; select_nuclei "$@" ;;
evaluate) [ $# -eq 2 ] || die "usage: models.sh evaluate RUN"; evaluate_membranes "$2" ;;
ship) { [ "${2:-}" = membranes ] && [ $# -eq 2 ]; } || { [[ "${2:-}" =~ ^(nuclei|nuclei-general|he-nuclei)$ ]] && [ $# -eq 3 ]; } ||
          die "usage: models.sh ship membranes | ship nuclei RUN | ship nuclei-general RUN | ship he-nuclei RUN"
      shift; ship "$@" ;;
""|-h|--help) awk 'NR > 1 && !/^#/ {exit} NR > 1' "$0" | sed 's/^# \{0,1\}//' ;;
*) train "$@" ;;
esac
