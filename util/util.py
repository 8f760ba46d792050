"""Small helpers shared by every component: image conversion, atomic writes, option parsing."""
import argparse
import hashlib
import json
import os
import pickle
import re
import tempfile
from argparse import Namespace

import numpy as np
import torch
from PIL import Image

from util.errors import CheckpointError


def str2bool(v):
    """argparse type accepting yes/no, true/false, t/f, y/n, 1/0."""
    if isinstance(v, bool):
        return v
    s = str(v).strip().lower()
    if s in ('yes', 'true', 't', 'y', '1'):
        return True
    if s in ('no', 'false', 'f', 'n', '0'):
        return False
    raise argparse.ArgumentTypeError(f'expected a boolean (true/false), got {v!r}')


def copyconf(opt, **overrides):
    """A shallow copy of an options namespace with some values replaced."""
    conf = Namespace(**vars(opt))
    for key, value in overrides.items():
        setattr(conf, key, value)
    return conf


def tensor2im(image, imtype=np.uint8):
    """First image of a (B, C, H, W) tensor in [-1, 1] to an (H, W, 3) uint8 array, as CUT does.

    Values are clamped, mapped to [0, 255] and truncated (not rounded), which is what CUT's
    `tensor2im` does, so saved images match the official ones bit for bit.
    """
    if not isinstance(image, torch.Tensor):
        return image
    arr = image.detach()[0].clamp(-1.0, 1.0).cpu().float().numpy()
    if arr.shape[0] == 1:
        arr = np.tile(arr, (3, 1, 1))
    arr = (np.transpose(arr, (1, 2, 0)) + 1) / 2.0 * 255.0
    return arr.astype(imtype)


def save_image(image_numpy, image_path, aspect_ratio=1.0):
    """Write an (H, W, 3) uint8 array as an image; aspect_ratio != 1 stretches the width or height."""
    img = Image.fromarray(image_numpy)
    h, w = image_numpy.shape[:2]
    if aspect_ratio is not None and aspect_ratio > 1.0:
        img = img.resize((int(w * aspect_ratio), h), Image.BICUBIC)
    elif aspect_ratio is not None and aspect_ratio < 1.0:
        img = img.resize((w, int(h / aspect_ratio)), Image.BICUBIC)
    atomic_write(image_path, lambda f: img.save(f, format=_pil_format(image_path)), binary=True)


def _pil_format(path):
    ext = os.path.splitext(path)[1].lower()
    return {'.jpg': 'JPEG', '.jpeg': 'JPEG', '.bmp': 'BMP', '.tif': 'TIFF', '.tiff': 'TIFF'}.get(ext, 'PNG')


def mkdirs(paths):
    if isinstance(paths, (list, tuple)):
        for p in paths:
            mkdir(p)
    else:
        mkdir(paths)


def mkdir(path):
    os.makedirs(path, exist_ok=True)


def stage_write(path, writer, binary=False):
    """Write a temporary file beside `path` (fsynced) and return its name; the caller renames it over `path`
    (os.replace), after staging the other files of a checkpoint when they must land together.

    `writer(f)` receives the open temporary file, named `<name>.tmp<random>`; it is removed on failure.
    """
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f'{os.path.basename(path)}.tmp', suffix='')
    os.close(fd)
    try:
        with open(tmp, 'wb' if binary else 'w') as f:
            writer(f)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return tmp


def is_staged_file(name, path):
    """Whether `name` (a file name) is a temporary of `stage_write(path)`, e.g. one a killed process left."""
    return name.startswith(f'{os.path.basename(path)}.tmp')


def atomic_write(path, writer, binary=False):
    """Write `path` through a temporary file in the same folder, then rename it over the target: a crash or
    a full disk while writing leaves the previous version of `path` untouched."""
    tmp = stage_write(path, writer, binary)
    try:
        os.replace(tmp, path)
    except BaseException:
        os.remove(tmp)
        raise


