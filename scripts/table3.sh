#!/usr/bin/env bash
# Table 3 (GAN compression, horse→zebra): the teacher, Fast GAN Compression step 1 in both arms (baseline:
# gan-compression's losses; + ours: with L_semantic), the evolution search of each super-net under the MACs
# budget, the export of the searched sub-net, test.py, FID against the real statistics, MACs and #params, and
# the table with the paper's values beside (docs/compression.md).
#
#   REAL_STATS=real_stat/horse2zebra_B.npz TEACHER_FILE=pretrained/horse2zebra/full/latest_net_G.pth \
#       FID_WEIGHTS=pt_inception-2015-12-05-6726825d.pth bash scripts/table3.sh
#   CONFIG=16_16_32_16_16_64_16_24 bash scripts/table3.sh    # both arms exported at one configuration
#   SMOKE=1 bash scripts/table3.sh                            # the same pipeline, tiny, on CPU (about a minute)
#
# SMOKE: 32 px, ngf-8 networks (configurations channels-8), SMOKE_ITERS steps per training, a random Inception
# (64-d features) for the FIDs, and the search scored by the synthetic task's stripe IoU on generated scenes.
#
# Settings (environment), beside scripts/common.sh's:
#   TEACHER_FILE=   an official gan-compression / Hneg_SRC teacher (*_net_G.pth), imported with
#                   scripts/import_teacher.py; unset: a CycleGAN ResNet-9 teacher is trained here first
#                   (TEACHER_EPOCHS=100 TEACHER_EPOCHS_DECAY=100, CycleGAN's schedule)
#   REAL_STATS=     FID statistics of the real zebras (.npz with mu, sigma; the official horse2zebra_B.npz uses
#                   all zebra images, train + test); unset: computed here from trainB + testB
#   SEARCH_IMAGES=120  the held-out search split (gan-compression's train2 meta lists hold 120 per domain;
#                   here a seeded split, made once as symlinks under SPLIT_DIR=RESULTS_DIR/table3/split:
#                   train1/ for step 1, train2/ for the search)
#   BUDGET=3e9      the MACs budget of the search (at 256 px); POPULATION=100 GENERATIONS=500 (upstream's)
#   CONFIG=         export both arms at this configuration instead of each one's searched configuration
# Output: RESULTS_DIR/<NAME_PREFIX>table3.{md,csv}, and per run its search/, test and metric JSONs.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
read -ra RECIPE_COMPRESSION_H2Z <<<"$(bash "$REPO/scripts/recipe.sh" compression_horse2zebra)"
read -ra RECIPE_COMPRESSION_BASELINE <<<"$(bash "$REPO/scripts/recipe.sh" compression_baseline)"
prepare

if [[ "$SMOKE" == 1 ]]; then
    SEARCH_IMAGES=${SEARCH_IMAGES:-2}
    NGF=8
    CROP=32
    # the recipes on 32 px crops with ngf-8 networks (configurations channels-8), SMOKE_ITERS steps each
    TINY=(--ngf "$NGF" --ndf 8 --load_size "$CROP" --crop_size "$CROP" --n_epochs 1 --n_epochs_decay 0
          --max_iters "$SMOKE_ITERS" --num_threads 0 --no_tqdm --print_freq 1 --seed 0)
    STEP1_ARGS=("${TINY[@]}" --teacher_ngf "$NGF" --config_set channels-8 --num_patches 16)
    TEACHER_ARGS=("${TINY[@]}")
    SEARCH_ARGS=(--population_size 4 --generations 1 --device cpu --no_tqdm)
    BUDGET=${BUDGET:-$("$PYTHON" -c 'from evaluation.macs import mobile_macs; print(mobile_macs("4_4_8_4_4_8_4_4", 32))')}
    # a random Inception's 64-d features (the numbers mean nothing, the pipeline runs); the search scores the
    # synthetic task (stripe IoU on generated scenes with their masks) instead of a 2048-d FID per candidate
    FID_DIMS=64
    FID_ARGS=(--no-kid --device cpu --num-workers 0 --fid-weights "$FID_WEIGHTS" --dims "$FID_DIMS")
else
    SEARCH_IMAGES=${SEARCH_IMAGES:-120}
    NGF=64
    CROP=256
    STEP1_ARGS=("${TRAIN_ARGS[@]}")
    # CycleGAN's schedule for the teacher (100 + 100 epochs)
    TEACHER_ARGS=(--n_epochs "${TEACHER_EPOCHS:-100}" --n_epochs_decay "${TEACHER_EPOCHS_DECAY:-100}")
    SEARCH_ARGS=(--population_size "${POPULATION:-100}" --generations "${GENERATIONS:-500}")
    BUDGET=${BUDGET:-3e9}
    FID_DIMS=2048
    FID_ARGS=(--no-kid)
    if [[ -n "$FID_WEIGHTS" ]]; then FID_ARGS+=(--fid-weights "$FID_WEIGHTS"); fi
    check_eval_weights horse2zebra
