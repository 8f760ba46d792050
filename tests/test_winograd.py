"""Winograd F(4x4, 3x3) convolution (cpu/winograd.py): exact transforms, the direct convolution's
values and gradients, and the Conv2d layer that uses it only where it is measured faster."""
from fractions import Fraction

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from cpu import kernels as fast, winograd
from cpu.winograd import POINTS, pays_off, winograd_conv3x3, winograd_matrices
from tests.conftest import H2Z, assert_same_step, build_model as build, saved_bytes, train_step
from tests.conftest import fake_batch, load_script, train_opt


def correlate_1d(d, g):
    m = d.shape[0] - g.shape[0] + 1
    return torch.stack([(d[i:i + g.shape[0]] * g).sum() for i in range(m)])


def test_transforms_compute_correlation():
    """The F(4, 3) matrices for the points 0, +-1, +-1/2, infinity: y = A^T [(G g) * (B^T d)] is the 1-D
    correlation of a 3-tap filter g with 6 samples d, exactly (float64 sums of dyadic rationals and thirds)."""
    at, g, bt = winograd_matrices()
    assert at.shape == (4, 6) and g.shape == (6, 3) and bt.shape == (6, 6)
    gen = torch.Generator().manual_seed(43)
    for _ in range(20):
        d = torch.randn(6, dtype=torch.float64, generator=gen)
        k = torch.randn(3, dtype=torch.float64, generator=gen)
        torch.testing.assert_close(at @ ((g @ k) * (bt @ d)), correlate_1d(d, k), rtol=0, atol=1e-12)


def test_transforms_are_those_of_the_interpolation_points():
    """A^T holds the powers 0..3 of the finite points (and the point at infinity); G's rows are the filter
    evaluated at each point divided by the product of its distances to the other points."""
    at, g, bt = winograd_matrices()
    points = [Fraction(p) for p in POINTS]
    for j, a in enumerate(points):
        assert at[:, j].tolist() == [float(a ** i) for i in range(4)]
        scale = 1
        for b in points[:j] + points[j + 1:]:
            scale *= a - b
        assert g[j].tolist() == pytest.approx([float(a ** k / scale) for k in range(3)], rel=1e-15)
    assert at[:, 5].tolist() == [0, 0, 0, 1] and g[5].tolist() == [0, 0, 1]


SHAPES = [  # (batch, c_in, c_out, height, width, padding)
    (2, 5, 7, 9, 13, 1), (1, 3, 4, 3, 3, 0), (2, 6, 3, 10, 8, 0), (1, 2, 2, 1, 5, 1), (1, 4, 4, 18, 18, 0),
    (3, 2, 5, 6, 7, 1)]


@pytest.mark.parametrize('shape', SHAPES)
@pytest.mark.parametrize('with_bias', [True, False])
def test_equals_direct_convolution_in_float64(shape, with_bias):
    n, c_in, c_out, h, w, pad = shape
    gen = torch.Generator().manual_seed(sum(shape))
    x = torch.randn(n, c_in, h, w, dtype=torch.float64, generator=gen, requires_grad=True)
    weight = torch.randn(c_out, c_in, 3, 3, dtype=torch.float64, generator=gen, requires_grad=True)
    bias = torch.randn(c_out, dtype=torch.float64, generator=gen, requires_grad=True) if with_bias else None
    inputs = (x, weight) + ((bias,) if with_bias else ())
    out, ref = winograd_conv3x3(x, weight, bias, pad), F.conv2d(x, weight, bias, padding=pad)
    assert out.shape == ref.shape and out.is_contiguous()
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-11)
    grad = torch.randn(ref.shape, dtype=torch.float64, generator=gen)
    for a, b in zip(torch.autograd.grad(out, inputs, grad), torch.autograd.grad(ref, inputs, grad)):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-11)


