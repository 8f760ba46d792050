"""Generate a synthetic multi-domain "seasons" dataset in StarGAN v2's layout, with the scene labels of its
validation images, so that a translation's content preservation can be scored (evaluation/multidomain_synthetic.py).

Every image is a random landscape (sky, far hills, a field, maybe a lake and a house, one to four trees),
drawn as a label map of CLASSES and rendered in one season. A season fixes each class's mean colour
(PALETTES) and a texture (spring blossom, summer grass grain, autumn leaves, winter snow); each image draws
its own style within the season (colour variation along VARIATION, a time-of-day tint, brightness and
texture density), so a multi-modal model has something to be diverse about. Scenes are drawn
independently per image and season, so no scene appears in two domains (unpaired).

    <root>/train/<season>/<id>.png        training images
    <root>/val/<season>/<id>.png          validation images
    <root>/val_layout/<season>/<id>.png   their label maps (uint8, a CLASSES index per pixel)
    <root>/meta.json                      seasons, classes, palettes, seed, sizes

    python datasets/make_multidomain_dataset.py --root datasets/seasons --n_train 200 --n_val 20
"""
import argparse
import json
import math
import shutil
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

DEFAULT_ROOT = Path(__file__).resolve().parent / 'seasons'
FORMAT_VERSION = 1
SEASONS = ('spring', 'summer', 'autumn', 'winter')
# the seasons a K-domain set keeps, most distinct first (then written in calendar order)
SEASON_PRIORITY = ('summer', 'winter', 'autumn', 'spring')
CLASSES = ('sky', 'hills', 'field', 'foliage', 'trunk', 'wall', 'roof', 'water')
SPLIT_CODES = {'train': 0, 'val': 1}
FOLDERS = ('train', 'val', 'val_layout')

# mean colour of each class (RGB in [0, 1], CLASSES order); every pair within a season is >= 0.2 apart
PALETTES = {
    'spring': [(0.62, 0.80, 0.95), (0.52, 0.65, 0.68), (0.62, 0.85, 0.45), (0.42, 0.70, 0.33),
               (0.35, 0.25, 0.18), (0.90, 0.85, 0.70), (0.70, 0.25, 0.20), (0.30, 0.52, 0.80)],
    'summer': [(0.45, 0.68, 0.95), (0.42, 0.58, 0.62), (0.40, 0.68, 0.22), (0.15, 0.42, 0.12),
               (0.36, 0.24, 0.14), (0.90, 0.85, 0.70), (0.70, 0.25, 0.20), (0.18, 0.40, 0.72)],
    'autumn': [(0.60, 0.72, 0.85), (0.60, 0.55, 0.45), (0.85, 0.72, 0.30), (0.85, 0.42, 0.12),
               (0.28, 0.18, 0.12), (0.90, 0.85, 0.70), (0.55, 0.16, 0.14), (0.28, 0.40, 0.55)],
    'winter': [(0.62, 0.66, 0.72), (0.76, 0.81, 0.90), (0.97, 0.97, 0.98), (0.40, 0.34, 0.30),
               (0.18, 0.13, 0.10), (0.85, 0.74, 0.58), (0.55, 0.22, 0.20), (0.42, 0.60, 0.80)],
}
# a style moves each class's colour by t * VARIATION, t uniform in [-1, 1]; unlisted classes vary in brightness
BRIGHTNESS_VARIATION = (0.04, 0.04, 0.04)
VARIATION = {
    'spring': {'field': (0.05, 0.03, 0.06), 'foliage': (0.05, 0.04, 0.05)},
    'summer': {'field': (0.08, 0.05, 0.0), 'foliage': (0.04, 0.06, 0.03), 'sky': (0.05, 0.04, 0.0)},
    'autumn': {'field': (0.05, 0.08, 0.08), 'foliage': (0.06, 0.12, 0.04), 'hills': (0.05, 0.04, 0.0)},
    'winter': {'sky': (0.04, 0.04, 0.06), 'field': (0.02, 0.02, 0.01), 'foliage': (0.05, 0.04, 0.04)},
}
# texture: which classes get dots, their colours (one drawn per dot) and the style's density range
TEXTURES = {
    'spring': {'classes': ('foliage', 'field'), 'share': (1.0, 0.3), 'density': (0.08, 0.22),
               'colors': [(0.98, 0.72, 0.84), (1.0, 0.92, 0.95), (0.98, 0.95, 0.55)]},
    'summer': {'classes': ('foliage', 'field'), 'share': (1.0, 1.0), 'density': (0.08, 0.22),
               'colors': None},  # None: a darker shade of the region's own colour (grass and leaf grain)
    'autumn': {'classes': ('foliage', 'field'), 'share': (1.0, 0.5), 'density': (0.08, 0.22),
               'colors': [(0.75, 0.20, 0.10), (0.95, 0.78, 0.20), (0.50, 0.30, 0.15)]},
    'winter': {'classes': ('sky', 'hills', 'foliage', 'trunk', 'wall', 'roof', 'water'),
               'share': (0.5, 1.0, 1.0, 1.0, 0.6, 1.0, 0.6), 'density': (0.06, 0.2),
               'colors': [(1.0, 1.0, 1.0)]},
}
TINT = np.array([0.06, 0.0, -0.06])  # style tint +1: warm evening light, -1: cool morning light
GRAIN = 0.012  # std of the per-pixel noise
SKY_GLOW = 0.07  # how much lighter the sky gets towards the horizon


