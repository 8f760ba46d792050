"""DRN segmentation networks (Yu et al., "Dilated Residual Networks", CVPR 2017) for Cityscapes scores.

The module trees reproduce the state_dicts of fyu/drn's `DRNSeg(arch, 19)`: `base.0`…`base.8` (the DRN-D
trunk without its classifier), `seg` (1x1 conv to 19 classes) and `up` (a fixed bilinear x8 transposed
convolution). Two trunks:

* `drn_d_22` (BasicBlocks, layers [1,1,2,2,2,2,1,1]): the pretrained `drn_d_22_cityscapes.pth` that Hneg_SRC
  and NEGCUT distribute, Table 1's scores (evaluation/cityscapes.py);
* `drn_d_105` (Bottleneck blocks, layers [1,1,3,4,23,3,1,1]): `drn-d-105_ms_cityscapes.pth`, the network of
  gan-compression's Cityscapes mIoU (Table 3, evaluation/miou.py).

Weights load strictly; a `module.` prefix (DataParallel) is stripped.
"""
import math
from pathlib import Path

import torch
from torch import nn

from evaluation.common import EvaluationError
from util.util import safe_torch_load, strip_module_prefix
from util.errors import ConfigError

NUM_CLASSES = 19
# Mean and std of Cityscapes photos in [0, 1], from fyu/drn datasets/cityscapes/info.json.
CITYSCAPES_MEAN = (0.29010095242892997, 0.32808144844279574, 0.28696394422942517)
CITYSCAPES_STD = (0.1829540508368939, 0.18656561047509476, 0.18447508988480435)
# DRN-D-22: output channels of layer0..layer8 and dilation of layer5..layer8.
_CHANNELS = (16, 16, 32, 64, 128, 256, 512, 512, 512)
# DRN-D-105: bottleneck width and block count of layer3..layer6 (each block outputs 4x its width).
_D105_STAGES = ((64, 3), (128, 4), (256, 23), (512, 3))
_BOTTLENECK_EXPANSION = 4
_OUTPUT_STRIDE = 8


