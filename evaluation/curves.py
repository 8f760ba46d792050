"""Learning curves on the synthetic task: every saved checkpoint of one or more runs, scored and plotted.

Each run folder (<checkpoints_dir>/<name>) is read as train.py left it: train_opt.json says how to
build the generator, every <tag>_net_G.pth with a numbered tag (an epoch, or iter_N with
--save_by_iter) is a point (<tag>_net_G_ema.pth for a run trained with --G_ema_beta, unless --raw_G),
and <tag>_train_state.pth says how many iterations it had seen. The
generator translates the dataset's testA in this process (as test.py would, uint8 output) and
evaluation.synthetic scores it. Runs that differ only in a trailing `_seed<N>` form one group:
the plot shows each group's mean over seeds and a band from its lowest to its highest seed.

    python -m evaluation.curves --data datasets/synthetic --runs checkpoints/cut_seed* checkpoints/ours_seed* \
        --out results/curves            # -> curves.png, curves.csv, curves.json

Scores already computed for a checkpoint file (same size and modification time) are reused from
the JSON, so rerunning after more training scores only the new checkpoints.
"""
import argparse
import csv
import io
import json
import math
import os
import re
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from evaluation import synthetic
from evaluation.common import EvaluationError, cli, image_files
from util.util import (atomic_write, atomic_write_json, atomic_write_text, safe_torch_load, strip_module_prefix,
                       tensor2im)

# the fields of a row that are not scores
ROW_FIELDS = ('run_dir', 'run', 'group', 'tag', 'weights', 'iterations', 'stamp', 'version')
PLOTTED = ('stripe_iou', 'bg_l1', 'leakage', 'shape_iou', 'kid', 'psnr_gt')
SEED_SUFFIX = re.compile(r'_seed\d+$')


def group_name(run_name):
    """The run's name without a trailing _seed<N>: the line it belongs to."""
    return SEED_SUFFIX.sub('', run_name)


def numbered_checkpoints(run_dir, network='G'):
    """[(tag, path)] of the numbered checkpoints of `network` ('G' or 'G_ema') of a run, oldest first."""
    pattern, found = re.compile(rf'^(?:(\d+)|iter_(\d+))_net_{network}\.pth$'), []
    for path in Path(run_dir).iterdir():
        match = pattern.match(path.name)
        if match:
            order = int(match.group(1) or match.group(2))
            found.append((order, path.name[:-len(f'_net_{network}.pth')], path))
    if not found:
        raise EvaluationError(f'{run_dir} holds no numbered {network} checkpoints (<epoch>_net_{network}.pth or '
                              f'iter_<N>_net_{network}.pth); train with --save_epoch_freq or --save_by_iter')
    return [(tag, path) for _, tag, path in sorted(found)]


def iterations_of(run_dir, tag):
    """Training iterations behind checkpoint `tag`: from its training state, or from an iter_N tag."""
    state_path = Path(run_dir) / f'{tag}_train_state.pth'
    if state_path.is_file():
        return int(safe_torch_load(str(state_path))['total_iters'])
    if tag.startswith('iter_'):
        return int(tag[len('iter_'):])
    raise EvaluationError(f'{state_path} is missing: cannot tell how many iterations checkpoint {tag} of '
                          f'{run_dir} saw')


def load_run_options(run_dir):
    path = Path(run_dir) / 'train_opt.json'
    if not path.is_file():
        raise EvaluationError(f'{path} is missing: the curves rebuild the generator from the run\'s options')
    opts = json.loads(path.read_text())
    from models.networks import missing_generator_options
    missing = missing_generator_options(opts)
    if missing:
        raise EvaluationError(f'{path} lacks {missing}: not written by this project\'s train.py?')
    return opts


def build_generator(opts):
    from models.networks import generator_from_options
    return generator_from_options(opts, init_weights=False).eval()


def image_tensor(image):
    """An (H, W, 3) image in [0, 1] (synthetic.load_rgb) as the (1, 3, H, W) generator input in [-1, 1]."""
    return torch.from_numpy(image.transpose(2, 0, 1)).float().unsqueeze(0) * 2.0 - 1.0


