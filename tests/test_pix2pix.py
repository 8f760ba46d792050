"""--model pix2pix: gan-compression's teacher training step, its defaults, train.py / resume / test.py."""
import copy
import json

import numpy as np
import pytest
import torch
import torch.nn as nn
from PIL import Image

import models
import test as test_script
import train as train_script
from tests.conftest import fake_batch, train_opt
from util.recipes import read_recipe

TINY = ('--netG', 'resnet_6blocks', '--ndf', '8')


def build(tmp_path, *extra, seed=0):
    opt = train_opt('pix2pix', tmp_path, '--seed', str(seed), *TINY, *extra)
    torch.manual_seed(seed)
    model = models.create_model(opt)
    model.set_epoch(1)
    model.data_dependent_initialize(fake_batch(1, opt.crop_size))
    model.setup(opt)
    return model, opt


def test_defaults_are_gan_compression_training_options(tmp_path):
    from options.train_options import TrainOptions

    def parse(*extra):
        return TrainOptions(['--model', 'pix2pix', '--checkpoints_dir', str(tmp_path), '--gpu_ids', '-1',
                             *extra]).parse()
    opt = parse()
    assert (opt.gan_mode, opt.ndf, opt.netD, opt.n_layers_D, opt.lambda_recon, opt.lambda_gan) == \
        ('hinge', 128, 'n_layers', 3, 100.0, 1.0)
    assert (opt.dataset_mode, opt.normG, opt.normD, opt.init_type, opt.init_gain) == \
        ('aligned', 'instance', 'instance', 'normal', 0.02)
    assert opt.no_antialias and opt.no_antialias_up and opt.no_dropout
    assert (opt.netG, opt.ngf) == ('resnet_9blocks', 64)
    assert parse('--lambda_L1', '10').lambda_recon == 10.0


def test_networks_have_gan_compression_layout(tmp_path):
    model, opt = build(tmp_path, '--netG', 'resnet_9blocks')
    G, D = model.netG, model.netD
    assert not any(type(m).__name__ == 'Downsample' for m in list(G.modules()) + list(D.modules()))
    children = list(G.model.children()) if hasattr(G, 'model') else list(G.children())
    assert isinstance(children[9], nn.ReLU) and [type(c).__name__ for c in children[10:19]] == ['ResnetBlock'] * 9
    first = next(m for m in D.modules() if isinstance(m, nn.Conv2d))
    assert (first.in_channels, first.out_channels, first.stride) == (6, 8, (2, 2))  # D sees cat(A, B)


def reference_step(G, D, opt_G, opt_D, a, b, lambda_recon, lambda_gan=1.0):
    """gan-compression's Pix2PixModel.optimize_parameters with its hinge GANLoss, written out."""
    fake = G(a)
    opt_D.zero_grad()
    pred_fake = D(torch.cat((a, fake), 1).detach())
    pred_real = D(torch.cat((a, b), 1).detach())
    d_fake = -torch.mean(torch.min(-pred_fake - 1, torch.zeros_like(pred_fake)))
    d_real = -torch.mean(torch.min(pred_real - 1, torch.zeros_like(pred_real)))
    ((d_fake + d_real) * 0.5).backward()
    opt_D.step()
    for p in D.parameters():
        p.requires_grad_(False)
    opt_G.zero_grad()
    g_gan = -torch.mean(D(torch.cat((a, fake), 1))) * lambda_gan
    g_recon = nn.L1Loss()(fake, b) * lambda_recon
    (g_gan + g_recon).backward()
    opt_G.step()
    for p in D.parameters():
        p.requires_grad_(True)
    return {'G_gan': g_gan.item(), 'G_recon': g_recon.item(), 'D_real': d_real.item(), 'D_fake': d_fake.item()}