def _conv_bn_relu(in_channels, out_channels, *, kernel_size=3, stride=1, dilation=1):
    """One convolution stage of the DRN-D stem and tail (keys .0 conv, .1 batch norm)."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride,
                  padding=dilation * (kernel_size // 2), dilation=dilation, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True))


def _projection(in_channels, out_channels, stride):
    """The 1x1 conv + batch norm shortcut of a residual block that changes shape (keys .0, .1); else None."""
    if stride == 1 and in_channels == out_channels:
        return None
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                         nn.BatchNorm2d(out_channels))


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
        self.downsample = _projection(in_channels, out_channels, stride)

    def forward(self, x):
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + shortcut)


class Bottleneck(nn.Module):
    """1x1 reduce, dilated 3x3 (strided), 1x1 expand to 4x the width; a 1x1 projection when the shape changes."""

    def __init__(self, in_channels, width, *, stride=1, dilation=1):
        super().__init__()
        out_channels = width * _BOTTLENECK_EXPANSION
        self.conv1 = nn.Conv2d(in_channels, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride=stride, padding=dilation, dilation=dilation, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, out_channels, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _projection(in_channels, out_channels, stride)

    def forward(self, x):
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + shortcut)


def _residual_stage(block, in_channels, width, blocks, *, stride=1, dilation=1):
    """`blocks` residual blocks; the first strides (and projects), all share the dilation."""
    first = block(in_channels, width, stride=stride, dilation=dilation)
    out_channels = width * (_BOTTLENECK_EXPANSION if block is Bottleneck else 1)
    return nn.Sequential(first, *(block(out_channels, width, dilation=dilation) for _ in range(blocks - 1)))


def _drn_d_stem():
    """layer0..layer2 of every DRN-D: 7x7 conv, 3x3 conv, strided 3x3 conv (16, 16, 32 channels)."""
    c = _CHANNELS
    return [_conv_bn_relu(3, c[0], kernel_size=7), _conv_bn_relu(c[0], c[1]), _conv_bn_relu(c[1], c[2], stride=2)]


def _drn_d_tail(in_channels):
    """layer7, layer8 of DRN-D: two plain 3x3 convolutions (dilation 2, then 1) to 512 channels."""
    return [_conv_bn_relu(in_channels, _CHANNELS[7], dilation=2), _conv_bn_relu(_CHANNELS[7], _CHANNELS[8])]


def drn_d_22_trunk():
    """layer0..layer8 of DRN-D-22: output stride 8, dilations 2 and 4 replacing further striding."""
    c = _CHANNELS
    return nn.Sequential(
        *_drn_d_stem(),
        _residual_stage(BasicBlock, c[2], c[3], 2, stride=2),
        _residual_stage(BasicBlock, c[3], c[4], 2, stride=2),
        _residual_stage(BasicBlock, c[4], c[5], 2, dilation=2),
        _residual_stage(BasicBlock, c[5], c[6], 2, dilation=4),
        *_drn_d_tail(c[6]))


def drn_d_105_trunk():
    """layer0..layer8 of DRN-D-105: the DRN-D stem, Bottleneck stages of 3, 4, 23, 3 blocks (strides 2, 2,
    then dilations 2, 4; 256 to 2048 channels) and the DRN-D tail; output stride 8."""
    stages, channels = [], _CHANNELS[2]
    for (width, blocks), stride, dilation in zip(_D105_STAGES, (2, 2, 1, 1), (1, 1, 2, 4)):
        stages.append(_residual_stage(Bottleneck, channels, width, blocks, stride=stride, dilation=dilation))
        channels = width * _BOTTLENECK_EXPANSION
    return nn.Sequential(*_drn_d_stem(), *stages, *_drn_d_tail(channels))


# arch -> (trunk, name, the pretrained Cityscapes file and where it comes from)
ARCHS = {
    'drn_d_22': (drn_d_22_trunk, 'DRN-D-22', 'drn_d_22_cityscapes.pth',
                 'fyu/drn model zoo, or the drn-d-22 link in the Hneg_SRC Single-modal README'),
    'drn_d_105': (drn_d_105_trunk, 'DRN-D-105', 'drn-d-105_ms_cityscapes.pth',
                  'http://go.yf.io/drn-cityscapes-models, as gan-compression\'s README says'),
}


def bilinear_upsampling_kernel(factor):
    """(2f, 2f) kernel of bilinear interpolation by an integer factor f, for a transposed conv."""
    size = 2 * factor
    center = (size - 1) / 2
    ramp = 1 - (torch.arange(size, dtype=torch.float32) - center).abs() / factor  # (2f,)
    return ramp[:, None] * ramp[None, :]


class DRNSeg(nn.Module):
    """DRN-D trunk, 1x1 classifier and fixed bilinear x8 upsampling: (B, 3, H, W) -> (B, 19, H, W) logits.

    fyu/drn's forward also returns a log-softmax and the low-resolution scores; the argmax that
    the scores use is the same on these logits (also after a bilinear resize, which is linear and
    shifts every class by the same log-normaliser).
    """

    def __init__(self, num_classes=NUM_CLASSES, arch='drn_d_22'):
        super().__init__()
        if arch not in ARCHS:
            raise ConfigError(f'unknown DRN arch {arch!r}; valid: {", ".join(ARCHS)}')
        self.arch = arch
        self.base = ARCHS[arch][0]()
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
    """Load a pretrained Cityscapes checkpoint of `model`'s arch into it strictly.

    Accepts a plain state_dict (drn_d_22_cityscapes.pth, drn-d-105_ms_cityscapes.pth) or a training
    checkpoint with a 'state_dict' entry (fyu/drn segment.py's .pth.tar, keys prefixed with `module.`).
    """
    _, label, filename, source = ARCHS[getattr(model, 'arch', 'drn_d_22')]
    path = Path(path)
    if not path.is_file():
        raise EvaluationError(
            f'{label} Cityscapes weights not found at {path}: download {filename} ({source}) and pass '
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
            f'{path} is not a {label} segmentation state_dict (base.*, seg.*, up.weight): '
            f'missing {missing[:5]}{"…" if len(missing) > 5 else ""}, '
            f'unexpected {unexpected[:5]}{"…" if len(unexpected) > 5 else ""}')
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise EvaluationError(f'{path}: {exc}') from exc
    return model


def pretrained_drn(path, *, device='cpu', arch='drn_d_22'):
    """DRNSeg of `arch` with the weights at `path`, in eval mode on `device`."""
    return load_drn_weights(DRNSeg(arch=arch), path).to(device).eval()
