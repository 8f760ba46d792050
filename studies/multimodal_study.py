"""CPU study of the multi-modal model (issue 14): StarGAN v2 with and without L_semantic under one budget,
on the synthetic seasons (datasets/make_multidomain_dataset.py), several seeds.

    python studies/multimodal_study.py --out studies/multimodal_cpu --seeds 0 1 2 --steps 1500

Each (config, seed) trains with train.py (a subprocess; the seasons recipe, then the CPU budget below,
then the config's flags), then translates every validation image of every domain into every other
domain with `--num_outs` latent codes and as many references (the EMA networks, StarGAN v2's protocol:
evaluation/multimodal.py) and scores:
  - content kept: layout accuracy and mean IoU of each translation against its source scene's label map,
    read in the target season's palette (evaluation/multidomain_synthetic.py): 1 = the scene redrawn in
    the target season, an untranslated source scores ~0.04;
  - diversity: mean pairwise L1 between the outputs of one source image (LPIPS needs ImageNet weights,
    which this machine cannot download);
  - realism: KID of each task's outputs against the target domain's training images on fixed colour and
    texture statistics (evaluation/synthetic.py's texture_features; no learned weights).
A run's JSON lands in <out>/runs/<config>_s<seed>.json (existing ones are kept: the study resumes); the
summary (mean, sd and each config's paired differences from StarGAN v2 alone over seeds) in <out>/summary.json
and <out>/summary.md.
"""
import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from evaluation import multidomain_synthetic, multimodal  # noqa: E402
from evaluation.synthetic import kid_on_features, load_rgb, texture_features  # noqa: E402
from util.recipes import read_recipe  # noqa: E402

# 32 px, an eighth of StarGAN v2's widths, batch 4: ~0.4 s per step at one thread. EMA decay 0.99: at StarGAN
# v2's 0.999 the EMA networks of a 1,500-step run would still hold 22 % of their initial weights (0.999^1500).
BUDGET = ['--crop_size', '32', '--load_size', '32', '--base_dim', '16', '--max_conv_dim', '64', '--hidden_dim', '64',
          '--num_patches', '64', '--batch_size', '4', '--ema_beta', '0.99']
BASELINE = 'stargan_v2'
CONFIGS = {
    BASELINE: read_recipe('stargan_v2_baseline'),
    'stargan_v2+semantic': [],  # the official multi-modal recipe's L_semantic (source patches are the queries)
    'stargan_v2+semantic_translation_query': ['--semantic_query', 'translation'],  # CUT's direction
}
METRICS = ('layout_accuracy', 'mean_iou', 'diversity_l1', 'kid')


class PixelL1:
    """The `lpips_net` interface of evaluation.multimodal.mean_pairwise_lpips with L1 in pixel space."""

    def parameters(self):
        return iter(())

    def embed(self, x):
        return x

    def distance(self, a, b):
        return (a - b).abs().mean(dim=(1, 2, 3))


