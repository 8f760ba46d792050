#!/usr/bin/env bash
# Table 3 (GAN compression): for each dataset of DATASETS, the teacher, Fast GAN Compression step 1 in both arms
# (baseline: gan-compression's losses; + ours: with L_semantic), the evolution search of each super-net under the
# official MACs budget, for map->satellite the fine-tuning of the searched sub-net, its export, test.py, FID
# against the real statistics (and Cityscapes' DRN-D-105 mIoU), MACs and #params, and the table with the paper's
# values beside (docs/compression.md).
#
#   REAL_STATS=real_stat/horse2zebra_B.npz TEACHER_FILE=pretrained/horse2zebra/full/latest_net_G.pth \
#       FID_WEIGHTS=pt_inception-2015-12-05-6726825d.pth bash scripts/table3.sh
#   DATASETS="map2sat cityscapes" MAPS_DIR=database/maps CITY_ALIGNED_DIR=database/cityscapes \
#       CITYSCAPES_ORIGIN=database/cityscapes-origin DRN105_WEIGHTS=drn-d-105_ms_cityscapes.pth bash scripts/table3.sh
#   CONFIG=16_16_32_16_16_64_16_24 bash scripts/table3.sh    # both arms exported at one configuration
#   DRY_RUN=1 DATASETS=map2sat bash scripts/table3.sh         # print the commands, run nothing
#   GPU_IDS=0,1 bash scripts/table3.sh                        # every training on 2 GPUs (torchrun), batch 1 each
#   SMOKE=1 bash scripts/table3.sh                            # the same pipeline, tiny, on CPU (about two minutes)
#
# Datasets (DATASETS, default horse2zebra; SMOKE: horse2zebra map2sat cityscapes):
#   horse2zebra  H2Z_DIR (trainA/B, testA/B); teacher: CycleGAN ResNet-9; search: FID on 120 held-out horses
#                against all zebras, budget 3e9, mutate_prob 0.4, weighted_sample 2; test on testA
#   map2sat      MAPS_DIR (aligned [photo | map] files in train/, val/; --direction BtoA); teacher: pix2pix
#                (recipes/pix2pix_map2sat.txt); search: FID on 300 held-out maps against their photos, budget
#                4.6e9, mutate_prob 0.3; the searched configuration fine-tuned on the whole training set, as the
#                official finetune script (compression_map2sat_finetune.txt, G and D restored from step 1); test on
#                val against the val photos
#   cityscapes   CITY_ALIGNED_DIR (datasets/prepare_cityscapes_dataset.py --aligned --tables --trainIds: train/,
#                val/, train_table.txt, val_table.txt), CITYSCAPES_ORIGIN (gtFine/ with *_trainIds.png),
#                DRN105_WEIGHTS; teacher: pix2pix (recipes/pix2pix_cityscapes.txt); search: DRN-D-105 mIoU on 200
#                held-out images, budget 5.7e9, mutate_prob 0.3; test on val: FID against the val photos and mIoU
#
# SMOKE: 32 px, ngf-8 networks (configurations channels-8), SMOKE_ITERS steps per training, a random Inception
# (64-d features) for the FIDs, random DRN-D-105 weights, generated aligned pairs for map2sat and cityscapes (with
# trainIds labels and tables), and horse2zebra's search scored by the synthetic task's stripe IoU.
#
# Settings (environment), beside scripts/common.sh's:
#   TEACHER_FILE= / TEACHER_MAP2SAT= / TEACHER_CITY=   an official gan-compression / Hneg_SRC teacher
#                   (*_net_G.pth) of horse2zebra / map2sat / cityscapes, imported with scripts/import_teacher.py;
#                   unset: the teacher is trained here first (TEACHER_EPOCHS / TEACHER_EPOCHS_DECAY override the
#                   epochs of its recipe: CycleGAN's 100 + 100 for horse2zebra)
#   REAL_STATS= / REAL_STATS_MAP2SAT= / REAL_STATS_CITY=   FID statistics (.npz with mu, sigma) of the test
#                   photos (horse2zebra_B.npz: all zebras, train + test; maps_A.npz; cityscapes_A.npz); unset:
#                   computed here (horse2zebra: trainB + testB; the others: the photos of val/)
#   REAL_STATS_MAP2SAT_SEARCH=  maps_subtrain_A.npz (the search split's photos); unset: computed from them
#   SEARCH_IMAGES=  the held-out search split per dataset (default 120 / 300 / 200, the sizes of gan-compression's
#                   train2 meta lists; here a seeded split, made once as symlinks under SPLIT_DIR=RESULTS_DIR/table3/
#                   split/<dataset>: train1/ for step 1, train2/ for the search). A split made with other
#                   parameters is refused (remove it, or choose another SPLIT_DIR)
#   META_DIR=       gan-compression's datasets/metas: the official split lists instead of the seeded split
#                   (META_DIR/horse2zebra/train{1,2}{A,B}.meta, META_DIR/maps/train{1,2}.meta,
#                   META_DIR/cityscapes/train{1,2}.meta; file names of the training folder, one a line)
#   Schedules: each training runs its recipe's (step 1: 200 + 200 / 200 + 400 / 200 + 300 epochs; map->sat
#                   fine-tuning 200 + 200) unless set explicitly: EPOCHS / EPOCHS_DECAY (step 1),
#                   FINETUNE_EPOCHS / FINETUNE_EPOCHS_DECAY (fine-tuning), TEACHER_EPOCHS / TEACHER_EPOCHS_DECAY
#   SEED=0          --seed of every training: the baseline and "+ ours" arms start from the same weights and data
#                   order (the pairing docs/compression.md describes)
#   BUDGET=         the MACs budget of every search (at 256 px; default 3e9 / 4.6e9 / 5.7e9);
#                   POPULATION=100 GENERATIONS=500 (upstream's)
#   CONFIG=         export both arms at this configuration instead of each one's searched configuration
# Output: RESULTS_DIR/<NAME_PREFIX>table3.{md,csv}, and per run its search/, test and metric JSONs. Running it again
# skips every step that finished with the same command (RESULTS_DIR/table3/steps/*.done records them), until a
# step runs again; then every later step of that dataset runs too. One node only (NNODES=1).
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
read -ra RECIPE_COMPRESSION_BASELINE <<<"$(bash "$REPO/scripts/recipe.sh" compression_baseline)"
read -ra RECIPE_FINETUNE <<<"$(bash "$REPO/scripts/recipe.sh" compression_map2sat_finetune)"
if (( NNODES > 1 )); then
    echo "error: table3.sh runs on one node (NNODES=$NNODES): each search needs its step 1 here; use GPU_IDS / NPROC" >&2
    exit 2
