"""Faults of issue 24, each reproduced from outside: `python train.py` processes killed with a real
SIGKILL in an epoch save, two runs in one checkpoint folder, a really full (tmpfs) disk, bad numbers on
the command line, and the one-line `error: ...` of deliberate errors. docs/reliability.md lists them."""
import collections
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from datasets.make_synthetic_dataset import make_synthetic_dataset
from tests.conftest import ROOT, SMALL_TRAIN, small_run_argv, small_run_dataset

WAIT_S = 240  # a train.py process on a loaded 2-core machine
N_TRAIN = 4
SMALL = SMALL_TRAIN + ['--print_freq', '1', '--seed', '5', '--n_epochs', '1', '--n_epochs_decay', '2',
                       '--cpu_allocator', 'glibc']
NETS = 'GFD'


@pytest.fixture(scope='module')
def dataset(tmp_path_factory):
    return small_run_dataset(tmp_path_factory, 'runfaults', N_TRAIN)


def train_argv(dataset, ckpt, name, *extra):
    return small_run_argv(dataset, ckpt, name, SMALL, *extra)


def child_env():
    threads = str(torch.get_num_threads())
    return dict(os.environ, OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads, PYTHONUNBUFFERED='1')


def run(args, timeout=WAIT_S, env=None):
    """A finished `python <args>` in the repository: (return code, stdout + stderr)."""
    done = subprocess.run([sys.executable, *args], cwd=ROOT, env=env or child_env(), stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=timeout)
    return done.returncode, done.stdout


def temp_files(folder):
    return sorted(p.name for p in Path(folder).rglob('*') if '.tmp' in p.name)


def weights(path):
    return torch.load(path, weights_only=True)


# ---------------------------------------------------------------- 1. an epoch checkpoint killed mid-save

@pytest.mark.slow
@pytest.mark.parametrize('point', ['partial:2_train_state.pth', 'rename:2_net_F.pth', 'stage:2_net_G.pth'],
                         ids=['while-staging-the-state', 'between-renames', 'before-staging'])
def test_epoch_checkpoint_killed_mid_save_is_completed_at_resume(point, dataset, tmp_path):
    """SIGKILL in the save of epoch 2 (right after 'latest' of the same state was saved): the resumed run
    writes the epoch-2 files (finished from the staged files, or copied from 'latest') and leaves no
    temporary file."""
    run_dir = tmp_path / 'run'
    argv = train_argv(dataset, tmp_path, 'run', '--save_epoch_freq', '1', '--save_latest_freq', '1')
    code, out = run(['tests/train_with_fault.py', point, *argv])
    assert code == -signal.SIGKILL, out[-3000:]
    assert not (run_dir / '2_train_state.pth').exists()
    if point.startswith('partial'):
        assert any(f.startswith('2_train_state.pth.tmp') for f in temp_files(run_dir))
    latest = {n: weights(run_dir / f'latest_net_{n}.pth') for n in NETS}
    if point.startswith('partial'):  # the best-epoch sweep names the lost epoch before doing anything
        (tmp_path / 'eval' / 'testA').mkdir(parents=True)
        (tmp_path / 'eval' / 'testB').mkdir()
        done = subprocess.run(['bash', 'scripts/sweep_epochs.sh', '--dataroot', str(tmp_path / 'eval'),
                               '--name', 'run', '--checkpoints_dir', str(tmp_path), '--epochs', '1', '2'],
                              cwd=ROOT, env=dict(child_env(), PYTHON=sys.executable), capture_output=True, text=True)
        assert done.returncode == 2 and 'Traceback' not in done.stderr, done.stderr
        assert f'error: {run_dir} has no complete checkpoint for epoch(s) 2 (only 2_net_D.pth.tmp' in done.stderr
    assert weights(run_dir / 'latest_train_state.pth')['epoch'] == 2

    code, out = run(['train.py', *argv, '--continue_train'])
    assert code == 0, out[-3000:]
    assert 'resuming at epoch 3' in out
    for n in NETS:
        saved = weights(run_dir / f'2_net_{n}.pth')
        assert saved.keys() == latest[n].keys() and all(torch.equal(saved[k], latest[n][k]) for k in saved)
    state = weights(run_dir / '2_train_state.pth')
    assert (state['epoch'], state['epoch_done'], state['total_iters']) == (2, True, 2 * N_TRAIN)
    assert (run_dir / '3_net_G.pth').is_file()
    assert temp_files(run_dir) == []


