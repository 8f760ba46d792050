"""Fast GAN Compression's once-for-all student (Li et al., "GAN Compression", CVPR 2020; Table 3 of the paper).

API (state-dict keys and child indices are gan-compression's `super_mobile_resnet_9blocks`):

* `SuperMobileResnetGenerator(input_nc, output_nc, ngf, n_blocks=9, norm='instance', dropout_rate=0.0,
  padding_type='reflect', output='tanh')`: every convolution keeps weights for the widest network and uses
  the first k channels of the current configuration. `net.set_config(config)` (8 ints or '16_16_32_...';
  returns net) / `net.config` (a tuple); the default configuration is the largest, (ngf,) * 8.
  `forward(x, layers=None, encode_only=False)` as every generator here (generators.py); children 9, 12, 15
  and 18 are the encoder's last ReLU and the outputs of residual blocks 3, 6 and 9 (the distilled layers),
  with `feature_channels(config)` = 4 * config[2] channels. The input is clamped to [-1, 1] as upstream.
* `SubMobileResnetGenerator(input_nc, output_nc, config, ...)`: the plain network of one configuration, same
  keys and child indices; `export_subnet(super_net, config)` copies the weight slices into one, which then
  computes exactly what the super-net computes under that configuration.
* A configuration `c0..c7`: first conv c0, stride-2 convs 2*c1 and 4*c2 (the residual stream), inner widths
  4*c3 / 4*c4 / 4*c5 of blocks 1-3 / 4-6 / 7-9, transposed convs 2*c6 and c7. `CONFIG_SETS` holds the
  choices per position by name; `ChannelConfigs(name_or_choices, seed)` samples them with its own RNG.
* `encode_config((16, 16, 32, ...)) -> '16_16_32_...'`, `decode_config(s) -> tuple`.
"""
import random

import torch
import torch.nn as nn
import torch.nn.functional as F

from util.errors import ConfigError

from .generators import G_OUTPUTS, residual_tanh
from .layers import InstanceNorm2d, forward_with_features, get_norm_layer, pad_layer
from .registry import register_generator

CONFIG_LENGTH = 8
N_DOWNSAMPLING = 2

# choices per configuration position (gan-compression configs/resnet_configs.py; the last two for the CPU)
CONFIG_SETS = {
    'channels-64-cycleGAN': [[64, 48, 32, 24, 16]] * CONFIG_LENGTH,
    'channels-64-pix2pix': [[64, 56, 48, 40, 32, 24, 16]] * CONFIG_LENGTH,
    'channels-16': [[16, 12, 8, 6, 4]] * CONFIG_LENGTH,
    'channels-8': [[8, 4]] * CONFIG_LENGTH,
}

# the children of the super-net whose outputs are distilled (gan-compression's mapping_layers model.9..18)
DISTILL_LAYERS = (9, 12, 15, 18)


def encode_config(config):
    """(16, 16, 32, ...) -> '16_16_32_...'."""
    return '_'.join(str(int(c)) for c in config)


def decode_config(config):
    """'16_16_32_...' (or a sequence of ints) -> a tuple of CONFIG_LENGTH positive ints; anything else raises."""
    if isinstance(config, str):
        try:
            values = tuple(int(v) for v in config.split('_'))
        except ValueError:
            raise ConfigError(f'a channel configuration is {CONFIG_LENGTH} integers joined by "_" '
                             f'(e.g. 16_16_32_16_16_64_16_24), got {config!r}') from None
    else:
        values = tuple(int(v) for v in config)
    if len(values) != CONFIG_LENGTH or min(values) <= 0:
        raise ConfigError(f'a channel configuration has {CONFIG_LENGTH} positive widths, got {config!r}')
    return values


def feature_channels(config):
    """Channels of the student's features at DISTILL_LAYERS under `config` (the residual stream, 4 * c2)."""
    return 2 ** N_DOWNSAMPLING * decode_config(config)[2]