fi

if [[ "$SMOKE" == 1 ]]; then
    DATASETS=${DATASETS:-horse2zebra map2sat cityscapes}
    MAPS_DIR="$SMOKE_DIR/data/maps"
    CITY_ALIGNED_DIR="$SMOKE_DIR/data/cityscapes_aligned"
    CITYSCAPES_ORIGIN="$SMOKE_DIR/data/cityscapes_origin"
    DRN105_WEIGHTS="$SMOKE_DIR/weights/random_drn_d_105.pth"
    NGF=8
    CROP=32
    # the recipes on 32 px crops with ngf-8 networks (configurations channels-8), SMOKE_ITERS steps each
    TINY=(--ngf "$NGF" --ndf 8 --load_size "$CROP" --crop_size "$CROP" --n_epochs 1 --n_epochs_decay 0
          --max_iters "$SMOKE_ITERS" --num_threads 0 --no_tqdm --print_freq 1 --seed "$SEED")
    STEP1_ARGS=("${TINY[@]}" --teacher_ngf "$NGF" --config_set channels-8 --num_patches 16)
    FINETUNE_ARGS=("${STEP1_ARGS[@]}")
    TEACHER_ARGS=("${TINY[@]}")
    SEARCH_ARGS=(--population_size 4 --generations 1 --device cpu --no_tqdm)
    SMOKE_BUDGET=$("$PYTHON" -c 'from evaluation.macs import mobile_macs; print(mobile_macs("4_4_8_4_4_8_4_4", 32))')
    # a random Inception's 64-d features (the numbers mean nothing, the pipeline runs); horse2zebra's search
    # scores the synthetic task (stripe IoU on generated scenes with their masks) instead of an FID per candidate
    FID_DIMS=64
    FID_ARGS=(--no-kid --device cpu --num-workers 0 --fid-weights "$FID_WEIGHTS" --dims "$FID_DIMS")
    MIOU_ARGS=(--device cpu)
