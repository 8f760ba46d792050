# Shared settings and helpers of the reproduction scripts (sourced, not run).
#
# Settings, from the environment:
#   GPU_IDS=0            the GPUs (SMOKE: -1, the CPU). Several (GPU_IDS=0,1,2,3) train with one process per GPU:
#                        torchrun --standalone --nproc_per_node 4 train.py ... --gpu_ids 0,1,2,3 (process i on the
#                        i-th id). test.py and the evaluations run as one process on the first id
#   NPROC=               processes per node (default: the number of GPU_IDS; NPROC=2 GPU_IDS=-1: two CPU processes,
#                        gloo). --batch_size is per process: N processes train on N x batch_size images a step
#                        (the paper's recipes: one GPU, batch 1)
#   NNODES=1 NODE_RANK=0 MASTER_ADDR= MASTER_PORT=29500   several nodes (torchrun --nnodes --node_rank
#                        --master_addr --master_port; run the same command on every node); or RDZV_ENDPOINT=host:port
#                        (c10d rendezvous, RDZV_ID=hneg_src). Nodes other than 0 only train
#   DATASETS_DIR=./datasets  where horse2zebra/, cityscapes/ and single_image_monet_etretat/ live;
#                        H2Z_DIR, CITYSCAPES_DIR, MONET_DIR point at one of them directly
#   EPOCHS= EPOCHS_DECAY=   --n_epochs / --n_epochs_decay, passed only when set (unset: the recipe's, else
#                        train.py's 200 + 200; Monet: the model's own, 8 + 8)
#   SEED=0               --seed of every training, so that the arms a table compares start alike
#   NAME_PREFIX=         prefix of every run name (NAME overrides the whole name of a single run)
#   CHECKPOINTS_DIR=./checkpoints RESULTS_DIR=./results
#   EXTRA_ARGS=          more train.py flags, word-split (e.g. "--batch_size 2 --save_epoch_freq 10")
#   VISDOM=1 DISPLAY_PORT=8097   start (or reuse) the offline visdom server; VISDOM=0: no plots. A server the
#                        script started is stopped when it exits (the plots stay in its env_path)
#   FID_WEIGHTS=         pt_inception-2015-12-05-6726825d.pth (default: the torch hub cache)
#   DRN_WEIGHTS=         drn_d_22_cityscapes.pth, needed for the Cityscapes scores
#                        (every weights file is loaded before the first training: scripts/check_weights.py)
#   EPOCH_CHOICE=best    which epoch of each sweep the tables report (best or last)
#   RESUME=1             a run with a saved training state continues (--continue_train); a finished
#                        run is not trained again. RESUME=0 trains from scratch
#   DRY_RUN=1            print every command the script would run, one per line on stdout (shell-quoted as
#                        printf %q writes them), and run nothing: no folder is made, no input is required
#   PYTHON=              the interpreter (default: the repository's .venv, else python3)
#   SMOKE=1              the same pipeline on generated data (synthetic horse->zebra, a Cityscapes-like
#                        label->photo set, one image pair), 32x32 crops, a tiny generator, SMOKE_ITERS
#                        iterations, CPU, random evaluation networks; everything under SMOKE_DIR
#   SMOKE_DIR=${TMPDIR:-/tmp}/hneg_src_smoke SMOKE_ITERS=4
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/base.sh"
if help_requested "$@"; then
    script_help "${BASH_SOURCE[0]}"
    exit 0
fi
REPO=$BASE_REPO
cd "$REPO"
find_python
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"

SMOKE=${SMOKE:-0}
DRY_RUN=${DRY_RUN:-0}
SEED=${SEED:-0}
NAME_PREFIX=${NAME_PREFIX:-}
EXTRA_ARGS=${EXTRA_ARGS:-}
EPOCH_CHOICE=${EPOCH_CHOICE:-best}
DISPLAY_PORT=${DISPLAY_PORT:-8097}
exec 3>&1  # DRY_RUN's lines go to the script's stdout, also from inside $(...) and >&2

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
                --num_threads 0 --no_tqdm --print_freq 1 --seed "$SEED")
    TEST_ARGS=("${SIZE_ARGS[@]}")
    MONET_TRAIN_ARGS=(--ngf 4 --ndf 4 --load_size 64 --crop_size 32 --batch_size 2 --num_patches 1 --n_epochs 1
                      --n_epochs_decay 0 --max_iters "$SMOKE_ITERS" --num_threads 0 --no_tqdm --print_freq 2
                      --seed "$SEED")
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
    # the schedule only when asked for: after the recipe's flags it would replace the recipe's (argparse keeps
    # the last value)
    SCHEDULE_ARGS=()
    if [[ -n "${EPOCHS:-}" ]]; then SCHEDULE_ARGS+=(--n_epochs "$EPOCHS"); fi
    if [[ -n "${EPOCHS_DECAY:-}" ]]; then SCHEDULE_ARGS+=(--n_epochs_decay "$EPOCHS_DECAY"); fi
    TRAIN_ARGS=("${SCHEDULE_ARGS[@]}" --seed "$SEED")
    TEST_ARGS=()
    MONET_TRAIN_ARGS=(--seed "$SEED")
    MONET_TEST_ARGS=()
    EVAL_ARGS=()
    if [[ -n "$FID_WEIGHTS" ]]; then EVAL_ARGS=(--fid-weights "$FID_WEIGHTS"); fi
