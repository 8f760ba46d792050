"""The CPU compression study: does the paper's L_semantic improve a Fast GAN Compression student at small scale?

    python studies/compression/cpu_study.py --work /tmp/compression_study --seeds 0 1 2 --jobs 2

Settings, fixed before the paired runs (docs/compression.md, "The CPU study"):
* data: the synthetic horse->zebra task at 64 px (datasets/make_synthetic_dataset.py), 200 training images per
  domain and 40 test scenes (seed 0); the search scores 40 other scenes (a second set, seed 1, its testA and
  masks), so the search never sees the test scenes and step 1 never sees the search scenes;
* teacher: one ResNet-9 ngf-16 generator in gan-compression's layout, trained once (seed 0) with the CPU demo's
  recipe (recipes/cpu_demo.txt + cpu_budget.txt + cpu_schedule.txt, --netG resnet_9blocks: 1,600 iterations); its
  averaged generator (G_ema) is the frozen teacher of every run (sha256 in every record);
* step 1: recipes/cpu_compression.txt (+ --G_output residual, the teacher's), 4 + 4 epochs (1,600 iterations);
  baseline = + recipes/compression_baseline.txt; both arms of a seed share initial weights, data order and
  configuration sequence;
* search: scripts/evolution_search.py under 18 M MACs at 64 px, population 16, 8 generations, mutate_prob 0.4,
  weighted first generation (2), criterion the mean stripe IoU on the search scenes, seeded by the run's seed;
* comparison points on the 40 test scenes: the pre-declared common configuration 4_4_8_4_4_16_4_6 (the paper's
  H->Z 16_16_32_16_16_64_16_24 / 4), each arm's searched configuration, and the largest and smallest ones; each
  exported as a plain sub-net, checked equal to the super-net, and scored: stripe IoU, background L1, KID (hand-made
  features), PSNR to the truth, L1 and PSNR to the teacher's translation, MACs, params;
* decision rule (declared before the runs): "+ ours improves the compressed student at CPU scale" only if at the
  common configuration the mean paired difference (+ ours - baseline) of stripe IoU is > 0, at least 80 % of the
  pairs (3 of 3, 4 of 5) improve, and the mean background L1 is not worse by more than its seed std; the searched
  configurations are reported as the pipeline's view, without a claim of their own.

Every step writes its JSON under --work and is skipped when present; --out receives the run records and
summary.json / summary.md.
"""
import argparse
import json
import math
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
from datasets.make_synthetic_dataset import make_synthetic_dataset  # noqa: E402
from evaluation import synthetic  # noqa: E402
from evaluation.common import image_files  # noqa: E402
from evaluation.macs import count_params, mobile_macs, profile_macs  # noqa: E402
from evaluation.search import load_run_generator  # noqa: E402
from models.networks import define_G  # noqa: E402
from models.networks.compression import CONFIG_SETS, export_subnet  # noqa: E402
from util import util  # noqa: E402
from util.recipes import read_recipe  # noqa: E402

SIZE, N_TRAIN, N_TEST = 64, 200, 40
COMMON = '4_4_8_4_4_16_4_6'
BUDGET = 18e6
ARMS = ('baseline', 'ours')
METRICS = ('stripe_iou', 'bg_l1', 'kid', 'psnr_gt', 'teacher_l1', 'teacher_psnr')
HIGHER = {'stripe_iou': True, 'bg_l1': False, 'kid': False, 'psnr_gt': True, 'teacher_l1': False,
          'teacher_psnr': True}
PAPER_DELTAS = 'H→Z FID −9.75, Map→Sat FID −1.57, Cityscapes FID −12.83 / mIoU +1.64 (Table 3, + ours − baseline)'


def run(cmd, log, threads=1):
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), PYTHONPATH=str(REPO))
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, 'w') as f:
        done = subprocess.run([str(c) for c in cmd], cwd=REPO, env=env, stdout=f, stderr=subprocess.STDOUT)
    if done.returncode != 0:
        raise RuntimeError(f'{" ".join(map(str, cmd[:3]))} failed ({done.returncode}); see {log}')


