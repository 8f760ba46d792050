"""Building blocks shared by the generators and discriminators: anti-aliased resampling
(Zhang, "Making Convolutional Networks Shift-Invariant Again", ICML 2019), normalisation choice,
and the feature-tapping forward pass used by the patch-wise losses."""
import functools
from math import comb

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import winograd

NORM_TYPES = ('batch', 'instance', 'none')

_PAD_BACKWARD = {'reflect': torch.ops.aten.reflection_pad2d_backward,
                 'replicate': torch.ops.aten.replication_pad2d_backward}


def _needs_graph(x):
    return x.requires_grad and torch.is_grad_enabled()


def _pad_backward(grad, shape, padding, mode):
    """The gradient of reflection / replication padding with respect to its input of `shape`."""
    like = grad.new_empty(()).expand(shape)  # a zero-stride stand-in: the kernel reads its shape and dtype
    return _PAD_BACKWARD[mode](grad.contiguous(), like, list(padding))


class _Pad2d(torch.autograd.Function):
    """Reflection / replication padding that keeps only the input's shape for backward.

    Autograd's own padding saves its whole input, although the backward reads only its shape; in a
    ResNet block that input (the block's input) is kept by nothing else. Same forward kernel.
    """

    @staticmethod
    def forward(ctx, x, padding, mode):
        ctx.shape, ctx.padding, ctx.mode = x.shape, padding, mode
        return F.pad(x, padding, mode=mode)

    @staticmethod
    def backward(ctx, grad):
        return _pad_backward(grad, ctx.shape, ctx.padding, ctx.mode), None, None


class _FixedDepthwise(torch.autograd.Function):
    """Depthwise (transposed) convolution by a fixed filter, saving no activation for backward.

    The blur filters of Downsample / Upsample are buffers, so the gradient needs only the filter:
    autograd's convolution would keep the padded input alive for a weight gradient never computed.
    """

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
    strided sums, rows then columns: no padded copy, nothing kept for backward but the size, and about
    twice as fast on CPU as padding plus a depthwise convolution, forward and backward."""

    @staticmethod
    def forward(ctx, x):
        ctx.size = x.shape[-2:]
        # (B, C, H, W) -> (B, C, ceil(H / 2), W) -> (B, C, ceil(H / 2), ceil(W / 2))
        return _blur_half(_blur_half(x, x.dim() - 2), x.dim() - 1).div_(16)

    @staticmethod
    def backward(ctx, grad):
        rows = _blur_half_backward(grad / 16, grad.dim() - 1, ctx.size[1])
        return _blur_half_backward(rows, grad.dim() - 2, ctx.size[0])


class _ReluPad2d(torch.autograd.Function):
    """ReLU then reflection / replication padding, keeping only the padded output for backward.

    Unfused, ReLU keeps its output for the mask and the convolution after the padding keeps the padded
    copy; the mask is also the sign of the padded copy's interior, which the convolution keeps anyway.
    Same values and gradients as nn.ReLU followed by the padding.
    """

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


def sequential_forward(modules, x):
    """Run `modules` in order as nn.Sequential does, but where a gradient is recorded, a ReLU followed
    by one of this module's padding layers runs as one operation that keeps one tensor, not two."""
    index = 0
    while index < len(modules):
        module = modules[index]
        following = modules[index + 1] if index + 1 < len(modules) else None
        if type(module) is nn.ReLU and isinstance(following, _ShapeOnlyPad) and _needs_graph(x):
            x = _ReluPad2d.apply(x, following.padding, following.pad_mode)
            index += 2
        else:
            x = module(x)
            index += 1
    return x


class _ShapeOnlyPad:
    """Mixin for nn's padding classes: with a gradient, the backward keeps only the input's shape."""
    pad_mode = None

    def forward(self, x):
        return _Pad2d.apply(x, self.padding, self.pad_mode) if _needs_graph(x) else super().forward(x)


class ReflectionPad2d(_ShapeOnlyPad, nn.ReflectionPad2d):
    """nn.ReflectionPad2d (same name, repr and output) whose backward does not keep the input."""
    pad_mode = 'reflect'


class ReplicationPad2d(_ShapeOnlyPad, nn.ReplicationPad2d):
    """nn.ReplicationPad2d (same name, repr and output) whose backward does not keep the input."""
    pad_mode = 'replicate'


