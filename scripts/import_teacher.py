"""Import an official gan-compression / Hneg_SRC ResNet teacher (e.g. `pretrained/cycle_gan/horse2zebra/full/
latest_net_G.pth`) as this project's ResNet generator in gan-compression's layout (--no_antialias
--no_antialias_up), which compression training uses as its frozen teacher.

    python scripts/import_teacher.py --source latest_net_G.pth --checkpoints_dir checkpoints --name h2z_teacher
    python scripts/import_teacher.py --source latest_net_G.pth --output teachers/h2z_net_G.pth

Key changes: the 'module.' prefix of DataParallel files is removed; the official residual blocks always hold
a Dropout module, so their second convolution `conv_block.6` becomes this project's `conv_block.5` (kept as
.6 with --use_dropout); instance-norm running statistics of old PyTorch files are dropped. The result is
loaded strictly into the generator the flags describe: a mismatch names the file and the missing and
unexpected keys. Into a run folder it writes a train_opt.json with the generator's options (so test.py and the
compression model rebuild it), then `<epoch>_net_G.pth`, each atomically. A folder that already holds weights or
another run's options, or an existing --output file, is refused unless --overwrite is given.

gan-compression's pix2pix teachers (`pretrained/pix2pix/{map2sat,cityscapes}/full/latest_net_G.pth`) have the same
generator: `--model pix2pix --direction BtoA` records that the run is one, so test.py translates labels or maps
(the right half of the aligned pairs) with it.
"""
import argparse
import glob
import json
import os
import re
import sys

import torch
import torch.nn as nn

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from models.networks import define_G  # noqa: E402
from models.networks.generators import ResnetBlock  # noqa: E402
from util import errors, util  # noqa: E402

_BLOCK_KEY = re.compile(r'^(model\.\d+\.conv_block\.)(\d+)(\..+)$')
_NORM_STATS = ('running_mean', 'running_var', 'num_batches_tracked')


def _block_shift(net):
    """Child index of the official blocks' Dropout in this project's blocks, or None when they keep one."""
    block = next((m for m in net.modules() if isinstance(m, ResnetBlock)), None)
    if block is None or any(isinstance(m, nn.Dropout) for m in block.conv_block):
        return None
    first_relu = next(i for i, m in enumerate(block.conv_block) if isinstance(m, nn.ReLU))
    return first_relu + 1  # the official Dropout sits right after the first ReLU


def convert_official_state(state, net):
    """The official teacher state dict `state` renamed to the keys of `net` (a ResnetGenerator)."""
    state = util.strip_module_prefix(state)
    dropout_at = _block_shift(net)
    modules = dict(net.named_modules())
    converted = {}
    for key, value in state.items():
        match = _BLOCK_KEY.match(key)
        if match and dropout_at is not None and int(match.group(2)) > dropout_at:
            key = f'{match.group(1)}{int(match.group(2)) - 1}{match.group(3)}'
        owner, _, leaf = key.rpartition('.')
        if leaf in _NORM_STATS and isinstance(modules.get(owner), nn.InstanceNorm2d):
            continue  # PyTorch < 0.4 stored statistics of non-tracking instance norms
        converted[key] = value
    return converted