@pytest.mark.slow
def test_a_run_resumed_at_the_end_of_an_epoch_saves_before_its_first_step(dataset, tmp_path):
    """A kill between the 'latest' save of an epoch's last iteration and the epoch's own save leaves a state
    at iteration N_TRAIN of an unfinished epoch: the resumed run has no batch left in that epoch and saves
    it before any step of its own, with no losses to read yet (it raised KeyError)."""
    run_dir = tmp_path / 'run'
    code, out = run(['train.py', *train_argv(dataset, tmp_path, 'run', '--max_iters', str(N_TRAIN))])
    assert code == 0, out[-3000:]
    state_path = run_dir / 'latest_train_state.pth'
    state = torch.load(state_path, weights_only=True)
    assert (state['epoch'], state['epoch_iter'], state['epoch_done']) == (1, N_TRAIN, True)
    state['epoch_done'] = False  # as saved by --save_latest_freq at the last iteration, before the epoch's save
    torch.save(state, state_path)
    code, out = run(['train.py', *train_argv(dataset, tmp_path, 'run', '--continue_train', '--save_epoch_freq', '1',
                                             '--max_iters', str(2 * N_TRAIN))])
    assert code == 0, out[-3000:]
    assert f'resuming at epoch 1, iteration {N_TRAIN} of the epoch' in out
    assert 'saving the model at the end of epoch 1' in out and (run_dir / '1_net_G.pth').is_file()
    state = torch.load(state_path, weights_only=True)
    assert (state['epoch'], state['total_iters']) == (2, 2 * N_TRAIN)


def test_sweep_names_the_epochs_a_run_should_have_saved(tmp_path):
    from evaluation.sweep import missing_epochs
    run_dir = tmp_path / 'run'
    run_dir.mkdir()
    for name in ['1_net_G.pth', '2_net_D.pth', '2_net_G.pth.tmp8x', '3_net_G.pth', '5_net_G.pth']:
        (run_dir / name).write_bytes(b'')
    assert missing_epochs(tmp_path, 'run') == {'2': 'only 2_net_D.pth, 2_net_G.pth.tmp8x'}
    (run_dir / 'train_opt.json').write_text('{"save_epoch_freq": 2, "n_epochs": 3, "n_epochs_decay": 3}')
    torch.save({'epoch': 6, 'epoch_done': True}, run_dir / 'latest_train_state.pth')
    assert missing_epochs(tmp_path, 'run') == {'2': 'only 2_net_D.pth, 2_net_G.pth.tmp8x',
                                               '4': 'due by --save_epoch_freq 2', '6': 'the last epoch'}


# ---------------------------------------------------------------- 2. two runs in one checkpoint folder

def spawn(args, log):
    with open(log, 'w') as out:
        return subprocess.Popen([sys.executable, *args], cwd=ROOT, env=child_env(), stdout=out,
                                stderr=subprocess.STDOUT)


def wait_until(condition, proc, log, what):
    deadline = time.monotonic() + WAIT_S
    while not condition():
        if proc.poll() is not None:
            pytest.fail(f'ended with {proc.returncode} before {what}:\n{Path(log).read_text()[-3000:]}')
        if time.monotonic() > deadline:
            pytest.fail(f'no {what} within {WAIT_S} s')
        time.sleep(0.05)


