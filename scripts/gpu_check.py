"""The checks of scripts/gpu_check.sh that are Python rather than a train.py run; each prints what it found and
exits non-zero when the check fails.

    torchrun --standalone --nproc_per_node 1 scripts/gpu_check.py process_group   # NCCL on a GPU, gloo on the CPU
    python scripts/gpu_check.py device_vs_cpu --device cuda:0     # one step's losses on the device and on the CPU
    python scripts/gpu_check.py sync_free --device cuda:0 --model stargan_v2 --amp fp16 [--channels_last] [--compile]

sync_free counts the step's reads back to the host: on CUDA, the synchronizing operations that
torch.cuda.set_sync_debug_mode('warn') reports; on the CPU, the calls of Tensor.item / tolist / __float__ / ...
"""
import argparse
import contextlib
import math
import os
import sys
import tempfile
import warnings

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import models  # noqa: E402
from models.runtime import Runtime  # noqa: E402
from options.train_options import TrainOptions  # noqa: E402

# tiny networks, one model each (32 px); stargan_v2 reads multi-domain batches
TINY = ['--ngf', '8', '--ndf', '8', '--load_size', '32', '--crop_size', '32', '--display_id', '0', '--no_html',
        '--num_threads', '0', '--seed', '0']
PATCHES = ['--num_patches', '16']
TINY_BY_MODEL = {
    'src_hdce': PATCHES, 'cut': PATCHES, 'cycle_gan': ['--netG', 'resnet_6blocks'],
    'pix2pix': ['--netG', 'resnet_6blocks'], 'sin_src_hdce': ['--ngf', '4', '--ndf', '4', '--load_size', '64', '--batch_size', '4', '--num_patches', '1',
                     '--lambda_R1', '1'],
    'stargan_v2': ['--base_dim', '8', '--max_conv_dim', '16', '--hidden_dim', '16', '--batch_size', '2',
                   '--num_domains', '2', *PATCHES],
}
HOST_READS = ('item', 'tolist', '__float__', '__int__', '__bool__', 'cpu', 'numpy')


def batch(model_name, opt, seed=0):
    g = torch.Generator().manual_seed(seed)
    n, size = opt.batch_size, opt.crop_size

    def images():
        return torch.rand(n, 3, size, size, generator=g) * 2 - 1
    if model_name == 'stargan_v2':
        return {'A': images(), 'ref': images(), 'ref2': images(), 'A_domain': torch.arange(n) % opt.num_domains,
                'ref_domain': (torch.arange(n) + 1) % opt.num_domains, 'A_paths': [f'd/a{i}.png' for i in range(n)]}
    return {'A': images(), 'B': images(), 'A_paths': [f'a{i}' for i in range(n)], 'B_paths': [f'b{i}' for i in range(n)]}


def build(model_name, device, workdir, *extra, fused_adam=None):
    """The model set up as train.py sets it up, and its batch; `fused_adam` True: the optimizers CUDA gets, on
    the CPU too."""
    gpu = device.split(':')[1] if ':' in device else '0'
    flags = ['--model', model_name, '--dataroot', workdir, '--checkpoints_dir', workdir, '--name', model_name,
             '--gpu_ids', gpu if device.startswith('cuda') else '-1', *TINY, *TINY_BY_MODEL[model_name], *extra]
    with contextlib.redirect_stdout(sys.stderr):
        opt = TrainOptions(flags).parse()
    torch.manual_seed(0)
    model = models.create_model(opt, Runtime.from_options(opt, fused_adam=fused_adam))
    model.runtime.configure_process(opt.preprocess)
    data = batch(model_name, opt)
    model.set_epoch(1)
    model.data_dependent_initialize(data)
    model.setup(opt)
    model.parallelize()
    return model, data


def step(model, data, seed=123):
    model.set_input(data)
    torch.manual_seed(seed)
    model.optimize_parameters()


