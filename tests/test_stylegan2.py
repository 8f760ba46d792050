"""StyleGAN2 networks of SinCUT: shapes, the feature contract, gradients and CUT's checkpoint layout."""
import pytest
import torch

from models.networks import stylegan2
from models.networks.registry import DISCRIMINATORS, GENERATORS, build

# SinCUT's defaults (CUT models/sincut_model.py): ngf=10, ndf=8, crop_size=64, load_size=1024,
# stylegan2_G_num_downsampling=1, nce_layers='0,2,4'.
SINCUT = dict(crop_size=64, load_size=1024, stylegan2_G_num_downsampling=1)
NCE_LAYERS = [0, 2, 4]


def build_generator(name):
    """Through the registry as define_G calls it: flags the network does not use (norm, antialiasing) are
    not passed to its builder."""
    return build(GENERATORS, 'generator', name, input_nc=3, output_nc=3, ngf=10, norm='instance',
                 use_dropout=False, no_antialias=False, no_antialias_up=False, **SINCUT)


def build_discriminator():
    return build(DISCRIMINATORS, 'discriminator', 'stylegan2', input_nc=3, ndf=8, n_layers_D=3, norm='instance',
                 no_antialias=False, **SINCUT)


@pytest.fixture
def images():
    torch.manual_seed(0)
    return torch.randn(2, 3, 64, 64)


@pytest.mark.parametrize('name', ['stylegan2', 'smallstylegan2'])
def test_generator_output_shape(name, images):
    net = build_generator(name)
    assert net.keeps_own_init
    assert net(images).shape == (2, 3, 64, 64)


def test_generator_features_single_pass_match_separate_calls(images):
    net = build_generator('stylegan2')
    feats = net(images, layers=NCE_LAYERS, encode_only=True)
    fake, feats_with_output = net(images, layers=NCE_LAYERS)
    # Layer 0 is the Identity at the head of CUT's encoder, so PatchNCE's first layer sees raw pixels.
    assert torch.equal(feats[0], images)
    assert [f.shape for f in feats] == [(2, 3, 64, 64), (2, 160, 32, 32), (2, 160, 32, 32)]
    for alone, together in zip(feats, feats_with_output):
        torch.testing.assert_close(alone, together)
    assert fake.shape == (2, 3, 64, 64)
    # Features come back in the order asked for.
    reordered = net(images, layers=[4, 0], encode_only=True)
    torch.testing.assert_close(reordered[0], feats[2])


def test_small_generator_is_deterministic(images):
    net = build_generator('smallstylegan2')
    with torch.no_grad():
        net.decoder.convs[1].noise.weight.fill_(1.0)  # would matter if noise were injected
        torch.testing.assert_close(net(images), net(images))


@pytest.mark.parametrize('name, num_layers', [('stylegan2', 6), ('smallstylegan2', 4)])
def test_out_of_range_feature_layer_names_valid_range(name, num_layers, images):
    net = build_generator(name)
    assert net.num_feature_layers == num_layers
    with pytest.raises(ValueError, match=f'0..{num_layers - 1}'):
        net(images, layers=[0, num_layers], encode_only=True)
    with pytest.raises(ValueError, match='0..'):
        net(images, layers=[-1])


def test_discriminator_output_and_size_check(images):
    net = build_discriminator()
    assert net.keeps_own_init
    assert net(images).shape == (2, 1)
    with pytest.raises(ValueError, match='64x64'):
        net(images[:, :, :32, :32])


def test_generator_and_discriminator_backward(images):
    generator, discriminator = build_generator('stylegan2'), build_discriminator()
    discriminator(generator(images)).mean().backward()
    for net in (generator, discriminator):
        for name, param in net.named_parameters():
            assert param.grad is not None and torch.isfinite(param.grad).all(), name


def test_r1_penalty_double_backward(images):
    # SinCUT's R1: grad of D(real).sum() w.r.t. the real image, created with create_graph=True.
    discriminator = build_discriminator()
    real = images.requires_grad_()
    (grad_real,) = torch.autograd.grad(discriminator(real).sum(), real, create_graph=True)
    penalty = grad_real.pow(2).flatten(1).sum(1).mean() * 0.5
    penalty.backward()
    # Biases reach the input gradient only through piecewise-constant slopes, so only weights must move.
    for name, param in discriminator.named_parameters():
        if name.endswith('weight'):
            assert torch.isfinite(param.grad).all() and param.grad.abs().sum() > 0, name


