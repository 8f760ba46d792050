"""Unpaired two-domain images: <dataroot>/<phase>A and <dataroot>/<phase>B."""
import os
import random

from data.base_dataset import (BaseDataset, domain_channels, find_images, get_transform, read_image,
                               transform_image)
from util.util import copyconf


class UnalignedDataset(BaseDataset):
    """CUT's unpaired dataset: each A image is paired with a random B image (a fixed one under
    --serial_batches). One epoch covers the larger domain.

    As in CUT, 'A' always holds domain A and 'B' domain B; the model swaps them for
    --direction BtoA. The direction only decides which domain gets input_nc channels.
    For --phase test without testA/testB, valA/valB are read, as CUT does.
    """

    def __init__(self, opt):
        super().__init__(opt)
        self.dir_A = os.path.join(opt.dataroot, opt.phase + 'A')
        self.dir_B = os.path.join(opt.dataroot, opt.phase + 'B')
        val_A = os.path.join(opt.dataroot, 'valA')
        if opt.phase == 'test' and not os.path.exists(self.dir_A) and os.path.exists(val_A):
            self.dir_A, self.dir_B = val_A, os.path.join(opt.dataroot, 'valB')
        self.A_paths = find_images(opt, self.dir_A)
        self.B_paths = find_images(opt, self.dir_B)
        self.A_size = len(self.A_paths)
        self.B_size = len(self.B_paths)
        self.nc_A, self.nc_B = domain_channels(opt)

    def __getitem__(self, index):
        A_path = self.A_paths[index % self.A_size]
        if self.opt.serial_batches:
            B_path = self.B_paths[index % self.B_size]
        else:
            B_path = self.B_paths[random.randint(0, self.B_size - 1)]
        A_img = read_image(A_path)
        B_img = read_image(B_path)
        # CUT: once the learning rate decays (epoch > n_epochs), crop at full resolution.
        finetuning = self.opt.isTrain and self.current_epoch > self.opt.n_epochs
        opt = copyconf(self.opt, load_size=self.opt.crop_size) if finetuning else self.opt
        A = transform_image(get_transform(opt, grayscale=self.nc_A == 1), A_img, A_path)
        B = transform_image(get_transform(opt, grayscale=self.nc_B == 1), B_img, B_path)
        return {'A': A, 'B': B, 'A_paths': A_path, 'B_paths': B_path}

    def __len__(self):
        return max(self.A_size, self.B_size)
