#!/usr/bin/env python
"""Table 4's ablation measured on CPU, against the known answer of the synthetic dataset.

Every row (InfoNCE or DCE, with or without SRC, with or without hard negatives) is trained with the
horse2zebra recipe under one budget (crop, generator width, iterations) for several seeds, translated
with test.py and scored with scripts/paired_metrics.py against testA_gt: PSNR, SSIM and L1 to the true
translation, L1 inside the objects (was the texture changed as it should be?) and outside them (was
the rest kept?). One JSON per run goes to --out; a finished run is skipped when the command is rerun.
The patch and SRC weights default to 10x the recipe's (λ_hDCE 1, λ_SRC 0.5): at the recipe's 0.1 and
0.05 the GAN term swamps them in a budget of hundreds of iterations and every row collapses.

    nice -n 10 python scripts/run_cpu_ablation.py --work /tmp/ablation --out docs/ablation_runs --jobs 2
    python scripts/run_cpu_ablation.py --summarize docs/ablation_runs      # mean ± std, Markdown
    python scripts/run_cpu_ablation.py --print_rows                        # rows for table4_ablation.sh
"""
import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from datasets.make_synthetic_dataset import make_synthetic_dataset  # noqa: E402
from util.util import atomic_write_json, safe_torch_load  # noqa: E402

# (slug, patch loss, SRC on, hard negatives on), in the order of the table; the first is CUT's loss
ABLATION_ROWS = (
    ('infonce', 'infonce', False, False),
    ('infonce_src', 'infonce', True, False),
    ('infonce_hneg', 'infonce', False, True),
    ('infonce_src_hneg', 'infonce', True, True),
    ('dce', 'dce', False, False),
    ('dce_src', 'dce', True, False),
    ('dce_hneg', 'dce', False, True),
    ('dce_src_hneg', 'dce', True, True),
)
# the official horse2zebra recipe but for the weights (--lambda_HDCE, --lambda_SRC); a row switches
# SRC off with --lambda_SRC 0 (later flags win)
RECIPE = ('--model', 'src_hdce', '--dce_idt', '--use_curriculum', '--HDCE_gamma', '50', '--HDCE_gamma_min', '10')
METRICS = (('psnr', 'PSNR↑', 2), ('ssim', 'SSIM↑', 3), ('l1', 'L1↓', 4), ('l1_object', 'L1 object↓', 4),
           ('l1_background', 'L1 background↓', 4))
HIGHER_IS_BETTER = {'psnr', 'ssim'}


def row_label(patch_loss, src, hneg):
    parts = ['InfoNCE' if patch_loss == 'infonce' else 'DCE'] + ['SRC'] * src + ['Hneg'] * hneg
    label = ' + '.join(parts)
    if patch_loss == 'infonce' and not (src or hneg):
        return label + ' (CUT)'
    return label + ' (ours)' if patch_loss == 'dce' and src and hneg else label


def row_flags(patch_loss, src, hneg):
    """The flags a row appends to a recipe of `--model src_hdce`."""
    return ['--patch_loss', patch_loss] + ([] if src else ['--lambda_SRC', '0']) + ([] if hneg else ['--no_Hneg'])


def rows_by_slug():
    return {slug: (patch_loss, src, hneg) for slug, patch_loss, src, hneg in ABLATION_ROWS}


def select_rows(slugs):
    known = rows_by_slug()
    unknown = [s for s in slugs if s not in known]
    if unknown:
        raise SystemExit(f'error: unknown rows {unknown}; valid: {", ".join(known)}')
    return [(s,) + known[s] for s in slugs]


def budget_flags(args):
    """Training flags shared by every run: the budget and the CPU settings."""
    flags = ['--netG', args.netG, '--ngf', str(args.ngf), '--ndf', str(args.ndf),
             '--num_patches', str(args.num_patches), '--load_size', str(args.size), '--crop_size', str(args.size),
             '--n_epochs', str(args.n_epochs), '--n_epochs_decay', str(args.n_epochs_decay),
             '--gpu_ids', '-1', '--num_threads', '0', '--display_id', '0', '--no_tqdm',
             '--print_freq', '100', '--save_epoch_freq', '1000']
    return flags + (['--max_iters', str(args.max_iters)] if args.max_iters else [])


