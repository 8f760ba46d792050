"""Paired images stored side by side: each file in <dataroot>/<phase> is [A | B]."""
import os

from PIL import Image

from data.base_dataset import (BaseDataset, PreprocessError, domain_channels, find_images, get_params,
                               get_transform, read_image, transform_image)


def check_pair_layout(path, size):
    """Refuse an image that cannot be an [A | B] pair: two halves of one size side by side, each at least as wide
    as tall (pix2pix's 2:1 files; halves of other landscape sizes pass), so an even width of at least twice the
    height. A folder of single photos would otherwise train on their left and right halves."""
    w, h = size
    if w % 2 or w < 2 * h:
        raise PreprocessError(f'{path} is {w}x{h}: --dataset_mode aligned (--model pix2pix) reads [A | B] pairs side '
                              f'by side, an even width of at least twice the height ({2 * h}x{h} for square halves); '
                              'for two folders of single images use --dataset_mode unaligned (trainA/, trainB/)')


class AlignedDataset(BaseDataset):
    """pix2pix-style pairs: the left half is A, the right half B; both get the same crop and flip."""

    def __init__(self, opt):
        super().__init__(opt)
        self.dir_AB = os.path.join(opt.dataroot, opt.phase)
        self.AB_paths = find_images(opt, self.dir_AB)
        self.nc_A, self.nc_B = domain_channels(opt)
        try:
            with Image.open(self.AB_paths[0]) as first:  # reads the header only
                size = first.size
        except (OSError, ValueError, Image.DecompressionBombError):
            size = None  # an unreadable file is reported when it is loaded (or skipped by --skip_bad_images)
        if size is not None:
            check_pair_layout(self.AB_paths[0], size)

    def __getitem__(self, index):
        AB_path = self.AB_paths[index]
        AB = read_image(AB_path)
        check_pair_layout(AB_path, AB.size)
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
