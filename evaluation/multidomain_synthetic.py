"""Content preservation on the synthetic seasons dataset (datasets/make_multidomain_dataset.py): layout scores.

A translation into season <trg> keeps the scene when every region still shows its class in <trg>'s colours.
`layout_accuracy` removes the texture dots (a median filter as wide as a dot plus its neighbours), gives each
pixel the class of the nearest mean colour of <trg>'s palette (meta.json, rescaled per channel to fit the
image's brightness and tint), and returns the fraction of pixels whose class is the source layout's.
`mean_iou` averages the per-class IoU instead, so trees and houses count as much as the sky. On 64 px scenes
(tests/test_multidomain_data.py) the true rendering of the layout in <trg> scores about 0.99 accuracy and
0.89 mean IoU; another random scene rendered in <trg> about 0.73 and 0.31 (scenes share sky above field);
the untranslated source 0.01-0.79 accuracy depending on the season pair; a constant grey image about 0.13.

Translations are read from one folder per task, named after the source and target seasons:

    <results>/<src>2<trg>/<id>_<k>.png    output k (0, 1, ...) for the input val/<src>/<id>.png

(e.g. summer2winter/000003_0.png), scored against val_layout/<src>/<id>.png. Images of another size than the
layout are resized to it (bilinear). The result holds both scores per task (means over its images) and their
means over the tasks.

    python -m evaluation.multidomain_synthetic --data datasets/seasons --results results/seasons --json acc.json
"""
import argparse
import json
from pathlib import Path

import numpy as np
from PIL import Image
from scipy.ndimage import median_filter

from evaluation.common import EvaluationError, cli, emit, image_files

TASK_SEPARATOR = '2'
SCORES = ('layout_accuracy', 'mean_iou')
GAIN_REFINEMENTS = 2
GAIN_RANGE = (0.85, 1.15)  # the styles' brightness and tint stay within about +-10%


def load_meta(data_root):
    """The dataset's meta.json (seasons, classes, palettes) as a dict."""
    path = Path(data_root) / 'meta.json'
    if not path.is_file():
        raise EvaluationError(f'{path} not found: --data must be a dataset written by '
                              'datasets/make_multidomain_dataset.py')
    return json.loads(path.read_text())


def class_colors(meta, season):
    """(len(classes), 3) float array: the mean colour of each class of meta['classes'] in `season`."""
    if season not in meta['palettes']:
        raise EvaluationError(f'season {season!r} is not in the dataset; its seasons: {", ".join(meta["seasons"])}')
    return np.array([meta['palettes'][season][name] for name in meta['classes']])


def to_unit_rgb(image):
    """(H, W, 3) float64 in [0, 1] from a uint8 image or a float image in [-1, 1]."""
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3:
        raise EvaluationError(f'expected an (H, W, 3) image, got shape {image.shape}')
    if image.dtype == np.uint8:
        return image / 255.0
    if not np.issubdtype(image.dtype, np.floating):
        raise EvaluationError(f'expected a uint8 image or a float image in [-1, 1], got {image.dtype}')
    if image.min(initial=0) < -1.001 or image.max(initial=0) > 1.001:
        raise EvaluationError(f'a float image must lie in [-1, 1], got values in '
                              f'[{image.min():.3f}, {image.max():.3f}]')
    return (np.clip(image, -1, 1).astype(np.float64) + 1) / 2


def classify(image, colors, refinements=GAIN_REFINEMENTS):
    """(H, W) int labels: the nearest of `colors` (C, 3) to each pixel of the de-textured `image` (H, W, 3).

    The dataset's styles scale the palette per channel (brightness, time-of-day tint), so the colours are
    rescaled by the per-channel gain that best fits the image to its current labels, `refinements` times.
    """
    dot = max(1, round(max(image.shape[:2]) / 64))  # the dataset's texture dots are one pixel per 64 px
    smooth = median_filter(image, size=(2 * dot + 1, 2 * dot + 1, 1), mode='nearest')
    labels = _nearest(smooth, colors)
    for _ in range(refinements):
        fitted = colors[labels]  # (H, W, 3)
        gain = (smooth * fitted).sum(axis=(0, 1)) / np.maximum((fitted ** 2).sum(axis=(0, 1)), 1e-8)  # (3,)
        labels = _nearest(smooth, colors * np.clip(gain, *GAIN_RANGE))
    return labels