@pytest.mark.parametrize('direction', ['AtoB', 'BtoA'])
def test_one_step_is_gan_compression_pix2pix_step(direction, tmp_path):
    model, opt = build(tmp_path, '--direction', direction, '--lambda_recon', '10', '--conv_algo', 'direct')
    G, D = copy.deepcopy(model.netG), copy.deepcopy(model.netD)
    opt_G = torch.optim.Adam(G.parameters(), lr=opt.lr, betas=(0.5, 0.999))
    opt_D = torch.optim.Adam(D.parameters(), lr=opt.lr, betas=(0.5, 0.999))
    batch = fake_batch(1, opt.crop_size, seed=4)
    a, b = (batch['A'], batch['B']) if direction == 'AtoB' else (batch['B'], batch['A'])
    for step in range(2):
        expected = reference_step(G, D, opt_G, opt_D, a, b, lambda_recon=10.0)
        model.set_input(batch)
        model.optimize_parameters()
        got = model.get_current_losses()
        assert got.keys() == expected.keys()
        for k in expected:
            assert got[k] == pytest.approx(expected[k], rel=1e-5, abs=1e-6), (step, k)
    for ours, ref in ((model.netG, G), (model.netD, D)):
        for (k, v), w in zip(ours.state_dict().items(), ref.state_dict().values()):
            torch.testing.assert_close(v, w, rtol=1e-5, atol=1e-6, msg=k)


def test_bad_settings_are_named(tmp_path):
    with pytest.raises(ValueError, match='--dataset_mode aligned'):
        build(tmp_path, '--dataset_mode', 'unaligned')
    model, _ = build(tmp_path)
    batch = fake_batch(1, 32)
    del batch['B']
    with pytest.raises(KeyError):
        model.set_input(batch)


def test_recipes_are_the_official_scripts():
    """gan-compression's scripts/pix2pix/{map2sat,cityscapes}/train_full.sh."""
    for name, recon, epochs in (('pix2pix_map2sat', '10', ('100', '200')), ('pix2pix_cityscapes', '100', ('100', '150'))):
        flags = read_recipe(name)
        value = {f: flags[flags.index(f) + 1] for f in ('--model', '--direction', '--lambda_recon', '--n_epochs',
                                                        '--n_epochs_decay', '--netG', '--batch_size')}
        assert value == {'--model': 'pix2pix', '--direction': 'BtoA', '--lambda_recon': recon,
                         '--n_epochs': epochs[0], '--n_epochs_decay': epochs[1], '--netG': 'resnet_9blocks',
                         '--batch_size': '1'}, name


# ---- train.py / resume / test.py on a generated aligned dataset ------------------------------------------

def make_aligned_dataset(root, n_train=4, n_val=2, size=32, seed=0):
    """<root>/{train,val}/<i>.jpg: [A | B] side by side; B is A's colours inverted, so pairs are aligned."""
    rng = np.random.default_rng(seed)
    for phase, n in (('train', n_train), ('val', n_val)):
        (root / phase).mkdir(parents=True)
        for i in range(n):
            a = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
            Image.fromarray(np.concatenate([a, 255 - a], axis=1)).save(root / phase / f'{i}.png')
    return root


@pytest.fixture(scope='module')
def aligned(tmp_path_factory):
    return make_aligned_dataset(tmp_path_factory.mktemp('aligned') / 'maps')


SMALL = ['--model', 'pix2pix', '--direction', 'BtoA', '--netG', 'resnet_6blocks', '--ngf', '4', '--ndf', '4',
         '--load_size', '36', '--crop_size', '32', '--gpu_ids', '-1', '--num_threads', '0', '--display_id', '0',
         '--no_tqdm', '--print_freq', '1', '--seed', '5', '--n_epochs', '1', '--n_epochs_decay', '1']


def run_train(dataroot, ckpt, name, *extra):
    return train_script.main(['--dataroot', str(dataroot), '--checkpoints_dir', str(ckpt), '--name', name,
                              *SMALL, *extra])


def weights(run_dir):
    return {n: torch.load(run_dir / f'latest_net_{n}.pth', weights_only=True) for n in 'GD'}


