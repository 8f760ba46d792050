"""Networks: CUT state-dict layout, official-checkpoint parity, the feature contract, every registered
network at tiny sizes, and the patch sampler."""
import re

import numpy as np
import pytest
import torch
import torch.nn as nn
import torchvision.transforms as T
from PIL import Image

from models.networks import (DISCRIMINATORS, GENERATORS, SAMPLERS, PatchSampleF, define_D, define_F,
                             define_G, get_norm_layer, init_weights)
from models.networks.generators import residual_tanh
from models.networks.layers import Downsample, Upsample
from util.util import tensor2im
from tests.conftest import FIXTURES

NCE_LAYERS = [0, 4, 8, 12, 16]


def parse_architecture(path):
    """{'netG': {key: shape}, 'netG_params': n, 'features': {layer: shape}, 'netG.model': {i: text}, ...}"""
    sections, name = {}, None
    for line in path.read_text().splitlines():
        if line.startswith('# '):
            header = line[2:]
            name = header.split()[0]
            if name == 'encoder':
                name = 'features'
            elif name.endswith('children'):
                name = name.split()[0]
            count = re.search(r'(\d+) parameters', header)
            if count:
                sections[name + '_params'] = int(count.group(1))
            sections[name] = {}
        elif line.strip():
            if name == 'features':
                layer, shape = line.split('\t')
                sections[name][int(layer.split()[1])] = eval(shape)
            elif name.endswith('.model'):
                index, text = line.split(': ', 1)
                sections[name][int(index)] = text
            else:
                key, shape, dtype = line.split('\t')
                sections[name][key] = (eval(shape), dtype)
    return sections


def describe(module):
    """The fixture's one-line description of a child module, from our module's attributes."""
    kind = type(module).__name__
    if isinstance(module, nn.Conv2d):
        return (f'{kind} {module.in_channels}->{module.out_channels} k{module.kernel_size[0]} '
                f's{module.stride[0]} p{module.padding[0]}')
    if isinstance(module, nn.ReflectionPad2d):
        return f'{kind} {module.padding[0]}'
    if isinstance(module, nn.LeakyReLU):
        return f'{kind} {module.negative_slope}'
    return kind


def check_children(model, expected):
    assert len(model) == len(expected)
    for index, text in expected.items():
        child = model[index]
        kind = text.split()[0]
        assert type(child).__name__ == kind, (index, text)
        if isinstance(child, (nn.Conv2d, nn.ReflectionPad2d, nn.LeakyReLU)):
            assert describe(child) == text, (index, text)
        elif isinstance(child, (Downsample, Upsample)):
            attrs = dict(re.findall(r'(\w+)=(\[[^\]]*\]|\w+)', text))
            assert child.filt_size == int(attrs['filt_size'])
            assert child.stride == int(attrs['stride'])
            assert child.channels == int(attrs['channels'])
            if isinstance(child, Downsample):
                assert child.pad_sizes == eval(attrs['pad_sizes'])
                assert attrs['pad_off'] == '0'
        elif kind == 'ResnetBlock':
            inner = re.search(r'\[(.*)\]', text).group(1).split(', ')
            assert [type(m).__name__ for m in child.conv_block] == inner


def check_state_dict(net, expected, n_params):
    state = net.state_dict()
    assert list(state) == list(expected)
    for key, (shape, dtype) in expected.items():
        assert tuple(state[key].shape) == shape, key
        assert str(state[key].dtype) == f'torch.{dtype}', key
    assert sum(p.numel() for p in net.parameters()) == n_params


def test_matches_official_architecture():
    arch = parse_architecture(FIXTURES / 'cut_architecture.txt')
    torch.manual_seed(0)
    net_g = define_G(3, 3, 64, 'resnet_9blocks')
    net_d = define_D(3, 64, 'basic')
    check_state_dict(net_g, arch['netG'], arch['netG_params'])
    check_state_dict(net_d, arch['netD'], arch['netD_params'])
    check_children(net_g.model, arch['netG.model'])
    check_children(net_d.model, arch['netD.model'])
    assert net_g.num_feature_layers == len(arch['netG.model'])

    with torch.no_grad():
        feats = net_g(torch.randn(1, 3, 256, 256), NCE_LAYERS, encode_only=True)
    assert {i: tuple(f.shape) for i, f in zip(NCE_LAYERS, feats)} == arch['features']

    net_f = define_F('mlp_sample').build([f.shape[1] for f in feats])
    check_state_dict(net_f, arch['netF'], arch['netF_params'])