def _nearest(image, colors):
    distances = ((image[:, :, None, :] - colors[None, None]) ** 2).sum(axis=-1)  # (H, W, C)
    return distances.argmin(axis=-1)


def layout_accuracy(image, layout, season, meta):
    """Fraction of the pixels of `image` (a translation into `season`) whose class is `layout`'s (H, W)."""
    return layout_scores(image, layout, season, meta)['layout_accuracy']


def layout_scores(image, layout, season, meta):
    """{'layout_accuracy': see layout_accuracy, 'mean_iou': the mean over the classes present in `layout`
    of the IoU of their pixels with those classified as them (small regions such as trees count as much
    as the sky, so a wrong scene with the usual sky above the field scores lower than by accuracy)}."""
    layout = np.asarray(layout)
    rgb = to_unit_rgb(image)
    if rgb.shape[:2] != layout.shape:
        resized = Image.fromarray(np.rint(rgb * 255).astype(np.uint8)).resize(layout.shape[::-1], Image.BILINEAR)
        rgb = np.asarray(resized) / 255.0
    labels = classify(rgb, class_colors(meta, season))
    ious = [(((labels == c) & (layout == c)).sum() / ((labels == c) | (layout == c)).sum()) for c in np.unique(layout)]
    return {'layout_accuracy': float((labels == layout).mean()), 'mean_iou': float(np.mean(ious))}


def parse_task(name, seasons):
    """(src, trg) from a task folder name '<src>2<trg>'."""
    for src in seasons:
        for trg in seasons:
            if name == f'{src}{TASK_SEPARATOR}{trg}':
                return src, trg
    raise EvaluationError(f'results folder {name!r} is not named <src>{TASK_SEPARATOR}<trg> with seasons of the '
                          f'dataset ({", ".join(seasons)})')


def source_id(path):
    """'<id>' of a translation file '<id>_<k>.png'."""
    stem, sep, k = Path(path).stem.rpartition('_')
    if not sep or not stem or not k.isdigit():
        raise EvaluationError(f'{path}: a translation must be named <id>_<k>.png (k = output index)')
    return stem


def score_results(results, data_root):
    """{'tasks': {task: {'layout_accuracy', 'mean_iou', 'images'}}, the two scores' means over the tasks,
    'images': their total}."""
    results, data_root = Path(results), Path(data_root)
    meta = load_meta(data_root)
    if not results.is_dir():
        raise EvaluationError(f'--results {results} does not exist or is not a folder')
    folders = sorted(p for p in results.iterdir() if p.is_dir() and not p.name.startswith('.'))
    if not folders:
        raise EvaluationError(f'--results {results} holds no <src>{TASK_SEPARATOR}<trg> folders')
    tasks = {}
    for folder in folders:
        src, trg = parse_task(folder.name, meta['seasons'])
        scores = []
        for path in image_files(folder):
            layout_path = data_root / 'val_layout' / src / f'{source_id(path)}.png'
            if not layout_path.is_file():
                raise EvaluationError(f'{path}: no layout {layout_path} for its source image')
            with Image.open(layout_path) as layout, Image.open(path) as image:
                scores.append(layout_scores(np.asarray(image.convert('RGB')), np.asarray(layout), trg, meta))
        tasks[folder.name] = {key: float(np.mean([s[key] for s in scores])) for key in SCORES}
        tasks[folder.name]['images'] = len(scores)
    overall = {key: float(np.mean([t[key] for t in tasks.values()])) for key in SCORES}
    return {'tasks': tasks, **overall, 'images': sum(t['images'] for t in tasks.values()),
            'data': str(data_root), 'results': str(results)}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--data', required=True, help='the seasons dataset (meta.json, val_layout/)')
    ap.add_argument('--results', required=True, help='folder of <src>2<trg>/<id>_<k>.png translations')
    ap.add_argument('--json', default=None, help='also write the result here')
    args = ap.parse_args(argv)
    emit(score_results(args.results, args.data), args.json)


if __name__ == '__main__':
    raise SystemExit(cli(main))
