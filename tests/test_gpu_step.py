"""The GPU step as far as a CPU can show it (issue 32, items 3 and 6): --amp fp16 without host reads (the fused
Adam takes the loss scaler's found-inf flag on the device), R1 under fp16 by AMP's gradient-penalty recipe,
compiled networks split at DDP's buckets, the EMA in one multi-tensor kernel, no discarded monitor, TF32 stated."""
import copy
import os

import pytest
import torch

from models import losses, objectives
from models.networks.averaging import moving_average
from models.runtime import Runtime, set_tf32
from tests.conftest import build_model, host_sync_forbidden, load_script, model_batch, train_step
from tests.test_stargan_v2 import built_model

gpu_check = load_script('scripts/gpu_check.py')

MODELS = {  # every model with a GAN step, tiny; stargan_v2 runs its R1 penalty
    'src_hdce': (), 'cut': (), 'sin_src_hdce': ('--lambda_R1', '1'), 'cycle_gan': (), 'pix2pix': (),
    'stargan_v2': (),
}


def cuda_runtime_adam(monkeypatch):
    """Runtimes built from here on choose their optimizers as on a CUDA device (the networks stay on the CPU)."""
    decide, on_cuda = Runtime.__init__, Runtime('cuda').fused_adam

    def init(self, *args, **kwargs):
        decide(self, *args, **kwargs)
        self.fused_adam = on_cuda
    monkeypatch.setattr(Runtime, '__init__', init)


def build(model, tmp_path, *extra):
    if model == 'stargan_v2':
        return built_model(tmp_path, *MODELS[model], *extra)
    return build_model(tmp_path, model, *MODELS[model], *extra)


def test_adam_is_fused_on_cuda_and_pytorchs_default_on_the_cpu():
    params = [torch.nn.Parameter(torch.zeros(3))]
    cuda, cpu = Runtime('cuda').adam(params, lr=1e-3, betas=(0.5, 0.999)), Runtime('cpu').adam(params, 1e-3, (0.5, 0.9))
    assert cuda.defaults['fused'] is True and cuda._step_supports_amp_scaling  # GradScaler hands it the inf flag
    assert not cpu.defaults['fused'] and not getattr(cpu, '_step_supports_amp_scaling', False)


@pytest.mark.parametrize('model', sorted(MODELS))
def test_every_model_builds_its_optimizers_with_the_runtime(model, tmp_path, monkeypatch):
    cuda_runtime_adam(monkeypatch)
    built = build(model, tmp_path)
    assert built.optimizers and all(o.defaults['fused'] is True for o in built.optimizers)


@pytest.mark.parametrize('model', ['src_hdce', 'stargan_v2'])
def test_fp16_step_reads_nothing_back_with_the_fused_adam(model, tmp_path, monkeypatch):
    """GradScaler.step reads the found-inf flag on the host (`.item()`) for a plain Adam, once per optimizer; the
    fused Adam skips an overflowed step on the device. The second step (the first answers one-time questions of
    the training kernels) reads nothing, and the step is taken."""
    cuda_runtime_adam(monkeypatch)
    built = build(model, tmp_path, '--amp', 'fp16')
    built.runtime.grad_scaler = torch.amp.GradScaler('cpu', init_scale=1.0)  # no overflow on these tiny nets
    batch = model_batch(model, built.opt.batch_size, built.opt.crop_size)
    train_step(built, batch)
    before = [p.detach().clone() for p in built.netG.parameters()]
    built.set_input(batch)
    with gpu_check.host_reads('cpu') as calls:  # on the CPU: every Tensor.item / __bool__ / ... a GPU would wait at
        built.optimize_parameters()
    assert calls == []
    assert any(not torch.equal(a, b) for a, b in zip(before, built.netG.parameters()))
    assert built.runtime.grad_scaler.get_scale() == 1.0


@pytest.mark.cuda
@pytest.mark.parametrize('model', ['src_hdce', 'stargan_v2'])
def test_fp16_step_on_cuda_makes_no_host_sync(model, tmp_path):
    """On a GPU (scripts/gpu_check.sh runs `pytest -m cuda`): torch's sync debug mode raises at a host wait."""
    built = build(model, tmp_path, '--amp', 'fp16', '--gpu_ids', '0')
    batch = model_batch(model, built.opt.batch_size, built.opt.crop_size)
    for _ in range(2):  # one-time questions (cuDNN, the blur filters)
        train_step(built, batch)
    built.set_input(batch)
    with host_sync_forbidden():
        built.optimize_parameters()


