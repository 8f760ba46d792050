"""3x3 stride-1 convolution by Winograd's minimal filtering F(4x4, 3x3) (Lavin & Gray, "Fast Algorithms
for Convolutional Neural Networks", CVPR 2016), for float32 training on CPUs.

Each 4x4 output tile is A^T [(G g G^T) * (B^T d B)] A, d the 6x6 input tile: the channel sum becomes 36
matrix products with 4x fewer multiplications than the direct convolution. The transforms are those of
the Toom-Cook interpolation points 0, +-1, +-1/2 and infinity; halves instead of the usual +-2 keep the
float32 error lower. The result equals the direct convolution in exact arithmetic; in float32 its
error is larger than the direct kernel's but far below that of the TF32 convolutions PyTorch runs by
default on Ampere GPUs (studies/bench_conv.py measures both; docs/performance.md).
"""
import functools
import math
from fractions import Fraction as Q

import torch
import torch.nn.functional as F

from util.errors import ConfigError

TILE = 4  # output tile m
TAPS = 3  # filter size r
SPAN = TILE + TAPS - 1  # input tile m + r - 1 = 6
POINTS = (0, 1, -1, Q(1, 2), Q(-1, 2))  # the finite interpolation points; the sixth is infinity

# F(4, 3) for POINTS: A^T evaluates the product polynomial's tiles at the points (rows: powers 0..3; the
# last column is the point at infinity), G evaluates the filter there divided by the Lagrange denominators,
# B^T holds the coefficients of the products of (x - a) over the other points. Exact in binary
# floating point (every entry is a dyadic rational or a third).
A_T = ((1, 1, 1, 1, 1, 0),
       (0, 1, -1, Q(1, 2), Q(-1, 2), 0),
       (0, 1, 1, Q(1, 4), Q(1, 4), 0),
       (0, 1, -1, Q(1, 8), Q(-1, 8), 1))
G = ((4, 0, 0),
     (Q(2, 3), Q(2, 3), Q(2, 3)),
     (Q(2, 3), Q(-2, 3), Q(2, 3)),
     (Q(-8, 3), Q(-4, 3), Q(-2, 3)),
     (Q(-8, 3), Q(4, 3), Q(-2, 3)),
     (0, 0, 1))
B_T = ((Q(1, 4), 0, Q(-5, 4), 0, 1, 0),
       (0, Q(-1, 4), Q(-1, 4), 1, 1, 0),
       (0, Q(1, 4), Q(-1, 4), -1, 1, 0),
       (0, Q(-1, 2), -1, Q(1, 2), 1, 0),
       (0, Q(1, 2), -1, Q(-1, 2), 1, 0),
       (0, Q(1, 4), 0, Q(-5, 4), 0, 1))


def winograd_matrices():
    """(A^T, G, B^T) of F(4, 3) as float64: y = A^T [(G g) * (B^T d)] is the 1-D correlation
    y_i = sum_k g_k d_{i+k}, i < 4, of a 3-tap filter g and a 6-sample input d."""
    return tuple(torch.tensor([[float(v) for v in row] for row in m], dtype=torch.float64) for m in (A_T, G, B_T))


@functools.lru_cache(maxsize=None)
def _transforms(dtype, device):
    """The 2-D transforms as Kronecker products: K_B (36x36) on tiles, K_G (36x9) on filters, K_A (16x36)."""
    at, g, bt = winograd_matrices()
    return tuple(torch.kron(m, m).to(dtype=dtype, device=device) for m in (bt, g, at))


class _Scratch:
    """Buffers for the transforms' intermediates, reused by every call and grown when a larger one is asked for.

    The intermediates are 2.25x an activation, several per layer call; allocated afresh at every call they
    cost page faults and fragment glibc's heap (peak memory with and without them: docs/performance.md).
    Nothing returned to a caller is a view of them.
    """

    def __init__(self):
        self.buffers = {}

    def get(self, slot, shape, like):
        key = (slot, like.device, like.dtype)
        numel = math.prod(shape)
        buffer = self.buffers.get(key)
        if buffer is None or buffer.numel() < numel:
            self.buffers.pop(key, None)
            buffer = self.buffers[key] = torch.empty(numel, dtype=like.dtype, device=like.device)
        return buffer[:numel].view(shape)


SCRATCH = _Scratch()


def _fresh(view):
    """A new contiguous tensor holding `view` (never the scratch memory itself)."""
    return torch.empty(view.shape, dtype=view.dtype, device=view.device).copy_(view)