def datasets(work):
    train, search = work / 'data' / 'train', work / 'data' / 'search'
    if not (train / 'synthetic.json').is_file():
        make_synthetic_dataset(train, n_train=N_TRAIN, n_test=N_TEST, size=SIZE, seed=0, overwrite=True)
    if not (search / 'synthetic.json').is_file():
        make_synthetic_dataset(search, n_train=1, n_test=N_TEST, size=SIZE, seed=1, overwrite=True)
    return train, search


def common_flags(seed):
    return ['--load_size', SIZE, '--crop_size', SIZE, '--gpu_ids', '-1', '--num_threads', '0', '--display_id', '0',
            '--no_html', '--no_tqdm', '--print_freq', '200', '--seed', seed]


def test_sources(data):
    """[(stem, (3, S, S) input in [-1, 1])] of the test scenes, and their answers for the scores."""
    sources, answers = [], {}
    for path in image_files(data / 'testA'):
        image = synthetic.load_rgb(path)
        sources.append((path.stem, torch.from_numpy(image.transpose(2, 0, 1)).float() * 2 - 1))
        answers[path.stem] = synthetic.load_answer(data, path.stem)
    return sources, answers


@torch.no_grad()
def translate(net, sources):
    """{stem: (S, S, 3) float64 in [0, 1]} quantised as test.py saves them."""
    fake = net(torch.stack([x for _, x in sources]))
    return {stem: util.tensor2im(image[None]).astype(np.float64) / 255.0 for (stem, _), image in zip(sources, fake)}


def scores(images, answers, reference, teacher=None):
    names = sorted(images)
    outputs = [images[n] for n in names]
    rows = [synthetic.image_scores(images[n], *answers[n]) for n in names]
    mean, _ = synthetic.mean_scores(rows, outputs, reference)
    if teacher is not None:
        mean['teacher_l1'] = float(np.mean([np.abs(images[n] - teacher[n]).mean() for n in names]))
        mean['teacher_psnr'] = float(np.mean([synthetic.psnr(images[n], teacher[n]) for n in names]))
    return mean


def train_teacher(work, data):
    name = 'teacher'
    weights = work / 'checkpoints' / name / 'latest_net_G_ema.pth'
    if not weights.is_file():
        flags = (read_recipe('cpu_demo') + read_recipe('cpu_budget') + read_recipe('cpu_schedule')
                 + ['--netG', 'resnet_9blocks'] + common_flags(0))
        run([sys.executable, 'train.py', '--dataroot', data, '--checkpoints_dir', work / 'checkpoints', '--name', name]
            + flags, work / 'logs' / 'teacher_train.log')
    return weights


def load_teacher(weights):
    net = define_G(3, 3, 16, 'resnet_9blocks', no_antialias=True, no_antialias_up=True, G_output='residual',
                   init_weights=False)
    net.load_state_dict(util.strip_module_prefix(util.safe_torch_load(str(weights))), strict=True)
    return net.eval()


def train_arm(work, data, teacher, arm, seed):
    name = f'{arm}_seed{seed}'
    if not (work / 'checkpoints' / name / '8_net_G.pth').is_file():
        flags = read_recipe('cpu_compression') + ['--G_output', 'residual', '--teacher_path', teacher,
                                                  '--n_epochs', '4', '--n_epochs_decay', '4'] + common_flags(seed)
        if arm == 'baseline':
            flags += read_recipe('compression_baseline')
        start = time.time()
        run([sys.executable, 'train.py', '--dataroot', data, '--checkpoints_dir', work / 'checkpoints', '--name', name]
            + flags, work / 'logs' / f'{name}_train.log')
        (work / 'checkpoints' / name / 'seconds.txt').write_text(f'{time.time() - start:.1f}\n')
    return name


