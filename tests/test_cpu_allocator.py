"""--cpu_allocator: which malloc is chosen, the launcher that preloads it (python -m cpu.launch; train.py
never restarts itself), heap trimming only under glibc, and training that gives the same weights on every
allocator."""
import os
import subprocess
import sys

import pytest

from cpu import allocator as cpu_allocator
from datasets.make_synthetic_dataset import make_synthetic_dataset
from models.runtime import Runtime
from tests.conftest import H2Z, ROOT, SMALL_TRAIN, assert_same_weights, saved_weights, train_opt


def libraries(folder, *names):
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / name).write_bytes(b'')
    return [str(folder)]


def test_auto_prefers_tcmalloc_then_jemalloc_then_glibc(tmp_path):
    both = libraries(tmp_path / 'both', 'libjemalloc.so.2', 'libtcmalloc_minimal.so.4')
    assert cpu_allocator.resolve('auto', dirs=both) == ('tcmalloc', str(tmp_path / 'both' / 'libtcmalloc_minimal.so.4'))
    jemalloc = libraries(tmp_path / 'je', 'libjemalloc.so.2')
    assert cpu_allocator.resolve('auto', dirs=jemalloc)[0] == 'jemalloc'
    assert cpu_allocator.resolve('auto', dirs=libraries(tmp_path / 'none')) == ('glibc', None)
    # auto leaves GPU training alone; glibc is never preloaded
    assert cpu_allocator.resolve('auto', on_cpu=False, dirs=both) == ('glibc', None)
    assert cpu_allocator.resolve('glibc', dirs=both) == ('glibc', None)


def test_a_named_allocator_that_is_missing_is_an_error_naming_the_flag(tmp_path):
    with pytest.raises(SystemExit, match=r'--cpu_allocator jemalloc: none of libjemalloc.so.2.*apt install'):
        cpu_allocator.resolve('jemalloc', dirs=libraries(tmp_path / 'none'))
    with pytest.raises(SystemExit, match=r"--cpu_allocator expects one of auto, glibc, tcmalloc, jemalloc or the "
                                         r"path of a shared library, got '/no/such.so'"):
        cpu_allocator.resolve('/no/such.so')


def test_a_path_is_taken_as_it_is(tmp_path):
    path = tmp_path / 'libtcmalloc.so.4'
    path.write_bytes(b'')
    assert cpu_allocator.resolve(str(path)) == ('tcmalloc', str(path))
    other = tmp_path / 'libmymalloc.so'
    other.write_bytes(b'')
    assert cpu_allocator.resolve(str(other)) == ('libmymalloc.so', str(other))


@pytest.mark.parametrize('argv, default_gpu, expected', [
    (['--cpu_allocator', 'glibc', '--gpu_ids', '-1'], '0', ('glibc', True)),
    (['--cpu_allocator=jemalloc', '--gpu_ids=-1', '--name', 'x'], '0', ('jemalloc', True)),
    (['--name', 'x'], '-1', ('auto', True)),
])
def test_the_flags_are_read_before_the_options(argv, default_gpu, expected):
    assert cpu_allocator.requested(argv, default_gpu) == expected


def test_gpu_training_is_not_cpu_training_where_a_gpu_exists(monkeypatch):
    monkeypatch.setattr(cpu_allocator.os.path, 'exists', lambda path: path == '/dev/nvidiactl')
    assert cpu_allocator.requested(['--gpu_ids', '0']) == ('auto', False)
    assert cpu_allocator.requested(['--gpu_ids', '-1']) == ('auto', True)


def test_the_preloaded_process_environment():
    env = cpu_allocator.preload_env('jemalloc', '/x/libjemalloc.so.2', {'LD_PRELOAD': '/y/libother.so', 'A': '1'})
    assert env['LD_PRELOAD'] == '/x/libjemalloc.so.2:/y/libother.so' and env['A'] == '1'
    assert env[cpu_allocator.ENV_CHOSEN] == 'jemalloc' and env[cpu_allocator.ENV_LIBRARY] == '/x/libjemalloc.so.2'
    assert env['MALLOC_CONF'] == cpu_allocator.JEMALLOC_CONF
    mine = cpu_allocator.preload_env('jemalloc', '/x/libjemalloc.so.2', {'MALLOC_CONF': 'narenas:1'})
    assert mine['MALLOC_CONF'] == 'narenas:1'
    assert 'MALLOC_CONF' not in cpu_allocator.preload_env('tcmalloc', '/x/libtcmalloc.so.4', {})


def test_the_launcher_decides_once(tmp_path, monkeypatch):
    """launch_env preloads what the command's flags ask for, nothing for glibc, and leaves the environment a
    launcher already set (children of a launched command do not decide again)."""
    libm = next(p for p in cpu_allocator.loaded_libraries() if os.path.basename(p).startswith('libm.so'))
    env = cpu_allocator.launch_env(['python', 'train.py', '--cpu_allocator', libm], {'A': '1'})
    assert env['LD_PRELOAD'] == libm and env[cpu_allocator.ENV_LIBRARY] == libm and env['A'] == '1'
    assert cpu_allocator.launch_env(['python', 'train.py', '--cpu_allocator', 'glibc'], {}) == {
        cpu_allocator.ENV_CHOSEN: 'glibc'}
    assert cpu_allocator.launch_env(['python', 'train.py', '--cpu_allocator', libm], env) == env


