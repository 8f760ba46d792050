#!/usr/bin/env python
"""CPU studies on the synthetic horse->zebra task, scored with evaluation.synthetic at every checkpoint.

Three studies share one runner (train.py in a subprocess, one thread each, --jobs at a time; then
evaluation.curves on every saved epoch):

  ablation  Table 4's rows in the paper's order (CUT, InfoNCE + SRC, InfoNCE + SRC + Hneg, DCE,
            DCE + Hneg, DCE + SRC, DCE + SRC + Hneg; `--rows ... infonce_hneg` adds the eighth
            combination), each the --recipe plus the row's flags (recipes/table4_rows.tsv); paired
            differences per component and the paper's numbers beside ours.
  recipes   learning curves of CUT's recipe, the paper's horse2zebra recipe and the CPU recipe.
  sweep     the search for the CPU recipe: the configurations of a JSON file {name: [flags]} (keys
            starting with _ are comments), each added to --recipe.

Every run uses the same budget (recipes/cpu_budget.txt: networks and patches; cpu_schedule.txt:
epochs; a configuration's own flags override the budget's, --budget_flags override both) and writes
<out>/runs/<config>_seed<N>.json with its flags, time, final scores and whole curve; a finished run is
skipped when the command is rerun. The summary (summary.md, curves.png, curves.csv) is rebuilt from those JSONs.

    python studies/cpu_study.py ablation --out studies/ablation --seeds 0 1 2 --jobs 2
    python studies/cpu_study.py recipes --out studies/recipes --seeds 0 1 2
    python studies/cpu_study.py sweep --configs studies/sweep_configs.json --out studies/sweep
    python studies/cpu_study.py ablation --summarize --out studies/ablation
    python studies/cpu_study.py ablation --print_rows          # slug<TAB>label<TAB>flags, recipes/table4_rows.tsv
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
from evaluation import curves, synthetic  # noqa: E402
from evaluation.tables import PAPER  # noqa: E402
from util.recipes import ablation_rows, read_recipe  # noqa: E402
from util.util import atomic_write_json, atomic_write_text, safe_torch_load  # noqa: E402

# Table 4's rows, [(slug, label, flags added to --recipe)]: recipes/table4_rows.tsv, shared with
# scripts/table4_ablation.sh; the paper's 7 in its order, then the combination it does not report
TABLE4_ROWS = tuple(ablation_rows(paper_only=True))
EXTRA_ROWS = tuple(ablation_rows()[len(TABLE4_ROWS):])
# one component switched on, the others held: (component, from row, to row)
COMPONENT_PAIRS = (
    ('SRC', 'infonce', 'infonce_src'), ('SRC', 'dce', 'dce_src'), ('SRC', 'dce_hneg', 'dce_src_hneg'),
    ('Hneg', 'infonce_src', 'infonce_src_hneg'), ('Hneg', 'dce', 'dce_hneg'), ('Hneg', 'dce_src', 'dce_src_hneg'),
    ('DCE for InfoNCE', 'infonce', 'dce'), ('DCE for InfoNCE', 'infonce_src', 'dce_src'),
    ('DCE for InfoNCE', 'infonce_src_hneg', 'dce_src_hneg'),
)
# the recipe study's lines: (name, label, recipes whose flags it concatenates); the first four on the budget's
# networks, the last two on the demo's (identity-start G, 16 px D, EMA of G: recipes/cpu_demo_networks.txt)
RECIPE_STUDY = (('cut', 'CUT recipe', ('cut',)),
                ('paper_h2z', 'paper h2z recipe (λ 0.1 / 0.05)', ('horse2zebra',)),
                ('cpu_10x', 'paper recipe at 10x λ (1 / 0.5)', ('cpu_10x',)),
                ('cpu', 'CPU recipe: 5x λ (0.5 / 0.25)', ('cpu_5x',)),
                ('cut_demo_nets', "CUT recipe, demo's networks", ('cut', 'cpu_demo_networks')),
                ('demo', "demo recipe (paper λ, demo's networks)", ('cpu_demo',)))
# recipes that are the last row of the ablation with that recipe: they carry the row's flags, so that a
# recipe study can reuse the ablation's runs (--reuse) and the other way round
ABLATION_RECIPES = ('cpu_10x', 'cpu_demo')
# the columns of the summaries: final scores at the last checkpoint
COLUMNS = ('stripe_iou', 'bg_l1', 'leakage', 'shape_iou', 'kid', 'psnr_gt')
HEADLINE = 'stripe_iou'
# a run "draws stripes" when its final stripe IoU passes this (a copy of the input scores 0)
STRIPES_DRAWN = 0.1


def all_rows():
    return TABLE4_ROWS + EXTRA_ROWS


def select_rows(slugs):
    known = {r[0]: r for r in all_rows()}
    unknown = [s for s in slugs if s not in known]
    if unknown:
        raise SystemExit(f'error: unknown rows {unknown}; valid: {", ".join(known)}')
    return [known[s] for s in slugs]


def study_configs(args):
    """[(name, label, flags)] of the study: what each run adds to the budget."""
    if args.study == 'ablation':
        base = read_recipe(args.recipe)
        return [(slug, label, base + flags) for slug, label, flags in select_rows(args.rows)]
    if args.study == 'recipes':
        full = select_rows(['dce_src_hneg'])[0][2]
        return [(name, label, [f for r in parts for f in read_recipe(r)]
                 + (full if parts[-1] in ABLATION_RECIPES else []))
                for name, label, parts in RECIPE_STUDY]
    if not args.configs:
        raise SystemExit('error: the sweep study needs --configs FILE (a JSON object {name: [flags]})')
    try:
        configs = json.loads(Path(args.configs).read_text())
    except (OSError, ValueError) as exc:
        raise SystemExit(f'error: --configs {args.configs}: {exc}') from None
    if isinstance(configs, dict):  # keys starting with _ are comments
        configs = {k: v for k, v in configs.items() if not k.startswith('_')}
    if not isinstance(configs, dict) or not configs or not all(isinstance(v, list) for v in configs.values()):
        raise SystemExit(f'error: --configs {args.configs} must hold a JSON object {{name: [flag, ...]}} '
                         '(keys starting with _ are comments)')
    base = read_recipe(args.recipe)
    return [(name, name, base + [str(f) for f in flags]) for name, flags in configs.items()]


def prepare_data(args):
    """The synthetic dataset of this budget under --work, made once and reused while its settings match."""
    root = Path(args.work) / (f'synthetic_{args.background}_{args.size}px_n{args.n_train}_t{args.n_test}'
                              f'_seed{args.data_seed}')
    wanted = {'n_train': args.n_train, 'n_test': args.n_test, 'size': args.size, 'seed': args.data_seed,
              'background': args.background}
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
        raise RuntimeError(f'{" ".join(map(str, cmd[:3]))} failed with exit code {done.returncode}; see {log_path}')


def train_flags(args, flags, seed):
    """The train.py flags of one run: recipes/cpu_budget.txt and cpu_schedule.txt, then the configuration's
    `flags` (a recipe's own --ndf or --n_epochs beats the budget's), then --budget_flags (they override both),
    then the CPU settings and the seed."""
    return (read_recipe('cpu_budget') + read_recipe('cpu_schedule') + list(flags) + list(args.budget_flags)
            + ['--load_size', str(args.size), '--crop_size', str(args.size), '--gpu_ids', '-1', '--num_threads', '0',
               '--display_id', '0', '--no_html', '--no_tqdm', '--print_freq', '100', '--save_epoch_freq', '1',
               '--seed', str(seed)])


def train_and_score(args, data, config, seed):
    """Train one (config, seed), score every checkpoint, write and return its record."""
    name, label, flags = config
    run = f'{name}_seed{seed}'
    work = Path(args.work)
    (work / 'logs').mkdir(parents=True, exist_ok=True)
    run_flags = train_flags(args, flags, seed)
    where = ['--dataroot', str(data), '--checkpoints_dir', str(work / 'checkpoints'), '--name', run]
    start = time.time()
    run_logged([sys.executable, 'train.py'] + where + run_flags, work / 'logs' / f'{run}_train.log', args.threads)
    seconds = time.time() - start
    run_dir = work / 'checkpoints' / run
    curve_dir = work / 'curves' / run
    run_logged([sys.executable, '-m', 'evaluation.curves', '--runs', str(run_dir), '--data', str(data),
                '--out', str(curve_dir), '--threads', str(args.threads)], work / 'logs' / f'{run}_curves.log',
               args.threads)
    rows = json.loads((curve_dir / 'curves.json').read_text())['rows']
    curve = [{k: v for k, v in r.items() if k in ('tag', 'iterations') or k not in curves.ROW_FIELDS} for r in rows]
    record = {
        'config': name, 'label': label, 'seed': seed, 'train_flags': run_flags, 'train_seconds': round(seconds, 1),
        'iterations': int(safe_torch_load(str(run_dir / 'latest_train_state.pth'))['total_iters']),
        'final': {k: v for k, v in curve[-1].items() if k not in ('tag', 'iterations')}, 'curve': curve,
        'data': data_summary(args),
    }
    atomic_write_json(str(Path(args.out) / 'runs' / f'{run}.json'), record)
    return record


def data_summary(args):
    return {'n_train': args.n_train, 'n_test': args.n_test, 'size': args.size, 'seed': args.data_seed,
            'background': args.background}


def effective_flags(flags):
    """{flag: value} of a train.py flag list, the last occurrence winning as in argparse (True for a
    flag without a value): two lists that train the same run compare equal."""
    out, i = {}, 0
    while i < len(flags):
        name = flags[i]
        if i + 1 < len(flags) and not flags[i + 1].startswith('--'):
            out[name], i = flags[i + 1], i + 2
        else:
            out[name], i = True, i + 1
    return out


def run_key(flags, data):
    return json.dumps([effective_flags(flags), data], sort_keys=True)


def reuse_runs(args, configs, runs_dir):
    """Copy into this study the runs of other studies (--reuse) trained with the same effective flags
    and data as a run of this one, under this study's configuration name and label; return how many."""
    found = {}
    for folder in args.reuse:
        for path in sorted((Path(folder) / 'runs').glob('*.json')):
            record = json.loads(path.read_text())
            found[run_key(record['train_flags'], record['data'])] = record
    count = 0
    for name, label, flags in configs:
        for seed in args.seeds:
            target = runs_dir / f'{name}_seed{seed}.json'
            key = run_key(train_flags(args, flags, seed), data_summary(args))
            if not target.is_file() and key in found:
                atomic_write_json(str(target), {**found[key], 'config': name, 'label': label})
                count += 1
    return count