def prepare_data(args):
    """The synthetic dataset of this budget under --work, made once and reused while its settings match."""
    root = Path(args.work) / f'synthetic_{args.size}px_n{args.n_train}_seed{args.data_seed}'
    wanted = {'n_train': args.n_train, 'n_test': args.n_test, 'size': args.size, 'seed': args.data_seed}
    summary = root / 'synthetic.json'
    if summary.is_file():
        found = json.loads(summary.read_text())
        if all(found.get(k) == v for k, v in wanted.items()):
            return root
    make_synthetic_dataset(root, overwrite=True, **wanted)
    return root


def run_logged(cmd, log_path, threads):
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), PYTHONPATH=str(REPO))
    with open(log_path, 'w') as log:
        done = subprocess.run(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    if done.returncode != 0:
        raise RuntimeError(f'{" ".join(map(str, cmd[:2]))} failed with exit code {done.returncode}; see {log_path}')


def train_test_score(args, data, slug, row, seed):
    """Train, translate and score one (row, seed); return its record (also written to --out)."""
    name = f'{slug}_seed{seed}'
    work = Path(args.work)
    logs = work / 'logs'
    logs.mkdir(parents=True, exist_ok=True)
    weights = ['--lambda_HDCE', str(args.lambda_HDCE), '--lambda_SRC', str(args.lambda_SRC)]
    train_flags = list(RECIPE) + weights + row_flags(*row) + budget_flags(args) + ['--seed', str(seed)]
    where = ['--dataroot', str(data), '--checkpoints_dir', str(work / 'checkpoints'), '--name', name]
    start = time.time()
    run_logged([sys.executable, 'train.py'] + where + train_flags, logs / f'{name}_train.log', args.threads)
    train_seconds = time.time() - start
    test_flags = ['--model', 'src_hdce', '--netG', args.netG, '--ngf', str(args.ngf), '--load_size', str(args.size),
                  '--crop_size', str(args.size), '--gpu_ids', '-1', '--num_test', str(args.n_test),
                  '--results_dir', str(work / 'results')]
    run_logged([sys.executable, 'test.py'] + where + test_flags, logs / f'{name}_test.log', args.threads)
    images = work / 'results' / name / 'test_latest' / 'images'
    scores = score(images / 'fake_B', data, work / 'metrics' / f'{name}.json', args.threads)
    record = {
        'row': row_label(*row), 'slug': slug, 'seed': seed, 'metrics': scores['mean'],
        'num_images': scores['num_images'], 'iterations': iterations_done(work / 'checkpoints' / name),
        'train_seconds': round(train_seconds, 1), 'train_flags': train_flags,
        'data': {'n_train': args.n_train, 'n_test': args.n_test, 'size': args.size, 'seed': args.data_seed},
    }
    atomic_write_json(Path(args.out) / f'{name}.json', record)
    return record


def score(pred_dir, data, out_path, threads):
    out_path.parent.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, 'scripts/paired_metrics.py', '--pred', str(pred_dir), '--gt', str(data / 'testA_gt'),
           '--mask', str(data / 'testA_mask'), '--out', str(out_path)]
    run_logged(cmd, out_path.with_suffix('.log'), threads)
    return json.loads(out_path.read_text())


def iterations_done(run_dir):
    """Total training iterations, from the run's latest training state."""
    return int(safe_torch_load(str(run_dir / 'latest_train_state.pth'))['total_iters'])


def identity_baseline(args, data):
    """Scores of copying the input (no translation): the floor every row should beat inside objects."""
    scores = score(data / 'testA', data, Path(args.work) / 'metrics' / 'identity.json', args.threads)
    record = {'row': 'copy the input (no translation)', 'slug': 'identity', 'seed': None,
              'metrics': scores['mean'], 'num_images': scores['num_images'],
              'data': {'n_train': args.n_train, 'n_test': args.n_test, 'size': args.size, 'seed': args.data_seed}}
    atomic_write_json(Path(args.out) / 'identity.json', record)


def run_all(args):
    rows = select_rows(args.rows)
    data = prepare_data(args)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    identity_baseline(args, data)
    # seed-major order: an interrupted sweep leaves every row with about the same number of seeds
    todo = [(slug, row, seed) for seed in args.seeds for slug, *row in rows
            if not (Path(args.out) / f'{slug}_seed{seed}.json').is_file()]
    print(f'{len(todo)} runs to do ({len(rows) * len(args.seeds) - len(todo)} already in {args.out})', flush=True)
    failures = []

    def one(job):
        slug, row, seed = job
        try:
            record = train_test_score(args, data, slug, tuple(row), seed)
        except RuntimeError as exc:
            failures.append(str(exc))
            print(f'FAILED {slug} seed {seed}: {exc}', flush=True)
            return
        m = record['metrics']
        print(f'done {slug} seed {seed}: PSNR {m["psnr"]:.2f} SSIM {m["ssim"]:.3f} L1 {m["l1"]:.4f} '
              f'({record["train_seconds"]:.0f} s)', flush=True)

    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        list(pool.map(one, todo))
    print(summarize(args.out))
    return 1 if failures else 0


