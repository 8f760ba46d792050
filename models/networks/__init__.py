"""Networks of CUT with its state-dict layout: generators, discriminators, the patch sampler F.

`define_G` / `define_D` build what the registry holds; importing this package registers the
ResNet / U-Net / PatchGAN networks, then the StyleGAN2 ones and GAN Compression's mobile ResNets.
"""
from .discriminators import define_D
from .generators import GENERATOR_ARCH_KEYS, G_OUTPUTS, define_G, generator_from_options, missing_generator_options
from .init import INIT_TYPES, init_weights
from .layers import NORM_TYPES, get_norm_layer
from .patch_sampler import PATCH_SAMPLER_KEYS, SAMPLERS, PatchSampleF, define_F
from .registry import DISCRIMINATORS, GENERATORS
from . import stylegan2  # noqa: F401  (registers the StyleGAN2 networks)
from . import compression  # noqa: F401  (registers the mobile ResNet super-net and sub-net)

__all__ = ['define_G', 'generator_from_options', 'missing_generator_options', 'define_D', 'define_F',
           'get_norm_layer', 'init_weights', 'GENERATORS', 'DISCRIMINATORS', 'SAMPLERS', 'G_OUTPUTS',
           'PatchSampleF', 'NORM_TYPES', 'INIT_TYPES', 'GENERATOR_ARCH_KEYS', 'PATCH_SAMPLER_KEYS']