else
    DATASETS=${DATASETS:-horse2zebra}
    MAPS_DIR=${MAPS_DIR:-$DATASETS_DIR/maps}
    CITY_ALIGNED_DIR=${CITY_ALIGNED_DIR:-$DATASETS_DIR/cityscapes_aligned}
    CITYSCAPES_ORIGIN=${CITYSCAPES_ORIGIN:-$DATASETS_DIR/cityscapes-origin}
    DRN105_WEIGHTS=${DRN105_WEIGHTS:-}
    NGF=64
    CROP=256
    # the recipes' schedules, each replaced only when set explicitly (EPOCHS... for step 1, FINETUNE_EPOCHS...)
    STEP1_ARGS=("${TRAIN_ARGS[@]}")
    FINETUNE_ARGS=(--seed "$SEED")
    if [[ -n "${FINETUNE_EPOCHS:-}" ]]; then FINETUNE_ARGS+=(--n_epochs "$FINETUNE_EPOCHS"); fi
    if [[ -n "${FINETUNE_EPOCHS_DECAY:-}" ]]; then FINETUNE_ARGS+=(--n_epochs_decay "$FINETUNE_EPOCHS_DECAY"); fi
    TEACHER_ARGS=(--seed "$SEED")
    SEARCH_ARGS=(--population_size "${POPULATION:-100}" --generations "${GENERATIONS:-500}")
    FID_DIMS=2048
    FID_ARGS=(--no-kid)
    if [[ -n "$FID_WEIGHTS" ]]; then FID_ARGS+=(--fid-weights "$FID_WEIGHTS"); fi
    MIOU_ARGS=()
fi
TABLE_DIR="$RESULTS_DIR/${NAME_PREFIX}table3"

# configure DATASET: the settings of one dataset (data, recipes, teacher, split, search, test phase)
configure() {
    DATASET=$1
    ALIGNED=0
    FINETUNE=0
    TEST_FLAGS=()
    SEARCH_EXTRA=()
    TEACHER_IMPORT=()
    case "$DATASET" in
        horse2zebra)
            DATA=$H2Z_DIR; SHORT=h2z; STEP1_RECIPE=compression_horse2zebra; HELD=120; DEFAULT_BUDGET=3e9
            TEACHER_RECIPE=(--model cycle_gan --netG resnet_9blocks --no_antialias --no_antialias_up
                            --n_epochs "${TEACHER_EPOCHS:-100}" --n_epochs_decay "${TEACHER_EPOCHS_DECAY:-100}")
            TEACHER_SOURCE=${TEACHER_FILE:-}
            SEARCH_EXTRA=(--mutate_prob 0.4 --weighted_sample 2)
            TEST_PHASE=test ;;
        map2sat|cityscapes)
            ALIGNED=1
            local recipe=pix2pix_map2sat
            if [[ "$DATASET" == map2sat ]]; then
                DATA=$MAPS_DIR; SHORT=map2sat; STEP1_RECIPE=compression_map2sat; HELD=300; DEFAULT_BUDGET=4.6e9
                FINETUNE=1; TEACHER_SOURCE=${TEACHER_MAP2SAT:-}
            else
                DATA=$CITY_ALIGNED_DIR; SHORT=city; STEP1_RECIPE=compression_cityscapes; HELD=200
                DEFAULT_BUDGET=5.7e9; recipe=pix2pix_cityscapes; TEACHER_SOURCE=${TEACHER_CITY:-}
                SEARCH_EXTRA=(--batch_size 4)
            fi
            read -ra TEACHER_RECIPE <<<"$(bash "$REPO/scripts/recipe.sh" "$recipe")"
            if [[ -n "${TEACHER_EPOCHS:-}" ]]; then TEACHER_RECIPE+=(--n_epochs "$TEACHER_EPOCHS"); fi
            if [[ -n "${TEACHER_EPOCHS_DECAY:-}" ]]; then TEACHER_RECIPE+=(--n_epochs_decay "$TEACHER_EPOCHS_DECAY"); fi
            TEACHER_IMPORT=(--model pix2pix --direction BtoA)
            SEARCH_EXTRA+=(--mutate_prob 0.3)
            TEST_FLAGS=(--dataset_mode aligned --direction BtoA)
            TEST_PHASE=val ;;
        *) echo "error: DATASETS: unknown dataset $DATASET (valid: horse2zebra map2sat cityscapes)" >&2; exit 2 ;;
    esac
    read -ra STEP1_RECIPE_FLAGS <<<"$(bash "$REPO/scripts/recipe.sh" "$STEP1_RECIPE")"
    SPLIT=${SPLIT_DIR:-$TABLE_DIR/split}/$DATASET
    if [[ "$SMOKE" == 1 ]]; then
        HELD=${SEARCH_IMAGES:-2}
        RUN_BUDGET=${BUDGET:-$SMOKE_BUDGET}
    else
        HELD=${SEARCH_IMAGES:-$HELD}
        RUN_BUDGET=${BUDGET:-$DEFAULT_BUDGET}
    fi
}