def test_fused_adam_skips_an_overflowed_step_on_the_device():
    """What the sync-free path relies on: an inf gradient leaves the weights alone and halves the scale."""
    weight = torch.nn.Parameter(torch.ones(4))
    runtime = Runtime('cpu', amp='fp16', training=True)
    runtime.fused_adam = True
    optimizer = runtime.adam([weight], lr=0.1, betas=(0.5, 0.999))
    scale = runtime.grad_scaler.get_scale()
    runtime.backward((weight * torch.tensor([1.0, float('inf'), 1.0, 1.0])).sum())
    runtime.step(optimizer)
    runtime.update()
    assert torch.equal(weight.detach(), torch.ones(4)) and runtime.grad_scaler.get_scale() == scale / 2


@pytest.mark.parametrize('saved_on, resumed_on', [('cpu', 'cuda'), ('cuda', 'cpu')])
def test_an_optimizer_state_of_the_other_device_kind_keeps_the_resuming_optimizer(saved_on, resumed_on):
    """A CPU run's Adam state (fused None) resumed on CUDA left the fused kernel off, and under fp16 GradScaler
    then handed its found-inf flag to a plain Adam, which raises; a CUDA state resumed on the CPU turned it on."""
    weight = torch.nn.Parameter(torch.ones(3))

    def adam(device):
        return Runtime(device).adam([weight], lr=0.1, betas=(0.5, 0.999))
    saved = adam(saved_on)
    weight.grad = torch.ones(3)
    saved.step()
    resumed = adam(resumed_on)
    Runtime.load_optimizer_state(resumed, saved.state_dict())
    assert resumed.param_groups[0]['fused'] == resumed.defaults['fused']
    assert resumed.state[weight]['step'] == 1
    scaler = torch.amp.GradScaler('cpu')
    scaler.scale((weight * 2).sum()).backward()
    scaler.step(resumed)  # a fused Adam for CUDA (its kernel runs on the CPU too)
    scaler.update()


class TinyD(torch.nn.Module):
    """Two convolutions whose weights (1e-5 each) make ∂D/∂x ~1e-9: below float16's smallest subnormal (6e-8)."""

    def __init__(self):
        super().__init__()
        self.a, self.b = torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.Conv2d(4, 1, 3, padding=1)
        for conv in (self.a, self.b):
            torch.nn.init.constant_(conv.weight, 1e-5)
            torch.nn.init.zeros_(conv.bias)

    def forward(self, x):
        return self.b(self.a(x))


def r1(runtime, d, x):
    x = x.detach().requires_grad_()
    with runtime.autocast():
        pred = d(x).float()
        return losses.r1_penalty(pred, x, runtime.loss_scale())


def test_r1_by_the_amp_recipe_equals_the_float32_penalty():
    torch.manual_seed(0)
    d, x = TinyD(), torch.randn(2, 3, 8, 8)
    plain = r1(Runtime('cpu'), d, x)
    assert plain.min() > 0
    scaled = Runtime('cpu', amp='fp16', training=True)
    scaled.amp_dtype = None  # the recipe alone, in float32: scaling and unscaling change nothing
    assert scaled.loss_scale() == 2.0 ** 16
    torch.testing.assert_close(r1(scaled, d, x), plain, rtol=1e-5, atol=0)
    fp16 = Runtime('cpu', amp='fp16', training=True)
    fp16.grad_scaler = torch.amp.GradScaler('cpu', init_scale=2.0 ** 12)  # 2^16 overflows: the scaler backs off
    unscaled = fp16.loss_scale  # what the penalty got before the recipe: float16's backward flushed it to zero
    fp16.loss_scale = lambda: None
    assert torch.count_nonzero(r1(fp16, d, x)) == 0
    fp16.loss_scale = unscaled
    torch.testing.assert_close(r1(fp16, d, x), plain, rtol=0.05, atol=0)


def test_stargan_v2_passes_the_loss_scale_to_its_r1(tmp_path, monkeypatch):
    model = built_model(tmp_path, '--amp', 'fp16')
    scales = []
    penalty = losses.r1_penalty
    scaler = model.runtime.grad_scaler
    monkeypatch.setattr(losses, 'r1_penalty', lambda pred, x, scale=None: scales.append(
        (None if scale is None else float(scale), scaler.get_scale())) or penalty(pred, x, scale))
    model.optimize_parameters()
    assert len(scales) == 2 and all(given == current for given, current in scales), scales


def test_ema_by_foreach_lerp_equals_the_per_tensor_formula():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    ema = copy.deepcopy(net)
    for p in net.parameters():
        p.data.normal_()
    net[1].running_mean.normal_()
    expected = {n: torch.lerp(p, ema.state_dict()[n], 0.9) for n, p in net.named_parameters()}
    moving_average(net, ema, 0.9)
    for name, value in expected.items():
        torch.testing.assert_close(ema.state_dict()[name], value, rtol=1e-6, atol=1e-7)
    assert torch.equal(ema[1].running_mean, net[1].running_mean)


