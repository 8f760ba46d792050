#!/usr/bin/env bash
# Does this project work on this GPU machine? One command, in parts of at most 8 minutes each:
#
#   bash scripts/gpu_check.sh                               # every part, from the repository root
#   ONLY=basics bash scripts/gpu_check.sh                   # one part (or a regular expression of checks)
#
# Runs on a bare GPU machine (CUDA PyTorch as python3, no network, no .venv): python3 is the default
# interpreter where .venv is missing, and the pure-Python packages that machine lacks (visdom, dominate,
# pytorch-fid, torchprofile, tqdm, pytest, ...) come from a folder of wheels built beforehand with
# scripts/gpu_wheels.sh, unpacked under GPU_CHECK_DIR and put on PYTHONPATH (no pip, no network).
#
# Parts: basics (train.py in float32, --amp bf16 / fp16, --channels_last; resume on the GPU, on the CPU and the
# reverse; test.py; FID on the GPU against the CPU; one step's losses on the GPU against the CPU), sync_free (the
# training step reads nothing back to the host, for every model and under bf16 / fp16 / channels_last), compile
# (--compile under TORCH_LOGS=recompiles: train.py and the sync-free step), models (stargan_v2 trained and
# evaluated), distributed (an NCCL process group and train.py under a one-process torchrun; two processes where
# two GPUs are visible), pytest (the tests marked cuda), benchmark and benchmark_compile (scripts/benchmark.py at
# 256 px against the in-repo official step, side by side), compression (studies/compression/gpu_check.py).
# One line per check, PASS or FAIL (with its log); every check runs whatever failed before; the exit status is the
# number of failures; summary.json lists every check.
#
# Environment:
#   PYTHON=.venv/bin/python     the interpreter (python3 where .venv is missing)
#   GPU_WHEELS=gpu_wheels       the wheels folder of scripts/gpu_wheels.sh (default: gpu_wheels/ when it exists)
#   GPU_CHECK_DIR=/tmp/gpu_check  work folder (emptied first): data, checkpoints, one log per check, summary.json
#   GPU_IDS=0                   the GPU to check (torchrun with two processes takes GPUs 0 and 1)
#   GPU_CHECK_CPU=1             run the same checks on the CPU (--gpu_ids -1, gloo, benchmark at 32 px), less
#                               those that compare with or need CUDA: what CI runs (tests/test_gpu_check.py)
#   ONLY=REGEX                  run only the checks whose name or part matches
#   PART_SECONDS=480            a part starts no check after this long (each check's limit is cut to fit)
#   LIST=1                      print the checks' names and exit
set -u
source "$(dirname "${BASH_SOURCE[0]}")/base.sh"
if help_requested "$@"; then script_help; exit 0; fi
cd "$(dirname "$0")/.." || exit 1
if [[ -z "${PYTHON:-}" ]]; then
    PYTHON=$([[ -x .venv/bin/python ]] && echo .venv/bin/python || echo python3)
fi
DIR=${GPU_CHECK_DIR:-${TMPDIR:-/tmp}/gpu_check}
CPU=${GPU_CHECK_CPU:-0}
ONLY=${ONLY:-}
WHEELS=${GPU_WHEELS:-$([[ -d gpu_wheels ]] && echo gpu_wheels)}
PART_SECONDS=${PART_SECONDS:-480}
export PYTHONUNBUFFERED=1

if [[ "$CPU" == 1 ]]; then
    GPU=-1 DEVICE=cpu BENCH_SIZE=32 NGPU=0
else
    GPU=${GPU_IDS:-0} DEVICE="cuda:${GPU_IDS:-0}" BENCH_SIZE=256
    NGPU=$("$PYTHON" -c 'import torch; print(torch.cuda.device_count())' 2>/dev/null || echo 0)
fi