def test_official_checkpoint_parity():
    """The official ngf=16 checkpoint loads strictly and reproduces CUT's test.py PNGs."""
    root = FIXTURES / 'official_cut_checkpoint'
    net_g = define_G(3, 3, 16, 'resnet_9blocks')
    ckpt = root / 'ckpt' / 'official16' / 'latest_net_G.pth'
    state = torch.load(ckpt, map_location='cpu', weights_only=True)
    net_g.load_state_dict(state, strict=True)
    net_g.eval()
    preprocess = T.Compose([T.Resize([256, 256], T.InterpolationMode.BICUBIC), T.ToTensor(),
                            T.Normalize((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))])
    images = sorted((root / 'data' / 'testA').glob('*.png'))
    assert len(images) == 3
    diffs = []
    for path in images:
        x = preprocess(Image.open(path).convert('RGB'))[None]  # (1, 3, 256, 256)
        with torch.no_grad():
            fake = tensor2im(net_g(x))
        expected = np.asarray(Image.open(root / 'expected' / path.name).convert('RGB'))
        diffs.append(np.abs(fake.astype(np.int16) - expected.astype(np.int16)).ravel())
    diff = np.concatenate(diffs)
    equal = float((diff == 0).mean())
    assert diff.max() <= 1 and equal >= 0.999, f'max abs diff {diff.max()}, exactly equal {equal:.6f}'


def test_single_pass_features_match_separate_passes():
    torch.manual_seed(0)
    net = define_G(3, 3, 4, 'resnet_6blocks')
    x = torch.randn(2, 3, 32, 32)
    layers = [0, 2, 4, 9, 14]  # 2 and 9 are followed by an in-place ReLU
    with torch.no_grad():
        out = net(x)
        out_both, feats_both = net(x, layers)
        feats = net(x, layers, encode_only=True)
        assert torch.equal(net(x, []), out)
        assert torch.equal(net.model[:3](x), feats[1])  # tapped before the ReLU
    assert torch.equal(out_both, out)
    assert len(feats) == len(feats_both) == len(layers)
    for a, b in zip(feats, feats_both):
        assert torch.equal(a, b)


def test_feature_layers_out_of_range():
    net = define_G(3, 3, 4, 'resnet_4blocks')
    with pytest.raises(ValueError, match=f'0..{net.num_feature_layers - 1}'):
        net(torch.randn(1, 3, 16, 16), [0, net.num_feature_layers], encode_only=True)
    with pytest.raises(ValueError, match='outside the generator'):
        net(torch.randn(1, 3, 16, 16), [-1])


def test_unet_refuses_feature_layers():
    net = define_G(3, 3, 2, 'unet_128')
    with pytest.raises(NotImplementedError, match='resnet'):
        net(torch.randn(1, 3, 128, 128), [0], encode_only=True)


OUR_GENERATORS = sorted(n for n, b in GENERATORS.items() if b.__module__.endswith('.generators'))
OUR_DISCRIMINATORS = sorted(n for n, b in DISCRIMINATORS.items() if b.__module__.endswith('.discriminators'))
GENERATOR_SIDES = {'unet_128': 128, 'unet_256': 256}


def test_registered_names():
    resnets = {'resnet_9blocks', 'resnet_6blocks', 'resnet_4blocks'}
    assert resnets | {'unet_128', 'unet_256'} <= set(OUR_GENERATORS)
    assert {'basic', 'n_layers', 'pixel'} <= set(OUR_DISCRIMINATORS)
    assert SAMPLERS == ('sample', 'mlp_sample')


@pytest.mark.parametrize('norm', ['instance', 'batch', 'none'])
@pytest.mark.parametrize('name', OUR_GENERATORS)
def test_generator_builds_and_runs(name, norm):
    side = GENERATOR_SIDES.get(name, 24)
    net = define_G(3, 2, 2, name, norm=norm, use_dropout=True, init_type='normal')
    out = net(torch.randn(2, 3, side, side))
    assert out.shape == (2, 2, side, side)
    assert out.abs().max() <= 1


