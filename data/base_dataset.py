"""The dataset contract (BaseDataset) and CUT's image preprocessing (get_params, get_transform).

Every preprocessing step is a small function of a PIL image. Randomness comes from Python's
`random` and torch's global generators, drawn in the same order as CUT's torchvision pipeline, so
`random.seed` plus `torch.manual_seed` make a run reproducible, and DataLoader workers (which
reseed both per worker) never repeat each other's draws, as numpy's generator would.
"""
import functools
import random
from abc import ABC, abstractmethod

import torch
import torch.utils.data
import torchvision.transforms as transforms
import torchvision.transforms.functional as TF
from PIL import Image

from data.image_folder import ImageLoadError, load_image, make_dataset
from util.errors import ConfigError, PreprocessError

PREPROCESS_MODES = (
    'resize_and_crop', 'crop', 'scale_width', 'scale_width_and_crop', 'scale_shortside',
    'scale_shortside_and_crop', 'resize', 'zoom', 'patch', 'zoom_and_patch', 'none')

DIRECTIONS = ('AtoB', 'BtoA')


class BaseDataset(torch.utils.data.Dataset, ABC):
    """A dataset built from an options namespace; subclasses implement __len__ and __getitem__.

    `current_epoch` is set by the loader's `set_epoch`, for epoch-dependent augmentation.
    """

    def __init__(self, opt):
        self.opt = opt
        self.root = opt.dataroot
        self.current_epoch = 0

    @staticmethod
    def modify_commandline_options(parser, is_train):
        """Add this dataset's flags (or change defaults) on `parser`, and return it."""
        return parser

    @abstractmethod
    def __len__(self):
        """Number of samples in one epoch."""

    @abstractmethod
    def __getitem__(self, index):
        """A dict of tensors and their source paths."""


def domain_channels(opt):
    """(channels of domain A, channels of domain B): input_nc belongs to the source domain."""
    if opt.direction not in DIRECTIONS:
        raise ConfigError(f'unknown --direction {opt.direction!r}; valid: {", ".join(DIRECTIONS)}')
    if opt.direction == 'AtoB':
        return opt.input_nc, opt.output_nc
    return opt.output_nc, opt.input_nc


def find_images(opt, folder):
    """Image paths under `folder`, at most --max_dataset_size of them; under --skip_bad_images the
    unreadable ones are left out now, before training starts (one warning with their count)."""
    # namespaces built by hand (scripts, notebooks) may predate the flag
    return make_dataset(folder, opt.max_dataset_size, skip_bad=getattr(opt, 'skip_bad_images', False))


def read_image(path):
    """`load_image`, with the error of an unreadable file also naming the flag that skips such files."""
    try:
        return load_image(path)
    except ImageLoadError as err:
        raise ImageLoadError(f'{err} (--skip_bad_images leaves unreadable files out)') from err


def transform_image(transform, img, path):
    """`transform(img)`, with preprocessing errors re-raised naming the file `path`."""
    try:
        return transform(img)
    except PreprocessError as err:
        raise PreprocessError(f'{path}: {err}') from err


def get_params(opt, size):
    """Shared random crop position and flip for images that must be augmented identically.

    `size` is the (width, height) of the image before preprocessing.
    """
    w, h = size
    new_w, new_h = w, h
    if opt.preprocess == 'resize_and_crop':
        new_w = new_h = opt.load_size
    elif opt.preprocess == 'scale_width_and_crop':
        new_w, new_h = opt.load_size, opt.load_size * h // w
    x = random.randint(0, max(0, new_w - opt.crop_size))
    y = random.randint(0, max(0, new_h - opt.crop_size))
    flip = random.random() > 0.5
    return {'crop_pos': (x, y), 'flip': flip}


def get_transform(opt, params=None, grayscale=False, method=Image.BICUBIC, convert=True):
    """CUT's preprocessing for `opt.preprocess`, as one callable from a PIL image to a tensor.

    Steps, in order: grayscale; resize | scale_width | scale_shortside; zoom; crop; patch; round
    the size to a multiple of 4; horizontal flip (unless opt.no_flip); to a tensor in [-1, 1].
    `params` may fix 'crop_pos', 'flip', 'scale_factor' and 'patch_index'; missing ones are random.
    """
    steps = preprocess_steps(opt.preprocess)
    params = params or {}
    ops = [_to_grayscale] if grayscale else []
    if 'resize' in steps:
        ops.append(functools.partial(_resize, size=(opt.load_size, opt.load_size), method=method))
    elif 'scale_width' in steps:
        ops.append(functools.partial(_scale_width, target_width=opt.load_size,
                                     crop_size=opt.crop_size, method=method))
    elif 'scale_shortside' in steps:
        ops.append(functools.partial(_scale_shortside, target=opt.load_size, method=method))
    if 'zoom' in steps:
        ops.append(functools.partial(_zoom, crop_size=opt.crop_size,
                                     factor=params.get('scale_factor'), method=method))
    if 'crop' in steps:
        if 'crop_pos' in params:
            ops.append(functools.partial(_crop_at, pos=params['crop_pos'], size=opt.crop_size))
        else:
            ops.append(functools.partial(_random_crop, size=opt.crop_size))
    if 'patch' in steps:
        ops.append(functools.partial(_patch, size=opt.crop_size, index=params.get('patch_index')))
    ops.append(functools.partial(_make_power_2, base=4, method=method))
    if not opt.no_flip:
        if 'flip' in params:
            ops.append(functools.partial(_flip, flip=params['flip']))
        else:
            ops.append(_random_flip)
    if convert:
        ops.append(_to_normalized_tensor)
    return transforms.Compose(ops)


