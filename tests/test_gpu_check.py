"""scripts/gpu_check.sh, as far as a CPU can run it: its syntax, its checks, its failure count, and (slow) the
same checks on the CPU (GPU_CHECK_CPU=1: --gpu_ids -1, gloo) that it runs on a GPU, by a python that lacks visdom,
dominate, pytorch_fid and torchprofile as the bare GPU machine does (with and without the carried wheels)."""
import json
import os
import site
import subprocess
import sys
import textwrap

import pytest

from tests.conftest import ROOT

SCRIPT = ROOT / 'scripts' / 'gpu_check.sh'


def gpu_check(tmp_path, **env):
    full = dict(os.environ, PYTHON=sys.executable, GPU_CHECK_DIR=str(tmp_path / 'work'), OMP_NUM_THREADS='1')
    full.update(env)
    return subprocess.run(['bash', str(SCRIPT)], cwd=tmp_path, env=full, capture_output=True, text=True)


def test_gpu_check_parses_and_lists_its_checks(tmp_path):
    assert subprocess.run(['bash', '-n', str(SCRIPT)]).returncode == 0
    gpu = gpu_check(tmp_path, LIST='1').stdout.split()
    assert gpu[:2] == ['cuda_available', 'train_fp32']
    for name in ('train_bf16', 'train_fp16', 'train_channels_last', 'train_compile', 'resume_on_cpu',
                 'resume_cpu_checkpoint_on_gpu', 'test_py', 'fid_gpu_equals_cpu', 'stargan_v2_train',
                 'stargan_v2_evaluate', 'torchrun_one_process', 'pytest_cuda', 'benchmark_float32', 'benchmark_bf16',
                 'device_vs_cpu', 'process_group', 'sync_free_stargan_v2_fp16', 'sync_free_src_hdce_compile',
                 'sync_free_pix2pix', 'benchmark_compile'):
        assert name in gpu, name
    assert gpu_check(tmp_path, LIST='1', ONLY='compile').stdout.split() == \
        ['train_compile', 'sync_free_src_hdce_compile', 'benchmark_compile']
    cpu = gpu_check(tmp_path, LIST='1', GPU_CHECK_CPU='1').stdout.split()
    assert 'torchrun_two_processes' in cpu
    assert not {'cuda_available', 'resume_on_cpu', 'fid_gpu_equals_cpu', 'pytest_cuda'} & set(cpu)
    assert set(cpu) < set(gpu) | {'torchrun_two_processes'}


def test_gpu_check_goes_on_after_a_failure_and_exits_with_the_count(tmp_path):
    done = gpu_check(tmp_path, GPU_CHECK_CPU='1', ONLY='^(train_fp32|test_py)$', PYTHON='false')
    lines = done.stdout.splitlines()
    assert [line.split()[:2] for line in lines[:3]] == [['FAIL', 'data'], ['FAIL', 'train_fp32'], ['FAIL', 'test_py']]
    assert all('log: ' in line for line in lines[:3]) and done.returncode == 3
    summary = json.loads((tmp_path / 'work' / 'summary.json').read_text())
    assert summary['failed'] == 3 and [c['status'] for c in summary['checks']] == ['fail'] * 3


@pytest.mark.slow
def test_gpu_check_on_the_cpu_passes(tmp_path):
    """The checks that need no GPU and no long compilation, on the CPU, torchrun with two gloo processes included."""
    done = gpu_check(tmp_path, GPU_CHECK_CPU='1', ONLY='^(data|train_fp32|resume_same_device|train_bf16|'
                     'train_channels_last|test_py|stargan_v2_train|torchrun_one_process|torchrun_two_processes|'
                     'benchmark_float32)$')
    lines = done.stdout.splitlines()
    assert done.returncode == 0, (done.stdout, done.stderr)
    assert len([line for line in lines if line.startswith('PASS ')]) == 10, lines