# make_smoke_aligned: SMOKE's generated aligned pairs [photo | label map] of map2sat and cityscapes (train/ 6, val/
# 2), cityscapes with gtFine trainIds labels of the scenes, the two mapping tables and random DRN-D-105 weights
make_smoke_aligned() {
    [[ -f "$SMOKE_DIR/aligned.done" ]] && return 0
    log "SMOKE: generating aligned map2sat / cityscapes pairs and random DRN-D-105 weights under $SMOKE_DIR"
    "$PYTHON" - "$SMOKE_DIR" <<'PY'
import sys
from pathlib import Path
import numpy as np, torch
from PIL import Image
from datasets.make_synthetic_dataset import render, sample_scene
from evaluation.drn import DRNSeg

root = Path(sys.argv[1])
rng = np.random.default_rng(2)
road, car = np.array([128, 64, 128], np.uint8), np.array([0, 0, 142], np.uint8)
for name in ('maps', 'cityscapes_aligned'):
    for split, count in (('train', 6), ('val', 2)):
        (root / 'data' / name / split).mkdir(parents=True, exist_ok=True)
        lines = []
        for i in range(count):
            scene = sample_scene(rng, 32)
            photo, mask = render(scene, 32, 'A')
            label_map = render(scene, 32, 'B')[0] if name == 'maps' else np.where(mask[..., None], car, road)
            Image.fromarray(np.concatenate([photo, label_map], axis=1)).save(root / 'data' / name / split / f'{i}.png')
            if name == 'cityscapes_aligned':  # trainIds at twice the size: road 0, car 13
                key = f'smoke_{i:06d}_000019'
                rel = f'gtFine/{split}/smoke/{key}_gtFine_trainIds.png'
                (root / 'data' / 'cityscapes_origin' / rel).parent.mkdir(parents=True, exist_ok=True)
                ids = np.where(mask, 13, 0).astype(np.uint8).repeat(2, 0).repeat(2, 1)
                Image.fromarray(ids).save(root / 'data' / 'cityscapes_origin' / rel)
                lines.append(f'{i} {rel} leftImg8bit/{split}/smoke/{key}_leftImg8bit.png')
        if lines:
            (root / 'data' / name / f'{split}_table.txt').write_text('\n'.join(lines) + '\n')
torch.manual_seed(0)
(root / 'weights').mkdir(parents=True, exist_ok=True)
torch.save(DRNSeg(arch='drn_d_105').state_dict(), root / 'weights' / 'random_drn_d_105.pth')
PY
    touch "$SMOKE_DIR/aligned.done"
}

# make_search_split: SPLIT/train1 (step 1) and SPLIT/train2 (the search) as symlinks: of trainA/trainB (HELD per
# domain held out) for horse2zebra, of the aligned train/ (HELD pairs held out) for the others; seeded, or the
# official lists of META_DIR. Built in SPLIT.partial, then renamed: a split is whole or absent. SPLIT/done records
# how it was made; a split made otherwise is refused.
make_search_split() {
    local meta=
    case "$DATASET" in horse2zebra) meta=horse2zebra ;; map2sat) meta=maps ;; cityscapes) meta=cityscapes ;; esac
    if [[ -z "${META_DIR:-}" ]]; then
        meta=
    elif [[ -d "$META_DIR" ]]; then
        meta="$(cd "$META_DIR" && pwd)/$meta"
    else
        input_error "META_DIR=$META_DIR is not a folder (gan-compression's datasets/metas, holding $meta/train1*.meta)"
        meta="$META_DIR/$meta"
    fi
    if [[ "$DRY_RUN" == 1 ]]; then
        echo "note: DRY_RUN: the search split $SPLIT (train1 / train2) is not made" >&2
        return 0
    fi
    "$PYTHON" - "$DATA" "$SPLIT" "$HELD" "$ALIGNED" "$meta" <<'PY'
import os, random, shutil, sys
from evaluation.common import image_files
root, split, held, aligned, meta = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4] == '1', sys.argv[5]
how = f'source {os.path.abspath(root)}; ' + (f'META_DIR lists {meta}' if meta else f'seed 0, SEARCH_IMAGES={held}')


partial = split + '.partial'


def fail(message):
    shutil.rmtree(partial, ignore_errors=True)
    print(f'error: {message}', file=sys.stderr)
    sys.exit(2)


done = os.path.join(split, 'done')
if os.path.isfile(done):
    with open(done) as f:
        made = f.read().strip()
    if made == how:
        sys.exit(0)
    fail(f'the search split {split} was made with "{made or "unrecorded parameters"}", not "{how}": remove it, or '
         'set SPLIT_DIR to another folder')
