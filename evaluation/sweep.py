"""Best-epoch sweep: test.py and the metrics for every saved epoch of a run, then the best and the last.

Papers in the CUT line report the best epoch; this makes that one command and keeps the last one
beside it, so a table can say which it shows. For each `<checkpoints_dir>/<name>/<epoch>_net_G.pth`
it runs `test.py --epoch <epoch> --num_test <all source images>`, scores
`<results_dir>/<name>/<phase>_<epoch>/images/fake_B` (FID/KID against the target test set, and/or
the Cityscapes DRN-D-22 scores), writes each epoch's metrics JSON next to its images, and writes
`<results_dir>/<name>/sweep_<phase>.{json,csv}`. Flags it does not know (--model, --gpu_ids,
--CUT_mode, ...) are passed on to test.py. `--logger tensorboard,wandb` adds each epoch's metrics
(eval/fid, eval/kid_mean, eval/mAP, ...) to the run's TensorBoard folder and W&B run (util/loggers.py),
at the total_iters its checkpoint was saved at.

    python -m evaluation.sweep --dataroot datasets/horse2zebra --name h2z_src --model src_hdce
    python -m evaluation.sweep --dataroot datasets/cityscapes --name city_src --direction BtoA \\
        --metrics fid cityscapes --drn-weights drn_d_22_cityscapes.pth
"""
import argparse
import csv
import io
import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

from tqdm import tqdm

from data.image_folder import make_dataset
from evaluation import cityscapes, fid
from evaluation.common import EvaluationError, cli, default_device, default_epoch_choice, emit, image_files
from evaluation.drn import pretrained_drn
from util import errors, loggers
from util.util import atomic_write_json, atomic_write_text, safe_torch_load

# Whether a lower value is better, for every metric --select accepts, and which --metrics measures it.
LOWER_IS_BETTER = {'fid': True, 'kid_mean': True, 'mAP': False, 'pixAcc': False, 'classAcc': False}
MEASURED_BY = {'fid': 'fid', 'kid_mean': 'fid', 'mAP': 'cityscapes', 'pixAcc': 'cityscapes',
               'classAcc': 'cityscapes'}
METRICS = ('fid', 'cityscapes')


def saved_epochs(checkpoints_dir, name):
    """Every epoch with a saved generator: numbered ones ascending, then named ones ('best', 'latest')."""
    folder = Path(checkpoints_dir) / name
    if not folder.is_dir():
        raise EvaluationError(f'checkpoint folder {folder} does not exist')
    tags = [p.name[:-len('_net_G.pth')] for p in folder.glob('*_net_G.pth')]
    epochs = [str(e) for e in sorted(int(t) for t in tags if t.isdigit())] + sorted(t for t in tags if not t.isdigit())
    if not epochs:
        raise EvaluationError(f'{folder} holds no <epoch>_net_G.pth checkpoint')
    return epochs


# any file of a checkpoint, published or staged: <tag>_net_<G|D|F>.pth[.tmp<random>], <tag>_train_state.pth...
_CHECKPOINT_FILE = re.compile(r'^(\d+)_(?:net_[^.]+|train_state)\.pth(\.tmp.*)?$')


def missing_epochs(checkpoints_dir, name):
    """{epoch: why} for every numbered epoch the run should have saved but holds no <epoch>_net_G.pth for.

    An epoch is expected when some of its files are there (a save that was killed leaves its temporary
    files) or when train_opt.json's --save_epoch_freq (and the last epoch) asks for it up to the last
    epoch the run finished (latest_train_state.pth, else the highest saved epoch)."""
    folder = Path(checkpoints_dir) / name
    found = {}
    for p in folder.iterdir():
        m = _CHECKPOINT_FILE.match(p.name)
        if m:
            found.setdefault(int(m.group(1)), []).append(p.name)
    have = {e for e, files in found.items() if f'{e}_net_G.pth' in files}
    missing = {e: f'only {", ".join(sorted(files))}' for e, files in found.items() if e not in have}
    finished = max(have, default=0)
    try:
        state = safe_torch_load(str(folder / 'latest_train_state.pth'))
        finished = max(finished, state['epoch'] - (0 if state['epoch_done'] else 1))
    except (OSError, RuntimeError, KeyError, TypeError):
        pass  # no training state (e.g. an official checkpoint): the saved epochs tell how far it went
    try:
        opt = json.loads((folder / 'train_opt.json').read_text())
        freq, last = int(opt['save_epoch_freq']), int(opt['n_epochs']) + int(opt['n_epochs_decay'])
    except (OSError, ValueError, KeyError, TypeError):
        freq, last = 0, 0
    for e in range(1, finished + 1):
        if e not in have and e not in missing and ((freq > 0 and e % freq == 0) or e == last):
            missing[e] = f'due by --save_epoch_freq {freq}' if e != last else 'the last epoch'
    return {str(e): missing[e] for e in sorted(missing)}


