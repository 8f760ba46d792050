"""Cityscapes mIoU as gan-compression measures it (Table 3's Cityscapes rows), kept apart from Table 1's
DRN-D-22 scores (evaluation/cityscapes.py).

Each translated photo (`fake_B/<name>.png`, 256x256, from `--direction BtoA` on the aligned Cityscapes set)
is standardised with the Cityscapes mean and std and segmented by DRN-D-105 (`drn-d-105_ms_cityscapes.pth`)
at its own size; the 19 class scores are upsampled bilinearly to the size of the original gtFine
`*_gtFine_trainIds.png` label (2048x1024, the size gan-compression hard-codes) and the argmax is compared with
that label, 255 (and any id >= 19) ignored. One confusion matrix C over the whole set (rows: label, columns:
prediction) gives

    mIoU = 100 · nanmean_c C_cc / (Σ_j C_cj + Σ_j C_jc − C_cc)

the mean over classes present in the labels or the predictions (gan-compression's `per_class_iu` and
`np.nanmean`; it prints the value rounded to 2 decimals). A photo finds its label through the table that
`datasets/prepare_cityscapes_dataset.py --aligned --tables` writes (`<index> <gtFine trainIds path> <leftImg8bit
path>`, relative to the Cityscapes root): the line whose index is the photo's name, else the first whose photo
path (without `.png`) ends with it, gan-compression's rule.

    python -m evaluation.miou results/city_teacher/val_latest --table database/cityscapes/val_table.txt \\
        --cityscapes-root database/cityscapes-origin --drn-weights drn-d-105_ms_cityscapes.pth
"""
import argparse
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from tqdm import tqdm

from evaluation.cityscapes import CLASS_NAMES, confusion_matrix, normalize, segmentation_scores
from evaluation.common import (EvaluationError, check_whole_test_set, cli, default_device, emit, image_files, images_dir,
                               run_metadata)
from evaluation.drn import NUM_CLASSES, DRNSeg, pretrained_drn

IGNORE_LABEL = 255
FULL_SIZE = (1024, 2048)  # (height, width) of the gtFine labels
DRN_STRIDE = 8  # DRN-D's output stride: its class scores are computed on a grid 8 times coarser than the photo


def read_table(path):
    """[(index, label path, photo path)] of a gan-compression mapping table, in file order."""
    path = Path(path)
    if not path.is_file():
        raise EvaluationError(f'mapping table {path} not found: write it with datasets/prepare_cityscapes_dataset.py '
                              '--aligned --tables (val_table.txt for the 500 val images)')
    rows = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        fields = line.split()
        if len(fields) != 3:
            raise EvaluationError(f'{path}:{number}: expected "<index> <label path> <photo path>", got {line!r}')
        rows.append(tuple(fields))
    if not rows:
        raise EvaluationError(f'mapping table {path} is empty')
    return rows


def match_labels(names, table):
    """The label path (as the table writes it) of each image name, by gan-compression's rule."""
    by_index = {}
    for index, label, _ in table:
        by_index.setdefault(index, label)
    labels = []
    for name in names:
        label = by_index.get(name)
        if label is None:
            label = next((lab for _, lab, photo in table if photo[:-len('.png')].endswith(name)), None)
        if label is None:
            raise EvaluationError(f'image {name!r} has no line in the mapping table (matched by index, or by the end '
                                  'of the photo path); was the table written for this split?')
        labels.append(label)
    return labels


def read_train_ids(path):
    """(H, W) int64 train ids of a *_gtFine_trainIds.png; a colour map or raw label ids is an error."""
    path = Path(path)
    if not path.is_file():
        raise EvaluationError(f'label {path} not found: --cityscapes-root must hold gtFine/<split>/<city>/ with the '
                              '*_gtFine_trainIds.png maps (datasets/prepare_cityscapes_dataset.py --trainIds)')
    with Image.open(path) as image:
        ids = np.asarray(image)
    if ids.ndim != 2:
        raise EvaluationError(f'{path} has {ids.shape[-1]} channels: expected a one-channel *_gtFine_trainIds.png')
    ids = ids.astype(np.int64)
    bad = np.unique(ids[(ids >= NUM_CLASSES) & (ids != IGNORE_LABEL)])
    if bad.size:
        raise EvaluationError(f'{path} holds ids {bad[:5].tolist()} outside 0..{NUM_CLASSES - 1} and '
                              f'{IGNORE_LABEL}: a *_labelIds.png map? convert it to train ids')
    return ids


def read_photo(path):
    with Image.open(path) as image:
        return np.asarray(image.convert('RGB'))


def output_stride(model):
    """The stride of a segmenter's score grid: DRN-D's 8, else the model's `output_stride` (1 when unset)."""
    return DRN_STRIDE if isinstance(model, DRNSeg) else getattr(model, 'output_stride', 1)


def check_label_size(photo_shape, label_shape, stride, photo, label):
    """Refuse a label that cannot be the photo's: its aspect must be the photo's or that of the Cityscapes frames
    (2:1 labels of the square 256x256 photos), and each side at least the network's output stride."""
    (h, w), (H, W) = photo_shape[:2], label_shape
    aspects = {'the photo': w / h, 'the Cityscapes frames': FULL_SIZE[1] / FULL_SIZE[0]}
    if not any(abs(W / H - a) <= 0.02 * a for a in aspects.values()):
        raise EvaluationError(f'label {label} is {W}x{H}, photo {photo} {w}x{h}: the label has neither the aspect of '
                              'the photo nor that of the Cityscapes frames (2:1); was it written for these images?')
    if min(H, W) < stride:
        raise EvaluationError(f'label {label} is {W}x{H}, below the segmenter\'s output stride {stride} (it scores '
                              f'{stride}x{stride} px cells): use the full-size gtFine labels '
                              f'({FULL_SIZE[1]}x{FULL_SIZE[0]})')


