#!/usr/bin/env bash
# Train the paper's model on Cityscapes label→photo (--direction BtoA) with the official recipe,
# then translate the test label maps.
#
#   bash scripts/train_cityscapes.sh                       # GPU 0, ./datasets/cityscapes, 200 + 200 epochs
#   GPU_IDS=1 CITYSCAPES_DIR=./datasets/cityscapes_cut bash scripts/train_cityscapes.sh
#   GPU_IDS=0,1 bash scripts/train_cityscapes.sh           # torchrun, one process per GPU, batch 1 per process
#   DRY_RUN=1 bash scripts/train_cityscapes.sh             # print the commands, run nothing
#   SMOKE=1 bash scripts/train_cityscapes.sh               # the same on generated data, CPU, a minute
#
# Settings (environment): see scripts/common.sh. The dataset comes from
# datasets/prepare_cityscapes_dataset.py (trainA photos, trainB colour label maps); test.py translates
# every test label map. Evaluate
# afterwards with scripts/eval_cityscapes.sh or scripts/sweep_epochs.sh (DRN scores and FID).
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
NAME=${NAME:-${NAME_PREFIX}city_src_hdce}
prepare_dir "$CITYSCAPES_DIR" "build it with datasets/prepare_cityscapes_dataset.py"
train_run "$NAME" "$CITYSCAPES_DIR" "${RECIPE_CITYSCAPES[@]}" "${TRAIN_ARGS[@]}"
test_run "$NAME" "$CITYSCAPES_DIR" --model src_hdce --direction BtoA \
    --num_test "$(test_count "$CITYSCAPES_DIR" test BtoA)" "${TEST_ARGS[@]}"
log "done: checkpoints in $CHECKPOINTS_DIR/$NAME, translations in $RESULTS_DIR/$NAME/test_latest"
