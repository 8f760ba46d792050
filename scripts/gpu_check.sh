#!/usr/bin/env bash
# Does this project work on this GPU machine? One command, about 10 minutes on one GPU:
#
#   bash scripts/gpu_check.sh                 # from the repository root, after `make venv`
#
# Tiny synthetic data; train.py (src_hdce) in float32, --amp bf16, --amp fp16, --channels_last, --compile;
# resume on the GPU, a GPU checkpoint resumed on the CPU and a CPU one on the GPU; test.py; FID with random
# Inception weights on the GPU against the CPU value; stargan_v2 for a few steps and its evaluation; torchrun
# with one process (NCCL) and, where two GPUs are visible, two; the tests marked `cuda`; scripts/benchmark.py
# at 256 px in float32 and bf16. One line per check, PASS or FAIL (with its log); every check runs whatever
# failed before; the exit status is the number of failures.
#
# Environment:
#   PYTHON=.venv/bin/python     the interpreter
#   GPU_CHECK_DIR=/tmp/gpu_check  work folder (emptied first): data, checkpoints, one log per check
#   GPU_IDS=0                   the GPU to check (torchrun with two processes takes GPUs 0 and 1)
#   GPU_CHECK_CPU=1             run the same checks on the CPU (--gpu_ids -1, gloo, benchmark at 32 px), less
#                               those that compare with or need CUDA: what CI runs (tests/test_gpu_check.py)
#   ONLY=REGEX                  run only the checks whose name matches
#   LIST=1                      print the checks' names and exit
set -u
cd "$(dirname "$0")/.." || exit 1
PYTHON=${PYTHON:-.venv/bin/python}
DIR=${GPU_CHECK_DIR:-${TMPDIR:-/tmp}/gpu_check}
CPU=${GPU_CHECK_CPU:-0}
ONLY=${ONLY:-}
export PYTHONUNBUFFERED=1

if [[ "$CPU" == 1 ]]; then
    GPU=-1 DEVICE=cpu BENCH_SIZE=32 NGPU=0
else
    GPU=${GPU_IDS:-0} DEVICE="cuda:${GPU_IDS:-0}" BENCH_SIZE=256
    NGPU=$("$PYTHON" -c 'import torch; print(torch.cuda.device_count())' 2>/dev/null || echo 0)
fi

# the checks, in order; a name ending in @cuda needs a GPU (left out with GPU_CHECK_CPU=1), @2gpu two
CHECKS=(
    cuda_available@cuda data train_fp32 resume_same_device resume_on_cpu@cuda resume_cpu_checkpoint_on_gpu@cuda
    train_bf16 train_fp16 train_channels_last train_compile test_py fid_gpu_equals_cpu@cuda stargan_v2_train
    stargan_v2_evaluate torchrun_one_process torchrun_two_processes@2gpu pytest_cuda@cuda benchmark_float32
    benchmark_bf16
)

selected() {
    [[ -n "$ONLY" && ! "${1%@*}" =~ $ONLY ]] && return 1
    [[ "$1" == *@cuda && "$CPU" == 1 ]] && return 1
    [[ "$1" == *@2gpu && "$CPU" != 1 && "$NGPU" -lt 2 ]] && return 1
    return 0
}

if [[ "${LIST:-0}" == 1 ]]; then
    for c in "${CHECKS[@]}"; do selected "$c" && echo "${c%@*}"; done
    exit 0
fi

rm -rf "$DIR" && mkdir -p "$DIR" || exit 1
FAILED=0
# check NAME COMMAND...: run it with a time limit (T seconds, default 300), its output in $DIR/NAME.log; PASS when
# it exits 0 and, when EXPECT is set, the log matches that regular expression
check() {
    local name=$1 log="$DIR/$1.log"
    shift
    if timeout -k 20 "${T:-300}" "$@" >"$log" 2>&1 && { [[ -z "${EXPECT:-}" ]] || grep -Eq "$EXPECT" "$log"; }; then
        echo "PASS $name"
    else
        echo "FAIL $name (log: $log)"
        FAILED=$((FAILED + 1))
    fi
}
want() {
    local c
    for c in "${CHECKS[@]}"; do [[ "${c%@*}" == "$1" ]] && { selected "$c"; return; }; done
    echo "gpu_check.sh: no check named $1" >&2
    exit 99
}

H2Z="$DIR/h2z" MM="$DIR/mm" CKPT="$DIR/checkpoints"
# shellcheck disable=SC2207
TRAIN=(train.py --dataroot "$H2Z" --checkpoints_dir "$CKPT" $(bash scripts/recipe.sh horse2zebra) --load_size 64 --ngf 8
       --crop_size 64 --ndf 8 --num_patches 32 --num_threads 2 --display_id 0 --no_html --no_tqdm
       --print_freq 2 --seed 0 --n_epochs 1 --n_epochs_decay 1)
RUNTIME="runtime: $DEVICE"

want cuda_available && check cuda_available "$PYTHON" -c \
    "import torch; assert torch.cuda.is_available(); print(torch.__version__, torch.cuda.get_device_name(${GPU%%,*}))"
want data && check data bash -c "'$PYTHON' datasets/make_synthetic_dataset.py --root '$H2Z' --n_train 8 --n_test 8 \
    --size 64 && '$PYTHON' datasets/make_multidomain_dataset.py --root '$MM' --n_train 4 --n_val 2 --size 32 --domains 2"

want train_fp32 && EXPECT="$RUNTIME, amp off" check train_fp32 "$PYTHON" "${TRAIN[@]}" --name fp32 --gpu_ids "$GPU" \
    --max_iters 4
