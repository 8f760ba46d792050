"""Rank helpers for runs launched with torchrun (one process per GPU, or several CPU processes).

    torchrun --nproc_per_node 4 train.py --dataroot ... --name ...
    torchrun --nnodes 2 --node_rank 0 --master_addr host0 --nproc_per_node 8 train.py ...

torchrun sets RANK, LOCAL_RANK and WORLD_SIZE; without them every helper here describes a single
process (rank 0 of 1), so the same code runs unchanged without torchrun.
"""
import os

import torch
import torch.distributed as dist


def env_world_size():
    return int(os.environ.get('WORLD_SIZE', 1))


def env_rank():
    """This process's global rank as torchrun announced it (usable before the process group exists)."""
    return int(os.environ.get('RANK', 0))


def env_local_rank():
    return int(os.environ.get('LOCAL_RANK', 0))


def init_from_env(use_cuda):
    """Join the process group torchrun describes: nccl with one GPU per process (cuda:LOCAL_RANK),
    gloo on CPU. Returns (rank, world_size, local_rank); (0, 1, 0) without torchrun."""
    world_size = env_world_size()
    if world_size <= 1:
        return 0, 1, 0
    for var in ('RANK', 'LOCAL_RANK', 'MASTER_ADDR', 'MASTER_PORT'):
        if var not in os.environ:
            raise RuntimeError(f'WORLD_SIZE={world_size} but {var} is not set: launch with torchrun '
                               f'(e.g. torchrun --nproc_per_node {world_size} train.py ...)')
    local_rank = env_local_rank()
    if use_cuda:
        if local_rank >= torch.cuda.device_count():
            raise RuntimeError(f'LOCAL_RANK {local_rank} but only {torch.cuda.device_count()} CUDA device(s) '
                               f'on this node: use --nproc_per_node <= {torch.cuda.device_count()}')
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        dist.init_process_group(backend='nccl' if use_cuda else 'gloo')
    return dist.get_rank(), dist.get_world_size(), local_rank


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
        dist.destroy_process_group()


def agree(values, stop, device):
    """All-reduce one step's scalars across processes: the mean of each value (a NaN or Inf anywhere
    reaches every process, so they all take the same decision about it) and whether any process
    asked to stop. Returns (means, stop); unchanged in a single process."""
    if not is_initialized():
        return list(values), bool(stop)
    packed = torch.tensor([*values, float(bool(stop))], dtype=torch.float64, device=device)
    dist.all_reduce(packed)
    packed /= get_world_size()
    return packed[:-1].tolist(), bool(packed[-1] > 0)


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