def test_gradcheck():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(1, 2, 5, 6, dtype=torch.float64, generator=gen, requires_grad=True)
    weight = torch.randn(3, 2, 3, 3, dtype=torch.float64, generator=gen, requires_grad=True)
    bias = torch.randn(3, dtype=torch.float64, generator=gen, requires_grad=True)
    assert torch.autograd.gradcheck(lambda *a: winograd_conv3x3(*a, padding=1), (x, weight, bias))


def test_double_backward_as_an_r1_penalty_takes_it():
    """create_graph=True (StarGAN v2's R1 penalty on D) differentiates the backward itself: same second
    derivatives as the direct convolution, and gradgradcheck passes."""
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(2, 3, 7, 9, dtype=torch.float64, generator=gen, requires_grad=True)
    weight = torch.randn(4, 3, 3, 3, dtype=torch.float64, generator=gen, requires_grad=True)
    bias = torch.randn(4, dtype=torch.float64, generator=gen, requires_grad=True)
    assert torch.autograd.gradgradcheck(lambda *a: winograd_conv3x3(*a, padding=1), (x, weight, bias))

    def r1_grad(conv):
        (g_x,) = torch.autograd.grad(conv(x, weight, bias, 1).square().sum(), x, create_graph=True)
        return torch.autograd.grad(g_x.square().sum(), (x, weight, bias))

    direct = r1_grad(lambda *a: F.conv2d(*a[:3], padding=a[3]))
    for a, b in zip(r1_grad(winograd_conv3x3), direct):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-9)


def test_only_the_needed_gradients_are_computed():
    x = torch.randn(1, 2, 6, 6, dtype=torch.float64)
    weight = torch.randn(3, 2, 3, 3, dtype=torch.float64, requires_grad=True)
    (grad_w,) = torch.autograd.grad(winograd_conv3x3(x, weight, None, 1).sum(), weight)
    torch.testing.assert_close(grad_w, torch.autograd.grad(F.conv2d(x, weight, padding=1).sum(), weight)[0])


def test_float32_error_is_that_of_a_fast_convolution():
    """A ResNet-block-sized layer in float32: within 2e-5 of float64 relative to the output's scale (the direct
    kernel: ~3e-7; TF32, PyTorch's default for convolutions on Ampere GPUs: ~1e-3)."""
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(2, 256, 18, 18, generator=gen)
    weight = torch.randn(256, 256, 3, 3, generator=gen) / 48  # xavier-like scale
    bias = torch.randn(256, generator=gen)
    ref = F.conv2d(x.double(), weight.double(), bias.double())
    scale = float(ref.abs().max())
    assert float((winograd_conv3x3(x, weight, bias) - ref).abs().max()) <= 2e-5 * scale
    assert float((F.conv2d(x, weight, bias) - ref).abs().max()) <= 2e-6 * scale


def test_keeps_no_more_than_the_direct_convolution():
    x = torch.randn(1, 8, 12, 12, requires_grad=True)
    weight = torch.randn(8, 8, 3, 3, requires_grad=True)
    _, ours = saved_bytes(lambda t: winograd_conv3x3(t, weight, None, 1), x)
    _, direct = saved_bytes(lambda t: F.conv2d(t, weight, padding=1), x)
    assert ours <= direct


@pytest.mark.parametrize('x_shape, w_shape, pad, message', [
    ((1, 2, 5, 5), (3, 2, 5, 5), 0, r'\(C_out, 2, 3, 3\) weight'),
    ((1, 2, 5, 5), (3, 4, 3, 3), 0, r'\(C_out, 2, 3, 3\) weight'),
    ((2, 5, 5), (3, 2, 3, 3), 0, 'NCHW input'),
    ((1, 2, 2, 5), (3, 2, 3, 3), 0, 'smaller than the 3x3 filter')])
def test_bad_shapes_are_refused(x_shape, w_shape, pad, message):
    with pytest.raises(ValueError, match=message):
        winograd_conv3x3(torch.zeros(x_shape), torch.zeros(w_shape), None, pad)


