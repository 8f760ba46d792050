"""--G_ema_beta: an exponential moving average of G's weights, kept, saved, resumed exactly, and used by test.py
and evaluation.curves (G itself with --G_ema_beta 0 / --raw_G)."""
import io
import json

import numpy as np
import pytest
import torch
from PIL import Image

import test as test_script
import train as train_script
from datasets.make_synthetic_dataset import make_synthetic_dataset
from evaluation import curves
from models.networks.averaging import warmed_up_decay
from tests.conftest import H2Z, SMALL_TRAIN, build_model, fake_batch, train_step

SMALL = SMALL_TRAIN + ['--print_freq', '2', '--seed', '3', '--G_ema_beta', '0.9']


@pytest.fixture(scope='module')
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp('data') / 'synthetic'
    make_synthetic_dataset(root, n_train=4, n_test=2, size=32, seed=1)
    return root


def run_train(dataset, ckpt, name, *extra):
    argv = ['--dataroot', str(dataset), '--checkpoints_dir', str(ckpt), '--name', name] + H2Z + SMALL
    return train_script.main(argv + list(extra))


def weights(path):
    return torch.load(path, weights_only=True)


def test_each_step_moves_the_average_by_the_warmed_up_decay(tmp_path):
    model = build_model(tmp_path, 'src_hdce', '--G_ema_beta', '0.99')
    assert 'G_ema' in model.model_names and not any(p.requires_grad for p in model.netG_ema.parameters())
    start = {k: v.clone() for k, v in model.netG.state_dict().items()}
    assert all(torch.equal(start[k], v) for k, v in model.netG_ema.state_dict().items())
    for step in (1, 2):
        before = {k: v.clone() for k, v in model.netG_ema.state_dict().items()}
        train_step(model, fake_batch(1, 32, seed=step))
        assert model.ema_steps == step
        decay = warmed_up_decay(0.99, step)
        for k, v in model.netG.state_dict().items():
            torch.testing.assert_close(model.netG_ema.state_dict()[k], decay * before[k] + (1 - decay) * v)
    assert any(not torch.equal(start[k], v) for k, v in model.netG_ema.state_dict().items())

    plain = build_model(tmp_path / 'plain', 'src_hdce')
    assert 'G_ema' not in plain.model_names and not hasattr(plain, 'netG_ema')
    with pytest.raises(ValueError, match='--G_ema_beta must be in'):
        build_model(tmp_path / 'bad', 'src_hdce', '--G_ema_beta', '1')


def test_saved_resumed_exactly_and_translated_with_by_test_py_and_the_curves(dataset, tmp_path):
    ckpt = tmp_path / 'ckpt'
    common = ['--n_epochs', '1', '--n_epochs_decay', '1', '--save_epoch_freq', '1']
    assert run_train(dataset, ckpt, 'straight', *common) == 0
    assert run_train(dataset, ckpt, 'split', *common, '--max_iters', '3') == 0  # stops inside epoch 1
    assert run_train(dataset, ckpt, 'split', *common, '--continue_train') == 0
    straight, split = ckpt / 'straight', ckpt / 'split'
    assert torch.load(straight / 'latest_train_state.pth', weights_only=True)['ema_steps'] == 8
    for name in ('G', 'G_ema'):
        a, b = weights(straight / f'latest_net_{name}.pth'), weights(split / f'latest_net_{name}.pth')
        assert all(torch.equal(a[k], b[k]) for k in a), name
    ema, raw = weights(straight / 'latest_net_G_ema.pth'), weights(straight / 'latest_net_G.pth')
    assert any(not torch.equal(ema[k], raw[k]) for k in ema)

    def translate(*extra):
        results = tmp_path / ('results' + '_'.join(extra))
        test_script.main(['--dataroot', str(dataset), '--checkpoints_dir', str(ckpt), '--name', 'straight',
                          '--results_dir', str(results), '--gpu_ids', '-1', '--num_test', '1', '--load_size', '32',
                          '--crop_size', '32', *extra])
        return (results / 'straight' / 'test_latest' / 'images' / 'fake_B' / '000000.png').read_bytes()

    def expected(state):
        net = curves.build_generator(json.loads((straight / 'train_opt.json').read_text()))
        net.load_state_dict(state)
        image = curves.translate(net, curves.load_inputs(dataset, 32)[:1])['000000']
        return (image * 255).round()

    for extra, state in (((), ema), (('--G_ema_beta', '0'), raw)):
        png = np.asarray(Image.open(io.BytesIO(translate(*extra))).convert('RGB'), dtype=np.float64)
        assert np.array_equal(png, expected(state)), extra

    rows = curves.score_runs([straight], dataset, progress=False)
    raw_rows = curves.score_runs([straight], dataset, progress=False, raw_G=True)
    assert [r['tag'] for r in rows] == ['1', '2'] and {r['weights'] for r in rows} == {'G_ema'}
    assert {r['weights'] for r in raw_rows} == {'G'} and rows[-1]['bg_l1'] != raw_rows[-1]['bg_l1']
