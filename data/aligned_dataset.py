"""Paired images stored side by side: each file in <dataroot>/<phase> is [A | B]."""
import os

from data.base_dataset import (BaseDataset, domain_channels, find_images, get_params, get_transform,
                               read_image, transform_image)


class AlignedDataset(BaseDataset):
    """pix2pix-style pairs: the left half is A, the right half B; both get the same crop and flip."""

    def __init__(self, opt):
        super().__init__(opt)
        self.dir_AB = os.path.join(opt.dataroot, opt.phase)
        self.AB_paths = find_images(opt, self.dir_AB)
        self.nc_A, self.nc_B = domain_channels(opt)

    def __getitem__(self, index):
        AB_path = self.AB_paths[index]
        AB = read_image(AB_path)
        w, h = AB.size
        half = w // 2
        A_img = AB.crop((0, 0, half, h))
        B_img = AB.crop((half, 0, 2 * half, h))
        params = get_params(self.opt, A_img.size)
        A = transform_image(get_transform(self.opt, params, grayscale=self.nc_A == 1), A_img, AB_path)
        B = transform_image(get_transform(self.opt, params, grayscale=self.nc_B == 1), B_img, AB_path)
        return {'A': A, 'B': B, 'A_paths': AB_path, 'B_paths': AB_path}

    def __len__(self):
        return len(self.AB_paths)