def _transformed_tiles(x, pad, tiles_h, tiles_w, k_b, tiles_slot, out_slot):
    """B^T d B of every zero-padded 6x6 input tile (stride 4), as (36, N*tiles_h*tiles_w, C) in `out_slot`."""
    n, c, h, w = x.shape
    rows, cols = TILE * tiles_h + TAPS - 1, TILE * tiles_w + TAPS - 1
    last = SCRATCH.get(tiles_slot, (n, rows, cols, c), x)
    if pad or (rows, cols) != (h, w):
        last.zero_()
    last[:, pad:pad + h, pad:pad + w].copy_(x.permute(0, 2, 3, 1))
    s_n, s_h, s_w, s_c = last.stride()
    view = last.as_strided((SPAN, SPAN, n, tiles_h, tiles_w, c), (s_h, s_w, s_n, TILE * s_h, TILE * s_w, s_c))
    p = n * tiles_h * tiles_w
    tiles = SCRATCH.get(out_slot, (SPAN, SPAN, n, tiles_h, tiles_w, c), x).copy_(view)
    # the channels-last copy is spent: its slot takes the transformed tiles
    out = SCRATCH.get(tiles_slot, (SPAN * SPAN, p * c), x)
    torch.matmul(k_b, tiles.view(SPAN * SPAN, p * c), out=out)
    return out.view(SPAN * SPAN, p, c)


def _filter_transform(weight, k_g, slot):
    """G g G^T of every filter, as (36, C_in, C_out)."""
    c_out, c = weight.shape[:2]
    taps = SCRATCH.get('w', (TAPS, TAPS, c, c_out), weight).copy_(weight.permute(2, 3, 1, 0))
    out = SCRATCH.get(slot, (SPAN * SPAN, c * c_out), weight)
    torch.matmul(k_g, taps.view(TAPS * TAPS, c * c_out), out=out)
    return out.view(SPAN * SPAN, c, c_out)