class ChannelConfigs:
    """The configuration space (one list of widths per position) with its own seeded RNG, so that runs that
    must see the same configuration sequence (baseline and +Ours) draw it independently of torch / numpy."""

    def __init__(self, choices, seed=None):
        if isinstance(choices, str):
            if choices not in CONFIG_SETS:
                raise ConfigError(f'unknown configuration set {choices!r}; valid names: {", ".join(CONFIG_SETS)}')
            self.name = choices
            choices = CONFIG_SETS[choices]
        else:
            self.name = None
        self.choices = [list(c) for c in choices]
        if len(self.choices) != CONFIG_LENGTH or not all(self.choices):
            raise ConfigError(f'a configuration set has {CONFIG_LENGTH} non-empty lists of widths')
        self.rng = random.Random(seed)

    def __len__(self):
        total = 1
        for c in self.choices:
            total *= len(c)
        return total

    def __contains__(self, config):
        config = decode_config(config)
        return all(v in c for v, c in zip(config, self.choices))

    def check(self, config):
        """`config` as a tuple, or an error naming the positions outside this set."""
        config = decode_config(config)
        bad = [i for i, (v, c) in enumerate(zip(config, self.choices)) if v not in c]
        if bad:
            raise ConfigError(f'configuration {encode_config(config)}: positions {bad} are not in the set '
                             f'{self.name or self.choices}')
        return config

    def largest(self):
        return tuple(max(c) for c in self.choices)

    def smallest(self):
        return tuple(min(c) for c in self.choices)

    @staticmethod
    def _weights(n, weighted_sample, strategy):
        """gan-compression's first-generation weights, growing along each list (toward its small widths)."""
        if weighted_sample <= 1.0001:
            return None
        if strategy == 'arithmetic':
            start = (n - 1) / (weighted_sample - 1)
            return [start + i for i in range(n)]
        if strategy == 'geometric':
            return [weighted_sample ** i for i in range(n)]
        raise ConfigError(f'unknown weight strategy {strategy!r}; valid names: arithmetic, geometric')

    def sample(self, weighted_sample=1.0, weight_strategy='arithmetic'):
        """One configuration, each position drawn independently (uniformly unless weighted_sample > 1)."""
        return tuple(self.rng.choices(c, weights=self._weights(len(c), weighted_sample, weight_strategy))[0]
                     for c in self.choices)

    def sample_position(self, i):
        return self.rng.choice(self.choices[i])

    def mutate(self, config, prob):
        """Each position redrawn from its choices with probability `prob`."""
        return tuple(self.sample_position(i) if self.rng.random() < prob else v
                     for i, v in enumerate(decode_config(config)))

    def crossover(self, first, second):
        """Each position taken from `first` or `second` with probability 1/2."""
        return tuple(self.rng.choice([a, b]) for a, b in zip(decode_config(first), decode_config(second)))

    def state_dict(self):
        """The RNG state as JSON-ready lists (load_state_dict restores it exactly)."""
        version, internal, gauss = self.rng.getstate()
        return {'version': version, 'internal': list(internal), 'gauss_next': gauss}

    def load_state_dict(self, state):
        self.rng.setstate((state['version'], tuple(state['internal']), state['gauss_next']))


class SuperConv2d(nn.Conv2d):
    """A convolution using weight[:out, :in] for an input of `in` channels and `self.active_out` outputs."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.active_out = self.out_channels

    def forward(self, x):
        weight = self.weight[:self.active_out, :x.shape[1]]  # (out, in, k, k)
        bias = None if self.bias is None else self.bias[:self.active_out]
        return F.conv2d(x, weight, bias, self.stride, self.padding, self.dilation, self.groups)


class SuperConvTranspose2d(nn.ConvTranspose2d):
    """A transposed convolution using weight[:in, :out] (its weight is (in, out, k, k))."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.active_out = self.out_channels

    def forward(self, x):
        weight = self.weight[:x.shape[1], :self.active_out]  # (in, out, k, k)
        bias = None if self.bias is None else self.bias[:self.active_out]
        return F.conv_transpose2d(x, weight, bias, self.stride, self.padding, self.output_padding, self.groups,
                                  self.dilation)


class SlicedInstanceNorm2d(nn.InstanceNorm2d):
    """Non-affine instance norm of any number of channels (the same F.instance_norm call as its parent, without
    the warning about a channel count other than num_features)."""

    def forward(self, x):
        if self.affine or self.track_running_stats:
            raise ConfigError('a super-net normalises a variable number of channels: only non-affine instance norm')
        return F.instance_norm(x, None, None, None, None, True, self.momentum, self.eps)


def _separable(in_channels, out_channels, padding):
    """Depthwise 3x3, non-affine instance norm, pointwise 1x1 (keys conv.0 / conv.2, both with bias)."""
    return nn.Sequential(
        nn.Conv2d(in_channels, in_channels, kernel_size=3, padding=padding, groups=in_channels, bias=True),
        InstanceNorm2d(in_channels),
        nn.Conv2d(in_channels, out_channels, kernel_size=1, bias=True))


class SeparableConv2d(nn.Module):
    def __init__(self, in_channels, out_channels, padding=0):
        super().__init__()
        self.conv = _separable(in_channels, out_channels, padding)

    def forward(self, x):
        return self.conv(x)