def test_no_process_of_the_product_restarts_itself():
    """The preload is the launcher's (cpu/launch.py): train.py, util/ and models/ never exec."""
    listed = subprocess.run(['git', 'grep', '-lE', r'\bexecv', '--', 'train.py', 'test.py', 'util', 'models'],
                            cwd=ROOT, capture_output=True, text=True)
    if listed.returncode > 1:
        pytest.skip('not a git checkout')
    assert listed.stdout == ''


def test_active_believes_only_a_mapped_library(monkeypatch):
    monkeypatch.delenv(cpu_allocator.ENV_CHOSEN, raising=False)
    assert cpu_allocator.active() == 'glibc'
    monkeypatch.setenv(cpu_allocator.ENV_CHOSEN, 'tcmalloc')
    monkeypatch.setenv(cpu_allocator.ENV_LIBRARY, '/not/loaded/libtcmalloc_minimal.so.4')
    assert cpu_allocator.active() == 'glibc'  # the loader only warns when a preload fails
    libc = next(p for p in cpu_allocator.loaded_libraries() if os.path.basename(p).startswith('libc.so'))
    monkeypatch.setenv(cpu_allocator.ENV_LIBRARY, libc)
    assert cpu_allocator.active() == 'tcmalloc'


def test_the_heap_is_trimmed_only_under_glibc(monkeypatch):
    monkeypatch.setattr(cpu_allocator, 'active', lambda: 'glibc')
    glibc = Runtime('cpu', training=True)
    assert glibc.trim_heap and 'allocator glibc, heap trimmed before backward' in glibc.describe()
    monkeypatch.setattr(cpu_allocator, 'active', lambda: 'tcmalloc')
    tcmalloc = Runtime('cpu', training=True)
    assert not tcmalloc.trim_heap and 'allocator tcmalloc;' in tcmalloc.describe()


def test_the_option_checks_a_path(tmp_path):
    with pytest.raises(SystemExit, match=r'--cpu_allocator expects one of'):
        train_opt('src_hdce', tmp_path, '--cpu_allocator', str(tmp_path / 'missing.so'))
    assert train_opt('src_hdce', tmp_path, '--cpu_allocator', 'glibc').cpu_allocator == 'glibc'


def train_process(dataset, ckpt, name, *extra):
    """train.py started by the launcher (python -m cpu.launch) in its own process; its stdout."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(cpu_allocator.ENV_CHOSEN) and k != 'LD_PRELOAD'}
    argv = [sys.executable, '-m', 'cpu.launch', '--', sys.executable, 'train.py', '--dataroot', str(dataset), '--checkpoints_dir', str(ckpt), '--name', name,
            *H2Z, *SMALL_TRAIN, '--seed', '3', '--n_epochs', '1', '--n_epochs_decay', '1', *extra]
    done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


@pytest.mark.slow
def test_the_launcher_starts_train_py_on_the_preloaded_library_and_it_trains_the_same_weights(tmp_path):
    dataset = tmp_path / 'data'
    make_synthetic_dataset(dataset, n_train=4, n_test=1, size=32, seed=1)
    ckpt = tmp_path / 'ckpt'
    glibc = train_process(dataset, ckpt, 'glibc', '--cpu_allocator', 'glibc')
    assert 'allocator glibc, heap trimmed before backward' in glibc
    # the mechanism with any preloadable library (libm: harmless), so it runs wherever the test does
    libm = next((p for p in cpu_allocator.loaded_libraries() if os.path.basename(p).startswith('libm.so')), None)
    assert libm, 'libm is mapped into every CPython process on Linux'
    preloaded = train_process(dataset, ckpt, 'preloaded', '--cpu_allocator', libm)
    assert f'allocator {os.path.basename(libm)};' in preloaded  # chosen, mapped, so no trimming
    assert_same_weights(saved_weights(ckpt / 'glibc'), saved_weights(ckpt / 'preloaded'))
    found = cpu_allocator.find('tcmalloc')
    if found is None:
        pytest.skip('tcmalloc is not installed here (make venv fetches it where apt-get is available)')
    tcmalloc = train_process(dataset, ckpt, 'tcmalloc')  # --cpu_allocator auto
    assert 'allocator tcmalloc;' in tcmalloc
    assert_same_weights(saved_weights(ckpt / 'glibc'), saved_weights(ckpt / 'tcmalloc'))


def test_fetching_tcmalloc_without_apt_leaves_glibc_and_succeeds(tmp_path):
    bin_dir = tmp_path / 'bin'  # a PATH with bash's own builtins only: no apt-get, dpkg or ldconfig
    bin_dir.mkdir()
    done = subprocess.run(['/bin/bash', str(ROOT / 'scripts' / 'fetch_tcmalloc.sh'), str(tmp_path / 'venv')],
                          env={'PATH': str(bin_dir)}, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and 'no apt-get/dpkg' in done.stdout and "glibc's malloc" in done.stdout
    assert not (tmp_path / 'venv').exists()
