"""StarGAN v2's networks (Choi et al., CVPR 2020) and Hneg_SRC's multi-modal generator.

Parameter names and shapes follow clovaai/stargan-v2 `core/model.py` and jcy132/Hneg_SRC
`Multimodal/core/model_src.py`, so their checkpoints load with `strict=True` once the `module.` prefix of
nn.DataParallel is stripped. The face-landmark high-pass path (`--w_hpf` > 0, which needs the FAN network)
is not built. `base_dim` (upstream: 2**14 // img_size) lets small images use few channels.
"""
import math

import torch
import torch.nn.functional as F
from torch import nn

from util.errors import ConfigError

from .layers import InstanceNorm2d, check_layer_indices
from .registry import _register, build

LEAKY_SLOPE = 0.2
MIN_IMG_SIZE = 16
MULTIMODAL_GENERATORS = {}


def register_multimodal_generator(name):
    """Decorator: `@register_multimodal_generator('stargan_v2')` on a function building a generator."""
    return _register(MULTIMODAL_GENERATORS, 'multi-modal generator', name)


def build_generator(name, **options):
    """Build the generator registered as `name`, passing it the `options` its builder names."""
    return build(MULTIMODAL_GENERATORS, 'multi-modal generator', name, **options)


def _leaky(x):
    return F.leaky_relu(x, LEAKY_SLOPE)


def base_channels(img_size, base_dim=None):
    """Channels after the first conv: `base_dim`, or upstream's 2**14 // img_size when None."""
    if not (isinstance(img_size, int) and img_size >= MIN_IMG_SIZE and img_size & (img_size - 1) == 0):
        raise ConfigError(f'img_size must be a power of two >= {MIN_IMG_SIZE} (StarGAN v2 halves it down to '
                         f'4 px); got {img_size!r}')
    if base_dim is None:
        return 2 ** 14 // img_size
    if not (isinstance(base_dim, int) and base_dim > 0):
        raise ConfigError(f'base_dim must be a positive int or None; got {base_dim!r}')
    return base_dim


def channel_ladder(base_dim, steps, max_conv_dim):
    """[base_dim, then doubled `steps` times, each capped at max_conv_dim]: channels around each down-sampling."""
    dims = [base_dim]
    for _ in range(steps):
        dims.append(min(dims[-1] * 2, max_conv_dim))
    return dims


def check_domains(y, num_domains, batch):
    """Domain labels: a long tensor of shape (batch,) with values in [0, num_domains). The values are checked
    where that costs nothing: on the CPU (the model checks a batch's labels there before moving them), not on a
    GPU (reading them back would wait for the device) nor under torch.compile (a graph break)."""
    if y.dtype != torch.long or y.shape != (batch,):
        raise ConfigError(f'domain labels y must be a long tensor of shape ({batch},); got {y.dtype} {tuple(y.shape)}')
    if y.device.type == 'cpu' and not torch.compiler.is_compiling():
        outside = sorted({int(v) for v in y.tolist() if not 0 <= v < num_domains})
        if outside:
            raise ConfigError(f'domain labels y must lie in [0, {num_domains}) (num_domains, --num_domains); '
                             f'got {outside}')


def _pick_domain(out, y):
    """(B, num_domains, ...) -> (B, ...): each sample's row of its own domain."""
    return out[torch.arange(y.shape[0], device=y.device), y]


def _check_w_hpf(w_hpf):
    if w_hpf != 0:
        raise ConfigError(f'--w_hpf {w_hpf}: the face-landmark high-pass path needs the FAN network, which is not '
                         'supported; use --w_hpf 0')


