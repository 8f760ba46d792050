"""The speed work keeps the math: the optimised step equals the step computed the official way (reference),
mixed precision and channels-last train, and scripts/benchmark.py reports JSON."""
import copy
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cpu import kernels as fast
from models.networks.layers import Downsample, InstanceNorm2d, Upsample
from tests.conftest import (H2Z, assert_same_step, build_model as build, fake_batch, load_script, saved_bytes,
                            train_step)

benchmark = load_script('scripts/benchmark.py')

CASES = {
    'src_hdce_h2z': ('src_hdce', H2Z, 1),
    'src_hdce_h2z_batch2': ('src_hdce', H2Z, 2),
    'cut': ('cut', ['--CUT_mode', 'CUT'], 1),
    'fastcut_flips': ('cut', ['--CUT_mode', 'FastCUT'], 1),
    'sin_src_hdce': ('sin_src_hdce', [], 4),
}


@pytest.mark.parametrize('kernels', ['plain', 'training'])
@pytest.mark.parametrize('case', sorted(CASES))
def test_optimised_step_equals_the_official_way(case, kernels, tmp_path):
    """The training kernels, reused encoder features, one encoder pass for both branches and no graphs on
    the detached side give the losses and gradients of the official computation (studies/official_step.py) on CUT's
    plain layers. Over two steps the oracle runs the training kernels too: Adam turns the layers' float32
    differences in near-zero gradients (the discriminator once D(G(X)) ~ 0) into full-size steps."""
    name, extra, batch_size = CASES[case]
    optimised = build(tmp_path / 'a', name, *extra, batch_size=batch_size)
    ref = build(tmp_path / 'b', name, *extra, batch_size=batch_size, official=True,
                official_kernels=kernels == 'training')
    batch = fake_batch(batch_size, optimised.opt.crop_size, seed=4)
    for _ in range(1 if kernels == 'plain' else 2):  # a second step starts from updated weights and Adam states
        assert_same_step(train_step(optimised, batch), train_step(ref, batch, reference=True))


def test_optimised_step_runs_the_generator_twice_the_reference_five_times(tmp_path):
    batch = fake_batch(1, 32)
    for official, expected in ((False, [True, True]), (True, [True] * 5)):
        model = build(tmp_path / str(official), 'src_hdce', *H2Z, official=official)
        calls = []
        model.netG.register_forward_hook(lambda module, args, out: calls.append(torch.is_grad_enabled()))
        train_step(model, batch, reference=official)
        # optimised: translation + source features, then both translations encoded; the oracle: the
        # translation, then fake_B, real_A, idt_B, real_B encoded with graphs
        assert calls == expected


def reference_instance_norm(x, eps=1e-5):
    mean = x.mean(dim=(2, 3), keepdim=True)
    var = x.var(dim=(2, 3), keepdim=True, unbiased=False)
    return (x - mean) / torch.sqrt(var + eps)


@pytest.mark.parametrize('batch_size', [1, 2])
@pytest.mark.parametrize('layout', [torch.contiguous_format, torch.channels_last])
def test_instance_norm_gradient_with_a_channels_last_gradient(batch_size, layout):
    """torch 2.14's nn.InstanceNorm2d backward is wrong for one image and a channels-last gradient;
    ours is right for every layout, and equals nn.InstanceNorm2d exactly without gradient."""
    x = torch.randn(batch_size, 8, 6, 6, dtype=torch.float64).contiguous(memory_format=layout).requires_grad_()
    cotangent = torch.randn(batch_size, 8, 6, 6, dtype=torch.float64).contiguous(memory_format=torch.channels_last)
    norm = fast.GroupInstanceNorm2d(8)
    ours = torch.autograd.grad(torch.relu_(norm(x)), x, cotangent)[0]
    expected = torch.autograd.grad(torch.relu(reference_instance_norm(x)), x, cotangent)[0]
    torch.testing.assert_close(ours, expected)
    with torch.no_grad():
        assert torch.equal(norm(x), F.instance_norm(x))