fi
DISPLAY_ARGS=(--display_id 0)
# the evaluation modules (evaluation/*: FID's Inception, the DRN) take their default device from it (the first id)
export GPU_IDS
EVAL_GPU=${GPU_IDS%%,*}
ALL_IMAGES=1000000  # --num_test of a test set that is not there yet (DRY_RUN): test.py translates all it finds

log() {
    echo "== $*" >&2
}

# run CMD...: run a command; with DRY_RUN=1 print it instead, one line, each word as printf %q quotes it
run() {
    if [[ "$DRY_RUN" == 1 ]]; then
        local line
        printf -v line '%q ' "$@"
        echo "${line% }" >&3
        return 0
    fi
    "$@"
}

# input_error MESSAGE: a missing or unusable input: one error line and exit 2 (DRY_RUN: a note, and go on)
input_error() {
    if [[ "$DRY_RUN" == 1 ]]; then
        echo "note: DRY_RUN: $*" >&2
        return 0
    fi
    echo "error: $*" >&2
    exit 2
}

# The launcher of train.py (TRAIN_LAUNCH): python, or torchrun (as `python -m torch.distributed.run`, the same
# interpreter) with one process per GPU of GPU_IDS (or NPROC processes), over NNODES nodes.
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
gpu_count=1
if [[ "$GPU_IDS" != -1 ]]; then gpu_count=$(tr ',' '\n' <<<"$GPU_IDS" | grep -c .); fi
NPROC=${NPROC:-$gpu_count}
if [[ ! "$NPROC" =~ ^[1-9][0-9]*$ || ! "$NNODES" =~ ^[1-9][0-9]*$ || ! "$NODE_RANK" =~ ^[0-9]+$ ]]; then
    echo "error: NPROC=$NPROC, NNODES=$NNODES and NODE_RANK=$NODE_RANK must be whole numbers (NPROC, NNODES >= 1)" >&2
    exit 2
fi
if [[ "$GPU_IDS" != -1 && "$gpu_count" -gt 1 && "$NPROC" != "$gpu_count" ]]; then
    echo "error: GPU_IDS=$GPU_IDS names $gpu_count GPUs but NPROC=$NPROC: give one id per process, or GPU_IDS=0" \
         "(process i takes GPU i) with CUDA_VISIBLE_DEVICES choosing the GPUs" >&2
    exit 2
fi
TRAIN_LAUNCH=("$PYTHON")
if (( NPROC > 1 || NNODES > 1 )); then
    TRAIN_LAUNCH=("$PYTHON" -m torch.distributed.run)
    if (( NNODES == 1 )); then
        TRAIN_LAUNCH+=(--standalone)
    elif [[ -n "${RDZV_ENDPOINT:-}" ]]; then
        TRAIN_LAUNCH+=(--nnodes "$NNODES" --rdzv_backend c10d --rdzv_endpoint "$RDZV_ENDPOINT"
                       --rdzv_id "${RDZV_ID:-hneg_src}")
    elif [[ -n "${MASTER_ADDR:-}" ]]; then
        TRAIN_LAUNCH+=(--nnodes "$NNODES" --node_rank "$NODE_RANK" --master_addr "$MASTER_ADDR"
                       --master_port "${MASTER_PORT:-29500}")
    else
        echo "error: NNODES=$NNODES needs MASTER_ADDR (the address of node 0; MASTER_PORT=29500) or" \
             "RDZV_ENDPOINT=host:port" >&2
        exit 2
    fi
    TRAIN_LAUNCH+=(--nproc_per_node "$NPROC")
fi
unset gpu_count

