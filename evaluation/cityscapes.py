"""Cityscapes label→photo scores: DRN-D-22 segments the translated photos, compared with the input labels.

For each pair `fake_B/<n>.png` (translated photo) and `real_A/<n>.png` (the colour label map it was
made from, `--direction BtoA`), paired by name: the photo is resized to 256x128 (bicubic) and
segmented by the pretrained DRN-D-22; the label map is resized (nearest) and each pixel becomes the
class of the nearest palette colour (L1), black and anything nearer black being ignored. One 19x19
confusion matrix C (rows: label, columns: prediction) over all images gives

    mAP      = mean over classes present in label or prediction of C_ii / (Σ_j C_ij + Σ_j C_ji − C_ii)
    pixAcc   = Σ_i C_ii / Σ_ij C_ij          (ignore pixels excluded)
    classAcc = mean over classes present in the labels of C_ii / Σ_j C_ij

all ×100, as Hneg_SRC's get_mAP.py computes mAP. The numbers of Hneg_SRC's get_Acc.py, which differ (see
official_get_acc_scores and docs/evaluation.md), are added too (`--no-official-get-acc` leaves them out): the
paper's pixAcc/classAcc came from them.

    python -m evaluation.cityscapes results/city/test_latest --drn-weights drn_d_22_cityscapes.pth
"""
import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from evaluation.common import (EvaluationError, check_whole_test_set, cli, default_device, emit, image_files,
                               images_dir, run_metadata)
from evaluation.drn import CITYSCAPES_MEAN, CITYSCAPES_STD, NUM_CLASSES, pretrained_drn

CLASS_NAMES = ('road', 'sidewalk', 'building', 'wall', 'fence', 'pole', 'traffic_light', 'traffic_sign',
               'vegetation', 'terrain', 'sky', 'person', 'rider', 'car', 'truck', 'bus', 'train',
               'motorcycle', 'bicycle')
# RGB colours of the 19 Cityscapes train classes, then black for ignore (row IGNORE_ID).
PALETTE = np.array([
    [128, 64, 128], [244, 35, 232], [70, 70, 70], [102, 102, 156], [190, 153, 153], [153, 153, 153],
    [250, 170, 30], [220, 220, 0], [107, 142, 35], [152, 251, 152], [70, 130, 180], [220, 20, 60],
    [255, 0, 0], [0, 0, 142], [0, 0, 70], [0, 60, 100], [0, 80, 100], [0, 0, 230], [119, 11, 32],
    [0, 0, 0]], dtype=np.int64)
IGNORE_ID = NUM_CLASSES
EVAL_SIZE = (256, 128)  # (width, height), get_mAP.py's --w and --h
# get_Acc.py divides pixel counts by this, whatever the number and size of the images.
OFFICIAL_TOTAL_PIXELS = 128 * 256 * 500


# A label map has most pixels this close (L1) to a palette colour; a photo does not.
NEAR_PALETTE_L1 = 15
MIN_NEAR_PALETTE_FRACTION = 0.5


def palette_distances(image):
    """(H, W, 3) colours -> (H, W, 20) L1 distances to the PALETTE colours."""
    return np.abs(image.astype(np.int64)[:, :, None, :] - PALETTE[None, None]).sum(-1)


def colors_to_ids(image):
    """(H, W, 3) colours -> (H, W) ids of the nearest PALETTE colour in L1 (IGNORE_ID for black)."""
    return palette_distances(image).argmin(-1)


def confusion_matrix(label_ids, pred_ids, num_classes=NUM_CLASSES):
    """(num_classes, num_classes) counts, rows = label, columns = prediction; ids ≥ num_classes skipped."""
    label_ids, pred_ids = np.asarray(label_ids).ravel(), np.asarray(pred_ids).ravel()
    valid = (label_ids < num_classes) & (pred_ids < num_classes)
    return np.bincount(num_classes * label_ids[valid] + pred_ids[valid],
                       minlength=num_classes ** 2).reshape(num_classes, num_classes)


def segmentation_scores(cm):
    """mAP, pixAcc and classAcc (×100) of a confusion matrix, and the per-class IoU (None if absent)."""
    cm = np.asarray(cm, dtype=np.float64)
    if cm.sum() == 0:
        raise EvaluationError('no labelled pixels: every label pixel is ignore (black)')
    hits, label_totals, pred_totals = np.diag(cm), cm.sum(1), cm.sum(0)
    union = label_totals + pred_totals - hits
    iou = np.divide(hits, union, out=np.full_like(hits, np.nan), where=union > 0)
    class_acc = np.divide(hits, label_totals, out=np.full_like(hits, np.nan), where=label_totals > 0)
    return {
        'mAP': 100 * float(np.nanmean(iou)),
        'pixAcc': 100 * float(hits.sum() / cm.sum()),
        'classAcc': 100 * float(np.nanmean(class_acc)),
        'per_class_iou': {name: (None if np.isnan(v) else 100 * float(v)) for name, v in zip(CLASS_NAMES, iou)},
    }