def test_affine_instance_norm_keeps_its_affine_map_and_its_gradients():
    """StarGAN v2's instance norms are affine: the training kernel must apply weight and bias and train them
    (it once dropped them whenever a gradient flowed). Running-statistics norms are not swapped."""
    torch.manual_seed(0)
    plain = InstanceNorm2d(8, affine=True).double()
    with torch.no_grad():
        plain.weight.uniform_(0.5, 1.5), plain.bias.uniform_(-1, 1)
    swapped = copy.deepcopy(plain)
    assert fast.accelerate(swapped) == {'InstanceNorm2d -> GroupInstanceNorm2d': 1}
    x = torch.randn(2, 8, 6, 6, dtype=torch.float64, requires_grad=True)
    outputs = [norm(x) for norm in (plain, swapped)]
    torch.testing.assert_close(outputs[1], outputs[0])
    grads = [torch.autograd.grad(out.pow(2).sum(), [x, norm.weight, norm.bias])
             for out, norm in zip(outputs, (plain, swapped))]
    for ours, expected in zip(grads[1], grads[0]):
        torch.testing.assert_close(ours, expected)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        assert swapped(x.float().bfloat16()).dtype == torch.bfloat16
    assert not fast.accelerate(InstanceNorm2d(8, track_running_stats=True))


def test_channels_last_gives_the_same_step(tmp_path):
    batch = fake_batch(1, 32, seed=6)
    default = build(tmp_path / 'a', 'src_hdce', *H2Z)
    channels_last = build(tmp_path / 'b', 'src_hdce', *H2Z, '--channels_last')
    assert channels_last.netG.model[1].weight.is_contiguous(memory_format=torch.channels_last)
    assert_same_step(train_step(channels_last, batch), train_step(default, batch))
    channels_last.save_networks('latest')
    saved = torch.load(tmp_path / 'b' / 'ckpt' / 'run' / 'latest_net_G.pth', weights_only=True)
    assert saved.keys() == default.netG.state_dict().keys()


def test_bf16_autocast_trains_with_float32_losses(tmp_path):
    model = build(tmp_path, 'src_hdce', *H2Z, '--amp', 'bf16')
    before = [p.detach().clone() for p in model.netG.parameters()]
    batch = fake_batch(1, 32, seed=2)
    for _ in range(3):
        losses, _ = train_step(model, batch)
        assert all(np.isfinite(v) for v in losses.values()), losses
    model.forward()
    assert model.real_feats[1].dtype == torch.bfloat16  # the generator runs in bfloat16
    assert model.losses['G'].dtype == torch.float32 and model.fake_B.dtype == torch.float32
    assert any(not torch.equal(a, b) for a, b in zip(before, model.netG.parameters()))
    fp32 = build(tmp_path / 'fp32', 'src_hdce', *H2Z)
    ref, _ = train_step(fp32, batch)
    bf16, _ = train_step(build(tmp_path / 'bf16', 'src_hdce', *H2Z, '--amp', 'bf16'), batch)
    assert bf16['G'] == pytest.approx(ref['G'], rel=0.05)


def test_fp16_uses_a_grad_scaler_whose_state_is_saved(tmp_path, capsys):
    model = build(tmp_path, 'src_hdce', *H2Z, '--amp', 'fp16')
    assert 'warning: --amp fp16 on CPU' in capsys.readouterr().err
    assert model.runtime.grad_scaler.is_enabled()
    losses, _ = train_step(model, fake_batch(1, 32, seed=3))
    assert all(np.isfinite(v) for v in losses.values()), losses
    state = model.training_state(1, 1, 1, False)
    assert state['grad_scaler']['scale'] == model.runtime.grad_scaler.get_scale()
    assert build(tmp_path / 'off', 'src_hdce').training_state(1, 1, 1, False)['grad_scaler'] == {}


def test_benchmark_reports_both_steps_as_json(tmp_path, capsys):
    out = tmp_path / 'bench.json'
    assert benchmark.main(['--crop_size', '32', '--warmup', '1', '--repeats', '2', '--alternate',
                           '--out', str(out), '--', '--ngf', '4', '--ndf', '4', '--netG', 'resnet_6blocks',
                           '--num_patches', '16']) == 0
    result = json.loads(capsys.readouterr().out)
    assert result == json.loads(out.read_text())
    assert result['step'] == 'alternate' and len(result['step_seconds']) == 2
    assert result['reference']['median_s'] > 0 and result['time_ratio_to_reference']['median'] > 0
    assert result['memory_kind'] == 'process_peak_rss' and result['peak_memory_mb'] > 0
    assert '--dce_idt' not in result['extra_flags'] and result['recipe'] == 'h2z'


