"""train.py -> test.py end to end on generated images; exact resumption; official checkpoint parity."""
import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

import test as test_script
import train as train_script
from datasets.make_synthetic_dataset import make_synthetic_dataset
from tests.conftest import H2Z, ROOT, SMALL_TRAIN, assert_same_weights, saved_weights

SMALL = SMALL_TRAIN + ['--print_freq', '2', '--seed', '3']


@pytest.fixture(scope='module')
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp('data') / 'synthetic'
    make_synthetic_dataset(root, n_train=6, n_test=3, size=32, seed=1)
    return root


def run_train(dataset, ckpt, name, *extra):
    argv = ['--dataroot', str(dataset), '--checkpoints_dir', str(ckpt), '--name', name] + H2Z + SMALL
    return train_script.main(argv + list(extra))


def test_train_then_test(dataset, tmp_path):
    ckpt, results = tmp_path / 'ckpt', tmp_path / 'results'
    assert run_train(dataset, ckpt, 'run', '--n_epochs', '1', '--n_epochs_decay', '1') == 0
    run_dir = ckpt / 'run'
    for f in ['latest_net_G.pth', 'latest_net_D.pth', 'latest_net_F.pth', 'latest_train_state.pth',
              '2_net_G.pth', 'train_opt.txt', 'train_opt.json', 'loss_log.txt', 'loss_log.jsonl']:
        assert (run_dir / f).is_file(), f
    records = [json.loads(line) for line in (run_dir / 'loss_log.jsonl').read_text().splitlines()]
    assert len(records) == 6 and {'HDCE', 'HDCE_Y', 'SRC', 'G_GAN'} <= set(records[0]['losses'])
    opts = json.loads((run_dir / 'train_opt.json').read_text())
    assert opts['lambda_HDCE'] == 0.1 and opts['seed'] == 3 and opts['display_env'] == 'run'
    assert '[default: 1.0]' in (run_dir / 'train_opt.txt').read_text()
    assert not list(run_dir.glob('*.tmp*'))

    test_script.main(['--dataroot', str(dataset), '--checkpoints_dir', str(ckpt), '--name', 'run',
                      '--results_dir', str(results), '--model', 'src_hdce', '--ngf', '4', '--netG',
                      'resnet_6blocks', '--load_size', '32', '--crop_size', '32', '--gpu_ids', '-1',
                      '--num_test', '2'])
    web = results / 'run' / 'test_latest'
    for label in ('real_A', 'fake_B', 'real_B'):
        files = sorted(p.name for p in (web / 'images' / label).iterdir())
        assert files == ['000000.png', '000001.png'], (label, files)
    assert (web / 'index.html').is_file()
    summary = json.loads((web / 'results.json').read_text())
    assert summary['num_images'] == 2 and summary['epoch'] == 'latest'


def test_resume_at_epoch_boundary_gives_identical_weights(dataset, tmp_path):
    ckpt = tmp_path / 'ckpt'
    common = ['--n_epochs', '1', '--n_epochs_decay', '1', '--save_epoch_freq', '1']
    assert run_train(dataset, ckpt, 'straight', *common) == 0
    shutil.copytree(ckpt / 'straight', ckpt / 'resumed')
    for f in (ckpt / 'resumed').glob('*'):
        if f.name.startswith(('latest_', '2_')):
            f.unlink()
    for n in ('net_G', 'net_D', 'net_F', 'train_state'):
        shutil.copy(ckpt / 'straight' / f'1_{n}.pth', ckpt / 'resumed' / f'latest_{n}.pth')
    assert run_train(dataset, ckpt, 'resumed', *common, '--continue_train') == 0
    assert_same_weights(saved_weights(ckpt / 'straight'), saved_weights(ckpt / 'resumed'))


def test_resume_in_the_middle_of_an_epoch_gives_identical_weights(dataset, tmp_path):
    ckpt = tmp_path / 'ckpt'
    common = ['--n_epochs', '1', '--n_epochs_decay', '1']
    assert run_train(dataset, ckpt, 'straight', *common) == 0
    assert run_train(dataset, ckpt, 'split', *common, '--max_iters', '4') == 0  # stops in epoch 1
    state = torch.load(ckpt / 'split' / 'latest_train_state.pth', weights_only=True)
    assert (state['epoch'], state['epoch_iter'], state['epoch_done']) == (1, 4, False)
    assert run_train(dataset, ckpt, 'split', *common, '--continue_train') == 0
    assert_same_weights(saved_weights(ckpt / 'straight'), saved_weights(ckpt / 'split'))


def test_resume_from_weights_only_checkpoint(dataset, tmp_path, capsys):
    """An official CUT/Hneg_SRC checkpoint has no training state: resume from weights as CUT does."""
    ckpt = tmp_path / 'ckpt'
    assert run_train(dataset, ckpt, 'run', '--n_epochs', '1', '--n_epochs_decay', '0') == 0
    (ckpt / 'run' / 'latest_train_state.pth').unlink()
    capsys.readouterr()
    assert run_train(dataset, ckpt, 'run', '--n_epochs', '1', '--n_epochs_decay', '1', '--continue_train',
                     '--epoch_count', '2') == 0
    assert 'no training state' in capsys.readouterr().out


