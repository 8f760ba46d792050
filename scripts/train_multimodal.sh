#!/usr/bin/env bash
# Multi-modal translation (the paper's Table 2): StarGAN v2 + L_semantic with the official recipe on Seasons or
# Weather (recipes/seasons.txt, recipes/weather.txt), then StarGAN v2's evaluation (10 outputs per source image,
# LPIPS, FID per task against the target domain's training images, latent- and reference-guided) and Table 2.
#
#   bash scripts/train_multimodal.sh                       # Seasons in ./datasets/seasons/{train,val}/<domain>/
#   DATASET=weather bash scripts/train_multimodal.sh       # Weather, 5 domains
#   BASELINE=1 bash scripts/train_multimodal.sh            # Table 2's "StarGAN v2" row (L_semantic off)
#   GPU_IDS=0,1 bash scripts/train_multimodal.sh           # torchrun, one process per GPU (--batch_size per process)
#   DRY_RUN=1 bash scripts/train_multimodal.sh             # print the commands, run nothing
#   SMOKE=1 bash scripts/train_multimodal.sh               # generated seasons, CPU, tiny networks, random metric nets
#
# Settings (environment), besides scripts/common.sh's (GPU_IDS, CHECKPOINTS_DIR, RESULTS_DIR, EXTRA_ARGS, VISDOM,
# RESUME): DATASET=seasons|weather, DATA_DIR (default $DATASETS_DIR/$DATASET), BASELINE=0|1, NAME, and the metric
# networks' weights: LPIPS_WEIGHTS (StarGAN v2's metrics/lpips_weights.ckpt), ALEXNET_WEIGHTS and
# INCEPTION_WEIGHTS (torchvision's alexnet-owt-7be5be79.pth, inception_v3_google-0cc3c7bd.pth; default: torch
# hub's cache), each loaded before the training. Layout: see docs/multimodal.md.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
DATASET=${DATASET:-seasons}
BASELINE=${BASELINE:-0}
case "$DATASET" in
    seasons | weather) ;;
    *) echo "error: DATASET must be seasons or weather, got '$DATASET'" >&2; exit 2 ;;
esac
read -ra RECIPE <<<"$(bash "$REPO/scripts/recipe.sh" "$DATASET")"
if [[ "$BASELINE" == 1 ]]; then
    read -ra ROW <<<"$(bash "$REPO/scripts/recipe.sh" stargan_v2_baseline)"
    NAME=${NAME:-${NAME_PREFIX}${DATASET}_stargan_v2}
else
    ROW=()
    NAME=${NAME:-${NAME_PREFIX}${DATASET}_stargan_v2_semantic}
fi

if [[ "$SMOKE" == 1 ]]; then
    DATA_DIR="$SMOKE_DIR/data/$DATASET"
    if [[ "$DRY_RUN" != 1 && ! -f "$DATA_DIR/meta.json" ]]; then
        mkdir -p "$SMOKE_DIR"
        log "SMOKE: generating synthetic seasons under $DATA_DIR"
        domains=4
        if [[ "$DATASET" == weather ]]; then domains=5; fi
        "$PYTHON" datasets/make_multidomain_dataset.py --root "$DATA_DIR" --n_train 8 --n_val 2 --size 32 \
            --domains "$domains" --overwrite >/dev/null
    fi
    MM_TRAIN_ARGS=(--crop_size 32 --load_size 32 --base_dim 8 --max_conv_dim 16 --hidden_dim 16 --num_patches 16
                   --batch_size 2 --max_iters $((2 * SMOKE_ITERS)) --num_threads 0 --no_tqdm --print_freq 2 --seed "$SEED")
    METRIC_ARGS=(--random_weights --fid_input_size 75 --num_outs_per_domain 2 --no_tqdm)
else
    DATA_DIR=${DATA_DIR:-$DATASETS_DIR/$DATASET}
    require_dir "$DATA_DIR/train" "expected $DATA_DIR/train/<domain>/*.jpg and $DATA_DIR/val/<domain>/ (docs/multimodal.md)"
    require_dir "$DATA_DIR/val" "expected $DATA_DIR/val/<domain>/ beside train/ (docs/multimodal.md)"
    MM_TRAIN_ARGS=(--seed "$SEED")
    METRIC_ARGS=(--device "$([[ "$EVAL_GPU" == -1 ]] && echo cpu || echo "cuda:$EVAL_GPU")")
    WEIGHT_ARGS=(--multimodal)
    if [[ -n "${LPIPS_WEIGHTS:-}" ]]; then
        METRIC_ARGS+=(--lpips_weights "$LPIPS_WEIGHTS"); WEIGHT_ARGS+=(--lpips "$LPIPS_WEIGHTS")
    fi
    if [[ -n "${ALEXNET_WEIGHTS:-}" ]]; then
        METRIC_ARGS+=(--alexnet_weights "$ALEXNET_WEIGHTS"); WEIGHT_ARGS+=(--alexnet "$ALEXNET_WEIGHTS")
    fi
    if [[ -n "${INCEPTION_WEIGHTS:-}" ]]; then
        METRIC_ARGS+=(--inception_weights "$INCEPTION_WEIGHTS"); WEIGHT_ARGS+=(--inception "$INCEPTION_WEIGHTS")
    fi
    check_weights "${WEIGHT_ARGS[@]}"
    start_visdom
fi

train_run "$NAME" "$DATA_DIR" "${RECIPE[@]}" "${ROW[@]}" "${MM_TRAIN_ARGS[@]}"
log "evaluate $NAME (StarGAN v2 protocol, latent and reference)"
main_node || { log "node $NODE_RANK: node 0 evaluates $NAME"; exit 0; }
run "$PYTHON" -m evaluation.multimodal --checkpoints_dir "$CHECKPOINTS_DIR" --name "$NAME" --dataroot "$DATA_DIR" \
    --out "$RESULTS_DIR/$NAME/multimodal" --dataset "$DATASET" "${METRIC_ARGS[@]}"
if [[ "$SMOKE" == 1 ]]; then
    run "$PYTHON" -m evaluation.multidomain_synthetic --data "$DATA_DIR" --results "$RESULTS_DIR/$NAME/multimodal/latent" \
        --json "$RESULTS_DIR/$NAME/multimodal/layout_latent.json" >/dev/null
    log "SMOKE: content scores (synthetic seasons only) in $RESULTS_DIR/$NAME/multimodal/layout_latent.json"
fi
log "done: checkpoints in $CHECKPOINTS_DIR/$NAME, metrics and Table 2 in $RESULTS_DIR/$NAME/multimodal"
