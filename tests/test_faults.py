"""Fault injection (issue 7): each fault is injected for real and what survives is checked.

Crashes (SIGKILL of a `python train.py` process), SIGINT/SIGTERM, a full disk in the middle of a
save, NaN losses, hostile checkpoints, bad image files, a visdom server that never answers and
unwritable folders. docs/reliability.md lists every fault with what it costs.
"""
import argparse
import ast
import errno
import json
import logging
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import data
import test as test_script
import train as train_script
from data.image_folder import ImageLoadError
from models import create_model, losses
from models.src_hdce_model import SRCHDCEModel
from options.train_options import TrainOptions
from tests.conftest import (ROOT, SMALL_TRAIN, assert_same_weights, fake_batch, saved_weights, small_run_argv,
                            small_run_dataset)
from util import util
from util.visdom_server import LOOPBACK, _parser as launcher_parser, ensure_server
from util.visualizer import Visualizer

SMALL = SMALL_TRAIN + ['--print_freq', '1', '--seed', '5', '--n_epochs', '1', '--n_epochs_decay', '1']
N_TRAIN = 4
TOTAL_ITERS = 2 * N_TRAIN  # two epochs of batch 1
LATEST_FILES = ('latest_net_G.pth', 'latest_net_F.pth', 'latest_net_D.pth', 'latest_train_state.pth')
WAIT_S = 180  # start-up of a train.py process on a loaded 2-core machine


@pytest.fixture(scope='module')
def dataset(tmp_path_factory):
    return small_run_dataset(tmp_path_factory, 'faults', N_TRAIN)


def train_argv(dataset, ckpt, name, *extra):
    return small_run_argv(dataset, ckpt, name, SMALL, *extra)


def run_train(dataset, ckpt, name, *extra):
    return train_script.main(train_argv(dataset, ckpt, name, *extra))


def file_bytes(run_dir, names=LATEST_FILES):
    return {name: (run_dir / name).read_bytes() for name in names}


def temp_files(folder):
    return sorted(p.name for p in Path(folder).rglob('*') if '.tmp' in p.name)


@pytest.fixture(scope='module')
def reference(dataset, tmp_path_factory):
    """The uninterrupted run every interrupted-and-resumed run must reproduce bit for bit."""
    ckpt = tmp_path_factory.mktemp('reference')
    assert run_train(dataset, ckpt, 'straight') == 0
    return ckpt / 'straight'


# ---------------------------------------------------------------- train.py as a separate process

@pytest.fixture
def spawn_train(dataset):
    """Starts `python train.py ...` on `dataset` with this process's thread count (so that its
    arithmetic is the same), output to <ckpt>/<name>.out; kills whatever still runs at teardown."""
    threads = str(torch.get_num_threads())
    env = dict(os.environ, OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads, PYTHONUNBUFFERED='1')
    started = []

    def spawn(ckpt, name, *extra):
        with open(ckpt / f'{name}.out', 'w') as log:
            started.append(subprocess.Popen([sys.executable, 'train.py', *train_argv(dataset, ckpt, name, *extra)],
                                            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT))
        return started[-1]
    yield spawn
    for proc in started:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def output_of(proc, ckpt, name):
    """Wait for `proc` to end; its stdout and stderr."""
    try:
        proc.wait(timeout=WAIT_S)
    except subprocess.TimeoutExpired:
        pytest.fail(f'train.py did not end within {WAIT_S} s')
    return (ckpt / f'{name}.out').read_text()


def logged_iterations(run_dir):
    """Iterations finished so far: train.py appends one loss_log.jsonl line per iteration (print_freq 1)."""
    path = run_dir / 'loss_log.jsonl'
    return len(path.read_text().splitlines()) if path.is_file() else 0


