# Shared settings and helpers of the reproduction scripts (sourced, not run).
#
# Settings, from the environment:
#   GPU_IDS=0            train.py/test.py --gpu_ids and the evaluation networks' device (SMOKE: -1)
#   DATASETS_DIR=./datasets  where horse2zebra/, cityscapes/ and single_image_monet_etretat/ live;
#                        H2Z_DIR, CITYSCAPES_DIR, MONET_DIR point at one of them directly
#   EPOCHS=200 EPOCHS_DECAY=200   --n_epochs / --n_epochs_decay (Monet: the model's own, 8 + 8)
#   NAME_PREFIX=         prefix of every run name (NAME overrides the whole name of a single run)
#   CHECKPOINTS_DIR=./checkpoints RESULTS_DIR=./results
#   EXTRA_ARGS=          more train.py flags, word-split (e.g. "--batch_size 2 --save_epoch_freq 10")
#   VISDOM=1 DISPLAY_PORT=8097   start (or reuse) the offline visdom server; VISDOM=0: no plots
#   FID_WEIGHTS=         pt_inception-2015-12-05-6726825d.pth (default: the torch hub cache)
#   DRN_WEIGHTS=         drn_d_22_cityscapes.pth, needed for the Cityscapes scores
#   EPOCH_CHOICE=best    which epoch of each sweep the tables report (best or last)
#   RESUME=1             a run with a saved training state continues (--continue_train); a finished
#                        run is not trained again. RESUME=0 trains from scratch
#   PYTHON=              the interpreter (default: the repository's .venv, else python3)
#   SMOKE=1              the same pipeline on generated data (synthetic horse->zebra, a Cityscapes-like
#                        label->photo set, one image pair), 32x32 crops, a tiny generator, SMOKE_ITERS
#                        iterations, CPU, random evaluation networks; everything under SMOKE_DIR
#   SMOKE_DIR=${TMPDIR:-/tmp}/hneg_src_smoke SMOKE_ITERS=4
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
if [[ -z "${PYTHON:-}" ]]; then
    if [[ -x "$REPO/.venv/bin/python" ]]; then PYTHON="$REPO/.venv/bin/python"; else PYTHON=python3; fi
fi
export PYTHON
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"

SMOKE=${SMOKE:-0}
NAME_PREFIX=${NAME_PREFIX:-}
EXTRA_ARGS=${EXTRA_ARGS:-}
EPOCH_CHOICE=${EPOCH_CHOICE:-best}
DISPLAY_PORT=${DISPLAY_PORT:-8097}

# The official recipes (Hneg_SRC's Single-modal README) and CUT's own, from recipes/*.txt.
read -ra RECIPE_H2Z <<<"$(bash "$REPO/scripts/recipe.sh" horse2zebra)"
read -ra RECIPE_CITYSCAPES <<<"$(bash "$REPO/scripts/recipe.sh" cityscapes)"
read -ra RECIPE_MONET <<<"$(bash "$REPO/scripts/recipe.sh" monet)"
read -ra RECIPE_CUT <<<"$(bash "$REPO/scripts/recipe.sh" cut)"

