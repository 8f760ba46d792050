"""Our train.py against the official Hneg_SRC code (its Single-modal/train.py), both as whole processes; JSON out.

    python studies/benchmark_official.py --official ../Hneg_SRC --images 12 24 --size 256 --threads 2 --pairs 3
    python studies/benchmark_official.py --official ../Hneg_SRC --amp bf16          # ours in bfloat16
    python studies/benchmark_official.py --official ../Hneg_SRC -- --no_malloc_trim  # flags after -- go to ours

The official code is not part of this repository and nothing of it is committed: get it with
`git clone https://github.com/jcy132/Hneg_SRC` outside the repository and pass the clone's path. It runs
unmodified, with the interpreter of `--official_python` (default: this one).

Both sides train the horse2zebra recipe (recipes/horse2zebra.txt; the official command is the same flags
without `--model`, its default `cut` with `--CUT_mode CUT` being the paper's method) for one epoch
(`--n_epochs 1 --n_epochs_decay 0`) of the first N images of one dataset (`--max_dataset_size N`), with
`--gpu_ids -1 --num_threads 0 --display_id 0 --no_html`, batch 1, load size size*286/256 (286 for 256),
crop `--size`. Each process gets OMP_NUM_THREADS = MKL_NUM_THREADS = `--threads` (neither train.py sets a
thread count itself). For every pair and every image count the script runs ours, then the official one,
and takes from os.wait4: wall time, user and system CPU time, peak resident set (ru_maxrss), major and
minor page faults, context switches. Per-step figures are (run with more images - run with fewer) /
(difference in images), which cancels start-up, data loading set-up and the end-of-run save; the fixed
cost is the shorter run less its steps. Reported: every raw measurement, medians over pairs, ours /
official ratios of the medians, the commands, torch version and CPU. `--amp bf16` applies to ours only
(the official code has no mixed precision). Progress goes to stderr, one line per process.
Without `--data` a dataset is generated (datasets/make_synthetic_dataset.py) in a temporary folder.
"""
import argparse
import importlib.metadata
import os
import platform
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from datasets.make_synthetic_dataset import make_synthetic_dataset  # noqa: E402
from util.recipes import read_recipe  # noqa: E402
from util.util import cpu_name, report_json  # noqa: E402

SIDES = ('ours', 'official')
RECIPE = 'horse2zebra'
OFFICIAL_SOURCE = 'https://github.com/jcy132/Hneg_SRC'
# the figures a step adds to a process; per-step values are differences of these between image counts
STEP_FIELDS = ('wall_s', 'user_s', 'sys_s', 'cpu_s', 'minflt', 'majflt', 'nvcsw', 'nivcsw')
# issue 15's targets, stated for 256 px, float32 (bf16: the wall target), 2 threads
TARGETS = {'wall_per_step': 0.75, 'wall_per_step_bf16': 0.5, 'peak_rss': 0.75, 'sys_per_step_excess_s': 0.1}


@dataclass
class Job:
    """One training process: which side, with how many images, in which pair, and how to start it."""
    side: str
    images: int
    pair: int
    cmd: list
    cwd: str
    env: dict = field(default_factory=dict)  # variables set on top of this process's environment