def atomic_torch_save(obj, path):
    atomic_write(path, lambda f: torch.save(obj, f), binary=True)


def atomic_write_text(path, text):
    atomic_write(path, lambda f: f.write(text))


def atomic_write_json(path, obj):
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + '\n')


def sha256(source):
    """Hex SHA-256 of `source`: bytes, or the path of a file (read in 1 MiB chunks)."""
    digest = hashlib.sha256()
    if isinstance(source, (bytes, bytearray, memoryview)):
        digest.update(source)
        return digest.hexdigest()
    with open(source, 'rb') as f:
        for chunk in iter(lambda: f.read(1 << 20), b''):
            digest.update(chunk)
    return digest.hexdigest()


def cpu_name():
    """The CPU model from /proc/cpuinfo (else the platform's processor name) and the logical CPU count."""
    import platform
    import re
    try:
        with open('/proc/cpuinfo') as f:
            match = re.search(r'^model name\s*:\s*(.+)$', f.read(), re.M)
    except OSError:
        match = None
    return f'{match.group(1).strip() if match else platform.processor() or "cpu"}, {os.cpu_count()} logical CPUs'


def options_to_dict(opt):
    """Parsed options as plain JSON-able data (inf kept as the string 'inf')."""
    return {k: ('inf' if isinstance(v, float) and v == float('inf') else v) for k, v in vars(opt).items()}


def report_json(result, out=None):
    """A script's machine-readable result: printed as JSON, and written atomically to `out` when given."""
    print(json.dumps(result, indent=2, default=_json_default))
    if out:
        atomic_write_json(out, result)


def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, float) and o == float('inf'):
        return 'inf'
    return str(o)


def strip_module_prefix(state):
    """A state dict without the 'module.' prefix that (Distributed)DataParallel puts on every key."""
    return {(k[len('module.'):] if k.startswith('module.') else k): v for k, v in state.items()}


def state_dict_mismatch(expected, given, n=4):
    """'' when the state dict `given` has the keys and shapes of `expected`, else one line naming the first `n`
    missing keys, unexpected keys and keys of other shapes (load_state_dict's own message runs to many lines)."""
    missing = [k for k in expected if k not in given]
    unexpected = [k for k in given if k not in expected]
    shapes = [f'{k} {tuple(given[k].shape)} (expected {tuple(expected[k].shape)})' for k in given
              if k in expected and hasattr(given[k], 'shape') and given[k].shape != expected[k].shape]
    parts = [f'{len(keys)} {what} ({", ".join(keys[:n])}{", ..." if len(keys) > n else ""})'
             for what, keys in (('missing keys', missing), ('unexpected keys', unexpected),
                                ('keys of another shape', shapes)) if keys]
    return '; '.join(parts)


def safe_torch_load(path, map_location='cpu'):
    """torch.load restricted to tensors and plain containers (weights_only=True).

    A file that names any other class or function (which unpickling would import and run) is
    refused; that and a damaged file each raise a RuntimeError naming the file.
    """
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise
    except pickle.UnpicklingError as exc:
        found = re.search(r'Unsupported global: GLOBAL ([\w.]+)', str(exc))
        if not found:  # not a pickle at all (an HTML page, a truncated download): no code was refused
            raise CheckpointError(f'could not load {path}: the file is damaged or not a PyTorch checkpoint '
                               '(an HTML page saved under its name, a truncated download?)') from exc
        culprit = found.group(1)
        raise CheckpointError(
            f'refused to load {path}: it contains {culprit}, and unpickling it would run code named in '
            'the file (only tensors and plain containers are loaded, weights_only=True). If you trust '
            'its source, re-save it as a plain state_dict of tensors.') from exc
    except Exception as exc:
        raise CheckpointError(f'could not load {path}: the file is damaged or not a PyTorch checkpoint '
                           f'({type(exc).__name__}: {exc})') from exc