@pytest.mark.slow
def test_second_run_in_a_folder_is_refused_and_a_killed_runs_lock_is_taken_over(dataset, tmp_path):
    run_dir = tmp_path / 'run'
    first = spawn(['train.py', *train_argv(dataset, tmp_path, 'run', '--seed', '1', '--n_epochs', '500',
                                           '--save_latest_freq', '1')], tmp_path / 'first.out')
    try:
        wait_until(lambda: (run_dir / 'latest_net_G.pth').is_file(), first, tmp_path / 'first.out', 'a first save')
        options = (run_dir / 'train_opt.json').read_bytes()
        code, out = run(['train.py', *train_argv(dataset, tmp_path, 'run', '--seed', '2')])
        assert code == 1, out[-3000:]
        assert f'error: checkpoint folder {run_dir} is in use by another training run (PID {first.pid} on' in out
        assert 'Traceback' not in out and out.count('error:') == 1
        assert (run_dir / 'train_opt.json').read_bytes() == options  # still the first run's seed
        # reading is not writing: test.py runs beside the training
        code, out = run(['test.py', '--dataroot', str(dataset), '--checkpoints_dir', str(tmp_path), '--name', 'run',
                         '--results_dir', str(tmp_path / 'results'), '--gpu_ids', '-1', '--num_test', '1',
                         '--epoch', 'latest'])
        assert code == 0, out[-3000:]
    finally:
        first.kill()
        first.wait()
    assert first.returncode == -signal.SIGKILL

    code, out = run(['train.py', *train_argv(dataset, tmp_path, 'run', '--seed', '1', '--n_epochs', '500',
                                             '--continue_train', '--max_iters', '1')])
    assert code == 0, out[-3000:]
    assert f'taking over the lock of a run that ended without releasing it (PID {first.pid} on' in out
    assert (run_dir / 'train.lock').read_text() == ''  # released at the end


# ---------------------------------------------------------------- 3. a full disk

@contextlib.contextmanager
def small_filesystem(folder, size):
    """A tmpfs of `size` bytes mounted on `folder` (root, Linux); yields False where mounting is refused."""
    folder.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(['mount', '-t', 'tmpfs', '-o', f'size={size}', 'tmpfs', str(folder)],
                             capture_output=True).returncode == 0 if shutil.which('mount') else False
    try:
        yield mounted
    finally:
        if mounted:
            subprocess.run(['umount', '-l', str(folder)], check=True)


def checkpoint_bytes(run_dir, tag='latest'):
    return sum(p.stat().st_size for p in run_dir.glob(f'{tag}_*.pth'))