class SuperSeparableConv2d(SeparableConv2d):
    """The separable convolution on the first x.shape[1] channels, with `active_out` outputs."""

    def __init__(self, in_channels, out_channels, padding=0):
        super().__init__(in_channels, out_channels, padding)
        self.conv[1] = SlicedInstanceNorm2d(in_channels)
        self.active_out = out_channels

    def forward(self, x):
        c = x.shape[1]
        out = self.active_out
        depthwise, norm, pointwise = self.conv
        x = F.conv2d(x, depthwise.weight[:c], depthwise.bias[:c], depthwise.stride, depthwise.padding,
                     depthwise.dilation, c)  # (B, c, H, W)
        x = norm(x)
        return F.conv2d(x, pointwise.weight[:out, :c], pointwise.bias[:out])  # (B, out, H, W)


class MobileResnetBlock(nn.Module):
    """x + [pad, sep-conv(dim->inner), norm, ReLU, dropout, pad, sep-conv(inner->dim), norm](x); keys
    `conv_block.1` / `conv_block.6` as gan-compression's (its dropout module is always present)."""

    def __init__(self, dim, inner, norm_layer, dropout_rate=0.0, padding_type='reflect', conv=SeparableConv2d):
        super().__init__()
        padding = 1 if padding_type == 'zero' else 0
        block = []
        for first, (c_in, c_out) in zip((True, False), ((dim, inner), (inner, dim))):
            if padding_type != 'zero':
                block.append(pad_layer(padding_type, 1))
            block += [conv(c_in, c_out, padding=padding), norm_layer(c_out)]
            if first:
                block += [nn.ReLU(True), nn.Dropout(dropout_rate)]
        self.conv_block = nn.Sequential(*block)

    def forward(self, x):
        return x + self.conv_block(x)


def _check_arguments(norm, output, n_blocks):
    if norm == 'batch':
        raise ConfigError('the mobile ResNet generators support --normG instance or none (batch norm would need '
                         "statistics per configuration, which gan-compression's ResNet students do not have)")
    if output not in G_OUTPUTS:
        raise ConfigError(f'output must be one of {", ".join(G_OUTPUTS)}, got {output!r}')
    if n_blocks < 0:
        raise ConfigError(f'n_blocks must be >= 0, got {n_blocks}')