def _geometry(x, pad):
    n, c, h, w = x.shape
    out_h, out_w = h + 2 * pad - TAPS + 1, w + 2 * pad - TAPS + 1
    return n, c, out_h, out_w, -(-out_h // TILE), -(-out_w // TILE)


class _Winograd3x3(torch.autograd.Function):
    """conv2d(x, weight, bias, stride=1, padding=pad) for 3x3 filters; backward by the same transforms.

    Saves the input and the weight, like the direct convolution; the input's tile transform is
    recomputed in backward rather than kept (2.25x the input's size).
    """

    @staticmethod
    def forward(ctx, x, weight, bias, pad):
        k_b, k_g, k_a = _transforms(x.dtype, x.device)
        n, c, out_h, out_w, tiles_h, tiles_w = _geometry(x, pad)
        c_out = weight.shape[0]
        p = n * tiles_h * tiles_w
        v = _transformed_tiles(x, pad, tiles_h, tiles_w, k_b, 'a', 'b')
        u = _filter_transform(weight, k_g, 'c')
        m = torch.bmm(v, u, out=SCRATCH.get('b', (SPAN * SPAN, p, c_out), x))
        y = torch.matmul(k_a, m.view(SPAN * SPAN, p * c_out), out=SCRATCH.get('a', (TILE * TILE, p * c_out), x))
        y = y.view(TILE, TILE, n, tiles_h, tiles_w, c_out).permute(2, 5, 3, 0, 4, 1)
        y = y.reshape(n, c_out, TILE * tiles_h, TILE * tiles_w)[..., :out_h, :out_w]
        out = torch.empty((n, c_out, out_h, out_w), dtype=x.dtype, device=x.device)
        if bias is None:
            out.copy_(y)
        else:
            torch.add(y, bias.view(1, -1, 1, 1), out=out)
        ctx.save_for_backward(x, weight)
        ctx.pad, ctx.has_bias = pad, bias is not None
        return out

    @staticmethod
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        if torch.is_grad_enabled():
            # create_graph=True (e.g. StarGAN v2's R1 penalty): the scratch buffers and out= products below
            # are not differentiable, so the gradient is taken by the direct kernel's differentiable ops
            return _direct_backward(ctx, grad, x, weight)
        k_b, k_g, k_a = _transforms(x.dtype, x.device)
        n, c, out_h, out_w, tiles_h, tiles_w = _geometry(x, ctx.pad)
        c_out = weight.shape[0]
        p = n * tiles_h * tiles_w
        g_tiles = SCRATCH.get('a', (TILE, TILE, n, tiles_h, tiles_w, c_out), x)
        target = g_tiles.permute(2, 5, 3, 0, 4, 1)  # (n, c_out, tiles_h, 4, tiles_w, 4)
        if (TILE * tiles_h, TILE * tiles_w) == (out_h, out_w):
            target.copy_(grad.reshape(n, c_out, tiles_h, TILE, tiles_w, TILE))
        else:
            padded = F.pad(grad, (0, TILE * tiles_w - out_w, 0, TILE * tiles_h - out_h))
            target.copy_(padded.view(n, c_out, tiles_h, TILE, tiles_w, TILE))
        g_m = torch.matmul(k_a.t(), g_tiles.view(TILE * TILE, p * c_out),
                           out=SCRATCH.get('b', (SPAN * SPAN, p * c_out), x)).view(SPAN * SPAN, p, c_out)
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[1]:
            v = _transformed_tiles(x, ctx.pad, tiles_h, tiles_w, k_b, 'a', 'c')
            g_u = torch.bmm(v.transpose(1, 2), g_m, out=SCRATCH.get('d', (SPAN * SPAN, c, c_out), x))
            grad_w = torch.matmul(k_g.t(), g_u.view(SPAN * SPAN, c * c_out),
                                  out=SCRATCH.get('w', (TAPS * TAPS, c * c_out), x))
            grad_w = _fresh(grad_w.view(TAPS, TAPS, c, c_out).permute(3, 2, 0, 1))
        if ctx.needs_input_grad[0]:
            u = _filter_transform(weight, k_g, 'd')
            g_v = torch.bmm(g_m, u.transpose(1, 2), out=SCRATCH.get('c', (SPAN * SPAN, p, c), x))
            g_d = torch.matmul(k_b.t(), g_v.view(SPAN * SPAN, p * c), out=SCRATCH.get('a', (SPAN * SPAN, p * c), x))
            grad_x = _overlap_add(g_d.view(SPAN, SPAN, n, tiles_h, tiles_w, c), x.shape, ctx.pad, 'd')
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_b = grad.sum((0, 2, 3))
        return grad_x, grad_w, grad_b, None


def _direct_backward(ctx, grad, x, weight):
    """The same gradients as the Winograd backward, by differentiable convolutions (double backward)."""
    grad_x = grad_w = grad_b = None
    if ctx.needs_input_grad[0]:
        grad_x = torch.nn.grad.conv2d_input(x.shape, weight, grad, padding=ctx.pad)
    if ctx.needs_input_grad[1]:
        grad_w = torch.nn.grad.conv2d_weight(x, weight.shape, grad, padding=ctx.pad)
    if ctx.has_bias and ctx.needs_input_grad[2]:
        grad_b = grad.sum((0, 2, 3))
    return grad_x, grad_w, grad_b, None


def _overlap_add(g_d, shape, pad, slot):
    """Sum the gradients of overlapping 6x6 tiles (stride 4) back into a new NCHW input gradient."""
    _, _, n, tiles_h, tiles_w, c = g_d.shape
    acc = SCRATCH.get(slot, (n, tiles_h + 1, TILE, tiles_w + 1, TILE, c), g_d).zero_()
    spill = SPAN - TILE
    for rows, row_dst in ((slice(0, TILE), (slice(0, tiles_h), slice(None))),
                          (slice(TILE, SPAN), (slice(1, None), slice(0, spill)))):
        for cols, col_dst in ((slice(0, TILE), (slice(0, tiles_w), slice(None))),
                              (slice(TILE, SPAN), (slice(1, None), slice(0, spill)))):
            acc[:, row_dst[0], row_dst[1], col_dst[0], col_dst[1]] += g_d[rows, cols].permute(2, 3, 0, 4, 1, 5)
    h, w = shape[-2:]
    full = acc.view(n, TILE * (tiles_h + 1), TILE * (tiles_w + 1), c)[:, pad:pad + h, pad:pad + w]
    return _fresh(full.permute(0, 3, 1, 2))


# Below about 128 output tiles the 36 matrix products are too small to run at speed (the measurements at
# 64 and 128 px and of single layers by studies/bench_conv.py: docs/performance.md).
MIN_TILES = 128


def pays_off(shape, padding):
    """Whether an input of `shape` (N, C, H, W) has enough 4x4 output tiles for Winograd to beat the
    direct kernel."""
    n, _, h, w = shape
    tiles = n * -(-(h + 2 * padding - TAPS + 1) // TILE) * -(-(w + 2 * padding - TAPS + 1) // TILE)
    return tiles >= MIN_TILES


def winograd_conv3x3(x, weight, bias=None, padding=0):
    """F.conv2d(x, weight, bias, stride=1, padding=padding) for (C_out, C_in, 3, 3) weights, zero padding."""
    if x.dim() != 4 or weight.shape[-2:] != (TAPS, TAPS) or weight.shape[1] != x.shape[1]:
        raise ConfigError(f'winograd_conv3x3 needs an NCHW input and a (C_out, {x.shape[1]}, 3, 3) weight, '
                         f'got {tuple(x.shape)} and {tuple(weight.shape)}')
    if x.shape[-2] + 2 * padding < TAPS or x.shape[-1] + 2 * padding < TAPS:
        raise ConfigError(f'input {tuple(x.shape)} with padding {padding} is smaller than the 3x3 filter')
    return _Winograd3x3.apply(x, weight, bias, padding)
