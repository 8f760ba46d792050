#!/usr/bin/env bash
# Train the paper's model on horse2zebra with the official recipe, then translate the test set.
#
#   bash scripts/train_horse2zebra.sh                      # GPU 0, ./datasets/horse2zebra, 200 + 200 epochs
#   GPU_IDS=1 NAME=h2z_ours EPOCHS=100 bash scripts/train_horse2zebra.sh
#   GPU_IDS=0,1 bash scripts/train_horse2zebra.sh          # torchrun, one process per GPU, batch 1 per process
#   DRY_RUN=1 bash scripts/train_horse2zebra.sh            # print the commands, run nothing
#   SMOKE=1 bash scripts/train_horse2zebra.sh              # the same on generated data, CPU, a minute
#
# Settings (environment): see scripts/common.sh. Live plots: visdom at http://localhost:$DISPLAY_PORT,
# environment = the run name. test.py translates every test image. Evaluate afterwards with
# scripts/sweep_epochs.sh (FID of every epoch).
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
NAME=${NAME:-${NAME_PREFIX}h2z_src_hdce}
prepare_dir "$H2Z_DIR" "download it with: bash datasets/download_cut_dataset.sh horse2zebra"
train_run "$NAME" "$H2Z_DIR" "${RECIPE_H2Z[@]}" "${TRAIN_ARGS[@]}"
test_run "$NAME" "$H2Z_DIR" --model src_hdce --num_test "$(test_count "$H2Z_DIR" test AtoB)" "${TEST_ARGS[@]}"
log "done: checkpoints in $CHECKPOINTS_DIR/$NAME, translations in $RESULTS_DIR/$NAME/test_latest"
