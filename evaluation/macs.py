"""MACs and parameters of a generator as Table 3 counts them.

Table 3 counts with torchprofile (>= 0.0.3) on one 1x3x256x256 input: a convolution is output elements x
C_in / groups x k^2, a transposed convolution output elements x C_in x k^2 (4x its true MACs at stride 2),
non-affine norms, padding, activations and additions 0; parameters are the sum of numel over the
network's parameters. `profile_macs` runs torchprofile; `mobile_macs` / `mobile_params` give the same
numbers in closed form for a mobile ResNet configuration (fast enough for the evolution search's inner loop).
"""
import warnings

import torch

from models.networks.compression import decode_config


def profile_macs(net, input_size=(1, 3, 256, 256)):
    """torchprofile's MAC count of `net` on one zero input of `input_size` (eval mode, no gradient)."""
    from torchprofile import profile_macs as torchprofile_macs
    param = next(net.parameters())
    x = torch.zeros(input_size, dtype=param.dtype, device=param.device)
    was_training = net.training
    net.eval()
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.filterwarnings('ignore', message='No handlers found')  # padding, clamp: no MACs anyway
            return int(torchprofile_macs(net, x))
    finally:
        net.train(was_training)


def count_params(net):
    return sum(p.numel() for p in net.parameters())


def _down(size):
    """Output side of a 3x3 stride-2 convolution with padding 1."""
    return (size - 1) // 2 + 1


def mobile_macs(config, height=256, width=None, input_nc=3, output_nc=3, n_blocks=9):
    """torchprofile's MAC count of the mobile ResNet of `config` (or the super-net under it) on one image."""
    c0, c1, c2, c3, c4, c5, c6, c7 = decode_config(config)
    width = height if width is None else width
    h1, w1 = _down(height), _down(width)
    h2, w2 = _down(h1), _down(w1)
    full, half, quarter = height * width, h1 * w1, h2 * w2
    stream = 4 * c2
    macs = full * c0 * input_nc * 49 + half * 2 * c1 * c0 * 9 + quarter * stream * 2 * c1 * 9
    third = n_blocks // 3
    for i in range(n_blocks):
        inner = 4 * (c3, c4, c5)[min(i // third, 2) if third else 2]
        # two separable convolutions: depthwise 3x3 on their input, pointwise stream <-> inner
        macs += quarter * (9 * stream + 9 * inner + 2 * stream * inner)
    # transposed convolutions (outputs 2*h2 x 2*w2, then 4*h2 x 4*w2), counted per output element
    macs += 4 * quarter * 2 * c6 * stream * 9 + 16 * quarter * c7 * 2 * c6 * 9
    macs += 16 * quarter * output_nc * c7 * 49
    return macs


def mobile_params(config, input_nc=3, output_nc=3, n_blocks=9, use_bias=True):
    """Parameters of the sub-net of `config` (use_bias: the non-separable convolutions' biases, as --normG
    instance; the separable convolutions and the last one always have biases)."""
    c0, c1, c2, c3, c4, c5, c6, c7 = decode_config(config)
    stream = 4 * c2
    b = 1 if use_bias else 0
    params = c0 * (input_nc * 49 + b) + 2 * c1 * (c0 * 9 + b) + stream * (2 * c1 * 9 + b)
    third = n_blocks // 3
    for i in range(n_blocks):
        inner = 4 * (c3, c4, c5)[min(i // third, 2) if third else 2]
        params += 10 * stream + inner * (stream + 1) + 10 * inner + stream * (inner + 1)
    params += stream * 2 * c6 * 9 + b * 2 * c6 + 2 * c6 * c7 * 9 + b * c7
    params += output_nc * (c7 * 49 + 1)
    return params


def format_count(macs, params):
    """'56.80 G MACs, 11.38 M params' with Table 3's rounding."""
    return f'{macs / 1e9:.3f} G MACs ({macs / 1e9:.2f} G), {params / 1e6:.3f} M params ({params / 1e6:.2f} M)'