def test_continue_train_without_checkpoint_is_a_clear_error(dataset, tmp_path):
    with pytest.raises(FileNotFoundError, match='latest_net_G.pth'):
        run_train(dataset, tmp_path / 'ckpt', 'nothing_here', '--continue_train')


def test_checkpoint_from_other_options_is_a_clear_error(dataset, tmp_path):
    ckpt = tmp_path / 'ckpt'
    assert run_train(dataset, ckpt, 'run', '--n_epochs', '1', '--n_epochs_decay', '0') == 0
    with pytest.raises(RuntimeError, match='--ngf'):
        run_train(dataset, ckpt, 'run', '--continue_train', '--ngf', '8')


def test_missing_domain_folder_is_a_clear_error(tmp_path):
    (tmp_path / 'data' / 'trainA').mkdir(parents=True)
    Image.new('RGB', (32, 32)).save(tmp_path / 'data' / 'trainA' / 'a.png')
    with pytest.raises(Exception, match='trainB'):
        run_train(tmp_path / 'data', tmp_path / 'ckpt', 'run')


@pytest.mark.parametrize('model', ['cut', 'src_hdce'])
def test_official_cut_checkpoint_gives_official_images(model, fixtures_dir, tmp_path):
    """An official-format generator loads strictly and test.py reproduces the official fake_B files."""
    case = fixtures_dir / 'official_cut_checkpoint'
    ckpt = tmp_path / 'ckpt'
    shutil.copytree(case / 'ckpt', ckpt)
    test_script.main(['--dataroot', str(case / 'data'), '--checkpoints_dir', str(ckpt), '--name', 'official16',
                      '--results_dir', str(tmp_path / 'results'), '--model', model, '--ngf', '16',
                      '--num_test', '3', '--gpu_ids', '-1'])
    out = tmp_path / 'results' / 'official16' / 'test_latest' / 'images' / 'fake_B'
    expected = sorted((case / 'expected').glob('*.png'))
    assert len(expected) == 3
    for e in expected:
        ours = np.asarray(Image.open(out / e.name))
        ref = np.asarray(Image.open(e))
        assert ours.shape == ref.shape
        assert np.array_equal(ours, ref), f'{e.name}: max diff {np.abs(ours.astype(int) - ref).max()}'


def test_training_goes_on_when_the_visdom_server_is_down(dataset, tmp_path, caplog):
    import socket
    with socket.socket() as s:  # a port nobody listens on
        s.bind(('127.0.0.1', 0))
        port = s.getsockname()[1]
    with caplog.at_level('WARNING'):
        code = run_train(dataset, tmp_path / 'ckpt', 'run', '--n_epochs', '1', '--n_epochs_decay', '0',
                         '--display_id', '1', '--display_port', str(port), '--display_server',
                         'http://127.0.0.1', '--display_freq', '2')
    assert code == 0
    warnings = [r for r in caplog.records if str(port) in r.getMessage()]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    assert (tmp_path / 'ckpt' / 'run' / 'latest_net_G.pth').is_file()


@pytest.mark.slow
def test_epoch_sweep_with_the_real_test_script(dataset, tmp_path):
    """train.py saves epochs 1 and 2; the sweep runs the real test.py on each and scores FID/KID
    (randomly initialised Inception, 64-d features: the pipeline, not the value, is under test)."""
    import torchvision

    from evaluation import fid, sweep
    ckpt, results = tmp_path / 'ckpt', tmp_path / 'results'
    assert run_train(dataset, ckpt, 'run', '--n_epochs', '1', '--n_epochs_decay', '1', '--save_epoch_freq',
                     '1') == 0
    assert sweep.saved_epochs(ckpt, 'run')[:2] == ['1', '2']
    torch.manual_seed(0)
    net = torchvision.models.inception_v3(num_classes=1008, aux_logits=False, weights=None, init_weights=False)
    model = fid.build_inception(net.state_dict(), dims=64, device='cpu', source='random')
    features = fid.InceptionFeatures(model, 64, batch_size=4, device='cpu', num_workers=0)
    run = sweep.cut_test_runner(dataroot=dataset, name='run', checkpoints_dir=ckpt, results_dir=results,
                                phase='test', direction='AtoB', script=str(ROOT / 'test.py'),
                                extra_args=['--model', 'src_hdce', '--ngf', '4', '--netG', 'resnet_6blocks',
                                            '--load_size', '32', '--crop_size', '32', '--gpu_ids', '-1'])
    summary = sweep.sweep(['1', '2'], run_test=run, results_root=results / 'run', phase='test',
                          source_dir=dataset / 'testA', evaluators={'fid': sweep.fid_evaluator(features,
                                                                                              dataset / 'testB')},
                          select='fid')
    assert [r['epoch'] for r in summary['epochs']] == ['1', '2'] and summary['num_images'] == 3
    assert summary['best']['fid'] == min(r['fid'] for r in summary['epochs'])
    assert (results / 'run' / 'test_2' / 'metrics_fid.json').is_file()
