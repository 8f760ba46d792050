"""Reproduction scripts: SMOKE mode end to end, the table writer on its results, the CPU ablation driver.

The SMOKE run of table4_ablation.sh (two rows, both datasets) and of every other script runs here
(about 20-45 s each on 2 cores).
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from evaluation import tables
from scripts import run_cpu_ablation as ablation

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = ['train_horse2zebra.sh', 'train_cityscapes.sh', 'train_monet.sh', 'train_cut_baseline.sh', 'table1.sh',
           'table4_ablation.sh', 'common.sh']


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


def test_table4_smoke_end_to_end_and_table_writer(tmp_path, capsys):
    out = smoke('table4_ablation.sh', tmp_path, ROWS='infonce dce_src_hneg')
    results = out / 'results'
    names = ['h2z_abl_infonce', 'h2z_abl_dce_src_hneg', 'city_abl_infonce', 'city_abl_dce_src_hneg']
    sweeps = [results / n / 'sweep_test.json' for n in names]
    for sweep in sweeps:
        data = json.loads(sweep.read_text())
        assert data['kind'] == 'sweep' and data['best']['epoch'] == '1'
    markdown = (results / 'table4.md').read_text()
    rows = [line for line in markdown.splitlines() if line.startswith('| InfoNCE') or line.startswith('| DCE')]
    assert [r.split(' | ')[0] for r in rows] == ['| InfoNCE (CUT)', '| DCE + SRC + Hneg (ours)']
    assert all('–' not in r for r in rows), rows  # every column filled: FID, mAP, pixAcc, classAcc, FID
    assert len((results / 'table4.csv').read_text().splitlines()) == 1 + 2 * 5
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
                                           ('table1.sh', 'table1.md')])
def test_other_scripts_smoke(script, result, tmp_path):
    out = smoke(script, tmp_path)
    assert (out / 'results' / result).exists()


def test_ablation_rows_cover_every_combination():
    combos = {(loss, src, hneg) for _, loss, src, hneg in ablation.ABLATION_ROWS}
    assert len(combos) == len(ablation.ABLATION_ROWS) == 8
    assert ablation.row_flags('infonce', False, False) == ['--patch_loss', 'infonce', '--lambda_SRC', '0',
                                                           '--no_Hneg']
    assert ablation.row_flags('dce', True, True) == ['--patch_loss', 'dce']
    assert ablation.row_label('infonce', False, False) == 'InfoNCE (CUT)'
    assert ablation.row_label('dce', True, True) == 'DCE + SRC + Hneg (ours)'
    with pytest.raises(SystemExit, match='valid: infonce'):
        ablation.select_rows(['dce', 'nope'])


def test_ablation_print_rows(capsys):
    assert ablation.main(['--print_rows']) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 8 and lines[-1] == 'dce_src_hneg\tDCE + SRC + Hneg (ours)\t--patch_loss dce'


def _record(slug, seed, psnr, l1):
    loss, src, hneg = ablation.rows_by_slug()[slug]
    return {'row': ablation.row_label(loss, src, hneg), 'slug': slug, 'seed': seed,
            'metrics': {'psnr': psnr, 'ssim': 0.5, 'l1': l1, 'l1_object': l1, 'l1_background': l1}}


def test_ablation_summary_mean_std_and_best(tmp_path):
    records = [_record('dce', 0, 20.0, 0.10), _record('dce', 1, 22.0, 0.12), _record('infonce', 0, 18.0, 0.2),
               {'row': 'copy the input (no translation)', 'slug': 'identity', 'seed': None,
                'metrics': {'psnr': 30.0, 'ssim': 0.9, 'l1': 0.01, 'l1_object': 0.3, 'l1_background': 0.0}}]
    for i, record in enumerate(records):
        (tmp_path / f'{i}.json').write_text(json.dumps(record))
    table = ablation.aggregate(ablation.load_records(tmp_path))
    assert list(table) == ['InfoNCE (CUT)', 'DCE', 'copy the input (no translation)']
    mean, std, n = table['DCE']['psnr']
    assert (mean, n) == (21.0, 2) and std == pytest.approx(2 ** 0.5)
    markdown = ablation.summarize(tmp_path)
    assert '| DCE | 2 | **21.00 ± 1.41** |' in markdown  # the identity row never counts as the best
    assert '| copy the input (no translation) | 1 | 30.00 |' in markdown


def test_ablation_driver_runs_one_tiny_configuration(tmp_path):
    out = tmp_path / 'runs'
    argv = ['--work', str(tmp_path / 'work'), '--out', str(out), '--rows', 'dce_src_hneg', '--seeds', '5',
            '--jobs', '1', '--size', '32', '--n_train', '2', '--n_test', '2', '--ngf', '4', '--ndf', '4',
            '--num_patches', '8', '--n_epochs', '1', '--n_epochs_decay', '0']
    assert ablation.main(argv) == 0
    record = json.loads((out / 'dce_src_hneg_seed5.json').read_text())
    assert record['row'] == 'DCE + SRC + Hneg (ours)' and record['seed'] == 5 and record['num_images'] == 2
    assert record['iterations'] == 2 and '--patch_loss' in record['train_flags']
    assert set(record['metrics']) == {'psnr', 'ssim', 'l1', 'l1_object', 'l1_background'}
    assert (out / 'identity.json').is_file()
