"""PatchGAN discriminators with CUT's state-dict layout (anti-aliased by default), and `define_D`."""
import torch.nn as nn

from util.errors import ConfigError

from .init import init_weights as initialise
from .layers import NORM_TYPES, Downsample, get_norm_layer
from .registry import DISCRIMINATORS, build, register_discriminator


class NLayerDiscriminator(nn.Module):
    """PatchGAN (Isola et al.): `n_layers` strided 4x4 conv blocks, then two stride-1 convs to a logit map.

    With anti-aliasing (CUT's default) each stride-2 conv becomes a stride-1 conv followed by a
    blurred `Downsample`, which shifts the child indices (`model.2.filt`, `model.3.weight`, ...).
    """

    def __init__(self, input_nc, ndf=64, n_layers=3, norm='batch', no_antialias=False):
        super().__init__()
        norm_layer = get_norm_layer(norm)
        use_bias = norm == 'instance'
        kw, padw = 4, 1
        if no_antialias:
            model = [nn.Conv2d(input_nc, ndf, kernel_size=kw, stride=2, padding=padw),
                     nn.LeakyReLU(0.2, True)]
        else:
            model = [nn.Conv2d(input_nc, ndf, kernel_size=kw, stride=1, padding=padw),
                     nn.LeakyReLU(0.2, True), Downsample(ndf)]
        mult = 1
        for n in range(1, n_layers):
            prev, mult = mult, min(2 ** n, 8)
            c_in, c_out = ndf * prev, ndf * mult
            if no_antialias:
                model += [nn.Conv2d(c_in, c_out, kernel_size=kw, stride=2, padding=padw, bias=use_bias),
                          norm_layer(c_out), nn.LeakyReLU(0.2, True)]
            else:
                model += [nn.Conv2d(c_in, c_out, kernel_size=kw, stride=1, padding=padw, bias=use_bias),
                          norm_layer(c_out), nn.LeakyReLU(0.2, True), Downsample(c_out)]
        prev, mult = mult, min(2 ** n_layers, 8)
        model += [nn.Conv2d(ndf * prev, ndf * mult, kernel_size=kw, stride=1, padding=padw, bias=use_bias),
                  norm_layer(ndf * mult), nn.LeakyReLU(0.2, True),
                  nn.Conv2d(ndf * mult, 1, kernel_size=kw, stride=1, padding=padw)]
        self.model = nn.Sequential(*model)

    def forward(self, x):
        # (B, C, H, W) -> (B, 1, H', W') real/fake logits, one per receptive-field patch
        return self.model(x)


class PixelDiscriminator(nn.Module):
    """1x1 PatchGAN: classifies each pixel independently (keys `net.<i>`)."""

    def __init__(self, input_nc, ndf=64, norm='batch'):
        super().__init__()
        norm_layer = get_norm_layer(norm)
        use_bias = norm == 'instance'
        self.net = nn.Sequential(
            nn.Conv2d(input_nc, ndf, kernel_size=1, stride=1, padding=0),
            nn.LeakyReLU(0.2, True),
            nn.Conv2d(ndf, ndf * 2, kernel_size=1, stride=1, padding=0, bias=use_bias),
            norm_layer(ndf * 2),
            nn.LeakyReLU(0.2, True),
            nn.Conv2d(ndf * 2, 1, kernel_size=1, stride=1, padding=0, bias=use_bias))

    def forward(self, x):
        # (B, C, H, W) -> (B, 1, H, W)
        return self.net(x)


@register_discriminator('basic')
def basic(input_nc, ndf, norm='instance', no_antialias=False):
    return NLayerDiscriminator(input_nc, ndf, n_layers=3, norm=norm, no_antialias=no_antialias)


@register_discriminator('n_layers')
def n_layers(input_nc, ndf, n_layers_D=3, norm='instance', no_antialias=False):
    return NLayerDiscriminator(input_nc, ndf, n_layers=n_layers_D, norm=norm, no_antialias=no_antialias)


@register_discriminator('pixel')
def pixel(input_nc, ndf, norm='instance'):
    return PixelDiscriminator(input_nc, ndf, norm=norm)


def define_D(input_nc, ndf, netD, n_layers_D=3, norm='instance', init_type='xavier', init_gain=0.02,
             no_antialias=False, crop_size=256, load_size=None, init_weights=True):
    """Build the discriminator registered as `netD` on the CPU and initialise its weights (networks that
    set `keeps_own_init` keep theirs, as in CUT); each builder receives the arguments its signature names."""
    if norm not in NORM_TYPES:
        raise ConfigError(f'unknown norm {norm!r}; valid names: {", ".join(NORM_TYPES)}')
    net = build(DISCRIMINATORS, 'discriminator', netD, input_nc=input_nc, ndf=ndf, n_layers_D=n_layers_D,
                norm=norm, no_antialias=no_antialias, crop_size=crop_size, load_size=load_size)
    if init_weights and not getattr(net, 'keeps_own_init', False):
        initialise(net, init_type, init_gain)
    return net