def missing_message(folder, missing):
    listed = '; '.join(f'{e} ({why})' for e, why in missing.items())
    return (f'{folder} has no complete checkpoint for epoch(s) {listed}: its save was interrupted '
            '(train.py --continue_train writes the epoch again when the run stopped during that save)')


def choose_epochs(saved, requested=None, *, include_latest=False):
    """The epochs to evaluate, in the order of `saved`; loud on requested ones that were not saved.

    By default the numbered epochs, plus 'latest' when `include_latest` or when nothing is numbered;
    named checkpoints such as Hneg_SRC's 'best' only when requested.
    """
    if requested:
        unknown = [e for e in requested if e not in saved]
        if unknown:
            raise EvaluationError(f'no checkpoint for epoch(s) {", ".join(unknown)}; saved: {", ".join(saved)}')
        return [e for e in saved if e in requested]
    numbered = [e for e in saved if e.isdigit()]
    if 'latest' in saved and (include_latest or not numbered):
        return numbered + ['latest']
    if not numbered:
        raise EvaluationError(f'no numbered epoch or latest checkpoint among {", ".join(saved)}; '
                              'name the ones to evaluate with --epochs')
    return numbered


def domain_dirs(dataroot, phase, direction):
    """(source, target) image folders of a CUT dataset: <phase>A/<phase>B, swapped for BtoA."""
    if direction not in ('AtoB', 'BtoA'):
        raise EvaluationError(f'--direction must be AtoB or BtoA, got {direction!r}')
    a, b = Path(dataroot) / f'{phase}A', Path(dataroot) / f'{phase}B'
    source, target = (a, b) if direction == 'AtoB' else (b, a)
    for folder in (source, target):
        if not folder.is_dir():
            raise EvaluationError(f'{folder} does not exist; --dataroot must hold {phase}A and {phase}B')
    return source, target


def cut_test_runner(*, dataroot, name, checkpoints_dir, results_dir, phase, direction, extra_args=(),
                   python=sys.executable, script='test.py'):
    """A runner `(epoch, num_test)` calling test.py with CUT's flags; its output goes to stderr."""
    def run(epoch, num_test):
        cmd = [python, script, '--dataroot', str(dataroot), '--name', name, '--epoch', epoch,
               '--num_test', str(num_test), '--phase', phase, '--direction', direction,
               '--results_dir', str(results_dir), '--checkpoints_dir', str(checkpoints_dir), *extra_args]
        print('+ ' + shlex.join(cmd), file=sys.stderr)
        completed = subprocess.run(cmd, stdout=sys.stderr)
        if completed.returncode != 0:
            raise EvaluationError(f'test.py failed for epoch {epoch} (exit status {completed.returncode}): '
                                  f'{shlex.join(cmd)}')
    return run


def check_outputs(fake_dir, source_names, num_test):
    """Fail unless `fake_dir` holds one image per translated source image, named after it."""
    if not fake_dir.is_dir():
        raise EvaluationError(f'test.py wrote no {fake_dir}')
    names = {p.stem for p in image_files(fake_dir)}
    expected = min(num_test, len(source_names))
    strangers = sorted(names - source_names)
    if len(names) != expected or strangers:
        raise EvaluationError(
            f'{fake_dir} holds {len(names)} images, expected {expected} named after the source images'
            + (f'; not from the source set: {strangers[:3]}' if strangers else '')
            + '. Remove the folder if it holds results of an earlier run.')


def fid_evaluator(features, target_dir, **kid_args):
    """Metrics of a result folder against `target_dir`, whose features are computed once, here."""
    real = features(target_dir)

    def evaluate(result_dir, expect_count):
        return fid.fid_kid(result_dir / 'images' / 'fake_B', target_dir, features, real=real,
                           expect_count=expect_count, **kid_args)
    return evaluate


def cityscapes_evaluator(model, *, device, batch_size, official):
    """DRN-D-22 scores of a result folder's fake_B photos against its real_A label maps."""
    def evaluate(result_dir, expect_count):
        return cityscapes.evaluate_cityscapes(result_dir / 'images' / 'fake_B', result_dir / 'images' / 'real_A',
                                              model, device=device, batch_size=batch_size, official=official,
                                              expect_count=expect_count)
    return evaluate


def _row_metrics(result):
    """Scalar metrics of one evaluation, get_Acc.py's numbers prefixed with 'official_'."""
    row = {k: v for k, v in result['metrics'].items() if not isinstance(v, dict)}
    row.update({f'official_{k}': v for k, v in result.get('official_get_acc', {}).items()})
    return row