@pytest.mark.parametrize('shape, padding, expected', [
    ((2, 256, 66, 66), 0, True), ((1, 256, 64, 64), 1, True), ((2, 256, 34, 34), 0, True),
    ((1, 256, 34, 34), 0, False), ((2, 256, 18, 18), 0, False), ((8, 256, 18, 18), 0, True),
    ((1, 256, 47, 47), 1, True), ((1, 256, 44, 44), 1, False)])
def test_winograd_pays_off_from_128_tiles(shape, padding, expected):
    assert pays_off(shape, padding) is expected


@pytest.fixture
def calls(monkeypatch):
    """Count the layer's Winograd calls; maps of any size qualify (the tests' maps are small)."""
    monkeypatch.setattr(winograd, 'MIN_TILES', 0)
    seen = []

    def counting(*args, **kwargs):
        seen.append(args[0].shape)
        return winograd_conv3x3(*args, **kwargs)

    monkeypatch.setattr(winograd, 'winograd_conv3x3', counting)
    return seen


def layer(c_in=256, c_out=256, **kwargs):
    """An nn.Conv2d as accelerate() leaves it: WinogradConv2d where eligible, else unchanged."""
    torch.manual_seed(0)
    conv_algo = kwargs.pop('conv_algo', 'auto')
    conv = nn.Conv2d(c_in, c_out, kernel_size=kwargs.pop('kernel_size', 3), **kwargs)
    fast.accelerate(conv, conv_algo=conv_algo)
    return conv


def test_layer_uses_winograd_for_wide_3x3_training(calls):
    conv = layer(padding=1)
    x = torch.randn(1, 256, 8, 8)
    out = conv(x)
    assert len(calls) == 1
    torch.testing.assert_close(out, nn.Conv2d.forward(conv, x), rtol=0, atol=1e-4)


@pytest.mark.parametrize('case', ['no_grad', 'float64', 'bf16_autocast', 'narrow', 'stride2', 'kernel5', 'switched_off',
                                  'reflect_mode', 'dilated', 'grouped', 'small_map'])
def test_layer_runs_the_direct_kernel_otherwise(case, calls, monkeypatch):
    kwargs = {'narrow': {'c_in': 128}, 'stride2': {'stride': 2}, 'kernel5': {'kernel_size': 5},
              'reflect_mode': {'padding': 1, 'padding_mode': 'reflect'}, 'dilated': {'dilation': 2},
              'grouped': {'groups': 2}}.get(case, {})
    conv = layer(**kwargs, **({'conv_algo': 'direct'} if case == 'switched_off' else {}))
    x = torch.randn(1, conv.in_channels, 12, 12)
    if case == 'small_map':  # 9 output tiles
        monkeypatch.setattr(winograd, 'MIN_TILES', 10)
    if case == 'float64':
        conv, x = conv.double(), x.double()
    if case == 'no_grad':
        with torch.no_grad():
            out = conv(x)
        assert torch.equal(out, nn.Conv2d.forward(conv, x))  # test.py: bit-exact with the official images
    elif case == 'bf16_autocast':
        with torch.autocast('cpu', dtype=torch.bfloat16):
            assert conv(x).dtype == torch.bfloat16
    else:
        conv(x)
    assert calls == []


def test_conv_algo_reaches_every_layer(tmp_path):
    auto = build(tmp_path / 'a', 'src_hdce', '--ngf', '64')  # 256-channel ResNet blocks
    direct = build(tmp_path / 'b', 'src_hdce', '--ngf', '64', '--conv_algo', 'direct')
    winograd_convs = lambda m: [c for c in m.netG.modules() if isinstance(c, fast.WinogradConv2d)]
    assert len(winograd_convs(auto)) == 18 and auto.runtime.swapped['Conv2d -> WinogradConv2d'] == 18  # 9 blocks
    assert winograd_convs(direct) == []
    with pytest.raises(ValueError, match='--conv_algo'):
        fast.accelerate(auto.netG, conv_algo='fast')


