#!/usr/bin/env python
"""Turn the official Cityscapes release into a CUT unpaired dataset: trainA/trainB/testA/testB.

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
"""
import argparse
import csv
import sys
from pathlib import Path

from PIL import Image
from tqdm import tqdm

PHASES = {'train': 'train', 'val': 'test'}  # Cityscapes split -> CUT phase
LABEL_SUFFIX = '_gtFine_color.png'
PHOTO_SUFFIX = '_leftImg8bit.png'


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


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--gtFine_dir', required=True, help='the unzipped gtFine folder (holds train/, val/)')
    parser.add_argument('--leftImg8bit_dir', required=True, help='the unzipped leftImg8bit folder')
    parser.add_argument('--output_dir', required=True, help='e.g. ./datasets/cityscapes')
    parser.add_argument('--size', type=parse_size, default=(256, 256), help="WIDTHxHEIGHT (CUT's 256x256)")
    parser.add_argument('--splits', nargs='+', default=['val', 'train'], choices=sorted(PHASES))
    args = parser.parse_args(argv)
    try:
        for split in args.splits:
            count = prepare_split(args.gtFine_dir, args.leftImg8bit_dir, args.output_dir, split, size=args.size)
            print(f'{split}: {count} pairs -> {Path(args.output_dir) / PHASES[split]}A, B', file=sys.stderr)
    except LayoutError as exc:
        print(f'error: {exc}', file=sys.stderr)
        return 2
    return 0


if __name__ == '__main__':
    sys.exit(main())
