"""Tests for evaluation/sweep.py (best/last epoch over a run) and evaluation/tables.py (Table 1/4 output).

The sweep's test runner is injected: in-process a function writing images, end to end a stand-in
`test.py` given with --test-script that writes what CUT's test.py writes
(`<results_dir>/<name>/<phase>_<epoch>/images/{real_A,fake_B}/<basename>.png`).
"""
import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from evaluation import sweep as sw
from evaluation import tables
from evaluation.cityscapes import PALETTE
from evaluation.common import EvaluationError
from evaluation.drn import DRNSeg

REPO = Path(__file__).resolve().parents[1]

FAKE_TEST_PY = """
import argparse, pathlib, sys
from PIL import Image
parser = argparse.ArgumentParser()
for flag in ('--dataroot', '--name', '--epoch', '--num_test', '--phase', '--direction', '--results_dir',
             '--checkpoints_dir', '--model'):
    parser.add_argument(flag)
args = parser.parse_args()
source = pathlib.Path(args.dataroot) / (args.phase + ('B' if args.direction == 'BtoA' else 'A'))
out = pathlib.Path(args.results_dir) / args.name / f'{args.phase}_{args.epoch}' / 'images'
for kind in ('real_A', 'fake_B'):
    (out / kind).mkdir(parents=True, exist_ok=True)
for path in sorted(source.iterdir())[:int(args.num_test)]:
    image = Image.open(path).convert('RGB')
    image.save(out / 'real_A' / (path.stem + '.png'))
    image.rotate(int(args.epoch) if args.epoch.isdigit() else 0).save(out / 'fake_B' / (path.stem + '.png'))
with open(pathlib.Path(args.results_dir) / 'calls.txt', 'a') as f:
    f.write(' '.join(sys.argv[1:]) + '\\n')
"""


def _checkpoints(root, name, epochs):
    folder = root / name
    folder.mkdir(parents=True)
    for epoch in epochs:
        (folder / f'{epoch}_net_G.pth').touch()
    (folder / '10_net_D.pth').touch()
    return root


def test_saved_epochs_are_numeric_then_named(tmp_path):
    root = _checkpoints(tmp_path, 'run', ['5', '10', '40', 'latest', 'best'])
    saved = sw.saved_epochs(root, 'run')
    assert saved == ['5', '10', '40', 'best', 'latest']
    assert sw.choose_epochs(saved) == ['5', '10', '40']
    assert sw.choose_epochs(saved, include_latest=True) == ['5', '10', '40', 'latest']
    assert sw.choose_epochs(saved, ['best', '40', '5']) == ['5', '40', 'best']
    with pytest.raises(EvaluationError, match='no checkpoint for epoch.*15; saved: 5, 10, 40, best, latest'):
        sw.choose_epochs(saved, ['15'])
    assert sw.choose_epochs(sw.saved_epochs(_checkpoints(tmp_path / 'b', 'latest_only', ['latest']),
                                            'latest_only')) == ['latest']
    with pytest.raises(EvaluationError, match="name the ones to evaluate with --epochs"):
        sw.choose_epochs(['best'])
    with pytest.raises(EvaluationError, match='holds no <epoch>_net_G.pth'):
        sw.saved_epochs(_checkpoints(tmp_path / 'c', 'empty', []), 'empty')


def _source(folder, count):
    folder.mkdir(parents=True)
    for i in range(count):
        Image.new('RGB', (8, 8), (i, 0, 0)).save(folder / f'n{i:02d}.jpg')
    return folder


def _fake_runner(results_root, source, calls, *, drop=0, stranger=False):
    def run(epoch, num_test):
        calls.append((epoch, num_test))
        fake = results_root / f'test_{epoch}' / 'images' / 'fake_B'
        fake.mkdir(parents=True, exist_ok=True)
        for path in sorted(source.iterdir())[:num_test - drop]:
            Image.new('RGB', (8, 8)).save(fake / f'{path.stem}.png')
        if stranger:
            (fake / f'{path.stem}.png').rename(fake / 'stranger.png')
    return run


def _stub_evaluator(values):
    def evaluate(result_dir, expect_count):
        epoch = result_dir.name.split('_', 1)[1]
        return {'kind': 'stub', 'metrics': dict(values[epoch]), 'count': expect_count}
    return evaluate