def _block_group(i, n_blocks):
    """Index (0, 1, 2) of the configuration's inner width used by residual block i (thirds, as upstream)."""
    third = n_blocks // 3
    return min(i // third, 2) if third else 2


def _layers(input_nc, output_nc, widths, n_blocks, norm, dropout_rate, padding_type, super_net):
    """The children of a mobile ResNet generator; `widths` = (c0, ..., c7) (the maxima for a super-net)."""
    norm_layer = SlicedInstanceNorm2d if super_net and norm == 'instance' else get_norm_layer(norm)
    use_bias = norm == 'instance'
    conv = SuperConv2d if super_net else nn.Conv2d
    conv_t = SuperConvTranspose2d if super_net else nn.ConvTranspose2d
    sep = SuperSeparableConv2d if super_net else SeparableConv2d
    c0, c1, c2, c3, c4, c5, c6, c7 = widths
    down = [c0, 2 * c1, 4 * c2]
    model = [pad_layer('reflect', 3), conv(input_nc, c0, kernel_size=7, padding=0, bias=use_bias),
             norm_layer(c0), nn.ReLU(True)]
    for c_in, c_out in zip(down[:-1], down[1:]):
        model += [conv(c_in, c_out, kernel_size=3, stride=2, padding=1, bias=use_bias), norm_layer(c_out),
                  nn.ReLU(True)]
    inner = (4 * c3, 4 * c4, 4 * c5)
    model += [MobileResnetBlock(down[-1], inner[_block_group(i, n_blocks)], norm_layer, dropout_rate=dropout_rate,
                                padding_type=padding_type, conv=sep) for i in range(n_blocks)]
    up = [down[-1], 2 * c6, c7]
    for c_in, c_out in zip(up[:-1], up[1:]):
        model += [conv_t(c_in, c_out, kernel_size=3, stride=2, padding=1, output_padding=1, bias=use_bias),
                  norm_layer(c_out), nn.ReLU(True)]
    model += [pad_layer('reflect', 3), conv(c7, output_nc, kernel_size=7, padding=0), nn.Tanh()]
    return model


class _MobileResnetBase(nn.Module):
    def _init(self, model, output):
        self.model = nn.Sequential(*model)
        self.num_feature_layers = len(self.model)
        self.residual_output = output == 'residual'

    def forward(self, x, layers=None, encode_only=False):
        x = x.clamp(-1, 1)  # as gan-compression's generators
        children = self.model
        if self.residual_output:
            children = list(self.model)
            children[-1] = lambda v: residual_tanh(v, x)
        return forward_with_features(children, x, layers, encode_only)


class SuperMobileResnetGenerator(_MobileResnetBase):
    """gan-compression's `super_mobile_resnet_9blocks`: children 0 pad, 1-3 conv-norm-ReLU, 4-6 and 7-9
    stride-2 conv-norm-ReLU, 10.. residual blocks, then 2 x (transposed conv, norm, ReLU), pad, conv, tanh."""

    def __init__(self, input_nc, output_nc, ngf=64, n_blocks=9, norm='instance', dropout_rate=0.0,
                 padding_type='reflect', output='tanh'):
        super().__init__()
        _check_arguments(norm, output, n_blocks)
        self.ngf = ngf
        self.n_blocks = n_blocks
        self.build_args = dict(input_nc=input_nc, output_nc=output_nc, n_blocks=n_blocks, norm=norm,
                               dropout_rate=dropout_rate, padding_type=padding_type, output=output)
        self._init(_layers(input_nc, output_nc, (ngf,) * CONFIG_LENGTH, n_blocks, norm, dropout_rate,
                           padding_type, super_net=True), output)
        self.set_config((ngf,) * CONFIG_LENGTH)

    def set_config(self, config):
        """Use the first channels of every layer as `config` says (8 ints or their '_' string); returns self."""
        config = decode_config(config)
        if max(config) > self.ngf:
            raise ConfigError(f'configuration {encode_config(config)} is wider than the super-net (ngf {self.ngf})')
        c0, c1, c2, c3, c4, c5, c6, c7 = config
        convs = [m for m in self.model if isinstance(m, SuperConv2d)]
        for conv, width in zip(convs, (c0, 2 * c1, 4 * c2)):
            conv.active_out = width
        blocks = [m for m in self.model if isinstance(m, MobileResnetBlock)]
        for i, block in enumerate(blocks):
            first, second = [m for m in block.conv_block if isinstance(m, SuperSeparableConv2d)]
            first.active_out = 4 * (c3, c4, c5)[_block_group(i, self.n_blocks)]
            second.active_out = 4 * c2  # back to the stream's width
        ups = [m for m in self.model if isinstance(m, SuperConvTranspose2d)]
        for conv, width in zip(ups, (2 * c6, c7)):
            conv.active_out = width
        self.config = config
        return self


class SubMobileResnetGenerator(_MobileResnetBase):
    """gan-compression's `sub_mobile_resnet_9blocks`: the plain network of one configuration."""

    def __init__(self, input_nc, output_nc, config, n_blocks=9, norm='instance', dropout_rate=0.0,
                 padding_type='reflect', output='tanh'):
        super().__init__()
        _check_arguments(norm, output, n_blocks)
        self.config = decode_config(config)
        self._init(_layers(input_nc, output_nc, self.config, n_blocks, norm, dropout_rate, padding_type,
                           super_net=False), output)


@torch.no_grad()
def export_subnet(super_net, config):
    """The SubMobileResnetGenerator of `config` holding the super-net's weight slices (first channels of
    every dimension, as gan-compression's export.py); same outputs as super_net.set_config(config)."""
    config = decode_config(config)
    if max(config) > super_net.ngf:
        raise ConfigError(f'configuration {encode_config(config)} is wider than the super-net (ngf {super_net.ngf})')
    sub = SubMobileResnetGenerator(config=config, **super_net.build_args)
    source = super_net.state_dict()
    state = {}
    for key, target in sub.state_dict().items():
        state[key] = source[key][tuple(slice(0, n) for n in target.shape)].clone()
    sub.load_state_dict(state, strict=True)
    return sub.to(next(super_net.parameters()).device)


@register_generator('super_mobile_resnet_9blocks')
def build_super_mobile_resnet(input_nc, output_nc, ngf, norm='instance', use_dropout=False, G_output='tanh',
                              config_str=None):
    net = SuperMobileResnetGenerator(input_nc, output_nc, ngf, n_blocks=9, norm=norm,
                                     dropout_rate=0.5 if use_dropout else 0.0, output=G_output)
    return net.set_config(config_str) if config_str else net


@register_generator('sub_mobile_resnet_9blocks')
def build_sub_mobile_resnet(input_nc, output_nc, norm='instance', use_dropout=False, G_output='tanh',
                            config_str=None):
    if not config_str:
        raise ConfigError('--netG sub_mobile_resnet_9blocks needs --config_str, the 8 channel widths of the '
                         'sub-net (e.g. 16_16_32_16_16_64_16_24)')
    return SubMobileResnetGenerator(input_nc, output_nc, config_str, n_blocks=9, norm=norm,
                                    dropout_rate=0.5 if use_dropout else 0.0, output=G_output)
