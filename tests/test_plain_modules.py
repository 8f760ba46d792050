"""The plain modules are what trains: an edit to a network class's forward reaches the CPU training step (the
CPU kernels disengage, with one line, when the forward they re-implement changed), and a GPU run uses the
plain classes without importing the CPU machinery (cpu/, but for its flag definitions)."""
import os
import re
import shutil
import subprocess
import sys

import pytest
import torch.nn as nn

from cpu import kernels
from models.networks.generators import ResnetBlock
from models.networks.layers import Downsample, InstanceNorm2d, Upsample
from tests.conftest import H2Z, ROOT, SMALL_TRAIN

EDITED = {'models/networks/generators.py': 'ResnetBlock', 'models/networks/layers.py': ('Downsample', 'Upsample')}


def copy_repository(dest):
    """The repository's tracked files (git ls-files; the whole tree where git is missing) under `dest`."""
    try:
        listed = subprocess.run(['git', 'ls-files', '-z'], cwd=ROOT, capture_output=True, check=True).stdout
        files = [f for f in listed.decode().split('\0') if f and not f.startswith(('studies/', 'docs/'))]
    except (OSError, subprocess.CalledProcessError):
        shutil.copytree(ROOT, dest, ignore=shutil.ignore_patterns('.git', '.venv', 'studies', 'docs'))
        return dest
    for name in files:
        if (ROOT / name).is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, dest / name)
    return dest


def log_calls(path, cls):
    """Insert, as the first line of `cls.forward` in `path`, an append of '<cls> <grad enabled>' to $EDIT_LOG."""
    source = path.read_text()
    header = re.search(rf'^class {cls}\b.*?^(    def forward\(self, x\):\n)', source, re.M | re.S)
    assert header, f'{cls}.forward not found in {path}'
    line = (f"        open(__import__('os').environ['EDIT_LOG'], 'a').write("
            f"'{cls} %d\\n' % __import__('torch').is_grad_enabled())\n")
    path.write_text(source[:header.end()] + line + source[header.end():])


@pytest.mark.slow
def test_edits_to_forward_reach_the_cpu_training_step(tmp_path):
    """Edit ResnetBlock, Downsample and Upsample.forward in a copy of the repository: a 2-iteration CPU
    training run calls each edited forward with a gradient (in the training step, not only in the set-up
    under no_grad), and says in one line per class that the fast copy is not used."""
    from datasets.make_synthetic_dataset import make_synthetic_dataset
    repo = copy_repository(tmp_path / 'repo')
    for relative, classes in EDITED.items():
        for cls in (classes,) if isinstance(classes, str) else classes:
            log_calls(repo / relative, cls)
    data = tmp_path / 'data'
    make_synthetic_dataset(data, n_train=2, n_test=1, size=32, seed=0)
    log = tmp_path / 'calls.txt'
    env = {**os.environ, 'EDIT_LOG': str(log), 'OMP_NUM_THREADS': '1'}
    done = subprocess.run([sys.executable, 'train.py', '--dataroot', str(data), '--checkpoints_dir',
                           str(tmp_path / 'ckpt'), '--name', 'edited', *H2Z, *SMALL_TRAIN, '--seed', '0',
                           '--max_iters', '2', '--no_html', '--print_freq', '1'],
                          cwd=repo, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    calls = log.read_text().split()
    seen = {(calls[i], calls[i + 1]) for i in range(0, len(calls), 2)}
    for cls in ('ResnetBlock', 'Downsample', 'Upsample'):
        assert (cls, '1') in seen, f'{cls}.forward never ran with a gradient: {sorted(seen)}'
        notes = [line for line in done.stderr.splitlines() if f'.{cls}.forward differs' in line]
        assert len(notes) == 1, done.stderr[-3000:]


def test_unchanged_forwards_use_the_cpu_kernels_and_changed_ones_do_not(monkeypatch, capsys):
    """The fingerprints recorded beside the fast copies are those of today's plain forwards; a plain
    forward replaced at run time keeps its class, with one line, and the others still swap."""
    assert all(kernels.forward_fingerprint(cls) == value for cls, value in kernels.PLAIN_FORWARDS.items())
    assert set(kernels.PLAIN_FORWARDS) == {ResnetBlock, Downsample, Upsample, InstanceNorm2d}
    net = nn.Sequential(ResnetBlock(4), Downsample(4), Upsample(4))
    monkeypatch.setattr(kernels, '_reported', set())
    monkeypatch.setattr(Downsample, 'forward', lambda self, x: x[..., ::2, ::2])
    swaps = kernels.accelerate(net)
    assert type(net[0]) is kernels.FusedResnetBlock and type(net[2]) is kernels.FastUpsample
    assert type(net[1]) is Downsample and 'Downsample -> FastDownsample' not in swaps
    kernels.accelerate(nn.Sequential(Downsample(2)))
    notes = capsys.readouterr().err.strip().splitlines()
    assert len(notes) == 1 and 'layers.Downsample.forward differs' in notes[0], notes


GPU_BUILD = r'''
import sys
from pathlib import Path

import torch

torch.cuda.is_available = lambda: True  # a GPU machine, as far as the code can tell


def on_host(to):
    def to_host(self, *args, **kwargs):  # the fake GPU's memory is the host's
        args = [a for a in args if not (isinstance(a, (str, torch.device)) and torch.device(a).type == 'cuda')]
        if kwargs.get('device') is not None and torch.device(kwargs['device']).type == 'cuda':
            kwargs.pop('device')
        return to(self, *args, **kwargs)
    return to_host


torch.nn.Module.to, torch.Tensor.to = on_host(torch.nn.Module.to), on_host(torch.Tensor.to)
from models import create_model
from models.networks.generators import ResnetBlock
from models.networks.layers import Downsample, InstanceNorm2d, Upsample
from models.runtime import Runtime
from options.train_options import TrainOptions
from tests.conftest import fake_batch, tiny_args

opt = TrainOptions(tiny_args('src_hdce', Path(sys.argv[1]))).parse()
model = create_model(opt, Runtime.from_options(opt, 'cuda:0'))
model.data_dependent_initialize(fake_batch(1, opt.crop_size))
model.setup(opt)
classes = {type(m) for m in model.netG.modules()}
assert {ResnetBlock, Downsample, Upsample, InstanceNorm2d} <= classes, classes
assert all(c.__module__.startswith(('torch.', 'models.')) for c in classes), classes
assert model.runtime.swapped == {}, model.runtime.swapped
# the options define the CPU flags (cpu/options.py: argparse only); nothing that computes or preloads is imported
loaded = sorted(m for m in sys.modules if m.startswith('cpu.') and m != 'cpu.options')
assert not loaded, loaded
print('plain')
'''


@pytest.mark.slow
def test_a_gpu_run_uses_the_plain_classes_and_never_imports_the_cpu_package(tmp_path):
    """In a fresh process (nothing imported yet) with torch.cuda faked: the model built for cuda:0 and set up
    for training holds the plain classes, swapped nothing, and never imported cpu/."""
    done = subprocess.run([sys.executable, '-c', GPU_BUILD, str(tmp_path)], cwd=ROOT, capture_output=True,
                          text=True, timeout=300, env={**os.environ, 'OMP_NUM_THREADS': '1'})
    assert done.returncode == 0 and done.stdout.strip().endswith('plain'), done.stderr[-3000:]