class ResBlk(nn.Module):
    """Pre-activation residual block, optional IN and 2x average-pool down-sampling; sum scaled by 1/√2."""

    def __init__(self, dim_in, dim_out, normalize=False, downsample=False):
        super().__init__()
        self.dim_out = dim_out
        self.resize = 0.5 if downsample else 1
        self.conv1 = nn.Conv2d(dim_in, dim_in, 3, 1, 1)
        self.conv2 = nn.Conv2d(dim_in, dim_out, 3, 1, 1)
        if normalize:
            self.norm1 = InstanceNorm2d(dim_in, affine=True)
            self.norm2 = InstanceNorm2d(dim_in, affine=True)
        if dim_in != dim_out:
            self.conv1x1 = nn.Conv2d(dim_in, dim_out, 1, 1, 0, bias=False)

    def _pool(self, x):
        return F.avg_pool2d(x, 2) if self.resize != 1 else x

    def _norm(self, name, x):
        return getattr(self, name)(x) if hasattr(self, name) else x

    def forward(self, x):
        skip = self.conv1x1(x) if hasattr(self, 'conv1x1') else x
        h = self.conv1(_leaky(self._norm('norm1', x)))
        h = self.conv2(_leaky(self._norm('norm2', self._pool(h))))
        return (self._pool(skip) + h) / math.sqrt(2)


class AdaIN(nn.Module):
    """Adaptive instance norm: (1 + γ(s)) · IN(x) + β(s), γ and β from one linear layer of the style."""

    def __init__(self, style_dim, num_features):
        super().__init__()
        self.fc = nn.Linear(style_dim, num_features * 2)

    def forward(self, x, s):
        gamma, beta = self.fc(s)[:, :, None, None].chunk(2, dim=1)  # (B, C, 1, 1) each
        return (1 + gamma) * F.instance_norm(x) + beta


class AdainResBlk(nn.Module):
    """Residual block of the decoder, AdaIN before each conv, optional nearest 2x up-sampling; sum / √2."""

    def __init__(self, dim_in, dim_out, style_dim=64, upsample=False):
        super().__init__()
        self.dim_out = dim_out
        self.resize = 2 if upsample else 1
        self.conv1 = nn.Conv2d(dim_in, dim_out, 3, 1, 1)
        self.conv2 = nn.Conv2d(dim_out, dim_out, 3, 1, 1)
        self.norm1 = AdaIN(style_dim, dim_in)
        self.norm2 = AdaIN(style_dim, dim_out)
        if dim_in != dim_out:
            self.conv1x1 = nn.Conv2d(dim_in, dim_out, 1, 1, 0, bias=False)

    def _up(self, x):
        return F.interpolate(x, scale_factor=2, mode='nearest') if self.resize != 1 else x

    def forward(self, x, s):
        skip = self._up(x)
        if hasattr(self, 'conv1x1'):
            skip = self.conv1x1(skip)
        h = self.conv1(self._up(_leaky(self.norm1(x, s))))
        h = self.conv2(_leaky(self.norm2(h, s)))
        return (skip + h) / math.sqrt(2)


class ConvBlk(nn.Module):
    """Hneg_SRC's plain block: IN, LeakyReLU, then a 4x4 stride-2 conv ('down') or nearest 2x + 3x3 conv ('up')."""

    def __init__(self, dim_in, dim_out, mode):
        super().__init__()
        if mode not in ('down', 'up'):
            raise ConfigError(f"ConvBlk mode must be 'down' or 'up'; got {mode!r}")
        self.dim_out = dim_out
        self.resize = 0.5 if mode == 'down' else 2
        self.norm1 = InstanceNorm2d(dim_in, affine=True)
        self.conv1 = nn.Conv2d(dim_in, dim_out, 4, 2, 1) if mode == 'down' else nn.Conv2d(dim_in, dim_out, 3, 1, 1)

    def forward(self, x, s=None):
        """`s` is ignored: the decoder passes the style to every block."""
        if self.resize == 2:
            x = F.interpolate(x, scale_factor=2, mode='nearest')
        return self.conv1(_leaky(self.norm1(x)))