@pytest.mark.parametrize('no_antialias,no_antialias_up', [(True, False), (False, True), (True, True)])
def test_resnet_sampling_variants(no_antialias, no_antialias_up):
    net = define_G(3, 3, 4, 'resnet_4blocks', no_antialias=no_antialias, no_antialias_up=no_antialias_up)
    kinds = {type(m) for m in net.modules()}
    assert (Downsample in kinds) != no_antialias
    assert (Upsample in kinds) != no_antialias_up
    assert (nn.ConvTranspose2d in kinds) == no_antialias_up
    assert net(torch.randn(1, 3, 20, 20)).shape == (1, 3, 20, 20)


@pytest.mark.parametrize('no_antialias', [False, True])
@pytest.mark.parametrize('name,n_layers_D,side,out_side', [
    ('basic', 3, 64, 6), ('n_layers', 2, 64, 14), ('n_layers', 4, 64, 2), ('pixel', 3, 16, 16)])
def test_discriminator_builds_and_runs(name, n_layers_D, side, out_side, no_antialias):
    net = define_D(3, 4, name, n_layers_D=n_layers_D, no_antialias=no_antialias)
    assert name in OUR_DISCRIMINATORS
    assert net(torch.randn(2, 3, side, side)).shape == (2, 1, out_side, out_side)
    if name == 'pixel':
        assert not any(isinstance(m, Downsample) for m in net.modules())
    else:
        assert any(isinstance(m, Downsample) for m in net.modules()) != no_antialias


def test_antialias_filters():
    down, up = Downsample(2), Upsample(2)
    assert torch.allclose(down.filt[0, 0], torch.tensor([[1., 2., 1.], [2., 4., 2.], [1., 2., 1.]]) / 16)
    assert torch.allclose(up.filt.sum((2, 3)), torch.full((2, 1), 4.0))
    flat = torch.ones(1, 2, 7, 9)
    assert torch.allclose(down(flat), torch.ones(1, 2, 4, 5))
    assert torch.allclose(up(flat), torch.ones(1, 2, 14, 18))


def test_unknown_names_raise_with_the_list():
    with pytest.raises(ValueError, match='resnet_9blocks'):
        define_G(3, 3, 4, 'resnet_99blocks')
    with pytest.raises(ValueError, match='basic'):
        define_D(3, 4, 'nope')
    with pytest.raises(ValueError, match='mlp_sample'):
        define_F('reshape')
    with pytest.raises(ValueError, match='instance'):
        get_norm_layer('group')
    with pytest.raises(ValueError, match='instance'):
        define_G(3, 3, 4, 'resnet_4blocks', norm='layer')
    with pytest.raises(ValueError, match='orthogonal'):
        init_weights(nn.Linear(2, 2), 'uniform')


@pytest.mark.parametrize('init_type', ['normal', 'xavier', 'kaiming', 'orthogonal'])
def test_init_weights(init_type):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(64, 64, 3), nn.BatchNorm2d(64), nn.ConvTranspose2d(64, 8, 3),
                        nn.Linear(64, 64))
    init_weights(net, init_type, init_gain=0.02)
    for m in (net[0], net[2], net[3]):
        assert torch.count_nonzero(m.bias) == 0
    assert torch.count_nonzero(net[1].bias) == 0
    assert abs(net[1].weight.mean().item() - 1) < 0.01
    if init_type == 'normal':
        assert abs(net[0].weight.std().item() - 0.02) < 0.001
    if init_type == 'orthogonal':
        w = net[3].weight
        assert torch.allclose(w @ w.T, torch.eye(64) * 0.02 ** 2, atol=1e-6)


def test_patch_sampler_requires_build():
    net = define_F('mlp_sample', netF_nc=8)
    assert isinstance(net, PatchSampleF) and net.use_mlp and not net.built
    with pytest.raises(RuntimeError, match='build'):
        net([torch.randn(1, 3, 4, 4)])
    net.build([3, 5])
    assert net.built and [k for k in net.state_dict()][:2] == ['mlp_0.0.weight', 'mlp_0.0.bias']
    with pytest.raises(RuntimeError, match='already built'):
        net.build([3, 5])
    with pytest.raises(ValueError, match=r'\[3, 5\]'):
        net([torch.randn(1, 3, 4, 4), torch.randn(1, 4, 4, 4)])
    samples, _ = net([torch.randn(2, 3, 4, 4), torch.randn(2, 5, 2, 2)], num_patches=3)
    assert [tuple(s.shape) for s in samples] == [(6, 8), (6, 8)]
    assert define_F('sample').built


