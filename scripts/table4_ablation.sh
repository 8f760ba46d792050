#!/usr/bin/env bash
# Table 4 (ablation): every combination of the patch loss (InfoNCE or DCE), SRC (on or off) and hard
# negatives (on or off), trained with the official recipe of each dataset, tested and evaluated on
# horse2zebra (FID) and Cityscapes label→photo (mAP, pixAcc, classAcc, FID), then the table.
#
#   DRN_WEIGHTS=drn_d_22_cityscapes.pth bash scripts/table4_ablation.sh
#   ROWS="dce dce_src_hneg" DATASETS=horse2zebra GPU_IDS=2 bash scripts/table4_ablation.sh
#   NPROC=2 bash scripts/table4_ablation.sh             # each training on GPUs 0 and 1 (torchrun), batch 1 each
#   DRY_RUN=1 bash scripts/table4_ablation.sh           # print the commands, run nothing
#   SMOKE=1 bash scripts/table4_ablation.sh             # the whole pipeline on generated data, CPU
#
# The rows (slugs for ROWS) are recipes/table4_rows.tsv, as for studies/cpu_study.py ablation: the paper's 7,
# in its order and with its labels, from CUT (InfoNCE under the paper's weights) to DCE + SRC + Hneg;
# the eighth combination (infonce_hneg, InfoNCE + Hneg) runs when ROWS names it. SRC off is
# --lambda_SRC 0, hard negatives off is --no_Hneg. Output: RESULTS_DIR/<NAME_PREFIX>table4.{md,csv}, each
# number with its epoch (EPOCH_CHOICE of every saved one) and run, the paper's values under each row. Every row
# trains with --seed SEED. Settings: DATASETS (default "horse2zebra cityscapes"), ROWS, and scripts/common.sh's:
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
DATASETS=${DATASETS:-horse2zebra cityscapes}
ROWS=${ROWS:-${PAPER_ROW_SLUGS[*]}}
for slug in $ROWS; do
    if [[ -z "${ROW_LABEL[$slug]+set}" ]]; then
        echo "error: unknown row $slug in ROWS (valid: ${ROW_SLUGS[*]})" >&2
        exit 2
    fi
done
# shellcheck disable=SC2086
prepare_datasets $DATASETS
for dataset in $DATASETS; do
    dataroot=$(dataset_dir "$dataset")
    short=$(short_name "$dataset")
    read -ra recipe <<<"$(bash "$REPO/scripts/recipe.sh" "$dataset")"  # recipes/<dataset>.txt: the official one
    for slug in $ROWS; do
        name="${NAME_PREFIX}${short}_abl_${slug}"
        # shellcheck disable=SC2086
        train_run "$name" "$dataroot" "${recipe[@]}" ${ROW_FLAGS[$slug]} "${TRAIN_ARGS[@]}"
        sweep_run "$dataset" "$name" "${ROW_LABEL[$slug]}" --model src_hdce "${TEST_ARGS[@]}"
    done
done
make_table table4 "$RESULTS_DIR/${NAME_PREFIX}table4"