def test_benchmark_refuses_a_reference_for_models_without_one():
    with pytest.raises(SystemExit, match='no reference step'):
        benchmark.run(*benchmark.parse_args(['--model', 'cycle_gan', '--crop_size', '32', '--reference',
                                             '--', '--ngf', '4', '--ndf', '4', '--netG', 'resnet_6blocks']))


def test_compile_compiles_every_network_in_place_without_process_wide_options(tmp_path, monkeypatch):
    """--compile compiles each module in place (checkpoint keys stay CUT's); inductor's layout choice is
    switched off for these compilations on the CPU only, never for the whole process."""
    import torch._inductor.config
    compiled = []
    monkeypatch.setattr(torch.nn.Module, 'compile', lambda self, *a, **k: compiled.append((type(self).__name__, k)))
    # config.patch, not monkeypatch: monkeypatch's undo deletes the attribute, which hides an inductor option
    # for the rest of the process (later compilations then fail on it)
    with torch._inductor.config.patch(layout_optimization=True):
        build(tmp_path, 'src_hdce', *H2Z, '--compile')
        assert torch._inductor.config.layout_optimization is True
    assert [name for name, _ in compiled] == ['ResnetGenerator', 'PatchSampleF', 'NLayerDiscriminator']
    assert all(k == {'options': {'layout_optimization': False}} for _, k in compiled)


@pytest.mark.slow
def test_compile_trains_like_eager(tmp_path):
    """torch.compile for real (no patch): three steps of the paper's model at 32 px, losses as in eager mode."""
    batch = fake_batch(1, 32, seed=5)
    runs = {}
    for mode in ('eager', 'compiled'):
        model = build(tmp_path / mode, 'src_hdce', *H2Z, *(['--compile'] if mode == 'compiled' else []))
        runs[mode] = [train_step(model, batch, seed=10 + i)[0] for i in range(3)]
    for eager, compiled in zip(runs['eager'], runs['compiled']):
        assert compiled.keys() == eager.keys()
        for k in eager:
            assert np.isfinite(compiled[k]) and compiled[k] == pytest.approx(eager[k], rel=2e-3, abs=1e-4), k


def sync_counter(monkeypatch):
    """Count the calls of this repository's code (data loading aside) that read a tensor to the host or wait
    for a device: on a GPU each drains the queue. Returns the list of (step, caller) the calls append to."""
    import os
    import sys as sys_
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    calls, step = [], {'n': 0}

    def counted(original):
        def wrapper(*args, **kwargs):
            caller = sys_._getframe(1).f_code.co_filename
            if caller.startswith(root) and f'{os.sep}data{os.sep}' not in caller[len(root):] \
                    and f'{os.sep}.venv{os.sep}' not in caller:
                calls.append((step['n'], f'{os.path.relpath(caller, root)}: {original.__name__}'))
            return original(*args, **kwargs)
        return wrapper
    for name in ('item', 'tolist', '__float__', '__int__', '__bool__', 'cpu', 'numpy'):
        monkeypatch.setattr(torch.Tensor, name, counted(getattr(torch.Tensor, name)))
    monkeypatch.setattr(torch.cuda, 'synchronize', counted(torch.cuda.synchronize))
    return calls, step


def test_default_training_step_reads_nothing_back_from_the_device(tmp_path, monkeypatch):
    """train.py's loop between prints and saves: no loss read to the host, no sync (issue 23, part 3)."""
    import train as train_script
    from datasets.make_synthetic_dataset import make_synthetic_dataset
    from models.src_hdce_model import SRCHDCEModel
    make_synthetic_dataset(tmp_path / 'data', n_train=6, n_test=1, size=32, seed=0)
    calls, step = sync_counter(monkeypatch)
    real_step = SRCHDCEModel.optimize_parameters

    def counting_step(self):
        step['n'] += 1
        return real_step(self)
    monkeypatch.setattr(SRCHDCEModel, 'optimize_parameters', counting_step)
    argv = ['--dataroot', str(tmp_path / 'data'), '--checkpoints_dir', str(tmp_path / 'ckpt'), '--name', 'run',
            *H2Z, '--ngf', '4', '--ndf', '4', '--netG', 'resnet_6blocks', '--load_size', '32', '--crop_size', '32',
            '--num_patches', '16', '--gpu_ids', '-1', '--num_threads', '0', '--display_id', '0', '--no_tqdm',
            '--seed', '0', '--n_epochs', '1', '--n_epochs_decay', '0', '--print_freq', '4', '--save_latest_freq',
            '100', '--display_freq', '100']
    assert train_script.main(argv) == 0
    assert step['n'] == 6
    by_step = {n: [c for s, c in calls if s == n] for n in range(1, 7)}
    # step 1 answers one-time questions (the blur filters); step 4 prints, step 6 ends the epoch and saves
    for n in (2, 3, 5):
        assert by_step[n] == [], (n, by_step[n])
    assert by_step[4] and by_step[6], by_step  # the counter does see the reads at print and save time


