#!/usr/bin/env python
"""Turn the official Cityscapes release into a CUT unpaired dataset (trainA/trainB/testA/testB) or, with
--aligned, gan-compression's paired one (train/, val/) with the tables of its mIoU.

Download gtFine_trainvaltest.zip and leftImg8bit_trainvaltest.zip from
https://www.cityscapes-dataset.com (registration needed) and unzip them, then

    python datasets/prepare_cityscapes_dataset.py --gtFine_dir gtFine --leftImg8bit_dir leftImg8bit \\
        --output_dir datasets/cityscapes

As CUT's script: the `train` split becomes trainA (photos, leftImg8bit) and trainB (colour label
maps, *_gtFine_color.png), the `val` split (500 images) becomes testA/testB; images are resized
(bicubic, Pillow's default filter) to 256x256 and saved as JPEG (quality 100, no chroma
subsampling) as <i>_A.jpg / <i>_B.jpg, i numbering the images sorted by city and name. --size
256x128 keeps the 2:1 aspect ratio instead. Photos and label maps are paired by their Cityscapes
identifier (city_sequence_frame); <phase>_names.csv maps each number back to it. Label→photo
training and evaluation then use --direction BtoA.

For Table 3's pix2pix teacher and compression (gan-compression's datasets/prepare_cityscapes_dataset.py):

    python datasets/prepare_cityscapes_dataset.py --gtFine_dir cityscapes-origin/gtFine \\
        --leftImg8bit_dir cityscapes-origin/leftImg8bit --output_dir database/cityscapes --aligned --tables --trainIds

--aligned writes <split>/<i>.jpg, the photo (A) and the label map (B) side by side, for --dataset_mode aligned
(--phase val at test time). --tables writes <split>_table.txt, one line `<i> <label> <photo>` per image with
the *_gtFine_trainIds.png label and the photo relative to the folder holding gtFine/ and leftImg8bit/ (the
--cityscapes-root of evaluation/miou.py). --trainIds first writes each missing *_gtFine_trainIds.png from its
*_gtFine_labelIds.png (the release holds only the latter) with the Cityscapes id -> train id table.
"""
import argparse
import csv
import os
import sys
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

PHASES = {'train': 'train', 'val': 'test'}  # Cityscapes split -> CUT phase
LABEL_SUFFIX = '_gtFine_color.png'
PHOTO_SUFFIX = '_leftImg8bit.png'
LABEL_IDS_SUFFIX = '_gtFine_labelIds.png'
TRAIN_IDS_SUFFIX = '_gtFine_trainIds.png'
# Cityscapes label id -> train id of the 19 evaluated classes (cityscapesScripts' labels.py); every other id
# (void, parking, rail track, guard rail, bridge, tunnel, polegroup, caravan, trailer, ...) is 255
TRAIN_IDS = {7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10, 24: 11, 25: 12, 26: 13,
             27: 14, 28: 15, 31: 16, 32: 17, 33: 18}
IGNORE_TRAIN_ID = 255


class LayoutError(ValueError):
    """The Cityscapes folders do not have the official layout; the message says what is wrong."""


def _split_dir(root, split, kind):
    folder = Path(root) / split
    if folder.is_dir():
        return folder
    hint = ''
    if (Path(root) / kind / split).is_dir():
        hint = f'; did you mean {Path(root) / kind}?'
    raise LayoutError(f'{folder} does not exist: the {kind} folder must hold {split}/<city>/...{hint}')


def find_files(root, split, suffix, kind):
    """{identifier: path} of `<root>/<split>/<city>/<identifier><suffix>`."""
    files = {p.name[:-len(suffix)]: p for p in sorted(_split_dir(root, split, kind).glob(f'*/*{suffix}'))}
    if not files:
        raise LayoutError(f'no {split}/<city>/*{suffix} files under {root}')
    return files


