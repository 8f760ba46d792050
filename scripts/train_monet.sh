#!/usr/bin/env bash
# Single-image translation (Etretat photo -> Monet painting) with the official recipe: SinCUT's
# training (StyleGAN2 networks, zoomed 64x64 crops, 8 + 8 epochs) with SRC + hDCE.
#
#   bash scripts/train_monet.sh                            # GPU 0, ./datasets/single_image_monet_etretat
#   GPU_IDS=1 MONET_DIR=path/to/pair bash scripts/train_monet.sh
#   DRY_RUN=1 bash scripts/train_monet.sh                  # print the commands, run nothing
#   SMOKE=1 bash scripts/train_monet.sh                    # the same on a generated image pair, CPU
#
# The dataset folder holds one image in trainA and one in trainB. EPOCHS/EPOCHS_DECAY do not apply
# (the model's defaults are the recipe's); pass EXTRA_ARGS="--n_epochs N" to change them.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
NAME=${NAME:-${NAME_PREFIX}monet_src_hdce}
prepare_dir "$MONET_DIR" "it needs trainA/ and trainB/ with one image each"
train_run "$NAME" "$MONET_DIR" "${RECIPE_MONET[@]}" "${MONET_TRAIN_ARGS[@]}"
test_run "$NAME" "$MONET_DIR" --model sin_src_hdce "${MONET_TEST_ARGS[@]}"
log "done: checkpoints in $CHECKPOINTS_DIR/$NAME, translation in $RESULTS_DIR/$NAME/test_latest"
