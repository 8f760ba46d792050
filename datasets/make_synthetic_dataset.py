"""Generate a small unpaired two-domain dataset with a known answer: horse -> zebra in miniature.

Every scene is a coloured, textured background with one or two smooth blobs at random poses. The
background is a sky-to-meadow gradient (two fixed colours, slightly jittered, at a random angle) by
default, or two uniformly random colours (`--background random`, the first version of this set): a
CUT-style generator cannot keep colours that nothing in domain B pins down (docs/results.md).
Domain A paints the blobs in a plain, softly shaded colour; domain B paints blobs of the same
distribution with zebra stripes. The translation A -> B must re-texture the blobs and keep their
shape and the background. trainA and trainB come from independent draws (unpaired). For every
testA scene, testA_gt holds its exact domain-B rendering and testA_mask the blob pixels, so a
translated image can be scored against the truth. The same seed gives byte-identical files.

    python datasets/make_synthetic_dataset.py --root datasets/synthetic --n_train 200 --n_test 20
"""
import argparse
import json
import math
import shutil
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

DEFAULT_ROOT = Path(__file__).resolve().parent / 'synthetic'
FORMAT_VERSION = 2
SUPERSAMPLE = 4  # blobs are drawn at 4x and box-filtered down, for smooth edges and stripes
SPLIT_CODES = {'trainA': 0, 'trainB': 1, 'testA': 2, 'testB': 3}
FOLDERS = ('trainA', 'trainB', 'testA', 'testB', 'testA_gt', 'testA_mask')
STRIPE_DARK, STRIPE_LIGHT = 0.08, 0.92
# the 'landscape' background: the two ends of its gradient (sky, meadow) and the jitter of each scene
LANDSCAPE = np.array([[0.55, 0.70, 0.90], [0.35, 0.58, 0.25]])
LANDSCAPE_JITTER = 0.03
BACKGROUNDS = ('landscape', 'random')


def sample_scene(rng, size, background='landscape'):
    """Random scene parameters (a dict of floats and arrays) for a `size` x `size` image."""
    if background == 'random':
        colors = rng.uniform(0.15, 0.85, size=(2, 3))
    else:
        colors = np.clip(LANDSCAPE + rng.normal(0.0, LANDSCAPE_JITTER, size=(2, 3)), 0.0, 1.0)
    return {
        'bg_colors': colors,
        'bg_angle': rng.uniform(0, 2 * math.pi),
        'waves': [{'amplitude': rng.uniform(0.02, 0.06), 'cycles': rng.uniform(1.0, 4.0),
                   'angle': rng.uniform(0, 2 * math.pi), 'phase': rng.uniform(0, 2 * math.pi)}
                  for _ in range(3)],
        'grain': rng.normal(0.0, 0.015, size=(size, size, 1)),
        'objects': [sample_object(rng) for _ in range(rng.integers(1, 3))],
    }


def sample_object(rng):
    """One blob: pose and shape in units of the image side, its plain colour and its stripes."""
    radius = rng.uniform(0.12, 0.24)
    return {
        'center': rng.uniform(0.25, 0.75, size=2),
        'radii': (radius, radius * rng.uniform(0.5, 0.9)),
        'angle': rng.uniform(0, math.pi),
        'harmonics': [(k, rng.uniform(0.0, 0.08), rng.uniform(0, 2 * math.pi)) for k in (2, 3, 4)],
        'color': rng.uniform(0.25, 0.9, size=3),
        'light_angle': rng.uniform(0, 2 * math.pi),
        'stripe_period': rng.uniform(0.07, 0.12),
        'stripe_angle': math.pi / 2 + rng.normal(0.0, 0.3),
        'stripe_phase': rng.uniform(0, 2 * math.pi),
        'stripe_wave': rng.uniform(0.0, 0.012),
    }