def official_train_script(path):
    """Single-modal/train.py of the official checkout at `path` (or `path` being Single-modal itself);
    SystemExit saying how to get the code otherwise."""
    how = (f'get the official code with `git clone {OFFICIAL_SOURCE}` (or any copy of that repository) '
           f'outside this repository and pass its path; nothing of it is committed here')
    if not path:
        raise SystemExit(f'error: --official PATH is required: the checkout of the official Hneg_SRC code '
                         f'to run against; {how}')
    path = Path(path).expanduser().resolve()
    for script in (path / 'Single-modal' / 'train.py', path / 'train.py'):
        if script.is_file() and script.parent.name == 'Single-modal':
            return script
    raise SystemExit(f'error: {path} holds no Single-modal/train.py, so it is not a checkout of the official '
                     f'Hneg_SRC code; {how}')


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--official', default=None, help=f'path of a checkout of {OFFICIAL_SOURCE}')
    p.add_argument('--images', type=int, nargs=2, default=[12, 24], metavar=('FEW', 'MANY'),
                   help='the two image counts (steps per process); per step = difference / (MANY - FEW)')
    p.add_argument('--size', type=int, default=256, help='crop size; images are loaded at size*286/256')
    p.add_argument('--threads', type=int, default=2, help='OMP_NUM_THREADS and MKL_NUM_THREADS of both sides')
    p.add_argument('--pairs', type=int, default=1, help='how many times every process runs')
    p.add_argument('--amp', default='off', choices=['off', 'bf16'], help='ours only: the official code has none')
    p.add_argument('--data', default=None,
                   help='dataset folder with trainA/trainB (generated there when missing; default: a temporary one)')
    p.add_argument('--ours_env', action='append', default=[], metavar='NAME=VALUE',
                   help='an environment variable for our processes only (e.g. MALLOC_ARENA_MAX=2); repeatable')
    p.add_argument('--official_python', default=sys.executable, help='interpreter of the official side')
    p.add_argument('--out', default=None, help='also write the JSON here')
    p.add_argument('ours_extra', nargs='*', metavar='-- FLAG', help='flags after -- go to our train.py only')
    args = p.parse_args(argv)
    few, many = args.images
    if not 0 < few < many:
        p.error(f'--images needs two counts 0 < FEW < MANY, got {few} {many}')
    if args.threads < 1 or args.pairs < 1 or args.size < 1:
        p.error('--threads, --pairs and --size must be positive')
    bad = [kv for kv in args.ours_env if '=' not in kv or not kv.split('=', 1)[0]]
    if bad:
        p.error(f'--ours_env takes NAME=VALUE, got {", ".join(bad)}')
    args.train_script = official_train_script(args.official)
    return args, args.ours_extra