@contextlib.contextmanager
def host_reads(device):
    """The list of this block's reads back to the host (a GPU waits for its queue at each)."""
    found = []
    if torch.device(device).type == 'cuda':
        torch.cuda.set_sync_debug_mode('warn')
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter('always')
                yield found
            found += [str(w.message).splitlines()[0] for w in caught if 'synchroniz' in str(w.message)]
        finally:
            torch.cuda.set_sync_debug_mode('default')
        return
    originals = {name: getattr(torch.Tensor, name) for name in HOST_READS}
    # reads of tensors that are on the host on a GPU too: StarGAN's label check of a batch (in set_input, before
    # the labels move), and the CPU Adam's step counter (CUDA's fused Adam keeps it on the device)
    host_side, host_files = ('check_domains', 'set_input'), os.path.join('torch', 'optim', '')

    def counted(name):
        def read(*args, **kwargs):
            caller = sys._getframe(1)
            if caller.f_code.co_name not in host_side and host_files not in caller.f_code.co_filename:
                found.append(f'{caller.f_code.co_filename}:{caller.f_lineno} {name}')
            return originals[name](*args, **kwargs)
        return read
    try:
        for name in HOST_READS:
            setattr(torch.Tensor, name, counted(name))
        yield found
    finally:
        for name, original in originals.items():
            setattr(torch.Tensor, name, original)


def sync_free(args, workdir):
    extra = ['--amp', args.amp] + (['--channels_last'] if args.channels_last else []) + \
        (['--compile'] if args.compile else [])
    model, data = build(args.model, args.device, workdir, *extra, fused_adam=True)
    for i in range(args.warmup):  # compilation and the training kernels' one-time questions
        step(model, data, seed=i)
    model.set_input(data)  # train.py's batches come from pinned memory; these do not
    with host_reads(args.device) as reads:
        for _ in range(args.steps):
            model.optimize_parameters()
    model.runtime.synchronize()
    print(f'{args.model} {" ".join(extra)} on {args.device}: {len(reads)} host reads in {args.steps} steps')
    for read in reads:
        print('  ', read)
    return 1 if reads else 0


def device_vs_cpu(args, workdir, rtol=1e-2, atol=1e-4):
    """src_hdce's first step on the CPU and on the device from the same weights and batch. Every patch position is
    sampled (--num_patches above the largest map): the losses do not depend on the order the device draws them in.
    The tolerance leaves room for cuDNN's TF32 convolutions (models/runtime.py)."""
    losses, weights = [], None
    for device in ('cpu', args.device):
        model, data = build('src_hdce', device, os.path.join(workdir, str(len(losses))), '--num_patches', '4096')
        if weights is None:  # copies: the CPU step updates the weights in place
            weights = {n: {k: v.clone() for k, v in model._unwrapped(n).state_dict().items()} for n in model.model_names}
        else:
            for name, state in weights.items():
                model._unwrapped(name).load_state_dict(state)
        step(model, data)
        losses.append(model.get_current_losses())
    cpu, dev = losses
    bad = [k for k, v in cpu.items() if not math.isclose(dev[k], v, rel_tol=rtol, abs_tol=atol)]
    for k, v in cpu.items():
        print(f'{k:>20} cpu {v:.6f}  {args.device} {dev[k]:.6f}{"  differs" if k in bad else ""}')
    return 1 if bad else 0


def process_group(args, workdir):
    import torch.distributed as dist
    cuda = torch.cuda.is_available() and args.device.startswith('cuda')
    backend = 'nccl' if cuda else 'gloo'
    rank, world = int(os.environ['RANK']), int(os.environ['WORLD_SIZE'])
    device = torch.device('cuda', int(os.environ['LOCAL_RANK'])) if cuda else torch.device('cpu')
    if cuda:
        torch.cuda.set_device(device)
    dist.init_process_group(backend)
    try:
        total = torch.full((1,), rank + 1.0, device=device)
        dist.all_reduce(total)
        dist.barrier()
        expected = world * (world + 1) / 2
        print(f'process group: {dist.get_backend()}, {world} process(es), all_reduce {total.item():g} '
              f'(expected {expected:g})')
        return 0 if total.item() == expected and dist.get_backend() == backend else 1
    finally:
        dist.destroy_process_group()


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('check', choices=['process_group', 'device_vs_cpu', 'sync_free'])
    p.add_argument('--device', default='cuda:0')
    p.add_argument('--model', default='src_hdce', choices=sorted(TINY_BY_MODEL))
    p.add_argument('--amp', default='off', choices=['off', 'bf16', 'fp16'])
    p.add_argument('--channels_last', action='store_true')
    p.add_argument('--compile', action='store_true')
    p.add_argument('--warmup', type=int, default=2)
    p.add_argument('--steps', type=int, default=2)
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix='gpu_check_') as workdir:
        return {'process_group': process_group, 'device_vs_cpu': device_vs_cpu, 'sync_free': sync_free}[args.check](
            args, workdir)


if __name__ == '__main__':
    sys.exit(main())
