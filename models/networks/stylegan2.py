"""StyleGAN2-style generator and discriminator used by single-image translation (SinCUT).

A pure-PyTorch version of the networks CUT builds for `--netG stylegan2 | smallstylegan2` and
`--netD stylegan2` (layers after Karras et al., "Analyzing and Improving the Image Quality of StyleGAN",
CVPR 2020). Module nesting, attribute names and parameter/buffer shapes follow CUT's
`models/stylegan_networks.py`, so official SinCUT and Hneg_SRC single-image checkpoints load with
`strict=True`. Both networks keep their own initialisation (N(0, 1) weights scaled at run time, zero
biases), as CUT's `init_net(..., initialize_weights=False)` does for them.
"""
import math

import torch
import torch.nn.functional as F
from torch import nn

from util.errors import ConfigError

from .layers import forward_with_features
from .registry import register_discriminator, register_generator

BLUR_TAPS = (1, 3, 3, 1)
LEAKY_SLOPE = 0.2
LEAKY_GAIN = math.sqrt(2)
VALID_RESOLUTIONS = tuple(2 ** i for i in range(2, 11))  # 4 .. 1024 px: the entries of CUT's channel tables
MIN_RESOLUTION = VALID_RESOLUTIONS[0]


def scaled_leaky_relu(x, bias):
    """StyleGAN2's "fused" activation: leaky ReLU(x + bias) times √2, which keeps unit variance."""
    return F.leaky_relu(x + bias, LEAKY_SLOPE) * LEAKY_GAIN


def blur_kernel(gain=1.0):
    """4x4 binomial low-pass filter (outer product of BLUR_TAPS) summing to `gain`."""
    taps = torch.tensor(BLUR_TAPS, dtype=torch.float32)
    kernel = torch.outer(taps, taps)
    return kernel * (gain / kernel.sum())


def fir_filter2d(x, kernel, pad):
    """Zero-pad both spatial axes by `pad` = (before, after), then convolve each channel with `kernel`.

    This is upfirdn2d with up = down = 1, written with plain torch ops.
    """
    channels = x.shape[1]
    x = F.pad(x, (pad[0], pad[1], pad[0], pad[1]))  # (B, C, H + p0 + p1, W + p0 + p1)
    weight = kernel.flip(0, 1).expand(channels, 1, *kernel.shape)  # (C, 1, kh, kw), convolution not correlation
    return F.conv2d(x, weight, groups=channels)  # (B, C, H + p0 + p1 - kh + 1, ...)


def network_resolution(crop_size, load_size=None):
    """CUT sizes the StyleGAN2 channel tables for the power of two nearest min(load_size, crop_size)."""
    size = crop_size if load_size is None else min(load_size, crop_size)
    return 2 ** round(math.log2(size))


def _check_resolution(resolution, what):
    if resolution not in VALID_RESOLUTIONS:
        raise ConfigError(f'StyleGAN2 networks need {what} in {list(VALID_RESOLUTIONS)}; got {resolution} '
                         '(set by --crop_size, --load_size and --stylegan2_G_num_downsampling)')