@torch.no_grad()
def predict_full_size(model, photos, size, device):
    """DRN class ids (B, H, W) of (h, w, 3) uint8 photos, the scores upsampled bilinearly to `size` = (H, W)."""
    scores = model(normalize(photos).to(device))  # (B, 19, h, w)
    scores = F.interpolate(scores.float(), size=size, mode='bilinear', align_corners=False)  # (B, 19, H, W)
    return scores.argmax(1).cpu().numpy()


def evaluate_pairs(pairs, model, *, device='cpu', batch_size=1):
    """Confusion matrix of [(photo path, label path)]: photos in batches of one size, each at its label's size."""
    cm = np.zeros((NUM_CLASSES, NUM_CLASSES), dtype=np.int64)
    sizes = set()
    for start in tqdm(range(0, len(pairs), batch_size), desc='DRN-D-105 mIoU', unit='batch', file=sys.stderr):
        chunk = pairs[start:start + batch_size]
        photos = [read_photo(photo) for photo, _ in chunk]
        labels = [read_train_ids(label) for _, label in chunk]
        shapes = {p.shape for p in photos} | {('label',) + l.shape for l in labels}
        if len(shapes) != 2:
            raise EvaluationError(f'images {[str(p) for p, _ in chunk]} or their labels differ in size; use '
                                  '--batch-size 1 or one size')
        size = labels[0].shape
        for (photo_path, label_path), photo, label in zip(chunk, photos, labels):
            check_label_size(photo.shape, label.shape, output_stride(model), photo_path, label_path)
        sizes.add(size)
        for pred, label in zip(predict_full_size(model, photos, size, device), labels):
            cm += confusion_matrix(label, pred)
    return cm, sorted(sizes)


def miou_scores(cm):
    """mIoU (×100, over classes present in labels or predictions) and the per-class IoU of a confusion matrix."""
    scores = segmentation_scores(cm)
    return {'mIoU': scores['mAP'], 'per_class_iou': scores['per_class_iou'], 'pixAcc': scores['pixAcc']}


def evaluate_miou(fake_dir, table_path, cityscapes_root, model, *, device='cpu', batch_size=1, expect_count=None):
    """gan-compression's Cityscapes mIoU of the translated photos in `fake_dir`."""
    photos = image_files(fake_dir)
    if expect_count is not None and len(photos) != expect_count:
        raise EvaluationError(f'{fake_dir} holds {len(photos)} images, expected {expect_count}')
    labels = match_labels([p.stem for p in photos], read_table(table_path))
    pairs = [(photo, Path(cityscapes_root) / label) for photo, label in zip(photos, labels)]
    cm, sizes = evaluate_pairs(pairs, model, device=device, batch_size=batch_size)
    if cm.sum() == 0:
        raise EvaluationError('no labelled pixels: every label pixel is 255 (ignore)')
    return {'kind': 'cityscapes_miou', 'metrics': miou_scores(cm), 'confusion_matrix': cm.tolist(),
            'num_images': len(pairs), 'fake_dir': str(fake_dir), 'table': str(table_path),
            'cityscapes_root': str(cityscapes_root), 'label_sizes': [list(s) for s in sizes],
            'classes': list(CLASS_NAMES)}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('results', help='a test.py result folder holding images/fake_B, or a folder of photos')
    parser.add_argument('--table', required=True, help='val_table.txt (or train_table.txt for the search split)')
    parser.add_argument('--cityscapes-root', required=True,
                        help='the folder holding gtFine/ (and leftImg8bit/), the paths of the table are relative to it')
    parser.add_argument('--drn-weights', required=True, help='drn-d-105_ms_cityscapes.pth')
    parser.add_argument('--batch-size', type=int, default=1)
    parser.add_argument('--device', default=None, help='cuda, cuda:0 or cpu (default: cuda when available)')
    parser.add_argument('--expect-count', type=int, default=None, help='fail unless there are this many images '
                        '(500 for the val split)')
    parser.add_argument('--json', default=None, help='write the result here (default: RESULTS/metrics_miou.json)')
    parser.add_argument('--run', default=None)
    parser.add_argument('--method', default=None)
    parser.add_argument('--allow-partial', action='store_true',
                        help='score a test.py folder that translated only part of the test split (results.json)')
    args = parser.parse_args(argv)
    if args.batch_size < 1:
        parser.error(f'--batch-size must be >= 1, got {args.batch_size}')
    fake_dir = images_dir(args.results, 'fake_B')
    check_whole_test_set(fake_dir, args.allow_partial)  # before the DRN weights are loaded
    device = args.device or default_device()
    model = pretrained_drn(args.drn_weights, device=device, arch='drn_d_105')
    result = evaluate_miou(fake_dir, args.table, args.cityscapes_root, model, device=device,
                           batch_size=args.batch_size, expect_count=args.expect_count)
    result.update(run_metadata(fake_dir, run=args.run, method=args.method, dataset='cityscapes'))
    result['weights'] = str(args.drn_weights)
    emit(result, args.json or Path(args.results) / 'metrics_miou.json')


if __name__ == '__main__':
    sys.exit(cli(main))
