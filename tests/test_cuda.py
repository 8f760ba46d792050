"""What only a GPU can show (marker cuda: deselected on a CPU; scripts/gpu_check.sh runs `pytest -m cuda`)."""
import pytest
import torch

from models.base_model import rng_state, set_rng_state
from tests.conftest import H2Z, build_model, fake_batch, host_sync_forbidden, train_step

pytestmark = pytest.mark.cuda


def test_training_step_makes_no_host_sync(tmp_path):
    """torch's sync debug mode raises at any call that makes the host wait for the GPU."""
    import train as train_script
    model = build_model(tmp_path, 'src_hdce', *H2Z, '--gpu_ids', '0')
    model.patch_generator = torch.Generator(model.device).manual_seed(0)
    watch = train_script.LossWatch(model)
    batch = fake_batch(1, 32, seed=1)
    for _ in range(2):  # the first steps answer one-time questions (cuDNN, the blur filters)
        train_step(model, batch)
    model.set_input(batch)
    with host_sync_forbidden():
        model.optimize_parameters()
        watch.step(1, 3)
    losses, bad, where = watch.read()
    assert not bad and where is None and all(torch.isfinite(torch.tensor(v)) for v in losses.values())


def test_rng_state_is_the_runs_own_device():
    device = torch.device('cuda', torch.cuda.device_count() - 1)
    state = rng_state(device)
    expected = torch.randn(4, device=device)
    torch.randn(4, device=device)
    set_rng_state(state, device)
    assert torch.equal(torch.randn(4, device=device), expected)
    assert 'cuda' not in rng_state('cpu')


def test_cuda_training_runs_the_plain_classes(tmp_path):
    model = build_model(tmp_path, 'src_hdce', *H2Z, '--gpu_ids', '0')
    assert not model.runtime.swapped  # no CPU kernel was measured faster on a GPU
    assert not any(type(m).__module__.startswith('cpu.') for m in model.netG.modules())