def wait_for_iterations(proc, run_dir, count):
    deadline = time.monotonic() + WAIT_S
    while logged_iterations(run_dir) < count:
        if proc.poll() is not None:
            output = (run_dir.parent / f'{run_dir.name}.out').read_text()
            pytest.fail(f'train.py exited with {proc.returncode} before iteration {count}:\n{output[-3000:]}')
        if time.monotonic() > deadline:
            pytest.fail(f'train.py did not reach iteration {count} in {WAIT_S} s')
        time.sleep(0.002)


@pytest.mark.slow
def test_sigkill_at_a_random_point_then_resume_ends_with_the_same_weights(dataset, reference, spawn_train,
                                                                          tmp_path):
    """Saves every iteration, so the kill often lands inside a save (staging or fsync)."""
    seed = int.from_bytes(os.urandom(4), 'little')
    rng = random.Random(seed)
    kill_after, delay = rng.randint(2, TOTAL_ITERS - 2), rng.uniform(0.0, 0.05)
    run_dir = tmp_path / 'run'
    proc = spawn_train(tmp_path, 'run', '--save_latest_freq', '1')
    wait_for_iterations(proc, run_dir, kill_after)
    time.sleep(delay)
    proc.kill()
    output = output_of(proc, tmp_path, 'run')
    context = f'(seed {seed}: killed {delay:.3f} s after iteration {kill_after})'
    assert proc.returncode == -signal.SIGKILL, f'{context}\n{output[-2000:]}'
    seen = logged_iterations(run_dir)
    saved = torch.load(run_dir / 'latest_train_state.pth', weights_only=True)['total_iters']
    assert seen - 1 <= saved <= seen, context  # at most the iteration in flight is lost

    assert run_train(dataset, tmp_path, 'run', '--save_latest_freq', '1', '--continue_train') == 0, context
    assert_same_weights(saved_weights(reference), saved_weights(run_dir))


@pytest.mark.slow
@pytest.mark.parametrize('sig', [signal.SIGTERM, signal.SIGINT], ids=['SIGTERM', 'SIGINT'])
def test_signal_saves_latest_and_state_then_resume_ends_with_the_same_weights(sig, dataset, reference,
                                                                              spawn_train, tmp_path):
    """No periodic save: the only checkpoint is the one the signal handler writes."""
    run_dir = tmp_path / 'run'
    proc = spawn_train(tmp_path, 'run', '--save_latest_freq', '1000')
    wait_for_iterations(proc, run_dir, random.randint(2, 3))
    proc.send_signal(sig)
    output = output_of(proc, tmp_path, 'run')
    assert proc.returncode == 128 + sig, output[-2000:]
    assert f'received signal {int(sig)}' in output and 'resume with --continue_train' in output
    state = torch.load(run_dir / 'latest_train_state.pth', weights_only=True)
    assert state['total_iters'] == logged_iterations(run_dir)  # every finished iteration was saved
    assert not temp_files(run_dir)
    if sig == signal.SIGTERM:  # the same handler serves both signals: one exact resume proves it
        assert run_train(dataset, tmp_path, 'run', '--continue_train') == 0
        assert_same_weights(saved_weights(reference), saved_weights(run_dir))


# ---------------------------------------------------------------- full disk during a save

def disk_full_on(target_prefix, occurrence, before_failing=None):
    """A torch.save that writes a few bytes, then fails with ENOSPC, on the `occurrence`-th file
    whose name starts with `target_prefix`; every other call saves normally."""
    real_save = torch.save
    seen = {'n': 0}

    def save(obj, f, *args, **kwargs):
        if os.path.basename(getattr(f, 'name', str(f))).startswith(target_prefix):
            seen['n'] += 1
            if seen['n'] == occurrence:
                if before_failing is not None:
                    before_failing()
                f.write(b'PK\x03\x04 partial')
                raise OSError(errno.ENOSPC, 'No space left on device')
        return real_save(obj, f, *args, **kwargs)
    return save


