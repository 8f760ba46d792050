"""MACs / parameters as Table 3 counts them (evaluation/macs.py, scripts/count_macs.py)."""
import json

import pytest

from evaluation.macs import count_params, mobile_macs, mobile_params, profile_macs
from models.networks import define_G
from models.networks.compression import ChannelConfigs, SubMobileResnetGenerator, SuperMobileResnetGenerator
from tests.conftest import load_script

# Table 3 of the paper (and NOTES 2.4): MACs at 256 px and parameters
TABLE3 = {
    '16_16_32_16_16_64_16_24': (2.962e9, 0.412e6),  # horse->zebra, both rows
    '16_16_48_32_32_40_24_16': (4.495e9, 0.667e6),  # map->satellite, both rows
    '40_16_48_16_48_48_16_16': (4.390e9, 0.685e6),  # Cityscapes, +Ours
}


def test_teacher_figures():
    """The ResNet-9 ngf 64 teacher in gan-compression's layout: 56.80 G MACs, 11.38 M parameters."""
    teacher = define_G(3, 3, 64, 'resnet_9blocks', no_antialias=True, no_antialias_up=True, init_weights=False)
    assert round(profile_macs(teacher) / 1e9, 2) == 56.80
    assert round(count_params(teacher) / 1e6, 2) == 11.38


@pytest.mark.parametrize('config', sorted(TABLE3))
def test_table3_configurations(config):
    macs, params = TABLE3[config]
    sub = SubMobileResnetGenerator(3, 3, config)
    assert round(profile_macs(sub) / 1e9, 3) == pytest.approx(macs / 1e9)
    assert round(count_params(sub) / 1e6, 3) == pytest.approx(params / 1e6)
    assert mobile_macs(config) == profile_macs(sub)
    assert mobile_params(config) == count_params(sub)


def test_closed_form_equals_torchprofile_on_super_and_sub_nets():
    space = ChannelConfigs('channels-16', seed=0)
    supernet = SuperMobileResnetGenerator(3, 3, 16)
    for config in [space.largest(), space.smallest()] + [space.sample() for _ in range(4)]:
        for side in ((64, 64), (35, 29)):
            expected = profile_macs(supernet.set_config(config), (1, 3) + side)
            assert mobile_macs(config, *side) == expected
            assert profile_macs(SubMobileResnetGenerator(3, 3, config), (1, 3) + side) == expected
        assert mobile_params(config) == count_params(SubMobileResnetGenerator(3, 3, config))
    # one input channel, six blocks, no norm (no biases on the plain convolutions)
    sub = SubMobileResnetGenerator(1, 2, '8_4_8_12_4_16_8_4', n_blocks=6, norm='none')
    assert mobile_macs('8_4_8_12_4_16_8_4', 32, input_nc=1, output_nc=2, n_blocks=6) == profile_macs(sub, (1, 1, 32, 32))
    assert mobile_params('8_4_8_12_4_16_8_4', 1, 2, n_blocks=6, use_bias=False) == count_params(sub)


def test_count_macs_script(tmp_path, capsys):
    script = load_script('scripts/count_macs.py')
    result = script.main(['--netG', 'resnet_9blocks', '--ngf', '64', '--json', str(tmp_path / 'teacher.json')])
    out = capsys.readouterr().out
    assert '(56.80 G)' in out and '(11.38 M)' in out
    assert round(result['macs'] / 1e9, 2) == 56.80 and round(result['params'] / 1e6, 2) == 11.38
    assert json.loads((tmp_path / 'teacher.json').read_text())['macs'] == result['macs']
    for config, (macs, params) in TABLE3.items():
        result = script.main(['--config', config, '--crop_size', '256'])
        out = capsys.readouterr().out
        assert f'{macs / 1e9:.3f} G' in out and f'{params / 1e6:.3f} M' in out
        assert result['macs'] == result['macs_closed_form']
    with pytest.raises(SystemExit, match='needs --config'):
        script.main(['--netG', 'sub_mobile_resnet_9blocks'])


def test_the_official_budgets_admit_the_papers_configurations():
    """scripts/table3.sh's budgets are the official search scripts' (H->Z 3e9, map->sat 4.6e9, Cityscapes 5.7e9):
    each admits its Table 3 configurations, members of the dataset's configuration set, and not the teacher-wide
    largest one."""
    import re
    from pathlib import Path
    script = (Path(__file__).resolve().parents[1] / 'scripts' / 'table3.sh').read_text()
    budgets = {short: float(b) for short, b in re.findall(r'SHORT=(\w+);[^\n]*?(?:\n\s*)?DEFAULT_BUDGET=([\d.e]+)',
                                                          script)}
    assert budgets == {'h2z': 3e9, 'map2sat': 4.6e9, 'city': 5.7e9}
    cases = {'h2z': ('channels-64-cycleGAN', ['16_16_32_16_16_64_16_24']),
             'map2sat': ('channels-64-pix2pix', ['16_16_48_32_32_40_24_16']),
             'city': ('channels-64-pix2pix', ['40_16_48_16_48_48_16_16', '32_32_48_32_32_32_32_16'])}
    for short, (name, configs) in cases.items():
        space = ChannelConfigs(name)
        for config in configs:
            assert tuple(int(c) for c in config.split('_')) in space
            assert mobile_macs(config) <= budgets[short]
        assert mobile_macs(space.largest()) > budgets[short]
