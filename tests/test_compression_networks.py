"""GAN compression's mobile ResNet super-net / sub-net (models/networks/compression.py)."""
import json

import pytest
import torch

from models.networks import define_G, generator_from_options
from models.networks.compression import (CONFIG_SETS, DISTILL_LAYERS, ChannelConfigs, SubMobileResnetGenerator,
                                         SuperMobileResnetGenerator, decode_config, encode_config, export_subnet,
                                         feature_channels)

CONFIGS_16 = ['16_16_16_16_16_16_16_16', '4_8_12_16_4_6_8_12', '4_4_4_4_4_4_4_4', '12_4_6_8_16_4_12_6']


def _super(ngf=16, seed=0, **kwargs):
    torch.manual_seed(seed)
    # normal(0, 0.5): large weights, so a wrong slice would change the output visibly
    return define_G(3, 3, ngf, 'super_mobile_resnet_9blocks', init_type='normal', init_gain=0.5, **kwargs)


@pytest.mark.parametrize('config', CONFIGS_16)
@pytest.mark.parametrize('kwargs', [{}, {'G_output': 'residual'}, {'norm': 'none'}])
def test_exported_subnet_equals_supernet_bit_for_bit(config, kwargs):
    net = _super(**kwargs).eval()
    x = torch.rand(2, 3, 36, 28, generator=torch.Generator().manual_seed(1)) * 2 - 1
    sub = export_subnet(net, config).eval()
    assert isinstance(sub, SubMobileResnetGenerator) and sub.config == decode_config(config)
    with torch.no_grad():
        net.set_config(config)
        out, feats = net(x, list(DISTILL_LAYERS))
        sub_out, sub_feats = sub(x, list(DISTILL_LAYERS))
    assert torch.equal(out, sub_out)
    for f, g in zip(feats, sub_feats):
        assert torch.equal(f, g)
        assert f.shape[1] == feature_channels(config)
    # the sub-net holds exactly the configuration's weights, no more
    assert sum(p.numel() for p in sub.parameters()) < sum(p.numel() for p in net.parameters()) or \
        config == '16_16_16_16_16_16_16_16'


def test_configuration_changes_the_output_and_set_config_is_stateful():
    net = _super().eval()
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        big = net(x)
        small = net.set_config('4_4_4_4_4_4_4_4')(x)
        assert net.config == (4,) * 8
        again = net.set_config((16,) * 8)(x)
    assert not torch.equal(big, small)
    assert torch.equal(big, again)


def test_child_indices_are_gan_compressions_distilled_layers():
    """9: the encoder's last ReLU (4*c2 channels, 1/4 resolution); 12/15/18: outputs of residual blocks 3/6/9."""
    net = _super().set_config('8_12_6_16_4_8_12_4').eval()
    seen = {}
    for i in DISTILL_LAYERS:
        net.model[i].register_forward_hook(lambda m, inp, out, i=i: seen.setdefault(i, out.clone()))
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        feats = net(x, list(DISTILL_LAYERS), encode_only=True)
    assert type(net.model[9]).__name__ == 'ReLU'
    assert [type(net.model[i]).__name__ for i in (12, 15, 18)] == ['MobileResnetBlock'] * 3
    assert [type(m).__name__ for m in net.model].count('MobileResnetBlock') == 9
    for i, f in zip(DISTILL_LAYERS, feats):
        assert torch.equal(f, seen[i])
        assert f.shape == (1, 24, 8, 8)
    assert feats[0].min() >= 0


def test_state_dict_keys_are_gan_compressions():
    """Keys of gan-compression's super_mobile_resnet_9blocks (its blocks keep a Dropout: second conv at .6)."""
    keys = list(_super().state_dict())
    assert keys[:6] == ['model.1.weight', 'model.1.bias', 'model.4.weight', 'model.4.bias', 'model.7.weight',
                        'model.7.bias']
    block = [f'model.10.conv_block.{i}.conv.{j}.{p}' for i in (1, 6) for j in (0, 2) for p in ('weight', 'bias')]
    assert keys[6:14] == block
    assert keys[-6:] == ['model.19.weight', 'model.19.bias', 'model.22.weight', 'model.22.bias', 'model.26.weight',
                         'model.26.bias']
    assert len(keys) == 6 + 9 * 8 + 6
    shapes = _super(ngf=64).state_dict()
    assert shapes['model.7.weight'].shape == (256, 128, 3, 3)
    assert shapes['model.10.conv_block.1.conv.0.weight'].shape == (256, 1, 3, 3)
    assert shapes['model.19.weight'].shape == (256, 128, 3, 3)  # transposed: (in, out, k, k)
    sub = SubMobileResnetGenerator(3, 3, '16_16_32_16_16_64_16_24')
    assert list(sub.state_dict()) == keys