def test_fp16_patch_embeddings_run_in_float32_and_no_step_is_skipped(tmp_path):
    """F's embeddings start with norms ~1e-6: in float16 the L2 normalisation's backward (a division by
    the squared norm) gave inf gradients at every loss scale, so the grad scaler skipped every step and
    backed off until its 1/scale overflowed and NaN reached the weights. F and the losses run in float32."""
    model = build(tmp_path, 'src_hdce', *H2Z, '--amp', 'fp16')
    model.runtime.grad_scaler = torch.amp.GradScaler('cpu', init_scale=1.0)  # no overflow at this scale
    dtypes = []
    for i in range(len(model.nce_layers)):
        getattr(model.netF, f'mlp_{i}').register_forward_hook(lambda m, a, out: dtypes.append(out.dtype))
    before = [p.detach().clone() for p in model.netF.parameters()]
    losses, grads = train_step(model, fake_batch(1, 32, seed=3))
    assert all(np.isfinite(v) for v in losses.values()), losses
    assert set(dtypes) == {torch.float32}
    for name in ('G', 'F', 'D'):  # unscaled in place: finite gradients mean the step was taken
        assert all(g is None or torch.isfinite(g).all() for g in grads[name]), name
    assert model.runtime.grad_scaler.get_scale() == 1.0  # not backed off
    assert any(not torch.equal(a, b) for a, b in zip(before, model.netF.parameters()))
    model.runtime.grad_scaler = torch.amp.GradScaler('cpu', init_scale=2.0 ** -30)
    train_step(model, fake_batch(1, 32, seed=3))  # the step reads nothing back; train.py checks when it reads losses
    with pytest.raises(FloatingPointError, match='loss scale'):
        model.runtime.check_loss_scale()


# ---- layers that keep fewer activations for backward -------------------------------------------------

def accelerated(module):
    fast.accelerate(module)
    return module


def cut_downsample(module, x):
    """CUT's Downsample: padding, then the depthwise blur as a convolution."""
    padded = torch.nn.ReflectionPad2d(module.pad_sizes)(x)
    return F.conv2d(padded, module.filt, stride=module.stride, groups=x.shape[1])


def cut_upsample(module, x):
    """CUT's Upsample: replication padding, transposed depthwise blur, crop."""
    padding = 1 + (module.filt_size - 1) // 2
    out = F.conv_transpose2d(torch.nn.ReplicationPad2d(1)(x), module.filt, stride=module.stride,
                             padding=padding, groups=x.shape[1])
    end = None if module.filt_size % 2 else -1
    return out[:, :, 1:end, 1:end]


@pytest.mark.parametrize('cls,reference', [(Downsample, cut_downsample), (Upsample, cut_upsample)])
@pytest.mark.parametrize('filt_size', [1, 2, 3, 4, 5])
@pytest.mark.parametrize('size', [(8, 8), (7, 9), (5, 6)])
def test_blur_layers_equal_cut_and_keep_no_activation(cls, reference, filt_size, size):
    """Down/Upsample with a gradient (fast paths for CUT's default filters: strided sums for the 3-tap
    Downsample, bilinear interpolation for the 4-tap Upsample) equal CUT's convolutions in value and
    gradient; without gradient they run CUT's convolution itself (test.py stays bit-exact)."""
    module = accelerated(cls(3, filt_size=filt_size).double())
    x = torch.randn(2, 3, *size, dtype=torch.float64, requires_grad=True)
    out, kept = saved_bytes(module, x)
    expected = reference(module, x)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-12)
    cotangent = torch.randn_like(out)
    torch.testing.assert_close(torch.autograd.grad(out, x, cotangent)[0],
                               torch.autograd.grad(expected, x, cotangent)[0], rtol=0, atol=1e-12)
    assert torch.autograd.gradcheck(module, (x,))
    assert kept <= module.filt.untyped_storage().nbytes()  # the filter at most, never an activation
    with torch.no_grad():
        assert torch.equal(module(x), reference(module, x))


