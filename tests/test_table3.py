"""Table 3 (GAN compression): the recipes, FID against real statistics, the table writer, and scripts/table3.sh
in SMOKE mode end to end."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image

from evaluation import fid, tables
from evaluation.common import EvaluationError
from tests.conftest import load_script, train_opt
from util.recipes import read_recipe

REPO = Path(__file__).resolve().parents[1]


def test_the_compression_recipes_parse():
    h2z = read_recipe('compression_horse2zebra')
    opt = train_opt('compression', Path('/nonexistent'), *h2z)
    assert (opt.ngf, opt.teacher_ngf, opt.lambda_recon, opt.lambda_distill, opt.config_set) == \
        (64, 64, 10, 0.01, 'channels-64-cycleGAN')
    assert (opt.lambda_SRC, opt.lambda_HDCE, opt.HDCE_gamma, opt.HDCE_gamma_min, opt.layer_reduction) == \
        (10, 0.1, 50, 10, 'sum')
    baseline = train_opt('compression', Path('/nonexistent'), *h2z, *read_recipe('compression_baseline'))
    assert (baseline.lambda_SRC, baseline.lambda_HDCE) == (0, 0)
    differing = {k for k, v in vars(opt).items() if vars(baseline)[k] != v} - {'seed'}
    assert differing == {'lambda_SRC', 'lambda_HDCE'}
    cpu = train_opt('compression', Path('/nonexistent'), *read_recipe('cpu_compression'))
    assert (cpu.ngf, cpu.teacher_ngf, cpu.crop_size, cpu.config_set, cpu.num_patches) == (16, 16, 64, 'channels-16', 256)


def test_the_aligned_compression_recipes_are_the_official_step_1():
    """NOTES 1.5: map->satellite λ_recon 10 / λ_distill 0.01, 200 + 400 epochs; Cityscapes the defaults 100 / 1,
    200 + 300; both aligned BtoA, channels-64-pix2pix, hinge, ndf 128, the L_semantic of horse->zebra."""
    h2z = train_opt('compression', Path('/nonexistent'), *read_recipe('compression_horse2zebra'))
    expected = {'map2sat': (10, 0.01, 200, 400), 'cityscapes': (100, 1, 200, 300)}
    for task, (recon, distill, epochs, decay) in expected.items():
        opt = train_opt('compression', Path('/nonexistent'), *read_recipe(f'compression_{task}'))
        assert (opt.lambda_recon, opt.lambda_distill, opt.n_epochs, opt.n_epochs_decay) == (recon, distill, epochs,
                                                                                            decay)
        assert (opt.dataset_mode, opt.direction, opt.config_set, opt.gan_mode, opt.ndf, opt.ngf, opt.teacher_ngf) == \
            ('aligned', 'BtoA', 'channels-64-pix2pix', 'hinge', 128, 64, 64)
        same = ('lambda_SRC', 'lambda_HDCE', 'HDCE_gamma', 'HDCE_gamma_min', 'use_curriculum', 'num_patches')
        assert [getattr(opt, k) for k in same] == [getattr(h2z, k) for k in same]
    tune = train_opt('compression', Path('/nonexistent'), *read_recipe('compression_map2sat'),
                     *read_recipe('compression_map2sat_finetune'), '--config_str', '16_16_48_32_32_40_24_16')
    assert (tune.n_epochs, tune.n_epochs_decay, tune.lambda_recon, tune.config_str) == (200, 200, 10,
                                                                                       '16_16_48_32_32_40_24_16')


# ---- FID against real statistics ----------------------------------------------------------------------------
@pytest.fixture(scope='module')
def features(tmp_path_factory):
    torch.manual_seed(0)
    net = torchvision.models.inception_v3(num_classes=1008, aux_logits=False, weights=None, init_weights=False)
    model = fid.build_inception(net.state_dict(), dims=64, source='random weights')
    return fid.InceptionFeatures(model, dims=64)


def write_images(folder, count, seed):
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    for i in range(count):
        Image.fromarray(rng.integers(0, 255, (24, 24, 3), dtype=np.uint8)).save(folder / f'{i}.png')
    return folder


def test_fid_against_a_statistics_file_equals_fid_against_its_folder(features, tmp_path):
    fake, real = write_images(tmp_path / 'fake', 6, 0), write_images(tmp_path / 'real', 7, 1)
    stats = tmp_path / 'real_stats.npz'
    fid.save_real_stats(stats, features(real)[0])
    with np.load(stats) as data:
        assert sorted(data.files) == ['count', 'mu', 'sigma'] and data['mu'].shape == (64,)
    from_folder = fid.fid_kid(fake, real, features, kid=False)
    from_stats = fid.fid_kid(fake, stats, features, kid=False)
    assert from_stats['metrics']['fid'] == pytest.approx(from_folder['metrics']['fid'], rel=1e-9)
    assert from_stats['real_stats'] == str(stats) and from_stats['num_real'] is None
    with pytest.raises(EvaluationError, match='KID needs the real images'):
        fid.fid_kid(fake, stats, features, kid=True)
    np.savez(tmp_path / 'wrong.npz', mu=np.zeros(3), sigma=np.eye(3))
    with pytest.raises(EvaluationError, match='not statistics of 64-d features'):
        fid.fid_kid(fake, tmp_path / 'wrong.npz', features, kid=False)
    np.savez(tmp_path / 'keys.npz', mean=np.zeros(64))
    with pytest.raises(EvaluationError, match="holds \\['mean'\\]; real statistics need mu and sigma"):
        fid.fid_kid(fake, tmp_path / 'keys.npz', features, kid=False)


# ---- the Table 3 writer -------------------------------------------------------------------------------------
def write_row(tmp_path, model, params, macs, fid_value, config=None, run='run'):
    macs_json, fid_json = tmp_path / f'{run}.macs.json', tmp_path / f'{run}.fid.json'
    macs_json.write_text(json.dumps({'params': params, 'macs': macs, 'config': config}))
    fid_json.write_text(json.dumps({'kind': 'fid', 'metrics': {'fid': fid_value}, 'epoch': 'latest'}))
    row = tables.table3_row('horse2zebra', model, macs_json=macs_json, fid_json=fid_json, run=run)
    path = tmp_path / f'{run}.row.json'
    path.write_text(json.dumps(row))
    return path


def test_table3_rows_in_the_papers_order_with_its_values_beside(tmp_path, capsys):
    rows = [write_row(tmp_path, '+ ours', 411_891, 2_961_883_136, 60.5, '16_16_32_16_16_64_16_24', 'ours'),
            write_row(tmp_path, 'teacher', 11_378_179, 56_799_322_112, 58.25, None, 'teacher'),
            write_row(tmp_path, 'baseline', 411_891, 2_961_883_136, 70.125, '16_16_32_16_16_64_16_24', 'base')]
    tables.main([str(r) for r in rows] + ['--layout', 'table3', '--out', str(tmp_path / 'table3')])
    markdown = (tmp_path / 'table3.md').read_text()
    assert markdown == capsys.readouterr().out
    lines = [line for line in markdown.splitlines() if line.startswith('| ') and 'Dataset' not in line]
    assert lines == [
        '| Horse→Zebra | teacher | `–` (teacher) | 11.378M | 56.799G | 58.25 | – |',
        '| *Horse→Zebra* | *teacher, paper* |  | *11.380M* | *56.800G* | *59.46* | *–* |',
        '| Horse→Zebra | baseline | `16_16_32_16_16_64_16_24` (base) | 0.412M | 2.962G | 70.12 | – |',
        '| *Horse→Zebra* | *baseline, paper* |  | *0.412M* | *2.962G* | *74.39* | *–* |',
        '| Horse→Zebra | + ours | `16_16_32_16_16_64_16_24` (ours) | 0.412M | 2.962G | 60.50 | – |',
        '| *Horse→Zebra* | *+ ours, paper* |  | *0.412M* | *2.962G* | *64.64* | *–* |',
    ]
    csv_lines = (tmp_path / 'table3.csv').read_text().splitlines()
    assert len(csv_lines) == 1 + 3 * 3  # params, MACs, FID of each model
    assert 'table3,horse2zebra,+ ours,fid,60.5,16_16_32_16_16_64_16_24,ours,' in '\n'.join(csv_lines)


def test_table3_refuses_two_records_of_one_model_and_unknown_models(tmp_path):
    first = write_row(tmp_path, 'baseline', 1, 1, 1.0, run='a')
    second = write_row(tmp_path, 'baseline', 1, 1, 2.0, run='b')
    with pytest.raises(EvaluationError, match='two records for horse2zebra / baseline'):
        tables.main([str(first), str(second), '--layout', 'table3'])
    with pytest.raises(EvaluationError, match="Table 3 models are teacher, baseline, \\+ ours, got 'student'"):
        write_row(tmp_path, 'student', 1, 1, 1.0)


# ---- scripts/table3.sh ----------------------------------------------------------------------------------------
@pytest.mark.slow
def test_table3_smoke_end_to_end(tmp_path):
    """SMOKE=1 runs the three datasets: horse->zebra (unaligned), map->satellite (aligned, with the fine-tuning of
    the searched configuration) and Cityscapes (aligned, searched by DRN-D-105 mIoU, scored by mIoU too)."""
    env = dict(os.environ, SMOKE='1', SMOKE_DIR=str(tmp_path / 'smoke'), PYTHON=sys.executable, OMP_NUM_THREADS='1')
    done = subprocess.run(['bash', str(REPO / 'scripts' / 'table3.sh')], cwd=tmp_path, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert done.returncode == 0, done.stdout[-4000:]
    results, checkpoints = tmp_path / 'smoke' / 'results', tmp_path / 'smoke' / 'checkpoints'
    markdown = (results / 'table3.md').read_text()
    for label in ('Horse→Zebra', 'Map→Satellite', 'Cityscapes'):
        models = [line.split(' | ')[1] for line in markdown.splitlines() if line.startswith(f'| {label} |')]
        assert models == ['teacher', 'baseline', '+ ours'], label
    assert '| *Map→Satellite* | *+ ours, paper* |  | *0.667M* | *4.495G* | *48.49* | *–* |' in markdown
    assert '| *Cityscapes* | *+ ours, paper* |  | *0.685M* | *4.390G* | *72.41* | *43.06* |' in markdown
    for short, criterion in (('h2z', 'stripe_iou'), ('map2sat', 'fid'), ('city', 'mIoU')):
        for arm in ('baseline', 'ours'):
            search = json.loads((results / f'{short}_supernet_{arm}' / 'search' / 'result.json').read_text())
            assert search['best']['macs'] <= search['settings']['budget'] and search['metric'] == criterion
            row = json.loads(next((results / 'table3').glob(f'{short}_supernet_{arm}_*.row.json')).read_text())
            assert row['config'] == search['best']['config'] and row['metrics']['macs'] == search['best']['macs']
            assert np.isfinite(row['metrics']['fid'])
            assert ('mIoU' in row['metrics']) == (short == 'city')
    opts = json.loads((checkpoints / 'h2z_supernet_baseline' / 'train_opt.json').read_text())
    assert opts['lambda_SRC'] == 0 and opts['lambda_HDCE'] == 0 and opts['dataroot'].endswith('split/horse2zebra/train1')
    step1 = json.loads((checkpoints / 'map2sat_supernet_ours' / 'train_opt.json').read_text())
    assert (step1['dataset_mode'], step1['direction'], step1['lambda_recon'], step1['gan_mode']) == \
        ('aligned', 'BtoA', 10, 'hinge')
    # map->satellite: the searched configuration is fine-tuned from step 1's G and D, then exported
    config = json.loads((results / 'map2sat_supernet_ours' / 'search' / 'result.json').read_text())['best']['config']
    tuned = json.loads((checkpoints / f'map2sat_supernet_ours_{config}_finetune' / 'train_opt.json').read_text())
    assert tuned['config_str'] == config
    assert tuned['restore_G_path'] == str(checkpoints / 'map2sat_supernet_ours' / 'latest_net_G.pth')
    assert tuned['restore_D_path'] == str(checkpoints / 'map2sat_supernet_ours' / 'latest_net_D.pth')
    export = json.loads((checkpoints / f'map2sat_supernet_ours_{config}' / 'train_opt.json').read_text())
    assert export['config_str'] == config and export['restore_G_path'] == tuned['restore_G_path']  # from the tuned run
    city = json.loads((results / 'table3' / 'city_teacher.miou.json').read_text())
    assert city['kind'] == 'cityscapes_miou' and city['num_images'] == 2
    # the same command again into the same folder: every step finished, so each is skipped, and the table is the same
    # byte for byte (issue 36: a resumed --max_iters run trained one more step and changed it)
    table, states = (results / 'table3.csv').read_bytes(), sorted(checkpoints.glob('*/latest_train_state.pth'))
    mtimes = [p.stat().st_mtime_ns for p in states]
    again = subprocess.run(['bash', str(REPO / 'scripts' / 'table3.sh')], cwd=tmp_path, env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert again.returncode == 0, again.stdout[-4000:]
    assert (results / 'table3.csv').read_bytes() == table
    assert [p.stat().st_mtime_ns for p in states] == mtimes  # nothing trained
    skipped = [line.split()[2].rstrip(':') for line in again.stdout.splitlines() if line.startswith('== skip ')]
    assert sum(s.endswith('.train') for s in skipped) == len(states) == 3 + 6 + 2  # teachers, step 1, fine-tunings
    assert sum(s.endswith('.search') for s in skipped) == 6 and sum(s.endswith('.test') for s in skipped) == 9


def test_compression_study_summary_is_rebuilt_from_its_records(tmp_path):
    """docs/compression.md's tables come from studies/compression/cpu/: `--summarize` rebuilds summary.md
    from the kept teacher.json and runs/*.json byte for byte, without training."""
    import shutil
    kept = REPO / 'studies' / 'compression' / 'cpu'
    out = tmp_path / 'cpu'
    shutil.copytree(kept, out, ignore=shutil.ignore_patterns('summary.*', 'seeds_*'))
    study = load_script('studies/compression/cpu_study.py')
    summary = study.main(['--summarize', '--out', str(out), '--seeds', '0', '1', '2', '3', '4'])
    assert (out / 'summary.md').read_text() == (kept / 'summary.md').read_text()
    assert summary['rule']['helps'] is False
    with pytest.raises(SystemExit):
        study.main(['--out', str(out)])  # a study run needs --work