def search_arm(work, search_data, name, seed):
    out = work / 'search' / name
    if not (out / 'result.json').is_file():
        run([sys.executable, 'scripts/evolution_search.py', '--checkpoints_dir', work / 'checkpoints', '--name', name,
             '--dataroot', search_data, '--phase', 'test', '--criterion', 'synthetic', '--metric', 'stripe_iou',
             '--budget', BUDGET, '--population_size', 16, '--generations', 8, '--mutate_prob', 0.4,
             '--weighted_sample', 2, '--seed', seed, '--device', 'cpu', '--no_tqdm', '--output_dir', out],
            work / 'logs' / f'{name}_search.log')
    return json.loads((out / 'result.json').read_text())


def score_arm(work, out, name, arm, seed, search, sources, answers, reference, teacher_images, teacher_sha):
    path = out / 'runs' / f'{name}.json'
    if path.is_file():
        return json.loads(path.read_text())
    supernet, opts = load_run_generator(str(work / 'checkpoints' / name), 'latest', 'cpu')
    space = CONFIG_SETS[opts['config_set']]
    points = {'common': COMMON, 'searched': search['best']['config'],
              'largest': '_'.join(str(max(c)) for c in space), 'smallest': '_'.join(str(min(c)) for c in space)}
    record = {'run': name, 'arm': arm, 'seed': seed, 'teacher_sha256': teacher_sha, 'points': {},
              'search': {k: search[k] for k in ('best', 'evaluations', 'settings')},
              'train_seconds': float((work / 'checkpoints' / name / 'seconds.txt').read_text())}
    x = torch.stack([s for _, s in sources[:4]])
    for point, config in points.items():
        sub = export_subnet(supernet, config).eval()
        with torch.no_grad():
            difference = float((supernet.set_config(config)(x) - sub(x)).abs().max())
        if difference != 0:
            raise RuntimeError(f'{name} {config}: the exported sub-net differs from the super-net by {difference}')
        images = translate(sub, sources)
        record['points'][point] = {'config': config, 'macs': mobile_macs(config, SIZE), 'params': count_params(sub),
                                   **scores(images, answers, reference, teacher_images)}
    util.atomic_write_json(str(path), record)
    return record


