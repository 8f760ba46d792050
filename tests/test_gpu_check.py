"""scripts/gpu_check.sh, as far as a CPU can run it: its syntax, its checks, its failure count, and (slow) the
same checks on the CPU (GPU_CHECK_CPU=1: --gpu_ids -1, gloo) that it runs on a GPU."""
import os
import subprocess
import sys

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
    assert gpu[:3] == ['cuda_available', 'data', 'train_fp32']
    for name in ('train_bf16', 'train_fp16', 'train_channels_last', 'train_compile', 'resume_on_cpu',
                 'resume_cpu_checkpoint_on_gpu', 'test_py', 'fid_gpu_equals_cpu', 'stargan_v2_train',
                 'stargan_v2_evaluate', 'torchrun_one_process', 'pytest_cuda', 'benchmark_float32', 'benchmark_bf16'):
        assert name in gpu, name
    cpu = gpu_check(tmp_path, LIST='1', GPU_CHECK_CPU='1').stdout.split()
    assert 'torchrun_two_processes' in cpu
    assert not {'cuda_available', 'resume_on_cpu', 'fid_gpu_equals_cpu', 'pytest_cuda'} & set(cpu)
    assert set(cpu) < set(gpu) | {'torchrun_two_processes'}


def test_gpu_check_goes_on_after_a_failure_and_exits_with_the_count(tmp_path):
    done = gpu_check(tmp_path, GPU_CHECK_CPU='1', ONLY='^(data|train_fp32|test_py)$', PYTHON='false')
    lines = done.stdout.splitlines()
    assert [line.split()[:2] for line in lines[:3]] == [['FAIL', 'data'], ['FAIL', 'train_fp32'], ['FAIL', 'test_py']]
    assert all('(log: ' in line for line in lines[:3]) and done.returncode == 3


@pytest.mark.slow
def test_gpu_check_on_the_cpu_passes(tmp_path):
    """The checks that need no GPU and no long compilation, on the CPU, torchrun with two gloo processes included."""
    done = gpu_check(tmp_path, GPU_CHECK_CPU='1', ONLY='^(data|train_fp32|resume_same_device|train_bf16|'
                     'train_channels_last|test_py|stargan_v2_train|torchrun_one_process|torchrun_two_processes|'
                     'benchmark_float32)$')
    lines = done.stdout.splitlines()
    assert done.returncode == 0, (done.stdout, done.stderr)
    assert len([line for line in lines if line.startswith('PASS ')]) == 10, lines