def check_finished(args, configs, runs_dir):
    """A finished run counts only if it was trained as this study would train it; else stop, naming it."""
    for name, _, flags in configs:
        for seed in args.seeds:
            path = runs_dir / f'{name}_seed{seed}.json'
            if path.is_file():
                record = json.loads(path.read_text())
                if run_key(record['train_flags'], record['data']) != run_key(train_flags(args, flags, seed),
                                                                             data_summary(args)):
                    raise SystemExit(f'error: {path} was trained with other flags or data than this study '
                                     f'would use now (a recipe changed?); move it away or use another --out')


def run_all(args):
    configs = study_configs(args)
    data = prepare_data(args)
    runs_dir = Path(args.out) / 'runs'
    runs_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(str(Path(args.out) / 'baselines.json'), synthetic.baselines(data))
    check_finished(args, configs, runs_dir)
    reused = reuse_runs(args, configs, runs_dir)
    if reused:
        print(f'reused {reused} finished runs with the same flags and data from {", ".join(args.reuse)}', flush=True)
    # seed-major order: an interrupted study leaves every configuration with about the same seeds
    todo = [(config, seed) for seed in args.seeds for config in configs
            if not (runs_dir / f'{config[0]}_seed{seed}.json').is_file()]
    print(f'{len(todo)} runs to do ({len(configs) * len(args.seeds) - len(todo)} already in {runs_dir})', flush=True)
    failures = []

    def one(job):
        config, seed = job
        try:
            record = train_and_score(args, data, config, seed)
        except RuntimeError as exc:
            failures.append(str(exc))
            print(f'FAILED {config[0]} seed {seed}: {exc}', flush=True)
            return
        print(f'done {config[0]} seed {seed} ({record["train_seconds"]:.0f} s): '
              f'{synthetic.format_scores(record["final"])}', flush=True)

    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        list(pool.map(one, todo))
    print(summarize(args), end='')
    return 1 if failures else 0


