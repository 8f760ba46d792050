"""SinCUT's single-image pair: one image in <dataroot>/trainA and one in <dataroot>/trainB."""
import os
import random

from PIL import Image

from data.base_dataset import BaseDataset, domain_channels, get_transform, read_image, transform_image
from data.image_folder import make_dataset
from util.errors import ConfigError

CROPS_PER_EPOCH = 100_000


class SingleImageDataset(BaseDataset):
    """Random zoomed patches of one A image and one B image (SinCUT, CUT paper Fig. 9).

    As in CUT, an epoch is CROPS_PER_EPOCH crops. During training every sample is zoomed by a
    factor in [1 / random_scale_max, 1] per axis (one factor per minibatch of consecutive indices)
    and cut into the grid tile given by a shuffled index, so crops of one epoch rarely repeat a
    location. Other phases transform the whole images (SinCUT tests with --preprocess none).
    """

    def __init__(self, opt):
        super().__init__(opt)
        skip_bad = getattr(opt, 'skip_bad_images', False)
        self.A_path = _only_image(os.path.join(opt.dataroot, 'trainA'), skip_bad)
        self.B_path = _only_image(os.path.join(opt.dataroot, 'trainB'), skip_bad)
        self.A_img = read_image(self.A_path)
        self.B_img = read_image(self.B_path)
        self.nc_A, self.nc_B = domain_channels(opt)
        num_batches = len(self) // opt.batch_size + 1
        self.batch_zoom_A = _zoom_levels(num_batches, 1 / opt.random_scale_max)
        self.batch_zoom_B = _zoom_levels(num_batches, 1 / opt.random_scale_max)
        self.patch_indices_A = random.sample(range(len(self)), len(self))
        self.patch_indices_B = random.sample(range(len(self)), len(self))

    def __getitem__(self, index):
        if self.opt.phase == 'train':
            A_params = {'scale_factor': self.batch_zoom_A[index // self.opt.batch_size],
                        'patch_index': self.patch_indices_A[index],
                        'flip': random.random() > 0.5}
            B_params = {'scale_factor': self.batch_zoom_B[index // self.opt.batch_size],
                        'patch_index': self.patch_indices_B[index],
                        'flip': random.random() > 0.5}
        else:
            A_params = B_params = None
        transform_A = get_transform(self.opt, A_params, grayscale=self.nc_A == 1,
                                    method=Image.BILINEAR)
        transform_B = get_transform(self.opt, B_params, grayscale=self.nc_B == 1,
                                    method=Image.BILINEAR)
        A = transform_image(transform_A, self.A_img, self.A_path)
        B = transform_image(transform_B, self.B_img, self.B_path)
        return {'A': A, 'B': B, 'A_paths': self.A_path, 'B_paths': self.B_path}

    def __len__(self):
        return CROPS_PER_EPOCH


def _only_image(folder, skip_bad):
    paths = make_dataset(folder, skip_bad=skip_bad)
    if len(paths) != 1:
        raise ConfigError(f"the singleimage dataset needs exactly one image in '{folder}', "
                         f'found {len(paths)}')
    return paths[0]


def _zoom_levels(count, low):
    """`count` (width, height) zoom factors, each uniform in [low, 1]."""
    return [(random.uniform(low, 1.0), random.uniform(low, 1.0)) for _ in range(count)]
