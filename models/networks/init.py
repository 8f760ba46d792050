"""Weight initialisation of convolution, linear and batch-norm layers (as pix2pix / CycleGAN / CUT)."""
import torch.nn as nn
from torch.nn import init

from util.errors import ConfigError

INIT_TYPES = ('normal', 'xavier', 'kaiming', 'orthogonal')

_WEIGHTED = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d,
             nn.ConvTranspose3d, nn.Linear)


def init_weights(net, init_type='normal', init_gain=0.02):
    """Initialise `net` in place and return it.

    Conv / linear weights: N(0, gain) | Xavier-normal(gain) | Kaiming-normal (fan_in) |
    orthogonal(gain); their biases 0. BatchNorm2d: weight N(1, gain), bias 0.
    """
    if init_type not in INIT_TYPES:
        raise ConfigError(f'unknown init_type {init_type!r}; valid names: {", ".join(INIT_TYPES)}')

    def init_module(m):
        if isinstance(m, _WEIGHTED):
            if init_type == 'normal':
                init.normal_(m.weight, 0.0, init_gain)
            elif init_type == 'xavier':
                init.xavier_normal_(m.weight, gain=init_gain)
            elif init_type == 'kaiming':
                init.kaiming_normal_(m.weight, a=0, mode='fan_in')
            else:
                init.orthogonal_(m.weight, gain=init_gain)
            if m.bias is not None:
                init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            init.normal_(m.weight, 1.0, init_gain)
            init.zeros_(m.bias)

    net.apply(init_module)
    return net