MODELS=(src_hdce cut sin_src_hdce cycle_gan pix2pix stargan_v2)
# the checks, in order, as part/name; a name ending in @cuda needs a GPU (left out with GPU_CHECK_CPU=1), @2gpu two
CHECKS=(
    basics/cuda_available@cuda basics/train_fp32 basics/resume_same_device basics/resume_on_cpu@cuda
    basics/resume_cpu_checkpoint_on_gpu@cuda basics/train_bf16 basics/train_fp16 basics/train_channels_last
    basics/test_py basics/fid_gpu_equals_cpu@cuda basics/device_vs_cpu
    "${MODELS[@]/#/sync_free/sync_free_}" sync_free/sync_free_src_hdce_bf16 sync_free/sync_free_src_hdce_fp16
    sync_free/sync_free_stargan_v2_fp16 sync_free/sync_free_src_hdce_channels_last
    compile/train_compile compile/sync_free_src_hdce_compile
    models/stargan_v2_train models/stargan_v2_evaluate
    distributed/process_group distributed/torchrun_one_process distributed/torchrun_two_processes@2gpu
    pytest/pytest_cuda@cuda
    benchmark/benchmark_float32 benchmark/benchmark_bf16 benchmark/benchmark_channels_last
    benchmark_compile/benchmark_compile compression/compression_table3
)

