#!/usr/bin/env bash
# FID and KID of translated images against the target test set, with pytorch-fid's network and
# statistics (the value equals `python -m pytorch_fid FAKE REAL`). Progress on stderr, JSON on stdout.
#
#   bash scripts/eval_fid.sh results/h2z_src/test_latest datasets/horse2zebra/testB [--json out.json]
#   bash scripts/eval_fid.sh results/city_src/test_latest/images/fake_B datasets/cityscapes/testA
#
# FAKE may be a fake_B folder or a test.py result folder (then the JSON also goes to
# FAKE/metrics_fid.json). Weights: $TORCH_HOME/hub/checkpoints/pt_inception-2015-12-05-6726825d.pth,
# or --fid-weights PATH; --download-fid-weights fetches them. All flags: python -m evaluation.fid -h
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/base.sh"
if help_requested "$@"; then script_help; exit 0; fi
if [[ $# -lt 2 ]]; then
    echo "usage: $0 FAKE_DIR_OR_RESULT_DIR REAL_DIR [evaluation.fid flags]" >&2
    exit 2
fi
REPO=$BASE_REPO
find_python
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
exec "$PYTHON" -m evaluation.fid "$@"