def test_disk_full_in_a_periodic_save_keeps_the_previous_latest_and_resume_is_exact(
        dataset, reference, tmp_path, monkeypatch, capsys):
    run_dir = tmp_path / 'run'
    previous = {}
    # latest_net_F is the second file of a save: G is already staged when the disk fills up
    monkeypatch.setattr(torch, 'save', disk_full_on(
        'latest_net_F', 2, before_failing=lambda: previous.update(file_bytes(run_dir))))
    assert run_train(dataset, tmp_path, 'run', '--save_latest_freq', '3') == 4
    assert 'disk full' in capsys.readouterr().err
    monkeypatch.undo()

    assert file_bytes(run_dir) == previous
    assert torch.load(run_dir / 'latest_train_state.pth', weights_only=True)['total_iters'] == 3
    assert run_train(dataset, tmp_path, 'run', '--save_latest_freq', '3', '--continue_train') == 0
    assert_same_weights(saved_weights(reference), saved_weights(run_dir))


@pytest.fixture
def saved_model(tmp_path):
    """A model whose 'latest' (weights + state at total_iters 1) is on disk, then changed in memory."""
    opt = TrainOptions(train_argv(tmp_path / 'data', tmp_path / 'ckpt', 'run')).parse()
    model = create_model(opt)
    model.data_dependent_initialize(fake_batch())
    model.setup(opt)
    model.save_networks('latest', model.training_state(1, 1, 1, False))
    old = {n: {k: v.clone() for k, v in getattr(model, 'net' + n).state_dict().items()} for n in 'GFD'}
    with torch.no_grad():
        for n in 'GFD':
            for p in getattr(model, 'net' + n).parameters():
                p.add_(1.0)
    return opt, model, old


def fresh_model(opt):
    model = create_model(opt)
    model.data_dependent_initialize(fake_batch())
    model.setup(opt)  # opt.continue_train is off: nothing is loaded yet
    return model


def state_dicts(model):
    return {n: getattr(model, 'net' + n).state_dict() for n in 'GFD'}


@pytest.mark.parametrize('failing', LATEST_FILES)
def test_disk_full_at_any_file_of_a_save_leaves_latest_intact_and_loadable(failing, saved_model,
                                                                           monkeypatch):
    opt, model, old = saved_model
    run_dir = Path(model.save_dir)
    before = file_bytes(run_dir)
    monkeypatch.setattr(torch, 'save', disk_full_on(failing, 1))
    with pytest.raises(OSError, match='No space left'):
        model.save_networks('latest', model.training_state(1, 2, 2, False))
    monkeypatch.undo()
    assert file_bytes(run_dir) == before
    loaded = fresh_model(opt)
    loaded.load_networks('latest')
    assert loaded.load_training_state(loaded.read_training_state('latest'))['total_iters'] == 1
    assert_same_weights(old, state_dicts(loaded))


def test_failed_save_leaves_no_partial_file(saved_model, monkeypatch):
    _, model, _ = saved_model
    monkeypatch.setattr(torch, 'save', disk_full_on('latest_net_F', 1))
    with pytest.raises(OSError, match='No space left'):
        model.save_networks('latest', model.training_state(1, 2, 2, False))
    assert temp_files(model.save_dir) == []


def test_save_removes_temp_files_left_by_a_killed_process(saved_model):
    _, model, _ = saved_model
    stale = Path(model.save_dir) / 'latest_net_G.pth.tmp99999999'
    stale.write_bytes(b'PK\x03\x04 partial')
    model.save_networks('latest', model.training_state(1, 2, 2, False))
    assert temp_files(model.save_dir) == []


class SimulatedKill(BaseException):
    """Stands for SIGKILL: nothing after the point where it is raised runs."""


