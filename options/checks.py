"""Parse-time limits of the numeric flags of train.py and test.py (every model's included).

A value outside its flag's range stops the command while the options are parsed, with the flag's name
and the range, instead of a traceback from deep inside torch (or, worse, a run that quietly does
something else: a negative λ switches a loss off). Upper limits mark values no run can use (a network
wider than memory, a port above 65535), not taste.
"""
import math

from util.errors import OptionError

WIDE = 4096  # channel counts above this do not fit in any GPU's memory at CUT's image sizes


class Range:
    """low <= value <= high (either end open when asked); `choices` instead for a few allowed values."""

    def __init__(self, low=None, high=None, *, low_open=False, high_open=False, choices=None, note=''):
        self.low, self.high, self.low_open, self.high_open = low, high, low_open, high_open
        self.choices, self.note = choices, note

    def admits(self, value):
        if self.choices is not None:
            return value in self.choices
        if isinstance(value, float) and math.isnan(value):
            return False
        if self.low is not None and (value < self.low or (self.low_open and value == self.low)):
            return False
        return self.high is None or (value < self.high if self.high_open else value <= self.high)

    def describe(self):
        if self.choices is not None:
            return 'must be one of ' + ', '.join(map(str, self.choices))
        if self.high is None:
            return f'must be {">" if self.low_open else ">="} {self.low:g}'
        left, right = '(' if self.low_open else '[', ')' if self.high_open else ']'
        return f'must be in {left}{self.low:g}, {self.high:g}{right}'


def positive(high=None, **kw):
    return Range(0, high, low_open=True, **kw)


def at_least(low, high=None, **kw):
    return Range(low, high, **kw)


def fraction(**kw):
    """[0, 1): a decay or momentum factor."""
    return Range(0, 1, high_open=True, **kw)


FINITE = 1e30  # floats above this are not numbers a run can use (nor inf/nan)

# flag -> its range; a flag a model or dataset does not add is not looked at
RULES = {
    # networks
    'input_nc': Range(choices=(1, 3), note='images are read as grayscale (1) or RGB (3)'),
    'output_nc': Range(choices=(1, 3), note='images are read as grayscale (1) or RGB (3)'),
    'ngf': at_least(1, WIDE), 'ndf': at_least(1, WIDE), 'netF_nc': at_least(1, WIDE),
    'teacher_ngf': at_least(1, WIDE),
    'n_layers_D': at_least(1, 10), 'stylegan2_G_num_downsampling': at_least(0, 8),
    'init_gain': Range(0, FINITE),
    # data
    'batch_size': at_least(1, 1 << 16), 'num_threads': at_least(0, 1024),
    'load_size': at_least(1, 1 << 14), 'crop_size': at_least(1, 1 << 14),
    'max_dataset_size': at_least(1), 'display_winsize': at_least(1, 1 << 14),
    'random_scale_max': at_least(1, 100, note='the largest zoom of --dataset_mode singleimage'),
    'randcrop_prob': Range(0, 1),
    # training
    'lr': positive(FINITE), 'f_lr': positive(FINITE), 'beta1': fraction(), 'beta2': fraction(),
    'weight_decay': Range(0, FINITE), 'n_epochs': at_least(0), 'n_epochs_decay': at_least(0),
    'epoch_count': at_least(1), 'lr_decay_iters': at_least(1), 'max_iters': at_least(1),
    'pool_size': at_least(0), 'seed': at_least(0, 2 ** 63 - 1), 'ema_beta': Range(0, 1),
    'G_ema_beta': fraction(), 'print_freq': at_least(1), 'display_freq': at_least(1),
    'save_latest_freq': at_least(1), 'save_epoch_freq': at_least(1), 'update_html_freq': at_least(1),
    'display_ncols': at_least(0), 'display_port': at_least(1, 65535),
    # objectives (every lambda_* is caught by PREFIX_RULES)
    'nce_T': positive(FINITE),
    # 0 makes the sampler return whole feature maps (the similarity maps' use), and the patch losses then hold
    # (H*W x H*W) matrices: 5.4 GB and a minute for one CPU step of src_hdce at 32 px. More patches than a
    # layer has positions take every position.
    'num_patches': at_least(1, 1 << 20, note='patches sampled per layer; more than a layer has take all'), 'HDCE_gamma': positive(FINITE),
    'HDCE_gamma_min': positive(FINITE), 'step_gamma_epoch': at_least(1), 'gamma_iter': at_least(1),
    'ds_iter': at_least(0),
    # StarGAN v2
    'num_domains': at_least(2, 1 << 12), 'latent_dim': at_least(1, WIDE), 'style_dim': at_least(1, WIDE),
    'hidden_dim': at_least(1, WIDE), 'max_conv_dim': at_least(1, WIDE), 'base_dim': at_least(0, WIDE),
    'w_hpf': Range(choices=(0,), note='the face high-pass path needs a landmark network this code lacks'),
    # test.py
    'num_test': at_least(0), 'sim_num': at_least(0), 'sim_query': Range(0, 1, note='fractions of the image'),
}
PREFIX_RULES = (('lambda_', Range(0, FINITE, note='a loss weight; 0 switches its loss off')),)
# numeric flags whose every value is used as it is
FREE = {'display_id': 'window id; <= 0 disables visdom', 'evaluation_freq': "CUT's flag, ignored"}