def render(scene, size, domain):
    """(image, mask): a (size, size, 3) uint8 rendering in `domain` ('A' plain, 'B' striped) and
    the (size, size) bool mask of pixels any blob touches."""
    n = size * SUPERSAMPLE
    centers = (np.arange(n) + 0.5) / n  # supersampled pixel centres in [0, 1]
    paint = np.zeros((n, n, 3))
    covered = np.zeros((n, n), dtype=bool)
    for obj in scene['objects']:
        rows, cols = _window(obj, size)
        y, x = np.meshgrid(centers[rows], centers[cols], indexing='ij')  # (h, w) each
        inside, color = _blob(obj, x, y, domain)  # (h, w), (h, w, 3)
        paint[rows, cols][inside] = color[inside]
        covered[rows, cols] |= inside
    coverage = covered.reshape(size, SUPERSAMPLE, size, SUPERSAMPLE).mean(axis=(1, 3))
    blobs = paint.reshape(size, SUPERSAMPLE, size, SUPERSAMPLE, 3).mean(axis=(1, 3))
    image = _background(scene, size) * (1.0 - coverage[..., None]) + blobs + scene['grain']
    return np.rint(np.clip(image, 0.0, 1.0) * 255).astype(np.uint8), coverage > 0


def _window(obj, size):
    """Slices of the supersampled grid covering the blob's bounding square, on pixel borders."""
    extent = max(obj['radii']) * (1.0 + sum(amp for _, amp, _ in obj['harmonics']))
    lows = np.clip(np.floor((obj['center'] - extent) * size), 0, size).astype(int) * SUPERSAMPLE
    highs = np.clip(np.ceil((obj['center'] + extent) * size), 0, size).astype(int) * SUPERSAMPLE
    return slice(lows[1], highs[1]), slice(lows[0], highs[0])


def _background(scene, size):
    """A two-colour gradient with a few faint plane waves, (size, size, 3) in about [0, 1]."""
    centers = (np.arange(size) + 0.5) / size
    x, y = np.meshgrid(centers, centers)
    angle = scene['bg_angle']
    t = np.clip(0.5 + (x - 0.5) * math.cos(angle) + (y - 0.5) * math.sin(angle), 0.0, 1.0)
    low, high = scene['bg_colors']
    image = low + t[..., None] * (high - low)
    for wave in scene['waves']:
        u = x * math.cos(wave['angle']) + y * math.sin(wave['angle'])
        image += wave['amplitude'] * np.sin(2 * math.pi * wave['cycles'] * u + wave['phase'])[..., None]
    return image


def _blob(obj, x, y, domain):
    """Inside test of a blob (an ellipse with a wavy radius) and its paint in `domain`."""
    cos_a, sin_a = math.cos(obj['angle']), math.sin(obj['angle'])
    dx, dy = x - obj['center'][0], y - obj['center'][1]
    u = dx * cos_a + dy * sin_a  # along the blob's long axis
    v = -dx * sin_a + dy * cos_a
    a, b = obj['radii']
    rho = np.hypot(u / a, v / b)
    theta = np.arctan2(v / b, u / a)
    boundary = 1.0 + sum(amp * np.cos(k * theta + phase) for k, amp, phase in obj['harmonics'])
    inside = rho <= boundary
    light = (u * math.cos(obj['light_angle']) + v * math.sin(obj['light_angle'])) / a
    shade = np.clip(1.0 + 0.2 * light, 0.7, 1.2)[..., None]  # (n, n, 1)
    if domain == 'A':
        return inside, np.clip(obj['color'] * shade, 0.0, 1.0)
    s = u * math.cos(obj['stripe_angle']) + v * math.sin(obj['stripe_angle'])
    s = s + obj['stripe_wave'] * np.sin(2 * math.pi * u / a)
    light_stripe = np.cos(2 * math.pi * s / obj['stripe_period'] + obj['stripe_phase']) > 0
    tone = np.where(light_stripe, STRIPE_LIGHT, STRIPE_DARK)[..., None]
    return inside, np.clip(np.broadcast_to(tone * shade, x.shape + (3,)), 0.0, 1.0)