name_of() { local c=${1#*/}; echo "${c%@*}"; }
selected() {
    local part=${1%%/*} name
    name=$(name_of "$1")
    [[ -n "$ONLY" && ! "$name" =~ $ONLY && ! "$part" =~ $ONLY ]] && return 1
    [[ "$1" == *@cuda && "$CPU" == 1 ]] && return 1
    [[ "$1" == *@2gpu && "$CPU" != 1 && "$NGPU" -lt 2 ]] && return 1
    return 0
}

if [[ "${LIST:-0}" == 1 ]]; then
    for c in "${CHECKS[@]}"; do selected "$c" && name_of "$c"; done
    exit 0
fi

rm -rf "$DIR" && mkdir -p "$DIR" || exit 1
FAILED=0 RESULTS=() PART='' PART_START=0 CARRIED='' CURRENT=''

json_string() { local s=${1//\\/\\\\}; s=${s//\"/\\\"}; printf '"%s"' "$s"; }
write_summary() {
    local IFS=,
    {
        printf '{"device": %s, "python": %s, "torch": %s, "cpu_mode": %s, "wheels": %s, "carried": [%s],\n' \
            "$(json_string "$DEVICE")" "$(json_string "$PYTHON")" "$(json_string "$TORCH")" \
            "$([[ $CPU == 1 ]] && echo true || echo false)" \
            "$([[ -n $WHEELS ]] && json_string "$WHEELS" || echo null)" "$CARRIED"
        printf ' "failed": %d, "checks": [\n  %s\n]}\n' "$FAILED" "${RESULTS[*]}"
    } >"$DIR/summary.json.tmp" && mv "$DIR/summary.json.tmp" "$DIR/summary.json"
}

# the carried wheels whose packages this python lacks, unpacked into $DIR/site (a pure-Python wheel is a zip of
# its files); the packages it has stay its own
if [[ -n "$WHEELS" ]]; then
    CARRIED=$("$PYTHON" - "$WHEELS" "$DIR/site" <<'EOF'
import importlib.util, pathlib, sys, zipfile
wheels, site = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
if not any(wheels.glob('*.whl')):
    sys.exit(f'error: GPU_WHEELS={wheels} holds no wheels: build them with scripts/gpu_wheels.sh {wheels}')


def missing(module):
    try:
        return importlib.util.find_spec(module) is None
    except Exception:  # an import hook's refusal or a broken copy: carry it
        return True


carried = []
for wheel in sorted(wheels.glob('*.whl')):
    with zipfile.ZipFile(wheel) as z:
        tops = {n.split('/')[0] for n in z.namelist()} - {''}
        modules = [t[:-3] if t.endswith('.py') else t for t in tops
                   if not t.endswith(('.dist-info', '.data', '.pth')) and (t.endswith('.py') or '.' not in t)]
        if any(missing(m) for m in modules):
            z.extractall(site)
            carried.append(f'"{wheel.name}"')
print(','.join(carried))
EOF
) || exit 1
    export PYTHONPATH="$DIR/site${PYTHONPATH:+:$PYTHONPATH}"
    echo "carried from $WHEELS: ${CARRIED:-nothing (this python has every package)}"
fi
TORCH=$("$PYTHON" -c 'import torch; print(torch.__version__)' 2>&1 | tail -1)

# check NAME COMMAND...: run it with a time limit (T seconds, default 300, cut to what is left of its part's
# PART_SECONDS), its output in $DIR/NAME.log; PASS when it exits 0 and, when EXPECT is set, the log matches that
# regular expression. Under TORCH_LOGS=recompiles the summary counts the log's recompilations.
check() {
    local name=$1 log="$DIR/$1.log" part=${CURRENT%%/*} limit start status rc recompiles=null
    shift
    if [[ "$part" != "$PART" ]]; then PART=$part PART_START=$SECONDS; fi
    limit=$((PART_SECONDS - (SECONDS - PART_START)))
    (( limit > ${T:-300} )) && limit=${T:-300}
    start=$SECONDS
    if (( limit <= 0 )); then
        echo "part $part used its ${PART_SECONDS} s before this check" >"$log"
        status=timeout
    else
        timeout -k 20 "$limit" "$@" >"$log" 2>&1
        rc=$?
        if [[ $rc == 0 ]] && { [[ -z "${EXPECT:-}" ]] || grep -Eq "$EXPECT" "$log"; }; then status=pass
        elif [[ $rc == 124 || $rc == 137 ]]; then status=timeout
        else status=fail; fi
    fi
    [[ "${TORCH_LOGS:-}" == *recompiles* ]] && recompiles=$(grep -c 'Recompiling function' "$log")
    if [[ $status == pass ]]; then echo "PASS $name"
    else echo "FAIL $name ($status; log: $log)"; FAILED=$((FAILED + 1)); fi
    RESULTS+=("{\"name\": \"$name\", \"part\": \"$part\", \"status\": \"$status\", \"seconds\": $((SECONDS - start)), \"recompiles\": $recompiles, \"log\": $(json_string "$log")}")
    write_summary
}
want() {
    local c
    for c in "${CHECKS[@]}"; do
        [[ "$(name_of "$c")" == "$1" ]] && { CURRENT=$c; selected "$c"; return; }
    done
    echo "gpu_check.sh: no check named $1" >&2
    exit 99
}

H2Z="$DIR/h2z" MM="$DIR/mm" CKPT="$DIR/checkpoints"
# shellcheck disable=SC2207
TRAIN=(train.py --dataroot "$H2Z" --checkpoints_dir "$CKPT" $(bash scripts/recipe.sh horse2zebra) --load_size 48
       --crop_size 48 --ngf 8 --ndf 8 --num_patches 32 --num_threads 2 --display_id 0 --no_html --no_tqdm
       --print_freq 2 --seed 0 --n_epochs 1 --n_epochs_decay 1)
RUNTIME="runtime: $DEVICE"

want cuda_available && check cuda_available "$PYTHON" -c \
    "import torch; assert torch.cuda.is_available(); print(torch.__version__, torch.cuda.get_device_name(${GPU%%,*}))"
# every part reads the generated data: made first, whatever ONLY selects
CURRENT=data/data check data bash -c "'$PYTHON' datasets/make_synthetic_dataset.py --root '$H2Z' --n_train 8 --n_test 8 \
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
want train_compile && T=600 TORCH_LOGS=recompiles EXPECT="$RUNTIME, amp off, NCHW, compiled" check train_compile \
    "$PYTHON" "${TRAIN[@]}" --name compiled --gpu_ids "$GPU" --compile --max_iters 4
want test_py && EXPECT='translated|images' check test_py "$PYTHON" test.py --dataroot "$H2Z" --checkpoints_dir "$CKPT" \
    --name fp32 --results_dir "$DIR/results" --gpu_ids "$GPU" --load_size 48 --crop_size 48 --num_test 8

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

want device_vs_cpu && check device_vs_cpu "$PYTHON" scripts/gpu_check.py device_vs_cpu --device "$DEVICE"

# the training step reads nothing back to the host (scripts/gpu_check.py sync_free: CUDA's sync debug mode)
for model in "${MODELS[@]}"; do
    want sync_free_$model && check sync_free_$model "$PYTHON" scripts/gpu_check.py sync_free --device "$DEVICE" \
        --model $model
done
for flags in "src_hdce --amp bf16" "src_hdce --amp fp16" "stargan_v2 --amp fp16" "src_hdce --channels_last"; do
    set -- $flags
    name=sync_free_$1_${3:-${2#--}}
    want "$name" && check "$name" "$PYTHON" scripts/gpu_check.py sync_free --device "$DEVICE" --model $flags
done
want sync_free_src_hdce_compile && T=600 TORCH_LOGS=recompiles check sync_free_src_hdce_compile \
    "$PYTHON" scripts/gpu_check.py sync_free --device "$DEVICE" --model src_hdce --compile --warmup 3

MMTRAIN=(train.py --dataroot "$MM" --checkpoints_dir "$CKPT" --model stargan_v2 --num_domains 2 --crop_size 32
         --load_size 32 --base_dim 8 --max_conv_dim 16 --hidden_dim 16 --num_patches 16 --batch_size 2
         --num_threads 0 --display_id 0 --no_html --no_tqdm --print_freq 2 --seed 3 --n_epochs 2 --gpu_ids "$GPU")
want stargan_v2_train && EXPECT="$RUNTIME" check stargan_v2_train "$PYTHON" "${MMTRAIN[@]}" --name stargan
want stargan_v2_evaluate && check stargan_v2_evaluate "$PYTHON" -m evaluation.multimodal --checkpoints_dir "$CKPT" \
    --name stargan --dataroot "$MM" --out "$DIR/stargan_eval" --num_outs_per_domain 2 --random_weights \
    --fid_input_size 75 --device "$DEVICE" --no_tqdm

want process_group && EXPECT="process group: $([[ $CPU == 1 ]] && echo gloo || echo nccl), 1 process" \
    check process_group "$PYTHON" -m torch.distributed.run --standalone --nproc_per_node 1 scripts/gpu_check.py \
    process_group --device "$DEVICE"
want torchrun_one_process && EXPECT="$RUNTIME" check torchrun_one_process "$PYTHON" -m torch.distributed.run \
    --standalone --nproc_per_node 1 "${TRAIN[@]}" --name torchrun1 --gpu_ids "$GPU" --max_iters 4
TWO=$([[ "$CPU" == 1 ]] && echo -1 || echo 0)
want torchrun_two_processes && EXPECT='2 processes' check torchrun_two_processes "$PYTHON" -m torch.distributed.run \
    --standalone --nproc_per_node 2 "${TRAIN[@]}" --name torchrun2 --gpu_ids "$TWO" --max_iters 8

want pytest_cuda && T=600 check pytest_cuda "$PYTHON" -m pytest -q -p no:cacheprovider -m cuda tests

# the optimised step and the in-repo official step (benchmark.py --alternate) side by side, one run each
for variant in float32 bf16 channels_last compile; do
    flags=$(case $variant in bf16) echo --amp bf16;; channels_last) echo --amp bf16 --channels_last;;
                             compile) echo --compile;; esac)
    # shellcheck disable=SC2086
    want benchmark_$variant && T=480 check benchmark_$variant "$PYTHON" scripts/benchmark.py --alternate \
        --crop_size "$BENCH_SIZE" --gpu_ids "$GPU" $flags --warmup 2 --repeats 5 --out "$DIR/benchmark_$variant.json"
done

# Table 3's step 1 on the device: both arms' speed and memory, sub-nets against the super-net, MACs (torchprofile)
want compression_table3 && T=480 check compression_table3 "$PYTHON" studies/compression/gpu_check.py \
    --device "$DEVICE" --json "$DIR/compression_table3.json" \
    $([[ "$CPU" == 1 ]] && echo --size 32 --ngf 8 --steps 2 --warmup 1)

write_summary
echo "$FAILED check(s) failed; logs and summary.json in $DIR"
exit "$FAILED"
