#!/usr/bin/env bash
# The pure-Python wheels scripts/gpu_check.sh needs on a bare GPU machine (CUDA PyTorch as python3, no network,
# no .venv): built here, where pip reaches PyPI, then carried there with the repository.
#
#   bash scripts/gpu_wheels.sh [DIR]          # DIR defaults to gpu_wheels/ (git-ignored)
#   GPU_WHEELS=DIR bash scripts/gpu_check.sh  # there: installs, without network, those its python3 lacks
#
# What PyTorch's machine brings (numpy, scipy, pillow, torchvision) is not carried; the rest of requirements.txt is:
# pytorch-fid, torchprofile, dominate, visdom (an sdist, built into a wheel) with its pure-Python dependencies,
# tqdm, and pytest for the tests marked cuda. tornado, visdom's server, is compiled: a check never starts one.
set -eu
source "$(dirname "${BASH_SOURCE[0]}")/base.sh"
if help_requested "$@"; then script_help; exit 0; fi
cd "$(dirname "$0")/.." || exit 1
DIR=${1:-gpu_wheels}
PIP=${PIP:-${PYTHON:-.venv/bin/python} -m pip}
[[ -n "${PYTHON:-}" || -x .venv/bin/python ]] || PIP="python3 -m pip"

PURE=(pytorch-fid==0.3.0 torchprofile==0.1.0 dominate tqdm requests urllib3 idna charset-normalizer certifi
      jsonpatch jsonpointer websocket-client six pytest pluggy iniconfig packaging pygments exceptiongroup tomli
      typing-extensions)
mkdir -p "$DIR"
echo "gpu_wheels.sh: downloading ${#PURE[@]} pure-Python wheels into $DIR" >&2
# shellcheck disable=SC2086
$PIP download --quiet --no-deps --only-binary=:all: --platform any --implementation py --abi none -d "$DIR" \
    "${PURE[@]}"
echo "gpu_wheels.sh: building visdom==0.2.4's sdist into a wheel" >&2
# shellcheck disable=SC2086
$PIP wheel --quiet --no-deps --no-binary visdom -w "$DIR" visdom==0.2.4
impure=$(find "$DIR" -name '*.whl' ! -name '*-none-any.whl')
if [[ -n "$impure" ]]; then
    echo "error: $DIR holds wheels that are not pure Python: $impure" >&2
    exit 1
fi
echo "gpu_wheels.sh: $(find "$DIR" -name '*.whl' | wc -l) wheels in $DIR" >&2