def test_blur_fast_paths_follow_a_loaded_filter():
    """The fast paths hold for CUT's fixed filters only; a different loaded filter is used as is."""
    module = accelerated(Downsample(2))
    x = torch.randn(1, 2, 6, 6, requires_grad=True)
    module.filt.copy_(torch.rand_like(module.filt))
    torch.testing.assert_close(module(x), cut_downsample(module, x))
    up = accelerated(Upsample(2))
    up.load_state_dict({'filt': torch.rand_like(up.filt)})
    torch.testing.assert_close(up(x), cut_upsample(up, x))


@pytest.mark.parametrize('padding_type', ['reflect', 'replicate', 'zero'])
@pytest.mark.parametrize('layout', [torch.contiguous_format, torch.channels_last])
def test_resnet_block_keeps_less_and_computes_the_same(padding_type, layout):
    """ReLU + padding fused in the ResNet block, paddings that keep only shapes: same values and
    gradients as the plain nn.Sequential, and less kept for backward."""
    from models.networks.generators import ResnetBlock
    block = accelerated(ResnetBlock(4, padding_type=padding_type).double())
    x = torch.randn(2, 4, 7, 6, dtype=torch.float64).contiguous(memory_format=layout).requires_grad_()
    out, kept = saved_bytes(block, x)
    cut_pads = {'reflect': torch.nn.ReflectionPad2d, 'replicate': torch.nn.ReplicationPad2d}
    plain = torch.nn.Sequential(*[cut_pads[padding_type](m.padding)
                                  if isinstance(m, (torch.nn.ReflectionPad2d, torch.nn.ReplicationPad2d)) else m
                                  for m in block.conv_block])
    expected, kept_plain = saved_bytes(lambda t: t + plain(t), x)
    assert torch.equal(out, expected)
    cotangent = torch.randn_like(out)
    params = [x, *block.parameters()]
    for ours, plain in zip(torch.autograd.grad(out, params, cotangent),
                           torch.autograd.grad(expected, params, cotangent)):
        torch.testing.assert_close(ours, plain, rtol=0, atol=1e-12)
    assert torch.autograd.gradcheck(block, (x,))
    if padding_type != 'zero':
        # plain: input, ReLU output, two padded maps, two conv outputs (+ weights); fused: not the first two
        assert kept_plain - kept == 2 * x.untyped_storage().nbytes(), (kept, kept_plain)


def test_accelerate_swaps_kernels_keeping_keys_values_and_gradients(tmp_path):
    """The training kernels are one explicit swap: same state-dict keys and values, the same outputs and
    gradients as the plain network, a report of what was replaced; the plain network has torch's layers."""
    import copy
    opt_flags = ['--netG', 'resnet_6blocks', '--ngf', '64']  # 256-channel blocks: Winograd's convolutions
    plain = build(tmp_path / 'plain', 'src_hdce', *H2Z, *opt_flags, official=True).netG
    assert not any(type(m).__module__.startswith("cpu.") for m in plain.modules())
    swapped = copy.deepcopy(plain)
    report = fast.accelerate(swapped)
    assert report == {'ReflectionPad2d -> ShapeOnlyReflectionPad2d': 16,
                      'ReplicationPad2d -> ShapeOnlyReplicationPad2d': 2,
                      'ResnetBlock -> FusedResnetBlock': 6, 'Downsample -> FastDownsample': 2,
                      'Upsample -> FastUpsample': 2, 'InstanceNorm2d -> GroupInstanceNorm2d': 17,
                      'Conv2d -> WinogradConv2d': 12}
    assert list(swapped.state_dict()) == list(plain.state_dict())
    assert all(torch.equal(a, b) for a, b in zip(swapped.state_dict().values(), plain.state_dict().values()))
    x = torch.rand(1, 3, 64, 64) * 2 - 1
    outputs = [net(x) for net in (plain, swapped)]
    torch.testing.assert_close(outputs[1], outputs[0], rtol=1e-4, atol=1e-5)
    grads = [torch.autograd.grad(out.square().sum(), list(net.parameters()))
             for out, net in zip(outputs, (plain, swapped))]
    scale = max(float(g.abs().max()) for g in grads[0])  # biases before a norm have a true gradient of 0
    for ours, theirs in zip(grads[1], grads[0]):
        assert float((ours - theirs).abs().max()) <= 1e-4 * scale
    with torch.no_grad():  # without a gradient the fast layers run the plain kernels: bit-equal
        assert torch.equal(swapped(x), plain(x))
    assert fast.accelerate(copy.deepcopy(plain), conv_algo='direct')['Conv2d -> WinogradConv2d'] == 0


