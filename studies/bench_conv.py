"""Forward and backward time of one 3x3 convolution, direct kernel against Winograd F(4x4, 3x3), with each
one's float32 error against float64; JSON out.

    python studies/bench_conv.py                                   # the generator's 3x3 layers at 256 px
    python studies/bench_conv.py --shape 2,256,256,64,0 --threads 1 --repeats 9

A shape is batch,c_in,c_out,size,padding (the input is size x size, already padded when padding is 0,
as in the ResNet blocks). Times are medians over --repeats after one warm-up; the error is the largest
absolute difference from the float64 direct convolution divided by the largest output (relative),
for the output and for the input and weight gradients.
"""
import argparse
import os
import statistics
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from cpu.winograd import winograd_conv3x3  # noqa: E402
from util.util import report_json  # noqa: E402

# the 3x3 stride-1 layers of resnet_9blocks at 256 px, batch 2 as in a src_hdce step
DEFAULT_SHAPES = ['2,256,256,66,0', '2,64,128,256,1', '2,128,256,128,1', '2,256,128,128,1', '2,128,64,256,1']


def parse_shape(text):
    try:
        n, c_in, c_out, size, pad = (int(v) for v in text.split(','))
    except ValueError:
        raise argparse.ArgumentTypeError(f'--shape wants batch,c_in,c_out,size,padding (5 integers), got {text!r}')
    if min(n, c_in, c_out, size) < 1 or pad not in (0, 1) or size + 2 * pad < 3:
        raise argparse.ArgumentTypeError(f'--shape {text!r}: sizes must be >= 1, padding 0 or 1, '
                                         f'size + 2 * padding >= 3')
    return n, c_in, c_out, size, pad


def timed(fn, grad, repeats):
    forward, backward = [], []
    for i in range(repeats + 1):
        start = time.perf_counter()
        out = fn()
        middle = time.perf_counter()
        out.backward(grad)
        end = time.perf_counter()
        if i:  # the first run warms up
            forward.append(middle - start)
            backward.append(end - middle)
    return round(1000 * statistics.median(forward), 2), round(1000 * statistics.median(backward), 2)


def measure(shape, repeats, seed=0):
    n, c_in, c_out, size, pad = shape
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, c_in, size, size, generator=gen).requires_grad_()
    weight = (torch.randn(c_out, c_in, 3, 3, generator=gen) / (3 * c_in ** 0.5)).requires_grad_()
    bias = torch.randn(c_out, generator=gen).requires_grad_()
    out_size = size + 2 * pad - 2
    grad = torch.randn(n, c_out, out_size, out_size, generator=gen)
    row = {'shape': {'batch': n, 'c_in': c_in, 'c_out': c_out, 'size': size, 'padding': pad}}
    variants = {'direct': lambda *a: F.conv2d(*a, padding=pad),
                'winograd': lambda *a: winograd_conv3x3(*a, padding=pad)}
    ref_inputs = [t.detach().double().requires_grad_() for t in (x, weight, bias)]
    ref_out = F.conv2d(*ref_inputs, padding=pad)
    ref = [ref_out] + list(torch.autograd.grad(ref_out, ref_inputs, grad.double()))
    for name, conv in variants.items():
        fwd, bwd = timed(lambda: conv(x, weight, bias), grad, repeats)
        out = conv(x, weight, bias)
        got = [out] + list(torch.autograd.grad(out, (x, weight, bias), grad))
        errors = {key: ((a.detach().double() - b.detach()).abs().max() / b.detach().abs().max()).item()
                  for key, a, b in zip(('output', 'grad_input', 'grad_weight'), got, ref)}
        row[name] = {'forward_ms': fwd, 'backward_ms': bwd, 'total_ms': round(fwd + bwd, 2),
                     'relative_error': {k: float(f'{v:.3g}') for k, v in errors.items()}}
    row['winograd_over_direct'] = round(row['winograd']['total_ms'] / row['direct']['total_ms'], 3)
    return row


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--shape', type=parse_shape, action='append', help='batch,c_in,c_out,size,padding (repeatable)')
    p.add_argument('--threads', type=int, default=None, help='torch.set_num_threads')
    p.add_argument('--repeats', type=int, default=5)
    p.add_argument('--out', default=None, help='also write the JSON here')
    args = p.parse_args(argv)
    if args.repeats < 1:
        p.error('--repeats must be >= 1')
    if args.threads:
        torch.set_num_threads(args.threads)
    shapes = args.shape or [parse_shape(s) for s in DEFAULT_SHAPES]
    result = {'torch': torch.__version__, 'threads': torch.get_num_threads(), 'repeats': args.repeats,
              'layers': [measure(shape, args.repeats) for shape in shapes]}
    report_json(result, args.out)
    return 0


if __name__ == '__main__':
    sys.exit(main())
