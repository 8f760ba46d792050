#!/usr/bin/env bash
# Table 1 (single-modal translation): train, test and evaluate CUT (its own recipe) and ours (the
# official recipes) on horse2zebra (FID) and Cityscapes label→photo (mAP, pixAcc, classAcc, FID),
# then write the table with each number's epoch and run.
#
#   DRN_WEIGHTS=drn_d_22_cityscapes.pth bash scripts/table1.sh
#   DATASETS=horse2zebra GPU_IDS=1 NAME_PREFIX=t1_ bash scripts/table1.sh
#   GPU_IDS=0,1,2,3 bash scripts/table1.sh              # each training on 4 GPUs (torchrun), batch 1 per GPU
#   DRY_RUN=1 bash scripts/table1.sh                    # print the commands, run nothing
#   SMOKE=1 bash scripts/table1.sh                      # the whole pipeline on generated data, CPU
#
# Every saved epoch is evaluated (scripts/sweep_epochs.sh); the table reports EPOCH_CHOICE (best:
# lowest FID for horse2zebra, highest mAP for Cityscapes; or last). Both rows of a dataset train with
# --seed SEED. Output: RESULTS_DIR/<NAME_PREFIX>table1.{md,csv}. Settings (environment): DATASETS
# (default "horse2zebra cityscapes"), and scripts/common.sh's:
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
DATASETS=${DATASETS:-horse2zebra cityscapes}
# shellcheck disable=SC2086
prepare_datasets $DATASETS
for dataset in $DATASETS; do
    dataroot=$(dataset_dir "$dataset")
    short=$(short_name "$dataset")
    direction=$(direction_of "$dataset")
    read -ra recipe <<<"$(bash "$REPO/scripts/recipe.sh" "$dataset")"  # recipes/<dataset>.txt: the official one

    name="${NAME_PREFIX}${short}_cut"
    train_run "$name" "$dataroot" "${RECIPE_CUT[@]}" --direction "$direction" "${TRAIN_ARGS[@]}"
    sweep_run "$dataset" "$name" CUT --model cut "${TEST_ARGS[@]}"

    name="${NAME_PREFIX}${short}_src_hdce"
    train_run "$name" "$dataroot" "${recipe[@]}" "${TRAIN_ARGS[@]}"
    sweep_run "$dataset" "$name" 'SRC + hDCE (ours)' --model src_hdce "${TEST_ARGS[@]}"
done
make_table table1 "$RESULTS_DIR/${NAME_PREFIX}table1"