def test_test_py_and_the_oracle_use_plain_layers_and_training_swaps_them(tmp_path):
    import models
    from options.test_options import TestOptions
    opt = TestOptions(['--dataroot', str(tmp_path), '--checkpoints_dir', str(tmp_path), '--gpu_ids', '-1',
                       '--model', 'src_hdce', '--ngf', '4']).parse()
    model = models.create_model(opt)
    model.parallelize()
    assert model.runtime.swapped == {} and not model.runtime.training
    trained = build(tmp_path / 't', 'src_hdce', *H2Z)
    assert trained.runtime.swapped['ResnetBlock -> FusedResnetBlock'] == 9
    assert 'training kernels:' in trained.runtime.describe()


@pytest.mark.parametrize('size', [(2, 2), (2, 3), (3, 2), (4, 5), (1, 4)])
@pytest.mark.parametrize('layout', [torch.contiguous_format, torch.channels_last])
def test_default_downsample_on_small_and_odd_maps(size, layout):
    """CUT's default Downsample (strided sums while training) at the smallest sizes reflection allows;
    a side of 1 takes CUT's path, which refuses it as CUT does."""
    module = accelerated(Downsample(3).double())
    x = torch.randn(2, 3, *size, dtype=torch.float64).contiguous(memory_format=layout).requires_grad_()
    if min(size) < 2:
        with pytest.raises(RuntimeError, match='[Pp]adding'):
            module(x)
        return
    out = module(x)
    torch.testing.assert_close(out, cut_downsample(module, x), rtol=0, atol=1e-12)
    assert torch.autograd.gradcheck(module, (x,))


def test_release_free_heap_on_glibc():
    from cpu import memory
    blocks = [bytearray(1 << 20) for _ in range(64)]
    del blocks[::2]  # holes inside the heap
    assert memory.release_free_heap() is True  # this Linux has glibc


@pytest.mark.parametrize('flags, device_trims', [((), True), (('--no_malloc_trim',), False)])
def test_backward_trims_the_heap_on_cpu_unless_told_not_to(tmp_path, monkeypatch, flags, device_trims):
    from cpu import allocator, memory
    calls = []
    monkeypatch.setattr(allocator, 'active', lambda: 'glibc')  # trimming is glibc's (make test runs on tcmalloc)
    monkeypatch.setattr(memory, 'release_free_heap', lambda: calls.append(1) or True)
    model = build(tmp_path, 'src_hdce', *flags)
    assert model.runtime.trim_heap is device_trims
    model.set_input(fake_batch(1, model.opt.crop_size))
    model.optimize_parameters()
    assert len(calls) == (2 if device_trims else 0)  # before the D and the G backward


def test_benchmark_reference_step_leaves_the_heap_alone(tmp_path, monkeypatch, capsys):
    from cpu import allocator, memory
    calls = []
    monkeypatch.setattr(allocator, 'active', lambda: 'glibc')  # trimming is glibc's (make test runs on tcmalloc)
    monkeypatch.setattr(memory, 'release_free_heap', lambda: calls.append(1) or True)
    tiny = ['--crop_size', '32', '--warmup', '0', '--repeats', '1']
    flags = ['--', '--ngf', '4', '--ndf', '4', '--netG', 'resnet_6blocks', '--num_patches', '16']
    assert benchmark.main(tiny + ['--reference'] + flags) == 0
    assert calls == []
    assert benchmark.main(tiny + flags) == 0
    assert len(calls) == 2


def test_benchmark_applies_the_training_process_settings(tmp_path, monkeypatch, capsys):
    """The benchmark's figures describe the configuration train.py runs: the same process settings."""
    from models.runtime import Runtime
    calls = []
    monkeypatch.setattr(Runtime, 'configure_process', lambda self, preprocess='resize_and_crop': calls.append(
        (str(self.device), preprocess)))
    assert benchmark.main(['--crop_size', '32', '--warmup', '0', '--repeats', '1', '--', '--ngf', '4', '--ndf', '4',
                           '--netG', 'resnet_6blocks', '--num_patches', '16']) == 0
    assert calls == [('cpu', 'resize_and_crop')]
    assert json.loads(capsys.readouterr().out)['cudnn_benchmark'] is torch.backends.cudnn.benchmark