def cv2_nearest_resize(image, size):
    """Resize like OpenCV's INTER_NEAREST (source index floor(i · src/dst)); size is (width, height)."""
    h, w = image.shape[:2]
    rows = np.minimum((np.arange(size[1]) * (h / size[1])).astype(np.int64), h - 1)
    cols = np.minimum((np.arange(size[0]) * (w / size[0])).astype(np.int64), w - 1)
    return image[rows][:, cols]


def official_confusion_matrix(label_rgb, pred_ids):
    """The confusion matrix get_Acc.py builds for one image.

    get_Acc.py reads the label map and the saved prediction colour map with cv2.imread, i.e. as
    BGR, and matches them against the RGB palette: both sides go through the same wrong colour
    mapping, which merges classes (wall→road, traffic light and sign→sky, …) and turns truck
    into ignore. The label is resized with cv2's nearest rule to the prediction size.
    """
    h, w = pred_ids.shape
    label_bgr = cv2_nearest_resize(label_rgb, (w, h))[:, :, ::-1]
    pred_bgr = PALETTE[pred_ids][:, :, ::-1]
    return confusion_matrix(colors_to_ids(label_bgr), colors_to_ids(pred_bgr))


def official_get_acc_scores(cm):
    """get_Acc.py's pixAcc, classAcc and mIoU (×100) of its confusion matrix, arithmetic included.

    pixAcc divides by OFFICIAL_TOTAL_PIXELS (128·256·500, counting ignore pixels and assuming 500
    images); classAcc and mIoU average over all 19 classes, absent ones counting as 0.
    """
    cm = np.asarray(cm, dtype=np.float64)
    hits, label_totals, pred_totals = np.diag(cm), cm.sum(1), cm.sum(0)
    return {
        'pixAcc': 100 * float(hits.sum() / OFFICIAL_TOTAL_PIXELS),
        'classAcc': 100 * float(np.sum(hits / (label_totals + 1e-12)) / NUM_CLASSES),
        'mIoU': 100 * float(np.sum(hits / (label_totals + pred_totals - hits + 1e-6)) / NUM_CLASSES),
    }


def paired_files(fake_dir, label_dir):
    """[(name, fake path, label path)] matched by file name without extension; loud on any mismatch."""
    def by_stem(folder):
        files = {}
        for path in image_files(folder):
            if path.stem in files:
                raise EvaluationError(f'{folder}: two images named {path.stem} ({files[path.stem].name}, {path.name})')
            files[path.stem] = path
        return files

    fakes, labels = by_stem(fake_dir), by_stem(label_dir)
    if fakes.keys() != labels.keys():
        only_fake, only_label = sorted(fakes.keys() - labels.keys()), sorted(labels.keys() - fakes.keys())
        raise EvaluationError(
            f'{fake_dir} ({len(fakes)} images) and {label_dir} ({len(labels)} images) do not pair by name: '
            f'{len(only_fake)} only in the first (e.g. {only_fake[:3]}), '
            f'{len(only_label)} only in the second (e.g. {only_label[:3]})')
    return [(name, fakes[name], labels[name]) for name in sorted(fakes)]


def load_pair(fake_path, label_path, size=EVAL_SIZE):
    """Photo as (H, W, 3) uint8 resized bicubic (as get_mAP.py) and label map as RGB at full size."""
    with Image.open(fake_path) as fake, Image.open(label_path) as label:
        if fake.size != label.size:
            raise EvaluationError(f'{fake_path} is {fake.size[0]}x{fake.size[1]} but its label {label_path} is '
                                  f'{label.size[0]}x{label.size[1]}; test.py writes both at one size')
        photo = np.asarray(fake.convert('RGB').resize(size, Image.BICUBIC))
        label_rgb = np.asarray(label.convert('RGB'))
    return photo, label_rgb


def label_ids(label_rgb, size=EVAL_SIZE, *, source='label map'):
    """Class ids of a colour label map resized (nearest) to `size`; an error if it looks like a photo."""
    distances = palette_distances(np.asarray(Image.fromarray(label_rgb).resize(size, Image.NEAREST)))
    near = float((distances.min(-1) <= NEAR_PALETTE_L1).mean())
    if near < MIN_NEAR_PALETTE_FRACTION:
        raise EvaluationError(f'{source} is not a Cityscapes colour label map (only {100 * near:.0f}% of its '
                              'pixels are near a palette colour); label→photo results need test.py '
                              '--direction BtoA, so that real_A holds the label maps')
    return distances.argmin(-1)


