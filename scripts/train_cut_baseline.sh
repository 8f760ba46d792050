#!/usr/bin/env bash
# The CUT baseline with CUT's own recipe (--model cut --CUT_mode CUT: λ_NCE 1, NCE on the identity
# too) on horse2zebra or Cityscapes label→photo, then translate the test set.
#
#   bash scripts/train_cut_baseline.sh                     # horse2zebra, GPU 0, 200 + 200 epochs
#   DATASET=cityscapes bash scripts/train_cut_baseline.sh  # label→photo (--direction BtoA)
#   NPROC=2 bash scripts/train_cut_baseline.sh             # torchrun on GPUs 0 and 1, batch 1 per process
#   DRY_RUN=1 bash scripts/train_cut_baseline.sh           # print the commands, run nothing
#   SMOKE=1 bash scripts/train_cut_baseline.sh             # the same on generated data, CPU, a minute
#
# Settings (environment): DATASET=horse2zebra|cityscapes, and those of scripts/common.sh.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
DATASET=${DATASET:-horse2zebra}
DATAROOT=$(dataset_dir "$DATASET")
DIRECTION=AtoB
[[ "$DATASET" == cityscapes ]] && DIRECTION=BtoA
SHORT=h2z
[[ "$DATASET" == cityscapes ]] && SHORT=city
NAME=${NAME:-${NAME_PREFIX}${SHORT}_cut}
prepare_dir "$DATAROOT" "see datasets/download_cut_dataset.sh or datasets/prepare_cityscapes_dataset.py"
train_run "$NAME" "$DATAROOT" "${RECIPE_CUT[@]}" --direction "$DIRECTION" "${TRAIN_ARGS[@]}"
test_run "$NAME" "$DATAROOT" --model cut --direction "$DIRECTION" \
    --num_test "$(test_count "$DATAROOT" test "$DIRECTION")" "${TEST_ARGS[@]}"
log "done: checkpoints in $CHECKPOINTS_DIR/$NAME, translations in $RESULTS_DIR/$NAME/test_latest"