# main_node: true on the node that tests, evaluates and writes the tables (node 0); the others only train
main_node() {
    [[ "$NODE_RANK" == 0 ]]
}

# Start (or reuse) the offline visdom server and point training at it; on failure, train without plots. A server
# started here is stopped when the script exits, however it exits.
VISDOM_PID=
start_visdom() {
    if [[ "${VISDOM}" != 1 || "$DRY_RUN" == 1 ]]; then
        return 0
    fi
    local said
    if said=$(PYTHON="$PYTHON" bash "$REPO/scripts/visdom_server.sh" --port "$DISPLAY_PORT"); then
        echo "$said" >&2
        DISPLAY_ARGS=(--display_port "$DISPLAY_PORT")
        log "live plots: http://localhost:$DISPLAY_PORT (one visdom environment per run name)"
        if [[ "$said" =~ \(pid\ ([0-9]+) ]]; then
            VISDOM_PID=${BASH_REMATCH[1]}
            trap stop_visdom EXIT
        fi
    else
        echo "$said" >&2
        log "warning: no visdom server on port $DISPLAY_PORT; training without live plots"
    fi
}

stop_visdom() {
    if [[ -n "$VISDOM_PID" ]] && kill "$VISDOM_PID" 2>/dev/null; then
        log "stopped the visdom server this script started (pid $VISDOM_PID)"
    fi
    VISDOM_PID=
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

# prepare: the SMOKE fixtures, or the visdom server (after the inputs are checked); nothing under DRY_RUN
prepare() {
    if [[ "$DRY_RUN" == 1 ]]; then
        return 0
    fi
    if [[ "$SMOKE" == 1 ]]; then
        mkdir -p "$SMOKE_DIR"
        make_smoke_fixtures
    else
        start_visdom
    fi
}

# check_weights [check_weights.py flags]: load each weights file now, not after the trainings (one line per problem)
check_weights() {
    if [[ "$DRY_RUN" == 1 || "$SMOKE" == 1 ]]; then  # SMOKE's random weights are made here
        return 0
    fi
    "$PYTHON" "$REPO/scripts/check_weights.py" "$@" || exit 2
}

# check_eval_weights DATASET...: the FID Inception and, for cityscapes, the DRN-D-22, loaded before any training
check_eval_weights() {
    local flags=(--fid ${FID_WEIGHTS:+"$FID_WEIGHTS"})
    if [[ " $* " == *" cityscapes "* ]]; then
        if [[ -z "$DRN_WEIGHTS" ]]; then
            input_error "the Cityscapes scores need DRN_WEIGHTS=path/to/drn_d_22_cityscapes.pth"
        else
            flags+=(--drn22 "$DRN_WEIGHTS")
        fi
    fi
    check_weights "${flags[@]}"
}

require_dir() {
    if [[ ! -d "$1" ]]; then
        input_error "dataset folder $1 not found; $2"
    fi
}

# train_command NAME DATAROOT [train.py flags...]: TRAIN_CMD, the training with the shared settings, then
# EXTRA_ARGS; RESUME_ARGS, --continue_train when RESUME=1 and the run has a saved training state, --overwrite when
# RESUME=0 and its folder exists; TRAIN_LOG
train_command() {
    local name=$1 dataroot=$2
    shift 2
    RESUME_ARGS=()
    TRAIN_LOG="train $name ($dataroot)"
    if [[ "${RESUME:-1}" == 1 && -f "$CHECKPOINTS_DIR/$name/latest_train_state.pth" ]]; then
        RESUME_ARGS=(--continue_train)
        TRAIN_LOG="train $name: resuming from $CHECKPOINTS_DIR/$name/latest_train_state.pth"
    elif [[ "${RESUME:-1}" == 0 && -d "$CHECKPOINTS_DIR/$name" ]]; then
        RESUME_ARGS=(--overwrite)  # train.py refuses a folder holding a run unless told to start over
        TRAIN_LOG="train $name ($dataroot): starting over in $CHECKPOINTS_DIR/$name (RESUME=0)"
    fi
    # shellcheck disable=SC2086
    TRAIN_CMD=("${TRAIN_LAUNCH[@]}" train.py --dataroot "$dataroot" --name "$name" --checkpoints_dir "$CHECKPOINTS_DIR"
               --gpu_ids "$GPU_IDS" "${DISPLAY_ARGS[@]}" "$@" $EXTRA_ARGS)
}

# train_run NAME DATAROOT [train.py flags...]: train (under torchrun with several processes)
train_run() {
    train_command "$@"
    log "$TRAIN_LOG"
    run "${TRAIN_CMD[@]}" "${RESUME_ARGS[@]}"
}

# test_count DATAROOT PHASE DIRECTION [aligned]: how many source images the test split holds (--num_test of
# test.py: every one of them is translated and scored)
test_count() {
    local folder="$1/$2"
    if [[ "${4:-}" != aligned ]]; then
        if [[ "$3" == BtoA ]]; then folder+=B; else folder+=A; fi
    fi
    if [[ -d "$folder" ]]; then
        find -L "$folder" -maxdepth 1 -type f | wc -l
    else
        echo "note: $folder not found: --num_test $ALL_IMAGES (every image test.py finds)" >&2
        echo "$ALL_IMAGES"
    fi
}

# test_command NAME DATAROOT [test.py flags...]: TEST_CMD, the translation of the test split with the latest weights
test_command() {
    local name=$1 dataroot=$2
    shift 2
    TEST_CMD=("$PYTHON" test.py --dataroot "$dataroot" --name "$name" --checkpoints_dir "$CHECKPOINTS_DIR"
              --results_dir "$RESULTS_DIR" --gpu_ids "$EVAL_GPU" "$@")
}

# test_run NAME DATAROOT [test.py flags...]: translate the test split (on node 0 only)
test_run() {
    main_node || { log "node $NODE_RANK: node 0 tests $1"; return 0; }
    log "test $1"
    test_command "$@"
    run "${TEST_CMD[@]}"
}

# sweep_run DATASET NAME LABEL [test.py flags...]: test.py and the metrics of every saved epoch
# (FID for horse2zebra; DRN scores and FID for cityscapes, the best epoch by mAP), labelled for the tables:
# adds the sweep JSON to SWEEP_JSONS and the label to SWEEP_LABELS.
SWEEP_JSONS=()
SWEEP_LABELS=()
sweep_run() {
    local dataset=$1 name=$2 label=$3
    shift 3
    SWEEP_JSONS+=("$RESULTS_DIR/$name/sweep_test.json")
    SWEEP_LABELS+=("$label")
    main_node || { log "node $NODE_RANK: node 0 evaluates $name"; return 0; }
    local metrics=(--metrics fid) dataroot=$H2Z_DIR
    if [[ "$dataset" == cityscapes ]]; then
        metrics=(--metrics fid cityscapes --select mAP --drn-weights "$DRN_WEIGHTS" --direction BtoA)
        dataroot=$CITYSCAPES_DIR
    fi
    log "evaluate $name (every saved epoch)"
    run bash scripts/sweep_epochs.sh --dataroot "$dataroot" --name "$name" \
        --checkpoints_dir "$CHECKPOINTS_DIR" --results_dir "$RESULTS_DIR" --dataset "$dataset" \
        --method "$label" "${metrics[@]}" "${EVAL_ARGS[@]}" --gpu_ids "$EVAL_GPU" "$@" >/dev/null
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

# make_table LAYOUT OUT: the paper's table from the sweeps of sweep_run, rows in the order first seen (node 0)
make_table() {
    local layout=$1 out=$2
    main_node || return 0
    local unique=()
    mapfile -t unique < <(printf '%s\n' "${SWEEP_LABELS[@]}" | awk '!seen[$0]++')
    log "table $layout -> $out.md, $out.csv"
    run "$PYTHON" scripts/make_table.py --layout "$layout" --choice "$EPOCH_CHOICE" --rows "${unique[@]}" \
        --out "$out" "${SWEEP_JSONS[@]}"
}

# prepare_dir DIR HINT: what a training script does before its run: DIR must exist (HINT says how to get it), then
# the SMOKE fixtures (which make DIR) or the visdom server
prepare_dir() {
    if [[ "$SMOKE" == 1 ]]; then prepare; fi
    require_dir "$1" "$2"
    if [[ "$SMOKE" != 1 ]]; then prepare; fi
}

# prepare_datasets DATASET...: what a table script does before its first run: the evaluation weights and every
# dataset folder, so that nothing is missing later, then the SMOKE fixtures or the visdom server
prepare_datasets() {
    if [[ "$SMOKE" == 1 ]]; then prepare; fi  # SMOKE generates the inputs it then checks
    check_eval_weights "$@"
    local dataset
    for dataset in "$@"; do
        require_dir "$(dataset_dir "$dataset")" "see datasets/download_cut_dataset.sh or datasets/prepare_cityscapes_dataset.py"
    done
    if [[ "$SMOKE" != 1 ]]; then prepare; fi
}