def find_pairs(gtfine_dir, leftimg8bit_dir, split):
    """[(identifier, photo, label map)] sorted by city and name; any unmatched file is an error."""
    labels = find_files(gtfine_dir, split, LABEL_SUFFIX, 'gtFine')
    photos = find_files(leftimg8bit_dir, split, PHOTO_SUFFIX, 'leftImg8bit')
    if labels.keys() != photos.keys():
        only_labels, only_photos = sorted(labels.keys() - photos.keys()), sorted(photos.keys() - labels.keys())
        raise LayoutError(f'{split}: {len(labels)} label maps and {len(photos)} photos do not pair up: '
                          f'{len(only_labels)} labels without photo (e.g. {only_labels[:3]}), '
                          f'{len(only_photos)} photos without label (e.g. {only_photos[:3]})')
    return sorted(((key, photos[key], labels[key]) for key in labels),
                  key=lambda pair: (pair[1].parent.name, pair[1].name))


def parse_size(text):
    width, sep, height = text.lower().partition('x')
    if not sep or not width.isdigit() or not height.isdigit():
        raise argparse.ArgumentTypeError(f'size must be WIDTHxHEIGHT, e.g. 256x256, got {text!r}')
    return int(width), int(height)


def save_resized(src, dst, size):
    with Image.open(src) as image:
        image.convert('RGB').resize(size, Image.BICUBIC).save(dst, format='JPEG', quality=100, subsampling=0)


def prepare_split(gtfine_dir, leftimg8bit_dir, output_dir, split, *, size=(256, 256)):
    """Write <phase>A/<i>_A.jpg, <phase>B/<i>_B.jpg and <phase>_names.csv for one Cityscapes split."""
    pairs = find_pairs(gtfine_dir, leftimg8bit_dir, split)
    phase = PHASES[split]
    folder_a, folder_b = Path(output_dir) / f'{phase}A', Path(output_dir) / f'{phase}B'
    for folder in (folder_a, folder_b):
        if folder.is_dir() and any(folder.iterdir()):
            raise LayoutError(f'{folder} is not empty; remove it or choose another --output_dir')
        folder.mkdir(parents=True, exist_ok=True)
    with open(Path(output_dir) / f'{phase}_names.csv', 'w', newline='') as f:
        writer = csv.writer(f)
        writer.writerow(['index', 'cityscapes_id', 'photo', 'label'])
        for i, (key, photo, label) in enumerate(tqdm(pairs, desc=f'{split} -> {phase}A/{phase}B', unit='image')):
            save_resized(photo, folder_a / f'{i}_A.jpg', size)
            save_resized(label, folder_b / f'{i}_B.jpg', size)
            writer.writerow([i, key, photo.name, label.name])
    return len(pairs)


def label_ids_to_train_ids(ids):
    """(H, W) Cityscapes label ids -> train ids (0..18, 255 elsewhere), uint8."""
    lookup = np.full(256, IGNORE_TRAIN_ID, dtype=np.uint8)
    for label_id, train_id in TRAIN_IDS.items():
        lookup[label_id] = train_id
    return lookup[np.asarray(ids, dtype=np.uint8)]


def write_train_ids(gtfine_dir, split):
    """Write <id>_gtFine_trainIds.png beside each <id>_gtFine_labelIds.png of a split that lacks one;
    returns how many were written."""
    written = 0
    for path in tqdm(sorted(_split_dir(gtfine_dir, split, 'gtFine').glob(f'*/*{LABEL_IDS_SUFFIX}')),
                     desc=f'{split} trainIds', unit='image'):
        target = path.with_name(path.name[:-len(LABEL_IDS_SUFFIX)] + TRAIN_IDS_SUFFIX)
        if target.exists():
            continue
        with Image.open(path) as image:
            train_ids = label_ids_to_train_ids(image)
        tmp = target.with_name(target.name + '.tmp.png')
        Image.fromarray(train_ids).save(tmp)
        os.replace(tmp, target)
        written += 1
    return written