@pytest.mark.parametrize('killed_at', range(1, len(LATEST_FILES) + 1))
def test_kill_between_the_renames_of_a_save_is_finished_at_resume(killed_at, saved_model, monkeypatch):
    """Killed before rename `killed_at` of a save (every file staged): resuming completes that save."""
    opt, model, _ = saved_model
    new = {n: {k: v.clone() for k, v in sd.items()} for n, sd in state_dicts(model).items()}
    real_replace = os.replace
    renames = {'n': 0}

    def replace_then_die(src, dst):
        renames['n'] += 1
        if renames['n'] == killed_at:
            raise SimulatedKill
        real_replace(src, dst)
    monkeypatch.setattr(os, 'replace', replace_then_die)
    with pytest.raises(SimulatedKill):
        model.save_networks('latest', model.training_state(1, 2, 2, False))
    monkeypatch.undo()

    loaded = fresh_model(opt)
    state = loaded.read_training_state('latest')
    loaded.load_networks('latest')
    assert loaded.load_training_state(state)['total_iters'] == 2
    assert_same_weights(new, state_dicts(loaded))
    assert temp_files(model.save_dir) == []


def test_kill_while_staging_the_state_keeps_the_previous_save(saved_model):
    """Every weight file staged, the state cut short: the staged files are not trusted."""
    opt, model, old = saved_model
    run_dir = Path(model.save_dir)
    before = file_bytes(run_dir)
    for name in 'GFD':
        shutil.copy(run_dir / f'latest_net_{name}.pth', run_dir / f'latest_net_{name}.pth.tmp1')
    state = (run_dir / 'latest_train_state.pth').read_bytes()
    (run_dir / 'latest_train_state.pth.tmp1').write_bytes(state[:len(state) // 2])

    loaded = fresh_model(opt)
    assert loaded.read_training_state('latest')['total_iters'] == 1
    loaded.load_networks('latest')
    assert_same_weights(old, state_dicts(loaded))
    assert file_bytes(run_dir) == before


WRITERS = {
    'text': lambda path: util.atomic_write_text(path, 'new\n'),
    'json': lambda path: util.atomic_write_json(path, {'num_images': 2}),
    'torch': lambda path: util.atomic_torch_save({'num_images': 2}, path),
}


@pytest.mark.parametrize('kind', WRITERS)
def test_disk_full_in_fsync_keeps_option_and_result_files(kind, tmp_path, monkeypatch):
    """Delayed allocation reports a full disk at fsync, after every write() succeeded."""
    path = tmp_path / 'results.json'
    path.write_text('previous\n')

    def fsync(fd):
        raise OSError(errno.ENOSPC, 'No space left on device')
    monkeypatch.setattr(os, 'fsync', fsync)
    with pytest.raises(OSError, match='No space left'):
        WRITERS[kind](str(path))
    assert path.read_text() == 'previous\n' and not temp_files(tmp_path)


def test_disk_full_while_saving_options_stops_before_training_and_keeps_them(dataset, tmp_path, monkeypatch):
    TrainOptions(train_argv(dataset, tmp_path, 'run')).parse()
    before = file_bytes(tmp_path / 'run', ('train_opt.txt', 'train_opt.json'))

    def fsync(fd):
        raise OSError(errno.ENOSPC, 'No space left on device')
    monkeypatch.setattr(os, 'fsync', fsync)
    with pytest.raises(SystemExit, match=r'cannot write to --checkpoints_dir .*No space left'):
        run_train(dataset, tmp_path, 'run', '--lr', '0.001')
    assert file_bytes(tmp_path / 'run', ('train_opt.txt', 'train_opt.json')) == before
    assert not temp_files(tmp_path) and not (tmp_path / 'run' / 'latest_net_G.pth').exists()


# ---------------------------------------------------------------- non-finite losses

def poison_src_loss(monkeypatch, at_step):
    """Make the SRC loss NaN during the `at_step`-th training step (counted from 1)."""
    steps = {'n': 0}
    real_step, real_src = SRCHDCEModel.optimize_parameters, losses.src_loss

    def counting_step(self):
        steps['n'] += 1
        return real_step(self)

    def src_loss(*args, **kwargs):
        value = real_src(*args, **kwargs)
        return value * float('nan') if steps['n'] == at_step else value
    monkeypatch.setattr(SRCHDCEModel, 'optimize_parameters', counting_step)
    monkeypatch.setattr(losses, 'src_loss', src_loss)


def all_finite(state_dict_by_net):
    return all(torch.isfinite(v).all() for sd in state_dict_by_net.values() for v in sd.values()
               if v.is_floating_point())


def test_nan_loss_stops_naming_loss_epoch_and_iteration_and_keeps_the_last_good_checkpoint(
        dataset, tmp_path, monkeypatch, capsys):
    poison_src_loss(monkeypatch, at_step=3)
    run_dir = tmp_path / 'run'
    assert run_train(dataset, tmp_path, 'run', '--save_latest_freq', '1') == 3
    err = capsys.readouterr().err
    assert 'non-finite loss' in err and 'SRC=nan' in err and 'at epoch 1, iteration 3' in err
    assert 'last saved checkpoint is kept' in err
    assert torch.load(run_dir / 'latest_train_state.pth', weights_only=True)['total_iters'] == 2
    assert all_finite(saved_weights(run_dir)) and not temp_files(run_dir)


def test_skip_nonfinite_undoes_the_step_and_counts_it(dataset, tmp_path, monkeypatch, capsys):
    poison_src_loss(monkeypatch, at_step=3)
    run_dir = tmp_path / 'run'
    assert run_train(dataset, tmp_path, 'run', '--skip_nonfinite', '--max_iters', '3', '--save_by_iter',
                     '--save_latest_freq', '1') == 0
    out = capsys.readouterr().out
    assert 'SRC=nan at epoch 1, iteration 3: step undone (--skip_nonfinite, 1 so far)' in out
    assert_same_weights(saved_weights(run_dir, 'iter_2'), saved_weights(run_dir, 'iter_3'))
    before, after = (torch.load(run_dir / f'iter_{i}_train_state.pth', weights_only=True) for i in (2, 3))
    for a, b in zip(before['optimizers'], after['optimizers']):
        for key in a['state']:
            for name, value in a['state'][key].items():
                assert torch.equal(torch.as_tensor(value), torch.as_tensor(b['state'][key][name]))
    assert all_finite(saved_weights(run_dir))


# ---------------------------------------------------------------- hostile checkpoints

class CustomObject:
    """Any class of the pickling program: loading it would need this code."""


class OpensAFile:
    """Unpickling this calls open(path, 'w'): arbitrary code run by a plain torch.load."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return open, (self.path, 'w')


@pytest.mark.parametrize('victim', ['latest_net_G.pth', 'latest_train_state.pth'])
def test_checkpoint_that_needs_code_to_load_is_refused(victim, dataset, reference, tmp_path):
    run_dir = tmp_path / 'run'
    shutil.copytree(reference, run_dir)
    marker = tmp_path / 'code_ran'
    original = torch.load(run_dir / victim, weights_only=True)
    torch.save({**original, 'extra': CustomObject(), 'payload': OpensAFile(str(marker))}, run_dir / victim)
    with pytest.raises(RuntimeError, match=rf'refused to load {run_dir / victim}: it contains '
                                           r'tests\.test_faults\.CustomObject, .* would run code'):
        run_train(dataset, tmp_path, 'run', '--continue_train')
    assert not marker.exists()


def test_damaged_checkpoint_is_a_clear_error(reference, tmp_path):
    path = tmp_path / 'latest_net_G.pth'
    path.write_bytes((reference / 'latest_net_G.pth').read_bytes()[:100])
    with pytest.raises(RuntimeError, match=rf'could not load {path}: the file is damaged'):
        util.safe_torch_load(path)


def calls_to(tree, module, function):
    for node in ast.walk(tree):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == function
                and isinstance(node.func.value, ast.Name) and node.func.value.id == module):
            yield node


def project_sources():
    for folder, subfolders, names in os.walk(ROOT):
        subfolders[:] = [d for d in subfolders if not d.startswith('.') and d not in ('tests', '__pycache__')]
        yield from (Path(folder) / n for n in names if n.endswith('.py'))


def test_every_load_in_the_code_is_weights_only():
    offenders = []
    for path in project_sources():
        tree = ast.parse(path.read_text(), filename=str(path))
        for call in calls_to(tree, 'torch', 'load'):
            flag = {k.arg: k.value for k in call.keywords}.get('weights_only')
            if not (isinstance(flag, ast.Constant) and flag.value is True):
                offenders.append(f'{path.relative_to(ROOT)}:{call.lineno} torch.load without weights_only=True')
        for function in ('load', 'loads', 'Unpickler'):
            offenders += [f'{path.relative_to(ROOT)}:{c.lineno} pickle.{function}'
                          for c in calls_to(tree, 'pickle', function)]
    assert not offenders, offenders


def is_plain(value):
    if isinstance(value, (list, tuple)):
        return all(is_plain(v) for v in value)
    return value is None or isinstance(value, (str, int, float, bool))


def test_options_are_stored_as_plain_data(reference):
    saved = json.loads((reference / 'train_opt.json').read_text())
    in_state = torch.load(reference / 'latest_train_state.pth', weights_only=True)['options']
    assert saved['seed'] == 5 and saved['max_dataset_size'] == 'inf'
    for options in (saved, in_state):
        assert {k: v for k, v in options.items() if not is_plain(v)} == {}


# ---------------------------------------------------------------- bad images

def write_png(path, size=(40, 36), mode='RGB', seed=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    w, h = size
    pixels = np.random.default_rng(seed).integers(0, 256, size=(h, w, 3), dtype=np.uint8)
    Image.fromarray(pixels).convert(mode).save(path)
    return path


def write_bad(folder, kind):
    """One unreadable file of the given kind; 'huge' is refused once PIL's pixel limit is lowered."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / {'zero_byte': 'zero.png', 'text': 'notes.jpg', 'truncated': 'cut.jpg',
                     'bad_header': 'bad_header.png', 'huge': 'huge.png'}[kind]
    if kind == 'zero_byte':
        path.write_bytes(b'')
    elif kind == 'text':
        path.write_text('not a picture\n')
    elif kind == 'truncated':
        full = folder / 'full.tmp_jpeg'
        Image.fromarray(np.random.default_rng(1).integers(0, 256, (48, 48, 3), dtype=np.uint8)).save(
            full, format='JPEG')
        path.write_bytes(full.read_bytes()[:1000])
        full.unlink()
    elif kind == 'bad_header':
        path.write_bytes(b'\x89PNG\r\n\x1a\n' + bytes(range(256)))
    else:
        write_png(path, size=(200, 200))
    return path


BAD_KINDS = ('zero_byte', 'text', 'truncated', 'bad_header', 'huge')


@pytest.fixture
def small_pixel_limit(monkeypatch):
    """PIL refuses images above 2 * MAX_IMAGE_PIXELS as decompression bombs; 4000 makes 200x200 one."""
    monkeypatch.setattr(Image, 'MAX_IMAGE_PIXELS', 4000)


def data_opt(dataroot, **overrides):
    opt = argparse.Namespace(
        dataroot=str(dataroot), phase='train', direction='AtoB', input_nc=3, output_nc=3, load_size=32,
        crop_size=32, preprocess='resize_and_crop', no_flip=False, serial_batches=True, batch_size=1,
        num_threads=0, max_dataset_size=float('inf'), isTrain=True, n_epochs=5, dataset_mode='unaligned',
        skip_bad_images=False, seed=0)
    return argparse.Namespace(**{**vars(opt), **overrides})


@pytest.mark.parametrize('kind', BAD_KINDS)
def test_unreadable_image_is_an_error_naming_the_file_and_the_flag(kind, tmp_path, small_pixel_limit):
    for i in range(2):
        write_png(tmp_path / f'ok{i}.png', seed=i)
    bad = write_bad(tmp_path, kind)
    dataset = data.create_dataset(data_opt(tmp_path, dataset_mode='single', isTrain=False)).dataset
    with pytest.raises(ImageLoadError, match=rf"'{bad}'.*--skip_bad_images"):
        dataset[dataset.A_paths.index(str(bad))]


def test_skip_bad_images_leaves_them_out_with_one_warning_and_a_count(tmp_path, small_pixel_limit, caplog):
    for i in range(3):
        write_png(tmp_path / 'trainA' / f'a{i}.png', seed=i)
        write_png(tmp_path / 'trainB' / f'b{i}.png', seed=10 + i)
    bad = [write_bad(tmp_path / 'trainA', kind).name for kind in BAD_KINDS]
    loader = data.create_dataset(data_opt(tmp_path, skip_bad_images=True))
    assert [Path(p).name for p in loader.dataset.A_paths] == ['a0.png', 'a1.png', 'a2.png']
    assert len(list(loader)) == 3
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1  # none for trainB, which is clean
    assert f"skipped 5 unreadable of 8 images checked in '{tmp_path / 'trainA'}'" in warnings[0]
    assert all(name in warnings[0] for name in bad)
    assert 'decompression bomb' in warnings[0]


def test_skip_bad_images_with_nothing_readable_names_the_folder(tmp_path):
    write_png(tmp_path / 'trainA' / 'a.png')
    write_bad(tmp_path / 'trainB', 'zero_byte')
    write_bad(tmp_path / 'trainB', 'text')
    with pytest.raises(ValueError, match=rf"none of the 2 images in '{tmp_path / 'trainB'}' can be read"):
        data.create_dataset(data_opt(tmp_path, skip_bad_images=True))


def test_skip_bad_images_flag_reaches_the_dataset(dataset, tmp_path, caplog):
    root = tmp_path / 'data'
    shutil.copytree(dataset, root)
    write_bad(root / 'trainB', 'truncated')
    opt = TrainOptions(train_argv(root, tmp_path, 'run', '--skip_bad_images')).parse()
    assert len(data.create_dataset(opt).dataset.B_paths) == N_TRAIN
    assert f'skipped 1 unreadable of {N_TRAIN + 1}' in caplog.text and 'cut.jpg' in caplog.text


def test_every_image_mode_and_a_large_image_are_converted_and_resized(tmp_path):
    for mode in ('L', 'LA', 'RGBA', 'P', '1', 'CMYK', 'I;16'):
        name = f'{mode.replace(";", "_")}.{"jpg" if mode == "CMYK" else "png"}'
        if mode == 'I;16':
            values = np.random.default_rng(0).integers(0, 65536, (36, 40), dtype=np.uint16)
            Image.fromarray(values).save(tmp_path / name)
        else:
            write_png(tmp_path / name, mode=mode)
    write_png(tmp_path / 'large.png', size=(1600, 1200))
    loader = data.create_dataset(data_opt(tmp_path, dataset_mode='single', isTrain=False))
    shapes = {Path(b['A_paths'][0]).stem: tuple(b['A'].shape) for b in loader}
    assert len(shapes) == 8 and set(shapes.values()) == {(1, 3, 32, 32)}, shapes


def test_empty_domain_is_a_clear_error_before_any_training(dataset, tmp_path):
    root = tmp_path / 'data'
    shutil.copytree(dataset, root)
    for f in (root / 'trainB').iterdir():
        f.unlink()
    with pytest.raises(ValueError, match=rf"found no images in '{root / 'trainB'}'"):
        run_train(root, tmp_path, 'run')
    assert not (tmp_path / 'run' / 'latest_net_G.pth').exists()


# ---------------------------------------------------------------- unwritable folders

def test_checkpoints_dir_below_a_file_fails_before_reading_any_data(tmp_path):
    blocker = tmp_path / 'a_file'
    blocker.write_text('')
    start = time.monotonic()
    with pytest.raises(SystemExit, match=rf"cannot write to --checkpoints_dir '{blocker}/ckpt/run'"):
        train_script.main(train_argv(tmp_path / 'no_data_here', blocker / 'ckpt', 'run'))
    assert time.monotonic() - start < 10


def test_results_dir_below_a_file_fails_before_translating(dataset, tmp_path):
    blocker = tmp_path / 'a_file'
    blocker.write_text('')
    argv = ['--dataroot', str(dataset), '--checkpoints_dir', str(tmp_path / 'ckpt'), '--name', 'nothing',
            '--results_dir', str(blocker / 'results'), '--model', 'src_hdce', '--ngf', '4', '--netG',
            'resnet_6blocks', '--load_size', '32', '--crop_size', '32', '--gpu_ids', '-1']
    with pytest.raises(SystemExit, match=rf'cannot create --results_dir folder {blocker}/results'):
        test_script.main(argv)  # no checkpoint exists: loading it would be the next step


# ---------------------------------------------------------------- visdom

class NeverAnswers(BaseHTTPRequestHandler):
    """Accepts the connection, then keeps the client waiting (a hung or overloaded server)."""

    def do_POST(self):
        time.sleep(2.0)
        self.send_response(200)
        self.send_header('Content-Length', '2')
        self.end_headers()
        self.wfile.write(b'[]')

    def log_message(self, *args):
        pass


def test_hung_visdom_server_costs_one_timeout_and_one_warning(tmp_path, caplog):
    httpd = ThreadingHTTPServer(('127.0.0.1', 0), NeverAnswers)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    opt = argparse.Namespace(display_id=1, isTrain=True, no_html=True, display_winsize=32, name='exp',
                             display_port=httpd.server_address[1], display_ncols=2,
                             display_server='http://127.0.0.1', display_env='main',
                             checkpoints_dir=str(tmp_path))
    visuals = {k: torch.zeros(1, 3, 8, 8) for k in ('real_A', 'fake_B')}
    try:
        start = time.monotonic()
        vis = Visualizer(opt, timeout=0.3, retry_interval=30.0)
        connect_s = time.monotonic() - start
        start = time.monotonic()
        for i in range(20):
            vis.plot_current_losses(1, i / 20, {'G': 1.0})
            vis.display_current_results(visuals, 1, False)
            vis.print_current_losses(1, i, {'G': 1.0}, 0.1, 0.0)
        loop_s = time.monotonic() - start
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert 0.3 <= connect_s < 1.5 and loop_s < 1.0, (connect_s, loop_s)
    found = [r for r in caplog.records if r.name == 'util.visualizer' and r.levelno == logging.WARNING]
    assert len(found) == 1 and 'training continues without plots' in found[0].getMessage()
    assert len(vis.plot_data['G']['X']) == 20  # kept for when a server answers again


def listening_addresses(port):
    """Local addresses of the sockets listening on `port`, from /proc/net/tcp and tcp6."""
    found = []
    for table in ('/proc/net/tcp', '/proc/net/tcp6'):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.split(':')
            if state == '0A' and int(hex_port, 16) == port:  # 0A: LISTEN
                found.append(address)
    return found


@pytest.mark.slow
def test_visdom_launcher_listens_on_loopback_only(tmp_path):
    assert launcher_parser().parse_args([]).hostname == LOOPBACK
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        port = s.getsockname()[1]
    _, proc = ensure_server(port, env_path=tmp_path / 'env')
    try:
        assert listening_addresses(port) == ['0100007F']  # 127.0.0.1, little-endian hex
    finally:
        proc.terminate()
        proc.wait(timeout=10)
