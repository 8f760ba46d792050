"""Finding image files under a folder and reading any of them as an 8-bit RGB PIL image."""
import logging
import os

import numpy as np
from PIL import Image

from util.errors import ConfigError, ImageLoadError, MissingFileError

IMG_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.ppm', '.bmp', '.tif', '.tiff', '.webp')

_SIXTEEN_BIT_MODES = ('I', 'I;16', 'I;16B', 'I;16L', 'I;16N')
_LISTED_BAD_FILES = 5  # how many unreadable files a skip warning names

logger = logging.getLogger(__name__)


def is_image_file(filename):
    """True when `filename` ends with one of IMG_EXTENSIONS, in any letter case."""
    return str(filename).lower().endswith(IMG_EXTENSIONS)


def make_dataset(dir, max_dataset_size=float('inf'), skip_bad=False):
    """Sorted paths of every image under `dir`, subfolders included, cut to `max_dataset_size`.

    Hidden files (names starting with '.', such as macOS '._x.png' resource forks) are skipped.
    Unlike CUT, the whole list is sorted before truncation, so the subset kept is reproducible.
    With `skip_bad`, every file is decoded now and the unreadable ones are left out, with one
    warning giving their count; an error is raised if none is readable.
    """
    if not os.path.isdir(dir):
        raise MissingFileError(f"image folder '{dir}' does not exist or is not a folder")
    paths = sorted(
        os.path.join(root, name)
        for root, _, names in os.walk(dir, followlinks=True)
        for name in names
        if is_image_file(name) and not name.startswith('.'))
    if not paths:
        raise ConfigError(f"found no images in '{dir}'; supported extensions are "
                         f'{", ".join(IMG_EXTENSIONS)} (any letter case)')
    if skip_bad:
        paths, bad = readable_images(paths, limit=max_dataset_size)
        if bad:
            _warn_skipped(dir, bad, checked=len(paths) + len(bad))
        if not paths:
            raise ConfigError(f"none of the {len(bad)} images in '{dir}' can be read; first: {bad[0]}")
    if max_dataset_size < len(paths):
        paths = paths[:int(max_dataset_size)]
    return paths


def readable_images(paths, limit=float('inf')):
    """(readable, errors): the paths that `load_image` decodes, in order, stopping once `limit` are
    found, and one ImageLoadError message for each unreadable path met on the way."""
    readable, errors = [], []
    for path in paths:
        if len(readable) >= limit:
            break
        try:
            load_image(path)
        except ImageLoadError as err:
            errors.append(str(err))
        else:
            readable.append(path)
    return readable, errors


def _warn_skipped(folder, errors, checked):
    listed = '; '.join(errors[:_LISTED_BAD_FILES])
    more = f'; and {len(errors) - _LISTED_BAD_FILES} more' if len(errors) > _LISTED_BAD_FILES else ''
    logger.warning("skipped %d unreadable of %d images checked in '%s' (--skip_bad_images): %s%s",
                   len(errors), checked, folder, listed, more)


def load_image(path):
    """Read `path` as an 8-bit RGB PIL image, whatever its mode.

    16-bit grayscale ('I;16', 'I') is rescaled from [0, 65535] to [0, 255] rather than clipped;
    float images ('F') are read on PIL's [0, 255] scale; alpha is dropped, as CUT does.
    Unreadable files raise ImageLoadError naming the file.
    """
    try:
        with Image.open(path) as img:
            img.load()
            return _to_rgb(img)
    except FileNotFoundError:
        raise
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        raise ImageLoadError(f"cannot read image '{path}': {err}") from err


def _to_rgb(img):
    if img.mode in _SIXTEEN_BIT_MODES:
        values = np.clip(np.asarray(img).astype(np.int64), 0, 65535)
        img = Image.fromarray(((values * 255 + 32767) // 65535).astype(np.uint8))
    elif img.mode == 'F':
        values = np.clip(np.rint(np.nan_to_num(np.asarray(img, dtype=np.float64))), 0, 255)
        img = Image.fromarray(values.astype(np.uint8))
    elif img.mode == 'P':
        img = img.convert('RGBA')
    return img.convert('RGB')