def _scene_rng(seed, split, index):
    return np.random.default_rng([seed, SPLIT_CODES[split], index])


def _save_png(array, path):
    Image.fromarray(array).save(path, format='PNG')


def make_synthetic_dataset(root=DEFAULT_ROOT, n_train=200, n_test=20, size=64, seed=0,
                           overwrite=False, progress=False, background='landscape'):
    """Write the dataset under `root`; return the summary saved as synthetic.json, plus 'root'.

    An existing dataset in `root` is replaced only when `overwrite` is set.
    """
    if n_train < 1 or n_test < 1:
        raise ValueError(f'n_train and n_test must be at least 1, got {n_train} and {n_test}')
    if size < 16 or size % 4:
        raise ValueError(f'size must be a multiple of 4 and at least 16, got {size}')
    if seed < 0:
        raise ValueError(f'seed must be non-negative, got {seed}')
    if background not in BACKGROUNDS:
        raise ValueError(f'background must be one of {", ".join(BACKGROUNDS)}, got {background!r}')
    root = Path(root)
    existing = [name for name in FOLDERS + ('synthetic.json',) if (root / name).exists()]
    if existing and not overwrite:
        raise FileExistsError(f'{root} already holds {", ".join(existing)}; '
                              'pass overwrite=True (--overwrite) to replace them')
    for name in existing:
        target = root / name
        if target.is_dir():
            shutil.rmtree(target)
        else:
            target.unlink()
    for name in FOLDERS:
        (root / name).mkdir(parents=True)

    counts = {'trainA': n_train, 'trainB': n_train, 'testA': n_test, 'testB': n_test}
    with tqdm(total=sum(counts.values()), desc='synthetic dataset', unit='scene',
              disable=not progress) as bar:
        for split, count in counts.items():
            domain = split[-1]
            for index in range(count):
                scene = sample_scene(_scene_rng(seed, split, index), size, background)
                name = f'{index:06d}.png'
                image, mask = render(scene, size, domain)
                _save_png(image, root / split / name)
                if split == 'testA':
                    _save_png(render(scene, size, 'B')[0], root / 'testA_gt' / name)
                    _save_png(mask.astype(np.uint8) * 255, root / 'testA_mask' / name)
                bar.update()

    summary = {
        'format_version': FORMAT_VERSION,
        'seed': seed, 'size': size, 'n_train': n_train, 'n_test': n_test, 'background': background,
        'counts': {**counts, 'testA_gt': n_test, 'testA_mask': n_test},
        'domains': {'A': 'blobs in a plain, softly shaded colour',
                    'B': 'blobs of the same distribution with zebra stripes'},
        'folders': {'testA_gt': 'the domain-B rendering of each testA scene (same file name)',
                    'testA_mask': 'pixels touched by a blob in each testA scene (255 = blob)'},
    }
    (root / 'synthetic.json').write_text(json.dumps(summary, indent=2, sort_keys=True) + '\n')
    return {**summary, 'root': str(root)}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--root', type=Path, default=DEFAULT_ROOT, help='output folder')
    parser.add_argument('--n_train', type=int, default=200, help='training images per domain')
    parser.add_argument('--n_test', type=int, default=20, help='test images per domain')
    parser.add_argument('--size', type=int, default=64, help='image side in pixels')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--background', default='landscape', choices=BACKGROUNDS,
                        help='landscape: jittered sky-to-meadow gradients; random: two uniformly random colours')
    parser.add_argument('--overwrite', action='store_true', help='replace an existing dataset')
    args = parser.parse_args(argv)
    summary = make_synthetic_dataset(args.root, n_train=args.n_train, n_test=args.n_test,
                                     size=args.size, seed=args.seed, overwrite=args.overwrite,
                                     background=args.background,
                                     progress=True)
    print(f'wrote {sum(summary["counts"].values())} images to {args.root}')


if __name__ == '__main__':
    main()