@pytest.mark.slow
def test_train_resume_and_test(aligned, tmp_path):
    ckpt = tmp_path / 'ckpt'
    assert run_train(aligned, ckpt, 'straight') == 0
    run = ckpt / 'straight'
    for f in ('latest_net_G.pth', 'latest_net_D.pth', 'latest_train_state.pth', 'train_opt.json', 'loss_log.jsonl'):
        assert (run / f).is_file(), f
    records = [json.loads(line) for line in (run / 'loss_log.jsonl').read_text().splitlines()]
    assert len(records) == 8 and set(records[0]['losses']) == {'G_gan', 'G_recon', 'D_real', 'D_fake'}

    assert run_train(aligned, ckpt, 'split', '--max_iters', '3') == 0  # stops inside epoch 1
    state = torch.load(ckpt / 'split' / 'latest_train_state.pth', weights_only=True)
    assert (state['epoch'], state['epoch_iter'], state['epoch_done']) == (1, 3, False)
    assert run_train(aligned, ckpt, 'split', '--continue_train') == 0
    expected, resumed = weights(run), weights(ckpt / 'split')
    for net in expected:
        for k in expected[net]:
            assert torch.equal(expected[net][k], resumed[net][k]), f'net{net}.{k}'

    results = tmp_path / 'results'
    test_script.main(['--dataroot', str(aligned), '--checkpoints_dir', str(ckpt), '--name', 'straight',
                      '--results_dir', str(results), '--phase', 'val', '--load_size', '32', '--crop_size', '32',
                      '--gpu_ids', '-1'])
    images = results / 'straight' / 'val_latest' / 'images'
    assert sorted(p.name for p in (images / 'fake_B').iterdir()) == ['0.png', '1.png']
    # BtoA, taken from the run's options: the input is the right half of the pair
    source = np.asarray(Image.open(aligned / 'val' / '0.png'))[:, 32:]
    shown = np.asarray(Image.open(images / 'real_A' / '0.png')).astype(int)
    assert np.abs(shown - source).max() <= 1  # tensor2im's rounding


@pytest.mark.slow
def test_an_imported_official_pix2pix_teacher_translates_in_its_direction(aligned, tmp_path):
    """A file in gan-compression's layout (blocks with Dropout: conv_block.6; 'module.' keys), imported with
    scripts/import_teacher.py --model pix2pix --direction BtoA: test.py gives the official generator's images."""
    from models.networks import define_G
    from tests.conftest import load_script
    from util import util
    torch.manual_seed(7)
    official = define_G(3, 3, 4, 'resnet_9blocks', use_dropout=True, no_antialias=True, no_antialias_up=True,
                        init_type='normal', init_gain=0.3).eval()
    torch.save({f'module.{k}': v for k, v in official.state_dict().items()}, tmp_path / 'latest_net_G.pth')
    load_script('scripts/import_teacher.py').main([
        '--source', str(tmp_path / 'latest_net_G.pth'), '--checkpoints_dir', str(tmp_path / 'ckpt'),
        '--name', 'map2sat_teacher', '--ngf', '4', '--model', 'pix2pix', '--direction', 'BtoA'])
    results = tmp_path / 'results'
    test_script.main(['--dataroot', str(aligned), '--checkpoints_dir', str(tmp_path / 'ckpt'), '--name',
                      'map2sat_teacher', '--results_dir', str(results), '--phase', 'val', '--load_size', '32',
                      '--crop_size', '32', '--gpu_ids', '-1', '--conv_algo', 'direct'])
    source = np.asarray(Image.open(aligned / 'val' / '1.png'))[:, 32:]  # B, the input of BtoA
    x = torch.from_numpy(source.copy()).permute(2, 0, 1)[None].float() / 255 * 2 - 1
    with torch.no_grad():
        expected = util.tensor2im(official(x))
    ours = np.asarray(Image.open(results / 'map2sat_teacher' / 'val_latest' / 'images' / 'fake_B' / '1.png'))
    np.testing.assert_array_equal(ours, expected)
