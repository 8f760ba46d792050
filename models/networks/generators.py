"""Image-to-image generators (ResNet and U-Net) with CUT's state-dict layout, and `define_G`.

Every generator follows one forward contract, `forward(x, layers=None, encode_only=False)`:
no layers -> the output image; layers and `encode_only` -> the features at those indices of
`self.model` (index i is the output of child i), computed up to the deepest one only;
layers without `encode_only` -> (output, features) from one pass.
"""
import inspect

import torch
import torch.nn as nn

from util.errors import ConfigError, UnsupportedError

from .init import init_weights as initialise
from .layers import NORM_TYPES, Downsample, Upsample, forward_with_features, get_norm_layer, pad_layer
from .registry import GENERATORS, build, lookup, register_generator


class ResnetBlock(nn.Module):
    """x + [pad, conv3x3, norm, ReLU, (dropout), pad, conv3x3, norm](x); keys `conv_block.<i>`."""

    def __init__(self, dim, norm='instance', use_dropout=False, padding_type='reflect'):
        super().__init__()
        norm_layer = get_norm_layer(norm)
        use_bias = norm == 'instance'
        conv_padding = 1 if padding_type == 'zero' else 0
        block = []
        for second in (False, True):
            if padding_type != 'zero':
                block.append(pad_layer(padding_type, 1))
            block += [nn.Conv2d(dim, dim, kernel_size=3, padding=conv_padding, bias=use_bias),
                      norm_layer(dim)]
            if not second:
                block.append(nn.ReLU(True))
                if use_dropout:
                    block.append(nn.Dropout(0.5))
        self.conv_block = nn.Sequential(*block)

    def forward(self, x):
        return x + self.conv_block(x)


G_OUTPUTS = ('tanh', 'residual')
ATANH_LIMIT = 0.995  # inputs of exactly +-1 would make atanh infinite


def residual_tanh(v, source):
    """tanh(v + atanh(x)): the last convolution's output `v` as a change to the input image `x` in tanh's
    pre-activation space, so v = 0 returns x (up to ATANH_LIMIT) and the output stays in (-1, 1)."""
    return torch.tanh(v + torch.atanh(source.clamp(-ATANH_LIMIT, ATANH_LIMIT)))


class ResnetGenerator(nn.Module):
    """Johnson et al. encoder / residual blocks / decoder, with CUT's anti-aliased down- and upsampling.

    `self.model` children for ngf=64, 9 blocks: 0 pad, 1-3 conv-norm-ReLU, 4-7 and 8-11 conv-norm-ReLU
    (+ Downsample), 12-20 ResnetBlocks, 21-28 (Upsample +) conv-norm-ReLU, 29 pad, 30 conv, 31 tanh.
    `output='residual'`: the last child computes residual_tanh(v, x) instead of tanh(v), with the same
    modules and state-dict keys; with CUT's small initial weights the generator starts as the identity, and
    the input's colour and fine grain reach the output past the instance norms and the two downsamplings.
    """

    def __init__(self, input_nc, output_nc, ngf=64, norm='instance', use_dropout=False, n_blocks=6,
                 padding_type='reflect', no_antialias=False, no_antialias_up=False, output='tanh'):
        super().__init__()
        if n_blocks < 0:
            raise ConfigError(f'n_blocks must be >= 0, got {n_blocks}')
        if output not in G_OUTPUTS:
            raise ConfigError(f'output must be one of {", ".join(G_OUTPUTS)}, got {output!r}')
        self.residual_output = output == 'residual'
        norm_layer = get_norm_layer(norm)
        use_bias = norm == 'instance'
        model = [pad_layer('reflect', 3),
                 nn.Conv2d(input_nc, ngf, kernel_size=7, padding=0, bias=use_bias),
                 norm_layer(ngf),
                 nn.ReLU(True)]
        n_downsampling = 2
        for i in range(n_downsampling):
            c_in, c_out = ngf * 2 ** i, ngf * 2 ** (i + 1)
            if no_antialias:
                model += [nn.Conv2d(c_in, c_out, kernel_size=3, stride=2, padding=1, bias=use_bias),
                          norm_layer(c_out), nn.ReLU(True)]
            else:
                model += [nn.Conv2d(c_in, c_out, kernel_size=3, stride=1, padding=1, bias=use_bias),
                          norm_layer(c_out), nn.ReLU(True), Downsample(c_out)]
        dim = ngf * 2 ** n_downsampling
        model += [ResnetBlock(dim, norm=norm, use_dropout=use_dropout, padding_type=padding_type)
                  for _ in range(n_blocks)]
        for i in range(n_downsampling):
            c_in = ngf * 2 ** (n_downsampling - i)
            c_out = c_in // 2
            if no_antialias_up:
                model += [nn.ConvTranspose2d(c_in, c_out, kernel_size=3, stride=2, padding=1,
                                             output_padding=1, bias=use_bias),
                          norm_layer(c_out), nn.ReLU(True)]
            else:
                model += [Upsample(c_in),
                          nn.Conv2d(c_in, c_out, kernel_size=3, stride=1, padding=1, bias=use_bias),
                          norm_layer(c_out), nn.ReLU(True)]
        model += [pad_layer('reflect', 3), nn.Conv2d(ngf, output_nc, kernel_size=7, padding=0), nn.Tanh()]
        self.model = nn.Sequential(*model)
        self.num_feature_layers = len(self.model)

    def forward(self, x, layers=None, encode_only=False):
        children = self.model
        if self.residual_output:
            children = list(self.model)
            children[-1] = lambda v: residual_tanh(v, x)  # the last child reads the input too
        return forward_with_features(children, x, layers, encode_only)


