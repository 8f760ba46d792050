"""Rank helpers for runs launched with torchrun (one process per GPU, or several CPU processes).

    torchrun --nproc_per_node 4 train.py --dataroot ... --name ...
    torchrun --nnodes 2 --node_rank 0 --master_addr host0 --nproc_per_node 8 train.py ...

torchrun sets RANK, LOCAL_RANK and WORLD_SIZE; without them every helper here describes a single
process (rank 0 of 1), so the same code runs unchanged without torchrun.
"""
import io
import os

import numpy as np
import torch
import torch.distributed as dist

from util.errors import LaunchError


def env_world_size():
    return int(os.environ.get('WORLD_SIZE', 1))


def env_rank():
    """This process's global rank as torchrun announced it (usable before the process group exists)."""
    return int(os.environ.get('RANK', 0))


def env_local_rank():
    return int(os.environ.get('LOCAL_RANK', 0))


def local_gpu(gpu_ids, local_rank, local_world_size):
    """The CUDA device index of process `local_rank` of the `local_world_size` on this node, from --gpu_ids:
    the default (0) gives process i GPU i; a list of one id per process gives process i the i-th id.
    Anything else is ambiguous and refused."""
    ids = list(gpu_ids)
    if ids == [0]:
        return local_rank
    if len(ids) == local_world_size:
        return ids[local_rank]
    spec = ','.join(map(str, ids))
    raise SystemExit(f'error: --gpu_ids {spec} under torchrun with {local_world_size} process(es) per node: give '
                     f'one id per process (--gpu_ids with {local_world_size} ids, process i takes the i-th), or '
                     f'leave --gpu_ids at 0 (process i takes GPU i) and choose the GPUs with CUDA_VISIBLE_DEVICES, '
                     f'e.g. CUDA_VISIBLE_DEVICES={spec} torchrun --nproc_per_node {len(ids)} train.py ...')


def init_from_env(use_cuda, gpu_ids=(0,)):
    """Join the process group torchrun describes: nccl with one GPU per process (`local_gpu` picks it
    from --gpu_ids), gloo on CPU. Returns (rank, world_size, device index: None on CPU); (0, 1, None)
    without torchrun."""
    world_size = env_world_size()
    if world_size <= 1:
        return 0, 1, None
    for var in ('RANK', 'LOCAL_RANK', 'MASTER_ADDR', 'MASTER_PORT'):
        if var not in os.environ:
            raise LaunchError(f'WORLD_SIZE={world_size} but {var} is not set: launch with torchrun '
                               f'(e.g. torchrun --nproc_per_node {world_size} train.py ...)')
    local_rank = env_local_rank()
    index = None
    if use_cuda:
        local_world = int(os.environ.get('LOCAL_WORLD_SIZE', world_size))
        index = local_gpu(gpu_ids, local_rank, local_world)
        if index >= torch.cuda.device_count():
            raise LaunchError(f'LOCAL_RANK {local_rank} wants CUDA device {index} but only '
                               f'{torch.cuda.device_count()} are visible on this node: use --nproc_per_node '
                               f'<= {torch.cuda.device_count()}')
        torch.cuda.set_device(index)
    if not dist.is_initialized():
        dist.init_process_group(backend='nccl' if use_cuda else 'gloo')
    return dist.get_rank(), dist.get_world_size(), index


def is_initialized():
    return dist.is_available() and dist.is_initialized()


def get_rank():
    return dist.get_rank() if is_initialized() else 0


def get_world_size():
    return dist.get_world_size() if is_initialized() else 1


def is_main():
    return get_rank() == 0


def print0(*args, **kwargs):
    """print on rank 0 only."""
    if is_main():
        print(*args, **kwargs)


def barrier():
    if is_initialized():
        dist.barrier()


def cleanup():
    if is_initialized():
        _CONTROL.clear()
        dist.destroy_process_group()


_REDUCE = {'mean': dist.ReduceOp.SUM, 'max': dist.ReduceOp.MAX, 'min': dist.ReduceOp.MIN}


def reduce(values, device, op='mean'):
    """A list of numbers reduced over the processes ('mean', 'max' or 'min' of each; a NaN or Inf anywhere
    reaches every process, so they all take the same decision about it); unchanged in a single process."""
    if not is_initialized():
        return [float(v) for v in values]
    packed = torch.tensor([float(v) for v in values], dtype=torch.float64, device=device)
    dist.all_reduce(packed, op=_REDUCE[op])
    if op == 'mean':
        packed /= get_world_size()
    return packed.tolist()


def any_process(flag):
    """Whether `flag` is set on any process: a collective every process calls at the same point. It runs on
    the CPU (gloo), so a training step stays free of device syncs under NCCL too."""
    if not is_initialized():
        return bool(flag)
    packed = torch.tensor([int(bool(flag))], dtype=torch.int64)
    dist.all_reduce(packed, op=dist.ReduceOp.MAX, group=_control_group())
    return bool(packed.item())


_CONTROL = {}


def _control_group():
    """A gloo group of every process, for host-side collectives: the default group itself when it is gloo."""
    if dist.get_backend() == 'gloo':
        return None
    if 'group' not in _CONTROL:
        _CONTROL['group'] = dist.new_group(backend='gloo')
    return _CONTROL['group']


def gather(value):
    """Every process's value of an object of tensors, tuples, lists, dicts and numbers, as a list by rank
    (on every process); [value] in a single process. Sent as torch.save bytes: pickled tensors do not
    survive all_gather_object in torch 2.14."""
    if not is_initialized():
        return [value]
    buffer = io.BytesIO()
    torch.save(value, buffer)
    values = [None] * get_world_size()
    dist.all_gather_object(values, buffer.getvalue())
    return [torch.load(io.BytesIO(v), weights_only=True) for v in values]


def rank_seed(seed, rank):
    """The seed of process `rank`'s own random draws (data sampling, augmentation, noise): `seed` itself on
    rank 0, so that one process draws what it always drew, and an independent stream on every other rank."""
    if rank == 0:
        return int(seed)
    return int(np.random.SeedSequence([int(seed) % 2 ** 63, int(rank)]).generate_state(1, np.uint64)[0] >> 1)


def broadcast(value):
    """Rank 0's value of a picklable object, on every process."""
    if not is_initialized():
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def max_int(value, device):
    """The largest of one integer across processes."""
    if not is_initialized():
        return int(value)
    packed = torch.tensor([int(value)], dtype=torch.int64, device=device)
    dist.all_reduce(packed, op=dist.ReduceOp.MAX)
    return int(packed.item())
