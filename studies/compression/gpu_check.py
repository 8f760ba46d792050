"""One short run on a GPU machine for Table 3's step 1: iterations per second and peak memory of both arms at
256 px (the horse->zebra recipe, batch 1, random teacher and inputs: speed and memory do not depend on the
weights), the super-net against its exported sub-nets at Table 3's configurations on the device, and the MACs
of the teacher and of those configurations as torchprofile counts them there.

    python studies/compression/gpu_check.py --device cuda --json gpu_check.json            # a few minutes
    python studies/compression/gpu_check.py --device cpu --size 32 --ngf 8 --steps 2 --warmup 1   # the CPU test

Writes one JSON object (also printed).
"""
import argparse
import json
import os
import sys
import tempfile
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
import models  # noqa: E402
from evaluation.macs import count_params, profile_macs  # noqa: E402
from models.networks.compression import export_subnet  # noqa: E402
from models.runtime import Runtime  # noqa: E402
from options.train_options import TrainOptions  # noqa: E402
from util import util  # noqa: E402
from util.recipes import read_recipe  # noqa: E402

TABLE3_CONFIGS = ('16_16_32_16_16_64_16_24', '16_16_48_32_32_40_24_16', '40_16_48_16_48_48_16_16')


def build(arm, args, workdir):
    flags = read_recipe('compression_horse2zebra') + (read_recipe('compression_baseline') if arm == 'baseline' else [])
    flags += ['--dataroot', workdir, '--checkpoints_dir', workdir, '--name', arm, '--display_id', '0',
              '--gpu_ids', '0' if args.device.startswith('cuda') else '-1', '--seed', '0',
              '--load_size', str(args.size), '--crop_size', str(args.size)]
    if args.ngf:
        flags += ['--ngf', str(args.ngf), '--teacher_ngf', str(args.ngf), '--config_set',
                  {64: 'channels-64-cycleGAN', 16: 'channels-16', 8: 'channels-8'}[args.ngf],
                  '--num_patches', str(min(256, (args.size // 4) ** 2))]
    opt = TrainOptions(flags).parse()
    torch.manual_seed(0)
    model = models.create_model(opt, Runtime.from_options(opt))
    batch = {'A': torch.rand(1, 3, args.size, args.size) * 2 - 1, 'B': torch.rand(1, 3, args.size, args.size) * 2 - 1,
             'A_paths': ['a.png'], 'B_paths': ['b.png']}
    model.set_epoch(1)
    model.data_dependent_initialize(batch)
    model.setup(opt)
    model.parallelize()
    model.set_input(batch)
    return model


def sync(device):
    if device.startswith('cuda'):
        torch.cuda.synchronize()


def time_arm(arm, args, workdir):
    model = build(arm, args, workdir)
    for _ in range(args.warmup):
        model.optimize_parameters()
    sync(args.device)
    if args.device.startswith('cuda'):
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for _ in range(args.steps):
        model.optimize_parameters()
    sync(args.device)
    seconds = time.perf_counter() - start
    result = {'iterations_per_second': args.steps / seconds, 'steps': args.steps,
              'losses': {k: float(v) for k, v in model.get_current_losses().items()}}
    if args.device.startswith('cuda'):
        result['peak_memory_GiB'] = torch.cuda.max_memory_allocated() / 2 ** 30
    return result, model


@torch.no_grad()
def subnets(model, args):
    """Super-net vs exported sub-net on the device, at each Table 3 configuration the super-net can hold."""
    supernet = model._unwrapped('G').eval()
    x = torch.rand(2, 3, args.size, args.size, generator=torch.Generator().manual_seed(0)).to(args.device) * 2 - 1
    out = {}
    configs = TABLE3_CONFIGS if supernet.ngf == 64 else ('_'.join([str(supernet.ngf // 2)] * 8),)
    for config in configs:
        sub = export_subnet(supernet, config).eval()
        difference = float((supernet.set_config(config)(x) - sub(x)).abs().max())
        out[config] = {'max_abs_difference': difference, 'params': count_params(sub),
                       'macs': profile_macs(sub, (1, 3, args.size, args.size))}
    out['teacher'] = {'params': count_params(model.netT), 'macs': profile_macs(model.netT, (1, 3, args.size, args.size))}
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--device', default='cuda')
    p.add_argument('--size', type=int, default=256)
    p.add_argument('--ngf', type=int, default=None, choices=[8, 16, 64], help="default: the recipe's 64")
    p.add_argument('--steps', type=int, default=200, help='timed step-1 iterations per arm')
    p.add_argument('--warmup', type=int, default=20)
    p.add_argument('--json', default=None)
    args = p.parse_args(argv)
    if args.device.startswith('cuda') and not torch.cuda.is_available():
        raise SystemExit('error: --device cuda but CUDA is not available')
    result = {'device': torch.cuda.get_device_name() if args.device.startswith('cuda') else 'cpu',
              'size': args.size, 'torch': torch.__version__, 'arms': {}}
    with tempfile.TemporaryDirectory() as workdir:
        for arm in ('baseline', 'ours'):
            result['arms'][arm], model = time_arm(arm, args, workdir)
        result['subnets'] = subnets(model, args)
    if args.json:
        util.atomic_write_json(args.json, result)
    print(json.dumps(result, indent=1))
    return result


if __name__ == '__main__':
    main()