_PAD_LAYERS = {'reflect': ReflectionPad2d, 'replicate': ReplicationPad2d, 'zero': nn.ZeroPad2d}


def pad_layer(pad_type, padding):
    if pad_type not in _PAD_LAYERS:
        raise ValueError(f'unknown padding {pad_type!r}; valid names: {", ".join(_PAD_LAYERS)}')
    return _PAD_LAYERS[pad_type](padding)


def binomial_filter(filt_size):
    """(k, k) float32 blur kernel: outer product of the k-th row of Pascal's triangle, summing to 1."""
    if filt_size < 1:
        raise ValueError(f'filt_size must be >= 1, got {filt_size}')
    row = torch.tensor([comb(filt_size - 1, i) for i in range(filt_size)], dtype=torch.float32)
    kernel = row[:, None] * row[None, :]
    return kernel / kernel.sum()


def _is_binomial(module, scale=1):
    """Whether every channel of `module.filt` is CUT's binomial filter times `scale`: the fast paths assume
    it. Checked once per content of the buffer (a checkpoint load bumps its version), so no device sync
    and no work per step."""
    key = (module.filt.data_ptr(), module.filt._version, module.filt.device)
    if getattr(module, '_binomial_key', None) != key:
        kernel = binomial_filter(module.filt_size) * scale
        module._binomial_value = bool(torch.equal(module.filt.detach().to('cpu', torch.float32),
                                                  kernel[None, None].expand_as(module.filt)))
        module._binomial_key = key
    return module._binomial_value


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
        if not _needs_graph(x):
            return self.cut_forward(x)
        if (self.stride == 2 and self.filt_size == 3 and isinstance(self.pad, ReflectionPad2d)
                and min(x.shape[-2:]) >= 2 and _is_binomial(self)):
            return _ReflectBlurHalf.apply(x)
        return _FixedDepthwise.apply(self.pad(x), self.filt, self.stride, 0, False)

    def cut_forward(self, x):
        """CUT's own computation (what runs without gradient: bit-identical to the official networks)."""
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
        if not _needs_graph(x):
            return self.cut_forward(x)
        if (self.filt_size == 4 and self.stride == 2 and isinstance(self.pad, ReplicationPad2d)
                and _is_binomial(self, self.stride ** 2)):
            # the same weights as bilinear interpolation with edge replication: out[2i] = (x[i-1] + 3 x[i]) / 4,
            # out[2i+1] = (3 x[i] + x[i+1]) / 4 per axis; a vectorised kernel whose backward keeps no input
            return F.interpolate(x, scale_factor=2, mode='bilinear', align_corners=False)
        return self._crop(_FixedDepthwise.apply(self.pad(x), self.filt, self.stride, self._padding(), True))

    def cut_forward(self, x):
        """CUT's own computation (what runs without gradient: bit-identical to the official networks)."""
        out = F.conv_transpose2d(self.pad(x), self.filt, stride=self.stride, padding=self._padding(),
                                 groups=x.shape[1])
        return self._crop(out)

    def _padding(self):
        return 1 + (self.filt_size - 1) // 2

    def _crop(self, out):
        end = None if self.filt_size % 2 else -1
        return out[:, :, 1:end, 1:end]


class Conv2d(nn.Conv2d):
    """nn.Conv2d (same name, parameters and output) that trains its wide 3x3 layers by Winograd F(4x4, 3x3).

    Used where it is measured faster than the direct kernel: a gradient is recorded, float32 on the
    CPU without autocast or torch.compile, 3x3 filters, stride and dilation 1, one group, zero padding,
    at least `WINOGRAD_MIN_CHANNELS` channels in and out (the ResNet blocks), and at least 128 4x4 output
    tiles (`winograd.pays_off`: 32x32 maps at batch 2, as at 128 px): there, 1.5-1.7x faster forward and
    backward at 256 px (docs/performance.md). Everything else, and every forward without gradient (test.py
    stays bit-exact with the official images), runs nn.Conv2d's kernel. `winograd = False` on an
    instance (`--conv_algo direct`) turns it off.
    """
    WINOGRAD_MIN_CHANNELS = 256
    winograd = True

    def _use_winograd(self, x):
        return (self.winograd and torch.is_grad_enabled() and (x.requires_grad or self.weight.requires_grad)
                and x.device.type == 'cpu' and x.dtype == torch.float32 and self.weight.dtype == torch.float32
                and self.kernel_size == (3, 3) and self.stride == (1, 1) and self.dilation == (1, 1)
                and self.groups == 1 and self.padding_mode == 'zeros' and self.padding in ((0, 0), (1, 1))
                and min(self.in_channels, self.out_channels) >= self.WINOGRAD_MIN_CHANNELS
                and not torch.is_autocast_enabled('cpu') and not torch.compiler.is_compiling()
                and winograd.pays_off(x.shape, self.padding[0]))

    def forward(self, x):
        if self._use_winograd(x):
            return winograd.winograd_conv3x3(x, self.weight, self.bias, self.padding[0])
        return super().forward(x)


