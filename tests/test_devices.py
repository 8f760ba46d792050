"""Device handling that a CPU can check by standing in for torch.cuda: the RNG state of the run's own GPU,
set_device for --gpu_ids N, --gpu_ids without CUDA, cuDNN autotuning per --preprocess, the CPU kernels kept
to the CPU, the evaluation's default device, and the `cuda` marker's selection."""
import subprocess
import sys

import pytest
import torch

import train as train_script
from evaluation.common import default_device
from models.base_model import rng_state, set_rng_state
from cpu import kernels as fast
from models.networks import define_G
from models.runtime import Runtime, require_cuda_for_gpu_ids
from tests.conftest import ROOT, train_opt


def fake_cuda(monkeypatch, count=4):
    """torch.cuda as a machine with `count` GPUs shows it, recording the calls that name a device."""
    calls = []
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    monkeypatch.setattr(torch.cuda, 'device_count', lambda: count)
    monkeypatch.setattr(torch.cuda, 'set_device', lambda d: calls.append(('set_device', str(d))))
    monkeypatch.setattr(torch.cuda, 'get_rng_state',
                        lambda d='cuda': calls.append(('get', str(d))) or torch.zeros(8, dtype=torch.uint8))
    monkeypatch.setattr(torch.cuda, 'set_rng_state', lambda s, d='cuda': calls.append(('set', str(d), int(s[0]))))
    for name in ('get_rng_state_all', 'set_rng_state_all'):
        monkeypatch.setattr(torch.cuda, name, lambda *a: pytest.fail(f'torch.cuda.{name}: every GPU\'s state'))
    return calls


def test_rng_state_saves_and_restores_the_runs_device_only(monkeypatch):
    calls = fake_cuda(monkeypatch)
    state = rng_state(torch.device('cuda:2'))
    set_rng_state(state, torch.device('cuda:2'))
    assert calls == [('get', 'cuda:2'), ('set', 'cuda:2', 0)]
    assert 'cuda' not in rng_state('cpu')  # a CPU run on a GPU machine touches no GPU
    calls.clear()
    old = dict(state, cuda=[torch.full((8,), i, dtype=torch.uint8) for i in range(2)])  # get_rng_state_all's list
    set_rng_state(old, torch.device('cuda:1'))
    set_rng_state(old, torch.device('cuda:3'))  # resumed with more GPUs than were saved: the first
    assert calls == [('set', 'cuda:1', 1), ('set', 'cuda:3', 0)]


def test_one_process_on_gpu_n_makes_it_the_current_device(tmp_path, monkeypatch):
    calls = fake_cuda(monkeypatch)
    run = train_script.Run(train_opt('src_hdce', tmp_path, '--gpu_ids', '2'))
    assert run.device == 'cuda:2' and calls == [('set_device', 'cuda:2')]


@pytest.mark.parametrize('argv', [[], ['--gpu_ids', '0'], ['--gpu_ids=1'], ['--gpu_ids', '0,1']])
def test_gpu_ids_without_cuda_is_an_error_naming_the_cpu_flag(argv, monkeypatch):
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    with pytest.raises(SystemExit, match=r'asks for a GPU.*pass --gpu_ids -1'):
        require_cuda_for_gpu_ids(['--dataroot', 'x', *argv])
    with pytest.raises(SystemExit, match=r'\(the default\)' if not argv else r'--gpu_ids \d'):
        train_script.main(['--dataroot', 'x', *argv])


def test_cpu_flags_need_no_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    for argv in (['--gpu_ids', '-1'], ['--gpu_ids=-1'], ['--help']):
        require_cuda_for_gpu_ids(argv)


@pytest.mark.parametrize('preprocess, autotuned', [
    ('resize_and_crop', True), ('crop', True), ('scale_width_and_crop', True), ('resize', True),
    ('zoom_and_patch', True), ('none', False), ('zoom', False), ('scale_shortside', False), ('scale_width', False)])
def test_cudnn_autotuning_only_for_one_input_size(preprocess, autotuned, monkeypatch):
    monkeypatch.setattr(torch.backends.cudnn, 'benchmark', False)
    Runtime('cuda:0').configure_process(preprocess)
    assert torch.backends.cudnn.benchmark is autotuned
    Runtime('cpu').configure_process('crop')
    assert torch.backends.cudnn.benchmark is autotuned  # the CPU leaves cuDNN alone


def test_cpu_kernels_stay_on_the_cpu():
    swaps = {device: set(fast.accelerate(define_G(3, 3, 8, 'resnet_6blocks'), device=torch.device(device)))
             for device in ('cpu', 'cuda:0')}
    cpu_only = {'InstanceNorm2d -> GroupInstanceNorm2d', 'Downsample -> FastDownsample', 'Upsample -> FastUpsample',
                'ResnetBlock -> FusedResnetBlock'}
    assert cpu_only <= swaps['cpu'] and not swaps['cuda:0']  # nothing was measured faster on a GPU


def test_evaluation_device_follows_gpu_ids(monkeypatch):
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    monkeypatch.delenv('GPU_IDS', raising=False)
    assert default_device() == 'cuda:0'
    monkeypatch.setenv('GPU_IDS', '2,3')
    assert default_device() == 'cuda:2' and default_device('1') == 'cuda:1' and default_device('-1') == 'cpu'
    monkeypatch.setenv('GPU_IDS', '-1')
    assert default_device() == 'cpu'
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    assert default_device('0') == 'cpu'


def test_sweep_takes_its_device_from_the_gpu_ids_it_passes_to_test_py():
    from evaluation.sweep import test_flag
    assert test_flag(['--model', 'cut', '--gpu_ids', '3'], '--gpu_ids') == '3'
    assert test_flag(['--gpu_ids=1,2'], '--gpu_ids') == '1,2' and test_flag([], '--gpu_ids') is None


def test_runtime_synchronizes_only_its_cuda_device(monkeypatch):
    calls = []
    monkeypatch.setattr(torch.cuda, 'synchronize', lambda d=None: calls.append(str(d)))
    Runtime('cpu').synchronize()
    Runtime('cuda:1').synchronize()
    assert calls == ['cuda:1']


def test_cuda_tests_are_deselected_unless_asked_for():
    """A CPU run of the suite shows no skips: the cuda tests are deselected, also under -m "not slow"."""
    def collect(*args):
        done = subprocess.run([sys.executable, '-m', 'pytest', '--collect-only', '-q', '-p', 'no:cacheprovider',
                               *args, 'tests/test_cuda.py'], cwd=ROOT, capture_output=True, text=True)
        return done.stdout
    assert '3 deselected' in collect() and '3 deselected' in collect('-m', 'not slow')
    assert '3 tests collected' in collect('-m', 'cuda')