if os.path.isdir(split):  # an unfinished split of an older table3.sh: only folders and symlinks, remade here
    for folder, _, names in os.walk(split):
        if any(not os.path.islink(os.path.join(folder, n)) for n in names):
            fail(f'{split} holds files that are not symlinks of a search split: remove it, or set SPLIT_DIR')
    shutil.rmtree(split)
print(f'== split {root} into {split}: {how}', file=sys.stderr)
shutil.rmtree(partial, ignore_errors=True)
for folder in (['train'] if aligned else ['trainA', 'trainB']):
    files = sorted(image_files(os.path.join(root, folder)))
    if meta:
        by_name = {os.path.basename(f): f for f in files}
        parts = {}
        for part in ('train1', 'train2'):
            listing = os.path.join(meta, part + folder[len('train'):] + '.meta')
            if not os.path.isfile(listing):
                fail(f'META_DIR: {listing} not found (gan-compression datasets/metas/<dataset>/train{{1,2}}[A|B].meta)')
            with open(listing) as f:
                names = [line.strip() for line in f if line.strip()]
            missing = [n for n in names if n not in by_name]
            if missing:
                fail(f'{listing} names {len(missing)} files not in {root}/{folder} (e.g. {missing[0]})')
            parts[part] = [by_name[n] for n in names]
    else:
        if len(files) <= held:
            fail(f'{root}/{folder} holds {len(files)} images, not more than SEARCH_IMAGES={held}')
        random.Random(0).shuffle(files)
        parts = {'train2': files[:held], 'train1': files[held:]}
    for part, chosen in parts.items():
        out = os.path.join(partial, part, folder)
        os.makedirs(out)
        for path in chosen:
            os.symlink(os.path.abspath(path), os.path.join(out, os.path.basename(path)))
with open(os.path.join(partial, 'done'), 'w') as f:
    f.write(how + '\n')
os.rename(partial, split)
PY
}

# stats_of OUT SOURCE...: FID statistics of the images of each SOURCE (a folder, or folder:left for the photos of
# aligned [photo | label] files) -> OUT, unless it exists
stats_of() {
    local out=$1
    shift
    [[ -f "$out" ]] && return 0
    if [[ "$DRY_RUN" == 1 ]]; then
        echo "note: DRY_RUN: the real statistics $out (of $*) are not computed" >&2
        return 0
    fi
    log "real statistics of $* -> $out"
    "$PYTHON" - "$out" "$FID_DIMS" "${FID_WEIGHTS:-}" "$@" <<'PY' >&2
import os, sys, tempfile
from PIL import Image
from evaluation.common import default_device, image_files
from evaluation.fid import InceptionFeatures, build_inception, load_fid_weights, save_real_stats
out, dims, weights, sources = sys.argv[1], int(sys.argv[2]), sys.argv[3] or None, sys.argv[4:]
state, path = load_fid_weights(weights)
device = default_device()
features = InceptionFeatures(build_inception(state, dims=dims, device=device, source=str(path)), dims=dims,
                             device=device)
with tempfile.TemporaryDirectory() as tmp:
    for n, source in enumerate(sources):
        folder, _, half = source.partition(':')
        for f in image_files(folder):
            target = os.path.join(tmp, f'{n}_{f.stem}.png')
            if half:
                with Image.open(f) as img:
                    w, h = img.size[0] // 2, img.size[1]
                    img.convert('RGB').crop((0, 0, w, h) if half == 'left' else (w, 0, 2 * w, h)).save(target)
            else:
                os.symlink(os.path.abspath(f), target)
    save_real_stats(out, features(tmp)[0])
PY
}

# test_stats: the statistics the test translations are scored against (echoes the path)
test_stats() {
    local given out
    case "$DATASET" in
        horse2zebra) given=${REAL_STATS:-}; out="$TABLE_DIR/horse2zebra_B.npz" ;;
        map2sat) given=${REAL_STATS_MAP2SAT:-}; out="$TABLE_DIR/maps_A.npz" ;;
        cityscapes) given=${REAL_STATS_CITY:-}; out="$TABLE_DIR/cityscapes_A.npz" ;;
    esac
    if [[ -n "$given" ]]; then
        [[ -f "$given" ]] || input_error "real statistics $given not found"
        echo "$given"
        return 0
    fi
    if [[ "$DATASET" == horse2zebra ]]; then stats_of "$out" "$DATA/trainB" "$DATA/testB"
    else stats_of "$out" "$DATA/val:left"; fi
    echo "$out"
}

