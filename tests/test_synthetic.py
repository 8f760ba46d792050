"""datasets/make_synthetic_dataset.py: determinism, layout, and the known answer it provides."""
import argparse
import json

import numpy as np
import pytest
from PIL import Image
from scipy.ndimage import binary_erosion

import data
from tests.conftest import load_script, tree_bytes

synthetic = load_script('datasets/make_synthetic_dataset.py')

SMALL = dict(n_train=6, n_test=4, size=32)


def read(path):
    with Image.open(path) as img:
        return np.asarray(img)


@pytest.fixture(scope='module')
def generated(tmp_path_factory):
    root = tmp_path_factory.mktemp('synthetic')
    return root, synthetic.make_synthetic_dataset(root, seed=3, **SMALL)


def test_same_seed_gives_byte_identical_tree_bytes(generated, tmp_path):
    root, _ = generated
    synthetic.make_synthetic_dataset(tmp_path / 'again', seed=3, **SMALL)
    assert tree_bytes(root) == tree_bytes(tmp_path / 'again')
    synthetic.make_synthetic_dataset(tmp_path / 'other', seed=4, **SMALL)
    other = tree_bytes(tmp_path / 'other')
    assert other.keys() == tree_bytes(root).keys()
    assert other['trainA/000000.png'] != tree_bytes(root)['trainA/000000.png']


def test_layout_names_and_summary(generated):
    root, summary = generated
    expected = {'trainA': 6, 'trainB': 6, 'testA': 4, 'testB': 4, 'testA_gt': 4, 'testA_mask': 4}
    for folder, count in expected.items():
        names = sorted(p.name for p in (root / folder).iterdir())
        assert names == [f'{i:06d}.png' for i in range(count)]
    saved = json.loads((root / 'synthetic.json').read_text())
    assert saved['counts'] == expected == summary['counts']
    assert (saved['seed'], saved['size'], saved['n_train'], saved['n_test']) == (3, 32, 6, 4)
    assert summary['root'] == str(root)
    image, mask = read(root / 'testA' / '000000.png'), read(root / 'testA_mask' / '000000.png')
    assert image.shape == (32, 32, 3) and image.dtype == np.uint8
    assert mask.shape == (32, 32) and set(np.unique(mask)) <= {0, 255}


def test_ground_truth_differs_from_test_a_only_on_the_blobs(generated):
    root, _ = generated
    source_contrast, truth_contrast = [], []
    for i in range(SMALL['n_test']):
        source = read(root / 'testA' / f'{i:06d}.png').astype(float)
        truth = read(root / 'testA_gt' / f'{i:06d}.png').astype(float)
        mask = read(root / 'testA_mask' / f'{i:06d}.png') > 0
        changed = (source != truth).any(axis=2)
        assert mask.any() and not (changed & ~mask).any()
        assert changed[mask].mean() > 0.5
        interior = binary_erosion(mask)  # drop edge pixels, which mix in the background
        if interior.sum() < 4:
            continue
        source_contrast.append(source[interior].mean(axis=1).std())
        truth_contrast.append(truth[interior].mean(axis=1).std())
    # B re-textures blobs with dark and light stripes: far more contrast than A's plain paint
    assert source_contrast and np.mean(truth_contrast) > 3 * np.mean(source_contrast)


def test_train_domains_are_independent_draws(generated):
    root, _ = generated
    scene = synthetic.sample_scene(synthetic._scene_rng(3, 'trainA', 0), 32)
    as_b, _ = synthetic.render(scene, 32, 'B')
    assert not np.array_equal(as_b, read(root / 'trainB' / '000000.png'))
    as_a, _ = synthetic.render(scene, 32, 'A')
    assert np.array_equal(as_a, read(root / 'trainA' / '000000.png'))


def test_existing_dataset_needs_overwrite(generated, tmp_path):
    root = tmp_path / 'd'
    synthetic.make_synthetic_dataset(root, seed=3, **SMALL)
    with pytest.raises(FileExistsError, match=str(root)):
        synthetic.make_synthetic_dataset(root, seed=3, **SMALL)
    synthetic.make_synthetic_dataset(root, seed=3, overwrite=True, n_train=2, n_test=1, size=32)
    assert sorted(p.name for p in (root / 'trainA').iterdir()) == ['000000.png', '000001.png']


@pytest.mark.parametrize('kwargs', [dict(n_train=0), dict(n_test=0), dict(size=30), dict(seed=-1),
                                    dict(background='sunset')])
def test_invalid_arguments_are_refused(tmp_path, kwargs):
    with pytest.raises(ValueError):
        synthetic.make_synthetic_dataset(tmp_path / 'x', **{**SMALL, **kwargs})


def test_backgrounds(tmp_path):
    """landscape: every scene's gradient ends near the sky and meadow colours; random: anywhere."""
    spreads = {}
    for background in synthetic.BACKGROUNDS:
        colors = np.array([synthetic.sample_scene(synthetic._scene_rng(0, 'trainA', i), 32, background)['bg_colors']
                           for i in range(200)])  # (200, 2, 3)
        spreads[background] = colors.std(axis=0).max()
        if background == 'landscape':
            assert np.abs(colors.mean(axis=0) - synthetic.LANDSCAPE).max() < 0.01
    assert spreads['landscape'] < 0.04 < 0.15 < spreads['random']
    summary = synthetic.make_synthetic_dataset(tmp_path / 'r', background='random', **SMALL)
    assert summary['background'] == 'random'


def test_command_line(tmp_path, capsys):
    synthetic.main(['--root', str(tmp_path / 'cli'), '--n_train', '2', '--n_test', '1', '--size', '16'])
    assert 'wrote 8 images' in capsys.readouterr().out
    assert json.loads((tmp_path / 'cli' / 'synthetic.json').read_text())['size'] == 16


def test_unaligned_dataset_reads_it(generated):
    root, _ = generated
    opt = argparse.Namespace(
        dataroot=str(root), phase='test', direction='AtoB', input_nc=3, output_nc=3, load_size=32,
        crop_size=32, preprocess='resize_and_crop', no_flip=True, serial_batches=True, batch_size=2,
        num_threads=0, max_dataset_size=float('inf'), isTrain=False, n_epochs=1,
        random_scale_max=3.0, dataset_mode='unaligned')
    batches = list(data.create_dataset(opt))
    assert [b['A'].shape for b in batches] == [(2, 3, 32, 32)] * 2
    assert batches[0]['A_paths'][0].endswith('testA/000000.png')