# ---- summaries ---------------------------------------------------------------------------------
def load_records(out):
    records = [json.loads(p.read_text()) for p in sorted((Path(out) / 'runs').glob('*.json'))]
    if not records:
        raise SystemExit(f'error: no run JSONs in {Path(out) / "runs"}')
    return records


def _title(key):
    return {**synthetic.METRICS, **synthetic.DATASET_METRICS}[key][0]


def _higher(key):
    return {**synthetic.METRICS, **synthetic.DATASET_METRICS}[key][1]


def _fmt(values, digits=3):
    values = np.asarray(values, dtype=float)
    if len(values) == 1:
        return f'{values[0]:.{digits}f}'
    return f'{values.mean():.{digits}f} ± {values.std(ddof=1):.{digits}f}'


def final_table(records, order, baselines=None):
    """Markdown: per configuration, mean ± sample std over seeds of the final scores; best mean in bold."""
    by_config = {name: [r for r in records if r['config'] == name] for name in order}
    by_config = {k: v for k, v in by_config.items() if v}
    best = {}
    for key in COLUMNS:
        means = {k: np.mean([r['final'][key] for r in v]) for k, v in by_config.items()}
        best[key] = (max if _higher(key) else min)(means, key=means.get)
    header = (['configuration', 'seeds', 'iterations', f'runs with stripes (IoU > {STRIPES_DRAWN})']
              + [_title(k) + ('↑' if _higher(k) else '↓') for k in COLUMNS])
    lines = ['| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
    for name, runs in by_config.items():
        cells = [runs[0]['label'], str(len(runs)), '/'.join(sorted({str(r['iterations']) for r in runs})),
                 f'{sum(r["final"]["stripe_iou"] > STRIPES_DRAWN for r in runs)} of {len(runs)}']
        for key in COLUMNS:
            text = _fmt([r['final'][key] for r in runs])
            cells.append(f'**{text}**' if best[key] == name and len(by_config) > 1 else text)
        lines.append('| ' + ' | '.join(cells) + ' |')
    for label, key in (('true translation', 'truth'), ('copy of the input', 'copy_input')):
        if baselines and key in baselines:
            cells = [f'*{label}*', '', '', ''] + [f'{baselines[key][k]:.3f}' for k in COLUMNS]
            lines.append('| ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines) + '\n'


def convergence_table(records, order, key=HEADLINE):
    """Markdown: the headline score at the last three checkpoints (mean over seeds): has it settled?"""
    lines = [f'| configuration | {_title(key)} at the last three checkpoints (iterations: mean over seeds) |',
             '|---|---|']
    for name in order:
        runs = [r for r in records if r['config'] == name]
        if not runs:
            continue
        points = {}
        for r in runs:
            for p in r['curve']:
                points.setdefault(p['iterations'], []).append(p[key])
        common = sorted(i for i, v in points.items() if len(v) == len(runs))[-3:]
        lines.append(f'| {runs[0]["label"]} | ' + ', '.join(f'{i}: {np.mean(points[i]):.3f}' for i in common) + ' |')
    return '\n'.join(lines) + '\n'


def paired_differences(records):
    """Markdown: per component, the change of each score when it is switched on, paired by seed, with
    the paper's change of horse2zebra FID and Cityscapes mAP for the same pair of rows."""
    by_run = {(r['config'], r['seed']): r for r in records}
    header = ['component', 'from → to', 'pairs'] + [f'Δ {_title(k)}' for k in COLUMNS] + ['paper Δ FID (h2z)',
                                                                                         'paper Δ mAP (city)']
    lines = ['| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
    labels = {r[0]: r[1] for r in all_rows()}
    paper = PAPER['table4']
    for component, a, b in COMPONENT_PAIRS:
        seeds = sorted(s for (c, s) in by_run if c == a and (b, s) in by_run)
        if not seeds:
            continue
        cells = [component, f'{labels[a]} → {labels[b]}', str(len(seeds))]
        for key in COLUMNS:
            diffs = [by_run[(b, s)]['final'][key] - by_run[(a, s)]['final'][key] for s in seeds]
            better = sum((d > 0) == _higher(key) and d != 0 for d in diffs)
            cells.append(f'{_fmt(diffs)} ({better}/{len(diffs)} better)')
        pa, pb = paper.get(labels[a]), paper.get(labels[b])
        cells += [f'{pb[0] - pa[0]:+.1f}' if pa and pb else '–', f'{pb[1] - pa[1]:+.1f}' if pa and pb else '–']
        lines.append('| ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines) + '\n'


def paper_beside(records, order):
    """Markdown: our headline scores next to the paper's Table 4 for the same rows."""
    lines = ['| row | ours: stripe IoU↑ | ours: background L1↓ | ours: KID↓ | paper: H→Z FID↓ | paper: City mAP↑ |',
             '|---|---|---|---|---|---|']
    for name in order:
        runs = [r for r in records if r['config'] == name]
        if not runs:
            continue
        paper = PAPER['table4'].get(runs[0]['label'])
        lines.append(f'| {runs[0]["label"]} | {_fmt([r["final"]["stripe_iou"] for r in runs])} | '
                     f'{_fmt([r["final"]["bg_l1"] for r in runs])} | {_fmt([r["final"]["kid"] for r in runs])} | '
                     f'{paper[0] if paper else "–"} | {paper[1] if paper else "–"} |')
    return '\n'.join(lines) + '\n'


def summarize(args):
    out = Path(args.out)
    configs = study_configs(args) if args.study != 'sweep' or args.configs else []
    current = {name: label for name, label, _ in configs}
    # a configuration's label is the study's current one (records keep the label they were run under)
    records = [{**r, 'label': current.get(r['config'], r['label'])} for r in load_records(out)]
    order = list(dict.fromkeys([c[0] for c in configs] + [r['config'] for r in records]))
    baselines_path = out / 'baselines.json'
    baselines = json.loads(baselines_path.read_text()) if baselines_path.is_file() else None
    parts = [f'## Final scores ({args.study})\n', final_table(records, order, baselines),
             '\n## Convergence\n', convergence_table(records, order)]
    if args.study == 'ablation':
        parts += ['\n## Each component switched on, paired by seed\n', paired_differences(records),
                  '\n## Beside the paper\'s Table 4\n', paper_beside(records, order)]
    text = '\n'.join(parts)
    atomic_write_text(str(out / 'summary.md'), text)
    labels = {r['config']: r['label'] for r in records}
    rows = [{'run': f'{r["config"]}_seed{r["seed"]}', 'group': labels[r['config']], **p}
            for name in order for r in records if r['config'] == name for p in r['curve']]
    curves.write_csv(rows, out / 'curves.csv')
    curves.plot(rows, out / 'curves.png', baselines, title=args.title or f'CPU study: {args.study}')
    return text


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('study', choices=['ablation', 'recipes', 'sweep'])
    ap.add_argument('--out', default=None, help='runs/, summary.md, curves.png (default studies/<study>)')
    ap.add_argument('--work', default='/tmp/cpu_study', help='datasets, checkpoints and logs')
    ap.add_argument('--summarize', action='store_true', help='only rebuild the summary from --out/runs')
    ap.add_argument('--print_rows', action='store_true', help='print "slug<TAB>label<TAB>flags" per Table 4 row')
    ap.add_argument('--all', action='store_true', help='with --print_rows: the eighth combination too')
    ap.add_argument('--rows', nargs='+', default=[r[0] for r in TABLE4_ROWS],
                    help=f'ablation rows (default: the paper\'s 7; also {", ".join(r[0] for r in EXTRA_ROWS)})')
    ap.add_argument('--recipe', default='cpu_5x', help='recipes/<name>.txt under the ablation rows and sweep')
    ap.add_argument('--configs', default=None, help='sweep: JSON file {name: [flags added to --recipe]}')
    ap.add_argument('--budget_flags', nargs=argparse.REMAINDER, default=[],
                    help='train.py flags that override recipes/cpu_budget.txt for every run (last option)')
    ap.add_argument('--seeds', nargs='+', type=int, default=[0, 1, 2])
    ap.add_argument('--reuse', nargs='+', default=[], metavar='OUT',
                    help='other studies\' --out folders whose runs with identical flags and data count here')
    ap.add_argument('--jobs', type=int, default=2, help='runs in parallel')
    ap.add_argument('--threads', type=int, default=1, help='torch threads per run')
    ap.add_argument('--size', type=int, default=64, help='image and crop size of the synthetic data')
    ap.add_argument('--n_train', type=int, default=200)
    ap.add_argument('--n_test', type=int, default=40)
    ap.add_argument('--data_seed', type=int, default=0)
    ap.add_argument('--background', default='landscape', choices=['landscape', 'random'],
                    help='backgrounds of the synthetic data (datasets/make_synthetic_dataset.py)')
    ap.add_argument('--title', default=None)
    args = ap.parse_args(argv)
    args.out = args.out or str(REPO / 'studies' / args.study)
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.print_rows:
        for slug, label, flags in (all_rows() if args.all else TABLE4_ROWS):
            print(f'{slug}\t{label}\t{" ".join(flags)}')
        return 0
    if args.summarize:
        print(summarize(args), end='')
        return 0
    return run_all(args)


if __name__ == '__main__':
    sys.exit(main())