fi
require_dir "$H2Z_DIR" "see datasets/download_cut_dataset.sh"
TABLE_DIR="$RESULTS_DIR/${NAME_PREFIX}table3"
SPLIT_DIR=${SPLIT_DIR:-$TABLE_DIR/split}
mkdir -p "$TABLE_DIR"

# make_search_split: SPLIT_DIR/train1 (step 1) and SPLIT_DIR/train2 (the search), each with trainA/trainB
# symlinks: a seeded split of the dataset's trainA/trainB (SEARCH_IMAGES per domain held out)
make_search_split() {
    [[ -d "$SPLIT_DIR/train2/trainA" && -d "$SPLIT_DIR/train1/trainB" ]] && return 0
    log "split $H2Z_DIR/train{A,B} into $SPLIT_DIR: $SEARCH_IMAGES per domain for the search (train2), the rest train1"
    "$PYTHON" - "$H2Z_DIR" "$SPLIT_DIR" "$SEARCH_IMAGES" <<'PY'
import os, random, sys
from evaluation.common import image_files
root, split, held = sys.argv[1], sys.argv[2], int(sys.argv[3])
for side in 'AB':
    files = sorted(image_files(os.path.join(root, f'train{side}')))
    if len(files) <= held:
        sys.exit(f'error: train{side} holds {len(files)} images, not more than SEARCH_IMAGES={held}')
    random.Random(0).shuffle(files)
    for part, chosen in (('train2', files[:held]), ('train1', files[held:])):
        folder = os.path.join(split, part, f'train{side}')
        os.makedirs(folder)
        for path in chosen:
            os.symlink(os.path.abspath(path), os.path.join(folder, os.path.basename(path)))
PY
}

# real_stats: the FID statistics of all real zebras (train + test), unless REAL_STATS names a file
real_stats() {
    if [[ -n "${REAL_STATS:-}" ]]; then
        [[ -f "$REAL_STATS" ]] || { echo "error: REAL_STATS=$REAL_STATS not found" >&2; exit 2; }
        echo "$REAL_STATS"
        return 0
    fi
    local out="$TABLE_DIR/horse2zebra_B.npz"
    if [[ ! -f "$out" ]]; then
        log "real statistics of $H2Z_DIR/trainB + testB -> $out"
        "$PYTHON" - "$H2Z_DIR" "$out" "$FID_DIMS" "${FID_WEIGHTS:-}" <<'PY' >&2
import os, sys, tempfile
from evaluation.common import default_device, image_files
from evaluation.fid import InceptionFeatures, build_inception, load_fid_weights, save_real_stats
root, out, dims, weights = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4] or None
state, path = load_fid_weights(weights)
device = default_device()
features = InceptionFeatures(build_inception(state, dims=dims, device=device, source=str(path)), dims=dims,
                             device=device)
with tempfile.TemporaryDirectory() as tmp:
    for side in ('trainB', 'testB'):
        for f in image_files(os.path.join(root, side)):
            os.symlink(os.path.abspath(f), os.path.join(tmp, f'{side}_{os.path.basename(f)}'))
    save_real_stats(out, features(tmp)[0])
PY
    fi
    echo "$out"
}

# MACs and #params at CROP px (scripts/count_macs.py): count_json OUT [count_macs.py flags...]
count_json() {
    local out=$1
    shift
    "$PYTHON" scripts/count_macs.py --crop_size "$CROP" --json "$out" "$@" >&2
}

# fid_json RUN OUT: FID of RUN's test.py translations against the real statistics
fid_json() {
    "$PYTHON" -m evaluation.fid "$RESULTS_DIR/$1/test_latest" "$STATS" "${FID_ARGS[@]}" --run "$1" \
        --dataset horse2zebra --json "$2" >&2
}

# row_json MODEL RUN MACS_JSON FID_JSON OUT: one Table 3 row (evaluation.tables.table3_row)
row_json() {
    "$PYTHON" - "$@" <<'PY'
import json, sys
from evaluation.tables import table3_row
model, run, macs, fid, out = sys.argv[1:]
with open(out, 'w') as f:
    json.dump(table3_row('horse2zebra', model, macs_json=macs, fid_json=fid, run=run), f, indent=1)
PY
}