# Keys and shapes derived from CUT models/stylegan_networks.py (commit a138080e): StyleGAN2Generator holds
# `encoder`/`decoder`, each a `convs` Sequential; encoder = [Identity, ConvLayer(3, ch[64], 1),
# ResBlock(downsample), ResBlock x n_blocks//2]; ConvLayer = [Blur?, EqualConv2d(no bias), FusedLeakyReLU];
# ResBlock = conv1, conv2, skip (1x1 ConvLayer without activation, or Identity); decoder ends with
# StyledConv(conv=ModulatedConv2d(weight, blur.kernel), noise.weight, activate.bias) and ConvLayer(ch, 3, 1).
# Channels: G round(16384/res * ngf/32) (<= 512 up to 32 px); D int(16384/res * ndf/64) (<= 384 up to 32 px).
EXPECTED_G_KEYS = {
    'encoder.convs.1.0.weight': (80, 3, 1, 1),
    'encoder.convs.1.1.bias': (1, 80, 1, 1),
    'encoder.convs.2.conv1.0.weight': (80, 80, 3, 3),
    'encoder.convs.2.conv2.0.kernel': (4, 4),
    'encoder.convs.2.conv2.1.weight': (160, 80, 3, 3),
    'encoder.convs.2.conv2.2.bias': (1, 160, 1, 1),
    'encoder.convs.2.skip.0.kernel': (4, 4),
    'encoder.convs.2.skip.1.weight': (160, 80, 1, 1),
    'encoder.convs.5.conv2.0.weight': (160, 160, 3, 3),
    'decoder.convs.0.conv1.1.bias': (1, 160, 1, 1),
    'decoder.convs.3.conv.weight': (1, 80, 160, 3, 3),
    'decoder.convs.3.conv.blur.kernel': (4, 4),
    'decoder.convs.3.noise.weight': (1,),
    'decoder.convs.3.activate.bias': (1, 80, 1, 1),
    'decoder.convs.4.0.weight': (3, 80, 1, 1),
    'decoder.convs.4.1.bias': (1, 3, 1, 1),
}
# D (StyleGAN2Discriminator, non-patch): convs = [ConvLayer(3, ch[64], 1), ResBlock 64->32->16->8->4],
# final_conv = ConvLayer(ch[4], ch[4], 3), final_linear = [EqualLinear(ch[4]*16, ch[4], lrelu), EqualLinear(ch[4], 1)].
EXPECTED_D_KEYS = {
    'convs.0.0.weight': (32, 3, 1, 1),
    'convs.0.1.bias': (1, 32, 1, 1),
    'convs.1.conv1.0.weight': (32, 32, 3, 3),
    'convs.1.conv2.0.kernel': (4, 4),
    'convs.1.conv2.1.weight': (64, 32, 3, 3),
    'convs.1.skip.1.weight': (64, 32, 1, 1),
    'convs.4.conv2.1.weight': (384, 256, 3, 3),
    'final_conv.0.weight': (384, 384, 3, 3),
    'final_conv.1.bias': (1, 384, 1, 1),
    'final_linear.0.weight': (384, 384 * 16),
    'final_linear.0.bias': (384,),
    'final_linear.1.weight': (1, 384),
    'final_linear.1.bias': (1,),
}


def shapes(net):
    return {key: tuple(value.shape) for key, value in net.state_dict().items()}


def test_state_dict_follows_cut_naming():
    g_shapes, d_shapes = shapes(build_generator('stylegan2')), shapes(build_discriminator())
    assert {k: g_shapes.get(k) for k in EXPECTED_G_KEYS} == EXPECTED_G_KEYS
    assert {k: d_shapes.get(k) for k in EXPECTED_D_KEYS} == EXPECTED_D_KEYS
    assert len(g_shapes) == 39 and len(d_shapes) == 36
    small = shapes(build_generator('smallstylegan2'))
    assert 'decoder.convs.1.noise.weight' in small and 'encoder.convs.4.conv1.0.weight' not in small


def test_strict_load_round_trip(tmp_path, images):
    source, target = build_generator('smallstylegan2'), build_generator('smallstylegan2')
    torch.save(source.state_dict(), tmp_path / 'latest_net_G.pth')
    target.load_state_dict(torch.load(tmp_path / 'latest_net_G.pth', weights_only=True), strict=True)
    torch.testing.assert_close(target(images), source(images))


def test_channel_tables_and_resolution_match_cut():
    assert stylegan2.network_resolution(crop_size=64, load_size=1024) == 64
    assert stylegan2.network_resolution(crop_size=100) == 128
    assert [stylegan2.generator_channels(r, 64) for r in (4, 32, 64, 256)] == [512, 512, 512, 128]
    assert [stylegan2.discriminator_channels(r, 64) for r in (4, 32, 64, 256)] == [384, 384, 256, 64]
    with pytest.raises(ValueError, match='stylegan2_G_num_downsampling'):
        GENERATORS['stylegan2'](3, 3, 10, crop_size=16, stylegan2_G_num_downsampling=3)


def test_fir_filter_is_a_true_convolution():
    kernel = torch.arange(16.0).reshape(4, 4)
    impulse = torch.zeros(1, 2, 7, 7)
    impulse[:, :, 3, 3] = 1.0
    out = stylegan2.fir_filter2d(impulse, kernel, pad=(0, 0))  # (1, 2, 4, 4)
    # Convolving an impulse reproduces the kernel, which correlation would flip.
    torch.testing.assert_close(out[0, 1], kernel)