class UnetSkipConnectionBlock(nn.Module):
    """One U-Net level: down(x) -> submodule -> up, concatenated with x (except at the outermost level)."""

    def __init__(self, outer_nc, inner_nc, input_nc=None, submodule=None, outermost=False,
                 innermost=False, norm='batch', use_dropout=False):
        super().__init__()
        self.outermost = outermost
        norm_layer = get_norm_layer(norm)
        use_bias = norm == 'instance'
        input_nc = outer_nc if input_nc is None else input_nc
        downconv = nn.Conv2d(input_nc, inner_nc, kernel_size=4, stride=2, padding=1, bias=use_bias)
        up_in = inner_nc if innermost else inner_nc * 2
        upconv = nn.ConvTranspose2d(up_in, outer_nc, kernel_size=4, stride=2, padding=1,
                                    bias=True if outermost else use_bias)
        if outermost:
            model = [downconv, submodule, nn.ReLU(True), upconv, nn.Tanh()]
        elif innermost:
            model = [nn.LeakyReLU(0.2, True), downconv, nn.ReLU(True), upconv, norm_layer(outer_nc)]
        else:
            model = [nn.LeakyReLU(0.2, True), downconv, norm_layer(inner_nc), submodule,
                     nn.ReLU(True), upconv, norm_layer(outer_nc)]
            if use_dropout:
                model.append(nn.Dropout(0.5))
        self.model = nn.Sequential(*model)

    def forward(self, x):
        if self.outermost:
            return self.model(x)
        return torch.cat([x, self.model(x)], 1)  # (B, outer_nc * 2, H, W)


class UnetGenerator(nn.Module):
    """U-Net with `num_downs` halvings (input side 2**num_downs, e.g. 7 for 128x128, 8 for 256x256).

    It has no flat list of layers, so it cannot serve the patch-wise losses: `layers` raises.
    """

    num_feature_layers = 0

    def __init__(self, input_nc, output_nc, num_downs, ngf=64, norm='batch', use_dropout=False):
        super().__init__()
        if num_downs < 5:
            raise ConfigError(f'num_downs must be >= 5, got {num_downs}')
        block = UnetSkipConnectionBlock(ngf * 8, ngf * 8, norm=norm, innermost=True)
        for _ in range(num_downs - 5):
            block = UnetSkipConnectionBlock(ngf * 8, ngf * 8, submodule=block, norm=norm,
                                            use_dropout=use_dropout)
        for mult in (4, 2, 1):
            block = UnetSkipConnectionBlock(ngf * mult, ngf * mult * 2, submodule=block, norm=norm)
        self.model = UnetSkipConnectionBlock(output_nc, ngf, input_nc=input_nc, submodule=block,
                                             outermost=True, norm=norm)

    def forward(self, x, layers=None, encode_only=False):
        if layers:
            raise UnsupportedError('U-Net generators do not expose intermediate features; '
                                      'use a resnet_* generator for patch-wise (NCE / SRC) losses')
        return self.model(x)


def _resnet_builder(n_blocks):
    def build_resnet(input_nc, output_nc, ngf, norm='instance', use_dropout=False, no_antialias=False,
                     no_antialias_up=False, G_output='tanh'):
        return ResnetGenerator(input_nc, output_nc, ngf, norm=norm, use_dropout=use_dropout, n_blocks=n_blocks,
                               no_antialias=no_antialias, no_antialias_up=no_antialias_up, output=G_output)
    return build_resnet


