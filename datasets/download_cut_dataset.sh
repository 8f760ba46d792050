#!/usr/bin/env bash
# Download a CycleGAN/CUT unpaired dataset, or CUT's Cityscapes validation set, and check its layout.
#
#   bash datasets/download_cut_dataset.sh horse2zebra            # -> ./datasets/horse2zebra/{trainA,trainB,testA,testB}
#   bash datasets/download_cut_dataset.sh cityscapes_val_for_CUT # -> ./datasets/cityscapes_val_for_CUT/.../{valA,valB}
#   bash datasets/download_cut_dataset.sh NAME TARGET_ROOT       # another folder than ./datasets
#
# The full Cityscapes dataset needs a registration at https://www.cityscapes-dataset.com: download
# gtFine_trainvaltest.zip and leftImg8bit_trainvaltest.zip there, then run
# datasets/prepare_cityscapes_dataset.py. CUT_DATASETS_MIRROR replaces the server
# (default http://efrosgans.eecs.berkeley.edu, which also serves file:// mirrors). The archive is unpacked
# into a hidden folder beside TARGET_ROOT/NAME and renamed once whole: a download or an unpacking that fails
# midway leaves no partial dataset folder.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/base.sh"
if help_requested "$@"; then script_help; exit 0; fi

UNPAIRED=(apple2orange summer2winter_yosemite horse2zebra monet2photo cezanne2photo ukiyoe2photo
          vangogh2photo maps facades iphone2dslr_flower grumpifycat mini)
CITYSCAPES_VAL=cityscapes_val_for_CUT
NAME=${1:-}
ROOT=${2:-./datasets}
MIRROR=${CUT_DATASETS_MIRROR:-http://efrosgans.eecs.berkeley.edu}

fail() {
    echo "error: $*" >&2
    exit 1
}

usage() {
    echo "usage: $0 NAME [TARGET_ROOT]" >&2
    echo "NAME is one of: ${UNPAIRED[*]} $CITYSCAPES_VAL (cityscapes: see datasets/prepare_cityscapes_dataset.py)" >&2
    exit 1
}

[[ -n $NAME ]] || usage
if [[ $NAME == cityscapes ]]; then
    fail "Cityscapes cannot be redistributed: register at https://www.cityscapes-dataset.com, download" \
         "gtFine_trainvaltest.zip and leftImg8bit_trainvaltest.zip, unzip them and run" \
         "python datasets/prepare_cityscapes_dataset.py --gtFine_dir gtFine --leftImg8bit_dir leftImg8bit" \
         "--output_dir ./datasets/cityscapes. For CUT's pre-resized validation set: $0 $CITYSCAPES_VAL"
fi
if [[ $NAME == "$CITYSCAPES_VAL" ]]; then
    URL="$MIRROR/CUT/datasets/$NAME.tar"
elif [[ " ${UNPAIRED[*]} " == *" $NAME "* ]]; then
    URL="$MIRROR/cyclegan/datasets/$NAME.zip"
else
    echo "error: unknown dataset '$NAME'" >&2
    usage
fi

TARGET="$ROOT/$NAME"
if [[ -e $TARGET ]] && [[ -n $(ls -A "$TARGET") ]]; then
    fail "$TARGET already exists and is not empty; remove it to download again"
fi
mkdir -p "$ROOT"
ARCHIVE="$ROOT/.$NAME.${URL##*.}.part"
PARTIAL="$ROOT/.$NAME.partial"  # unpacked here, renamed to TARGET once whole
rm -rf "$PARTIAL"
trap 'rm -rf "$ARCHIVE" "$PARTIAL"' EXIT

echo "Downloading $URL" >&2
if command -v curl > /dev/null; then
    curl --fail --location --retry 2 --progress-bar --output "$ARCHIVE" "$URL" || fail "could not download $URL"
else
    wget --progress=bar:force --output-document "$ARCHIVE" "$URL" || fail "could not download $URL"
fi

mkdir -p "$PARTIAL"
if [[ $NAME == "$CITYSCAPES_VAL" ]]; then
    tar -xf "$ARCHIVE" -C "$PARTIAL" || fail "$URL is not a readable tar archive"
    VAL_A=$(find "$PARTIAL" -type d -name valA | head -n 1)
    if [[ -z $VAL_A || ! -d "$(dirname "$VAL_A")/valB" ]]; then
        fail "unexpected layout in $URL: no folder holding valA and valB in it"
    fi
    rmdir "$TARGET" 2>/dev/null || true
    mv "$PARTIAL" "$TARGET"
    DATAROOT=$TARGET${VAL_A#"$PARTIAL"}
    DATAROOT=$(dirname "$DATAROOT")
    echo "Cityscapes validation set ready: $(find "$DATAROOT/valA" -type f | wc -l) photos (valA)," \
         "$(find "$DATAROOT/valB" -type f | wc -l) label maps (valB)." >&2
    echo "Use: --dataroot $DATAROOT --phase val --direction BtoA" >&2
else
    unzip -q "$ARCHIVE" -d "$PARTIAL" || fail "$URL is not a readable zip archive"
    for split in trainA trainB; do
        [[ -d "$PARTIAL/$NAME/$split" ]] || fail "unexpected layout in $URL: $NAME/$split is missing"
    done
    rmdir "$TARGET" 2>/dev/null || true
    mv "$PARTIAL/$NAME" "$TARGET"
    for split in trainA trainB testA testB; do
        if [[ -d "$TARGET/$split" ]]; then
            echo "$TARGET/$split: $(find "$TARGET/$split" -type f | wc -l) images" >&2
        else
            echo "$TARGET/$split: none (this dataset has no test split; test with --phase train)" >&2
        fi
    done
fi
echo "$TARGET"
