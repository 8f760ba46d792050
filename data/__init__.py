"""Datasets, found by file name, and the loader that train.py and test.py iterate over.

To add a dataset called 'dummy', add `data/dummy_dataset.py` defining `DummyDataset`, a subclass
of `BaseDataset` (the match ignores case and underscores); `--dataset_mode dummy` then selects it.
`data/template_dataset.py` is a working example to copy.
"""
import random

import numpy as np
import torch.utils.data

from data.base_dataset import BaseDataset
from util import distributed
from util.registry import find_registered, registered_names
from util.errors import ConfigError


def available_datasets():
    """Sorted names of every `data/<name>_dataset.py` (the valid --dataset_mode values)."""
    return registered_names(__path__, 'dataset')


def find_dataset_using_name(name):
    """The BaseDataset subclass defined in `data/<name>_dataset.py`."""
    return find_registered('data', 'dataset', name, BaseDataset, available_datasets())


def get_option_setter(name):
    """The dataset's static `modify_commandline_options(parser, is_train)`."""
    return find_dataset_using_name(name).modify_commandline_options


def create_dataset(opt, rank=0, world_size=1):
    """The dataset named by `opt.dataset_mode`, wrapped in a DatasetLoader for this process."""
    return DatasetLoader(opt, rank=rank, world_size=world_size).load_data()


class EpochSampler(torch.utils.data.Sampler):
    """(epoch, index) pairs of one epoch: a permutation drawn from (seed, epoch) alone, sharded across processes.

    The order depends on nothing else (not on the global RNG), so a run resumed in the middle of an
    epoch sees the same remaining samples: `start` skips the ones this process has already read.
    """

    def __init__(self, n, shuffle, seed, rank=0, world_size=1):
        self.n, self.shuffle, self.seed = n, shuffle, int(seed)
        self.rank, self.world_size = rank, world_size
        self.epoch, self.start = 0, 0
        self.per_rank = -(-n // world_size)  # ceil: shards are padded by wrapping around, as DDP does

    def set_epoch(self, epoch):
        self.epoch = epoch

    def __len__(self):
        return max(self.per_rank - self.start, 0)

    def __iter__(self):
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
            order = torch.randperm(self.n, generator=g).tolist()
        else:
            order = list(range(self.n))
        total = self.per_rank * self.world_size
        order = (order * (total // max(self.n, 1) + 1))[:total]
        return ((self.epoch, i) for i in order[self.rank:total:self.world_size][self.start:])


class EpochView(torch.utils.data.Dataset):
    """The dataset as the loader's workers read it, by the sampler's (epoch, index) pairs: persistent workers
    (--num_threads > 0) learn each new epoch (for epoch-dependent augmentation) and reseed their RNGs from
    (seed, epoch, rank, worker), as the fresh workers of a new epoch would be."""

    def __init__(self, dataset, seed, rank):
        self.dataset, self.seed, self.rank = dataset, seed, rank
        self.epoch = None

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, item):
        epoch, index = item
        if epoch != self.epoch:
            self.epoch = self.dataset.current_epoch = epoch
            worker = torch.utils.data.get_worker_info()
            if worker is not None:  # the main process's own RNGs are train.py's (saved, restored)
                seed = distributed.rank_seed((self.seed * 1_000_003 + epoch) * 1_009 + worker.id, self.rank)
                random.seed(seed)
                np.random.seed(seed % 2 ** 32)
                torch.manual_seed(seed)
        return self.dataset[index]


class DatasetLoader:
    """A dataset with its DataLoader; iterating yields dict batches of `opt.batch_size`.

    With world_size > 1 each process reads its own shard and `opt.batch_size` is per process.
    Iteration stops once `opt.max_dataset_size` samples have been read across all processes, so
    every process runs the same number of steps. The shuffling order is a function of
    (`opt.seed`, epoch) only, which makes mid-epoch resumption exact (see `iterate`); the workers'
    random draws are seeded from (`opt.seed`, epoch, rank).
    """

    def __init__(self, opt, rank=0, world_size=1):
        self.opt = opt
        self.world_size = world_size
        self.dataset = find_dataset_using_name(opt.dataset_mode)(opt)
        seed = getattr(opt, 'seed', None) or 0
        self.sampler = EpochSampler(len(self.dataset), not opt.serial_batches, seed, rank, world_size)
        # the loader's own generator seeds its workers, so building an iterator never draws from
        # the global torch RNG (a resumed run would otherwise drift by one draw); each process seeds its
        # workers differently, as their draws (B partners, crops, flips) must differ between processes
        self.generator = torch.Generator().manual_seed(distributed.rank_seed(seed, rank))
        self.dataloader = torch.utils.data.DataLoader(
            EpochView(self.dataset, seed, rank),
            batch_size=opt.batch_size,
            sampler=self.sampler,
            num_workers=int(opt.num_threads),
            persistent_workers=int(opt.num_threads) > 0,  # not restarted every epoch (EpochView)
            drop_last=bool(opt.isTrain),
            generator=self.generator,
            pin_memory=bool(getattr(opt, 'gpu_ids', None)),  # the copies to the GPU then run asynchronously
        )

    def load_data(self):
        return self

    def set_epoch(self, epoch):
        """Tell the dataset (epoch-dependent augmentation) and the sampler (shuffling) the epoch."""
        self.dataset.current_epoch = epoch
        self.sampler.set_epoch(epoch)
        seed = (getattr(self.opt, 'seed', None) or 0) * 1_000_003 + epoch
        self.generator.manual_seed(distributed.rank_seed(seed, self.sampler.rank))

    def __len__(self):
        return int(min(len(self.dataset), self.opt.max_dataset_size))

    def samples_per_epoch(self):
        """Samples this process reads in a full epoch (what train.py's epoch_iter reaches)."""
        bs = self.opt.batch_size
        batches = self.sampler.per_rank // bs if self.opt.isTrain else -(-self.sampler.per_rank // bs)
        cap = -(-self.opt.max_dataset_size // (bs * self.world_size)) if self.opt.max_dataset_size != float('inf') \
            else batches
        return int(min(batches, cap)) * bs

    def __iter__(self):
        return self.iterate(0)

    def iterate(self, start_sample=0):
        """Batches of the current epoch, skipping the first `start_sample` samples of this process."""
        if start_sample % self.opt.batch_size:
            raise ConfigError(f'cannot resume at sample {start_sample}: not a multiple of --batch_size '
                             f'{self.opt.batch_size}')
        if self.opt.isTrain and self.samples_per_epoch() == 0:
            raise ConfigError(f'--batch_size {self.opt.batch_size} is larger than the {len(self.dataset)} '
                             f'training samples of {self.opt.dataroot} (per process: {self.sampler.per_rank})')
        self.sampler.start = start_sample
        try:
            first = start_sample // self.opt.batch_size
            for i, batch in enumerate(self.dataloader, start=first):
                if i * self.opt.batch_size * self.world_size >= self.opt.max_dataset_size:
                    break
                yield batch
        finally:
            self.sampler.start = 0
