import contextlib
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT.parent / 'shared' / 'fixtures'
sys.path.insert(0, str(ROOT))
from util.recipes import read_recipe  # noqa: E402

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

# the paper's horse2zebra recipe (recipes/horse2zebra.txt; its --model src_hdce included)
H2Z = read_recipe('horse2zebra')

# a train.py run of the paper's model in seconds on CPU: 32 px, 4-channel ResNet-6 networks, 16 patches
SMALL_TRAIN = ['--ngf', '4', '--ndf', '4', '--netG', 'resnet_6blocks', '--load_size', '32', '--crop_size', '32',
               '--num_patches', '16', '--gpu_ids', '-1', '--num_threads', '0', '--display_id', '0', '--no_tqdm']

def small_run_dataset(factory, prefix, n_train):
    """The 32 px synthetic horse→zebra set (2 test images, seed 2) of the end-to-end fault tests."""
    from datasets.make_synthetic_dataset import make_synthetic_dataset
    root = factory.mktemp(prefix) / 'synthetic'
    make_synthetic_dataset(root, n_train=n_train, n_test=2, size=32, seed=2)
    return root


def small_run_argv(dataset, ckpt, name, small, *extra):
    """train.py's arguments for a SMALL_TRAIN-style run `name` of the paper's recipe on `dataset`."""
    return ['--dataroot', str(dataset), '--checkpoints_dir', str(ckpt), '--name', name, *H2Z, *small, *extra]


# tiny settings that keep every model fast on CPU
TINY = ['--gpu_ids', '-1', '--ngf', '8', '--ndf', '8', '--load_size', '32', '--crop_size', '32',
        '--num_threads', '0', '--display_id', '0', '--no_tqdm']
TINY_BY_MODEL = {
    'sin_src_hdce': ['--ngf', '4', '--ndf', '4', '--load_size', '64', '--crop_size', '32', '--batch_size', '4',
                     '--num_patches', '1'],
    'cycle_gan': ['--netG', 'resnet_6blocks'],
    'pix2pix': ['--netG', 'resnet_6blocks'],
    'stargan_v2': ['--base_dim', '8', '--max_conv_dim', '16', '--hidden_dim', '16', '--num_patches', '16',
                   '--batch_size', '2', '--num_domains', '3'],
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


def fake_multidomain_batch(batch_size=2, size=32, num_domains=3, seed=0):
    """A batch of --dataset_mode multidomain: sources with their domains, two references of a target domain."""
    g = torch.Generator().manual_seed(seed)

    def images():
        return torch.rand(batch_size, 3, size, size, generator=g) * 2 - 1
    return {'A': images(), 'A_domain': torch.randint(num_domains, (batch_size,), generator=g),
            'ref': images(), 'ref2': images(), 'ref_domain': torch.randint(num_domains, (batch_size,), generator=g),
            'A_paths': [f'a{i}.png' for i in range(batch_size)], 'ref_paths': [f'r{i}.png' for i in range(batch_size)]}


def tree_bytes(root):
    """{relative path: bytes} of every file under `root` (generated datasets compared byte for byte)."""
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob('*')) if p.is_file()}


def model_batch(model_name, batch_size, size, seed=0):
    """A batch of the dataset each model trains on."""
    if model_name == 'stargan_v2':
        return fake_multidomain_batch(batch_size, size, seed=seed)
    return fake_batch(batch_size, size, seed)


@pytest.fixture
def fixtures_dir():
    assert FIXTURES.is_dir(), f'shared fixtures not found at {FIXTURES}'
    return FIXTURES


def build_model(tmp_path, model, *extra, batch_size=1, seed=0, official=False, official_kernels=False):
    """A model set up as train.py sets it up, on tiny settings, at epoch 3 of the curriculum; `official`:
    run by the oracle's runtime (CUT's plain layers unless `official_kernels`, studies/official_step.py)."""
    import models
    from studies.official_step import official_runtime
    opt = train_opt(model, tmp_path, '--seed', str(seed), '--batch_size', str(batch_size), *extra)
    torch.manual_seed(seed)
    net = models.create_model(opt, official_runtime(opt, official_kernels) if official else None)
    net.set_epoch(3)
    net.data_dependent_initialize(fake_batch(batch_size, opt.crop_size))
    net.setup(opt)
    net.parallelize()
    return net


def train_step(model, batch, reference=False, seed=123):
    """One training step (`reference`: the oracle's, studies/official_step.py); the same seeds give every variant
    the same patches and flips. Returns (losses, gradients per network)."""
    from studies.official_step import official_step
    model.set_input(batch)
    torch.manual_seed(seed)
    np.random.seed(seed)
    if reference:
        official_step(model)
    else:
        model.optimize_parameters()
    grads = {name: [None if p.grad is None else p.grad.clone() for p in getattr(model, 'net' + name).parameters()]
             for name in model.model_names}
    return model.get_current_losses(), grads


@contextlib.contextmanager
def host_sync_forbidden():
    """On CUDA: torch's sync debug mode raises at any host wait inside the block (the sync-free step's check)."""
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode('error')
    try:
        yield
    finally:
        torch.cuda.set_sync_debug_mode('default')


def assert_same_step(result, expected, rtol=1e-4, loss_rtol=1e-5):
    """Equal losses; each gradient within rtol of the largest gradient of its network (conv biases before
    instance norm have a true gradient of 0, so both sides hold float noise there)."""
    (losses, grads), (ref_losses, ref_grads) = result, expected
    assert losses.keys() == ref_losses.keys()
    for k in losses:
        assert losses[k] == pytest.approx(ref_losses[k], rel=loss_rtol, abs=1e-6), k
    for name in grads:
        scale = max(float(g.abs().max()) for g in ref_grads[name] if g is not None)
        for i, (a, b) in enumerate(zip(grads[name], ref_grads[name])):
            assert (a is None) == (b is None), (name, i)
            if b is not None:
                assert float((a - b).abs().max()) <= rtol * scale, f'net{name} parameter {i}'


def saved_weights(run_dir, epoch='latest'):
    """{'G'|'D'|'F': state dict} of the <epoch>_net_*.pth files of a run."""
    return {n: torch.load(Path(run_dir) / f'{epoch}_net_{n}.pth', weights_only=True) for n in 'GDF'}


def assert_same_weights(expected, actual):
    """Bit-identical state dicts, network by network ({name: state dict} on both sides)."""
    for net in expected:
        assert expected[net].keys() == actual[net].keys(), f'net{net}: other keys'
        for k in expected[net]:
            assert torch.equal(expected[net][k], actual[net][k]), f'net{net}.{k} differs'


def saved_bytes(fn, x):
    """fn(x) and the bytes of the distinct storages autograd keeps for its backward."""
    storages = {}

    def pack(t):
        storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn(x)
    return out, sum(storages.values())


def pytest_collection_modifyitems(config, items):
    """Tests marked cuda need a GPU: deselected (not skipped) unless the -m expression names cuda, so that a
    CPU run shows no skips and `-m "not slow"` keeps working; scripts/gpu_check.sh runs `pytest -m cuda`."""
    if 'cuda' in (config.getoption('markexpr') or ''):
        return
    gpu = [item for item in items if item.get_closest_marker('cuda') is not None]
    if gpu:
        config.hook.pytest_deselected(items=gpu)
        items[:] = [item for item in items if item.get_closest_marker('cuda') is None]
