"""Every numeric flag of train.py and test.py, for every model, with a negative, a zero and an absurd value:
each value either fails while the options are parsed, with one `error: --<flag> ...` line, or works: a
model built with it (tiny settings) takes a training step (issue 24, part 4; options/checks.py)."""
import contextlib
import io
import pytest
import torch

import models
from options import checks
from options import test_options, train_options
from tests.conftest import build_model, model_batch, tiny_args, train_step

MODELS = models.available_models()
MODES = {'train': train_options.TrainOptions, 'test': test_options.TestOptions}
BAD = {int: ['-1', '0', str(10 ** 12)], float: ['-1', '0', '1e300', 'inf', 'nan']}
# flags that change what a training step builds or computes: an accepted value must survive one step
STEP_FLAGS = {'ngf', 'ndf', 'n_layers_D', 'init_gain', 'netF_nc', 'num_patches', 'nce_T', 'beta1', 'beta2', 'lr',
              'f_lr', 'weight_decay', 'G_ema_beta', 'ema_beta', 'base_dim', 'ds_iter', 'gamma_iter',
              'step_gamma_epoch', 'HDCE_gamma', 'HDCE_gamma_min', 'pool_size', 'w_hpf'}


def argv(mode, model, tmp_path, *extra):
    """The tiny settings of tests/conftest.py; test.py has no visdom or progress-bar flags."""
    args = tiny_args(model, tmp_path, *extra)
    if mode == 'test':
        args.remove('--no_tqdm')
        del args[args.index('--display_id'):args.index('--display_id') + 2]
    return args


def parse(mode, model, tmp_path, *extra):
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        return MODES[mode](argv(mode, model, tmp_path, *extra)).parse()


def numeric_actions(mode, model, tmp_path):
    options = MODES[mode](argv(mode, model, tmp_path))
    with contextlib.redirect_stdout(io.StringIO()):
        options.gather_options()
    return {a.dest: a for a in options.parser._actions if a.type in (int, float)}


def verdicts(mode, model, tmp_path):
    """{(flag, value): None when accepted, else the error} for every numeric flag and bad value."""
    found = {}
    for flag, action in sorted(numeric_actions(mode, model, tmp_path).items()):
        for value in BAD[action.type]:
            values = [value] * (action.nargs if isinstance(action.nargs, int) else 1)
            try:
                parse(mode, model, tmp_path / 'ckpt_runs', f'--{flag}', *values)
                found[flag, value] = None
            except SystemExit as exc:
                found[flag, value] = str(exc)
    return found


@pytest.mark.parametrize('mode', MODES)
@pytest.mark.parametrize('model', MODELS)
def test_every_numeric_flag_has_a_range(mode, model, tmp_path):
    loose = [f for f in numeric_actions(mode, model, tmp_path) if checks.rule_for(f) is None and f not in checks.FREE]
    assert loose == [], f'numeric flags of --model {model} without a range in options/checks.py'


@pytest.mark.parametrize('mode', MODES)
@pytest.mark.parametrize('model', MODELS)
def test_bad_numbers_fail_at_parse_time_naming_the_flag(mode, model, tmp_path):
    for (flag, value), error in verdicts(mode, model, tmp_path).items():
        if error is not None:
            assert error.startswith(f'error: --{flag} ') and '\n' not in error, (flag, value, error)
        else:  # accepted: inside the flag's range, or a flag whose every value is used as it is
            rule = checks.rule_for(flag)
            assert (rule.admits(float(value)) if rule else flag in checks.FREE), (flag, value)


@pytest.mark.slow
@pytest.mark.parametrize('model', MODELS)
def test_accepted_bad_looking_numbers_take_a_training_step(model, tmp_path):
    """Each accepted value of a flag a training step reads: zero loss weights (every lambda_*), zero momenta
    and gains, 0 or huge iteration counts, ..."""
    accepted = [(f, v) for (f, v), e in verdicts('train', model, tmp_path).items()
                if e is None and (f in STEP_FLAGS or f.startswith('lambda_'))]
    batch_size = parse('train', model, tmp_path).batch_size
    for flag, value in accepted:
        net = build_model(tmp_path / f'{flag}{value}', model, f'--{flag}', value, batch_size=batch_size)
        losses, _ = train_step(net, model_batch(model, batch_size, 32))
        assert losses.keys() == dict.fromkeys(net.loss_names).keys(), (flag, value)


@pytest.mark.parametrize('argv, message', [
    (['--lambda_SRC', '-1'], 'error: --lambda_SRC must be in [0, 1e+30] (a loss weight; 0 switches its loss off), got -1'),
    (['--lambda_HDCE', '-0.5'], 'error: --lambda_HDCE must be in [0, 1e+30]'),
    (['--lr', '-1'], 'error: --lr must be in (0, 1e+30], got -1'),
    (['--lr', '0'], 'error: --lr must be in (0, 1e+30], got 0'),
    (['--load_size', '7', '--crop_size', '7'], 'error: --crop_size 7 does not fit the networks (images are rounded '
     'to a side of 8: --netD basic has 3 stride-2 layers: >= 24); the smallest --crop_size that works is 22'),
    (['--load_size', '16', '--crop_size', '32'], 'error: --load_size 16 is smaller than --crop_size 32'),
    (['--netG', 'unet_256', '--load_size', '256', '--crop_size', '250'], 'error: --crop_size 250 does not fit the '
     'networks (images are rounded to a side of 248: --netG unet_256 halves the side down to 1x1: a multiple of 256); '
     'the smallest --crop_size that works is 254'),
    (['--netD', 'n_layers', '--n_layers_D', '4', '--crop_size', '32'], 'smallest --crop_size that works is 46'),
    (['--epoch_count', '500'], 'error: --epoch_count 500 is past the last epoch'),
])
def test_the_issues_examples_name_the_flag_and_what_works(argv, message, tmp_path):
    with pytest.raises(SystemExit) as caught:
        parse('train', 'src_hdce', tmp_path, *argv)
    assert message in str(caught.value)


@pytest.mark.parametrize('model', MODELS)
def test_the_smallest_crop_size_named_is_the_smallest_that_trains(model, tmp_path):
    """The limit is computed from the architecture; a real training step at the sizes it names around
    the limit confirms it (the data loader rounds each side to a multiple of 4)."""
    opt = parse('train', model, tmp_path)
    needs = checks.architecture_needs(opt, True)
    sizes = [n for n in range(4, 72, 4) if all(test(n) for test, _ in needs)]
    assert sizes, model
    smallest = sizes[0]
    below = list(range(4, smallest, 4))
    extra = ['--load_size', str(smallest), '--crop_size', str(smallest)]
    if model == 'sin_src_hdce':
        extra[1] = str(max(smallest, 64))
    net = build_model(tmp_path / 'fits', model, *extra, batch_size=opt.batch_size)
    assert train_step(net, model_batch(model, opt.batch_size, smallest))[0]
    if below:  # the next side down fails inside torch (or the model's own check), which is why parsing refuses it
        n = below[-1]
        opt.load_size = opt.crop_size = n
        with pytest.raises((ValueError, RuntimeError, IndexError)):
            with contextlib.redirect_stdout(io.StringIO()):
                small = models.create_model(opt)
                small.data_dependent_initialize(model_batch(model, opt.batch_size, n))
                small.setup(opt)
            train_step(small, model_batch(model, opt.batch_size, n))