def seasons_for(k):
    """The `k` seasons (2 to 4) of a K-domain set, in calendar order."""
    if not 2 <= k <= len(SEASONS):
        raise ValueError(f'--domains must be between 2 and {len(SEASONS)} (the seasons), got {k}')
    kept = set(SEASON_PRIORITY[:k])
    return [s for s in SEASONS if s in kept]


def palette(season):
    """(len(CLASSES), 3) float array: the mean colour of every class in `season`."""
    if season not in PALETTES:
        raise ValueError(f'unknown season {season!r}; valid: {", ".join(SEASONS)}')
    return np.array(PALETTES[season])


def variation(season):
    """(len(CLASSES), 3) float array: the direction a style moves each class's colour in `season`."""
    listed = VARIATION[season]
    return np.array([listed.get(name, BRIGHTNESS_VARIATION) for name in CLASSES])


# ---------------------------------------------------------------- scenes

def sample_layout(rng, size):
    """A random landscape: (size, size) uint8 label map, a CLASSES index per pixel."""
    centers = (np.arange(size) + 0.5) / size
    y, x = centers[:, None], centers[None, :]  # (H, 1), (1, W): y downwards, broadcast to (H, W)
    horizon = rng.uniform(0.48, 0.66)
    ground = horizon + 0.02 * np.sin(2 * math.pi * rng.uniform(0.5, 1.5) * x + rng.uniform(0, 2 * math.pi))
    ridge = ground - rng.uniform(0.05, 0.12)
    for cycles in (rng.uniform(0.6, 1.4), rng.uniform(1.5, 3.5)):
        ridge = ridge - rng.uniform(0.02, 0.07) * (1 + np.sin(2 * math.pi * cycles * x + rng.uniform(0, 2 * math.pi)))
    ridge = np.maximum(ridge, 0.12)
    layout = np.where(y < ridge, _label('sky'), np.where(y < ground, _label('hills'), _label('field')))
    layout = layout.astype(np.uint8)
    if rng.random() < 0.5:
        cx, cy = rng.uniform(0.2, 0.8), rng.uniform(horizon + 0.14, 0.88)
        rx, ry = rng.uniform(0.12, 0.28), rng.uniform(0.04, 0.08)
        rows, cols = _box(centers, cx - rx, cx + rx, cy - ry, cy + ry)
        lake = (((x[:, cols] - cx) / rx) ** 2 + ((y[rows] - cy) / ry) ** 2 <= 1) & (y[rows] > ground[:, cols] + 0.02)
        layout[rows, cols][lake] = _label('water')
    objects = [('tree', rng.uniform(0.05, 0.95), rng.uniform(horizon + 0.04, 0.97))
               for _ in range(rng.integers(1, 5))]
    if rng.random() < 0.6:
        objects.append(('house', rng.uniform(0.15, 0.85), rng.uniform(horizon + 0.06, 0.92)))
    for kind, bx, by in sorted(objects, key=lambda o: o[2]):  # far first: nearer objects cover them
        scale = 0.7 + 0.6 * (by - horizon) / (1 - horizon)  # nearer is larger
        draw = _draw_tree if kind == 'tree' else _draw_house
        draw(layout, centers, bx, by, scale, rng)
    return layout


def _label(name):
    return CLASSES.index(name)


def _box(centers, x0, x1, y0, y1):
    """(rows, cols): slices of the pixels whose centres lie in [x0, x1] x [y0, y1]."""
    (r0, r1), (c0, c1) = np.searchsorted(centers, (y0, y1)), np.searchsorted(centers, (x0, x1))
    return slice(r0, r1), slice(c0, c1)


