"""Single-image translation (`--model sin_src_hdce`, the Monet recipe) end to end, hard negatives on."""
import json

import numpy as np
import pytest
import torch
from PIL import Image

import models
import test as test_script
import train as train_script
from models import losses
from tests.conftest import train_opt
from util.recipes import read_recipe

MONET = read_recipe('monet')  # the official single-image recipe, --model sin_src_hdce included


@pytest.fixture
def single_pair(tmp_path):
    rng = np.random.default_rng(0)
    for domain in ('A', 'B'):
        (tmp_path / 'data' / f'train{domain}').mkdir(parents=True)
        (tmp_path / 'data' / f'test{domain}').mkdir(parents=True)
        img = Image.fromarray(rng.integers(0, 255, (96, 128, 3), dtype=np.uint8))
        img.save(tmp_path / 'data' / f'train{domain}' / f'{domain}.png')
        img.save(tmp_path / 'data' / f'test{domain}' / f'{domain}.png')
    return tmp_path / 'data'


def test_defaults_are_sincut_with_the_monet_recipe(tmp_path):
    opt = train_opt('sin_src_hdce', tmp_path, *MONET)
    assert (opt.netG, opt.netD, opt.dataset_mode, opt.gan_mode) == ('stylegan2', 'stylegan2', 'singleimage',
                                                                     'nonsaturating')
    assert opt.nce_includes_all_negatives_from_minibatch and opt.dce_idt and opt.nce_layers == '0,2,4'
    assert train_opt('sin_src_hdce', tmp_path).dce_idt  # a default too, not only the recipe's
    assert (opt.lr, opt.beta1, opt.beta2, opt.n_epochs, opt.n_epochs_decay) == (0.002, 0.0, 0.99, 8, 8)


def test_hard_negative_weights_are_not_all_one(tmp_path):
    """One patch per crop, negatives from the whole minibatch: the weights must vary across crops
    (the official single-image path computes them per crop, which makes every weight 1)."""
    opt = train_opt('sin_src_hdce', tmp_path, '--HDCE_gamma', '1')
    model = models.create_model(opt)
    torch.manual_seed(0)
    batch = {'A': torch.rand(4, 3, 32, 32) * 2 - 1, 'B': torch.rand(4, 3, 32, 32) * 2 - 1,
             'A_paths': ['a'] * 4, 'B_paths': ['b'] * 4}
    model.data_dependent_initialize(batch)
    model.set_input(batch)
    model.forward()
    q, k, _ = model.sample('X')
    assert all(f.shape[:2] == (1, 4) for f in k)  # all crops' patches form one relation set
    w = losses.relation_weights(k[1], 1.0)
    off_diag = w[0][~torch.eye(4, dtype=torch.bool)]
    assert off_diag.min() < 0.999


@pytest.mark.slow
def test_train_and_test_single_image(single_pair, tmp_path):
    ckpt = tmp_path / 'ckpt'
    common = ['--dataroot', str(single_pair), '--checkpoints_dir', str(ckpt), '--name', 'monet',
              '--model', 'sin_src_hdce', '--gpu_ids', '-1', '--ngf', '4', '--ndf', '4']
    code = train_script.main(common + MONET + ['--load_size', '96', '--crop_size', '32', '--batch_size', '4',
                                               '--max_iters', '8', '--num_threads', '0', '--display_id', '0',
                                               '--no_tqdm', '--print_freq', '4', '--seed', '0'])
    assert code == 0
    records = [json.loads(line) for line in (ckpt / 'monet' / 'loss_log.jsonl').read_text().splitlines()]
    assert {'HDCE', 'HDCE_Y', 'SRC', 'D_R1', 'idt'} <= set(records[-1]['losses'])
    test_script.main(common + ['--results_dir', str(tmp_path / 'results'), '--load_size', '96',
                               '--crop_size', '32'])
    out = tmp_path / 'results' / 'monet' / 'test_latest' / 'images' / 'fake_B' / 'A.png'
    assert Image.open(out).size == (128, 96)  # preprocess 'none' at test time: the whole image
