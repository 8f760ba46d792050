"""Multi-domain images in StarGAN v2's layout: <dataroot>/<phase>/<domain>/<image>, one folder per domain."""
import os
import random

import torch
import torchvision.transforms as transforms
import torchvision.transforms.functional as TF
from PIL import Image

from data.base_dataset import BaseDataset, find_images, read_image, transform_image
from util.errors import ConfigError, MissingFileError

CROP_SCALE = (0.8, 1.0)  # StarGAN v2's random resized crop: share of the area kept
CROP_RATIO = (0.9, 1.1)  # and aspect ratio


class MultidomainDataset(BaseDataset):
    """Source images with their domain, each with two reference images of one random domain (StarGAN v2).

    Domains are the sorted subfolder names of <dataroot>/<phase> (--phase test falls back to val, as in
    StarGAN v2's layout). An item holds 'A' (the source image), 'A_paths', 'A_domain' (int64), and 'ref',
    'ref2' (two images of the domain 'ref_domain'), 'ref_paths', 'ref2_paths'. The reference domain is uniform
    and independent of the source's; its two images are uniform draws from it. In training the source is
    drawn domain-balanced (a uniform domain, then a uniform image of it; the item index is not used), as
    StarGAN v2's weighted sampler does, unless --no_balance_domains; otherwise item `index` is image `index`.
    All draws come from Python's `random` (the crop's box from torch's generator), which train.py saves.

    Images are --crop_size squares; training augments them as StarGAN v2 does (a random resized crop with
    probability --randcrop_prob, a horizontal flip unless --no_flip); other phases only resize.
    """

    @staticmethod
    def modify_commandline_options(parser, is_train):
        parser.add_argument('--randcrop_prob', type=float, default=0.5,
                            help='multidomain: probability of a random resized crop (area 0.8-1, aspect 0.9-1.1) '
                                 'before resizing a training image')
        parser.add_argument('--no_balance_domains', action='store_true',
                            help='multidomain: read every training image once per epoch instead of drawing the '
                                 'source domain uniformly (which over-samples small domains)')
        return parser

    def __init__(self, opt):
        super().__init__(opt)
        if not 0 <= opt.randcrop_prob <= 1:
            raise ConfigError(f'--randcrop_prob must lie in [0, 1], got {opt.randcrop_prob}')
        self.dir = phase_folder(opt.dataroot, opt.phase)
        self.domains = domain_names(self.dir)
        check_same_domains(opt.dataroot)
        num_domains = getattr(opt, 'num_domains', None)
        if num_domains is not None and num_domains != len(self.domains):
            raise ConfigError(f'--num_domains {num_domains} but {self.dir} has {len(self.domains)} domain '
                             f'folders ({", ".join(self.domains)})')
        self.paths = [domain_images(opt, self.dir, name) for name in self.domains]  # per domain
        self.items = [(path, d) for d, paths in enumerate(self.paths) for path in paths]
        self.augment = opt.isTrain and opt.phase == 'train'
        self.balance = self.augment and not opt.no_balance_domains

    @property
    def num_domains(self):
        return len(self.domains)

    def __len__(self):
        return len(self.items)

    def __getitem__(self, index):
        path, domain, ref_path, ref2_path, ref_domain = self.draw(index)
        return {'A': self.load(path), 'A_paths': path, 'A_domain': torch.tensor(domain, dtype=torch.int64),
                'ref': self.load(ref_path), 'ref2': self.load(ref2_path), 'ref_paths': ref_path,
                'ref2_paths': ref2_path, 'ref_domain': torch.tensor(ref_domain, dtype=torch.int64)}

    def draw(self, index):
        """(source path, its domain, reference path, second reference path, their domain) of item `index`."""
        if self.balance:
            domain = random.randrange(self.num_domains)
            path = random.choice(self.paths[domain])
        else:
            path, domain = self.items[index % len(self.items)]
        ref_domain = random.randrange(self.num_domains)
        ref_path, ref2_path = random.choice(self.paths[ref_domain]), random.choice(self.paths[ref_domain])
        return path, domain, ref_path, ref2_path, ref_domain

    def load(self, path):
        """The image at `path` as a (3, crop_size, crop_size) tensor in [-1, 1], augmented in training."""
        transform = self.train_transform if self.augment else self.eval_transform
        return transform_image(transform, read_image(path), path)

    def train_transform(self, img):
        size = self.opt.crop_size
        if random.random() < self.opt.randcrop_prob:
            top, left, h, w = transforms.RandomResizedCrop.get_params(img, scale=CROP_SCALE, ratio=CROP_RATIO)
            img = img.resize((size, size), Image.BILINEAR, box=(left, top, left + w, top + h))
        else:
            img = img.resize((size, size), Image.BILINEAR)
        if not self.opt.no_flip and random.random() < 0.5:
            img = img.transpose(Image.FLIP_LEFT_RIGHT)
        return to_normalized_tensor(img)

    def eval_transform(self, img):
        return to_normalized_tensor(img.resize((self.opt.crop_size,) * 2, Image.BILINEAR))


def to_normalized_tensor(img):
    """An RGB PIL image as a (3, H, W) float tensor in [-1, 1]."""
    return TF.normalize(TF.to_tensor(img), mean=[0.5] * 3, std=[0.5] * 3)


def phase_folder(root, phase):
    """<root>/<phase>, or <root>/val for a phase 'test' that has no folder of its own."""
    if not os.path.isdir(root):
        raise MissingFileError(f"--dataroot '{root}' does not exist or is not a folder")
    folder = os.path.join(root, phase)
    if phase == 'test' and not os.path.isdir(folder):
        folder = os.path.join(root, 'val')
    if not os.path.isdir(folder):
        raise MissingFileError(f"'{folder}' does not exist: --dataset_mode multidomain reads "
                                f'<dataroot>/{phase}/<domain>/<images> (one subfolder per domain)')
    return folder


def domain_names(folder):
    """Sorted names of the subfolders of `folder` (hidden ones left out); at least two of them."""
    names = sorted(name for name in os.listdir(folder)
                   if os.path.isdir(os.path.join(folder, name)) and not name.startswith('.'))
    if len(names) < 2:
        raise ConfigError(f"'{folder}' must hold one subfolder of images per domain, at least two; found "
                         f'{len(names)}{": " + names[0] if names else ""}')
    return names


def check_same_domains(root):
    """Fail when <root>/train and <root>/val both exist with different domain folders."""
    train, val = os.path.join(root, 'train'), os.path.join(root, 'val')
    if os.path.isdir(train) and os.path.isdir(val):
        train_names, val_names = domain_names(train), domain_names(val)
        if train_names != val_names:
            raise ConfigError(f"the domains of '{train}' ({', '.join(train_names)}) and '{val}' "
                             f"({', '.join(val_names)}) differ; both must hold the same domain folders")


def domain_images(opt, folder, name):
    """The image paths of domain `name` (honouring --max_dataset_size and --skip_bad_images)."""
    try:
        return find_images(opt, os.path.join(folder, name))
    except ValueError as err:
        raise ConfigError(f'domain {name!r}: {err}') from err