def train_flags(args, config, seed, name):
    steps = args.steps
    return ['--dataroot', str(args.data), '--checkpoints_dir', str(args.out / 'checkpoints'), '--name', name,
            *read_recipe('seasons'), *BUDGET, *CONFIGS[config],
            '--ds_iter', str(steps), '--gamma_iter', str(steps), '--n_epochs', '100000',
            '--max_iters', str(steps * 4), '--save_latest_freq', str(steps * 4), '--save_epoch_freq', '100000',
            '--seed', str(seed), '--gpu_ids', '-1', '--num_threads', '0', '--display_id', '0', '--no_tqdm',
            '--print_freq', str(max(4, steps * 4 // 10))]


def train(args, config, seed, name):
    log = args.out / 'logs' / f'{name}.log'
    log.parent.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
    start = time.time()
    with open(log, 'w') as f:
        done = subprocess.run([sys.executable, str(ROOT / 'train.py'), *train_flags(args, config, seed, name)],
                              stdout=f, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
    if done.returncode != 0:
        raise SystemExit(f'error: training {name} failed (exit {done.returncode}); see {log}')
    return time.time() - start


def texture_kid(fakes, reals):
    feats = np.stack([texture_features(load_rgb(p)) for p in fakes])
    return float(kid_on_features(feats, reals)[0])


def evaluate(args, name):
    """Latent- and reference-guided translations of the validation set and their scores."""
    torch.manual_seed(0)
    translator = multimodal_translator(args, name)
    val, train_root = args.data / 'val', args.data / 'train'
    domains = translator.domains
    real_feats = {d: np.stack([texture_features(load_rgb(p)) for p in multimodal.domain_files(train_root, d)])
                  for d in domains}
    result = {}
    for mode in ('latent', 'reference'):
        mode_dir = args.out / 'translations' / name / mode
        per_task = {}
        for src, trg in tqdm(multimodal.enumerate_tasks(domains), desc=f'{name} {mode}', disable=args.no_tqdm):
            task = f'{src}2{trg}'
            task_dir = mode_dir / task
            task_dir.mkdir(parents=True, exist_ok=True)
            diversity = multimodal.translate_task(
                translator, multimodal.domain_files(val, src), multimodal.domain_files(val, trg), domains.index(trg),
                mode, task_dir, num_outs=args.num_outs, batch_size=32, generator=multimodal.task_generator(0, task),
                lpips_net=PixelL1(), progress=False)
            per_task[task] = {'diversity_l1': float(diversity.double().mean()),
                              'kid': texture_kid(sorted(task_dir.glob('*.png')), real_feats[trg])}
        content = multidomain_synthetic.score_results(mode_dir, args.data)
        for task, scores in content['tasks'].items():
            per_task[task].update(layout_accuracy=scores['layout_accuracy'], mean_iou=scores['mean_iou'])
        result[mode] = {'tasks': per_task,
                        'mean': {m: float(np.mean([t[m] for t in per_task.values()])) for m in METRICS}}
    return result


def reference_scores(args):
    """The same scores for the true translation (each validation scene redrawn in the target season, a random
    style of that season per output) and for a copy of the source image (--num_outs copies)."""
    from datasets.make_multidomain_dataset import render, sample_style
    from evaluation.multimodal import save_png
    path = args.out / 'references.json'
    if path.is_file():
        return json.loads(path.read_text())
    val, train_root = args.data / 'val', args.data / 'train'
    domains = multimodal.domain_names(val)
    real_feats = {d: np.stack([texture_features(load_rgb(p)) for p in multimodal.domain_files(train_root, d)])
                  for d in domains}
    rng = np.random.default_rng(0)
    result = {}
    for kind in ('truth', 'copy'):
        per_task = {}
        for src, trg in multimodal.enumerate_tasks(domains):
            task_dir = args.out / 'translations' / f'_{kind}' / f'{src}2{trg}'
            task_dir.mkdir(parents=True, exist_ok=True)
            distances = []
            for file in multimodal.domain_files(val, src):
                layout = np.asarray(Image.open(args.data / 'val_layout' / src / f'{file.stem}.png'))
                outputs = [render(layout, trg, sample_style(rng, trg)) if kind == 'truth'
                           else np.array(Image.open(file).convert('RGB')) for _ in range(args.num_outs)]
                tensors = [torch.from_numpy(o).permute(2, 0, 1).float() / 127.5 - 1 for o in outputs]
                for k, t in enumerate(tensors):
                    save_png(t, task_dir / f'{file.stem}_{k}.png')
                distances.append(float(multimodal.mean_pairwise_lpips(PixelL1(), [t[None] for t in tensors])))
            per_task[f'{src}2{trg}'] = {'diversity_l1': float(np.mean(distances)),
                                        'kid': texture_kid(sorted(task_dir.glob('*.png')), real_feats[trg])}
        content = multidomain_synthetic.score_results(task_dir.parent, args.data)
        for task, scores in content['tasks'].items():
            per_task[task].update(layout_accuracy=scores['layout_accuracy'], mean_iou=scores['mean_iou'])
        result[kind] = {m: float(np.mean([t[m] for t in per_task.values()])) for m in METRICS}
    path.write_text(json.dumps(result, indent=1))
    return result


def multimodal_translator(args, name):
    from models.stargan_v2_model import load_translator
    return load_translator(str(args.out / 'checkpoints'), name, 'latest', dataroot=str(args.data))


def run_one(args, config, seed):
    name = f'{config.replace("+", "_")}_s{seed}'
    path = args.out / 'runs' / f'{config}_s{seed}.json'
    if path.is_file():
        return json.loads(path.read_text())
    seconds = train(args, config, seed, name)
    record = {'config': config, 'seed': seed, 'steps': args.steps, 'train_seconds': seconds,
              'threads': args.threads, 'flags': train_flags(args, config, seed, name), **evaluate(args, name)}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=1))
    return record


def summarise(records):
    """Mean and sd per config and mode, and each config's paired differences from the baseline over shared seeds."""
    summary = {}
    for mode in ('latent', 'reference'):
        by_config = {}
        for config in CONFIGS:
            runs = [r for r in records if r['config'] == config]
            if runs:
                by_config[config] = {m: {'mean': float(np.mean([r[mode]['mean'][m] for r in runs])),
                                         'sd': float(np.std([r[mode]['mean'][m] for r in runs], ddof=1))
                                         if len(runs) > 1 else 0.0,
                                         'seeds': {r['seed']: r[mode]['mean'][m] for r in runs}} for m in METRICS}
        paired = {}
        for config in by_config:
            if config == BASELINE or BASELINE not in by_config:
                continue
            paired[config] = {}
            for m in METRICS:
                base, ours = by_config[BASELINE][m]['seeds'], by_config[config][m]['seeds']
                seeds = sorted(set(base) & set(ours))
                diffs = [ours[s] - base[s] for s in seeds]
                paired[config][m] = {'mean': float(np.mean(diffs)), 'per_seed': dict(zip(seeds, diffs)),
                                     'sd': float(np.std(diffs, ddof=1)) if len(diffs) > 1 else 0.0,
                                     'wins': int(sum(d > 0 for d in diffs))}
        summary[mode] = {'configs': by_config, 'paired_minus_baseline': paired}
    return summary


def markdown(summary, records, references):
    arrows = {'layout_accuracy': '↑', 'mean_iou': '↑', 'diversity_l1': '↑', 'kid': '↓'}
    lines = []
    for mode, block in summary.items():
        if mode == 'references':
            continue
        lines += [f'**{mode}-guided** (mean ± sd over seeds)', '',
                  '| config | seeds | ' + ' | '.join(f'{m} {arrows[m]}' for m in METRICS) + ' |',
                  '|---|---|' + '---|' * len(METRICS)]
        for config, scores in block['configs'].items():
            if scores:
                seeds = len(scores[METRICS[0]]['seeds'])
                lines.append(f'| {config} | {seeds} | ' + ' | '.join(
                    f'{scores[m]["mean"]:.3f} ± {scores[m]["sd"]:.3f}' for m in METRICS) + ' |')
        for config, paired in block['paired_minus_baseline'].items():
            lines.append(f'| {config} − {BASELINE} (paired) | | ' + ' | '.join(
                f'{paired[m]["mean"]:+.3f} ± {paired[m]["sd"]:.3f} ({paired[m]["wins"]}/{len(paired[m]["per_seed"])} '
                f'> 0)' for m in METRICS) + ' |')
        for kind, label in (('truth', 'true translation (scene redrawn in the target season)'),
                            ('copy', 'copy of the source image')):
            lines.append(f'| *{label}* | | ' + ' | '.join(f'*{references[kind][m]:.3f}*' for m in METRICS) + ' |')
        lines.append('')
    seconds = [r['train_seconds'] / r['steps'] for r in records]
    lines.append(f'Training: {records[0]["steps"]} steps per run, {np.mean(seconds):.2f} s per step on average '
                 f'({records[0]["threads"]} thread(s) per run).')
    return '\n'.join(lines) + '\n'


def comparison_grid(args, seed, path, tasks=('summer2winter', 'winter2summer', 'spring2autumn', 'autumn2spring'),
                    per_task=2, scale=3):
    """PNG: per row a source image, its true translation, then the first latent-guided output of each config
    (seed `seed`); two rows per task. Configs without a run of that seed are left out."""
    names = [c for c in CONFIGS if (args.out / 'translations' / f'{c.replace("+", "_")}_s{seed}').is_dir()]
    size = args.size
    columns = ['source', 'truth', *names]
    grid = Image.new('RGB', (size * len(columns), size * per_task * len(tasks)), 'white')
    for t, task in enumerate(tasks):
        src = task.split('2')[0]
        for j, file in enumerate(multimodal.domain_files(args.data / 'val', src)[:per_task]):
            images = [file, args.out / 'translations' / '_truth' / task / f'{file.stem}_0.png']
            images += [args.out / 'translations' / f'{c.replace("+", "_")}_s{seed}' / 'latent' / task /
                       f'{file.stem}_0.png' for c in names]
            for k, image in enumerate(images):
                with Image.open(image) as im:
                    grid.paste(im.convert('RGB').resize((size, size)), (k * size, (t * per_task + j) * size))
    grid.resize((grid.width * scale, grid.height * scale), Image.NEAREST).save(path)
    return columns


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--out', type=Path, default=ROOT / 'studies' / 'multimodal_cpu')
    p.add_argument('--data', type=Path, default=None, help='synthetic seasons root (made when missing)')
    p.add_argument('--size', type=int, default=32)
    p.add_argument('--n_train', type=int, default=200, help='training images per season')
    p.add_argument('--n_val', type=int, default=10, help='validation images per season')
    p.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2])
    p.add_argument('--configs', nargs='+', default=list(CONFIGS), choices=list(CONFIGS))
    p.add_argument('--steps', type=int, default=1500)
    p.add_argument('--num_outs', type=int, default=5, help='outputs per source image and mode')
    p.add_argument('--threads', type=int, default=1)
    p.add_argument('--summary_only', action='store_true', help='only summarise the runs already in --out/runs')
    p.add_argument('--no_tqdm', action='store_true')
    args = p.parse_args(argv)
    args.data = args.data or args.out / 'data'
    if args.num_outs < 2:
        raise SystemExit(f'error: --num_outs must be >= 2 (diversity compares pairs), got {args.num_outs}')
    if not args.summary_only:
        if not (args.data / 'meta.json').is_file():
            from datasets.make_multidomain_dataset import make_multidomain_dataset
            make_multidomain_dataset(args.data, n_train=args.n_train, n_val=args.n_val, size=args.size, seed=0,
                                     domains=4, progress=not args.no_tqdm)
        for seed in args.seeds:
            for config in args.configs:
                run_one(args, config, seed)
    records = [json.loads(p.read_text()) for p in sorted((args.out / 'runs').glob('*.json'))]
    if not records:
        raise SystemExit(f'error: no runs in {args.out / "runs"}')
    summary = summarise(records)
    summary['references'] = reference_scores(args)
    (args.out / 'summary.json').write_text(json.dumps(summary, indent=1))
    text = markdown(summary, records, summary['references'])
    (args.out / 'summary.md').write_text(text)
    print(text)
    seed = min(r['seed'] for r in records)
    columns = comparison_grid(args, seed, args.out / 'translations.png')
    print(f'{args.out / "translations.png"}: columns {", ".join(columns)} (seed {seed}, first latent-guided output)')
    return 0


if __name__ == '__main__':
    sys.exit(main())