# search_data: where and by what each super-net is searched (SEARCH_DATA)
search_data() {
    case "$DATASET" in
        horse2zebra)
            if [[ "$SMOKE" == 1 ]]; then
                local scenes="$SMOKE_DIR/data/h2z_search"
                if [[ "$DRY_RUN" != 1 && ! -d "$scenes/testA_mask" ]]; then
                    "$PYTHON" -c 'import sys; from datasets.make_synthetic_dataset import make_synthetic_dataset as m
m(sys.argv[1], n_train=1, n_test=2, size=32, seed=1, overwrite=True)' "$scenes" >&2
                fi
                SEARCH_DATA=(--dataroot "$scenes" --phase test --criterion synthetic --metric stripe_iou)
                return 0
            fi
            SEARCH_DATA=(--dataroot "$SPLIT/train2" --phase train --criterion fid --real_stats "$STATS") ;;
        map2sat)
            local search_stats=${REAL_STATS_MAP2SAT_SEARCH:-$TABLE_DIR/maps_subtrain_A.npz}
            if [[ -z "${REAL_STATS_MAP2SAT_SEARCH:-}" ]]; then stats_of "$search_stats" "$SPLIT/train2/train:left"; fi
            SEARCH_DATA=(--dataroot "$SPLIT/train2" --phase train --criterion fid --real_stats "$search_stats") ;;
        cityscapes)
            SEARCH_DATA=(--dataroot "$SPLIT/train2" --phase train --criterion miou --table "$DATA/train_table.txt"
                         --cityscapes_root "$CITYSCAPES_ORIGIN" --drn_weights "$DRN105_WEIGHTS") ;;
    esac
    if [[ "${SEARCH_DATA[*]}" == *"--criterion fid"* && -n "$FID_WEIGHTS" ]]; then
        SEARCH_DATA+=(--fid_weights "$FID_WEIGHTS" --dims "$FID_DIMS")
    fi
}

# Steps (each command of a dataset): a step that finished before with the same command is skipped, as long as every
# earlier step of the dataset was skipped too (FRESH=0); once one runs, the rest run. TABLE_DIR/steps/NAME.done holds
# the finished command, one line as DRY_RUN prints it.
FRESH=0

# skip_step NAME CMD...: true (and a log line) when step NAME finished with CMD and nothing before it ran again
skip_step() {
    local record="$TABLE_DIR/steps/$1.done" line
    shift
    printf -v line '%q ' "$@"
    if [[ "$DRY_RUN" != 1 && "$FRESH" == 0 && -f "$record" && "$(cat "$record")" == "${line% }" ]]; then
        log "skip $(basename "$record" .done): finished with the same command"
        return 0
    fi
    FRESH=1
    return 1
}

# step_done NAME CMD...: record that step NAME finished with CMD (written whole, then renamed)
step_done() {
    [[ "$DRY_RUN" == 1 ]] && return 0
    local record="$TABLE_DIR/steps/$1.done" line
    shift
    printf -v line '%q ' "$@"
    mkdir -p "$TABLE_DIR/steps"
    echo "${line% }" >"$record.tmp"
    mv "$record.tmp" "$record"
}

# step NAME CMD...: run CMD (its output to stderr) unless skip_step
step() {
    local name=$1
    shift
    skip_step "$name" "$@" && return 0
    run "$@" >&2
    step_done "$name" "$@"
}

# train_step NAME DATAROOT [train.py flags...]: train_run as a step (the record leaves out --continue_train)
train_step() {
    train_command "$@"
    skip_step "$1.train" "${TRAIN_CMD[@]}" && return 0
    log "$TRAIN_LOG"
    run "${TRAIN_CMD[@]}" "${RESUME_ARGS[@]}" >&2
    step_done "$1.train" "${TRAIN_CMD[@]}"
}

# test_step NAME DATAROOT [test.py flags...]: test_run as a step
test_step() {
    log "test $1"
    test_command "$@"
    step "$1.test" "${TEST_CMD[@]}"
}

# MACs and #params at CROP px (scripts/count_macs.py): count_json OUT [count_macs.py flags...]
count_json() {
    local out=$1
    shift
    step "$(basename "$out" .json)" "$PYTHON" scripts/count_macs.py --crop_size "$CROP" --json "$out" "$@"
}