def load_official_teacher(path, net):
    """Load the official file `path` into `net` strictly; a mismatch raises naming the file and the keys."""
    if not os.path.isfile(path):
        raise errors.MissingFileError(f'--source {path}: no such file (an official *_net_G.pth generator file)')
    state = util.safe_torch_load(path)
    if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
        raise errors.ConfigError(f'{path} is not a state dict of tensors (an official *_net_G.pth file is one)')
    converted = convert_official_state(state, net)
    mismatch = util.state_dict_mismatch(net.state_dict(), converted)
    if mismatch:
        raise errors.ConfigError(f'{path} does not fit the generator: {mismatch} (check --ngf, --netG, '
                         f'--input_nc / --output_nc, --normG)')
    net.load_state_dict(converted, strict=True)
    return net


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--source', required=True, help='the official generator file (*_net_G.pth)')
    p.add_argument('--output', default=None, help='write the converted state dict here ...')
    p.add_argument('--checkpoints_dir', default=None, help='... or into <checkpoints_dir>/<name>/<epoch>_net_G.pth')
    p.add_argument('--name', default=None)
    p.add_argument('--epoch', default='latest')
    p.add_argument('--netG', default='resnet_9blocks', choices=['resnet_9blocks', 'resnet_6blocks', 'resnet_4blocks'])
    p.add_argument('--ngf', type=int, default=64)
    p.add_argument('--input_nc', type=int, default=3)
    p.add_argument('--output_nc', type=int, default=3)
    p.add_argument('--normG', default='instance', choices=['instance', 'batch', 'none'])
    p.add_argument('--use_dropout', action='store_true', help='build blocks with dropout (keys conv_block.6)')
    p.add_argument('--model', default='cut', choices=['cut', 'pix2pix'],
                   help="the model test.py rebuilds the run as: pix2pix for gan-compression's pix2pix teachers")
    p.add_argument('--direction', default='AtoB', choices=['AtoB', 'BtoA'],
                   help="with --model pix2pix: the teacher's direction (BtoA for map->satellite and Cityscapes)")
    p.add_argument('--overwrite', action='store_true',
                   help='replace the weights and options of an existing run folder (or an existing --output file)')
    args = p.parse_args(argv)
    if (args.output is None) == (args.checkpoints_dir is None or args.name is None):
        p.error('give either --output or both --checkpoints_dir and --name')
    return args


def main(argv=None):
    args = parse_args(argv)
    net = define_G(args.input_nc, args.output_nc, args.ngf, args.netG, norm=args.normG, use_dropout=args.use_dropout,
                   no_antialias=True, no_antialias_up=True, init_weights=False)
    load_official_teacher(args.source, net)
    options = {'model': args.model, 'netG': args.netG, 'ngf': args.ngf, 'input_nc': args.input_nc,
               'output_nc': args.output_nc, 'normG': args.normG, 'no_dropout': not args.use_dropout,
               'no_antialias': True, 'no_antialias_up': True, 'G_output': 'tanh',
               'imported_from': os.path.abspath(args.source)}
    if args.model == 'pix2pix':
        options['direction'] = args.direction
    if args.output:
        target = args.output
        if os.path.exists(target) and not args.overwrite:
            raise errors.OutputExistsError(f'--output {target} exists; pass --overwrite to replace it')
        os.makedirs(os.path.dirname(os.path.abspath(target)), exist_ok=True)
    else:
        folder = os.path.join(args.checkpoints_dir, args.name)
        target = os.path.join(folder, f'{args.epoch}_net_G.pth')
        opt_path = os.path.join(folder, 'train_opt.json')
        if not args.overwrite:
            refuse_existing_run(folder, opt_path)
        os.makedirs(folder, exist_ok=True)
        util.atomic_write_json(opt_path, options)  # first: the weights file marks a finished import
    util.atomic_torch_save(net.state_dict(), target)
    print(f'imported {args.source} -> {target} ({sum(p.numel() for p in net.parameters()) / 1e6:.3f} M params)')
    return target


def refuse_existing_run(folder, opt_path):
    """Raise when `folder` holds weights, or options that are not those of an unfinished import."""
    weights = sorted(os.path.basename(p) for p in glob.glob(os.path.join(glob.escape(folder), '*_net_*.pth')))
    other_options = False
    if os.path.isfile(opt_path):
        try:
            with open(opt_path) as f:
                other_options = 'imported_from' not in json.load(f)
        except (OSError, ValueError, TypeError):
            other_options = True
    if weights or other_options:
        held = ', '.join(weights[:4]) + (' ...' if len(weights) > 4 else '') if weights else 'train_opt.json'
        raise errors.OutputExistsError(f'run folder {folder} exists ({held}); pass --overwrite to replace its weights and '
                              'options, or choose another --name')


if __name__ == '__main__':
    sys.exit(errors.guard(lambda argv: main(argv) and 0))
