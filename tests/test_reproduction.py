"""Reproduction scripts: SMOKE mode end to end, the table writer on its results, the CPU study driver.

The SMOKE run of table4_ablation.sh (two rows, both datasets) and of every other script runs here;
they are the slowest tests of the suite (marked slow: `make test-fast` leaves them out).
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from evaluation import tables
from studies import cpu_study as study

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = ['train_horse2zebra.sh', 'train_cityscapes.sh', 'train_monet.sh', 'train_cut_baseline.sh', 'table1.sh',
           'table4_ablation.sh', 'train_multimodal.sh', 'common.sh']


def smoke(script, tmp_path, **env):
    full_env = dict(os.environ, SMOKE='1', SMOKE_DIR=str(tmp_path / 'smoke'), PYTHON=sys.executable,
                    OMP_NUM_THREADS='1', **env)
    done = subprocess.run(['bash', str(REPO / 'scripts' / script)], cwd=tmp_path, env=full_env,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert done.returncode == 0, done.stdout[-3000:]
    return tmp_path / 'smoke'


@pytest.mark.parametrize('script', SCRIPTS)
def test_scripts_parse(script):
    done = subprocess.run(['bash', '-n', str(REPO / 'scripts' / script)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


@pytest.mark.slow
def test_table4_smoke_end_to_end_and_table_writer(tmp_path, capsys):
    out = smoke('table4_ablation.sh', tmp_path, ROWS='infonce dce_src_hneg')
    results = out / 'results'
    names = ['h2z_abl_infonce', 'h2z_abl_dce_src_hneg', 'city_abl_infonce', 'city_abl_dce_src_hneg']
    sweeps = [results / n / 'sweep_test.json' for n in names]
    for sweep in sweeps:
        data = json.loads(sweep.read_text())
        assert data['kind'] == 'sweep' and data['best']['epoch'] == '1'
    markdown = (results / 'table4.md').read_text()
    rows = [line for line in markdown.splitlines() if line.startswith('| CUT') or line.startswith('| DCE')]
    assert [r.split(' | ')[0] for r in rows] == ['| CUT', '| DCE + SRC + Hneg']
    # every column filled: FID, mAP, pixAcc and classAcc as get_Acc.py computes them, FID, the correct two
    assert all('–' not in r for r in rows), rows
    # the paper's values under each row
    assert '| *CUT, paper* | *45.5* | *24.7* | *68.8* | *30.7* | *56.4* | *–* | *–* |' in markdown
    assert '| *DCE + SRC + Hneg, paper* | *34.4* |' in markdown
    assert len((results / 'table4.csv').read_text().splitlines()) == 1 + 2 * 7
    # the table writer on the same results, with the last epoch instead of the best
    tables.main([str(s) for s in sweeps] + ['--layout', 'table4', '--choice', 'last'])
    assert 'last@e1, city_abl_dce_src_hneg' in capsys.readouterr().out
    # a finished run is not trained again (RESUME), and the options of each run were the recipe's
    opts = json.loads((out / 'checkpoints' / 'city_abl_infonce' / 'train_opt.json').read_text())
    assert opts['direction'] == 'BtoA' and opts['step_gamma'] and opts['patch_loss'] == 'infonce'
    assert opts['lambda_SRC'] == 0 and opts['no_Hneg'] and opts['display_env'] == 'city_abl_infonce'


@pytest.mark.parametrize('script,result', [('train_horse2zebra.sh', 'h2z_src_hdce'),
                                           ('train_cityscapes.sh', 'city_src_hdce'),
                                           ('train_monet.sh', 'monet_src_hdce'),
                                           ('train_cut_baseline.sh', 'h2z_cut'),
                                           ('table1.sh', 'table1.md'),
                                           ('train_multimodal.sh', 'seasons_stargan_v2_semantic/multimodal/table2.md')])
@pytest.mark.slow
def test_other_scripts_smoke(script, result, tmp_path):
    out = smoke(script, tmp_path)
    assert (out / 'results' / result).exists()


def test_ablation_rows_are_the_papers_in_its_order():
    labels = [label for _, label, _ in study.TABLE4_ROWS]
    assert labels == ['CUT', 'InfoNCE + SRC', 'InfoNCE + SRC + Hneg', 'DCE', 'DCE + Hneg', 'DCE + SRC',
                      'DCE + SRC + Hneg']
    assert labels == list(tables.PAPER['table4'])
    # every row is one combination of patch loss, SRC and hard negatives; the eighth stays selectable
    combos = set()
    for _, _, flags in study.all_rows():
        given = study.effective_flags(flags)
        combos.add((given['--patch_loss'], given.get('--lambda_SRC') != '0', '--no_Hneg' not in given))
    assert len(combos) == len(study.all_rows()) == 8
    assert study.TABLE4_ROWS[0][2] == ['--patch_loss', 'infonce', '--lambda_SRC', '0', '--no_Hneg']
    assert study.TABLE4_ROWS[-1][2] == ['--patch_loss', 'dce']
    assert [r[0] for r in study.select_rows(['infonce_hneg', 'dce'])] == ['infonce_hneg', 'dce']
    with pytest.raises(SystemExit, match='valid: infonce'):
        study.select_rows(['dce', 'nope'])


def test_ablation_print_rows(capsys):
    assert study.main(['ablation', '--print_rows']) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 7 and lines[0] == 'infonce\tCUT\t--patch_loss infonce --lambda_SRC 0 --no_Hneg'
    assert lines[-1] == 'dce_src_hneg\tDCE + SRC + Hneg\t--patch_loss dce'
    assert study.main(['ablation', '--print_rows', '--all']) == 0
    last = capsys.readouterr().out.splitlines()[-1]
    assert last == 'infonce_hneg\tInfoNCE + Hneg\t--patch_loss infonce --lambda_SRC 0'


def _record(config, seed, iou, bg):
    label = {r[0]: r[1] for r in study.all_rows()}[config]
    final = {'stripe_iou': iou, 'bg_l1': bg, 'leakage': 0.1, 'shape_iou': 0.5, 'kid': 1.0, 'psnr_gt': 12.0}
    curve = [{'tag': '1', 'iterations': 10, **final}, {'tag': '2', 'iterations': 20, **final}]
    return {'config': config, 'label': label, 'seed': seed, 'iterations': 20, 'final': final, 'curve': curve}


def test_ablation_summary_tables_and_paired_differences(tmp_path):
    records = [_record('infonce', 0, 0.5, 0.10), _record('infonce', 1, 0.6, 0.12),
               _record('dce', 0, 0.7, 0.08), _record('dce', 1, 0.6, 0.06), _record('dce_src', 0, 0.8, 0.05)]
    (tmp_path / 'runs').mkdir()
    for i, record in enumerate(records):
        (tmp_path / 'runs' / f'{i}.json').write_text(json.dumps(record))
    text = study.summarize(study.parse_args(['ablation', '--out', str(tmp_path)]))
    assert '| CUT | 2 | 20 | 2 of 2 | 0.550 ± 0.071 |' in text
    assert '| DCE | 2 | 20 | 2 of 2 | **0.650 ± 0.071** |' not in text  # the best mean is DCE + SRC's
    assert '| DCE + SRC | 1 | 20 | 1 of 1 | **0.800** |' in text
    # DCE for InfoNCE, paired by seed: +0.2 and 0.0 stripe IoU; the paper: FID 45.5 -> 41.2, mAP 24.7 -> 27.8
    line = next(l for l in text.splitlines() if l.startswith('| DCE for InfoNCE | CUT → DCE |'))
    assert '| 2 | 0.100 ± 0.141 (1/2 better) |' in line and line.endswith('| -4.3 | +3.1 |')
    assert '| SRC | DCE → DCE + SRC | 1 | 0.100 (1/1 better) |' in text
    assert (tmp_path / 'curves.png').stat().st_size > 10_000 and (tmp_path / 'summary.md').is_file()


@pytest.mark.slow
def test_study_driver_runs_one_tiny_configuration(tmp_path):
    out = tmp_path / 'study'
    argv = ['ablation', '--work', str(tmp_path / 'work'), '--out', str(out), '--rows', 'dce_src_hneg',
            '--seeds', '5', '--jobs', '1', '--size', '32', '--n_train', '2', '--n_test', '2',
            '--budget_flags', '--ngf', '4', '--ndf', '4', '--num_patches', '8', '--n_epochs', '1',
            '--n_epochs_decay', '1', '--netG', 'resnet_4blocks']
    assert study.main(argv) == 0
    record = json.loads((out / 'runs' / 'dce_src_hneg_seed5.json').read_text())
    assert record['label'] == 'DCE + SRC + Hneg' and record['seed'] == 5 and record['iterations'] == 4
    assert [p['iterations'] for p in record['curve']] == [2, 4]  # every epoch is a point of the curve
    assert record['train_flags'][-2:] == ['--seed', '5'] and '--patch_loss' in record['train_flags']
    assert set(record['final']) >= {'stripe_iou', 'bg_l1', 'leakage', 'shape_iou', 'kid', 'psnr_gt'}
    assert json.loads((out / 'baselines.json').read_text())['copy_input']['stripe_iou'] == 0
    assert 'DCE + SRC + Hneg' in (out / 'summary.md').read_text()
    # rerun: the finished run is skipped
    assert study.main(argv) == 0


def test_study_reuses_runs_with_identical_flags(tmp_path):
    args = study.parse_args(['recipes', '--out', str(tmp_path / 'recipes'), '--seeds', '0', '1',
                             '--reuse', str(tmp_path / 'ablation')])
    (tmp_path / 'ablation' / 'runs').mkdir(parents=True)
    (tmp_path / 'recipes' / 'runs').mkdir(parents=True)
    cpu_flags = dict((n, f) for n, _, f in study.study_configs(args))['cpu_10x']
    same = {'config': 'dce_src_hneg', 'label': 'DCE + SRC + Hneg', 'seed': 0, 'data': study.data_summary(args),
            'train_flags': study.train_flags(args, cpu_flags, 0)}
    other_seed = {**same, 'seed': 1, 'train_flags': study.train_flags(args, cpu_flags, 7)}
    (tmp_path / 'ablation' / 'runs' / 'a.json').write_text(json.dumps(same))
    (tmp_path / 'ablation' / 'runs' / 'b.json').write_text(json.dumps(other_seed))
    assert study.reuse_runs(args, study.study_configs(args), tmp_path / 'recipes' / 'runs') == 1
    copied = json.loads((tmp_path / 'recipes' / 'runs' / 'cpu_10x_seed0.json').read_text())
    assert copied['config'] == 'cpu_10x' and copied['label'].startswith('paper recipe at 10x')


def test_sweep_configs_come_from_a_json_file(tmp_path):
    path = tmp_path / 'sweep.json'
    path.write_text(json.dumps({'_comment': 'why', 'half': ['--lambda_HDCE', 0.5]}))
    configs = study.study_configs(study.parse_args(['sweep', '--configs', str(path)]))
    assert [(name, flags[-2:]) for name, _, flags in configs] == [('half', ['--lambda_HDCE', '0.5'])]
    assert configs[0][2][:len(study.read_recipe('cpu_5x'))] == study.read_recipe('cpu_5x')
    for bad in ('{"a": "--lr 1"}', '[1]', '{}', 'not json'):
        path.write_text(bad)
        with pytest.raises(SystemExit, match='configs'):
            study.study_configs(study.parse_args(['sweep', '--configs', str(path)]))
    with pytest.raises(SystemExit, match='needs --configs'):
        study.study_configs(study.parse_args(['sweep']))


def test_a_recipes_own_flags_beat_the_budgets_and_budget_flags_beat_both():
    # cpu_demo.txt sets --ndf 64 over the budget's --ndf 16: the study must train what the demo trains
    demo = dict((n, f) for n, _, f in study.study_configs(study.parse_args(['recipes'])))['demo']
    flags = study.effective_flags(study.train_flags(study.parse_args(['recipes']), demo, 3))
    assert study.effective_flags(study.read_recipe('cpu_budget'))['--ndf'] == '16' and flags['--ndf'] == '64'
    assert flags['--G_output'] == 'residual' and flags['--seed'] == '3'
    forced = study.parse_args(['recipes', '--budget_flags', '--ndf', '8'])
    assert study.effective_flags(study.train_flags(forced, demo, 3))['--ndf'] == '8'


def test_runs_compare_by_effective_flags(tmp_path):
    assert study.effective_flags(['--lr', '1', '--dce_idt', '--lr', '2', '--gpu_ids', '-1']) == {
        '--lr': '2', '--dce_idt': True, '--gpu_ids': '-1'}
    args = study.parse_args(['sweep', '--out', str(tmp_path), '--seeds', '0'])
    configs = [('half', 'half', study.read_recipe('cpu_5x') + ['--lambda_HDCE', '0.5'])]
    (tmp_path / 'runs').mkdir()
    record = {'config': 'half', 'label': 'half', 'seed': 0, 'data': study.data_summary(args),
              'train_flags': study.train_flags(args, ['--lambda_HDCE', '9'] + configs[0][2], 0)}
    (tmp_path / 'runs' / 'half_seed0.json').write_text(json.dumps(record))
    study.check_finished(args, configs, tmp_path / 'runs')  # the extra, overridden flag changes nothing
    record['train_flags'] += ['--lr', '0.1']
    (tmp_path / 'runs' / 'half_seed0.json').write_text(json.dumps(record))
    with pytest.raises(SystemExit, match='half_seed0.json was trained with other flags'):
        study.check_finished(args, configs, tmp_path / 'runs')
