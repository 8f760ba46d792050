"""Tests for evaluation/fid.py: parity with pytorch-fid's CLI, KID arithmetic, loud bad input.

The parity test cannot run `python -m pytorch_fid` as shipped: it downloads the FID Inception
weights. It runs the CLI's own `main()` in a subprocess whose weight loader
(`pytorch_fid.inception.load_state_dict_from_url`, the one call that touches the network) returns
a seeded random Inception state dict from a file; evaluation.fid reads the same file through
--fid-weights. Everything else (file listing, transforms, batching, statistics) is the CLI's.
64-dim features (the first Inception block) and a few images keep it fast on CPU; the
covariances are then singular, which pytorch-fid's square root handles, identically on both sides.
"""
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image

from evaluation import fid
from evaluation.common import EvaluationError, cli

REPO = Path(__file__).resolve().parents[1]
NUM_IMAGES = 16  # few images: a random Inception at 299x299 is slow on CPU

CLI_WITH_LOCAL_WEIGHTS = """
import sys, torch
import pytorch_fid.inception, pytorch_fid.fid_score
weights = torch.load(sys.argv[1], weights_only=True)
pytorch_fid.inception.load_state_dict_from_url = lambda *args, **kwargs: weights
sys.argv = ['pytorch_fid'] + sys.argv[2:]
pytorch_fid.fid_score.main()
"""


@pytest.fixture(scope='module')
def weights_file(tmp_path_factory):
    """A seeded random state dict with the FID Inception's keys and shapes."""
    torch.manual_seed(0)
    net = torchvision.models.inception_v3(num_classes=1008, aux_logits=False, weights=None, init_weights=False)
    path = tmp_path_factory.mktemp('weights') / fid.FID_WEIGHTS_FILE
    torch.save(net.state_dict(), path)
    return path


def _write_images(folder, count, *, seed, brightness, size=(24, 24), ext='png'):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(count):
        base = rng.uniform(0, brightness, size=(1, 1, 3))
        noise = rng.uniform(0, 255 - brightness, size=(size[1], size[0], 3))
        Image.fromarray((base + noise).astype(np.uint8)).save(folder / f'img_{i:03d}.{ext}')
    return folder


@pytest.fixture(scope='module')
def folders(tmp_path_factory):
    """A test.py-style result folder (fake_B) and a target test set, with different statistics."""
    root = tmp_path_factory.mktemp('data')
    fake = _write_images(root / 'results' / 'h2z_run' / 'test_latest' / 'images' / 'fake_B', NUM_IMAGES,
                         seed=1, brightness=120)
    real = _write_images(root / 'horse2zebra' / 'testB', NUM_IMAGES + 4, seed=2, brightness=60)
    return fake, real


@pytest.mark.slow
def test_fid_equals_pytorch_fid_cli(weights_file, folders):
    fake, real = folders
    reference = subprocess.run([sys.executable, '-c', CLI_WITH_LOCAL_WEIGHTS, str(weights_file), '--dims', '64',
                          '--device', 'cpu', '--num-workers', '0', str(fake), str(real)],
                         capture_output=True, text=True, cwd=REPO, check=True)
    expected = float(re.search(r'FID:\s+(\S+)', reference.stdout).group(1))

    results = fake.parents[1]
    fid.main([str(results), str(real), '--dims', '64', '--device', 'cpu', '--num-workers', '0',
              '--fid-weights', str(weights_file), '--kid-subsets', '10'])
    result = json.loads((results / 'metrics_fid.json').read_text())

    assert expected > 0
    assert abs(result['metrics']['fid'] - expected) < 1e-6
    assert result['num_fake'] == NUM_IMAGES and result['num_real'] == NUM_IMAGES + 4
    assert result['kid_subset_size'] == NUM_IMAGES and np.isfinite(result['metrics']['kid_mean'])
    assert (result['run'], result['epoch'], result['epoch_choice'], result['dataset']) == \
        ('h2z_run', 'latest', 'last', 'horse2zebra')


