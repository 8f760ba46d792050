#!/usr/bin/env bash
# Evaluate every saved epoch of a run (test.py + metrics) and report the best and the last.
#
#   bash scripts/sweep_epochs.sh --dataroot datasets/horse2zebra --name h2z_src --model src_hdce
#   bash scripts/sweep_epochs.sh --dataroot datasets/cityscapes --name city_src --direction BtoA \
#       --metrics fid cityscapes --drn-weights drn_d_22_cityscapes.pth
#
# Writes RESULTS_DIR/NAME/sweep_PHASE.{json,csv} and each epoch's metrics JSON; flags it does not
# know go to test.py. All flags: python -m evaluation.sweep -h. DRY_RUN=1 prints the command and runs nothing.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/base.sh"
if help_requested "$@"; then script_help; exit 0; fi
REPO=$BASE_REPO
find_python
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
exec_or_print "$PYTHON" -m evaluation.sweep --test-script "$REPO/test.py" "$@"