def preprocess_steps(preprocess):
    """The set of steps named by a --preprocess mode, e.g. 'zoom_and_patch' -> {'zoom', 'patch'}."""
    if preprocess not in PREPROCESS_MODES:
        raise ConfigError(f'unknown --preprocess {preprocess!r}; valid modes: '
                         f'{", ".join(PREPROCESS_MODES)}')
    return frozenset(preprocess.split('_and_'))


def _to_grayscale(img):
    return img.convert('L')


def _resize(img, size, method):
    return img.resize(size, method)


def _scale_width(img, target_width, crop_size, method):
    """Width to `target_width`, keeping the aspect ratio, but never shorter than `crop_size`."""
    ow, oh = img.size
    if ow == target_width and oh >= crop_size:
        return img
    return img.resize((target_width, int(max(target_width * oh / ow, crop_size))), method)


def _scale_shortside(img, target, method):
    """Upscale so that the shorter side is at least `target`; larger images are left as they are."""
    ow, oh = img.size
    if min(ow, oh) >= target:
        return img
    scale = target / min(ow, oh)
    return img.resize((round(ow * scale), round(oh * scale)), method)


def _zoom(img, crop_size, factor, method):
    """Scale width and height by factors in [0.8, 1] (or `factor`), never below `crop_size`."""
    if factor is None:
        factor = (random.uniform(0.8, 1.0), random.uniform(0.8, 1.0))
    iw, ih = img.size
    zw = max(crop_size, iw * factor[0])
    zh = max(crop_size, ih * factor[1])
    return img.resize((int(round(zw)), int(round(zh))), method)


def _check_fits(img, size, step):
    w, h = img.size
    if w < size or h < size:
        raise PreprocessError(
            f'image is {w}x{h} at the {step} step, smaller than crop_size={size}; use larger '
            'images, a larger --load_size, a smaller --crop_size or another --preprocess')


def _random_crop(img, size):
    """A uniformly placed size x size crop, drawn from torch as torchvision's RandomCrop does."""
    _check_fits(img, size, 'crop')
    w, h = img.size
    if (w, h) == (size, size):
        return img
    top = torch.randint(0, h - size + 1, size=(1,)).item()
    left = torch.randint(0, w - size + 1, size=(1,)).item()
    return img.crop((left, top, left + size, top + size))


def _crop_at(img, pos, size):
    _check_fits(img, size, 'crop')
    x, y = pos
    return img.crop((x, y, x + size, y + size))


def _patch(img, size, index):
    """Tile `index` of a size x size grid laid at a random offset over the image (SinCUT)."""
    _check_fits(img, size, 'patch')
    ow, oh = img.size
    nw, nh = ow // size, oh // size
    start_x = random.randint(0, ow - nw * size)
    start_y = random.randint(0, oh - nh * size)
    if index is None:
        index = random.randrange(nw * nh)
    index %= nw * nh
    x = start_x + (index // nh) * size
    y = start_y + (index % nh) * size
    return img.crop((x, y, x + size, y + size))


def _make_power_2(img, base, method):
    """Round width and height to the nearest multiple of `base` (CUT's generators need it)."""
    ow, oh = img.size
    w = int(round(ow / base) * base)
    h = int(round(oh / base) * base)
    if (w, h) == (ow, oh):
        return img
    return img.resize((w, h), method)


def _flip(img, flip):
    return img.transpose(Image.FLIP_LEFT_RIGHT) if flip else img


def _random_flip(img):
    return _flip(img, bool(torch.rand(1) < 0.5))


def _to_normalized_tensor(img):
    """PIL image -> float tensor (C, H, W) in [-1, 1]."""
    tensor = TF.to_tensor(img)
    channels = tensor.shape[0]
    return TF.normalize(tensor, mean=[0.5] * channels, std=[0.5] * channels)
