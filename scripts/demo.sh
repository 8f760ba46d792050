#!/usr/bin/env bash
# The demo: synthetic horse->zebra-like data, a few minutes of SRC + hDCE training on CPU, test.py,
# and paired metrics against the known answer. Settings can be overridden from the environment.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
DEMO_DIR=${DEMO_DIR:-demo_out}
EPOCHS=${EPOCHS:-6}
EPOCHS_DECAY=${EPOCHS_DECAY:-4}
N_TRAIN=${N_TRAIN:-120}
SIZE=${SIZE:-64}
NAME=${NAME:-demo_src_hdce}
DATA="$DEMO_DIR/synthetic"

echo "== 1/4 synthetic dataset -> $DATA"
"$PYTHON" datasets/make_synthetic_dataset.py --root "$DATA" --overwrite --n_train "$N_TRAIN" --n_test 20 --size "$SIZE" --seed 0

echo "== 2/4 training src_hdce (horse2zebra recipe, small generator, ${SIZE}px, CPU)"
"$PYTHON" train.py --dataroot "$DATA" --name "$NAME" --checkpoints_dir "$DEMO_DIR/checkpoints" \
  --model src_hdce --dce_idt --lambda_HDCE 0.1 --lambda_SRC 0.05 \
  --use_curriculum --HDCE_gamma 50 --HDCE_gamma_min 10 \
  --netG resnet_6blocks --ngf 16 --ndf 16 --num_patches 64 \
  --load_size "$SIZE" --crop_size "$SIZE" --n_epochs "$EPOCHS" --n_epochs_decay "$EPOCHS_DECAY" \
  --gpu_ids -1 --num_threads 0 --display_id 0 --print_freq 40 --display_freq 200 \
  --save_epoch_freq 5 --seed 0

echo "== 3/4 test.py"
"$PYTHON" test.py --dataroot "$DATA" --name "$NAME" --checkpoints_dir "$DEMO_DIR/checkpoints" \
  --results_dir "$DEMO_DIR/results" --model src_hdce --netG resnet_6blocks --ngf 16 \
  --load_size "$SIZE" --crop_size "$SIZE" --gpu_ids -1 --num_test 20 --seed 0

IMAGES="$DEMO_DIR/results/$NAME/test_latest/images"
echo "== 4/4 paired metrics against the ground-truth translation"
"$PYTHON" scripts/paired_metrics.py --pred "$IMAGES/fake_B" --gt "$DATA/testA_gt" --mask "$DATA/testA_mask" \
  --out "$DEMO_DIR/metrics_translation.json"
echo "-- the untranslated input as a baseline (copying A scores this):"
"$PYTHON" scripts/paired_metrics.py --pred "$IMAGES/real_A" --gt "$DATA/testA_gt" --mask "$DATA/testA_mask" \
  --out "$DEMO_DIR/metrics_identity.json"

echo
echo "HTML results : $DEMO_DIR/results/$NAME/test_latest/index.html"
echo "training log : $DEMO_DIR/checkpoints/$NAME/loss_log.jsonl"
echo "metrics      : $DEMO_DIR/metrics_translation.json (baseline: $DEMO_DIR/metrics_identity.json)"