def _draw_tree(layout, centers, bx, by, scale, rng):
    """A trunk standing at (bx, by) and an elliptic crown on it."""
    trunk_w, trunk_h = 0.035 * scale, rng.uniform(0.07, 0.11) * scale
    rx, ry = rng.uniform(0.06, 0.09) * scale, rng.uniform(0.08, 0.12) * scale
    cy = by - trunk_h - 0.8 * ry
    rows, cols = _box(centers, bx - trunk_w / 2, bx + trunk_w / 2, by - trunk_h, by)
    layout[rows, cols] = _label('trunk')
    rows, cols = _box(centers, bx - rx, bx + rx, cy - ry, cy + ry)
    crown = ((centers[None, cols] - bx) / rx) ** 2 + ((centers[rows, None] - cy) / ry) ** 2 <= 1
    layout[rows, cols][crown] = _label('foliage')


def _draw_house(layout, centers, bx, by, scale, rng):
    """A wall standing at (bx, by) under a triangular roof with eaves."""
    half_w, wall_h = rng.uniform(0.07, 0.11) * scale, rng.uniform(0.08, 0.13) * scale
    roof_h, eave = rng.uniform(0.05, 0.09) * scale, 0.015 * scale
    top = by - wall_h
    rows, cols = _box(centers, bx - half_w, bx + half_w, top, by)
    layout[rows, cols] = _label('wall')
    rows, cols = _box(centers, bx - half_w - eave, bx + half_w + eave, top - roof_h, top)
    depth = (centers[rows, None] - (top - roof_h)) / roof_h  # (h, 1): 0 at the apex, 1 at the eaves
    roof = (np.abs(centers[None, cols] - bx) <= (half_w + eave) * depth) & (centers[rows, None] < top)
    layout[rows, cols][roof] = _label('roof')


# ---------------------------------------------------------------- rendering

def sample_style(rng, season):
    """A random style of `season`: colour variation per class, tint, brightness, texture density, noise seed."""
    low, high = TEXTURES[season]['density']
    return {'variation': rng.uniform(-1, 1, size=len(CLASSES)), 'tint': float(rng.uniform(-1, 1)),
            'brightness': float(rng.uniform(0.94, 1.04)), 'density': float(rng.uniform(low, high)),
            'noise_seed': int(rng.integers(2 ** 31))}


def mean_style(season):
    """The style at the middle of every range (no variation or tint): the palette itself."""
    low, high = TEXTURES[season]['density']
    return {'variation': np.zeros(len(CLASSES)), 'tint': 0.0, 'brightness': 1.0, 'density': (low + high) / 2,
            'noise_seed': 0}


def render(layout, season, style):
    """(H, W, 3) uint8 image of the label map `layout` in `season` with `style` (see sample_style).

    The same layout can be rendered in every season: that is the ground truth of a translation.
    """
    layout = np.asarray(layout)
    if layout.ndim != 2 or layout.dtype != np.uint8 or layout.max(initial=0) >= len(CLASSES):
        raise ValueError(f'layout must be a 2-D uint8 label map with values below {len(CLASSES)}, got '
                         f'{layout.dtype} of shape {layout.shape}')
    rng = np.random.default_rng(style['noise_seed'])
    colors = palette(season) + style['variation'][:, None] * variation(season)  # (C, 3)
    image = colors.astype(np.float32)[layout]  # (H, W, 3)
    rows = (np.arange(layout.shape[0], dtype=np.float32) + 0.5) / layout.shape[0]
    glow = np.where(layout == _label('sky'), SKY_GLOW * (rows[:, None] - 0.3), 0)  # lighter towards the horizon
    image += glow[..., None]
    _add_texture(image, layout, season, style['density'], rng)
    gain = (style['brightness'] * (1 + style['tint'] * TINT)).astype(np.float32)  # (3,)
    image = image * gain + GRAIN * rng.standard_normal(image.shape, dtype=np.float32)
    return (np.clip(image, 0.0, 1.0) * 255 + 0.5).astype(np.uint8)


