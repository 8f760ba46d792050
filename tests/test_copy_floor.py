"""evaluation/copy_floor.py: a generator trained only to copy its input, scored as a translation would be."""
import json

import pytest
import torch
import torch.nn as nn

from evaluation import copy_floor
from evaluation.common import EvaluationError
from evaluation.curves import load_inputs
from tests.conftest import load_script

dataset = load_script('datasets/make_synthetic_dataset.py')


@pytest.fixture(scope='module')
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp('syn')
    dataset.make_synthetic_dataset(root, n_train=3, n_test=3, size=16, seed=0)
    return root


class Offset(nn.Module):
    def __init__(self, delta):
        super().__init__()
        self.delta = delta

    def forward(self, x):
        return x + self.delta


def test_an_exact_copy_scores_zero_and_an_offset_scores_its_size(data_root):
    # the outputs go through uint8 as test.py's PNGs do: a copy is exact up to that rounding
    inputs = load_inputs(data_root, 16)
    assert copy_floor.copy_scores(nn.Identity(), data_root, inputs)['bg_l1'] == pytest.approx(0.0, abs=1 / 255)
    # +0.2 in [-1, 1] is +0.1 in [0, 1]; the testA backgrounds stay below 0.9, so nothing clips
    scores = copy_floor.copy_scores(Offset(0.2), data_root, inputs)
    assert scores['bg_l1'] == pytest.approx(0.1, abs=0.005)
    assert scores['bg_psnr'] == pytest.approx(20.0, abs=0.5)


def test_schedule_is_constant_then_linear_to_zero():
    rates = [copy_floor.learning_rate(step, 10, 1.0) for step in range(1, 11)]
    assert rates[:5] == [1.0] * 5
    assert all(a > b for a, b in zip(rates[4:], rates[5:]))
    assert 0 < rates[-1] < 0.2


def test_recipe_gives_the_generator_flags_and_the_command_line_wins():
    flags = ['--netG', 'resnet_6blocks', '--ngf', '16', '--num_patches', '64', '--no_antialias']
    parser = copy_floor.generator_parser(flags)
    args = parser.parse_args(['--ngf', '8'])
    assert (args.netG, args.ngf, args.no_antialias, args.no_antialias_up) == ('resnet_6blocks', 8, True, False)


def test_training_lowers_the_copy_error_and_writes_the_curve(data_root, tmp_path, capsys):
    out = tmp_path / 'floor.json'
    argv = ['--data', str(data_root), '--netG', 'resnet_4blocks', '--ngf', '4', '--no_antialias',
            '--no_antialias_up', '--iters', '60', '--eval_every', '20', '--lr', '0.002', '--out', str(out)]
    assert copy_floor.main(argv) == 0
    result = json.loads(out.read_text())
    curve = result['curve']
    assert [row['iterations'] for row in curve] == [20, 40, 60]
    assert result['final'] == curve[-1] and result['train_images'] == 6 and result['size'] == 16
    assert result['generator']['ngf'] == 4 and result['generator']['netG'] == 'resnet_4blocks'
    torch.manual_seed(0)
    untrained = copy_floor.copy_scores(
        copy_floor.define_generator(result['generator'], 16), data_root, load_inputs(data_root, 16))['bg_l1']
    assert curve[-1]['bg_l1'] < untrained
    assert 'background L1' in capsys.readouterr().out


def test_bad_input_is_named(data_root, tmp_path):
    with pytest.raises(EvaluationError, match='trainA'):
        copy_floor.main(['--data', str(tmp_path), '--iters', '1'])
    with pytest.raises(EvaluationError, match='--lr'):
        copy_floor.main(['--data', str(data_root), '--lr', '0'])
    with pytest.raises(ValueError, match='unknown recipe'):
        copy_floor.main(['--data', str(data_root), '--recipe', 'no_such_recipe'])
    assert copy_floor.cli(copy_floor.main, ['--data', str(tmp_path / 'missing'), '--iters', '1']) == 2