want resume_same_device && EXPECT='resuming at epoch 1, iteration 4 of the epoch' check resume_same_device \
    "$PYTHON" "${TRAIN[@]}" --name fp32 --gpu_ids "$GPU" --continue_train --max_iters 8
want resume_on_cpu && EXPECT='runtime: cpu' check resume_on_cpu \
    "$PYTHON" "${TRAIN[@]}" --name fp32 --gpu_ids -1 --continue_train --max_iters 10
want resume_cpu_checkpoint_on_gpu && EXPECT="$RUNTIME" check resume_cpu_checkpoint_on_gpu bash -c \
    "'$PYTHON' ${TRAIN[*]} --name cpu_first --gpu_ids -1 --max_iters 2 && \
     '$PYTHON' ${TRAIN[*]} --name cpu_first --gpu_ids $GPU --continue_train --max_iters 4"
for amp in bf16 fp16; do
    want train_$amp && EXPECT="$RUNTIME, amp $amp" check train_$amp "$PYTHON" "${TRAIN[@]}" --name $amp --gpu_ids "$GPU" \
        --amp $amp --max_iters 4
done
want train_channels_last && EXPECT="$RUNTIME, amp bf16, channels-last" check train_channels_last \
    "$PYTHON" "${TRAIN[@]}" --name channels_last --gpu_ids "$GPU" --amp bf16 --channels_last --max_iters 4
want train_compile && T=600 EXPECT="$RUNTIME, amp off, NCHW, compiled" check train_compile \
    "$PYTHON" "${TRAIN[@]}" --name compiled --gpu_ids "$GPU" --compile --max_iters 4
want test_py && EXPECT='translated|images' check test_py "$PYTHON" test.py --dataroot "$H2Z" --checkpoints_dir "$CKPT" \
    --name fp32 --results_dir "$DIR/results" --gpu_ids "$GPU" --load_size 64 --num_test 8 --crop_size 64

# FID of the float32 run's translations with a random 64-dimension Inception, on the GPU and on the CPU
want fid_gpu_equals_cpu && check fid_gpu_equals_cpu "$PYTHON" - "$DIR" "$DEVICE" <<'EOF'
import json, subprocess, sys
import torch, torchvision
work, device = sys.argv[1:]
torch.manual_seed(0)
weights = f'{work}/random_inception.pth'
torch.save(torchvision.models.inception_v3(num_classes=1008, aux_logits=False, weights=None,
                                           init_weights=True).state_dict(), weights)
fid = {}
for d in (device, 'cpu'):
    out = f'{work}/fid_{d.replace(":", "")}.json'
    subprocess.run([sys.executable, '-m', 'evaluation.fid', f'{work}/results/fp32/test_latest/images/fake_B',
                    f'{work}/h2z/testB', '--dims', '64', '--no-kid', '--num-workers', '0', '--device', d,
                    '--fid-weights', weights, '--json', out], check=True, stdout=subprocess.DEVNULL)
    fid[d] = json.load(open(out))['metrics']['fid']
print(fid)
assert abs(fid[device] - fid['cpu']) <= 1e-3 * abs(fid['cpu']) + 1e-4, 'FID on the GPU and on the CPU differ'
EOF

MMTRAIN=(train.py --dataroot "$MM" --checkpoints_dir "$CKPT" --model stargan_v2 --num_domains 2 --crop_size 32
         --load_size 32 --base_dim 8 --max_conv_dim 16 --hidden_dim 16 --num_patches 16 --batch_size 2
         --num_threads 0 --display_id 0 --no_html --no_tqdm --print_freq 2 --seed 3 --n_epochs 2 --gpu_ids "$GPU")
want stargan_v2_train && EXPECT="$RUNTIME" check stargan_v2_train "$PYTHON" "${MMTRAIN[@]}" --name stargan
want stargan_v2_evaluate && check stargan_v2_evaluate "$PYTHON" -m evaluation.multimodal --checkpoints_dir "$CKPT" \
    --name stargan --dataroot "$MM" --out "$DIR/stargan_eval" --num_outs_per_domain 2 --random_weights \
    --fid_input_size 75 --device "$DEVICE" --no_tqdm

want torchrun_one_process && EXPECT="$RUNTIME" check torchrun_one_process "$PYTHON" -m torch.distributed.run \
    --standalone --nproc_per_node 1 "${TRAIN[@]}" --name torchrun1 --gpu_ids "$GPU" --max_iters 4
TWO=$([[ "$CPU" == 1 ]] && echo -1 || echo 0)
want torchrun_two_processes && EXPECT='2 processes' check torchrun_two_processes "$PYTHON" -m torch.distributed.run \
    --standalone --nproc_per_node 2 "${TRAIN[@]}" --name torchrun2 --gpu_ids "$TWO" --max_iters 8

want pytest_cuda && T=600 check pytest_cuda "$PYTHON" -m pytest -q -p no:cacheprovider -m cuda tests

for amp in float32 bf16; do
    flag=$([[ $amp == bf16 ]] && echo bf16 || echo off)
    want benchmark_$amp && T=600 check benchmark_$amp "$PYTHON" scripts/benchmark.py --crop_size "$BENCH_SIZE" \
        --gpu_ids "$GPU" --amp "$flag" --warmup 2 --repeats 5 --out "$DIR/benchmark_$amp.json"
done

echo "$FAILED check(s) failed; logs in $DIR"
exit "$FAILED"
