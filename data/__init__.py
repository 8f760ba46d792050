"""Datasets, found by file name, and the loader that train.py and test.py iterate over.

To add a dataset called 'dummy', add `data/dummy_dataset.py` defining `DummyDataset`, a subclass
of `BaseDataset` (the match ignores case and underscores); `--dataset_mode dummy` then selects it.
`data/template_dataset.py` is a working example to copy.
"""
import importlib
import pkgutil

import torch.utils.data

from data.base_dataset import BaseDataset

_SUFFIX = '_dataset'


def available_datasets():
    """Sorted names of every `data/<name>_dataset.py` (the valid --dataset_mode values)."""
    return sorted(
        info.name[:-len(_SUFFIX)]
        for info in pkgutil.iter_modules(__path__)
        if info.name.endswith(_SUFFIX) and info.name != 'base' + _SUFFIX)


def find_dataset_using_name(name):
    """The BaseDataset subclass defined in `data/<name>_dataset.py`."""
    valid = available_datasets()
    if name not in valid:
        raise ValueError(f'unknown dataset {name!r}; valid names: {", ".join(valid)}')
    module = importlib.import_module(f'data.{name}{_SUFFIX}')
    wanted = name.replace('_', '').lower() + 'dataset'
    for attr, cls in vars(module).items():
        if attr.lower() == wanted and isinstance(cls, type) and issubclass(cls, BaseDataset):
            return cls
    raise TypeError(f'{module.__file__} must define a subclass of BaseDataset named like '
                    f'{wanted!r} (case-insensitive)')


def get_option_setter(name):
    """The dataset's static `modify_commandline_options(parser, is_train)`."""
    return find_dataset_using_name(name).modify_commandline_options


def create_dataset(opt, rank=0, world_size=1):
    """The dataset named by `opt.dataset_mode`, wrapped in a DatasetLoader for this process."""
    return DatasetLoader(opt, rank=rank, world_size=world_size).load_data()


class DatasetLoader:
    """A dataset with its DataLoader; iterating yields dict batches of `opt.batch_size`.

    With world_size > 1 each process reads its own shard through a DistributedSampler and
    `opt.batch_size` is per process. Iteration stops once `opt.max_dataset_size` samples have
    been read across all processes, so every process runs the same number of steps.
    """

    def __init__(self, opt, rank=0, world_size=1):
        self.opt = opt
        self.world_size = world_size
        self.dataset = find_dataset_using_name(opt.dataset_mode)(opt)
        shuffle = not opt.serial_batches
        self.sampler = None
        if world_size > 1:
            self.sampler = torch.utils.data.DistributedSampler(
                self.dataset, num_replicas=world_size, rank=rank, shuffle=shuffle)
        self.dataloader = torch.utils.data.DataLoader(
            self.dataset,
            batch_size=opt.batch_size,
            shuffle=shuffle and self.sampler is None,
            sampler=self.sampler,
            num_workers=int(opt.num_threads),
            drop_last=bool(opt.isTrain),
        )

    def load_data(self):
        return self

    def set_epoch(self, epoch):
        """Tell the dataset (epoch-dependent augmentation) and the sampler (shuffling) the epoch."""
        self.dataset.current_epoch = epoch
        if self.sampler is not None:
            self.sampler.set_epoch(epoch)

    def __len__(self):
        return int(min(len(self.dataset), self.opt.max_dataset_size))

    def __iter__(self):
        for i, batch in enumerate(self.dataloader):
            if i * self.opt.batch_size * self.world_size >= self.opt.max_dataset_size:
                break
            yield batch