class StyleGenerator(nn.Module):
    """from_rgb, encoder blocks, style-modulated decoder blocks, to_rgb: StarGAN v2's G(x, s).

    The encoder list is registered as `encode` (upstream's state-dict keys `encode.N.*`); the method
    `encode(x, layers)` shadows that attribute, so the blocks are reached as `self.encoder`.
    """

    def __init__(self, img_size, base_dim, encode_blocks, decode_blocks):
        super().__init__()
        self.img_size = img_size
        self.from_rgb = nn.Conv2d(3, base_dim, 3, 1, 1)
        self.encode = nn.ModuleList(encode_blocks)  # stored in _modules['encode']
        self.decode = nn.ModuleList(decode_blocks)
        self.to_rgb = nn.Sequential(InstanceNorm2d(base_dim, affine=True), nn.LeakyReLU(LEAKY_SLOPE),
                                    nn.Conv2d(base_dim, 3, 1, 1, 0))
        self.feature_sizes = []  # spatial size of each encoder block's output at img_size
        size = img_size
        for block in self.encoder:
            size = int(size * block.resize)
            self.feature_sizes.append(size)

    @property
    def encoder(self):
        return self._modules['encode']

    def forward(self, x, s):
        """(B, 3, H, W) images, (B, style_dim) styles -> (B, 3, H, W) images."""
        x = self.from_rgb(x)
        for block in self.encoder:
            x = block(x)
        for block in self.decode:
            x = block(x, s)
        return self.to_rgb(x)

    def encode(self, x, layers):
        """Outputs of the encoder blocks at indices `layers` (0 = encode[0]), in that order; no decoder pass."""
        check_layer_indices(layers, len(self.encoder), '--mm_nce_layers')
        if not layers:
            return []
        tapped = {}
        x = self.from_rgb(x)
        for index in range(max(layers) + 1):
            x = self.encoder[index](x)
            tapped[index] = x
        return [tapped[i] for i in layers]

    def default_feature_layers(self):
        """The official rule (Hneg_SRC): the encoder blocks whose output is img_size / 4 px wide."""
        layers = [i for i, size in enumerate(self.feature_sizes) if size == self.img_size // 4]
        if not layers:
            raise ConfigError(f'no encoder block outputs img_size/4 = {self.img_size // 4} px at img_size '
                             f'{self.img_size} (block sizes {self.feature_sizes}); set --mm_nce_layers')
        return layers

    def feature_channels(self, layers):
        check_layer_indices(layers, len(self.encoder), '--mm_nce_layers')
        return [self.encoder[i].dim_out for i in layers]


@register_multimodal_generator('stargan_v2')
def stargan_v2(img_size, style_dim=64, max_conv_dim=512, base_dim=None, w_hpf=0):
    """clovaai's generator: log2(img_size) - 4 down-sampling ResBlks, 2 bottleneck ResBlks, mirrored decoder."""
    _check_w_hpf(w_hpf)
    dims = channel_ladder(base_channels(img_size, base_dim), int(math.log2(img_size)) - 4, max_conv_dim)
    pairs = list(zip(dims, dims[1:]))
    encode = [ResBlk(a, b, normalize=True, downsample=True) for a, b in pairs]
    encode += [ResBlk(dims[-1], dims[-1], normalize=True) for _ in range(2)]
    decode = [AdainResBlk(dims[-1], dims[-1], style_dim) for _ in range(2)]
    decode += [AdainResBlk(b, a, style_dim, upsample=True) for a, b in reversed(pairs)]
    return StyleGenerator(img_size, dims[0], encode, decode)


@register_multimodal_generator('hneg_src')
def hneg_src(img_size, style_dim=64, max_conv_dim=512, base_dim=None, w_hpf=0):
    """Hneg_SRC's variant: 2 down-sampling ConvBlks and 4 bottleneck ResBlks; decoder 4 AdainResBlks, 2 up ConvBlks."""
    _check_w_hpf(w_hpf)
    dims = channel_ladder(base_channels(img_size, base_dim), 2, max_conv_dim)
    pairs = list(zip(dims, dims[1:]))
    encode = [ConvBlk(a, b, 'down') for a, b in pairs]
    encode += [ResBlk(dims[-1], dims[-1], normalize=True) for _ in range(4)]
    decode = [AdainResBlk(dims[-1], dims[-1], style_dim) for _ in range(4)]
    decode += [ConvBlk(b, a, 'up') for a, b in reversed(pairs)]
    return StyleGenerator(img_size, dims[0], encode, decode)


class MappingNetwork(nn.Module):
    """F(z, y): a shared 4-layer MLP, then one 4-layer head per domain; returns the head of domain y."""

    def __init__(self, latent_dim=16, style_dim=64, num_domains=2, hidden_dim=512):
        super().__init__()
        self.num_domains = num_domains
        shared = [nn.Linear(latent_dim, hidden_dim), nn.ReLU()]
        for _ in range(3):
            shared += [nn.Linear(hidden_dim, hidden_dim), nn.ReLU()]
        self.shared = nn.Sequential(*shared)
        self.unshared = nn.ModuleList()
        for _ in range(num_domains):
            head = []
            for _ in range(3):
                head += [nn.Linear(hidden_dim, hidden_dim), nn.ReLU()]
            self.unshared.append(nn.Sequential(*head, nn.Linear(hidden_dim, style_dim)))

    def forward(self, z, y):
        """(B, latent_dim) codes, (B,) domains -> (B, style_dim) styles."""
        check_domains(y, self.num_domains, z.shape[0])
        h = self.shared(z)
        return _pick_domain(torch.stack([head(h) for head in self.unshared], dim=1), y)  # from (B, D, style_dim)


def _downsampling_trunk(img_size, max_conv_dim, base_dim):
    """Shared body of E and D: conv, ResBlks down to 4 px, LeakyReLU, 4x4 conv to 1 px, LeakyReLU."""
    dims = channel_ladder(base_channels(img_size, base_dim), int(math.log2(img_size)) - 2, max_conv_dim)
    layers = [nn.Conv2d(3, dims[0], 3, 1, 1)]
    layers += [ResBlk(a, b, downsample=True) for a, b in zip(dims, dims[1:])]
    layers += [nn.LeakyReLU(LEAKY_SLOPE), nn.Conv2d(dims[-1], dims[-1], 4, 1, 0), nn.LeakyReLU(LEAKY_SLOPE)]
    return layers, dims[-1]


def _check_images(x, img_size, what):
    if x.dim() != 4 or x.shape[1] != 3 or x.shape[2:] != (img_size, img_size):
        raise ConfigError(f'{what} takes (B, 3, {img_size}, {img_size}) images (img_size {img_size}); '
                         f'got {tuple(x.shape)}')


class StyleEncoder(nn.Module):
    """E(x, y): a down-sampling ResBlk trunk, then one linear head per domain; returns the style of domain y."""

    def __init__(self, img_size=256, style_dim=64, num_domains=2, max_conv_dim=512, base_dim=None):
        super().__init__()
        self.img_size, self.num_domains = img_size, num_domains
        layers, dim = _downsampling_trunk(img_size, max_conv_dim, base_dim)
        self.shared = nn.Sequential(*layers)
        self.unshared = nn.ModuleList([nn.Linear(dim, style_dim) for _ in range(num_domains)])

    def forward(self, x, y):
        """(B, 3, img_size, img_size) images, (B,) domains -> (B, style_dim) styles."""
        _check_images(x, self.img_size, 'StyleEncoder')
        check_domains(y, self.num_domains, x.shape[0])
        h = self.shared(x).flatten(1)  # (B, C)
        return _pick_domain(torch.stack([head(h) for head in self.unshared], dim=1), y)


class Discriminator(nn.Module):
    """D(x, y): the same trunk, then a 1x1 conv to one real/fake logit per domain; returns domain y's."""

    def __init__(self, img_size=256, num_domains=2, max_conv_dim=512, base_dim=None):
        super().__init__()
        self.img_size, self.num_domains = img_size, num_domains
        layers, dim = _downsampling_trunk(img_size, max_conv_dim, base_dim)
        self.main = nn.Sequential(*layers, nn.Conv2d(dim, num_domains, 1, 1, 0))

    def forward(self, x, y):
        """(B, 3, img_size, img_size) images, (B,) domains -> (B,) logits."""
        _check_images(x, self.img_size, 'Discriminator')
        check_domains(y, self.num_domains, x.shape[0])
        return _pick_domain(self.main(x).flatten(1), y)  # from (B, D)


def he_init(module):
    """StarGAN v2's initialisation, for `net.apply(he_init)`: Kaiming normal (fan_in, ReLU) weights of convs and
    linear layers, zero biases."""
    if isinstance(module, (nn.Conv2d, nn.Linear)):
        nn.init.kaiming_normal_(module.weight, mode='fan_in', nonlinearity='relu')
        if module.bias is not None:
            nn.init.zeros_(module.bias)
