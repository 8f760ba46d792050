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
#   SMOKE=1 bash scripts/table3.sh                            # the same pipeline, tiny, on CPU (about two minutes)
#
# Datasets (DATASETS, default horse2zebra; SMOKE: horse2zebra map2sat cityscapes):
#   horse2zebra  H2Z_DIR (trainA/B, testA/B); teacher: CycleGAN ResNet-9; search: FID on 120 held-out horses
#                against all zebras, budget 3e9, mutate_prob 0.4, weighted_sample 2; test on testA
#   map2sat      MAPS_DIR (aligned [photo | map] files in train/, val/; --direction BtoA); teacher: pix2pix
#                (recipes/pix2pix_map2sat.txt); search: FID on 300 held-out maps against their photos, budget
#                4.6e9, mutate_prob 0.3; the searched configuration fine-tuned (compression_map2sat_finetune.txt,
#                G and D restored from step 1); test on val against the val photos
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
#   SEARCH_IMAGES=  the held-out search split per dataset (default 120 / 300 / 200, gan-compression's train2 meta
#                   lists; here a seeded split, made once as symlinks under SPLIT_DIR=RESULTS_DIR/table3/split/
#                   <dataset>: train1/ for step 1, train2/ for the search)
#   BUDGET=         the MACs budget of every search (at 256 px; default 3e9 / 4.6e9 / 5.7e9);
#                   POPULATION=100 GENERATIONS=500 (upstream's)
#   CONFIG=         export both arms at this configuration instead of each one's searched configuration
# Output: RESULTS_DIR/<NAME_PREFIX>table3.{md,csv}, and per run its search/, test and metric JSONs.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
read -ra RECIPE_COMPRESSION_BASELINE <<<"$(bash "$REPO/scripts/recipe.sh" compression_baseline)"
read -ra RECIPE_FINETUNE <<<"$(bash "$REPO/scripts/recipe.sh" compression_map2sat_finetune)"
prepare

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
          --max_iters "$SMOKE_ITERS" --num_threads 0 --no_tqdm --print_freq 1 --seed 0)
    STEP1_ARGS=("${TINY[@]}" --teacher_ngf "$NGF" --config_set channels-8 --num_patches 16)
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
    STEP1_ARGS=("${TRAIN_ARGS[@]}")
    TEACHER_ARGS=()
    SEARCH_ARGS=(--population_size "${POPULATION:-100}" --generations "${GENERATIONS:-500}")
    FID_DIMS=2048
    FID_ARGS=(--no-kid)
    if [[ -n "$FID_WEIGHTS" ]]; then FID_ARGS+=(--fid-weights "$FID_WEIGHTS"); fi
    MIOU_ARGS=()
    check_eval_weights horse2zebra
fi
TABLE_DIR="$RESULTS_DIR/${NAME_PREFIX}table3"
mkdir -p "$TABLE_DIR"

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

# make_search_split: SPLIT/train1 (step 1) and SPLIT/train2 (the search) as seeded symlinks: of trainA/trainB
# (HELD per domain held out) for horse2zebra, of the aligned train/ (HELD pairs held out) for the others
make_search_split() {
    [[ -f "$SPLIT/done" ]] && return 0
    log "split $DATA's training set into $SPLIT: $HELD held out for the search (train2), the rest train1"
    "$PYTHON" - "$DATA" "$SPLIT" "$HELD" "$ALIGNED" <<'PY'
import os, random, sys
from evaluation.common import image_files
root, split, held, aligned = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4] == '1'
for folder in (['train'] if aligned else ['trainA', 'trainB']):
    files = sorted(image_files(os.path.join(root, folder)))
    if len(files) <= held:
        sys.exit(f'error: {root}/{folder} holds {len(files)} images, not more than SEARCH_IMAGES={held}')
    random.Random(0).shuffle(files)
    for part, chosen in (('train2', files[:held]), ('train1', files[held:])):
        out = os.path.join(split, part, folder)
        os.makedirs(out)
        for path in chosen:
            os.symlink(os.path.abspath(path), os.path.join(out, os.path.basename(path)))
PY
    touch "$SPLIT/done"
}