def test_sweep_reports_best_and_last(tmp_path):
    source, calls = _source(tmp_path / 'testA', 6), []
    values = {'5': {'fid': 80.0, 'mAP': 20.0}, '10': {'fid': 61.5, 'mAP': 22.0}, '15': {'fid': 70.0, 'mAP': 25.0}}
    run = _fake_runner(tmp_path / 'res', source, calls)
    summary = sw.sweep(['5', '10', '15'], run_test=run, results_root=tmp_path / 'res', phase='test',
                       source_dir=source, evaluators={'fid': _stub_evaluator(values)}, select='fid',
                       labels={'run': 'h2z', 'method': 'SRC', 'dataset': 'horse2zebra'})
    assert calls == [('5', 6), ('10', 6), ('15', 6)]
    assert (summary['best']['epoch'], summary['last']['epoch'], summary['partial']) == ('10', '15', False)
    assert [row['fid'] for row in summary['epochs']] == [80.0, 61.5, 70.0]
    per_epoch = json.loads((tmp_path / 'res' / 'test_10' / 'metrics_fid.json').read_text())
    assert (per_epoch['method'], per_epoch['epoch'], per_epoch['epoch_choice'], per_epoch['count']) == \
        ('SRC', '10', 'fixed', 6)
    assert sw.best_row(summary['epochs'], 'mAP')['epoch'] == '15'
    rows = list(csv.DictReader(io.StringIO(sw.rows_to_csv(summary['epochs']))))
    assert [(r['epoch'], float(r['fid'])) for r in rows] == [('5', 80.0), ('10', 61.5), ('15', 70.0)]

    with pytest.raises(EvaluationError, match='holds 6 images, expected 4.*results of an earlier run'):
        sw.sweep(['5'], run_test=run, results_root=tmp_path / 'res', phase='test', source_dir=source,
                 evaluators={}, select='fid', num_test=4)
    partial_run = _fake_runner(tmp_path / 'partial', source, calls)
    summary = sw.sweep(['5'], run_test=partial_run, results_root=tmp_path / 'partial', phase='test',
                       source_dir=source, evaluators={'fid': _stub_evaluator(values)}, select='fid', num_test=4)
    assert calls[-1] == ('5', 4) and summary['partial'] is True and summary['num_images'] == 4


@pytest.mark.parametrize('drop, stranger, message', [
    (2, False, 'holds 4 images, expected 6'),
    (0, True, r"not from the source set: \['stranger'\]"),
])
def test_sweep_rejects_incomplete_results(tmp_path, drop, stranger, message):
    source = _source(tmp_path / 'testA', 6)
    run = _fake_runner(tmp_path / 'res', source, [], drop=drop, stranger=stranger)
    with pytest.raises(EvaluationError, match=message):
        sw.sweep(['5'], run_test=run, results_root=tmp_path / 'res', phase='test', source_dir=source,
                 evaluators={}, select='fid')


def _cityscapes_dataroot(root, count):
    rng = np.random.default_rng(0)
    for split in ('testA', 'testB'):
        (root / split).mkdir(parents=True)
    for i in range(count):
        blocks = PALETTE[rng.integers(0, 19, size=(4, 4))].astype(np.uint8)
        label = Image.fromarray(blocks).resize((64, 64), Image.NEAREST)
        label.save(root / 'testB' / f'{i}_B.jpg', quality=100)
        Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(root / 'testA' / f'{i}_A.jpg')
    return root


@pytest.mark.slow
def test_sweep_command_end_to_end(tmp_path):
    """scripts/sweep_epochs.sh → stand-in test.py → DRN scores → sweep JSON and CSV."""
    dataroot = _cityscapes_dataroot(tmp_path / 'cityscapes', 3)
    checkpoints = _checkpoints(tmp_path / 'checkpoints', 'city_run', ['2', '4', 'latest'])
    torch.manual_seed(0)
    torch.save(DRNSeg().state_dict(), tmp_path / 'drn.pth')
    (tmp_path / 'fake_test.py').write_text(FAKE_TEST_PY)
    results = tmp_path / 'results'
    cmd = ['bash', str(REPO / 'scripts' / 'sweep_epochs.sh'), '--dataroot', str(dataroot), '--name', 'city_run',
           '--checkpoints_dir', str(checkpoints), '--results_dir', str(results), '--direction', 'BtoA',
           '--metrics', 'cityscapes', '--drn-weights', str(tmp_path / 'drn.pth'), '--official-get-acc',
           '--device', 'cpu', '--include-latest', '--test-script', str(tmp_path / 'fake_test.py'), '--model', 'cut']
    done = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, 'PYTHON': sys.executable})
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary == json.loads((results / 'city_run' / 'sweep_test.json').read_text())
    assert [row['epoch'] for row in summary['epochs']] == ['2', '4', 'latest']
    assert summary['select'] == 'mAP' and summary['last']['epoch'] == 'latest'
    assert summary['best']['mAP'] == max(row['mAP'] for row in summary['epochs'])
    assert {'official_pixAcc', 'pixAcc', 'classAcc'} <= set(summary['best'])
    assert (summary['dataset'], summary['test_args']) == ('cityscapes', ['--model', 'cut'])
    calls = (results / 'calls.txt').read_text().splitlines()
    assert len(calls) == 3 and all('--num_test 3' in c and '--model cut' in c for c in calls)
    csv_rows = list(csv.DictReader((results / 'city_run' / 'sweep_test.csv').open()))
    assert [r['epoch'] for r in csv_rows] == ['2', '4', 'latest']


