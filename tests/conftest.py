import os
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT.parent / 'shared' / 'fixtures'
sys.path.insert(0, str(ROOT))
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

# tiny settings that keep every model fast on CPU
TINY = ['--gpu_ids', '-1', '--ngf', '8', '--ndf', '8', '--load_size', '32', '--crop_size', '32',
        '--num_threads', '0', '--display_id', '0', '--no_tqdm']
TINY_BY_MODEL = {
    'sin_src_hdce': ['--ngf', '4', '--ndf', '4', '--load_size', '64', '--crop_size', '32', '--batch_size', '4',
                     '--num_patches', '1'],
    'cycle_gan': ['--netG', 'resnet_6blocks'],
}


def tiny_args(model, tmp_path, *extra):
    args = ['--model', model, '--dataroot', str(tmp_path / 'data'), '--checkpoints_dir',
            str(tmp_path / 'ckpt'), '--name', 'run'] + TINY
    args += TINY_BY_MODEL.get(model, ['--num_patches', '16'])
    return args + list(extra)


def train_opt(model, tmp_path, *extra):
    from options.train_options import TrainOptions
    return TrainOptions(tiny_args(model, tmp_path, *extra)).parse()


def load_script(relative_path):
    """Import a script of the repository (not a package module) by its path, e.g. 'scripts/benchmark.py'."""
    import importlib.util
    path = ROOT / relative_path
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def fake_batch(batch_size=1, size=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {'A': torch.rand(batch_size, 3, size, size, generator=g) * 2 - 1,
            'B': torch.rand(batch_size, 3, size, size, generator=g) * 2 - 1,
            'A_paths': [f'a{i}.png' for i in range(batch_size)],
            'B_paths': [f'b{i}.png' for i in range(batch_size)]}


@pytest.fixture
def fixtures_dir():
    assert FIXTURES.is_dir(), f'shared fixtures not found at {FIXTURES}'
    return FIXTURES