# stats_of OUT SOURCE...: FID statistics of the images of each SOURCE (a folder, or folder:left for the photos of
# aligned [photo | label] files) -> OUT, unless it exists
stats_of() {
    local out=$1
    shift
    [[ -f "$out" ]] && return 0
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
        [[ -f "$given" ]] || { echo "error: real statistics $given not found" >&2; exit 2; }
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
                if [[ ! -d "$scenes/testA_mask" ]]; then
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

# MACs and #params at CROP px (scripts/count_macs.py): count_json OUT [count_macs.py flags...]
count_json() {
    local out=$1
    shift
    "$PYTHON" scripts/count_macs.py --crop_size "$CROP" --json "$out" "$@" >&2
}

# metrics RUN: FID of RUN's test.py translations against the real statistics (TABLE_DIR/RUN.fid.json) and, for
# Cityscapes, their DRN-D-105 mIoU (TABLE_DIR/RUN.miou.json)
metrics() {
    local results="$RESULTS_DIR/$1/${TEST_PHASE}_latest"
    "$PYTHON" -m evaluation.fid "$results" "$STATS" "${FID_ARGS[@]}" --run "$1" --dataset "$DATASET" \
        --json "$TABLE_DIR/$1.fid.json" >&2
    if [[ "$DATASET" == cityscapes ]]; then
        "$PYTHON" -m evaluation.miou "$results" --table "$DATA/val_table.txt" --cityscapes-root "$CITYSCAPES_ORIGIN" \
            --drn-weights "$DRN105_WEIGHTS" --run "$1" "${MIOU_ARGS[@]}" --json "$TABLE_DIR/$1.miou.json" >&2
    fi
}

# row_json MODEL RUN: one Table 3 row (evaluation.tables.table3_row) -> TABLE_DIR/RUN.row.json
row_json() {
    local miou=''
    if [[ "$DATASET" == cityscapes ]]; then miou="$TABLE_DIR/$2.miou.json"; fi
    "$PYTHON" - "$DATASET" "$1" "$2" "$TABLE_DIR/$2.macs.json" "$TABLE_DIR/$2.fid.json" "$miou" \
        "$TABLE_DIR/$2.row.json" <<'PY'
import json, sys
from evaluation.tables import table3_row
dataset, model, run, macs, fid, miou, out = sys.argv[1:]
with open(out, 'w') as f:
    json.dump(table3_row(dataset, model, macs_json=macs, fid_json=fid, miou_json=miou or None, run=run), f, indent=1)
PY
    rows+=("$TABLE_DIR/$2.row.json")
}

# check_dataset: the data, tables and weights of DATASET exist before anything is trained
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
            [[ -f "$f" ]] || { echo "error: Cityscapes' mIoU needs $f (train_table.txt / val_table.txt: prepare_cityscapes_dataset.py --aligned --tables; DRN105_WEIGHTS=drn-d-105_ms_cityscapes.pth)" >&2; exit 2; }
        done
        require_dir "$CITYSCAPES_ORIGIN/gtFine" "CITYSCAPES_ORIGIN must hold gtFine/ with the *_gtFine_trainIds.png maps"
    fi
}