def test_subnet_parameter_count_matches_table3():
    """Table 3, horse->zebra: 0.412 M parameters for 16_16_32_16_16_64_16_24 (NOTES 2.4)."""
    sub = SubMobileResnetGenerator(3, 3, '16_16_32_16_16_64_16_24')
    assert round(sum(p.numel() for p in sub.parameters()) / 1e6, 3) == 0.412


def test_registry_and_options():
    opts = {'input_nc': 3, 'output_nc': 3, 'ngf': 16, 'netG': 'sub_mobile_resnet_9blocks', 'normG': 'instance',
            'no_dropout': True, 'init_type': 'normal', 'init_gain': 0.02, 'no_antialias': False,
            'no_antialias_up': False, 'crop_size': 32, 'load_size': 32, 'stylegan2_G_num_downsampling': 1,
            'G_output': 'tanh', 'config_str': '4_8_4_8_4_8_4_8'}
    sub = generator_from_options(opts)
    assert isinstance(sub, SubMobileResnetGenerator) and sub.config == (4, 8, 4, 8, 4, 8, 4, 8)
    sup = generator_from_options(opts, netG='super_mobile_resnet_9blocks')
    assert isinstance(sup, SuperMobileResnetGenerator) and sup.config == (4, 8, 4, 8, 4, 8, 4, 8)
    assert generator_from_options(opts, netG='super_mobile_resnet_9blocks', config_str=None).config == (16,) * 8
    with pytest.raises(ValueError, match='needs --config_str'):
        generator_from_options(opts, config_str=None)
    with pytest.raises(ValueError, match='batch'):
        generator_from_options(opts, normG='batch')
    # an older run's options without config_str still build a ResNet
    old = {k: v for k, v in opts.items() if k != 'config_str'}
    generator_from_options(old, netG='resnet_6blocks')


def test_configuration_errors():
    net = _super()
    with pytest.raises(ValueError, match='wider than the super-net'):
        net.set_config('32_16_16_16_16_16_16_16')
    with pytest.raises(ValueError, match='wider than the super-net'):
        export_subnet(net, (32,) + (16,) * 7)
    for bad in ('16_16', '16_16_16_16_16_16_16_x', '0_16_16_16_16_16_16_16', (16,) * 9):
        with pytest.raises(ValueError):
            decode_config(bad)
    assert encode_config(decode_config('16_16_32_16_16_64_16_24')) == '16_16_32_16_16_64_16_24'


def test_config_sets():
    assert len(ChannelConfigs('channels-64-cycleGAN')) == 5 ** 8
    assert len(ChannelConfigs('channels-64-pix2pix')) == 7 ** 8
    assert ChannelConfigs('channels-64-cycleGAN').largest() == (64,) * 8
    assert ChannelConfigs('channels-64-pix2pix').smallest() == (16,) * 8
    assert ChannelConfigs('channels-16').smallest() == (4,) * 8
    assert ChannelConfigs('channels-8').largest() == (8,) * 8
    assert '16_16_32_16_16_64_16_24' in ChannelConfigs('channels-64-cycleGAN')
    assert '16_16_48_32_32_40_24_16' not in ChannelConfigs('channels-64-cycleGAN')
    ChannelConfigs('channels-64-pix2pix').check('40_16_48_16_48_48_16_16')
    with pytest.raises(ValueError, match=r'positions \[2, 5\]'):
        ChannelConfigs('channels-64-cycleGAN').check('16_16_40_16_16_56_16_24')
    with pytest.raises(ValueError, match='valid names'):
        ChannelConfigs('channels-7')
    assert sorted(CONFIG_SETS) == ['channels-16', 'channels-64-cycleGAN', 'channels-64-pix2pix', 'channels-8']


def test_sampling_is_seeded_and_resumable():
    a, b = ChannelConfigs('channels-16', seed=3), ChannelConfigs('channels-16', seed=3)
    torch.manual_seed(0)
    first = [a.sample() for _ in range(20)]
    torch.manual_seed(1)
    import random
    random.seed(5)  # the global RNGs do not matter
    assert first == [b.sample() for _ in range(20)]
    assert first != [ChannelConfigs('channels-16', seed=4).sample() for _ in range(20)]
    assert all(c in a for c in first)
    # the state, through JSON, resumes the exact sequence
    state = json.loads(json.dumps(a.state_dict()))
    ahead = [a.sample() for _ in range(5)] + [a.mutate(first[0], 0.5), a.crossover(first[0], first[1])]
    c = ChannelConfigs('channels-16', seed=99)
    c.load_state_dict(state)
    assert [c.sample() for _ in range(5)] + [c.mutate(first[0], 0.5), c.crossover(first[0], first[1])] == ahead


