"""Time and memory of one training step (model.optimize_parameters) on fixed random images; JSON out.

    python scripts/benchmark.py --model src_hdce --crop_size 256 --batch_size 1 --amp bf16
    python scripts/benchmark.py --crop_size 128 --reference          # the step computed the official way
    python scripts/benchmark.py --crop_size 128 --alternate          # both, interleaved: a robust ratio
    python scripts/benchmark.py --model cut --crop_size 256 -- --nce_idt false --netG resnet_6blocks

The step runs `--warmup` times untimed, then `--repeats` times timed one by one; the report gives every
time, the median, min and max. Peak memory is torch.cuda.max_memory_allocated over the timed steps on a
GPU, and the process's peak resident set size on CPU (so measure one configuration per process).
`--reference` computes the same losses and gradients the way the official Hneg_SRC / CUT code does (the
test oracle, studies/official_step.py): encoder features recomputed branch by branch, autograd graphs built for the
detached k side, CUT's plain layers (no training kernels) and no heap trimming. `--alternate` builds
both models from the same seed and times their steps in turn.
Flags after `--` go to train.py's option parser; src_hdce gets the horse2zebra recipe
(recipes/horse2zebra.txt) unless `--recipe none`. On the CPU, start it as training is started, through the
launcher that preloads tcmalloc/jemalloc: `python -m cpu.launch -- python scripts/benchmark.py --gpu_ids -1 ...`.
"""
import argparse
import contextlib
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402

from models import create_model  # noqa: E402
from studies.official_step import official_runtime, official_step  # noqa: E402
from models.patch_contrastive import PatchContrastiveModel  # noqa: E402
from options.train_options import TrainOptions  # noqa: E402
from util.recipes import read_recipe  # noqa: E402
from util.util import cpu_name, report_json  # noqa: E402


def recipe_flags(name):
    """The training flags of a recipe without its --model (the benchmark's --model decides)."""
    return [] if name == 'none' else read_recipe({'h2z': 'horse2zebra'}.get(name, name), with_model=False)


RECIPES = ('h2z', 'none')


