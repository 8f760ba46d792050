"""CPU training kernels: copies of plain layers that compute the same function with less memory or time in
a CPU training step, and `accelerate`, the one call that uses them (CPU training only; test.py and CUDA
never do).

A fast copy is a subclass of the plain layer with the same parameters and buffers (state-dict keys and
values are unchanged; the copy is used by changing the module's class in place, so optimizers built before
keep their parameters). Each keeps the plain forward where its trick does not apply, e.g. without a
gradient. A copy that re-implements a forward of this project (ResnetBlock, Downsample, Upsample,
InstanceNorm2d) is used only while that forward is the one it was written against: PLAIN_FORWARDS holds the
SHA-256 of each plain forward's source; after an edit the plain class trains and one line says so.
Measured gains: studies/performance.md.
"""
import inspect
import sys
import textwrap
from collections import Counter

import torch
import torch.nn as nn
import torch.nn.functional as F

from models.networks.generators import ResnetBlock
from models.networks.layers import Downsample, InstanceNorm2d, Upsample, binomial_filter
from util.errors import ConfigError
from util.util import sha256

from . import winograd

_PAD_BACKWARD = {'reflect': torch.ops.aten.reflection_pad2d_backward,
                 'replicate': torch.ops.aten.replication_pad2d_backward}


def _needs_graph(x):
    return x.requires_grad and torch.is_grad_enabled()


def _pad_backward(grad, shape, padding, mode):
    """The gradient of reflection / replication padding with respect to its input of `shape`."""
    like = grad.new_empty(()).expand(shape)  # a zero-stride stand-in: the kernel reads its shape and dtype
    return _PAD_BACKWARD[mode](grad.contiguous(), like, list(padding))


class _Pad2d(torch.autograd.Function):
    """Reflection / replication padding that keeps only the input's shape for backward (autograd's own
    keeps the whole input, which in a ResNet block nothing else keeps)."""

    @staticmethod
    def forward(ctx, x, padding, mode):
        ctx.shape, ctx.padding, ctx.mode = x.shape, padding, mode
        return F.pad(x, padding, mode=mode)

    @staticmethod
    def backward(ctx, grad):
        return _pad_backward(grad, ctx.shape, ctx.padding, ctx.mode), None, None


class _ReluPad2d(torch.autograd.Function):
    """ReLU then reflection / replication padding, keeping only the padded output for backward: the ReLU
    mask is the sign of the padded copy's interior, which the convolution after it keeps anyway."""

    @staticmethod
    def forward(ctx, x, padding, mode):
        padded = F.pad(F.relu(x), padding, mode=mode)
        ctx.save_for_backward(padded)
        ctx.shape, ctx.padding, ctx.mode = x.shape, padding, mode
        return padded

    @staticmethod
    def backward(ctx, grad):
        padded, = ctx.saved_tensors
        left, _, top, _ = ctx.padding
        height, width = ctx.shape[-2:]
        grad_x = _pad_backward(grad, ctx.shape, ctx.padding, ctx.mode)
        interior = padded[..., top:top + height, left:left + width]
        return grad_x.masked_fill_(interior <= 0, 0), None, None


class _FixedDepthwise(torch.autograd.Function):
    """Depthwise (transposed) convolution by a fixed filter (a buffer), saving no activation for backward:
    autograd's convolution would keep the padded input for a weight gradient never computed."""

    @staticmethod
    def forward(ctx, x, filt, stride, padding, transposed):
        ctx.save_for_backward(filt)
        ctx.stride, ctx.padding, ctx.transposed = stride, padding, transposed
        ctx.size, ctx.dtype = x.shape[-2:], x.dtype
        conv = F.conv_transpose2d if transposed else F.conv2d
        return conv(x, filt, stride=stride, padding=padding, groups=x.shape[1])

    @staticmethod
    def backward(ctx, grad):
        filt, = ctx.saved_tensors
        filt = filt.to(grad.dtype)  # under autocast the forward ran in the autocast dtype
        s, p, channels = ctx.stride, ctx.padding, grad.shape[1]
        if ctx.transposed:
            grad_x = F.conv2d(grad, filt, stride=s, padding=p, groups=channels)
        else:
            # the rows / columns that the stride skipped get no gradient beyond the transposed size
            extra = [size - ((g - 1) * s - 2 * p + filt.shape[-1]) for size, g in zip(ctx.size, grad.shape[-2:])]
            grad_x = F.conv_transpose2d(grad, filt, stride=s, padding=p, output_padding=extra, groups=channels)
        return grad_x.to(ctx.dtype), None, None, None, None