# metrics RUN: FID of RUN's test.py translations against the real statistics (TABLE_DIR/RUN.fid.json) and, for
# Cityscapes, their DRN-D-105 mIoU (TABLE_DIR/RUN.miou.json)
metrics() {
    local results="$RESULTS_DIR/$1/${TEST_PHASE}_latest"
    step "$1.fid" "$PYTHON" -m evaluation.fid "$results" "$STATS" "${FID_ARGS[@]}" --run "$1" --dataset "$DATASET" \
        --json "$TABLE_DIR/$1.fid.json"
    if [[ "$DATASET" == cityscapes ]]; then
        step "$1.miou" "$PYTHON" -m evaluation.miou "$results" --table "$DATA/val_table.txt" \
            --cityscapes-root "$CITYSCAPES_ORIGIN" --drn-weights "$DRN105_WEIGHTS" --run "$1" "${MIOU_ARGS[@]}" \
            --json "$TABLE_DIR/$1.miou.json"
    fi
}

# row_json MODEL RUN: one Table 3 row (evaluation.tables.table3_row) -> TABLE_DIR/RUN.row.json
row_json() {
    rows+=("$TABLE_DIR/$2.row.json")
    [[ "$DRY_RUN" == 1 ]] && return 0
    local miou=''
    if [[ "$DATASET" == cityscapes ]]; then miou="$TABLE_DIR/$2.miou.json"; fi
    "$PYTHON" - "$DATASET" "$1" "$2" "$TABLE_DIR/$2.macs.json" "$TABLE_DIR/$2.fid.json" "$miou" \
        "$TABLE_DIR/$2.row.json" <<'PY'
import json, os, sys
from evaluation.tables import table3_row
dataset, model, run, macs, fid, miou, out = sys.argv[1:]
with open(out + '.tmp', 'w') as f:
    json.dump(table3_row(dataset, model, macs_json=macs, fid_json=fid, miou_json=miou or None, run=run), f, indent=1)
os.replace(out + '.tmp', out)
PY
}

# check_dataset: the data, tables and weights of DATASET exist before anything is trained (WEIGHT_CHECKS collects the
# weights files to load)
check_dataset() {
    if [[ "$ALIGNED" == 1 ]]; then
        require_dir "$DATA/train" "aligned [photo | label] pairs in train/ and val/ (datasets/prepare_cityscapes_dataset.py --aligned --tables for Cityscapes; pix2pix's maps for map2sat)"
        require_dir "$DATA/val" "aligned pairs of the test split in val/"
    else
        require_dir "$DATA" "see datasets/download_cut_dataset.sh"
    fi
    if [[ "$DATASET" == cityscapes ]]; then
        local f
        for f in "$DATA/train_table.txt" "$DATA/val_table.txt" "$DRN105_WEIGHTS"; do
            [[ -f "$f" ]] || input_error "Cityscapes' mIoU needs $f (train_table.txt / val_table.txt: prepare_cityscapes_dataset.py --aligned --tables; DRN105_WEIGHTS=drn-d-105_ms_cityscapes.pth)"
        done
        require_dir "$CITYSCAPES_ORIGIN/gtFine" "CITYSCAPES_ORIGIN must hold gtFine/ with the *_gtFine_trainIds.png maps"
        WEIGHT_CHECKS+=(--drn105 "$DRN105_WEIGHTS")
    fi
}