def test_conv_algo_flag_is_validated(tmp_path, capsys):
    with pytest.raises(SystemExit):
        train_opt('src_hdce', tmp_path, '--conv_algo', 'winograd')
    assert '--conv_algo' in capsys.readouterr().err


def test_training_step_with_winograd_matches_direct(tmp_path, monkeypatch, calls):
    """A step of the horse2zebra recipe from the same weights: the direct kernels' losses and gradients up to
    float32 rounding (tiny networks, so every ResNet-block layer is made eligible). Later steps drift apart as
    any two float32 kernels do: Adam's first updates are about lr * sign(gradient)."""
    monkeypatch.setattr(fast, 'WINOGRAD_MIN_CHANNELS', 1)
    winograd_model = build(tmp_path / 'a', 'src_hdce', *H2Z)
    direct = build(tmp_path / 'b', 'src_hdce', *H2Z, '--conv_algo', 'direct')
    batch = fake_batch(1, winograd_model.opt.crop_size, seed=4)
    result = train_step(winograd_model, batch)
    used = len(calls)
    expected = train_step(direct, batch)
    # every 3x3 stride-1 layer is eligible here: the main pass's 9 blocks, 2 downsampling and 2 upsampling
    # convolutions; the output images' encoder up to layer 16: 2 downsampling convolutions and 5 blocks
    assert len(calls) == used == (2 * 9 + 2 + 2) + (2 + 2 * 5)
    assert_same_step(result, expected, rtol=1e-4, loss_rtol=1e-5)


def test_bench_conv_reports_times_and_errors(tmp_path, capsys):
    import json
    bench = load_script('studies/bench_conv.py')
    out = tmp_path / 'conv.json'
    assert bench.main(['--shape', '1,8,8,10,0', '--shape', '2,4,6,9,1', '--repeats', '1', '--out', str(out)]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result == json.loads(out.read_text()) and len(result['layers']) == 2
    for row in result['layers']:
        for name in ('direct', 'winograd'):
            assert row[name]['forward_ms'] > 0 and row[name]['backward_ms'] > 0
            assert all(0 <= e < 1e-4 for e in row[name]['relative_error'].values())
    assert result['layers'][1]['shape'] == {'batch': 2, 'c_in': 4, 'c_out': 6, 'size': 9, 'padding': 1}


@pytest.mark.parametrize('shape', ['1,2,3', '1,2,3,4,2', '1,2,3,x,0', '1,2,3,1,0'])
def test_bench_conv_refuses_bad_shapes(shape, capsys):
    with pytest.raises(SystemExit):
        load_script('studies/bench_conv.py').main(['--shape', shape])
    assert '--shape' in capsys.readouterr().err


def test_results_never_share_the_scratch_buffers():
    """Intermediates live in reused buffers; outputs and gradients must be tensors of their own."""
    from cpu.winograd import SCRATCH
    gen = torch.Generator().manual_seed(2)
    weight = torch.randn(3, 2, 3, 3, generator=gen, requires_grad=True)
    results = []
    for _ in range(2):
        x = torch.randn(1, 2, 7, 7, generator=gen, requires_grad=True)
        out = winograd_conv3x3(x, weight, None, 1)
        grads = torch.autograd.grad(out, (x, weight), torch.randn(out.shape, generator=gen))
        results.append([t.detach() for t in (out,) + grads])
    kept = [t.clone() for t in results[0]]
    winograd_conv3x3(torch.randn(1, 2, 7, 7), weight, None, 1).sum().backward()
    scratch = {b.untyped_storage().data_ptr() for b in SCRATCH.buffers.values()}
    for tensors in results:
        assert not {t.untyped_storage().data_ptr() for t in tensors} & scratch
    assert all(torch.equal(a, b) for a, b in zip(results[0], kept))
