"""Figure 9 similarity maps: the util functions, the CLI and test.py --similarity_maps on a tiny checkpoint."""
import json
import os

import numpy as np
import pytest
import torch
from PIL import Image

import models
import test as test_script
from datasets.make_synthetic_dataset import make_synthetic_dataset
from scripts import similarity_maps as cli
from tests.conftest import fake_batch, train_opt
from evaluation import similarity

SIZE = 32
ARCH = ['--netG', 'resnet_6blocks', '--nce_layers', '0,4,8,12']


@pytest.fixture(scope='module')
def checkpoint(tmp_path_factory):
    """A saved src_hdce run (G, D, F and train_opt.json) with random weights, plus a small dataset."""
    root = tmp_path_factory.mktemp('sim')
    opt = train_opt('src_hdce', root, *ARCH, '--seed', '0')
    torch.manual_seed(0)
    model = models.create_model(opt)
    model.data_dependent_initialize(fake_batch(1, SIZE))
    model.save_networks('latest')
    data = root / 'data'
    make_synthetic_dataset(data, n_train=2, n_test=3, size=SIZE, seed=0)
    return {'root': root, 'model': model, 'data': data}


def test_maps_shape_range_and_query_maximum(checkpoint):
    model = checkpoint['model']
    image = fake_batch(1, SIZE)['A']
    point = (0.3, 0.7)
    result = similarity.similarity_maps(model.netG, image, model.nce_layers, point, netF=model.netF)
    assert result['translation'].shape == image.shape
    assert len(result['A']) == len(result['B']) == len(model.nce_layers) == len(result['agreement'])
    for side in 'AB':
        for up, low in zip(result[side], result[side + '_lowres']):
            assert up.shape == (SIZE, SIZE)
            assert up.min() >= -1.0 and up.max() <= 1.0 + 1e-6
            i, j = similarity.query_cell(point, low.shape)
            assert low[i, j] == pytest.approx(1.0, abs=1e-5) and low[i, j] >= low.max() - 1e-6
            # after bilinear upsampling the maximum stays within one feature cell of the query
            cell = SIZE / low.shape[0]
            y, x = np.unravel_index(np.argmax(up), up.shape)
            assert abs(y - point[1] * SIZE) <= 1.5 * cell and abs(x - point[0] * SIZE) <= 1.5 * cell


def test_layer0_padding_is_cropped_and_projection_changes_the_maps(checkpoint):
    model = checkpoint['model']
    image = fake_batch(1, SIZE)['A']
    layers = model.nce_layers  # 0, 4, 8, 12: F holds one MLP per layer
    raw = similarity.unit_features(model.netG, image, layers)
    projected = similarity.unit_features(model.netG, image, layers, model.netF)
    assert raw[0].shape[-2:] == (SIZE, SIZE)  # G pads layer 0 by 3 pixels; the padding is cut away
    assert [f.shape[-1] for f in raw] == [SIZE, SIZE, SIZE // 2, SIZE // 4]  # resnet_6blocks
    assert projected[0].shape[0] == model.opt.netF_nc
    for feats in (raw, projected):
        norms = torch.linalg.vector_norm(feats[2], dim=0)
        assert torch.allclose(norms, torch.ones_like(norms), atol=1e-5)
    assert not np.allclose(similarity.cosine_map(raw[2], (2, 2)), similarity.cosine_map(projected[2], (2, 2)))


def test_helpers_fail_loudly(tmp_path):
    with pytest.raises(ValueError, match='fractions'):
        similarity.query_cell((1.5, 0.2), (8, 8))
    with pytest.raises(ValueError, match='auto, projected, encoder'):
        similarity.choose_sampler('mlp', tmp_path / 'x.pth', kind='mlp_sample', nc=8, in_channels=[3])
    with pytest.raises(FileNotFoundError, match='x.pth'):
        similarity.choose_sampler('projected', tmp_path / 'x.pth', kind='mlp_sample', nc=8, in_channels=[3])
    assert similarity.choose_sampler('auto', tmp_path / 'x.pth', kind='mlp_sample', nc=8, in_channels=[3]) is None


def test_colorize_ends_and_agreement():
    rgb = similarity.colorize(np.array([[-1.0, 1.0, 5.0]]), -1.0, 1.0)
    assert rgb.dtype == np.uint8 and rgb.shape == (1, 3, 3)
    assert tuple(rgb[0, 0]) == (68, 1, 84) and tuple(rgb[0, 1]) == tuple(rgb[0, 2]) == (253, 231, 37)
    a = np.arange(12.0).reshape(3, 4)
    assert similarity.map_agreement(a, 2 * a + 1) == pytest.approx(1.0)
    assert np.isnan(similarity.map_agreement(a, np.ones_like(a)))


def test_cli_writes_the_figure(checkpoint, tmp_path, capsys):
    root = checkpoint['root']
    image = next((checkpoint['data'] / 'testA').iterdir())
    out = tmp_path / 'fig9.png'
    cli.main(['--checkpoints_dir', str(root / 'ckpt'), '--name', 'run', '--gpu_ids', '-1', '--image', str(image),
              '--query', '0.25', '0.5', '--out', str(out), '--cell', '64'])
    assert 'F-projected' in capsys.readouterr().out
    with Image.open(out) as fig:
        n_layers = len(ARCH[-1].split(','))
        assert fig.size == (84 + (1 + n_layers) * (64 + 4), 18 + 2 * (64 + 4) + 16)


def test_test_py_flag_adds_maps_to_the_page(checkpoint, tmp_path):
    root = checkpoint['root']
    test_script.main(['--dataroot', str(checkpoint['data']), '--checkpoints_dir', str(root / 'ckpt'),
                      '--name', 'run', '--results_dir', str(tmp_path), '--model', 'src_hdce', *ARCH,
                      '--ngf', '8', '--load_size', str(SIZE), '--crop_size', str(SIZE), '--gpu_ids', '-1',
                      '--num_test', '3', '--similarity_maps', '--sim_num', '2', '--sim_query', '0.5', '0.4',
                      '--sim_features', 'encoder'])
    web = tmp_path / 'run' / 'test_latest'
    maps = sorted(os.listdir(web / 'images' / 'similarity'))
    assert maps == ['000000.png', '000001.png']
    summary = json.loads((web / 'results.json').read_text())
    assert summary['num_images'] == 3
    assert summary['similarity_maps']['features'] == 'raw encoder'
    assert summary['similarity_maps']['query'] == [0.5, 0.4]
    page = (web / 'index.html').read_text()
    assert 'Similarity maps (Figure 9)' in page and 'images/similarity/000001.png' in page
