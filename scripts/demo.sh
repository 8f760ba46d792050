#!/usr/bin/env bash
# The demo: synthetic horse->zebra-like data, a few minutes of SRC + hDCE training on CPU with the CPU
# recipe (recipes/cpu_demo.txt on recipes/cpu_budget.txt + cpu_schedule.txt), test.py, then the task's
# phase-invariant scores next to the true translation's and a PNG grid of the translations.
# Settings can be overridden from the environment: PYTHON (default .venv/bin/python), DEMO_DIR=demo_out,
# N_TRAIN=200, N_TEST=40, SIZE=64, NAME=demo_src_hdce, EXTRA_ARGS (more train.py flags).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/base.sh"
if help_requested "$@"; then script_help; exit 0; fi
cd "$BASE_REPO"
find_python
DEMO_DIR=${DEMO_DIR:-demo_out}
N_TRAIN=${N_TRAIN:-200}
N_TEST=${N_TEST:-40}
SIZE=${SIZE:-64}
NAME=${NAME:-demo_src_hdce}
EXTRA_ARGS=${EXTRA_ARGS:-}
DATA="$DEMO_DIR/synthetic"
read -ra BUDGET <<<"$(bash scripts/recipe.sh cpu_budget)"
read -ra SCHEDULE <<<"$(bash scripts/recipe.sh cpu_schedule)"
read -ra RECIPE <<<"$(bash scripts/recipe.sh cpu_demo)"
read -ra PAPER <<<"$(bash scripts/recipe.sh horse2zebra)"
start=$SECONDS

echo "== 1/4 synthetic dataset -> $DATA"
"$PYTHON" datasets/make_synthetic_dataset.py --root "$DATA" --overwrite --n_train "$N_TRAIN" --n_test "$N_TEST" \
  --size "$SIZE" --seed 0

echo "== 2/4 training src_hdce on CPU (${SIZE}px): ${BUDGET[*]} ${SCHEDULE[*]} ${RECIPE[*]}"
"$PYTHON" - "${RECIPE[@]}" -- "${PAPER[@]}" <<'EOF'
import sys
args = sys.argv[1:]
cut = args.index('--')
ours, paper = args[:cut], args[cut + 1:]
def settings(flags):
    out, i = {}, 0
    while i < len(flags):
        takes_value = i + 1 < len(flags) and not flags[i + 1].startswith('--')
        out[flags[i]] = flags[i + 1] if takes_value else 'on'
        i += 2 if takes_value else 1
    return out
ours, paper = settings(ours), settings(paper)
for name, value in ours.items():
    if paper.get(name) != value:
        theirs = paper[name] if name in paper else "CUT's default (it does not set the flag)"
        print(f'   note: {name} {value} here; the paper\'s horse2zebra recipe: {theirs} '
              f'(why: recipes/cpu_demo.txt, studies/results_cpu.md 2.2)')
print('   note: networks smaller than the paper\'s (resnet_9blocks, ngf/ndf 64, 256 patches, antialiased '
      'resampling, 256 px): recipes/cpu_budget.txt')
EOF
# shellcheck disable=SC2086  # the launcher preloads tcmalloc/jemalloc where installed (cpu/launch.py)
"$PYTHON" -m cpu.launch -- "$PYTHON" train.py --dataroot "$DATA" --name "$NAME" --checkpoints_dir "$DEMO_DIR/checkpoints" \
  "${BUDGET[@]}" "${SCHEDULE[@]}" "${RECIPE[@]}" --load_size "$SIZE" --crop_size "$SIZE" \
  --gpu_ids -1 --num_threads 0 --display_id 0 --print_freq 200 --display_freq 400 --save_epoch_freq 1 --seed 0 \
  --overwrite \
  $EXTRA_ARGS

echo "== 3/4 test.py"
"$PYTHON" test.py --dataroot "$DATA" --name "$NAME" --checkpoints_dir "$DEMO_DIR/checkpoints" \
  --results_dir "$DEMO_DIR/results" --model src_hdce "${BUDGET[@]}" --load_size "$SIZE" --crop_size "$SIZE" \
  --gpu_ids -1 --num_test "$N_TEST" --seed 0

RESULT="$DEMO_DIR/results/$NAME/test_latest"
echo "== 4/4 scores on the $N_TEST test images (evaluation/synthetic.py)"
"$PYTHON" -m evaluation.synthetic "$RESULT" --data "$DATA" --baselines --json "$DEMO_DIR/scores.json" \
  --grid "$DEMO_DIR/translations.png" --grid_num 8 >/dev/null
"$PYTHON" - "$DEMO_DIR/scores.json" <<'EOF'
import json, sys
result = json.load(open(sys.argv[1]))
ours, base = result['mean'], result['baselines']
rows = [('stripe_iou', 'stripe IoU with the object masks', '↑'), ('bg_l1', 'background L1 to the input', '↓'),
        ('leakage', 'stripes outside the objects', '↓'), ('shape_iou', 'changed pixels IoU with the masks', '↑'),
        ('kid', 'texture KID to real zebras (testB)', '↓'), ('psnr_gt', 'PSNR to the true image (dB)', '↑')]
print(f'{"score":<38} {"translation":>12} {"truth":>8} {"copy":>8}')
for key, title, arrow in rows:
    print(f'{title + " " + arrow:<38} {ours[key]:>12.3f} {base["truth"][key]:>8.3f} {base["copy_input"][key]:>8.3f}')
print('truth: the true translation (testA_gt); copy: the untranslated input. PSNR to the true image '
      'punishes a stripe phase the input cannot determine, so it is secondary.')
EOF

echo
echo "translations : $DEMO_DIR/translations.png (input / translation / truth / stripes found)"
echo "HTML results : $RESULT/index.html"
echo "training log : $DEMO_DIR/checkpoints/$NAME/loss_log.jsonl"
echo "scores       : $DEMO_DIR/scores.json"
echo "curves       : python -m evaluation.curves --data $DATA --runs $DEMO_DIR/checkpoints/$NAME --out $DEMO_DIR/curves"
echo "demo took $((SECONDS - start)) s"