# the bare GPU machine's python, played by this one: visdom, dominate, pytorch_fid and torchprofile cannot be
# imported from its own site-packages (a meta path finder that sitecustomize.py installs), only from elsewhere
BLOCKER = textwrap.dedent("""
    import importlib.abc, importlib.machinery, os, sys
    HIDDEN = tuple(os.environ['GPU_CHECK_HIDDEN_SITE'].split(os.pathsep))

    class Bare(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split('.')[0] not in ('visdom', 'dominate', 'pytorch_fid', 'torchprofile'):
                return None
            paths = [p for p in (path or sys.path) if not os.path.realpath(p).startswith(HIDDEN)]
            spec = importlib.machinery.PathFinder.find_spec(name, paths)
            if spec is None:
                raise ModuleNotFoundError(f'No module named {name!r} (not on the bare GPU machine)', name=name)
            return spec

    sys.meta_path.insert(0, Bare())
""")


def bare_python_env(tmp_path):
    hook = tmp_path / 'bare_python'
    hook.mkdir(exist_ok=True)
    (hook / 'sitecustomize.py').write_text(BLOCKER)
    hidden = os.pathsep.join(os.path.realpath(p) for p in site.getsitepackages())
    return dict(PYTHONPATH=str(hook), GPU_CHECK_HIDDEN_SITE=hidden)


def test_the_bare_python_lacks_the_four_packages(tmp_path):
    env = dict(os.environ, **bare_python_env(tmp_path))
    for module in ('visdom', 'dominate', 'pytorch_fid', 'torchprofile'):
        done = subprocess.run([sys.executable, '-c', f'import {module}'], env=env, capture_output=True, text=True)
        assert done.returncode != 0 and 'not on the bare GPU machine' in done.stderr, module
    assert subprocess.run([sys.executable, '-c', 'import torch, numpy'], env=env).returncode == 0


@pytest.mark.slow
def test_gpu_check_runs_on_a_python_without_the_optional_packages(tmp_path):
    """Without any carried wheel: train.py with --display_id 0 --no_html, the step on two devices, the sync-free
    step and the process group import none of the four (test.py writes its HTML page with dominate: carried)."""
    only = '^(train_fp32|device_vs_cpu|sync_free_src_hdce_fp16|process_group)$'
    done = gpu_check(tmp_path, GPU_CHECK_CPU='1', ONLY=only, GPU_WHEELS='', **bare_python_env(tmp_path))
    assert done.returncode == 0, (done.stdout, done.stderr)
    summary = json.loads((tmp_path / 'work' / 'summary.json').read_text())
    assert [c['name'] for c in summary['checks'] if c['status'] == 'pass'] == \
        ['data', 'train_fp32', 'device_vs_cpu', 'sync_free_src_hdce_fp16', 'process_group']


@pytest.fixture(scope='session')
def carried_wheels(tmp_path_factory):
    """scripts/gpu_wheels.sh's folder, built once per session (pip needs PyPI)."""
    folder = tmp_path_factory.mktemp('gpu_wheels')
    done = subprocess.run(['bash', str(ROOT / 'scripts' / 'gpu_wheels.sh'), str(folder)], capture_output=True,
                          text=True, env=dict(os.environ, PYTHON=sys.executable), timeout=600)
    if done.returncode != 0:
        pytest.skip(f'scripts/gpu_wheels.sh could not build the wheels (no PyPI here?): {done.stderr[-300:]}')
    return folder


@pytest.mark.slow
def test_gpu_check_takes_pytorch_fid_from_the_carried_wheels(tmp_path, carried_wheels):
    """test.py's page needs dominate, stargan_v2's evaluation pytorch_fid: the bare python gets them from the
    wheels folder alone."""
    assert all(w.name.endswith('-none-any.whl') for w in carried_wheels.glob('*.whl'))
    done = gpu_check(tmp_path, GPU_CHECK_CPU='1', ONLY='^(train_fp32|test_py|stargan_v2_train|stargan_v2_evaluate)$',
                     GPU_WHEELS=str(carried_wheels), **bare_python_env(tmp_path))
    assert done.returncode == 0, (done.stdout, done.stderr)
    summary = json.loads((tmp_path / 'work' / 'summary.json').read_text())
    carried = ' '.join(summary['carried'])
    assert all(name in carried for name in ('visdom', 'dominate', 'pytorch_fid', 'torchprofile')), carried
    assert 'numpy' not in carried and [c['status'] for c in summary['checks']] == ['pass'] * 5
