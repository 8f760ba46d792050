"""DRN-D-22 segmentation network (Yu et al., "Dilated Residual Networks", CVPR 2017) for Cityscapes scores.

The module tree reproduces the state_dict of fyu/drn's `DRNSeg('drn_d_22', 19)`, the network of the
pretrained `drn_d_22_cityscapes.pth` that Hneg_SRC and NEGCUT distribute: `base.0`…`base.8` (the
DRN-D-22 trunk without its classifier), `seg` (1x1 conv to 19 classes) and `up` (a fixed bilinear
x8 transposed convolution). Weights load strictly; a `module.` prefix (DataParallel) is stripped.
"""
import math
from pathlib import Path

import torch
from torch import nn

from evaluation.common import EvaluationError
from util.util import safe_torch_load, strip_module_prefix

NUM_CLASSES = 19
# Mean and std of Cityscapes photos in [0, 1], from fyu/drn datasets/cityscapes/info.json.
CITYSCAPES_MEAN = (0.29010095242892997, 0.32808144844279574, 0.28696394422942517)
CITYSCAPES_STD = (0.1829540508368939, 0.18656561047509476, 0.18447508988480435)
# DRN-D-22: output channels of layer0..layer8 and dilation of layer5..layer8.
_CHANNELS = (16, 16, 32, 64, 128, 256, 512, 512, 512)
_OUTPUT_STRIDE = 8


def _conv_bn_relu(in_channels, out_channels, *, kernel_size=3, stride=1, dilation=1):
    """One convolution stage of the DRN-D stem and tail (keys .0 conv, .1 batch norm)."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride,
                  padding=dilation * (kernel_size // 2), dilation=dilation, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True))


class BasicBlock(nn.Module):
    """Residual block of two dilated 3x3 convolutions; a 1x1 projection when the shape changes."""

    def __init__(self, in_channels, out_channels, *, stride=1, dilation=1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=dilation,
                               dilation=dilation, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=dilation, dilation=dilation, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                                            nn.BatchNorm2d(out_channels))

    def forward(self, x):
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + shortcut)


def _residual_stage(in_channels, out_channels, *, stride=1, dilation=1):
    """Two BasicBlocks; DRN-D-22 uses two per residual stage."""
    return nn.Sequential(BasicBlock(in_channels, out_channels, stride=stride, dilation=dilation),
                         BasicBlock(out_channels, out_channels, dilation=dilation))


def drn_d_22_trunk():
    """layer0..layer8 of DRN-D-22: output stride 8, dilations 2 and 4 replacing further striding."""
    c = _CHANNELS
    return nn.Sequential(
        _conv_bn_relu(3, c[0], kernel_size=7),
        _conv_bn_relu(c[0], c[1]),
        _conv_bn_relu(c[1], c[2], stride=2),
        _residual_stage(c[2], c[3], stride=2),
        _residual_stage(c[3], c[4], stride=2),
        _residual_stage(c[4], c[5], dilation=2),
        _residual_stage(c[5], c[6], dilation=4),
        _conv_bn_relu(c[6], c[7], dilation=2),
        _conv_bn_relu(c[7], c[8]))


def bilinear_upsampling_kernel(factor):
    """(2f, 2f) kernel of bilinear interpolation by an integer factor f, for a transposed conv."""
    size = 2 * factor
    center = (size - 1) / 2
    ramp = 1 - (torch.arange(size, dtype=torch.float32) - center).abs() / factor  # (2f,)
    return ramp[:, None] * ramp[None, :]


class DRNSeg(nn.Module):
    """DRN-D-22 trunk, 1x1 classifier and fixed bilinear x8 upsampling: (B, 3, H, W) -> (B, 19, H, W) logits.

    fyu/drn's forward also returns a log-softmax and the low-resolution scores; the argmax that
    the scores use is the same on these logits.
    """

    def __init__(self, num_classes=NUM_CLASSES):
        super().__init__()
        self.base = drn_d_22_trunk()
        self.seg = nn.Conv2d(_CHANNELS[-1], num_classes, kernel_size=1, bias=True)
        nn.init.normal_(self.seg.weight, 0.0, math.sqrt(2.0 / num_classes))
        nn.init.zeros_(self.seg.bias)
        f = _OUTPUT_STRIDE
        self.up = nn.ConvTranspose2d(num_classes, num_classes, 2 * f, stride=f, padding=f // 2,
                                     groups=num_classes, bias=False)
        with torch.no_grad():
            self.up.weight.copy_(bilinear_upsampling_kernel(f).expand_as(self.up.weight))
        self.up.weight.requires_grad_(False)

    def forward(self, x):
        scores = self.seg(self.base(x))  # (B, 19, H/8, W/8)
        return self.up(scores)  # (B, 19, H, W)


def load_drn_weights(model, path):
    """Load a pretrained DRN-D-22 Cityscapes checkpoint into `model` strictly.

    Accepts a plain state_dict (drn_d_22_cityscapes.pth) or a training checkpoint with a
    'state_dict' entry (fyu/drn segment.py's .pth.tar, keys prefixed with `module.`).
    """
    path = Path(path)
    if not path.is_file():
        raise EvaluationError(
            f'DRN-D-22 Cityscapes weights not found at {path}: download drn_d_22_cityscapes.pth '
            '(fyu/drn model zoo, or the drn-d-22 link in the Hneg_SRC Single-modal README) and pass '
            'its path with --drn-weights')
    try:
        state = safe_torch_load(str(path))
    except RuntimeError as exc:
        raise EvaluationError(f'{path} could not be read as DRN weights: {exc}') from exc
    if isinstance(state, dict) and isinstance(state.get('state_dict'), dict):
        state = state['state_dict']
    state = strip_module_prefix(state)
    expected = set(model.state_dict())
    # Checkpoints from PyTorch < 0.4 have no num_batches_tracked; load_state_dict fills it in.
    missing = sorted(k for k in expected - set(state) if not k.endswith('num_batches_tracked'))
    unexpected = sorted(set(state) - expected)
    if missing or unexpected:
        raise EvaluationError(
            f'{path} is not a DRN-D-22 segmentation state_dict (base.*, seg.*, up.weight): '
            f'missing {missing[:5]}{"…" if len(missing) > 5 else ""}, '
            f'unexpected {unexpected[:5]}{"…" if len(unexpected) > 5 else ""}')
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise EvaluationError(f'{path}: {exc}') from exc
    return model


def pretrained_drn(path, *, device='cpu'):
    """DRNSeg with the weights at `path`, in eval mode on `device`."""
    return load_drn_weights(DRNSeg(), path).to(device).eval()