def _write(path, data):
    path.write_text(json.dumps(data))
    return path


def _sweep_json(path, method, dataset, rows, best, run):
    return _write(path, {'kind': 'sweep', 'method': method, 'run': run, 'dataset': dataset, 'epochs': rows,
                         'best': rows[best], 'last': rows[-1]})


@pytest.fixture
def metric_files(tmp_path):
    h2z = [{'epoch': '200', 'fid': 40.123}, {'epoch': '400', 'fid': 36.2}, {'epoch': 'latest', 'fid': 37.0}]
    city = [{'epoch': '350', 'fid': 51.0, 'mAP': 28.41, 'pixAcc': 72.0, 'classAcc': 35.5, 'official_pixAcc': 61.0,
             'official_classAcc': 24.5},
            {'epoch': '400', 'fid': 52.0, 'mAP': 27.0, 'pixAcc': 71.0, 'classAcc': 34.0, 'official_pixAcc': 60.0,
             'official_classAcc': 23.0}]
    return [
        _sweep_json(tmp_path / 'src_h2z.json', 'SRC', 'horse2zebra', h2z, 1, 'h2z_src'),
        _sweep_json(tmp_path / 'src_city.json', 'SRC', 'cityscapes_cut', city, 0, 'city_src'),
        _write(tmp_path / 'cut_fid.json', {'kind': 'fid', 'method': 'CUT', 'run': 'h2z_cut', 'dataset': 'horse2zebra',
                                           'epoch': 'latest', 'epoch_choice': 'last', 'metrics': {'fid': 45.5}}),
    ]