def test_ema_is_one_multi_tensor_kernel(monkeypatch):
    net = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.Linear(3, 3))
    monkeypatch.setattr(torch, 'lerp', lambda *a, **k: pytest.fail('a per-tensor lerp'))
    moving_average(net, copy.deepcopy(net), 0.5)


def test_only_the_logged_coupled_ce_monitor_is_computed(monkeypatch):
    """The identity branch's monitor was computed and thrown away; the terms stay what they were."""
    torch.manual_seed(0)
    q = [torch.nn.functional.normalize(torch.randn(1, 16, 8), dim=-1) for _ in range(3)]
    k = [torch.nn.functional.normalize(torch.randn(1, 16, 8), dim=-1) for _ in range(3)]
    objective = objectives.SemanticRelation(identity=True)
    sample = lambda branch, ids=None: ([t * (1 if branch == 'X' else 0.5) for t in q], k, None)  # noqa: E731
    expected = objectives.SemanticRelation(identity=True).contrastive([t * 0.5 for t in q], k, objective.hardness(3))
    calls = []
    info_nce = losses.info_nce_loss
    monkeypatch.setattr(losses, 'info_nce_loss', lambda *a, **kw: calls.append(1) or info_nce(*a, **kw))
    terms = objective(sample, 3)
    assert len(calls) == len(q)  # the X branch's monitor, one per layer
    torch.testing.assert_close(terms['HDCE_Y'], expected[0])
    assert terms['monitor_coupled_CE'] > 0


def test_tf32_is_stated_for_training_and_off_for_fid():
    import torchvision
    from evaluation import fid
    before = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    try:
        set_tf32(False, True)
        runtime = Runtime('cuda')
        runtime.configure_process()
        assert (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32) == (True, False)
        assert 'TF32 convolutions on, matmul off' in runtime.describe()  # train.py prints it
        assert 'TF32' not in Runtime('cpu').describe()
        inception = torchvision.models.inception_v3(num_classes=1008, aux_logits=False, weights=None,
                                                    init_weights=False)
        fid.build_inception(inception.state_dict(), dims=64)
        assert (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32) == (False, False)
    finally:
        set_tf32(*before)



def compile_recording(monkeypatch):
    """Module.compile in place with an eager backend that records, per graph, whether dynamo's DDPOptimizer
    (torch/_dynamo/backends/distributed.py) split it at DDP's buckets."""
    import inspect
    compiled = []

    def backend(gm, example_inputs):
        compiled.append(any(f.filename.endswith(os.path.join('backends', 'distributed.py')) for f in inspect.stack()))
        return gm.forward
    in_place = torch.nn.Module.compile
    monkeypatch.setattr(torch.nn.Module, 'compile', lambda self, **kwargs: in_place(self, backend=backend))
    return compiled


@pytest.fixture
def gloo_group():
    import torch.distributed as dist
    torch._dynamo.reset()
    dist.init_process_group('gloo', store=dist.HashStore(), rank=0, world_size=1)
    yield
    dist.destroy_process_group()
    torch._dynamo.reset()


def test_networks_compile_in_place_and_ddp_wraps_the_compiled_ones(tmp_path, monkeypatch, gloo_group):
    """The order of --compile under torchrun: each network compiled in place, then wrapped in DDP. Compilation
    happens at the first call, inside DDP's forward (next test)."""
    from torch.nn.parallel import DistributedDataParallel
    events = []
    monkeypatch.setattr(torch.nn.Module, 'compile', lambda self, **kwargs: events.append(('compile', self)))
    wrap = DistributedDataParallel.__init__

    def init(self, module, *args, **kwargs):
        events.append(('ddp', module))
        wrap(self, module, *args, **kwargs)
    monkeypatch.setattr(DistributedDataParallel, '__init__', init)
    model = build('src_hdce', tmp_path, '--compile')
    model.distribute()
    nets = [model._unwrapped(n) for n in ('G', 'F', 'D')]
    assert [(what, id(net)) for what, net in events] == \
        [('compile', id(n)) for n in nets] + [('ddp', id(n)) for n in nets]


def test_a_module_compiled_in_place_then_wrapped_splits_at_ddps_buckets(monkeypatch, gloo_group):
    """Six 1 MiB layers, 1 MiB buckets: the graph reaches the backend as six pieces, each bucket's gradients
    ready (and all-reduced) while the backward of the layers below it goes on. Compiling the wrapper instead
    (torch.compile(ddp) or ddp.compile()) compiled nothing at all in torch 2.14 here: dynamo breaks the graph in
    DDP's forward and the layers run eagerly."""
    from torch.nn.parallel import DistributedDataParallel
    compiled = compile_recording(monkeypatch)
    net = torch.nn.Sequential(*[torch.nn.Linear(512, 512) for _ in range(6)])
    net.compile()
    ddp = DistributedDataParallel(net, bucket_cap_mb=1)
    ddp(torch.randn(2, 512)).sum().backward()
    assert compiled == [True] * 6
