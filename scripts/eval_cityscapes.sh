#!/usr/bin/env bash
# Cityscapes label→photo evaluation of one epoch: test.py (--direction BtoA, every test label map),
# then the DRN-D-22 scores (mAP, pixAcc, classAcc) and FID/KID against the test photos, as JSON.
#
#   bash scripts/eval_cityscapes.sh DATAROOT NAME EPOCH DRN_WEIGHTS [more flags]
#   bash scripts/eval_cityscapes.sh datasets/cityscapes city_src latest drn_d_22_cityscapes.pth --model src_hdce
#
# Writes RESULTS/NAME/test_EPOCH/metrics_{cityscapes,fid}.json and RESULTS/NAME/sweep_test.json.
# More flags: evaluation.sweep's (--official-get-acc, --metrics cityscapes to skip FID, --phase val,
# --results_dir, --checkpoints_dir, --device, ...); the others (--model, --gpu_ids, ...) go to test.py.
# DRY_RUN=1 prints the command and runs nothing.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/base.sh"
if help_requested "$@"; then script_help; exit 0; fi
if [[ $# -lt 4 ]]; then
    echo "usage: $0 DATAROOT NAME EPOCH DRN_WEIGHTS [evaluation.sweep / test.py flags]" >&2
    exit 2
fi
REPO=$BASE_REPO
find_python
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
DATAROOT=$1 NAME=$2 EPOCH=$3 DRN_WEIGHTS=$4
shift 4
exec_or_print "$PYTHON" -m evaluation.sweep --dataroot "$DATAROOT" --name "$NAME" --epochs "$EPOCH" \
    --direction BtoA --metrics cityscapes fid --select mAP --drn-weights "$DRN_WEIGHTS" \
    --test-script "$REPO/test.py" "$@"