def _take(x, dim, start, stop=None, step=1):
    index = [slice(None)] * x.dim()
    index[dim] = slice(start, stop, step)
    return x[tuple(index)]


def _blur_half(x, dim):
    """[1, 2, 1] sums at every second position of `dim`, reflection-padded by one:
    out[i] = x[2i-1] + 2 x[2i] + x[2i+1] with x[-1] = x[1], x[n] = x[n-2]; length n -> ceil(n / 2)."""
    n = x.shape[dim]
    half = (n + 1) // 2
    out = _take(x, dim, 0, None, 2).mul(2)
    _take(out, dim, 1).add_(_take(x, dim, 1, 2 * half - 2, 2))  # x[2i-1], i >= 1
    _take(out, dim, 0, n // 2).add_(_take(x, dim, 1, None, 2))  # x[2i+1]
    _take(out, dim, 0, 1).add_(_take(x, dim, 1, 2))  # x[-1] = x[1]
    if n % 2:
        _take(out, dim, half - 1, half).add_(_take(x, dim, n - 2, n - 1))  # x[n] = x[n-2]
    return out


def _blur_half_backward(grad, dim, n):
    """The transpose of `_blur_half` along `dim`: length ceil(n / 2) -> n."""
    half = grad.shape[dim]
    shape = list(grad.shape)
    shape[dim] = n
    out = grad.new_empty(shape)
    _take(out, dim, 0, None, 2).copy_(grad).mul_(2)
    _take(out, dim, 1, None, 2).copy_(_take(grad, dim, 0, n // 2))
    _take(out, dim, 1, 2 * half - 2, 2).add_(_take(grad, dim, 1))
    _take(out, dim, 1, 2).add_(_take(grad, dim, 0, 1))
    if n % 2:
        _take(out, dim, n - 2, n - 1).add_(_take(grad, dim, half - 1, half))
    return out


class _ReflectBlurHalf(torch.autograd.Function):
    """CUT's default Downsample (reflection padding of one, [1, 2, 1] x [1, 2, 1] / 16 blur, stride 2) as
    strided sums, rows then columns: no padded copy, only the size kept for backward."""

    @staticmethod
    def forward(ctx, x):
        ctx.size = x.shape[-2:]
        # (B, C, H, W) -> (B, C, ceil(H / 2), W) -> (B, C, ceil(H / 2), ceil(W / 2))
        return _blur_half(_blur_half(x, x.dim() - 2), x.dim() - 1).div_(16)

    @staticmethod
    def backward(ctx, grad):
        rows = _blur_half_backward(grad / 16, grad.dim() - 1, ctx.size[1])
        return _blur_half_backward(rows, grad.dim() - 2, ctx.size[0])


def _is_binomial(module, scale=1):
    """Whether every channel of `module.filt` is CUT's binomial filter times `scale` (the fast paths assume
    it); checked once per content of the buffer (a checkpoint load bumps its version, a new buffer is another
    object). Under torch.compile the answer found eagerly (by `accelerate`) stands: no graph break."""
    if torch.compiler.is_compiling():
        return module._binomial_value
    key = (id(module.filt), module.filt._version, module.filt.device)
    if getattr(module, '_binomial_key', None) != key:
        kernel = binomial_filter(module.filt_size) * scale
        module._binomial_value = bool(torch.equal(module.filt.detach().to('cpu', torch.float32),
                                                  kernel[None, None].expand_as(module.filt)))
        module._binomial_key = key
    return module._binomial_value


class ShapeOnlyReflectionPad2d(nn.ReflectionPad2d):
    """nn.ReflectionPad2d whose backward keeps only its input's shape."""
    pad_mode = 'reflect'

    def forward(self, x):
        return _Pad2d.apply(x, self.padding, self.pad_mode) if _needs_graph(x) else super().forward(x)


class ShapeOnlyReplicationPad2d(nn.ReplicationPad2d):
    """nn.ReplicationPad2d whose backward keeps only its input's shape."""
    pad_mode = 'replicate'

    def forward(self, x):
        return _Pad2d.apply(x, self.padding, self.pad_mode) if _needs_graph(x) else super().forward(x)


class FusedResnetBlock(ResnetBlock):
    """ResnetBlock whose ReLU and the padding after it run as one operation keeping one tensor, not two."""

    def forward(self, x):
        modules, h, index = self.conv_block, x, 0
        while index < len(modules):
            module = modules[index]
            following = modules[index + 1] if index + 1 < len(modules) else None
            if (type(module) is nn.ReLU and isinstance(following, (ShapeOnlyReflectionPad2d, ShapeOnlyReplicationPad2d))
                    and _needs_graph(h)):
                h = _ReluPad2d.apply(h, following.padding, following.pad_mode)
                index += 2
            else:
                h = module(h)
                index += 1
        return x + h


class FastDownsample(Downsample):
    """Downsample whose backward keeps nothing but sizes; CUT's default (3x3 filter, stride 2, reflection)
    by strided sums, about twice as fast on CPU as padding plus a depthwise convolution."""

    def forward(self, x):
        if not _needs_graph(x):
            return super().forward(x)
        if (self.stride == 2 and self.filt_size == 3 and isinstance(self.pad, nn.ReflectionPad2d)
                and min(x.shape[-2:]) >= 2 and _is_binomial(self)):
            return _ReflectBlurHalf.apply(x)
        return _FixedDepthwise.apply(self.pad(x), self.filt, self.stride, 0, False)


class FastUpsample(Upsample):
    """Upsample whose backward keeps no input; CUT's default (4x4 filter, stride 2, replication) is
    bilinear interpolation with edge replication: out[2i] = (x[i-1] + 3 x[i]) / 4, out[2i+1] = (3 x[i] + x[i+1]) / 4."""

    def forward(self, x):
        if not _needs_graph(x):
            return super().forward(x)
        if (self.filt_size == 4 and self.stride == 2 and isinstance(self.pad, nn.ReplicationPad2d)
                and _is_binomial(self, self.stride ** 2)):
            return F.interpolate(x, scale_factor=2, mode='bilinear', align_corners=False)
        return self.crop(_FixedDepthwise.apply(self.pad(x), self.filt, self.stride, self.transposed_padding(), True))


class GroupInstanceNorm2d(InstanceNorm2d):
    """Instance norm without running statistics (CUT's; with its affine map, StarGAN v2's) computed, when a
    gradient flows, as group norm with one channel per group. The same normalisation with a better backward: it
    keeps the channels-last layout, returns a tensor rather than a view (the in-place ReLU after it needs no
    copy), is faster on CPU, and avoids a torch 2.14 CPU bug: nn.InstanceNorm2d's backward gives wrong input
    gradients for a batch of one image when the incoming gradient has channels-last strides (as the patch
    sampler's permuted view produces). Float16 statistics (--amp fp16) overflow: they are taken in float32."""

    def forward(self, x):
        if not _needs_graph(x):
            return super().forward(x)
        dtype = x.dtype
        x = x.float() if dtype == torch.float16 else x
        weight, bias = self.weight, self.bias
        if self.affine and weight.dtype != x.dtype:  # bf16 maps under autocast
            weight, bias = weight.to(x.dtype), bias.to(x.dtype)
        return F.group_norm(x, self.num_features, weight, bias, eps=self.eps).to(dtype)


class WinogradConv2d(nn.Conv2d):
    """A 3x3 stride-1 nn.Conv2d trained by Winograd F(4x4, 3x3) on the CPU in float32 (winograd.py) where it
    beats the direct kernel: with a gradient, outside autocast and torch.compile, and for at least 128 4x4
    output tiles (`winograd.pays_off`). Elsewhere nn.Conv2d."""

    def forward(self, x):
        if (torch.is_grad_enabled() and (x.requires_grad or self.weight.requires_grad) and x.device.type == 'cpu'
                and x.dtype == torch.float32 and not torch.is_autocast_enabled('cpu')
                and not torch.compiler.is_compiling() and winograd.pays_off(x.shape, self.padding[0])):
            return winograd.winograd_conv3x3(x, self.weight, self.bias, self.padding[0])
        return super().forward(x)


WINOGRAD_MIN_CHANNELS = 256  # the ResNet blocks of ngf 64; narrower layers are faster by the direct kernel


def winograd_eligible(conv):
    return (type(conv) is nn.Conv2d and conv.kernel_size == (3, 3) and conv.stride == (1, 1)
            and conv.dilation == (1, 1) and conv.groups == 1 and conv.padding_mode == 'zeros'
            and conv.padding in ((0, 0), (1, 1)) and min(conv.in_channels, conv.out_channels) >= WINOGRAD_MIN_CHANNELS)


def forward_fingerprint(cls):
    """SHA-256 of the source of `cls.forward` (dedented): what a fast copy of `cls` was written against."""
    return sha256(textwrap.dedent(inspect.getsource(cls.forward)).encode())


# plain class -> its CPU training kernel (torch's paddings: shape-only backward; the rest designed and measured
# on the CPU, docs/performance.md; not measured on a GPU, where nothing is swapped)
KERNELS = {nn.ReflectionPad2d: ShapeOnlyReflectionPad2d, nn.ReplicationPad2d: ShapeOnlyReplicationPad2d,
           ResnetBlock: FusedResnetBlock, Downsample: FastDownsample, Upsample: FastUpsample,
           InstanceNorm2d: GroupInstanceNorm2d}
# the plain forwards of this project that the fast copies above re-implement, as they were written against
# (`forward_fingerprint`); after a change to one of them, check its fast copy and record the new value
PLAIN_FORWARDS = {
    ResnetBlock: 'c2a935ae44b91915e9b63647db86e1c03f3c7688b670b525c971cee6a228d04a',
    Downsample: 'eae8baebd299d2dfe89b9efda845d30694a2f6d0504d82ba98157c6c07dde754',
    Upsample: 'd35a4e6ace1c1785be0e3e69b2b2e566f9f89615420e06c3ac277b958ad6dbbd',
    InstanceNorm2d: 'd7a138dbb49d493ae56f484a9869d850fd98298a4154bdfbc262ce3f8c6ef724',
}
_reported = set()  # plain classes whose changed forward was reported (one line per class and process)


def unchanged(cls):
    """Whether `cls.forward` is still the one its fast copy re-implements; says so in one line if not."""
    expected = PLAIN_FORWARDS.get(cls)
    if expected is None or forward_fingerprint(cls) == expected:
        return True
    if cls not in _reported:
        _reported.add(cls)
        fast = KERNELS[cls]
        print(f'note: {cls.__module__}.{cls.__name__}.forward differs from the one cpu/kernels.py '
              f'{fast.__name__} re-implements: training runs the plain {cls.__name__} (after checking '
              f'{fast.__name__}, record its fingerprint in cpu/kernels.py PLAIN_FORWARDS)', file=sys.stderr)
    return False


def accelerate(net, *, conv_algo='auto', device=torch.device('cpu'), amp=None, compile=False):
    """Use the CPU training kernels in `net`'s plain layers whose forward is unchanged, in place; returns a
    Counter of 'Plain -> Fast' swaps (what train.py prints). Nothing on another device (not measured faster
    there); Winograd convolutions only with `conv_algo` 'auto', in float32 (`amp` None) and without
    torch.compile."""
    if conv_algo not in ('auto', 'direct'):
        raise ConfigError(f"--conv_algo must be 'auto' or 'direct', got {conv_algo!r}")
    swapped = Counter()
    if torch.device(device).type != 'cpu':
        return swapped
    winograd_ok = conv_algo == 'auto' and amp is None and not compile
    usable = {}  # plain class -> fast class, checked once per call
    for module in net.modules():
        plain = type(module)
        if plain not in usable:
            usable[plain] = KERNELS[plain] if plain in KERNELS and unchanged(plain) else None
        cls = usable[plain]
        if cls is GroupInstanceNorm2d and module.track_running_stats:
            cls = None  # group norm has no running statistics
        if cls is None and winograd_ok and winograd_eligible(module):
            cls = WinogradConv2d
        if cls is not None:
            swapped[f'{plain.__name__} -> {cls.__name__}'] += 1
            module.__class__ = cls
            if cls in (FastDownsample, FastUpsample):  # answered now, so that compiled code reads the answer
                _is_binomial(module, module.stride ** 2 if cls is FastUpsample else 1)
    return swapped