@pytest.mark.slow
def test_make_table_marks_epoch_choice_and_run(metric_files, tmp_path):
    out = tmp_path / 'table1'
    done = subprocess.run([sys.executable, str(REPO / 'scripts' / 'make_table.py'), *map(str, metric_files),
                           '--layout', 'table1', '--rows', 'CUT', 'SRC', '--out', str(out)],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    markdown = out.with_suffix('.md').read_text()
    assert done.stdout == markdown
    lines = markdown.splitlines()
    assert lines[2] == ('| Method | Horse→Zebra FID↓ | Cityscapes mAP↑ | pixAcc↑† | classAcc↑† | FID↓ | '
                        'pixAcc↑ (correct) | classAcc↑ (correct) |')
    assert lines[4] == '| CUT | 45.50 (last@elatest, h2z_cut) | – | – | – | – | – | – |'
    assert lines[5] == '| *CUT, paper* | *45.5* | *24.7* | *68.8* | *30.7* | *56.4* | *–* | *–* |'  # Table 1's CUT
    # beside the paper's pixAcc/classAcc: get_Acc.py's arithmetic (official_*); the correct ones after FID
    assert lines[6] == ('| SRC | 36.20 (best@e400, h2z_src) | 28.41 (best@e350, city_src) | 61.00 (best@e350, '
                        'city_src) | 24.50 (best@e350, city_src) | 51.00 (best@e350, city_src) | 72.00 (best@e350, '
                        'city_src) | 35.50 (best@e350, city_src) |')
    assert lines[-1] == tables.OFFICIAL_ACC_NOTE
    rows = list(csv.DictReader(out.with_suffix('.csv').open()))
    assert len(rows) == 8  # the paper's values are not in the CSV; both accuracies are
    assert {(r['metric'], r['value']) for r in rows if r['column'].startswith('pixAcc')} == {
        ('official_pixAcc', '61.0'), ('pixAcc', '72.0')}
    assert rows[1] == {'table': 'table1', 'row': 'SRC', 'column': 'Horse→Zebra FID↓', 'dataset': 'horse2zebra',
                       'metric': 'fid', 'value': '36.2', 'epoch_choice': 'best', 'epoch': '400', 'run': 'h2z_src',
                       'source': str(metric_files[0])}


def test_paper_rows_follow_the_label_and_can_be_left_out(metric_files, capsys):
    tables.main(list(map(str, metric_files)) + ['--layout', 'table4', '--rows', 'CUT', 'SRC'])
    markdown = capsys.readouterr().out
    assert '| *CUT, paper* | *45.5* |' in markdown and 'SRC, paper' not in markdown  # no paper row "SRC"
    tables.main(list(map(str, metric_files)) + ['--layout', 'table4', '--no_paper'])
    assert 'paper*' not in capsys.readouterr().out
    assert tables.PAPER['table4']['InfoNCE + SRC'][2] is None  # illegible in the paper: shown as –
    assert list(tables.PAPER['table1']) == ['CUT', 'SRC + hDCE (ours)']


def test_table_last_choice_and_layout(metric_files, capsys):
    tables.main(list(map(str, metric_files)) + ['--choice', 'last', '--layout', 'table4'])
    markdown = capsys.readouterr().out
    assert '| Configuration |' in markdown
    assert '| SRC | 37.00 (last@elatest, h2z_src) | 27.00 (last@e400, city_src) |' in markdown


def test_cityscapes_json_gives_both_accuracies(tmp_path):
    """An evaluation.cityscapes JSON (its get_Acc.py numbers under official_get_acc) fills the † columns."""
    path = _write(tmp_path / 'metrics_cityscapes.json', {
        'kind': 'cityscapes', 'method': 'CUT', 'run': 'city_cut', 'dataset': 'cityscapes', 'epoch': '400',
        'metrics': {'mAP': 24.0, 'pixAcc': 70.0, 'classAcc': 33.0},
        'official_get_acc': {'pixAcc': 59.0, 'classAcc': 22.0, 'mIoU': 15.0}})
    layout = tables.LAYOUTS['table1']
    row_labels, cells = tables.build_table([tables.load_record(path, choice='best', aliases={})], layout)
    shown = {layout.columns[i][2]: cells[('CUT', i)].metrics[layout.columns[i][1]] for (_, i) in cells}
    assert shown == {'Cityscapes mAP↑': 24.0, 'pixAcc↑†': 59.0, 'classAcc↑†': 22.0, 'pixAcc↑ (correct)': 70.0,
                     'classAcc↑ (correct)': 33.0}


def test_table_errors_name_the_files(metric_files, tmp_path):
    duplicate = _write(tmp_path / 'dup.json', {'kind': 'fid', 'method': 'SRC', 'run': 'x', 'dataset': 'horse2zebra',
                                                'epoch': '5', 'metrics': {'fid': 1.0}})
    with pytest.raises(EvaluationError, match=r'two values for SRC / Horse→Zebra FID↓: .*src_h2z.json and .*dup'):
        tables.main(list(map(str, metric_files + [duplicate])))
    nameless = _write(tmp_path / 'nameless.json', {'kind': 'fid', 'metrics': {'fid': 1.0}})
    with pytest.raises(EvaluationError, match='nameless.json names no dataset'):
        tables.main([str(nameless)])
    renamed = _write(tmp_path / 'renamed.json', {'kind': 'fid', 'method': 'X', 'dataset': 'h2z_small',
                                                 'metrics': {'fid': 3.0}})
    row_labels, cells = tables.build_table(
        [tables.load_record(renamed, choice='best', aliases={'h2z_small': 'horse2zebra'})], tables.LAYOUTS['table1'])
    assert row_labels == ['X'] and cells[('X', 0)].metrics['fid'] == 3.0


class _CountingFeatures:
    """Stands in for InceptionFeatures: fixed random features per folder, counting the calls."""
    dims, batch_size = 4, 50

    def __init__(self):
        self.calls = []

    def __call__(self, folder):
        self.calls.append(Path(folder).name)
        files = sorted(Path(folder).iterdir())
        seed = sum(map(ord, Path(folder).parent.parent.name + Path(folder).name))
        return np.random.default_rng(seed).normal(size=(len(files), self.dims)), files, (8, 8)


def test_fid_evaluator_reads_the_target_set_once(tmp_path):
    source, target = _source(tmp_path / 'testA', 6), _source(tmp_path / 'testB', 7)
    features = _CountingFeatures()
    evaluate = sw.fid_evaluator(features, target, kid_subset_size=5, kid_subsets_n=3)
    summary = sw.sweep(['1', '2'], run_test=_fake_runner(tmp_path / 'res', source, []), results_root=tmp_path / 'res',
                       phase='test', source_dir=source, evaluators={'fid': evaluate}, select='fid')
    assert features.calls == ['testB', 'fake_B', 'fake_B']
    assert {'fid', 'kid_mean', 'kid_std'} <= set(summary['best'])
    assert summary['epochs'][0]['fid'] != summary['epochs'][1]['fid']
