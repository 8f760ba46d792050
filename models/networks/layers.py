"""Building blocks of the generators and discriminators as CUT defines them: anti-aliased resampling
(Zhang, "Making Convolutional Networks Shift-Invariant Again", ICML 2019), the normalisation choice and
the feature-tapping forward pass of the patch-wise losses. Plain torch layers only: CPU training uses
fast copies of some of them (cpu/kernels.py) only while their forward here is unchanged."""
import functools
from math import comb

import torch
import torch.nn as nn
import torch.nn.functional as F

from util.errors import ConfigError

NORM_TYPES = ('batch', 'instance', 'none')

PAD_LAYERS = {'reflect': nn.ReflectionPad2d, 'replicate': nn.ReplicationPad2d, 'zero': nn.ZeroPad2d}


def pad_layer(pad_type, padding):
    if pad_type not in PAD_LAYERS:
        raise ConfigError(f'unknown padding {pad_type!r}; valid names: {", ".join(PAD_LAYERS)}')
    return PAD_LAYERS[pad_type](padding)


def binomial_filter(filt_size):
    """(k, k) float32 blur kernel: outer product of the k-th row of Pascal's triangle, summing to 1."""
    if filt_size < 1:
        raise ConfigError(f'filt_size must be >= 1, got {filt_size}')
    row = torch.tensor([comb(filt_size - 1, i) for i in range(filt_size)], dtype=torch.float32)
    kernel = row[:, None] * row[None, :]
    return kernel / kernel.sum()


class Downsample(nn.Module):
    """Blur with a binomial filter, then subsample by `stride` (depthwise; buffer `filt` (C, 1, k, k))."""

    def __init__(self, channels, filt_size=3, stride=2, pad_type='reflect'):
        super().__init__()
        self.channels = channels
        self.filt_size = filt_size
        self.stride = stride
        before, after = (filt_size - 1) // 2, filt_size // 2
        self.pad_sizes = [before, after, before, after]
        self.pad = pad_layer(pad_type, self.pad_sizes)
        self.register_buffer('filt', binomial_filter(filt_size)[None, None].repeat(channels, 1, 1, 1))

    def forward(self, x):
        # (B, C, H, W) -> (B, C, ceil(H / stride), ceil(W / stride))
        return F.conv2d(self.pad(x), self.filt, stride=self.stride, groups=x.shape[1])


class Upsample(nn.Module):
    """Zero-insertion upsampling by `stride` followed by a binomial blur, as one transposed depthwise
    convolution (buffer `filt` (C, 1, k, k), scaled by stride**2 to keep the mean)."""

    def __init__(self, channels, filt_size=4, stride=2, pad_type='replicate'):
        super().__init__()
        self.channels = channels
        self.filt_size = filt_size
        self.stride = stride
        self.pad = pad_layer(pad_type, 1)
        kernel = binomial_filter(filt_size) * stride ** 2
        self.register_buffer('filt', kernel[None, None].repeat(channels, 1, 1, 1))

    def forward(self, x):
        # (B, C, H, W) -> (B, C, stride * H, stride * W)
        out = F.conv_transpose2d(self.pad(x), self.filt, stride=self.stride, padding=self.transposed_padding(),
                                 groups=x.shape[1])
        return self.crop(out)

    def transposed_padding(self):
        return 1 + (self.filt_size - 1) // 2

    def crop(self, out):
        end = None if self.filt_size % 2 else -1
        return out[:, :, 1:end, 1:end]


class InstanceNorm2d(nn.InstanceNorm2d):
    """nn.InstanceNorm2d whose statistics of a float16 input (--amp fp16) are taken in float32, where they
    cannot overflow; the same module and state-dict keys otherwise."""

    def forward(self, x):
        if x.dtype == torch.float16:
            return super().forward(x.float()).to(x.dtype)
        return super().forward(x)


class Identity(nn.Module):
    def forward(self, x):
        return x


def get_norm_layer(norm_type='instance'):
    """A constructor `norm_layer(num_channels) -> nn.Module` for 'batch' | 'instance' | 'none'.

    Batch norm learns an affine map and tracks running statistics; instance norm does neither (as CUT).
    """
    if norm_type == 'batch':
        return functools.partial(nn.BatchNorm2d, affine=True, track_running_stats=True)
    if norm_type == 'instance':
        return functools.partial(InstanceNorm2d, affine=False, track_running_stats=False)
    if norm_type == 'none':
        return lambda num_channels: Identity()
    raise ConfigError(f'unknown norm {norm_type!r}; valid names: {", ".join(NORM_TYPES)}')


def check_layer_indices(layers, num_layers, what='--nce_layers'):
    """The one range check of feature-layer indices (generators call it; the model reports it by flag)."""
    bad = [i for i in layers if not 0 <= i < num_layers]
    if bad:
        raise ConfigError(f'{what}: indices {bad} are outside the generator (valid: 0..{num_layers - 1})')


def forward_with_features(children, x, layers=None, encode_only=False):
    """Run `children` in order (a list of modules), tapping the outputs of those listed in `layers`.

    No layers: the output. `encode_only`: the tapped features (in the order of `layers`), stopping
    after the deepest one. Otherwise: (output, features) from the same single pass.
    """
    if not layers:
        for child in children:
            x = child(x)
        return x
    check_layer_indices(layers, len(children))
    wanted = set(layers)
    last = max(wanted) if encode_only else len(children) - 1
    tapped = {}
    for index in range(last + 1):
        x = children[index](x)
        if index in wanted:
            following = children[index + 1] if index + 1 < len(children) else None
            # an in-place activation next would overwrite the tapped tensor: keep its own copy
            tapped[index] = x.clone() if getattr(following, 'inplace', False) else x
    feats = [tapped[i] for i in layers]
    return feats if encode_only else (x, feats)