def generator_channels(resolution, ngf):
    """Generator channels at `resolution` (CUT: round(16384 / res * ngf / 32), at most 512 up to 32 px)."""
    _check_resolution(resolution, 'every generator resolution')
    channels = int(round(16384 // resolution * (ngf / 32)))
    return min(512, channels) if resolution <= 32 else channels


def discriminator_channels(resolution, ndf):
    """Discriminator channels at `resolution` (CUT: int(16384 / res * ndf / 64), at most 384 up to 32 px)."""
    _check_resolution(resolution, 'the discriminator resolution')
    channels = int(16384 // resolution * (ndf / 64))
    return min(384, channels) if resolution <= 32 else channels


class Blur(nn.Module):
    """Anti-aliasing FIR filter applied before strided convs and after transposed convs."""

    def __init__(self, pad, gain=1.0):
        super().__init__()
        self.register_buffer('kernel', blur_kernel(gain))
        self.pad = pad

    def forward(self, x):
        return fir_filter2d(x, self.kernel, self.pad)


class EqualConv2d(nn.Module):
    """Conv with equalized learning rate: N(0, 1) weights times 1/√fan_in at run time (Karras et al. 2018, §4.1)."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, bias=True):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.scale = 1 / math.sqrt(in_channels * kernel_size ** 2)
        self.stride = stride
        self.padding = padding

    def forward(self, x):
        return F.conv2d(x, self.weight * self.scale, self.bias, stride=self.stride, padding=self.padding)


class EqualLinear(nn.Module):
    """Linear layer with equalized learning rate, optionally followed by the scaled leaky ReLU."""

    def __init__(self, in_features, out_features, activate=False):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_features, in_features))
        self.bias = nn.Parameter(torch.zeros(out_features))
        self.scale = 1 / math.sqrt(in_features)
        self.activate = activate

    def forward(self, x):
        if self.activate:
            return scaled_leaky_relu(F.linear(x, self.weight * self.scale), self.bias)
        return F.linear(x, self.weight * self.scale, self.bias)


class FusedLeakyReLU(nn.Module):
    """Per-channel bias followed by the scaled leaky ReLU."""

    def __init__(self, channels):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(1, channels, 1, 1))

    def forward(self, x):
        return scaled_leaky_relu(x, self.bias)


class ConvLayer(nn.Sequential):
    """[Blur ->] EqualConv2d [-> FusedLeakyReLU]. Activated layers carry their bias in the activation,
    plain ones have none; the child indices are part of the checkpoint keys."""

    def __init__(self, in_channels, out_channels, kernel_size, downsample=False, activate=True):
        layers = []
        if downsample:
            p = len(BLUR_TAPS) - 2 + kernel_size - 1
            layers.append(Blur(pad=((p + 1) // 2, p // 2)))
        layers.append(EqualConv2d(in_channels, out_channels, kernel_size,
                                  stride=2 if downsample else 1,
                                  padding=0 if downsample else kernel_size // 2,
                                  bias=False))
        if activate:
            layers.append(FusedLeakyReLU(out_channels))
        super().__init__(*layers)


class ResBlock(nn.Module):
    """Residual block of the StyleGAN2 discriminator (Karras et al. 2020, Fig. 7): (main + skip) / √2."""

    def __init__(self, in_channels, out_channels, downsample=True):
        super().__init__()
        self.conv1 = ConvLayer(in_channels, in_channels, 3)
        self.conv2 = ConvLayer(in_channels, out_channels, 3, downsample=downsample)
        if in_channels != out_channels or downsample:
            self.skip = ConvLayer(in_channels, out_channels, 1, downsample=downsample, activate=False)
        else:
            self.skip = nn.Identity()

    def forward(self, x):
        return (self.conv2(self.conv1(x)) + self.skip(x)) / math.sqrt(2)


class DemodulatedUpConv2d(nn.Module):
    """2x upsampling conv with weight demodulation (Karras et al. 2020, Eq. 3) and no style input:
    CUT's decoder modulates by 1, so every sample shares one normalised kernel."""

    def __init__(self, in_channels, out_channels, kernel_size=3):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(1, out_channels, in_channels, kernel_size, kernel_size))
        self.scale = 1 / math.sqrt(in_channels * kernel_size ** 2)
        p = len(BLUR_TAPS) - 2 - (kernel_size - 1)
        self.blur = Blur(pad=((p + 1) // 2 + 1, p // 2 + 1), gain=4)

    def forward(self, x):
        weight = self.scale * self.weight[0]  # (C_out, C_in, k, k)
        weight = weight * torch.rsqrt(weight.pow(2).sum(dim=(1, 2, 3), keepdim=True) + 1e-8)
        x = F.conv_transpose2d(x, weight.transpose(0, 1), stride=2)  # (B, C_out, 2H + k - 2, 2W + k - 2)
        return self.blur(x)  # (B, C_out, 2H, 2W)


class NoiseInjection(nn.Module):
    """Adds per-pixel Gaussian noise scaled by a learned weight (zero at start)."""

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        noise = x.new_empty(x.shape[0], 1, *x.shape[2:]).normal_()  # (B, 1, H, W)
        return x + self.weight * noise


class StyledUpConv(nn.Module):
    """Decoder upsampling block: demodulated up-conv, optional noise, bias + scaled leaky ReLU.
    The noise weight exists even when unused ('smallstylegan2'), as in CUT's checkpoints; it is then frozen,
    since DistributedDataParallel waits for a gradient of every trainable parameter."""

    def __init__(self, in_channels, out_channels, inject_noise=True):
        super().__init__()
        self.conv = DemodulatedUpConv2d(in_channels, out_channels)
        self.noise = NoiseInjection()
        self.noise.weight.requires_grad_(inject_noise)
        self.activate = FusedLeakyReLU(out_channels)
        self.inject_noise = inject_noise

    def forward(self, x):
        x = self.conv(x)
        if self.inject_noise:
            x = self.noise(x)
        return self.activate(x)


class BlockStack(nn.Module):
    """Runs blocks in order; they live under `.convs`, CUT's attribute name, hence its checkpoint keys."""

    def __init__(self, blocks):
        super().__init__()
        self.convs = nn.Sequential(*blocks)

    def forward(self, x):
        return self.convs(x)


def encoder_blocks(input_nc, ngf, resolution, num_downsampling, num_resblocks):
    """Identity (feature 0 is the input image), 1x1 conv, strided ResBlocks, then same-size ResBlocks."""
    blocks = [nn.Identity(), ConvLayer(input_nc, generator_channels(resolution, ngf), 1)]
    for _ in range(num_downsampling):
        blocks.append(ResBlock(generator_channels(resolution, ngf), generator_channels(resolution // 2, ngf)))
        resolution //= 2
    channels = generator_channels(resolution, ngf)
    blocks += [ResBlock(channels, channels, downsample=False) for _ in range(num_resblocks)]
    return blocks


def decoder_blocks(output_nc, ngf, resolution, num_downsampling, num_resblocks, inject_noise):
    """Same-size ResBlocks, upsampling styled convs back to `resolution`, then a 1x1 conv (activated, as in CUT)."""
    low = resolution // 2 ** num_downsampling
    channels = generator_channels(low, ngf)
    blocks = [ResBlock(channels, channels, downsample=False) for _ in range(num_resblocks)]
    for _ in range(num_downsampling):
        blocks.append(StyledUpConv(generator_channels(low, ngf), generator_channels(low * 2, ngf),
                                   inject_noise=inject_noise))
        low *= 2
    blocks.append(ConvLayer(generator_channels(low, ngf), output_nc, 1))
    return blocks


class StyleGAN2Generator(nn.Module):
    """CUT's StyleGAN2-style encoder/decoder; PatchNCE features are the outputs of `encoder.convs` children."""

    keeps_own_init = True  # define_G / define_D leave its initialisation alone

    def __init__(self, input_nc, output_nc, ngf, resolution, num_downsampling, num_resblocks, inject_noise):
        super().__init__()
        if num_downsampling < 0:
            raise ConfigError(f'--stylegan2_G_num_downsampling must be >= 0; got {num_downsampling}')
        _check_resolution(resolution // 2 ** num_downsampling, 'the encoder output resolution')
        self.encoder = BlockStack(encoder_blocks(input_nc, ngf, resolution, num_downsampling, num_resblocks))
        self.decoder = BlockStack(decoder_blocks(output_nc, ngf, resolution, num_downsampling, num_resblocks,
                                                 inject_noise))
        self.num_feature_layers = len(self.encoder.convs)

    def forward(self, x, layers=None, encode_only=False):
        """No layers: the translated image. With layers: encoder features at those child indices
        (in the order asked), alone if `encode_only` (stopping after the deepest one), else (image, features)."""
        if not layers:
            if encode_only:
                raise ConfigError('encode_only=True needs a non-empty list of feature layers')
            return self.decoder(self.encoder(x))
        out = forward_with_features(self.encoder.convs, x, list(layers), encode_only)
        if encode_only:
            return out
        x, feats = out
        return self.decoder(x), feats


class StyleGAN2Discriminator(nn.Module):
    """StyleGAN2 residual discriminator (Karras et al. 2020, Fig. 7, without minibatch stddev): one logit per image."""

    keeps_own_init = True  # define_G / define_D leave its initialisation alone

    def __init__(self, input_nc, ndf, resolution):
        super().__init__()
        self.resolution = resolution
        blocks = [ConvLayer(input_nc, discriminator_channels(resolution, ndf), 1)]
        while resolution > MIN_RESOLUTION:
            blocks.append(ResBlock(discriminator_channels(resolution, ndf),
                                   discriminator_channels(resolution // 2, ndf)))
            resolution //= 2
        self.convs = nn.Sequential(*blocks)
        channels = discriminator_channels(MIN_RESOLUTION, ndf)
        self.final_conv = ConvLayer(channels, channels, 3)
        self.final_linear = nn.Sequential(
            EqualLinear(channels * MIN_RESOLUTION ** 2, channels, activate=True),
            EqualLinear(channels, 1),
        )

    def forward(self, x):
        if tuple(x.shape[2:]) != (self.resolution, self.resolution):
            raise ConfigError(f'this StyleGAN2 discriminator takes {self.resolution}x{self.resolution} images '
                             f'(the power of two nearest min(--load_size, --crop_size)); got '
                             f'{x.shape[2]}x{x.shape[3]}')
        x = self.final_conv(self.convs(x))  # (B, C, 4, 4)
        return self.final_linear(x.flatten(1))  # (B, 1)


def _build_generator(input_nc, output_nc, ngf, crop_size, load_size, num_downsampling, num_resblocks,
                     inject_noise):
    return StyleGAN2Generator(input_nc, output_nc, ngf,
                              resolution=network_resolution(crop_size, load_size),
                              num_downsampling=num_downsampling,
                              num_resblocks=num_resblocks,
                              inject_noise=inject_noise)


@register_generator('stylegan2')
def build_stylegan2_generator(input_nc, output_nc, ngf, crop_size=256, load_size=None, stylegan2_G_num_downsampling=1):
    """SinCUT's generator: 3 ResBlocks each side of the bottleneck, noise in the upsampling convs (norm,
    dropout and antialiasing flags do not apply, as in CUT)."""
    return _build_generator(input_nc, output_nc, ngf, crop_size, load_size, stylegan2_G_num_downsampling,
                            num_resblocks=3, inject_noise=True)


@register_generator('smallstylegan2')
def build_small_stylegan2_generator(input_nc, output_nc, ngf, crop_size=256, load_size=None,
                                    stylegan2_G_num_downsampling=1):
    """Like 'stylegan2' with 1 ResBlock each side and no noise injection."""
    return _build_generator(input_nc, output_nc, ngf, crop_size, load_size, stylegan2_G_num_downsampling,
                            num_resblocks=1, inject_noise=False)


@register_discriminator('stylegan2')
def build_stylegan2_discriminator(input_nc, ndf, crop_size=256, load_size=None):
    """SinCUT's discriminator; its depth follows the image size (n_layers_D and norm do not apply, as in CUT)."""
    return StyleGAN2Discriminator(input_nc, ndf, resolution=network_resolution(crop_size, load_size))