def _add_texture(image, layout, season, density, rng):
    """Paint the season's texture dots on `image` in place; a dot is one pixel per 64 px of image side."""
    spec = TEXTURES[season]
    h, w = layout.shape
    cell = max(1, round(max(h, w) / 64))
    coarse = (-(-h // cell), -(-w // cell))
    draw = rng.random(coarse, dtype=np.float32)
    pick = rng.integers(len(spec['colors'] or [None]), size=coarse)
    draw = np.repeat(np.repeat(draw, cell, 0), cell, 1)[:h, :w]
    pick = np.repeat(np.repeat(pick, cell, 0), cell, 1)[:h, :w]
    shares = np.zeros(len(CLASSES), dtype=np.float32)
    shares[[_label(name) for name in spec['classes']]] = spec['share']
    on = draw < density * shares[layout]  # (H, W)
    if spec['colors'] is None:
        image[on] *= 0.72
    else:
        image[on] = np.array(spec['colors'], dtype=np.float32)[pick[on]]


# ---------------------------------------------------------------- the dataset

def _image_rng(seed, split, season, index):
    return np.random.default_rng([seed, SPLIT_CODES[split], SEASONS.index(season), index])


def _save_png(array, path):
    Image.fromarray(array).save(path, format='PNG', compress_level=1)  # fast; the files are small anyway


def make_multidomain_dataset(root=DEFAULT_ROOT, n_train=200, n_val=20, size=64, seed=0, domains=4,
                             overwrite=False, progress=False):
    """Write the dataset under `root` (n_train and n_val images per season); return meta.json's content
    plus 'root'. An existing dataset there is replaced only with `overwrite`."""
    if n_train < 1 or n_val < 1:
        raise ValueError(f'--n_train and --n_val must be at least 1, got {n_train} and {n_val}')
    if size < 16 or size % 4:
        raise ValueError(f'--size must be a multiple of 4 and at least 16, got {size}')
    if seed < 0:
        raise ValueError(f'--seed must be non-negative, got {seed}')
    seasons = seasons_for(domains)
    root = Path(root)
    existing = [name for name in FOLDERS + ('meta.json',) if (root / name).exists()]
    if existing and not overwrite:
        raise FileExistsError(f'{root} already holds {", ".join(existing)}; pass --overwrite to replace them')
    for name in existing:
        if (root / name).is_dir():
            shutil.rmtree(root / name)
        else:
            (root / name).unlink()

    counts = {'train': n_train, 'val': n_val}
    with tqdm(total=len(seasons) * (n_train + n_val), desc='seasons dataset', unit='image',
              disable=not progress) as bar:
        for split, count in counts.items():
            for season in seasons:
                folder = root / split / season
                folder.mkdir(parents=True)
                if split == 'val':
                    (root / 'val_layout' / season).mkdir(parents=True)
                for index in range(count):
                    rng = _image_rng(seed, split, season, index)
                    layout = sample_layout(rng, size)
                    name = f'{index:06d}.png'
                    _save_png(render(layout, season, sample_style(rng, season)), folder / name)
                    if split == 'val':
                        _save_png(layout, root / 'val_layout' / season / name)
                    bar.update()

    meta = {
        'format_version': FORMAT_VERSION, 'seed': seed, 'size': size, 'n_train': n_train, 'n_val': n_val,
        'seasons': seasons, 'classes': list(CLASSES),
        'palettes': {s: {c: list(rgb) for c, rgb in zip(CLASSES, PALETTES[s])} for s in seasons},
        'variation': {s: {c: list(v) for c, v in zip(CLASSES, variation(s).tolist())} for s in seasons},
        'folders': {'train': 'train/<season>/<id>.png', 'val': 'val/<season>/<id>.png',
                    'val_layout': 'val_layout/<season>/<id>.png: the label map of val/<season>/<id>.png, '
                                  'uint8, an index into classes per pixel'},
    }
    (root / 'meta.json').write_text(json.dumps(meta, indent=2) + '\n')
    return {**meta, 'root': str(root)}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--root', type=Path, default=DEFAULT_ROOT, help='output folder')
    parser.add_argument('--n_train', type=int, default=200, help='training images per season')
    parser.add_argument('--n_val', type=int, default=20, help='validation images per season')
    parser.add_argument('--size', type=int, default=64, help='image side in pixels')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--domains', type=int, default=4,
                        help=f'number of seasons (2 to 4; kept in the order {", ".join(SEASON_PRIORITY)})')
    parser.add_argument('--overwrite', action='store_true', help='replace an existing dataset')
    args = parser.parse_args(argv)
    meta = make_multidomain_dataset(args.root, n_train=args.n_train, n_val=args.n_val, size=args.size,
                                    seed=args.seed, domains=args.domains, overwrite=args.overwrite, progress=True)
    total = len(meta['seasons']) * (args.n_train + args.n_val)
    print(f'wrote {total} images of {", ".join(meta["seasons"])} to {args.root}')


if __name__ == '__main__':
    main()