@pytest.mark.slow
def test_full_disk_ends_with_the_disk_full_message_and_exit_code_4(dataset, tmp_path):
    """A tmpfs with room for one checkpoint and a half: the second save of 'latest' fills it. Where the
    machine refuses to mount, the same save gets an injected ENOSPC instead."""
    probe = tmp_path / 'probe'
    code, out = run(['train.py', *train_argv(dataset, probe, 'run', '--max_iters', '1')])
    assert code == 0, out[-3000:]
    size = checkpoint_bytes(probe / 'run')
    disk = tmp_path / 'disk'
    with small_filesystem(disk, size * 3 // 2 + (256 << 10)) as mounted:
        run_dir = disk / 'run'
        argv = train_argv(dataset, disk, 'run', '--save_latest_freq', '1')
        code, out = run(['train.py', *argv] if mounted else
                        ['tests/train_with_fault.py', 'enospc:latest_net_F.pth:2', *argv])
        assert code == 4, out[-3000:]
        assert 'Traceback' not in out
        line = [x for x in out.splitlines() if x.startswith('error: ')]
        assert len(line) == 1 and line[0].startswith(f'error: disk full while writing to {run_dir} (')
        assert ' MiB free on its file system' in line[0] and 'resume with --continue_train' in line[0]
        assert temp_files(run_dir) == []
        state = weights(run_dir / 'latest_train_state.pth')  # the previous save, whole
        assert state['total_iters'] == 1
        for n in NETS:
            assert weights(run_dir / f'latest_net_{n}.pth').keys() == weights(probe / 'run' / f'latest_net_{n}.pth').keys()


def test_torch_short_write_counts_as_a_full_disk_only_when_space_is_short(tmp_path, monkeypatch):
    from util import errors
    short = RuntimeError('[enforce fail at inline_container.cc:672] . unexpected pos 576 vs 534')
    Usage = collections.namedtuple('Usage', 'total used free')
    monkeypatch.setattr(shutil, 'disk_usage', lambda path: Usage(1 << 30, (1 << 30) - (3 << 19), 3 << 19))
    full = errors.disk_full(short, str(tmp_path / 'run'))
    assert full.exit_code == 4 and f'disk full while writing to {tmp_path}/run (1.5 MiB free' in str(full)
    monkeypatch.setattr(shutil, 'disk_usage', lambda path: Usage(1 << 40, 1 << 30, (1 << 40) - (1 << 30)))
    assert errors.disk_full(short, str(tmp_path)) is None  # plenty of room: some other write failure
    assert errors.disk_full(RuntimeError('shape mismatch'), str(tmp_path)) is None
    assert errors.disk_full(OSError(28, 'No space left on device'), str(tmp_path)) is not None


# ---------------------------------------------------------------- 5. deliberate errors are one line

def error_lines(out):
    return [line for line in out.splitlines() if line.startswith('error: ')]


@pytest.fixture
def bad_image_dataset(tmp_path):
    root = tmp_path / 'bad_data'
    make_synthetic_dataset(root, n_train=2, n_test=1, size=32, seed=2)
    (root / 'trainA' / 'notes.jpg').write_text('not an image')
    return root


@pytest.mark.slow
def test_deliberate_errors_are_one_line_without_a_traceback(dataset, bad_image_dataset, tmp_path):
    cases = {
        'bad image': (['train.py', *train_argv(bad_image_dataset, tmp_path, 'img', '--serial_batches')],
                      "error: cannot read image '"),
        'missing folder': (['train.py', *train_argv(tmp_path / 'nowhere', tmp_path, 'missing')],
                           'error: '),
        'bad flag': (['train.py', *train_argv(dataset, tmp_path, 'flag', '--lambda_SRC', '-1')],
                     'error: --lambda_SRC must be in [0, 1e+30]'),
    }
    (tmp_path / 'damaged').mkdir()
    (tmp_path / 'damaged' / 'latest_net_G.pth').write_bytes(b'PK\x03\x04 cut short')
    cases['damaged checkpoint'] = (['test.py', '--dataroot', str(dataset), '--checkpoints_dir', str(tmp_path),
                                    '--name', 'damaged', '--results_dir', str(tmp_path / 'results'), '--gpu_ids', '-1',
                                    '--model', 'src_hdce', '--load_size', '32', '--crop_size', '32'],
                                   f"error: could not load {tmp_path / 'damaged' / 'latest_net_G.pth'}: the file is "
                                   'damaged')
    for case, (args, start) in cases.items():
        code, out = run(args)
        assert code == 1, (case, out[-3000:])
        lines = error_lines(out)
        assert 'Traceback' not in out and len(lines) == 1 and lines[0].startswith(start), (case, out[-3000:])
        if case == 'missing folder':
            assert str(tmp_path / 'nowhere') in lines[0]
    code, out = run(cases['bad image'][0], env=dict(child_env(), SRC_DEBUG='1'))  # the traceback, for debugging
    assert code == 1 and 'Traceback (most recent call last)' in out and 'ImageLoadError: cannot read image' in out


def test_unexpected_errors_keep_their_traceback():
    code, out = run(['-c', 'import sys; from util import errors; '
                           "sys.exit(errors.guard(lambda argv: {}['a key nobody set']))"])
    assert code == 1 and 'Traceback (most recent call last)' in out and "KeyError: 'a key nobody set'" in out
    assert error_lines(out) == []