def _kid_by_loops(x, y, subsets):
    """KID written out from its definition, one kernel value at a time."""
    d = x.shape[1]
    values = []
    for ix, iy in subsets:
        a, b, m = x[ix], y[iy], len(ix)
        k = lambda u, v: (float(u @ v) / d + 1) ** 3  # noqa: E731
        xx = sum(k(a[i], a[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
        yy = sum(k(b[i], b[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
        xy = sum(k(a[i], b[j]) for i in range(m) for j in range(m)) / (m * m)
        values.append(xx + yy - 2 * xy)
    return np.mean(values), np.std(values)


def test_kid_matches_direct_numpy_computation():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(30, 8)), rng.normal(0.3, 1.2, size=(25, 8))
    mean, std = fid.kernel_inception_distance(x, y, subset_size=12, num_subsets=5, seed=3)
    subsets = fid.kid_subsets(30, 25, subset_size=12, num_subsets=5, seed=3)
    assert all(len(ix) == 12 and len(set(ix)) == 12 for ix, _ in subsets)
    np.testing.assert_allclose((mean, std), _kid_by_loops(x, y, subsets), rtol=1e-10)
    assert fid.kernel_inception_distance(x, x, subset_size=30, num_subsets=1)[0] < mean


def test_missing_weights_names_the_hub_cache_path(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'torch_home'))
    monkeypatch.setattr(torch.hub, 'download_url_to_file', lambda *a, **k: pytest.fail('tried to download'))
    expected = tmp_path / 'torch_home' / 'hub' / 'checkpoints' / fid.FID_WEIGHTS_FILE
    with pytest.raises(EvaluationError, match=re.escape(str(expected))):
        fid.load_fid_weights()
    assert cli(fid.main, [str(tmp_path), str(tmp_path)]) == 2
    assert str(expected) in capsys.readouterr().err


def test_wrong_weights_file_is_named(tmp_path):
    bad = tmp_path / 'not_inception.pth'
    torch.save({'conv.weight': torch.zeros(1)}, bad)
    state_dict, _ = fid.load_fid_weights(bad)
    with pytest.raises(EvaluationError, match='not_inception.pth'):
        fid.build_inception(state_dict, dims=64, source=str(bad))


@pytest.mark.parametrize('case', ['empty', 'missing', 'mixed_sizes', 'upper_case', 'single'])
def test_bad_folders_are_named(tmp_path, case):
    folder = tmp_path / 'fake_B'
    if case != 'missing':
        folder.mkdir()
    if case in ('mixed_sizes', 'upper_case', 'single'):
        _write_images(folder, 1 if case == 'single' else 3, seed=0, brightness=10)
    if case == 'mixed_sizes':
        _write_images(tmp_path / 'odd', 1, seed=0, brightness=10, size=(30, 20))
        (tmp_path / 'odd' / 'img_000.png').rename(folder / 'odd_one.png')
    if case == 'upper_case':
        _write_images(tmp_path / 'upper', 1, seed=0, brightness=10, ext='PNG')
        (tmp_path / 'upper' / 'img_000.PNG').rename(folder / 'shouty.PNG')
    with pytest.raises(EvaluationError, match='fake_B') as error:
        files = fid.fid_image_files(folder)
        fid.common_image_size(files, folder)
    if case == 'mixed_sizes':
        assert 'odd_one.png (30x20)' in str(error.value)
    if case == 'upper_case':
        assert 'shouty.PNG' in str(error.value)


def test_partial_fake_folder_is_an_error(weights_file, folders):
    fake, real = folders
    state_dict, _ = fid.load_fid_weights(weights_file)
    features = fid.InceptionFeatures(fid.build_inception(state_dict, dims=64), dims=64)
    with pytest.raises(EvaluationError, match=f'holds {NUM_IMAGES} images, expected 120'):
        fid.fid_kid(fake, real, features, expect_count=120)
    assert features.model.training is False