# search_data: where and by what each super-net is searched
search_data() {
    if [[ "$SMOKE" == 1 ]]; then
        local scenes="$SMOKE_DIR/data/h2z_search"
        if [[ ! -d "$scenes/testA_mask" ]]; then
            "$PYTHON" -c 'import sys; from datasets.make_synthetic_dataset import make_synthetic_dataset as m
m(sys.argv[1], n_train=1, n_test=2, size=32, seed=1, overwrite=True)' "$scenes" >&2
        fi
        SEARCH_DATA=(--dataroot "$scenes" --phase test --criterion synthetic --metric stripe_iou)
    else
        SEARCH_DATA=(--dataroot "$SPLIT_DIR/train2" --phase train --criterion fid --real_stats "$STATS")
        if [[ -n "$FID_WEIGHTS" ]]; then SEARCH_DATA+=(--fid_weights "$FID_WEIGHTS"); fi
    fi
}

make_search_split
STATS=$(real_stats)
search_data
num_test=$(find -L "$H2Z_DIR/testA" -maxdepth 1 -type f | wc -l)
rows=()

# 1. the teacher: imported, or a CycleGAN ResNet-9 in gan-compression's layout trained here
teacher="${NAME_PREFIX}h2z_teacher"
if [[ -n "${TEACHER_FILE:-}" ]]; then
    if [[ ! -f "$CHECKPOINTS_DIR/$teacher/latest_net_G.pth" ]]; then
        log "import the teacher $TEACHER_FILE"
        "$PYTHON" scripts/import_teacher.py --source "$TEACHER_FILE" --checkpoints_dir "$CHECKPOINTS_DIR" \
            --name "$teacher" --ngf "$NGF" >&2
    fi
    teacher_weights="$CHECKPOINTS_DIR/$teacher/latest_net_G.pth"
    teacher_model=cut
else
    train_run "$teacher" "$H2Z_DIR" --model cycle_gan --netG resnet_9blocks --ngf "$NGF" --no_antialias \
        --no_antialias_up "${TEACHER_ARGS[@]}"
    teacher_weights="$CHECKPOINTS_DIR/$teacher/latest_net_G_A.pth"
    teacher_model=cycle_gan
fi
test_run "$teacher" "$H2Z_DIR" --model "$teacher_model" --num_test "$num_test" >&2
count_json "$TABLE_DIR/$teacher.macs.json" --netG resnet_9blocks --ngf "$NGF"
fid_json "$teacher" "$TABLE_DIR/$teacher.fid.json"
row_json teacher "$teacher" "$TABLE_DIR/$teacher.macs.json" "$TABLE_DIR/$teacher.fid.json" "$TABLE_DIR/$teacher.row.json"
rows+=("$TABLE_DIR/$teacher.row.json")

# 2.-5. each arm: step 1 on train1, search on train2A, export, test on testA, metrics
for arm in baseline ours; do
    name="${NAME_PREFIX}h2z_supernet_$arm"
    flags=("${RECIPE_COMPRESSION_H2Z[@]}")
    if [[ "$arm" == baseline ]]; then flags+=("${RECIPE_COMPRESSION_BASELINE[@]}"); fi
    train_run "$name" "$SPLIT_DIR/train1" "${flags[@]}" --teacher_path "$teacher_weights" "${STEP1_ARGS[@]}"
    config=${CONFIG:-}
    if [[ -z "$config" ]]; then
        log "search $name (budget $BUDGET MACs)"
        "$PYTHON" scripts/evolution_search.py --checkpoints_dir "$CHECKPOINTS_DIR" --name "$name" \
            "${SEARCH_DATA[@]}" --budget "$BUDGET" --mutate_prob 0.4 --weighted_sample 2 \
            --output_dir "$RESULTS_DIR/$name/search" "${SEARCH_ARGS[@]}" >&2
        config=$("$PYTHON" -c 'import json, sys; print(json.load(open(sys.argv[1]))["best"]["config"])' \
            "$RESULTS_DIR/$name/search/result.json")
    fi
    sub="${name}_${config}"
    log "export $name at $config -> $sub"
    "$PYTHON" scripts/export_subnet.py --checkpoint "$CHECKPOINTS_DIR/$name" --config_str "$config" \
        --output "$CHECKPOINTS_DIR/$sub/latest_net_G.pth" --force >&2
    test_run "$sub" "$H2Z_DIR" --model compression --num_test "$num_test" >&2
    count_json "$TABLE_DIR/$sub.macs.json" --config "$config"
    fid_json "$sub" "$TABLE_DIR/$sub.fid.json"
    model=baseline
    if [[ "$arm" == ours ]]; then model='+ ours'; fi
    row_json "$model" "$sub" "$TABLE_DIR/$sub.macs.json" "$TABLE_DIR/$sub.fid.json" "$TABLE_DIR/$sub.row.json"
    rows+=("$TABLE_DIR/$sub.row.json")
done

log "table3 -> $RESULTS_DIR/${NAME_PREFIX}table3.md, .csv"
"$PYTHON" scripts/make_table.py --layout table3 --out "$RESULTS_DIR/${NAME_PREFIX}table3" "${rows[@]}"