def load_inputs(data_root, crop_size):
    """testA as (name, (1, 3, H, W) tensor in [-1, 1]); the images must already be crop_size square."""
    inputs = []
    for path in image_files(Path(data_root) / 'testA'):
        image = synthetic.load_rgb(path)
        if image.shape[:2] != (crop_size, crop_size):
            raise EvaluationError(f'{path} is {image.shape[1]}x{image.shape[0]} but the run was trained at '
                                  f'--crop_size {crop_size}; make the dataset at that size')
        inputs.append((path.stem, image_tensor(image)))
    return inputs


@torch.no_grad()
def translate(net, inputs):
    """{name: (H, W, 3) float image in [0, 1]}, quantised to uint8 as test.py's saved PNGs are."""
    return {name: tensor2im(net(x)).astype(np.float64) / 255.0 for name, x in inputs}


def score_outputs(outputs, data_root, reference):
    """evaluation.synthetic's scores of in-memory translations (the same numbers as on saved files);
    `reference` holds the texture features of the real domain-B images (synthetic.testB_features)."""
    names = sorted(outputs)
    rows = [synthetic.image_scores(outputs[n], *synthetic.load_answer(data_root, n)) for n in names]
    return synthetic.mean_scores(rows, [outputs[n] for n in names], reference)[0]


def _stamp(path):
    st = os.stat(path)
    return [st.st_size, int(st.st_mtime_ns)]


def score_runs(run_dirs, data_root, cache=None, progress=True, raw_G=False):
    """One row per (run, checkpoint): run, group, tag, weights ('G' or 'G_ema'), iterations and the mean
    scores. A run trained with --G_ema_beta is scored with its averaged generator unless `raw_G`."""
    cache = {(r['run_dir'], r['tag'], r.get('weights', 'G')): r for r in (cache or [])}
    reference = synthetic.testB_features(data_root)
    jobs, options = [], {}
    for run_dir in run_dirs:
        run_dir = Path(run_dir)
        if not run_dir.is_dir():
            raise EvaluationError(f'run folder {run_dir} does not exist')
        options[run_dir] = load_run_options(run_dir)
        weights = 'G_ema' if options[run_dir].get('G_ema_beta', 0) > 0 and not raw_G else 'G'
        jobs += [(run_dir, tag, path, weights) for tag, path in numbered_checkpoints(run_dir, weights)]
    rows, nets, inputs = [], {}, {}  # nets: run folder -> (generator, crop size); inputs: crop size -> testA
    for run_dir, tag, path, weights in tqdm(jobs, desc='checkpoints', unit='ckpt', disable=not progress):
        old = cache.get((str(run_dir), tag, weights))
        if old is not None and old.get('stamp') == _stamp(path) and old.get('version') == synthetic.SCORES_VERSION:
            rows.append(old)
            continue
        if run_dir not in nets:
            opts = options[run_dir]
            nets[run_dir] = (build_generator(opts), opts['crop_size'])
            if opts['crop_size'] not in inputs:
                inputs[opts['crop_size']] = load_inputs(data_root, opts['crop_size'])
        net, crop = nets[run_dir]
        state = safe_torch_load(str(path))
        net.load_state_dict(strip_module_prefix(state))
        scores = score_outputs(translate(net, inputs[crop]), data_root, reference)
        rows.append({'run_dir': str(run_dir), 'run': run_dir.name, 'group': group_name(run_dir.name), 'tag': tag,
                     'weights': weights, 'iterations': iterations_of(run_dir, tag), 'stamp': _stamp(path),
                     'version': synthetic.SCORES_VERSION, **scores})
    return rows


def aggregate(rows, metric):
    """{group: (iterations, mean, low, high, n_seeds)} of one metric; a point needs every seed of its group."""
    out = {}
    for group in dict.fromkeys(r['group'] for r in rows):
        mine = [r for r in rows if r['group'] == group]
        runs = sorted({r['run'] for r in mine})
        by_iter = {}
        for r in mine:
            by_iter.setdefault(r['iterations'], {})[r['run']] = r[metric]
        its = sorted(i for i, v in by_iter.items() if len(v) == len(runs))
        values = np.array([[by_iter[i][run] for run in runs] for i in its], dtype=float).reshape(len(its), len(runs))
        out[group] = (np.array(its), values.mean(axis=1), values.min(axis=1), values.max(axis=1), len(runs))
    return out