def common_flags(args, images, data, checkpoints_dir, name):
    return ['--dataroot', str(data), '--name', name, '--checkpoints_dir', str(checkpoints_dir),
            '--gpu_ids', '-1', '--num_threads', '0', '--display_id', '0', '--no_html',
            '--load_size', str(args.size * 286 // 256), '--crop_size', str(args.size),
            '--n_epochs', '1', '--n_epochs_decay', '0', '--max_dataset_size', str(images)]


def make_jobs(args, ours_extra, data, checkpoints_dir):
    """Every process in the order it runs: per pair, per image count, ours then the official one."""
    recipe = read_recipe(RECIPE)
    official_recipe = read_recipe(RECIPE, with_model=False)  # the official --model default, cut, is the paper's method
    threads = {'OMP_NUM_THREADS': str(args.threads), 'MKL_NUM_THREADS': str(args.threads)}
    ours_env = dict(threads, **dict(kv.split('=', 1) for kv in args.ours_env))
    amp = ['--amp', args.amp] if args.amp != 'off' else []
    jobs = []
    for pair in range(args.pairs):
        for images in args.images:
            # ours is started as users start CPU training: through the launcher that preloads tcmalloc/jemalloc
            # (cpu/launch.py, which becomes train.py: one process, measured by wait4 as before)
            ours = ([sys.executable, '-m', 'cpu.launch', '--', sys.executable, str(ROOT / 'train.py')] + recipe
                    + common_flags(args, images, data, checkpoints_dir, 'ours') + amp + list(ours_extra))
            official = ([args.official_python, str(args.train_script)] + official_recipe
                        + common_flags(args, images, data, checkpoints_dir, 'official'))
            jobs.append(Job('ours', images, pair, ours, str(ROOT), ours_env))
            jobs.append(Job('official', images, pair, official, str(args.train_script.parent), dict(threads)))
    return jobs


def run_process(job, log_path):
    """Run `job` to its end and measure it with os.wait4 (the child's own resource usage). SystemExit
    with the end of its output if it fails."""
    env = dict(os.environ, **job.env)
    with open(log_path, 'wb') as log:
        start = time.perf_counter()
        proc = subprocess.Popen(job.cmd, cwd=job.cwd, env=env, stdout=log, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        tail = Path(log_path).read_text(errors='replace').splitlines()[-30:]
        raise SystemExit(f'error: the {job.side} run failed (exit status {proc.returncode}):\n  '
                         f'{shlex.join(job.cmd)}\n  in {job.cwd}\n' + '\n'.join(tail))
    # ours says which malloc it ran on (--cpu_allocator), e.g. 'runtime: cpu, ..., allocator tcmalloc; ...'
    allocator = re.search(r'^runtime: .*?allocator ([^,;\s]+)', Path(log_path).read_text(errors='replace'), re.M)
    return {'wall_s': wall, 'user_s': usage.ru_utime, 'sys_s': usage.ru_stime,
            'cpu_s': usage.ru_utime + usage.ru_stime, 'peak_rss_mib': usage.ru_maxrss / 1024,  # Linux: KiB
            'majflt': usage.ru_majflt, 'minflt': usage.ru_minflt, 'nvcsw': usage.ru_nvcsw, 'nivcsw': usage.ru_nivcsw,
            'allocator': allocator.group(1) if allocator else None}


def measure(jobs, runner, progress=None):
    """`runner(job) -> measurement` for every job in turn; the raw records, one per process."""
    records = []
    for number, job in enumerate(jobs, 1):
        m = runner(job)
        records.append(dict(side=job.side, images=job.images, pair=job.pair, **m))
        if progress:
            progress(f'[{number}/{len(jobs)}] {job.side:8s} {job.images:3d} images, pair {job.pair + 1}: '
                     f'wall {m["wall_s"]:.1f} s, cpu {m["cpu_s"]:.1f} s (sys {m["sys_s"]:.2f} s), '
                     f'peak {m["peak_rss_mib"]:.0f} MiB, {m["minflt"]} minor faults')
    return records


def _median(values):
    return round(statistics.median(values), 4)


def side_summary(records, side, few, many):
    """Per-step figures of each pair (difference between the two image counts), their medians, the whole
    processes' medians per image count, and the fixed cost (the shorter run less its steps)."""
    runs = {(r['pair'], r['images']): r for r in records if r['side'] == side}
    pairs = sorted({pair for pair, _ in runs})
    steps, fixed = [], []
    for pair in pairs:
        lo, hi = runs[pair, few], runs[pair, many]
        step = {f: (hi[f] - lo[f]) / (many - few) for f in STEP_FIELDS}
        steps.append({f: round(v, 4) for f, v in step.items()})
        fixed.append(lo['wall_s'] - few * step['wall_s'])
    per_step = {f: _median([s[f] for s in steps]) for f in STEP_FIELDS}
    process = {str(n): {f: _median([runs[p, n][f] for p in pairs]) for f in STEP_FIELDS + ('peak_rss_mib',)}
               for n in (few, many)}
    return {'per_step': per_step, 'per_step_by_pair': steps, 'process': process,
            'peak_rss_mib': max(process[str(n)]['peak_rss_mib'] for n in (few, many)),
            'fixed_wall_s': _median(fixed),
            'allocators': sorted({r['allocator'] for r in runs.values() if r.get('allocator')}),
            # threads actually busy during a step: near --threads when both use what they were given
            'cpu_per_wall_step': round(per_step['cpu_s'] / per_step['wall_s'], 3) if per_step['wall_s'] > 0 else None}


def summarise(records, few, many, amp='off'):
    """Both sides' summaries, ours / official ratios of the medians, and issue 15's targets checked."""
    ours, official = (side_summary(records, side, few, many) for side in SIDES)

    def ratio(a, b):
        return round(a / b, 4) if b else None

    ratios = {'wall_per_step': ratio(ours['per_step']['wall_s'], official['per_step']['wall_s']),
              'cpu_per_step': ratio(ours['per_step']['cpu_s'], official['per_step']['cpu_s']),
              'sys_per_step': ratio(ours['per_step']['sys_s'], official['per_step']['sys_s']),
              'minflt_per_step': ratio(ours['per_step']['minflt'], official['per_step']['minflt']),
              'peak_rss': ratio(ours['peak_rss_mib'], official['peak_rss_mib']),
              f'process_wall_{many}_images': ratio(ours['process'][str(many)]['wall_s'],
                                                   official['process'][str(many)]['wall_s'])}
    sys_excess = round(ours['per_step']['sys_s'] - official['per_step']['sys_s'], 4)
    wall_target = TARGETS['wall_per_step_bf16' if amp == 'bf16' else 'wall_per_step']
    targets = {'wall_per_step': {'target': wall_target, 'measured': ratios['wall_per_step']},
               'peak_rss': {'target': TARGETS['peak_rss'], 'measured': ratios['peak_rss']},
               'sys_per_step_excess_s': {'target': TARGETS['sys_per_step_excess_s'], 'measured': sys_excess}}
    for t in targets.values():
        t['met'] = t['measured'] is not None and t['measured'] <= t['target']
    return {'ours': ours, 'official': official, 'ratios': ratios, 'sys_per_step_excess_s': sys_excess,
            'targets': targets}


def official_commit(script):
    try:
        out = subprocess.run(['git', '-C', str(script.parent), 'rev-parse', 'HEAD'], capture_output=True, text=True)
    except OSError:
        return None
    return out.stdout.strip() or None


def prepare_data(args, scratch):
    """The dataset folder: --data when it has trainA/trainB (generated there when it has not), else a
    generated one in `scratch`. At least MANY images on each side."""
    root = Path(args.data) if args.data else Path(scratch) / 'data'
    many = args.images[1]
    if not ((root / 'trainA').is_dir() and (root / 'trainB').is_dir()):
        make_synthetic_dataset(root, n_train=many, n_test=1, size=args.size, seed=0)
    for side in ('trainA', 'trainB'):
        count = sum(1 for p in (root / side).iterdir() if p.is_file())
        if count < many:
            raise SystemExit(f'error: {root / side} has {count} images, fewer than --images asks for ({many})')
    return root


def run(args, ours_extra, runner=None, progress=None):
    """Measure every job (with `runner`, default: real processes) and return the report."""
    few, many = args.images
    scratch = tempfile.mkdtemp(prefix='benchmark_official_')
    try:
        data = prepare_data(args, scratch)
        checkpoints_dir = Path(scratch) / 'checkpoints'
        jobs = make_jobs(args, ours_extra, data, checkpoints_dir)

        def real_runner(job):
            try:
                return run_process(job, Path(scratch) / f'{job.side}_{job.images}_{job.pair}.log')
            finally:
                shutil.rmtree(checkpoints_dir, ignore_errors=True)  # checkpoints of 256 px runs: ~0.4 GB each

        records = measure(jobs, runner or real_runner, progress)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    report = {
        'settings': {'official': str(args.train_script.parent.parent),
                     'official_commit': official_commit(args.train_script),
                     'images': [few, many], 'size': args.size, 'load_size': args.size * 286 // 256,
                     'threads': args.threads, 'pairs': args.pairs, 'amp_ours': args.amp,
                     'data': str(args.data) if args.data else 'generated (datasets/make_synthetic_dataset.py, seed 0)',
                     'ours_extra_flags': list(ours_extra), 'ours_env': list(args.ours_env)},
        'commands': {job.side: {} for job in jobs},
        'env': {job.side: job.env for job in jobs},
        'torch': importlib.metadata.version('torch'), 'python': platform.python_version(), 'cpu': cpu_name(),
        'cpu_affinity': sorted(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else None,
        'runs': [{k: round(v, 4) if isinstance(v, float) else v for k, v in r.items()} for r in records],
    }
    for job in jobs:
        report['commands'][job.side][str(job.images)] = shlex.join(job.cmd)
    report.update(summarise(records, few, many, args.amp))
    return report


def main(argv=None):
    args, ours_extra = parse_args(argv)
    report = run(args, ours_extra, progress=lambda line: print(line, file=sys.stderr, flush=True))
    report_json(report, args.out)
    return 0


if __name__ == '__main__':
    sys.exit(main())