def normalize(photos):
    """(B, H, W, 3) uint8 -> (B, 3, H, W) float, standardised with the Cityscapes mean and std."""
    x = torch.from_numpy(np.stack(photos)).permute(0, 3, 1, 2).float() / 255.0
    mean = torch.tensor(CITYSCAPES_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(CITYSCAPES_STD).view(1, 3, 1, 1)
    return (x - mean) / std


@torch.no_grad()
def predict(model, photos, device):
    """DRN class ids (B, H, W) of a list of (H, W, 3) uint8 photos."""
    return model(normalize(photos).to(device)).argmax(1).cpu().numpy()


def evaluate_pairs(pairs, model, *, device='cpu', batch_size=8, size=EVAL_SIZE, official=False):
    """Scores of [(name, fake, label)] pairs; with `official`, get_Acc.py's numbers as well."""
    cm = np.zeros((NUM_CLASSES, NUM_CLASSES), dtype=np.int64)
    official_cm = np.zeros_like(cm)
    for start in tqdm(range(0, len(pairs), batch_size), desc='DRN-D-22', unit='batch', file=sys.stderr):
        chunk = pairs[start:start + batch_size]
        batch = [load_pair(fake, label, size) for _, fake, label in chunk]
        preds = predict(model, [photo for photo, _ in batch], device)
        for pred, (_, label_rgb), (_, _, label_path) in zip(preds, batch, chunk):
            cm += confusion_matrix(label_ids(label_rgb, size, source=label_path), pred)
            if official:
                official_cm += official_confusion_matrix(label_rgb, pred)
    result = {'metrics': segmentation_scores(cm), 'confusion_matrix': cm.tolist()}
    if official:
        result['official_get_acc'] = official_get_acc_scores(official_cm)
    return result


def evaluate_cityscapes(fake_dir, label_dir, model, *, device='cpu', batch_size=8, official=False,
                        expect_count=None):
    """DRN-D-22 scores of the translated photos in `fake_dir` against the label maps in `label_dir`."""
    pairs = paired_files(fake_dir, label_dir)
    if expect_count is not None and len(pairs) != expect_count:
        raise EvaluationError(f'{fake_dir} holds {len(pairs)} images, expected {expect_count}')
    result = evaluate_pairs(pairs, model, device=device, batch_size=batch_size, official=official)
    result.update(kind='cityscapes', fake_dir=str(fake_dir), label_dir=str(label_dir), num_images=len(pairs),
                  eval_size=list(EVAL_SIZE), classes=list(CLASS_NAMES))
    return result


def add_drn_args(parser):
    """Flags for the DRN-D-22 scores, shared with the sweep command."""
    parser.add_argument('--drn-weights', default=None, help='drn_d_22_cityscapes.pth (fyu/drn, Hneg_SRC)')
    parser.add_argument('--drn-batch-size', type=int, default=8)
    parser.add_argument('--official-get-acc', action=argparse.BooleanOptionalAction, default=True,
                        help="also report Hneg_SRC get_Acc.py's pixAcc/classAcc/mIoU arithmetic, the numbers "
                             "the paper's Tables 1 and 4 are comparable with")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('results', nargs='?', default=None,
                        help='a test.py result folder holding images/fake_B and images/real_A')
    parser.add_argument('--fake-dir', default=None, help='translated photos (default: RESULTS/images/fake_B)')
    parser.add_argument('--label-dir', default=None, help='colour label maps (default: RESULTS/images/real_A)')
    add_drn_args(parser)
    parser.add_argument('--device', default=None,
                        help='cuda, cuda:0 or cpu (default: the first GPU of $GPU_IDS, else cuda:0 when '
                             'available)')
    parser.add_argument('--expect-count', type=int, default=None, help='fail unless there are this many pairs')
    parser.add_argument('--allow-partial', action='store_true',
                        help="score a test.py folder that translated only part of its test set (its results.json "
                             "says how many of how many); refused by default")
    parser.add_argument('--json', default=None,
                        help='write the result here (default: RESULTS/metrics_cityscapes.json)')
    parser.add_argument('--run', default=None)
    parser.add_argument('--method', default=None)
    parser.add_argument('--epoch-choice', default=None, choices=('best', 'last', 'fixed'))
    args = parser.parse_args(argv)
    if args.results is None and (args.fake_dir is None or args.label_dir is None):
        parser.error('give a result folder, or both --fake-dir and --label-dir')
    if args.drn_weights is None:
        parser.error('--drn-weights is required (drn_d_22_cityscapes.pth)')

    fake_dir = Path(args.fake_dir) if args.fake_dir else images_dir(args.results, 'fake_B')
    label_dir = Path(args.label_dir) if args.label_dir else images_dir(args.results, 'real_A')
    check_whole_test_set(fake_dir, args.allow_partial)
    device = args.device or default_device()
    model = pretrained_drn(args.drn_weights, device=device)
    result = evaluate_cityscapes(fake_dir, label_dir, model, device=device, batch_size=args.drn_batch_size,
                                 official=args.official_get_acc, expect_count=args.expect_count)
    result.update(run_metadata(fake_dir, run=args.run, method=args.method, dataset='cityscapes',
                               epoch_choice=args.epoch_choice))
    result['weights'] = str(args.drn_weights)
    json_path = args.json or (Path(args.results) / 'metrics_cityscapes.json' if args.results else None)
    emit(result, json_path)


if __name__ == '__main__':
    sys.exit(cli(main))