# run_dataset DATASET: the teacher and both arms of one dataset; their rows are added to `rows`
run_dataset() {
    configure "$1"
    FRESH=0
    make_search_split
    STATS=$(test_stats)
    search_data
    local test_root=$DATA test_args
    if [[ "$ALIGNED" == 1 ]]; then
        test_args=("${TEST_FLAGS[@]}" --phase "$TEST_PHASE" --num_test "$(test_count "$DATA" val BtoA aligned)")
    else
        test_args=("${TEST_FLAGS[@]}" --phase "$TEST_PHASE" --num_test "$(test_count "$DATA" test AtoB)")
    fi

    # 1. the teacher: imported, or trained here (CycleGAN / pix2pix ResNet-9 in gan-compression's layout)
    local teacher="${NAME_PREFIX}${SHORT}_teacher" teacher_weights teacher_model
    if [[ -n "$TEACHER_SOURCE" ]]; then
        if [[ ! -f "$CHECKPOINTS_DIR/$teacher/latest_net_G.pth" ]]; then
            log "import the teacher $TEACHER_SOURCE"
            step "$teacher.import" "$PYTHON" scripts/import_teacher.py --source "$TEACHER_SOURCE" \
                --checkpoints_dir "$CHECKPOINTS_DIR" --name "$teacher" --ngf "$NGF" "${TEACHER_IMPORT[@]}"
        fi
        teacher_weights="$CHECKPOINTS_DIR/$teacher/latest_net_G.pth"
        teacher_model=${TEACHER_IMPORT[1]:-cut}
    else
        train_step "$teacher" "$DATA" "${TEACHER_RECIPE[@]}" --ngf "$NGF" "${TEACHER_ARGS[@]}"
        if [[ "$ALIGNED" == 1 ]]; then
            teacher_weights="$CHECKPOINTS_DIR/$teacher/latest_net_G.pth"
            teacher_model=pix2pix
        else
            teacher_weights="$CHECKPOINTS_DIR/$teacher/latest_net_G_A.pth"
            teacher_model=cycle_gan
        fi
    fi
    test_step "$teacher" "$test_root" --model "$teacher_model" "${test_args[@]}"
    count_json "$TABLE_DIR/$teacher.macs.json" --netG resnet_9blocks --ngf "$NGF"
    metrics "$teacher"
    row_json teacher "$teacher"

    # 2.-5. each arm (the same --seed): step 1 on train1, search on train2, (map2sat: fine-tune on the whole training
    # set, as the official finetune script), export, test, metrics
    local arm name flags config tuned source sub model
    for arm in baseline ours; do
        name="${NAME_PREFIX}${SHORT}_supernet_$arm"
        flags=("${STEP1_RECIPE_FLAGS[@]}")
        if [[ "$arm" == baseline ]]; then flags+=("${RECIPE_COMPRESSION_BASELINE[@]}"); fi
        train_step "$name" "$SPLIT/train1" "${flags[@]}" --teacher_path "$teacher_weights" "${STEP1_ARGS[@]}"
        config=${CONFIG:-}
        if [[ -z "$config" ]]; then
            log "search $name (budget $RUN_BUDGET MACs)"
            step "$name.search" "$PYTHON" scripts/evolution_search.py --checkpoints_dir "$CHECKPOINTS_DIR" \
                --name "$name" "${SEARCH_DATA[@]}" --budget "$RUN_BUDGET" "${SEARCH_EXTRA[@]}" \
                --output_dir "$RESULTS_DIR/$name/search" "${SEARCH_ARGS[@]}"
            if [[ "$DRY_RUN" == 1 ]]; then
                config=SEARCHED
                echo "note: DRY_RUN: SEARCHED stands for the configuration in $RESULTS_DIR/$name/search/result.json" >&2
            else
                config=$("$PYTHON" -c 'import json, sys; print(json.load(open(sys.argv[1]))["best"]["config"])' \
                    "$RESULTS_DIR/$name/search/result.json")
            fi
        fi
        source="$CHECKPOINTS_DIR/$name"
        if [[ "$FINETUNE" == 1 ]]; then
            tuned="${name}_${config}_finetune"
            train_step "$tuned" "$DATA" "${flags[@]}" "${RECIPE_FINETUNE[@]}" --config_str "$config" \
                --restore_G_path "$source/latest_net_G.pth" --restore_D_path "$source/latest_net_D.pth" \
                --teacher_path "$teacher_weights" "${FINETUNE_ARGS[@]}"
            source="$CHECKPOINTS_DIR/$tuned"
        fi
        sub="${name}_${config}"
        log "export $source at $config -> $sub"
        step "$sub.export" "$PYTHON" scripts/export_subnet.py --checkpoint "$source" --config_str "$config" \
            --output "$CHECKPOINTS_DIR/$sub/latest_net_G.pth" --force
        test_step "$sub" "$test_root" --model compression "${test_args[@]}"
        count_json "$TABLE_DIR/$sub.macs.json" --config "$config"
        metrics "$sub"
        model=baseline
        if [[ "$arm" == ours ]]; then model='+ ours'; fi
        row_json "$model" "$sub"
    done
}

if [[ "$DRY_RUN" != 1 && "$SMOKE" == 1 ]]; then
    prepare
    if [[ " $DATASETS " == *" map2sat "* || " $DATASETS " == *" cityscapes "* ]]; then make_smoke_aligned; fi
fi
WEIGHT_CHECKS=(--fid ${FID_WEIGHTS:+"$FID_WEIGHTS"})
for dataset in $DATASETS; do  # every dataset's data, tables and weights, before anything is trained
    configure "$dataset"
    check_dataset
done
check_weights "${WEIGHT_CHECKS[@]}"
if [[ "$SMOKE" != 1 ]]; then prepare; fi  # the visdom server, once the inputs are there
rows=()
for dataset in $DATASETS; do
    run_dataset "$dataset"
done

log "table3 -> $RESULTS_DIR/${NAME_PREFIX}table3.md, .csv"
run "$PYTHON" scripts/make_table.py --layout table3 --out "$RESULTS_DIR/${NAME_PREFIX}table3" "${rows[@]}" >&2
