"""StarGAN v2 / Hneg_SRC multi-modal networks: shapes, upstream parameter counts and key names, the
encoder-feature contract, EMA, errors, bf16 autocast and R1's double backward."""
import pytest
import torch
from torch import nn

from models.networks import stargan
from models.networks.averaging import moving_average, warmed_up_decay
from models.networks.stargan import (MULTIMODAL_GENERATORS, Discriminator, MappingNetwork, StyleEncoder,
                                     build_generator, he_init)

GENERATOR_NAMES = ['stargan_v2', 'hneg_src']
SMALL = dict(img_size=32, base_dim=8, max_conv_dim=32)  # a CPU-sized configuration
STYLE_DIM = 64


def small_generator(name):
    torch.manual_seed(0)
    return build_generator(name, style_dim=STYLE_DIM, **SMALL)


@pytest.fixture
def batch():
    torch.manual_seed(1)
    return torch.randn(2, 3, 32, 32), torch.randn(2, STYLE_DIM), torch.tensor([1, 0])


def count(net):
    return sum(p.numel() for p in net.parameters())


def test_registry_lists_both_generators_and_names_valid_ones():
    assert sorted(MULTIMODAL_GENERATORS) == sorted(GENERATOR_NAMES)
    with pytest.raises(ValueError, match='hneg_src, stargan_v2'):
        build_generator('stargan', img_size=32)


@pytest.mark.parametrize('name', GENERATOR_NAMES)
def test_generator_output_and_feature_shapes(name, batch):
    x, s, _ = batch
    net = small_generator(name)
    assert net(x, s).shape == x.shape
    layers = list(range(len(net.encoder)))
    feats = net.encode(x, layers)
    shapes = [(2, c, size, size) for c, size in zip(net.feature_channels(layers), net.feature_sizes)]
    assert [tuple(f.shape) for f in feats] == shapes


def test_mapping_encoder_discriminator_shapes(batch):
    x, _, y = batch
    kwargs = dict(img_size=32, max_conv_dim=32, base_dim=8)
    assert MappingNetwork(16, STYLE_DIM, 3, hidden_dim=32)(torch.randn(2, 16), y).shape == (2, STYLE_DIM)
    assert StyleEncoder(style_dim=STYLE_DIM, num_domains=3, **kwargs)(x, y).shape == (2, STYLE_DIM)
    assert Discriminator(num_domains=3, **kwargs)(x, y).shape == (2,)


# Parameter counts of the upstream classes at StarGAN v2's published configuration (img_size 256,
# style_dim 64, latent_dim 16, 512 hidden units, max_conv_dim 512, w_hpf 0), computed once by instantiating
# clovaai/stargan-v2 core/model.py (Generator, MappingNetwork, StyleEncoder, Discriminator) and
# jcy132/Hneg_SRC Multimodal/core/model_src.py (Generator); num_domains 2 = CelebA-HQ, 3 = AFHQ.
UPSTREAM_GENERATOR_COUNTS = {'stargan_v2': 33_892_995, 'hneg_src': 10_739_459}
UPSTREAM_COUNTS = {  # num_domains -> (MappingNetwork, StyleEncoder, Discriminator)
    2: (2_438_272, 20_916_928, 20_852_290),
    3: (3_259_072, 20_949_760, 20_852_803),
}


@pytest.mark.parametrize('name', GENERATOR_NAMES)
def test_generator_parameter_count_equals_upstream(name):
    with torch.device('meta'):
        net = build_generator(name, img_size=256, style_dim=64, max_conv_dim=512)
    assert count(net) == UPSTREAM_GENERATOR_COUNTS[name]


@pytest.mark.parametrize('num_domains', [2, 3])
def test_mapping_encoder_discriminator_parameter_counts_equal_upstream(num_domains):
    with torch.device('meta'):
        nets = (MappingNetwork(16, 64, num_domains, 512), StyleEncoder(256, 64, num_domains, 512),
                Discriminator(256, num_domains, 512))
    assert tuple(count(n) for n in nets) == UPSTREAM_COUNTS[num_domains]


def test_hneg_state_dict_keys_follow_upstream_layout():
    with torch.device('meta'):
        state = build_generator('hneg_src', img_size=256).state_dict()
    shapes = {k: tuple(v.shape) for k, v in state.items()}
    # a sample of Hneg_SRC's keys (nn.DataParallel's "module." prefix removed)
    assert shapes['from_rgb.weight'] == (64, 3, 3, 3)
    assert shapes['encode.0.conv1.weight'] == (128, 64, 4, 4)
    assert shapes['encode.1.norm1.weight'] == (128,)
    assert shapes['encode.5.norm2.bias'] == (256,)
    assert shapes['decode.3.norm2.fc.weight'] == (512, 64)
    assert shapes['decode.5.conv1.weight'] == (64, 128, 3, 3)
    assert shapes['to_rgb.2.weight'] == (3, 64, 1, 1)
    assert not any('conv1x1' in k for k in shapes)


@pytest.mark.parametrize('name, expected', [('hneg_src', [1, 2, 3, 4, 5]), ('stargan_v2', [1])])
def test_default_feature_layers_at_256px(name, expected):
    with torch.device('meta'):
        net = build_generator(name, img_size=256)
    assert net.default_feature_layers() == expected
    assert net.feature_channels(expected) == [256] * len(expected)  # both reach 256 channels at 64 px