def set_conv_algorithm(net, algorithm):
    """`--conv_algo`: 'auto' lets this module's Conv2d layers pick Winograd where it is faster,
    'direct' runs every convolution by its framework kernel (oneDNN / cuDNN)."""
    if algorithm not in ('auto', 'direct'):
        raise ValueError(f"--conv_algo must be 'auto' or 'direct', got {algorithm!r}")
    for module in net.modules():
        if isinstance(module, Conv2d):
            module.winograd = algorithm == 'auto'


class Identity(nn.Module):
    def forward(self, x):
        return x


class InstanceNorm2d(nn.InstanceNorm2d):
    """CUT's instance norm (no affine map, no running statistics): each image's channels normalised
    over (H, W).

    When a gradient will flow back through it, it is computed as group norm with one channel per
    group, the same normalisation but a better backward: it keeps the channels-last layout
    (--channels_last) where nn.InstanceNorm2d converts to NCHW and back, returns a tensor rather than
    a view (the in-place ReLU after it then needs no copy), runs faster on CPU, and avoids a torch
    2.14 CPU bug: nn.InstanceNorm2d's backward gives wrong input gradients for a batch of one image
    when the incoming gradient has channels-last strides (as the patch sampler's permuted view
    produces). Without gradient (test.py) nn.InstanceNorm2d's own kernel runs, so translations match
    the official ones bit for bit.
    """

    def __init__(self, num_features, eps=1e-5):
        super().__init__(num_features, eps=eps, affine=False, track_running_stats=False)

    def forward(self, x):
        # (B, C, H, W) -> (B, C, H, W); float16 statistics (--amp fp16) overflow: they are taken in float32
        dtype = x.dtype
        if dtype == torch.float16:
            x = x.float()
        if _needs_graph(x):
            return F.group_norm(x, self.num_features, eps=self.eps).to(dtype)
        return super().forward(x).to(dtype)


def get_norm_layer(norm_type='instance'):
    """A constructor `norm_layer(num_channels) -> nn.Module` for 'batch' | 'instance' | 'none'.

    Batch norm learns an affine map and tracks running statistics; instance norm does neither (as CUT).
    """
    if norm_type == 'batch':
        return functools.partial(nn.BatchNorm2d, affine=True, track_running_stats=True)
    if norm_type == 'instance':
        return InstanceNorm2d
    if norm_type == 'none':
        return lambda num_channels: Identity()
    raise ValueError(f'unknown norm {norm_type!r}; valid names: {", ".join(NORM_TYPES)}')


def check_layer_indices(layers, num_layers):
    bad = [i for i in layers if not 0 <= i < num_layers]
    if bad:
        raise ValueError(f'feature layer indices {bad} out of range; valid indices are 0..{num_layers - 1}')


def forward_with_features(model, x, layers=None, encode_only=False):
    """Run an nn.Sequential, tapping the outputs of the children listed in `layers`.

    No layers: the output. `encode_only`: the tapped features (in the order of `layers`), stopping
    after the deepest one. Otherwise: (output, features) from the same single pass.
    """
    if not layers:
        return model(x)
    check_layer_indices(layers, len(model))
    wanted = set(layers)
    last = max(wanted) if encode_only else len(model) - 1
    tapped = {}
    for index in range(last + 1):
        x = model[index](x)
        if index in wanted:
            following = model[index + 1] if index + 1 < len(model) else None
            # An in-place activation next would overwrite the tapped tensor; keep its own copy.
            tapped[index] = x.clone() if getattr(following, 'inplace', False) else x
    feats = [tapped[i] for i in layers]
    return feats if encode_only else (x, feats)