def summarize(records, teacher, out, seeds):
    """summary.json and summary.md: per comparison point, mean ± std per arm, paired differences, the rule."""
    by = {(r['arm'], r['seed']): r for r in records}
    summary = {'teacher': teacher, 'seeds': seeds, 'points': {}}
    lines = ['# CPU compression study: results', '',
             f'Seeds {", ".join(map(str, seeds))}; teacher stripe IoU {teacher["scores"]["stripe_iou"]:.3f}, '
             f'background L1 {teacher["scores"]["bg_l1"]:.4f} ({teacher["macs"] / 1e6:.1f} M MACs, '
             f'{teacher["params"] / 1e3:.1f} K params; accepted: {teacher["accepted"]}).', '']
    for point in ('common', 'searched', 'largest', 'smallest'):
        table = {}
        for arm in ARMS:
            rows = [by[(arm, s)]['points'][point] for s in seeds]
            table[arm] = {k: (float(np.mean([r[k] for r in rows])), float(np.std([r[k] for r in rows], ddof=1))
                              if len(rows) > 1 else 0.0) for k in METRICS + ('macs', 'params')}
            table[arm]['configs'] = [r['config'] for r in rows]
        deltas = {k: [by[('ours', s)]['points'][point][k] - by[('baseline', s)]['points'][point][k] for s in seeds]
                  for k in METRICS}
        better = {k: sum((d > 0) == HIGHER[k] and d != 0 for d in v) for k, v in deltas.items()}
        summary['points'][point] = {'arms': table, 'deltas': deltas, 'better': better}
        lines += [f'## {point} configuration' + (f' `{COMMON}`' if point == 'common' else ''), '',
                  '| row | configs | MACs (M) | params (K) | ' + ' | '.join(METRICS) + ' |',
                  '|---|---|---|---|' + '---|' * len(METRICS)]
        t = teacher['scores']
        lines.append(f'| teacher | ResNet-9 ngf 16 | {teacher["macs"] / 1e6:.1f} | {teacher["params"] / 1e3:.1f} | '
                     + ' | '.join(f'{t[k]:.4f}' if k in t else '–' for k in METRICS) + ' |')
        for arm in ARMS:
            a = table[arm]
            lines.append(f'| {"baseline" if arm == "baseline" else "+ ours"} | {", ".join(sorted(set(a["configs"])))} | '
                         f'{a["macs"][0] / 1e6:.2f} | {a["params"][0] / 1e3:.1f} | '
                         + ' | '.join(f'{a[k][0]:.4f} ± {a[k][1]:.4f}' for k in METRICS) + ' |')
        lines.append('| Δ (+ ours − baseline), better in | | | | '
                     + ' | '.join(f'{np.mean(deltas[k]):+.4f} ({better[k]}/{len(seeds)})' for k in METRICS) + ' |')
        lines.append('')
    common = summary['points']['common']
    need = math.ceil(0.8 * len(seeds))
    helps = (np.mean(common['deltas']['stripe_iou']) > 0 and common['better']['stripe_iou'] >= need
             and np.mean(common['deltas']['bg_l1']) <= common['arms']['baseline']['bg_l1'][1])
    summary['rule'] = {'helps': bool(helps), 'pairs_needed': need}
    lines += [f'Pre-declared rule at the common configuration (mean Δ stripe IoU > 0, at least {need} of '
              f'{len(seeds)} pairs better, background L1 not worse by more than its seed std): '
              f'**{"+ ours helps" if helps else "not reproduced at this scale"}**.', '',
              f'The paper\'s deltas: {PAPER_DELTAS}.', '']
    util.atomic_write_json(str(out / 'summary.json'), summary)
    util.atomic_write_text(str(out / 'summary.md'), '\n'.join(lines))
    print('\n'.join(lines))
    return summary


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--work', type=Path, help='data, checkpoints, logs, searches')
    p.add_argument('--out', type=Path, default=REPO / 'studies' / 'compression' / 'cpu',
                   help='run records and summary')
    p.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2])
    p.add_argument('--jobs', type=int, default=2, help='trainings and searches at once (1 thread each)')
    p.add_argument('--summarize', action='store_true',
                   help='only rebuild summary.json / summary.md from --out\'s teacher.json and runs/ (no training)')
    args = p.parse_args(argv)
    if args.summarize:
        out = args.out.resolve()
        teacher = json.loads((out / 'teacher.json').read_text())
        records = [json.loads((out / 'runs' / f'{arm}_seed{seed}.json').read_text())
                   for seed in args.seeds for arm in ARMS]
        return summarize(records, teacher, out, args.seeds)
    if args.work is None:
        p.error('--work is required unless --summarize')
    torch.set_num_threads(1)
    work, out = args.work.resolve(), args.out.resolve()
    (out / 'runs').mkdir(parents=True, exist_ok=True)
    data, search_data = datasets(work)
    teacher_weights = train_teacher(work, data)
    teacher_net = load_teacher(teacher_weights)
    sources, answers = test_sources(data)
    reference = synthetic.testB_features(data)
    teacher_images = translate(teacher_net, sources)
    teacher_scores = scores(teacher_images, answers, reference)
    teacher = {'weights': str(teacher_weights), 'sha256': util.sha256(teacher_weights), 'scores': teacher_scores,
               'macs': profile_macs(teacher_net, (1, 3, SIZE, SIZE)), 'params': count_params(teacher_net),
               'accepted': teacher_scores['stripe_iou'] >= 0.5 and teacher_scores['bg_l1'] <= 0.03}
    util.atomic_write_json(str(out / 'teacher.json'), teacher)
    print(f'teacher: {teacher_scores}', flush=True)

    def one(job):
        arm, seed = job
        name = train_arm(work, data, teacher_weights, arm, seed)
        search = search_arm(work, search_data, name, seed)
        return name, arm, seed, search
    jobs = [(arm, seed) for seed in args.seeds for arm in ARMS]
    with ThreadPoolExecutor(args.jobs) as pool:
        trained = list(pool.map(one, jobs))
    records = [score_arm(work, out, name, arm, seed, search, sources, answers, reference, teacher_images,
                         teacher['sha256']) for name, arm, seed, search in trained]
    return summarize(records, teacher, out, args.seeds)


if __name__ == '__main__':
    main()