def best_row(rows, select):
    """The row with the best `select` value (the earliest one on ties)."""
    if select not in LOWER_IS_BETTER:
        raise EvaluationError(f'--select {select!r} is not one of {", ".join(LOWER_IS_BETTER)}')
    if any(select not in row for row in rows):
        raise EvaluationError(f'--select {select} was not measured; add its metric to --metrics')
    sign = 1 if LOWER_IS_BETTER[select] else -1
    return min(rows, key=lambda row: sign * row[select])


def sweep(epochs, *, run_test, results_root, phase, source_dir, evaluators, select, num_test=None,
          reuse_results=False, labels=None, on_row=None):
    """Run the test and every evaluator for each epoch; the rows plus the best and last rows.

    `run_test(epoch, num_test)` must write `<results_root>/<phase>_<epoch>/images/fake_B`;
    `evaluators` maps a kind ('fid', 'cityscapes') to `evaluate(result_dir, expect_count)`
    returning a result dict with 'metrics', saved with `labels` (run, method, dataset) as
    `metrics_<kind>.json` in the result folder. `on_row(row)` is called with each epoch's row.
    """
    try:
        source_names = {Path(p).stem for p in make_dataset(str(source_dir))}
    except (OSError, ValueError) as exc:
        raise EvaluationError(f'source test set {source_dir}: {exc}') from exc
    num_test = len(source_names) if num_test is None else num_test
    expected = min(num_test, len(source_names))
    rows = []
    for epoch in tqdm(epochs, desc='epochs', unit='epoch', file=sys.stderr):
        result_dir = Path(results_root) / f'{phase}_{epoch}'
        if not (reuse_results and (result_dir / 'images' / 'fake_B').is_dir()):
            run_test(epoch, num_test)
        check_outputs(result_dir / 'images' / 'fake_B', source_names, num_test)
        row = {'epoch': epoch}
        for kind, evaluate in evaluators.items():
            result = evaluate(result_dir, expected)
            result.update(labels or {}, epoch=epoch, phase=phase, epoch_choice=default_epoch_choice(epoch))
            atomic_write_json(str(result_dir / f'metrics_{kind}.json'), result)
            row.update(_row_metrics(result))
        rows.append(row)
        if on_row is not None:
            on_row(row)
    return {'epochs': rows, 'best': best_row(rows, select), 'last': rows[-1], 'select': select,
            'num_images': expected, 'partial': expected < len(source_names)}


def metric_logger(backends, folder):
    """on_row for `sweep`: an epoch's numeric metrics as eval/<metric> to each of `backends` (util/loggers.py), at
    the total_iters of <folder>/<epoch>_train_state.pth; an epoch saved without a training state is left out."""
    def log(row):
        state = Path(folder) / f'{row["epoch"]}_train_state.pth'
        if not state.is_file():
            print(f'warning: {state} is missing: epoch {row["epoch"]} has no step to log its metrics at', file=sys.stderr)
            return
        step = safe_torch_load(str(state))['total_iters']
        values = {f'eval/{k}': v for k, v in row.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        for backend in backends:
            backend.scalars(values, step)
    return log


def rows_to_csv(rows):
    """CSV text of the sweep rows, one per epoch, columns in first-seen order."""
    columns = list(dict.fromkeys(key for row in rows for key in row))
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, lineterminator='\n')
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     allow_abbrev=False)
    parser.add_argument('--dataroot', required=True)
    parser.add_argument('--name', required=True, help='the run (checkpoints_dir/name)')
    parser.add_argument('--checkpoints_dir', default='./checkpoints')
    parser.add_argument('--results_dir', default='./results/')
    parser.add_argument('--phase', default='test')
    parser.add_argument('--direction', default='AtoB', choices=('AtoB', 'BtoA'))
    parser.add_argument('--num_test', type=int, default=None,
                        help='images per epoch (default: the whole source test set; fewer is marked partial)')
    parser.add_argument('--epochs', nargs='+', default=None,
                        help="epochs to evaluate, numbered or named ('latest', 'best'); default: every numbered one")
    parser.add_argument('--include-latest', action='store_true', help="with the default epochs, also 'latest'")
    parser.add_argument('--metrics', nargs='+', default=['fid'], choices=METRICS)
    parser.add_argument('--select', default=None, choices=sorted(LOWER_IS_BETTER),
                        help='metric that picks the best epoch (default: fid, or mAP without fid)')
    fid.add_feature_args(parser)
    cityscapes.add_drn_args(parser)
    parser.add_argument('--reuse-results', action='store_true',
                        help="score existing result folders instead of rerunning test.py for them")
    parser.add_argument('--test-script', default='test.py')
    parser.add_argument('--python', default=sys.executable, help='interpreter for test.py')
    parser.add_argument('--method', default=None, help='row label for tables (default: --name)')
    parser.add_argument('--dataset', default=None, help='dataset label (default: the dataroot folder name)')
    parser.add_argument('--out', default=None,
                        help='JSON path; the CSV goes beside it (default: RESULTS_DIR/NAME/sweep_PHASE.json)')
    parser.add_argument('--logger', type=loggers.logger_list, default='none',
                        help="also log each epoch's metrics to the run's tensorboard and/or wandb (comma-separated)")
    parser.add_argument('--wandb_project_name', default='CycleGAN-and-pix2pix', help="the run's W&B project")
    parser.add_argument('--wandb_run_name', default=None, help="the run's W&B name (default: --name)")
    return parser