def _unet_builder(num_downs):
    def build_unet(input_nc, output_nc, ngf, norm='instance', use_dropout=False):
        return UnetGenerator(input_nc, output_nc, num_downs, ngf, norm=norm, use_dropout=use_dropout)
    return build_unet


for _blocks in (9, 6, 4):
    register_generator(f'resnet_{_blocks}blocks')(_resnet_builder(_blocks))
register_generator('unet_128')(_unet_builder(7))
register_generator('unet_256')(_unet_builder(8))


def define_G(input_nc, output_nc, ngf, netG, norm='instance', use_dropout=False, init_type='xavier',
             init_gain=0.02, no_antialias=False, no_antialias_up=False, crop_size=256, load_size=None,
             stylegan2_G_num_downsampling=1, init_weights=True, G_output='tanh', config_str=None):
    """Build the generator registered as `netG` on the CPU and initialise its weights (networks that
    set `keeps_own_init`, the StyleGAN2 ones, keep theirs, as in CUT). Each builder receives the
    arguments its signature names (`registry.build`)."""
    if norm not in NORM_TYPES:
        raise ConfigError(f'unknown norm {norm!r}; valid names: {", ".join(NORM_TYPES)}')
    if G_output != 'tanh' and 'G_output' not in inspect.signature(lookup(GENERATORS, 'generator', netG)).parameters:
        raise ConfigError(f'--G_output {G_output} needs a resnet_* generator; --netG {netG} has only its own output')
    if G_output == 'residual' and input_nc != output_nc:
        raise ConfigError(f'--G_output residual adds the input to the output: --input_nc {input_nc} and --output_nc '
                         f'{output_nc} must be equal')
    net = build(GENERATORS, 'generator', netG, input_nc=input_nc, output_nc=output_nc, ngf=ngf, norm=norm,
                use_dropout=use_dropout, no_antialias=no_antialias, no_antialias_up=no_antialias_up,
                crop_size=crop_size, load_size=load_size, stylegan2_G_num_downsampling=stylegan2_G_num_downsampling,
                G_output=G_output, config_str=config_str)
    if init_weights and not getattr(net, 'keeps_own_init', False):
        initialise(net, init_type, init_gain)
    return net


# the options that decide a generator's layers, the image size aside (test.py may translate at another size);
# options/base_options.py's ARCHITECTURE_KEYS are these, F's and --model; only the mobile ResNets of GAN
# compression read --config_str
GENERATOR_ARCH_KEYS = ('input_nc', 'output_nc', 'ngf', 'netG', 'normG', 'no_dropout', 'init_type', 'init_gain',
                       'no_antialias', 'no_antialias_up', 'stylegan2_G_num_downsampling', 'G_output', 'config_str')
# the options `generator_from_options` reads (train_opt.json holds them all): those and the image size, which
# StyleGAN2's generator is built for; runs from before --G_output have CUT's tanh output
GENERATOR_KEYS = GENERATOR_ARCH_KEYS + ('crop_size', 'load_size')
_KEY_DEFAULTS = {'G_output': 'tanh', 'config_str': None}


def missing_generator_options(opts):
    """The generator options a dict of options lacks (those with a default for old runs excepted)."""
    return [k for k in GENERATOR_KEYS if k not in opts and k not in _KEY_DEFAULTS]


def generator_from_options(opts, init_weights=True, **overrides):
    """`define_G` from the generator options of `opts` (an argparse namespace or a dict such as a run's
    train_opt.json), each of `overrides` replacing the option of its name."""
    values = {**_KEY_DEFAULTS, **(opts if isinstance(opts, dict) else vars(opts)), **overrides}
    missing = missing_generator_options(values)
    if missing:
        raise ConfigError(f'generator options {missing} are missing')
    return define_G(values['input_nc'], values['output_nc'], values['ngf'], values['netG'], norm=values['normG'],
                    use_dropout=not values['no_dropout'], init_type=values['init_type'],
                    init_gain=values['init_gain'], no_antialias=values['no_antialias'],
                    no_antialias_up=values['no_antialias_up'], crop_size=values['crop_size'],
                    load_size=values['load_size'],
                    stylegan2_G_num_downsampling=values['stylegan2_G_num_downsampling'],
                    init_weights=init_weights, G_output=values['G_output'], config_str=values['config_str'])