# Table 4's rows (recipes/table4_rows.tsv, also read by studies/cpu_study.py): ROW_SLUGS (all, in the
# file's order), PAPER_ROW_SLUGS (the paper's 7), ROW_LABEL[slug] and ROW_FLAGS[slug].
declare -gA ROW_LABEL=() ROW_FLAGS=()
ROW_SLUGS=()
PAPER_ROW_SLUGS=()
while IFS=$'\t' read -r slug source label flags; do
    [[ -z "$slug" || "$slug" == \#* ]] && continue
    ROW_SLUGS+=("$slug")
    ROW_LABEL[$slug]=$label
    ROW_FLAGS[$slug]=$flags
    if [[ "$source" == paper ]]; then PAPER_ROW_SLUGS+=("$slug"); fi
done <"$REPO/recipes/table4_rows.tsv"
unset slug source label flags

if [[ "$SMOKE" == 1 ]]; then
    SMOKE_DIR=${SMOKE_DIR:-${TMPDIR:-/tmp}/hneg_src_smoke}
    SMOKE_ITERS=${SMOKE_ITERS:-4}
    GPU_IDS=-1
    CHECKPOINTS_DIR="$SMOKE_DIR/checkpoints"
    RESULTS_DIR="$SMOKE_DIR/results"
    H2Z_DIR="$SMOKE_DIR/data/horse2zebra"
    CITYSCAPES_DIR="$SMOKE_DIR/data/cityscapes"
    MONET_DIR="$SMOKE_DIR/data/single_image_monet_etretat"
    FID_WEIGHTS="$SMOKE_DIR/weights/random_inception.pth"
    DRN_WEIGHTS="$SMOKE_DIR/weights/random_drn_d_22.pth"
    VISDOM=0
    # one epoch of SMOKE_ITERS images, so that epoch 1 is saved and swept like a real epoch
    SIZE_ARGS=(--ngf 4 --ndf 4 --netG resnet_6blocks --load_size 32 --crop_size 32)
    TRAIN_ARGS=("${SIZE_ARGS[@]}" --num_patches 16 --n_epochs 1 --n_epochs_decay 0 --max_iters "$SMOKE_ITERS"
                --num_threads 0 --no_tqdm --print_freq 1 --seed 0)
    TEST_ARGS=("${SIZE_ARGS[@]}")
    MONET_TRAIN_ARGS=(--ngf 4 --ndf 4 --load_size 64 --crop_size 32 --batch_size 2 --num_patches 1 --n_epochs 1
                      --n_epochs_decay 0 --max_iters "$SMOKE_ITERS" --num_threads 0 --no_tqdm --print_freq 2 --seed 0)
    MONET_TEST_ARGS=(--ngf 4 --load_size 64 --crop_size 32)
    # a random Inception at 64 dims and a random DRN: the numbers mean nothing, the pipeline runs
    EVAL_ARGS=(--dims 64 --no-kid --device cpu --num-workers 0 --fid-weights "$FID_WEIGHTS")
else
    GPU_IDS=${GPU_IDS:-0}
    DATASETS_DIR=${DATASETS_DIR:-./datasets}
    CHECKPOINTS_DIR=${CHECKPOINTS_DIR:-./checkpoints}
    RESULTS_DIR=${RESULTS_DIR:-./results}
    H2Z_DIR=${H2Z_DIR:-$DATASETS_DIR/horse2zebra}
    CITYSCAPES_DIR=${CITYSCAPES_DIR:-$DATASETS_DIR/cityscapes}
    MONET_DIR=${MONET_DIR:-$DATASETS_DIR/single_image_monet_etretat}
    FID_WEIGHTS=${FID_WEIGHTS:-}
    DRN_WEIGHTS=${DRN_WEIGHTS:-}
    VISDOM=${VISDOM:-1}
    TRAIN_ARGS=(--n_epochs "${EPOCHS:-200}" --n_epochs_decay "${EPOCHS_DECAY:-200}")
    TEST_ARGS=()
    MONET_TRAIN_ARGS=()
    MONET_TEST_ARGS=()
    EVAL_ARGS=()
    if [[ -n "$FID_WEIGHTS" ]]; then EVAL_ARGS=(--fid-weights "$FID_WEIGHTS"); fi
fi
DISPLAY_ARGS=(--display_id 0)
# the evaluation modules (evaluation/*: FID's Inception, the DRN) take their default device from it
export GPU_IDS

log() {
    echo "== $*" >&2
}

# Start (or reuse) the offline visdom server and point training at it; on failure, train without plots.
start_visdom() {
    if [[ "${VISDOM}" != 1 ]]; then
        return 0
    fi
    if PYTHON="$PYTHON" bash "$REPO/scripts/visdom_server.sh" --port "$DISPLAY_PORT" >&2; then
        DISPLAY_ARGS=(--display_port "$DISPLAY_PORT")
        log "live plots: http://localhost:$DISPLAY_PORT (one visdom environment per run name)"
    else
        log "warning: no visdom server on port $DISPLAY_PORT; training without live plots"
    fi
}

# The generated datasets and random evaluation weights of SMOKE mode (made once per SMOKE_DIR).
make_smoke_fixtures() {
    [[ -f "$SMOKE_DIR/fixtures.done" ]] && return 0
    log "SMOKE: generating datasets and random evaluation weights under $SMOKE_DIR"
    "$PYTHON" - "$SMOKE_DIR" "$SMOKE_ITERS" <<'PY'
import shutil, sys
from pathlib import Path
import numpy as np, torch, torchvision
from PIL import Image
from datasets.make_synthetic_dataset import make_synthetic_dataset, render, sample_scene
from evaluation.drn import DRNSeg

root, n_train = Path(sys.argv[1]), int(sys.argv[2])
h2z = root / 'data' / 'horse2zebra'
make_synthetic_dataset(h2z, n_train=n_train, n_test=2, size=32, seed=0, overwrite=True)
# Cityscapes-like: A photos, B colour label maps of the same scenes (road, car), as CUT's layout
rng = np.random.default_rng(1)
road, car = np.array([128, 64, 128], np.uint8), np.array([0, 0, 142], np.uint8)
for phase, count in (('train', n_train), ('test', 2)):
    for domain in 'AB':
        (root / 'data' / 'cityscapes' / f'{phase}{domain}').mkdir(parents=True, exist_ok=True)
    for i in range(count):
        photo, mask = render(sample_scene(rng, 32), 32, 'A')
        label = np.where(mask[..., None], car, road)
        Image.fromarray(photo).save(root / 'data' / 'cityscapes' / f'{phase}A' / f'{i}_A.png')
        Image.fromarray(label).save(root / 'data' / 'cityscapes' / f'{phase}B' / f'{i}_B.png')
monet = root / 'data' / 'single_image_monet_etretat'
for domain in 'AB':
    (monet / f'train{domain}').mkdir(parents=True, exist_ok=True)
    shutil.copy(h2z / f'train{domain}' / '000000.png', monet / f'train{domain}' / '000000.png')
(root / 'weights').mkdir(parents=True, exist_ok=True)
torch.manual_seed(0)
inception = torchvision.models.inception_v3(num_classes=1008, aux_logits=False, weights=None, init_weights=False)
torch.save(inception.state_dict(), root / 'weights' / 'random_inception.pth')
torch.save(DRNSeg().state_dict(), root / 'weights' / 'random_drn_d_22.pth')
PY
    touch "$SMOKE_DIR/fixtures.done"
}

prepare() {
    if [[ "$SMOKE" == 1 ]]; then
        mkdir -p "$SMOKE_DIR"
        make_smoke_fixtures
    else
        start_visdom
    fi
}

# check_eval_weights DATASET...: fail before any training when an evaluation network's weights are missing
check_eval_weights() {
    local fid_weights=$FID_WEIGHTS
    if [[ -z "$fid_weights" ]]; then
        fid_weights=$("$PYTHON" -c 'from evaluation.fid import default_weights_path; print(default_weights_path())')
    fi
    if [[ ! -f "$fid_weights" ]]; then
        echo "error: FID weights not found at $fid_weights; set FID_WEIGHTS=path/to/pt_inception-2015-12-05-6726825d.pth" >&2
        exit 2
    fi
    if [[ " $* " == *" cityscapes "* && ! -f "$DRN_WEIGHTS" ]]; then
        echo "error: the Cityscapes scores need DRN_WEIGHTS=path/to/drn_d_22_cityscapes.pth (got '${DRN_WEIGHTS}')" >&2
        exit 2
    fi
}

require_dir() {
    if [[ ! -d "$1" ]]; then
        echo "error: dataset folder $1 not found; $2" >&2
        exit 2
    fi
}

# train_run NAME DATAROOT [train.py flags...]: train with the shared settings, then EXTRA_ARGS.
train_run() {
    local name=$1 dataroot=$2
    shift 2
    local resume=()
    if [[ "${RESUME:-1}" == 1 && -f "$CHECKPOINTS_DIR/$name/latest_train_state.pth" ]]; then
        resume=(--continue_train)
        log "train $name: resuming from $CHECKPOINTS_DIR/$name/latest_train_state.pth"
    else
        log "train $name ($dataroot)"
    fi
    # shellcheck disable=SC2086
    "$PYTHON" train.py --dataroot "$dataroot" --name "$name" --checkpoints_dir "$CHECKPOINTS_DIR" \
        --gpu_ids "$GPU_IDS" "${DISPLAY_ARGS[@]}" "${resume[@]}" "$@" $EXTRA_ARGS
}

# test_run NAME DATAROOT [test.py flags...]: translate the test split with the latest weights.
test_run() {
    local name=$1 dataroot=$2
    shift 2
    log "test $name"
    "$PYTHON" test.py --dataroot "$dataroot" --name "$name" --checkpoints_dir "$CHECKPOINTS_DIR" \
        --results_dir "$RESULTS_DIR" --gpu_ids "$GPU_IDS" "$@"
}

# sweep_run DATASET NAME LABEL [test.py flags...]: test.py and the metrics of every saved epoch
# (FID for horse2zebra; DRN scores and FID for cityscapes, the best epoch by mAP), labelled for the tables.
# Prints the path of the sweep JSON.
sweep_run() {
    local dataset=$1 name=$2 label=$3
    shift 3
    local metrics=(--metrics fid) dataroot=$H2Z_DIR
    if [[ "$dataset" == cityscapes ]]; then
        metrics=(--metrics fid cityscapes --select mAP --drn-weights "$DRN_WEIGHTS" --direction BtoA)
        dataroot=$CITYSCAPES_DIR
    fi
    log "evaluate $name (every saved epoch)"
    PYTHON="$PYTHON" bash scripts/sweep_epochs.sh --dataroot "$dataroot" --name "$name" \
        --checkpoints_dir "$CHECKPOINTS_DIR" --results_dir "$RESULTS_DIR" --dataset "$dataset" \
        --method "$label" "${metrics[@]}" "${EVAL_ARGS[@]}" --gpu_ids "$GPU_IDS" "$@" >/dev/null
    echo "$RESULTS_DIR/$name/sweep_test.json"
}

# dataset_dir DATASET: the data folder of horse2zebra or cityscapes
dataset_dir() {
    case "$1" in
        horse2zebra) echo "$H2Z_DIR" ;;
        cityscapes) echo "$CITYSCAPES_DIR" ;;
        *) echo "error: unknown dataset $1 (valid: horse2zebra cityscapes)" >&2; exit 2 ;;
    esac
}