def rule_for(flag):
    if flag in RULES:
        return RULES[flag]
    for prefix, rule in PREFIX_RULES:
        if flag.startswith(prefix):
            return rule
    return None


def numeric_flags(parser):
    """dest of every int/float flag of an argparse parser."""
    return [a.dest for a in parser._actions if a.type in (int, float)]


def check_numbers(opt, flags):
    """Stop with `error: --<flag> ...` at the first of `flags` whose value is outside its range."""
    for flag in flags:
        rule, value = rule_for(flag), getattr(opt, flag, None)
        if rule is None or value is None:
            continue
        for item in (value if isinstance(value, (list, tuple)) else [value]):
            if not rule.admits(item):
                note = f' ({rule.note})' if rule.note else ''
                raise OptionError(f'error: --{flag} {rule.describe()}{note}, got {item:g}'
                                 if isinstance(item, (int, float)) else
                                 f'error: --{flag} {rule.describe()}{note}, got {item!r}')


ROUND_TO = 4  # the data loader rounds every image side to the nearest multiple of 4 (CUT's generators)


def seen_side(side):
    """The side the networks see for a --crop_size/--load_size of `side` (data/base_dataset._make_power_2)."""
    return int(round(side / ROUND_TO) * ROUND_TO)


def _power_of_two(n):
    return n > 0 and not n & (n - 1)


def architecture_needs(opt, is_train):
    """[(test(side seen) -> bool, why)] for the networks the options build; generators and discriminators
    this does not know (StyleGAN2's generators) add nothing."""
    needs = []
    if opt.model == 'stargan_v2':
        return [(lambda n: n >= 16 and _power_of_two(n), '--model stargan_v2 halves a power-of-two side >= 16 '
                 'down to 4x4')]
    if opt.netG.startswith('resnet_'):
        # two stride-2 downsamplings; the bottleneck's normalisation needs more than one value per channel
        needs.append((lambda n: n % 4 == 0 and n // 4 >= 2,
                      f'--netG {opt.netG} downsamples twice and normalises the side/4 bottleneck: >= 8'))
    elif opt.netG.startswith('unet_'):
        top = int(opt.netG.split('_')[1])
        needs.append((lambda n: n % top == 0 and n > 0, f'--netG {opt.netG} halves the side down to 1x1: '
                      f'a multiple of {top}'))
    elif 'stylegan2' in opt.netG:
        k = opt.stylegan2_G_num_downsampling
        needs.append((lambda n: _power_of_two(n // 2 ** k) and 4 <= n // 2 ** k <= 1024,
                      f'--netG {opt.netG} encodes side / 2^{k} (--stylegan2_G_num_downsampling), which must be a '
                      'power of two in [4, 1024]'))
    if not is_train:
        return needs
    layers = {'basic': 3, 'n_layers': opt.n_layers_D}.get(opt.netD)
    if layers is not None:
        # n stride-2 layers (kernel 4, padding 1) take the side to floor(side / 2^n), a stride-1 layer to one
        # less, normalised, and the last kernel-4 layer needs 2 of those: side >= 3 * 2^n
        needs.append((lambda n: n // 2 ** layers >= 3,
                      f'--netD {opt.netD} has {layers} stride-2 layers: >= {3 * 2 ** layers}'))
    elif opt.netD == 'stylegan2':
        needs.append((lambda n: n >= 8 and _power_of_two(n), '--netD stylegan2 takes a power of two >= 8'))
    return needs


def check_image_size(opt, is_train):
    """The side of the images the networks see (--crop_size after a crop, --load_size after a plain
    resize) against what the architecture needs; --load_size against --crop_size when both are used."""
    steps = set(opt.preprocess.split('_and_'))
    if 'resize' in steps and 'crop' in steps and opt.load_size < opt.crop_size:
        raise OptionError(f'error: --load_size {opt.load_size} is smaller than --crop_size {opt.crop_size}: '
                         f'--preprocess {opt.preprocess} crops --crop_size from images resized to --load_size; '
                         f'the smallest --load_size that works is {opt.crop_size}')
    if 'crop' in steps or 'patch' in steps:
        flag, side = 'crop_size', opt.crop_size
    elif steps == {'resize'}:
        flag, side = 'load_size', opt.load_size
    else:
        return  # the side depends on each image
    needs = architecture_needs(opt, is_train)

    def fits(value):
        return all(test(seen_side(value)) for test, _ in needs)
    if fits(side):
        return
    limit = RULES[flag].high
    above = next((v for v in range(side + 1, limit + 1) if fits(v)), None)
    smallest = next((v for v in range(1, limit + 1) if fits(v)), None)
    failing = '; '.join(why for test, why in needs if not test(seen_side(side)))
    if smallest is not None and smallest > side:
        hint = f'the smallest --{flag} that works is {smallest}'
    else:
        below = next((v for v in range(side - 1, 0, -1) if fits(v)), None)
        hint = f'the nearest values that work are {below} and {above}'
    raise OptionError(f'error: --{flag} {side} does not fit the networks (images are rounded to a side of '
                     f'{seen_side(side)}: {failing}); {hint}')
