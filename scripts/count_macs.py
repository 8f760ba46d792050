"""MACs and parameters of a generator as Table 3 counts them (torchprofile on one 1 x 3 x S x S input).

    python scripts/count_macs.py --netG resnet_9blocks --ngf 64          # the teacher: 56.80 G, 11.38 M
    python scripts/count_macs.py --config 16_16_32_16_16_64_16_24        # a sub-net: 2.962 G, 0.412 M

The ResNet is counted with gan-compression's layout (stride-2 convolutions and transposed convolutions, as
`--no_antialias --no_antialias_up` build it); --antialias counts CUT's default anti-aliased resampling
instead. For a configuration the closed form of evaluation/macs.py is printed beside torchprofile's count
and must agree with it. --json writes the figures.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from evaluation import macs as counting  # noqa: E402
from models.networks import GENERATORS, define_G  # noqa: E402
from util import errors, util  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--netG', default=None, choices=sorted(GENERATORS),
                   help='generator to count (default: sub_mobile_resnet_9blocks with --config, else resnet_9blocks)')
    p.add_argument('--config', '--config_str', dest='config', default=None,
                   help='channel configuration of a mobile ResNet, e.g. 16_16_32_16_16_64_16_24')
    p.add_argument('--ngf', type=int, default=64, help='base width (the super-net: its widest configuration)')
    p.add_argument('--crop_size', type=int, default=256, help='side of the square input')
    p.add_argument('--input_nc', type=int, default=3)
    p.add_argument('--output_nc', type=int, default=3)
    p.add_argument('--normG', default='instance', choices=['instance', 'none'])
    p.add_argument('--antialias', action='store_true', help="count CUT's anti-aliased down/upsampling")
    p.add_argument('--json', default=None, help='also write the figures to this JSON file')
    return p.parse_args(argv)


def count(args):
    netG = args.netG or ('sub_mobile_resnet_9blocks' if args.config else 'resnet_9blocks')
    if netG == 'sub_mobile_resnet_9blocks' and not args.config:
        raise SystemExit('error: --netG sub_mobile_resnet_9blocks needs --config (8 widths joined by "_")')
    if args.config and not netG.endswith('mobile_resnet_9blocks'):
        raise errors.ConfigError(f'--config {args.config} is a channel configuration of a mobile ResNet; --netG {netG} has '
                         'none (leave out --netG, or pass --netG sub_mobile_resnet_9blocks)')
    net = define_G(args.input_nc, args.output_nc, args.ngf, netG, norm=args.normG, no_antialias=not args.antialias,
                   no_antialias_up=not args.antialias, crop_size=args.crop_size, load_size=args.crop_size,
                   config_str=args.config, init_weights=False)
    size = (1, args.input_nc, args.crop_size, args.crop_size)
    result = {'netG': netG, 'ngf': args.ngf, 'config': args.config, 'input_size': list(size),
              'params': counting.count_params(net)}
    try:
        result['macs'] = counting.profile_macs(net, size)
        result['counter'] = 'torchprofile'
    except ImportError as exc:
        if not args.config:
            raise SystemExit(f'error: torchprofile is needed to count --netG {netG} ({exc}); '
                             f'pip install -r requirements.txt') from exc
        result['counter'] = 'closed form (torchprofile not installed)'
    if args.config and netG.endswith('mobile_resnet_9blocks'):
        closed = counting.mobile_macs(args.config, args.crop_size, input_nc=args.input_nc, output_nc=args.output_nc)
        result['macs_closed_form'] = closed
        result.setdefault('macs', closed)
        if closed != result['macs']:
            raise SystemExit(f'error: closed-form MACs {closed} differ from torchprofile\'s {result["macs"]}')
    return result


def main(argv=None):
    args = parse_args(argv)
    result = count(args)
    what = result['netG'] + (f' {result["config"]}' if result['config'] else f' ngf {result["ngf"]}')
    print(f'{what} at {args.crop_size} px: {counting.format_count(result["macs"], result["params"])} '
          f'[{result["counter"]}]')
    if args.json:
        util.atomic_write_json(args.json, result)
    return result


if __name__ == '__main__':
    sys.exit(errors.guard(lambda argv: main(argv) and 0))