def load_records(folder):
    records = [json.loads(p.read_text()) for p in sorted(Path(folder).glob('*.json'))]
    if not records:
        raise SystemExit(f'error: no run JSONs in {folder}')
    return records


def aggregate(records):
    """{row label: {metric: (mean, std, n)}} in table order; std is the sample std (ddof=1), 0 for one run."""
    order = [row_label(*row) for _, *row in ABLATION_ROWS] + ['copy the input (no translation)']
    table = {}
    for label in order:
        runs = [r for r in records if r['row'] == label]
        if not runs:
            continue
        table[label] = {}
        for key, _, _ in METRICS:
            values = np.array([r['metrics'][key] for r in runs], dtype=float)
            std = float(values.std(ddof=1)) if len(values) > 1 else 0.0
            table[label][key] = (float(values.mean()), std, len(values))
    return table


def summarize(folder):
    """The mean ± std table of the run JSONs in `folder`, as Markdown; the best mean of a column in bold."""
    table = aggregate(load_records(folder))
    rows = [label for label in table if not label.startswith('copy')]
    best = {}
    for key, _, _ in METRICS:
        means = {label: table[label][key][0] for label in rows}
        best[key] = (max if key in HIGHER_IS_BETTER else min)(means, key=means.get) if means else None
    header = ['Configuration', 'seeds'] + [title for _, title, _ in METRICS]
    lines = ['| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
    for label, cells in table.items():
        values = []
        for key, _, digits in METRICS:
            mean, std, _ = cells[key]
            text = f'{mean:.{digits}f} ± {std:.{digits}f}' if cells[key][2] > 1 else f'{mean:.{digits}f}'
            values.append(f'**{text}**' if best[key] == label else text)
        lines.append('| ' + ' | '.join([label, str(cells['psnr'][2])] + values) + ' |')
    return '\n'.join(lines) + '\n'


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--summarize', metavar='DIR', default=None, help='print the table of the run JSONs in DIR')
    ap.add_argument('--print_rows', action='store_true', help='print "slug<TAB>label<TAB>flags" per row')
    ap.add_argument('--work', default='/tmp/cpu_ablation', help='datasets, checkpoints, results and logs')
    ap.add_argument('--out', default=str(REPO / 'docs' / 'ablation_runs'), help='one JSON per run')
    ap.add_argument('--rows', nargs='+', default=[r[0] for r in ABLATION_ROWS], help='row slugs to run')
    ap.add_argument('--seeds', nargs='+', type=int, default=[0, 1, 2])
    ap.add_argument('--jobs', type=int, default=2, help='runs in parallel')
    ap.add_argument('--threads', type=int, default=1, help='torch threads per run')
    ap.add_argument('--size', type=int, default=48, help='image and crop size of the synthetic data')
    ap.add_argument('--n_train', type=int, default=200)
    ap.add_argument('--n_test', type=int, default=40)
    ap.add_argument('--data_seed', type=int, default=0)
    ap.add_argument('--netG', default='resnet_6blocks')
    ap.add_argument('--ngf', type=int, default=8)
    ap.add_argument('--ndf', type=int, default=8)
    ap.add_argument('--num_patches', type=int, default=64)
    ap.add_argument('--n_epochs', type=int, default=2)
    ap.add_argument('--n_epochs_decay', type=int, default=2)
    ap.add_argument('--lambda_HDCE', type=float, default=1.0,
                    help='patch-loss weight of every row (the horse2zebra recipe: 0.1)')
    ap.add_argument('--lambda_SRC', type=float, default=0.5, help='SRC weight of the rows with SRC (recipe: 0.05)')
    ap.add_argument('--max_iters', type=int, default=None, help='stop every run early (timing, smoke tests)')
    return ap.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args.print_rows:
        for slug, *row in ABLATION_ROWS:
            print(f'{slug}\t{row_label(*row)}\t{" ".join(row_flags(*row))}')
        return 0
    if args.summarize:
        print(summarize(args.summarize), end='')
        return 0
    return run_all(args)


if __name__ == '__main__':
    sys.exit(main())