def test_flag(test_args, flag):
    """The value of `flag` among the flags passed on to test.py (the last one given), or None."""
    value = None
    for i, arg in enumerate(test_args):
        if arg == flag and i + 1 < len(test_args):
            value = test_args[i + 1]
        elif arg.startswith(flag + '='):
            value = arg.split('=', 1)[1]
    return value


def main(argv=None):
    parser = build_parser()
    args, test_args = parser.parse_known_args(argv)
    if 'cityscapes' in args.metrics and not args.drn_weights:
        parser.error('--metrics cityscapes needs --drn-weights')
    select = args.select or ('fid' if 'fid' in args.metrics else 'mAP')
    if MEASURED_BY[select] not in args.metrics:
        parser.error(f'--select {select} needs --metrics {MEASURED_BY[select]}')
    if select == 'kid_mean' and args.no_kid:
        parser.error('--select kid_mean needs KID; drop --no-kid')
    if 'visdom' in args.logger:
        parser.error('--logger: the sweep logs to tensorboard and wandb, not visdom')
    loggers.require_packages(args.logger)
    source_dir, target_dir = domain_dirs(args.dataroot, args.phase, args.direction)
    folder = Path(args.checkpoints_dir) / args.name
    saved = saved_epochs(args.checkpoints_dir, args.name)
    missing = missing_epochs(args.checkpoints_dir, args.name)
    wanted_missing = {e: why for e, why in missing.items() if e in (args.epochs or ())}
    if wanted_missing:
        raise EvaluationError(missing_message(folder, wanted_missing))
    if missing:
        print(f'warning: {missing_message(folder, missing)}; sweeping the saved ones', file=sys.stderr)
    epochs = choose_epochs(saved, args.epochs, include_latest=args.include_latest)
    device = args.device or default_device(test_flag(test_args, '--gpu_ids'))
    evaluators = {}
    if 'fid' in args.metrics:
        features, _ = fid.features_from_args(args)
        evaluators['fid'] = fid_evaluator(features, target_dir, kid=not args.no_kid,
                                          kid_subset_size=args.kid_subset_size,
                                          kid_subsets_n=args.kid_subsets, kid_seed=args.kid_seed)
    if 'cityscapes' in args.metrics:
        evaluators['cityscapes'] = cityscapes_evaluator(pretrained_drn(args.drn_weights, device=device),
                                                        device=device, batch_size=args.drn_batch_size,
                                                        official=args.official_get_acc)
    results_root = Path(args.results_dir) / args.name
    run_test = cut_test_runner(dataroot=args.dataroot, name=args.name, checkpoints_dir=args.checkpoints_dir,
                              results_dir=args.results_dir, phase=args.phase, direction=args.direction,
                              extra_args=test_args, python=args.python, script=args.test_script)
    labels = {'run': args.name, 'method': args.method or args.name,
              'dataset': args.dataset or Path(args.dataroot).resolve().name}
    backends = loggers.open_backends(args.logger, str(folder), project=args.wandb_project_name,
                                     run_name=args.wandb_run_name or args.name)
    try:
        summary = sweep(epochs, run_test=run_test, results_root=results_root, phase=args.phase,
                        source_dir=source_dir, evaluators=evaluators, select=select, num_test=args.num_test,
                        reuse_results=args.reuse_results, labels=labels, on_row=metric_logger(backends, folder))
    finally:
        for backend in backends:
            backend.close()
    summary.update(labels, kind='sweep', missing_epochs=missing, phase=args.phase, direction=args.direction, source_dir=str(source_dir),
                   target_dir=str(target_dir), metrics_measured=list(evaluators), test_args=test_args)
    out = Path(args.out) if args.out else results_root / f'sweep_{args.phase}.json'
    atomic_write_text(str(out.with_suffix('.csv')), rows_to_csv(summary['epochs']))
    print(f'best epoch by {select}: {summary["best"]["epoch"]}  last: {summary["last"]["epoch"]}  '
          f'({out}, {out.with_suffix(".csv")})', file=sys.stderr)
    emit(summary, out)


if __name__ == '__main__':
    sys.exit(errors.guard(lambda argv: cli(main, argv)))