# short_name DATASET: the run-name prefix of horse2zebra (h2z) or cityscapes (city)
short_name() {
    case "$1" in
        horse2zebra) echo h2z ;;
        cityscapes) echo city ;;
        *) echo "error: unknown dataset $1 (valid: horse2zebra cityscapes)" >&2; exit 2 ;;
    esac
}

# direction_of DATASET: horse->zebra is AtoB, Cityscapes label->photo is BtoA
direction_of() {
    if [[ "$1" == cityscapes ]]; then echo BtoA; else echo AtoB; fi
}

# make_table LAYOUT OUT JSON...: the paper's table from the sweep JSONs, rows in the order first seen
make_table() {
    local layout=$1 out=$2
    shift 2
    local rows=()
    local json
    for json in "$@"; do
        rows+=("$("$PYTHON" -c 'import json, sys; print(json.load(open(sys.argv[1]))["method"])' "$json")")
    done
    local unique=()
    mapfile -t unique < <(printf '%s\n' "${rows[@]}" | awk '!seen[$0]++')
    log "table $layout -> $out.md, $out.csv"
    "$PYTHON" scripts/make_table.py --layout "$layout" --choice "$EPOCH_CHOICE" --rows "${unique[@]}" \
        --out "$out" "$@"
}

# prepare_datasets DATASET...: what a table script does before its first run: the SMOKE fixtures or the
# visdom server, then the evaluation weights and every dataset folder, so that nothing is missing later
prepare_datasets() {
    prepare
    check_eval_weights "$@"
    local dataset
    for dataset in "$@"; do
        require_dir "$(dataset_dir "$dataset")" "see datasets/download_cut_dataset.sh or datasets/prepare_cityscapes_dataset.py"
    done
}