def prepare_aligned_split(gtfine_dir, leftimg8bit_dir, output_dir, split, *, size=(256, 256), table=False):
    """gan-compression's layout for one split: <split>/<i>.jpg = [photo | label map] and, with `table`,
    <split>_table.txt mapping i to the trainIds label and the photo."""
    pairs = find_pairs(gtfine_dir, leftimg8bit_dir, split)
    folder = Path(output_dir) / split
    if folder.is_dir() and any(folder.iterdir()):
        raise LayoutError(f'{folder} is not empty; remove it or choose another --output_dir')
    folder.mkdir(parents=True, exist_ok=True)
    label_root = Path(gtfine_dir).resolve().parent
    photo_root = Path(leftimg8bit_dir).resolve().parent
    lines = []
    for i, (key, photo, label) in enumerate(tqdm(pairs, desc=f'{split} -> {split}/', unit='image')):
        pair = Image.new('RGB', (2 * size[0], size[1]))
        for offset, src in ((0, photo), (size[0], label)):
            with Image.open(src) as image:
                pair.paste(image.convert('RGB').resize(size, Image.BICUBIC), (offset, 0))
        pair.save(folder / f'{i}.jpg', format='JPEG', quality=100, subsampling=0)
        train_ids = label.with_name(key + TRAIN_IDS_SUFFIX).resolve()
        lines.append(f'{i} {train_ids.relative_to(label_root).as_posix()} '
                     f'{photo.resolve().relative_to(photo_root).as_posix()}')
    if table:
        missing = [line.split()[1] for line in lines if not (label_root / line.split()[1]).is_file()]
        if missing:
            print(f'warning: {len(missing)} trainIds labels of the {split} table do not exist yet (e.g. '
                  f'{missing[0]}); write them with --trainIds', file=sys.stderr)
        path = Path(output_dir) / f'{split}_table.txt'
        tmp = path.with_name(path.name + '.tmp')
        tmp.write_text('\n'.join(lines) + '\n')
        os.replace(tmp, path)
    return len(pairs)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--gtFine_dir', required=True, help='the unzipped gtFine folder (holds train/, val/)')
    parser.add_argument('--leftImg8bit_dir', required=True, help='the unzipped leftImg8bit folder')
    parser.add_argument('--output_dir', required=True, help='e.g. ./datasets/cityscapes')
    parser.add_argument('--size', type=parse_size, default=(256, 256), help="WIDTHxHEIGHT (CUT's 256x256)")
    parser.add_argument('--splits', nargs='+', default=['val', 'train'], choices=sorted(PHASES))
    parser.add_argument('--aligned', action='store_true',
                        help="gan-compression's paired layout <split>/<i>.jpg (photo | label map) instead of CUT's")
    parser.add_argument('--tables', action='store_true',
                        help='with --aligned: write <split>_table.txt for evaluation/miou.py (gan-compression\'s '
                             'val_table.txt / train_table.txt)')
    parser.add_argument('--trainIds', action='store_true',
                        help='first write the missing *_gtFine_trainIds.png from the *_gtFine_labelIds.png maps')
    args = parser.parse_args(argv)
    if args.tables and not args.aligned:
        parser.error('--tables maps the numbered images of --aligned back to Cityscapes: give --aligned too')
    try:
        for split in args.splits:
            if args.trainIds:
                count = write_train_ids(args.gtFine_dir, split)
                print(f'{split}: {count} trainIds labels written', file=sys.stderr)
            if args.aligned:
                count = prepare_aligned_split(args.gtFine_dir, args.leftImg8bit_dir, args.output_dir, split,
                                              size=args.size, table=args.tables)
                print(f'{split}: {count} pairs -> {Path(args.output_dir) / split}', file=sys.stderr)
                continue
            count = prepare_split(args.gtFine_dir, args.leftImg8bit_dir, args.output_dir, split, size=args.size)
            print(f'{split}: {count} pairs -> {Path(args.output_dir) / PHASES[split]}A, B', file=sys.stderr)
    except LayoutError as exc:
        print(f'error: {exc}', file=sys.stderr)
        return 2
    return 0


if __name__ == '__main__':
    sys.exit(main())
