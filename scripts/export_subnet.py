"""Export one configuration of a trained super-net as a plain sub-net that test.py loads.

    python scripts/export_subnet.py --checkpoint checkpoints/h2z_supernet --epoch latest \
        --config_str 16_16_32_16_16_64_16_24 --output checkpoints/h2z_compressed/latest_net_G.pth
    python test.py --dataroot datasets/horse2zebra --checkpoints_dir checkpoints --name h2z_compressed --epoch latest

--checkpoint is a step-1 run folder (with --epoch) or a super-net file <epoch>_net_G.pth; the generator
options come from the train_opt.json beside it (a bare file needs --ngf and the other flags). --search_result
takes the best configuration of scripts/evolution_search.py's result.json instead of --config_str. Writes the
sub-net's state dict (gan-compression's sub_mobile_resnet_9blocks keys), a train_opt.json beside it (the
run's options with --netG sub_mobile_resnet_9blocks --config_str ..., so test.py rebuilds it) and
export.json (configuration, MACs, parameters, and the largest difference between super-net and sub-net
outputs on a random input, which must be 0).
"""
import argparse
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from evaluation.macs import count_params, mobile_macs  # noqa: E402
from models.networks import generator_from_options  # noqa: E402
from models.networks.compression import decode_config, encode_config, export_subnet  # noqa: E402
from util import errors, util  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--checkpoint', required=True, help='a step-1 run folder or its <epoch>_net_G.pth')
    p.add_argument('--epoch', default='latest', help='with a run folder: which <epoch>_net_G.pth')
    p.add_argument('--config_str', default=None, help='the configuration, e.g. 16_16_32_16_16_64_16_24')
    p.add_argument('--search_result', default=None, help="or the best of evolution_search.py's result.json")
    p.add_argument('--output', required=True, help='the sub-net file, e.g. checkpoints/<name>/latest_net_G.pth')
    p.add_argument('--force', action='store_true', help='replace a different train_opt.json in the output folder')
    # a bare super-net file without train_opt.json: its architecture
    p.add_argument('--ngf', type=int, default=None)
    p.add_argument('--input_nc', type=int, default=3)
    p.add_argument('--output_nc', type=int, default=3)
    p.add_argument('--normG', default='instance', choices=['instance', 'none'])
    p.add_argument('--G_output', default='tanh', choices=['tanh', 'residual'])
    p.add_argument('--crop_size', type=int, default=256, help='MACs are counted at this side (default: the run\'s)')
    return p.parse_args(argv)


def source_options(args):
    """(weights path, options dict) of the super-net."""
    if os.path.isdir(args.checkpoint):
        path, folder = os.path.join(args.checkpoint, f'{args.epoch}_net_G.pth'), args.checkpoint
    else:
        path, folder = args.checkpoint, os.path.dirname(os.path.abspath(args.checkpoint))
    if not os.path.isfile(path):
        raise SystemExit(f'error: {path} not found (--checkpoint: a run folder with <epoch>_net_G.pth, or that file)')
    opt_path = os.path.join(folder, 'train_opt.json')
    if os.path.isfile(opt_path):
        with open(opt_path) as f:
            return path, json.load(f)
    if args.ngf is None:
        raise SystemExit(f'error: {path} has no train_opt.json beside it: give --ngf (and --input_nc, --output_nc, '
                         f'--normG, --G_output if they differ from the defaults)')
    return path, {'model': 'compression', 'netG': 'super_mobile_resnet_9blocks', 'ngf': args.ngf,
                  'input_nc': args.input_nc, 'output_nc': args.output_nc, 'normG': args.normG, 'no_dropout': True,
                  'init_type': 'normal', 'init_gain': 0.02, 'no_antialias': True, 'no_antialias_up': True,
                  'crop_size': args.crop_size, 'load_size': args.crop_size, 'stylegan2_G_num_downsampling': 1,
                  'G_output': args.G_output}


def chosen_config(args):
    if (args.config_str is None) == (args.search_result is None):
        raise SystemExit('error: give --config_str or --search_result (one of them)')
    if args.config_str:
        return args.config_str
    try:
        with open(args.search_result) as f:
            return json.load(f)['best']['config']
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise errors.ConfigError(f'--search_result {args.search_result}: not a result.json of scripts/evolution_search.py '
                         f'({type(exc).__name__}: {exc})') from exc


def main(argv=None):
    args = parse_args(argv)
    config = encode_config(decode_config(chosen_config(args)))
    path, opts = source_options(args)
    supernet = generator_from_options(opts, init_weights=False, netG='super_mobile_resnet_9blocks', config_str=None)
    state = util.strip_module_prefix(util.safe_torch_load(path))
    mismatch = util.state_dict_mismatch(supernet.state_dict(), state)
    if mismatch:
        raise errors.ConfigError(f'{path} is not a super_mobile_resnet_9blocks of --ngf {opts["ngf"]}: {mismatch}')
    supernet.load_state_dict(state, strict=True)
    sub = export_subnet(supernet.eval(), config).eval()
    crop = opts.get('crop_size', args.crop_size)
    x = torch.rand(2, opts['input_nc'], crop, crop, generator=torch.Generator().manual_seed(0)) * 2 - 1
    with torch.no_grad():
        difference = float((supernet.set_config(config)(x) - sub(x)).abs().max())
    if difference != 0:
        raise SystemExit(f'error: the sub-net differs from the super-net by {difference:g}')

    out_dir = os.path.dirname(os.path.abspath(args.output))
    if os.path.abspath(path) == os.path.abspath(args.output):
        raise SystemExit(f'error: --output {args.output} is the super-net itself')
    os.makedirs(out_dir, exist_ok=True)
    run_opts = {**opts, 'netG': 'sub_mobile_resnet_9blocks', 'config_str': config,
                'name': os.path.basename(out_dir), 'exported_from': os.path.abspath(path)}
    opt_path = os.path.join(out_dir, 'train_opt.json')
    if os.path.isfile(opt_path) and not args.force:
        with open(opt_path) as f:
            existing = json.load(f)
        if (existing.get('netG'), existing.get('config_str')) != ('sub_mobile_resnet_9blocks', config):
            raise SystemExit(f'error: {opt_path} describes another network (--netG {existing.get("netG")} '
                             f'--config_str {existing.get("config_str")}); export to another folder or pass --force')
    util.atomic_torch_save(sub.state_dict(), args.output)
    util.atomic_write_json(opt_path, run_opts)
    summary = {'config': config, 'source': os.path.abspath(path), 'output': os.path.abspath(args.output),
               'macs': mobile_macs(config, crop, input_nc=opts['input_nc'], output_nc=opts['output_nc']),
               'crop_size': crop, 'params': count_params(sub), 'max_abs_difference': difference}
    util.atomic_write_json(os.path.join(out_dir, 'export.json'), summary)
    print(f'exported {config} ({summary["macs"] / 1e9:.4f} G MACs at {crop} px, {summary["params"] / 1e6:.4f} M '
          f'params; super-net vs sub-net max difference {difference:g}) -> {args.output}')
    return summary


if __name__ == '__main__':
    sys.exit(errors.guard(lambda argv: main(argv) and 0))