def plot(rows, path, baselines=None, metrics=PLOTTED, title=None):
    """One panel per metric, one line (mean) and band (min-max over seeds) per group, as a PNG."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    metrics = [m for m in metrics if m in rows[0]]
    cols = min(3, len(metrics))
    n_rows = math.ceil(len(metrics) / cols)
    fig, axes = plt.subplots(n_rows, cols, figsize=(4.6 * cols, 3.4 * n_rows), squeeze=False)
    for ax, metric in zip(axes.flat, metrics):
        title_m, higher = {**synthetic.METRICS, **synthetic.DATASET_METRICS}[metric]
        if metric == 'kid':
            ax.set_yscale('log')
        for group, (its, mean, low, high, n) in aggregate(rows, metric).items():
            line, = ax.plot(its, mean, marker='.', label=f'{group} (n={n})')
            if n > 1:
                ax.fill_between(its, low, high, color=line.get_color(), alpha=0.2)
        for label, style in (('truth', '--'), ('copy_input', ':')):
            value = (baselines or {}).get(label, {}).get(metric)
            if value is not None and math.isfinite(value):
                ax.axhline(value, color='grey', linestyle=style, linewidth=1,
                           label='true translation' if label == 'truth' else 'copy of the input')
        ax.set_title(f'{title_m} ({"higher" if higher else "lower"} is better)')
        ax.set_xlabel('training iterations')
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(metrics):]:
        ax.axis('off')
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc='lower center', ncol=min(4, len(labels)), fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.06 + 0.03 * (len(labels) > 4), 1, 0.97 if title else 1))
    buffer = io.BytesIO()
    fig.savefig(buffer, format='png', dpi=110)
    plt.close(fig)
    atomic_write(str(path), lambda f: f.write(buffer.getvalue()), binary=True)


def summary_table(rows, metrics=PLOTTED):
    """Markdown: each group's scores at its last common checkpoint, mean ± std over seeds."""
    header = ['run', 'seeds', 'iterations'] + [synthetic.METRICS.get(m, synthetic.DATASET_METRICS.get(m))[0]
                                               for m in metrics]
    lines = ['| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
    per_metric = {m: aggregate(rows, m) for m in metrics}
    for group in per_metric[metrics[0]]:
        its = per_metric[metrics[0]][group][0]
        if not len(its):
            continue
        cells = [group, str(per_metric[metrics[0]][group][4]), str(int(its[-1]))]
        for m in metrics:
            values = [r[m] for r in rows if r['group'] == group and r['iterations'] == its[-1]]
            std = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
            cells.append(f'{np.mean(values):.3f} ± {std:.3f}' if len(values) > 1 else f'{values[0]:.3f}')
        lines.append('| ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines) + '\n'


def write_csv(rows, path):
    fixed = ('run', 'group', 'tag', 'weights', 'iterations')
    keys = list(fixed) + [k for k in rows[0] if k not in ROW_FIELDS]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=keys, extrasaction='ignore', lineterminator='\n')
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(str(path), buffer.getvalue())


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--runs', nargs='+', required=True, help='run folders (<checkpoints_dir>/<name>)')
    ap.add_argument('--data', required=True, help='the synthetic dataset the runs were trained on')
    ap.add_argument('--out', required=True, help='folder for curves.png, curves.csv, curves.json, summary.md')
    ap.add_argument('--title', default=None)
    ap.add_argument('--threads', type=int, default=1,
                    help='torch threads for the translations (one is fastest for small generators and does not '
                         'fight a training run for the cores)')
    ap.add_argument('--raw_G', action='store_true',
                    help='score G itself in runs trained with --G_ema_beta (default: their averaged generator)')
    ap.add_argument('--metrics', nargs='+', default=list(PLOTTED),
                    choices=list(synthetic.METRICS) + list(synthetic.DATASET_METRICS))
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cache_path = out / 'curves.json'
    cache = json.loads(cache_path.read_text())['rows'] if cache_path.is_file() else None
    rows = score_runs(args.runs, args.data, cache=cache, raw_G=args.raw_G)
    base = synthetic.baselines(args.data)
    atomic_write_json(str(cache_path), {'data': str(args.data), 'baselines': base, 'rows': rows})
    write_csv(rows, out / 'curves.csv')
    plot(rows, out / 'curves.png', base, args.metrics, args.title)
    table = summary_table(rows, args.metrics)
    atomic_write_text(str(out / 'summary.md'), table)
    print(table, end='')
    print(f'wrote {out / "curves.png"}, curves.csv, curves.json, summary.md')


if __name__ == '__main__':
    raise SystemExit(cli(main))