def test_weighted_mutation_and_crossover():
    space = ChannelConfigs('channels-64-cycleGAN', seed=0)
    uniform = [v for _ in range(400) for v in space.sample()]
    weighted = [v for _ in range(400) for v in space.sample(weighted_sample=2)]
    # gan-compression's weights 4,5,6,7,8 for 64..16: small widths more often
    assert sum(weighted) / len(weighted) < sum(uniform) / len(uniform)
    assert weighted.count(16) > weighted.count(64)
    geometric = [v for _ in range(200) for v in space.sample(weighted_sample=2, weight_strategy='geometric')]
    assert geometric.count(16) > 4 * geometric.count(64)
    with pytest.raises(ValueError, match='weight strategy'):
        space.sample(weighted_sample=2, weight_strategy='harmonic')
    base = (64, 48, 32, 24, 16, 64, 48, 32)
    assert space.mutate(base, 0.0) == base
    mutated = [space.mutate(base, 1.0) for _ in range(50)]
    assert all(m in space for m in mutated) and any(m != base for m in mutated)
    other = (16,) * 8
    for _ in range(20):
        child = space.crossover(base, other)
        assert all(c in (p, q) for c, p, q in zip(child, base, other))


# ---- teacher import (scripts/import_teacher.py) --------------------------------------------------------------

def _official_teacher_file(path, ngf=4, seed=0):
    """A file in the official layout: gan-compression's ResnetGenerator keys (blocks with Dropout, so the second
    convolution is conv_block.6), saved from DataParallel ('module.'), with an old PyTorch's instance-norm
    statistics; built here as this project's ResNet with dropout, whose layout is the same."""
    torch.manual_seed(seed)
    official = define_G(3, 3, ngf, 'resnet_9blocks', use_dropout=True, no_antialias=True, no_antialias_up=True,
                        init_type='normal', init_gain=0.3)
    state = {f'module.{k}': v for k, v in official.state_dict().items()}
    assert 'module.model.10.conv_block.6.weight' in state and 'module.model.19.weight' in state
    state['module.model.2.running_mean'] = torch.zeros(ngf)
    state['module.model.2.running_var'] = torch.ones(ngf)
    torch.save(state, path)
    return official.eval()


def test_import_official_teacher(tmp_path):
    from tests.conftest import load_script
    script = load_script('scripts/import_teacher.py')
    source = tmp_path / 'latest_net_G.pth'
    official = _official_teacher_file(source)
    target = script.main(['--source', str(source), '--checkpoints_dir', str(tmp_path / 'ckpt'), '--name', 'teacher',
                          '--ngf', '4'])
    assert target == str(tmp_path / 'ckpt' / 'teacher' / 'latest_net_G.pth')
    state = torch.load(target, weights_only=True)
    assert 'model.10.conv_block.5.weight' in state and 'model.10.conv_block.6.weight' not in state
    assert torch.equal(state['model.18.conv_block.5.bias'], official.state_dict()['model.18.conv_block.6.bias'])
    options = json.loads((tmp_path / 'ckpt' / 'teacher' / 'train_opt.json').read_text())
    teacher = generator_from_options({**options, 'init_type': 'normal', 'init_gain': 0.02, 'crop_size': 32,
                                      'load_size': 32, 'stylegan2_G_num_downsampling': 1}).eval()
    teacher.load_state_dict(state, strict=True)
    assert not any(isinstance(m, torch.nn.Dropout) for m in teacher.modules())
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        assert torch.equal(teacher(x), official(x))
    # the distilled layers are those of gan-compression's teacher: 9 = encoder ReLU, 12/15/18 = blocks 3/6/9
    assert type(teacher.model[9]).__name__ == 'ReLU' and type(teacher.model[18]).__name__ == 'ResnetBlock'
    # --use_dropout keeps the official names
    kept = script.main(['--source', str(source), '--output', str(tmp_path / 'drop.pth'), '--ngf', '4',
                        '--use_dropout'])
    assert 'model.10.conv_block.6.weight' in torch.load(kept, weights_only=True)


def test_import_teacher_mismatch_names_file_and_keys(tmp_path):
    from tests.conftest import load_script
    script = load_script('scripts/import_teacher.py')
    source = tmp_path / 'latest_net_G.pth'
    _official_teacher_file(source, ngf=4)
    with pytest.raises(ValueError, match=r'latest_net_G\.pth does not fit.*keys of another shape \(model\.1\.weight'):
        script.main(['--source', str(source), '--output', str(tmp_path / 'x.pth'), '--ngf', '8'])
    with pytest.raises(ValueError, match=r'missing keys \(model\.16\.weight.*unexpected keys \(model\.16\.conv_block'):
        script.main(['--source', str(source), '--output', str(tmp_path / 'x.pth'), '--ngf', '4',
                     '--netG', 'resnet_6blocks'])
    torch.save({'model.1.weight': torch.zeros(1), 'note': 'x'}, tmp_path / 'odd.pth')
    with pytest.raises(ValueError, match='odd.pth is not a state dict of tensors'):
        script.main(['--source', str(tmp_path / 'odd.pth'), '--output', str(tmp_path / 'x.pth')])
    assert not (tmp_path / 'x.pth').exists()