def test_patch_sampler_shares_ids_across_the_batch():
    net = define_F('sample')
    feats = [torch.randn(3, 4, 5, 6), torch.randn(3, 2, 3, 3)]
    gen = torch.Generator().manual_seed(0)
    samples, ids = net(feats, num_patches=7, generator=gen)
    for feat, sample, pos in zip(feats, samples, ids):
        assert pos.dtype == torch.long and len(pos) == 7 and len(set(pos.tolist())) == 7
        flat = feat.flatten(2).permute(0, 2, 1)  # (B, H*W, C)
        expected = flat[:, pos] / flat[:, pos].norm(dim=-1, keepdim=True)
        assert torch.allclose(sample.view(3, 7, -1), expected, atol=1e-6)
        assert torch.allclose(sample.norm(dim=1), torch.ones(len(sample)), atol=1e-5)
    again, ids_again = net(feats, num_patches=7, patch_ids=ids)
    assert all(torch.equal(a, b) for a, b in zip(samples, again))
    assert all(torch.equal(a, b) for a, b in zip(ids, ids_again))
    _, ids_seeded = net(feats, num_patches=7, generator=torch.Generator().manual_seed(0))
    assert all(torch.equal(a, b) for a, b in zip(ids, ids_seeded))


def test_patch_sampler_more_patches_than_positions_and_full_map():
    net = define_F('mlp_sample', netF_nc=8).build([4])
    feat = torch.randn(2, 4, 3, 5)
    samples, ids = net([feat], num_patches=100)
    assert samples[0].shape == (2 * 15, 8)
    assert sorted(ids[0].tolist()) == list(range(15))
    full, full_ids = net([feat], num_patches=0)
    assert full[0].shape == (2, 8, 3, 5)
    assert torch.equal(full_ids[0], torch.arange(15))
    # the MLP's outputs are small after N(0, 0.02) init, so the 1e-7 in the norm shows at ~1e-4
    assert torch.allclose(full[0].norm(dim=1), torch.ones(2, 3, 5), atol=1e-3)
    order = ids[0].argsort()
    assert torch.allclose(full[0].flatten(2).permute(0, 2, 1), samples[0].view(2, 15, 8)[:, order], atol=1e-6)


def test_residual_output_starts_as_the_identity_with_the_keys_and_features_of_tanh():
    residual = define_G(3, 3, 4, 'resnet_6blocks', no_antialias=True, no_antialias_up=True, G_output='residual')
    plain = define_G(3, 3, 4, 'resnet_6blocks', no_antialias=True, no_antialias_up=True)
    plain.load_state_dict(residual.state_dict())  # same modules, same keys: checkpoints move between the two
    x = torch.rand(2, 3, 32, 32) * 1.8 - 0.9
    last = len(residual.model) - 1
    inner = [0, 4, 8, last - 1]
    for a, b in zip(residual(x, layers=inner, encode_only=True), plain(x, layers=inner, encode_only=True)):
        assert torch.equal(a, b)
    v = residual(x, layers=[last - 1], encode_only=True)[0]  # the last convolution's output
    assert torch.allclose(residual(x), torch.tanh(v + torch.atanh(x)), atol=1e-6)
    assert torch.allclose(plain(x), torch.tanh(v), atol=1e-6)
    torch.nn.init.zeros_(residual.model[last - 1].weight)
    torch.nn.init.zeros_(residual.model[last - 1].bias)
    assert torch.allclose(residual(x), x, atol=1e-5)
    edge = torch.tensor([-1.0, 1.0]).view(1, 2, 1, 1).expand(1, 2, 4, 4)  # atanh(+-1) is infinite: clamped
    assert torch.isfinite(residual_tanh(torch.zeros_like(edge), edge)).all()


def test_residual_output_is_refused_by_name_where_a_generator_has_none():
    with pytest.raises(ValueError, match='--G_output residual needs a resnet_'):
        define_G(3, 3, 4, 'unet_128', G_output='residual')
    with pytest.raises(ValueError, match='output must be one of'):
        define_G(3, 3, 4, 'resnet_4blocks', G_output='sigmoid')
    with pytest.raises(ValueError, match='--input_nc 3 and --output_nc 1 must be equal'):
        define_G(3, 1, 4, 'resnet_4blocks', G_output='residual')