def parse_args(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    extra = []
    if '--' in argv:
        cut = argv.index('--')
        argv, extra = argv[:cut], argv[cut + 1:]
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--model', default='src_hdce')
    p.add_argument('--crop_size', type=int, default=256)
    p.add_argument('--batch_size', type=int, default=1)
    p.add_argument('--amp', default='off', choices=['off', 'bf16', 'fp16'])
    p.add_argument('--channels_last', action='store_true')
    p.add_argument('--compile', action='store_true')
    p.add_argument('--reference', action='store_true', help='time the step computed the official way')
    p.add_argument('--alternate', action='store_true',
                   help='time the optimised and the reference step alternately in this process')
    p.add_argument('--recipe', default=None, choices=sorted(RECIPES),
                   help='training flags of a published recipe (default: h2z for src_hdce, none otherwise)')
    p.add_argument('--gpu_ids', default='-1', help='-1: CPU; 0: the first GPU')
    p.add_argument('--threads', type=int, default=None, help='torch.set_num_threads (CPU)')
    p.add_argument('--warmup', type=int, default=2)
    p.add_argument('--repeats', type=int, default=5)
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--out', default=None, help='also write the JSON here')
    args = p.parse_args(argv)
    if args.reference and args.alternate:
        p.error('--alternate already times the reference step; drop --reference')
    if args.repeats < 1 or args.warmup < 0:
        p.error('--repeats must be >= 1 and --warmup >= 0')
    if args.recipe is None:
        args.recipe = 'h2z' if args.model == 'src_hdce' else 'none'
    return args, extra


def train_argv(args, extra, checkpoints_dir):
    return (['--model', args.model, '--dataroot', 'unused', '--checkpoints_dir', checkpoints_dir,
             '--name', 'benchmark', '--gpu_ids', args.gpu_ids, '--seed', str(args.seed),
             '--load_size', str(args.crop_size), '--crop_size', str(args.crop_size),
             '--batch_size', str(args.batch_size), '--amp', args.amp, '--display_id', '0', '--no_tqdm']
            + (['--channels_last'] if args.channels_last else [])
            + (['--compile'] if args.compile else [])
            + recipe_flags(args.recipe) + list(extra))


def fixed_batch(batch_size, size, seed, channels=3):
    """Images in [-1, 1] drawn from `seed` alone, so every variant sees the same inputs."""
    g = torch.Generator().manual_seed(seed)
    return {'A': torch.rand(batch_size, channels, size, size, generator=g) * 2 - 1,
            'B': torch.rand(batch_size, channels, size, size, generator=g) * 2 - 1,
            'A_paths': [f'a{i}' for i in range(batch_size)], 'B_paths': [f'b{i}' for i in range(batch_size)]}


def build(args, extra, checkpoints_dir, official=False):
    """The model, set up as train.py does (`official`: run by the oracle's runtime), and its batch; option
    printouts go to stderr."""
    with contextlib.redirect_stdout(sys.stderr):
        opt = TrainOptions(train_argv(args, extra, checkpoints_dir)).parse()
        if opt.gpu_ids:  # as train.py: the run's GPU is the current device
            torch.cuda.set_device(opt.gpu_ids[0])
        torch.manual_seed(args.seed)
        model = create_model(opt, official_runtime(opt) if official else None)
        model.runtime.configure_process(opt.preprocess)  # train.py's process settings (cuDNN autotuning)
        if official and not isinstance(model, PatchContrastiveModel):
            raise SystemExit(f'error: --model {args.model} has no reference step (only the patch-contrastive '
                             f'models cut, src_hdce and sin_src_hdce have one)')
        batch = fixed_batch(args.batch_size, args.crop_size, args.seed, opt.input_nc)
        model.set_epoch(1)
        model.data_dependent_initialize(batch)
        model.setup(opt)
        model.parallelize()
    return model, batch


def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: kilobytes


def current_rss_mb():
    with open('/proc/self/statm') as f:
        return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE') / 2 ** 20


def summary(timings, batch_size):
    """Wall-clock statistics of (wall, cpu) step timings, plus the median CPU time of the process: on a
    machine shared with other jobs the CPU time moves much less than the wall time (with one thread)."""
    seconds = [wall for wall, _ in timings]
    median = statistics.median(seconds)
    return {'step_seconds': [round(s, 4) for s in seconds], 'median_s': round(median, 4),
            'min_s': round(min(seconds), 4), 'max_s': round(max(seconds), 4),
            'iters_per_s': round(1 / median, 3), 'images_per_s': round(batch_size / median, 3),
            'cpu_median_s': round(statistics.median(cpu for _, cpu in timings), 4)}


def run(args, extra):
    if args.threads:
        torch.set_num_threads(args.threads)
    checkpoints_dir = tempfile.mkdtemp(prefix='benchmark_')
    try:
        model, batch = build(args, extra, checkpoints_dir, official=args.reference)
        reference = build(args, extra, checkpoints_dir, official=True)[0] if args.alternate else None
    finally:
        shutil.rmtree(checkpoints_dir, ignore_errors=True)
    cuda = model.device.type == 'cuda'
    sync = model.runtime.synchronize
    rss_setup = current_rss_mb()

    def timed(net, official):
        net.set_input(batch)
        sync()
        start, cpu_start = time.perf_counter(), time.process_time()
        official_step(net) if official else net.optimize_parameters()
        sync()
        return time.perf_counter() - start, time.process_time() - cpu_start

    def step(official):
        return timed(reference, True) if official and reference is not None else timed(model, official)

    for _ in range(args.warmup):
        step(args.reference)
        if args.alternate:
            step(True)
    if cuda:
        torch.cuda.reset_peak_memory_stats(model.device)
    times, reference_times = [], []
    for _ in range(args.repeats):
        times.append(step(args.reference))
        if args.alternate:
            reference_times.append(step(True))

    result = {
        'model': args.model, 'recipe': args.recipe, 'extra_flags': extra, 'crop_size': args.crop_size,
        'batch_size': args.batch_size, 'amp': args.amp, 'channels_last': args.channels_last,
        'compile': args.compile, 'step': 'alternate' if args.alternate else ('reference' if args.reference
                                                                              else 'optimised'),
        'device': torch.cuda.get_device_name(model.device) if cuda else cpu_name(),
        'torch': torch.__version__, 'threads': torch.get_num_threads(), 'allocator': model.runtime.allocator,
        'heap_trimmed': model.runtime.trim_heap, 'cudnn_benchmark': torch.backends.cudnn.benchmark,
        'warmup': args.warmup, 'repeats': args.repeats,
        'losses': {k: round(v, 6) for k, v in model.get_current_losses().items()},
    }
    result.update(summary(times, args.batch_size))
    if args.alternate:
        result['reference'] = summary(reference_times, args.batch_size)
        ratios = [t / r for (t, _), (r, _) in zip(times, reference_times)]
        result['time_ratio_to_reference'] = {'median': round(statistics.median(ratios), 4),
                                             'min': round(min(ratios), 4), 'max': round(max(ratios), 4)}
    if cuda:
        result['peak_memory_mb'] = round(torch.cuda.max_memory_allocated(model.device) / 2 ** 20, 1)
        result['memory_kind'] = 'cuda_max_memory_allocated'
    else:
        result['peak_memory_mb'] = round(peak_rss_mb(), 1)
        result['memory_kind'] = 'process_peak_rss'
        result['rss_after_setup_mb'] = round(rss_setup, 1)
    return result


def main(argv=None):
    args, extra = parse_args(argv)
    result = run(args, extra)
    report_json(result, args.out)
    return 0


if __name__ == '__main__':
    sys.exit(main())