def test_default_feature_layers_raise_when_no_block_is_quarter_size():
    with pytest.raises(ValueError, match='--mm_nce_layers'):
        small_generator('stargan_v2').default_feature_layers()  # at 32 px its one down-sampling gives 16 px


@pytest.mark.parametrize('name', GENERATOR_NAMES)
def test_encode_equals_forward_activations(name, batch):
    x, s, _ = batch
    net = small_generator(name)
    seen = []
    hooks = [block.register_forward_hook(lambda m, i, out: seen.append(out)) for block in net.encoder]
    net(x, s)
    for hook in hooks:
        hook.remove()
    layers = [len(net.encoder) - 1, 0, 1]
    for feat, index in zip(net.encode(x, layers), layers):
        torch.testing.assert_close(feat, seen[index], rtol=0, atol=0)


@pytest.mark.parametrize('name', GENERATOR_NAMES)
def test_bad_layer_index_names_the_flag(name, batch):
    net = small_generator(name)
    with pytest.raises(ValueError, match='--mm_nce_layers'):
        net.encode(batch[0], [0, len(net.encoder)])
    with pytest.raises(ValueError, match='--mm_nce_layers'):
        net.feature_channels([-1])


@pytest.mark.parametrize('name', GENERATOR_NAMES)
def test_w_hpf_is_refused(name):
    with pytest.raises(ValueError, match='--w_hpf.*FAN'):
        build_generator(name, img_size=32, w_hpf=1)


@pytest.mark.parametrize('img_size', [8, 48, 32.0])
def test_img_size_must_be_power_of_two_from_16(img_size):
    with pytest.raises(ValueError, match='img_size'):
        StyleEncoder(img_size, base_dim=8)


@pytest.mark.parametrize('y', [[0, 3], [-1, 0]])
def test_domain_out_of_range_is_an_error(y, batch):
    x = batch[0]
    y = torch.tensor(y)
    nets = [(MappingNetwork(16, STYLE_DIM, 3, hidden_dim=8), torch.randn(2, 16)),
            (StyleEncoder(32, STYLE_DIM, 3, 32, base_dim=8), x), (Discriminator(32, 3, 32, base_dim=8), x)]
    for net, inputs in nets:
        with pytest.raises(ValueError, match=r'\[0, 3\)'):
            net(inputs, y)


def test_wrong_image_size_for_discriminator_is_an_error():
    with pytest.raises(ValueError, match='img_size 32'):
        Discriminator(32, 2, 32, base_dim=8)(torch.randn(1, 3, 64, 64), torch.tensor([0]))


def test_moving_average_lerps_parameters_and_copies_buffers():
    torch.manual_seed(0)
    net, ema = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4)), nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4))
    net[1].running_mean.fill_(3.0)
    before = {k: v.clone() for k, v in ema.state_dict().items()}
    moving_average(net, ema, beta=0.9)
    for name, param in net.named_parameters():
        torch.testing.assert_close(dict(ema.named_parameters())[name], 0.9 * before[name] + 0.1 * param)
    assert torch.equal(ema[1].running_mean, net[1].running_mean)
    with pytest.raises(ValueError, match='different parameters'):
        moving_average(net, nn.Sequential(nn.Linear(4, 4)))


def test_warmed_up_decay_rises_to_beta():
    assert warmed_up_decay(0.999, 1) == pytest.approx(2 / 11)  # the first update keeps 18 % of the initial weights
    assert warmed_up_decay(0.999, 990) == pytest.approx(0.991)
    assert warmed_up_decay(0.99, 10 ** 6) == 0.99
    steps = [warmed_up_decay(0.999, t) for t in range(1, 20000, 97)]
    assert steps == sorted(steps) and max(steps) == 0.999


def test_he_init_zero_bias_and_kaiming_scale():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(400, 300), nn.Conv2d(16, 8, 3))
    net.apply(he_init)
    assert all(torch.count_nonzero(m.bias) == 0 for m in net)
    assert net[0].weight.std().item() == pytest.approx((2 / 400) ** 0.5, rel=0.05)


@pytest.mark.parametrize('name', GENERATOR_NAMES)
def test_bf16_autocast_forward_and_backward(name, batch):
    x, s, y = batch
    net, disc = small_generator(name), Discriminator(32, 2, 32, base_dim=8)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        fake = net(x, s)
        loss = disc(fake, y).float().mean() + sum(f.float().mean() for f in net.encode(x, [1]))
    loss.backward()
    assert fake.dtype == torch.bfloat16
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters())


def test_r1_double_backward_through_discriminator(batch):
    x, _, y = batch
    disc = Discriminator(32, 2, 32, base_dim=8)
    x = x.requires_grad_()
    grad, = torch.autograd.grad(disc(x, y).sum(), x, create_graph=True)
    grad.pow(2).flatten(1).sum(1).mean().backward()
    # biases only shift LeakyReLU's piecewise-constant slopes, so the penalty reaches the weights
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in disc.parameters() if p.dim() > 1)


def test_module_constants_are_consistent():
    assert stargan.base_channels(256) == 64 and stargan.base_channels(32, 8) == 8
    assert stargan.channel_ladder(64, 4, 512) == [64, 128, 256, 512, 512]