# run_dataset DATASET: the teacher and both arms of one dataset; their rows are added to `rows`
run_dataset() {
    configure "$1"
    check_dataset
    make_search_split
    STATS=$(test_stats)
    search_data
    local num_test test_root=$DATA
    if [[ "$ALIGNED" == 1 ]]; then
        num_test=$(find -L "$DATA/val" -maxdepth 1 -type f | wc -l)
    else
        num_test=$(find -L "$DATA/testA" -maxdepth 1 -type f | wc -l)
    fi
    local test_args=("${TEST_FLAGS[@]}" --phase "$TEST_PHASE" --num_test "$num_test")

    # 1. the teacher: imported, or trained here (CycleGAN / pix2pix ResNet-9 in gan-compression's layout)
    local teacher="${NAME_PREFIX}${SHORT}_teacher" teacher_weights teacher_model
    if [[ -n "$TEACHER_SOURCE" ]]; then
        if [[ ! -f "$CHECKPOINTS_DIR/$teacher/latest_net_G.pth" ]]; then
            log "import the teacher $TEACHER_SOURCE"
            "$PYTHON" scripts/import_teacher.py --source "$TEACHER_SOURCE" --checkpoints_dir "$CHECKPOINTS_DIR" \
                --name "$teacher" --ngf "$NGF" "${TEACHER_IMPORT[@]}" >&2
        fi
        teacher_weights="$CHECKPOINTS_DIR/$teacher/latest_net_G.pth"
        teacher_model=${TEACHER_IMPORT[1]:-cut}
    else
        train_run "$teacher" "$DATA" "${TEACHER_RECIPE[@]}" --ngf "$NGF" "${TEACHER_ARGS[@]}"
        if [[ "$ALIGNED" == 1 ]]; then
            teacher_weights="$CHECKPOINTS_DIR/$teacher/latest_net_G.pth"
            teacher_model=pix2pix
        else
            teacher_weights="$CHECKPOINTS_DIR/$teacher/latest_net_G_A.pth"
            teacher_model=cycle_gan
        fi
    fi
    test_run "$teacher" "$test_root" --model "$teacher_model" "${test_args[@]}" >&2
    count_json "$TABLE_DIR/$teacher.macs.json" --netG resnet_9blocks --ngf "$NGF"
    metrics "$teacher"
    row_json teacher "$teacher"

    # 2.-5. each arm: step 1 on train1, search on train2, (map2sat: fine-tune), export, test, metrics
    local arm name flags config tuned source sub model
    for arm in baseline ours; do
        name="${NAME_PREFIX}${SHORT}_supernet_$arm"
        flags=("${STEP1_RECIPE_FLAGS[@]}")
        if [[ "$arm" == baseline ]]; then flags+=("${RECIPE_COMPRESSION_BASELINE[@]}"); fi
        train_run "$name" "$SPLIT/train1" "${flags[@]}" --teacher_path "$teacher_weights" "${STEP1_ARGS[@]}"
        config=${CONFIG:-}
        if [[ -z "$config" ]]; then
            log "search $name (budget $RUN_BUDGET MACs)"
            "$PYTHON" scripts/evolution_search.py --checkpoints_dir "$CHECKPOINTS_DIR" --name "$name" \
                "${SEARCH_DATA[@]}" --budget "$RUN_BUDGET" "${SEARCH_EXTRA[@]}" \
                --output_dir "$RESULTS_DIR/$name/search" "${SEARCH_ARGS[@]}" >&2
            config=$("$PYTHON" -c 'import json, sys; print(json.load(open(sys.argv[1]))["best"]["config"])' \
                "$RESULTS_DIR/$name/search/result.json")
        fi
        source="$CHECKPOINTS_DIR/$name"
        if [[ "$FINETUNE" == 1 ]]; then
            tuned="${name}_${config}_finetune"
            train_run "$tuned" "$SPLIT/train1" "${flags[@]}" "${RECIPE_FINETUNE[@]}" --config_str "$config" \
                --restore_G_path "$source/latest_net_G.pth" --restore_D_path "$source/latest_net_D.pth" \
                --teacher_path "$teacher_weights" "${STEP1_ARGS[@]}"
            source="$CHECKPOINTS_DIR/$tuned"
        fi
        sub="${name}_${config}"
        log "export $source at $config -> $sub"
        "$PYTHON" scripts/export_subnet.py --checkpoint "$source" --config_str "$config" \
            --output "$CHECKPOINTS_DIR/$sub/latest_net_G.pth" --force >&2
        test_run "$sub" "$test_root" --model compression "${test_args[@]}" >&2
        count_json "$TABLE_DIR/$sub.macs.json" --config "$config"
        metrics "$sub"
        model=baseline
        if [[ "$arm" == ours ]]; then model='+ ours'; fi
        row_json "$model" "$sub"
    done
}

if [[ "$SMOKE" == 1 && " $DATASETS " == *" map2sat "* || "$SMOKE" == 1 && " $DATASETS " == *" cityscapes "* ]]; then
    make_smoke_aligned
fi
for dataset in $DATASETS; do  # every dataset's data, tables and weights, before anything is trained
    configure "$dataset"
    check_dataset
done
rows=()
for dataset in $DATASETS; do
    run_dataset "$dataset"
done

log "table3 -> $RESULTS_DIR/${NAME_PREFIX}table3.md, .csv"
"$PYTHON" scripts/make_table.py --layout table3 --out "$RESULTS_DIR/${NAME_PREFIX}table3" "${rows[@]}"
