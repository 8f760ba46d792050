"""Tests for datasets/prepare_cityscapes_dataset.py and datasets/download_cut_dataset.sh.

Neither can reach its real input here (Cityscapes needs a registration, the CycleGAN server the
internet): the preparation runs on a generated tree with the official gtFine/leftImg8bit layout,
the download on a file:// mirror (CUT_DATASETS_MIRROR) holding generated archives.
"""
import csv
import os
import re
import subprocess
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import load_script

REPO = Path(__file__).resolve().parents[1]
DOWNLOAD = REPO / 'datasets' / 'download_cut_dataset.sh'

prepare = load_script('datasets/prepare_cityscapes_dataset.py')

SPLITS = {'train': {'zurich': 2, 'aachen': 2}, 'val': {'lindau': 2, 'frankfurt': 1}}


def _color(i):
    return (20 * i + 10, 255 - 20 * i, 100)


def _cityscapes_tree(root):
    """gtFine/ and leftImg8bit/ as the official zips unpack, with tiny 2:1 images."""
    index = 0
    for split, cities in SPLITS.items():
        for city, count in cities.items():
            for frame in range(count):
                key = f'{city}_000000_{frame:06d}'
                gt, photo = root / 'gtFine' / split / city, root / 'leftImg8bit' / split / city
                gt.mkdir(parents=True, exist_ok=True)
                photo.mkdir(parents=True, exist_ok=True)
                Image.new('RGB', (64, 32), _color(index)).save(gt / f'{key}_gtFine_color.png')
                Image.new('L', (64, 32)).save(gt / f'{key}_gtFine_labelIds.png')
                (gt / f'{key}_gtFine_polygons.json').write_text('{}')
                Image.new('RGB', (64, 32), _color(index)[::-1]).save(photo / f'{key}_leftImg8bit.png')
                index += 1
    return root / 'gtFine', root / 'leftImg8bit'


def test_prepare_cityscapes_layout_and_pairing(tmp_path):
    gtfine, leftimg = _cityscapes_tree(tmp_path / 'raw')
    out = tmp_path / 'cityscapes'
    assert prepare.main(['--gtFine_dir', str(gtfine), '--leftImg8bit_dir', str(leftimg),
                         '--output_dir', str(out)]) == 0
    for phase, count in (('train', 4), ('test', 3)):
        assert sorted(p.name for p in (out / f'{phase}A').iterdir()) == [f'{i}_A.jpg' for i in range(count)]
        assert sorted(p.name for p in (out / f'{phase}B').iterdir()) == [f'{i}_B.jpg' for i in range(count)]
    names = list(csv.DictReader((out / 'test_names.csv').open()))
    assert [n['cityscapes_id'] for n in names] == ['frankfurt_000000_000000', 'lindau_000000_000000',
                                                   'lindau_000000_000001']
    # frankfurt_000000_000000 is image 4 of the tree: its photo and label colours land in 0_A / 0_B.
    photo, label = Image.open(out / 'testA' / '0_A.jpg'), Image.open(out / 'testB' / '0_B.jpg')
    assert photo.size == label.size == (256, 256)
    np.testing.assert_allclose(np.asarray(label)[128, 128], _color(6), atol=3)
    np.testing.assert_allclose(np.asarray(photo)[128, 128], _color(6)[::-1], atol=3)


def test_prepare_cityscapes_size_option(tmp_path):
    gtfine, leftimg = _cityscapes_tree(tmp_path / 'raw')
    prepare.main(['--gtFine_dir', str(gtfine), '--leftImg8bit_dir', str(leftimg), '--output_dir',
                  str(tmp_path / 'out'), '--size', '256x128', '--splits', 'val'])
    assert Image.open(tmp_path / 'out' / 'testB' / '2_B.jpg').size == (256, 128)
    assert not (tmp_path / 'out' / 'trainA').exists()


@pytest.mark.parametrize('case, message', [
    ('parent_folder', r'raw/gtFine/val does not exist.*did you mean .*raw/gtFine/gtFine\?'),
    ('missing_photo', r"1 labels without photo \(e.g. \['lindau_000000_000001'\]\)"),
    ('no_labels', r'no val/<city>/\*_gtFine_color.png files'),
    ('output_not_empty', 'testA is not empty'),
])
def test_prepare_cityscapes_wrong_layout(tmp_path, capsys, case, message):
    gtfine, leftimg = _cityscapes_tree(tmp_path / 'raw' / 'gtFine' if case == 'parent_folder' else tmp_path / 'raw')
    out = tmp_path / 'out'
    if case == 'parent_folder':
        gtfine = tmp_path / 'raw' / 'gtFine'
    elif case == 'missing_photo':
        (leftimg / 'val' / 'lindau' / 'lindau_000000_000001_leftImg8bit.png').unlink()
    elif case == 'no_labels':
        for path in (gtfine / 'val').glob('*/*_color.png'):
            path.unlink()
    else:
        (out / 'testA').mkdir(parents=True)
        (out / 'testA' / 'old.jpg').touch()
    assert prepare.main(['--gtFine_dir', str(gtfine), '--leftImg8bit_dir', str(leftimg),
                         '--output_dir', str(out)]) == 2
    stderr = capsys.readouterr().err
    assert re.search(message, stderr), stderr


def _download(name, root, mirror):
    env = {**os.environ, 'CUT_DATASETS_MIRROR': f'file://{mirror}'}
    return subprocess.run(['bash', str(DOWNLOAD), name, str(root)], capture_output=True, text=True, env=env)


def _zip_dataset(mirror, name, splits):
    path = mirror / 'cyclegan' / 'datasets' / f'{name}.zip'
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, 'w') as archive:
        for split in splits:
            for i in range(2):
                archive.writestr(f'{name}/{split}/{i}.jpg', b'jpeg bytes')


def test_download_unpaired_dataset(tmp_path):
    mirror = tmp_path / 'mirror'
    _zip_dataset(mirror, 'horse2zebra', ['trainA', 'trainB', 'testA', 'testB'])
    done = _download('horse2zebra', tmp_path / 'datasets', mirror)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(tmp_path / 'datasets' / 'horse2zebra')
    assert sorted(p.name for p in (tmp_path / 'datasets' / 'horse2zebra').iterdir()) == \
        ['testA', 'testB', 'trainA', 'trainB']
    assert 'testB: 2 images' in done.stderr
    assert sorted(p.name for p in (tmp_path / 'datasets').iterdir()) == ['horse2zebra']  # no archive left

    again = _download('horse2zebra', tmp_path / 'datasets', mirror)
    assert again.returncode != 0 and 'already exists' in again.stderr


def test_download_cityscapes_validation_set(tmp_path):
    mirror = tmp_path / 'mirror'
    source = tmp_path / 'src' / 'cityscapes_val'
    for split in ('valA', 'valB'):
        (source / split).mkdir(parents=True)
        (source / split / '0.jpg').write_bytes(b'x')
    (mirror / 'CUT' / 'datasets').mkdir(parents=True)
    with tarfile.open(mirror / 'CUT' / 'datasets' / 'cityscapes_val_for_CUT.tar', 'w') as archive:
        archive.add(source, arcname='cityscapes_val')
    done = _download('cityscapes_val_for_CUT', tmp_path / 'datasets', mirror)
    assert done.returncode == 0, done.stderr
    dataroot = tmp_path / 'datasets' / 'cityscapes_val_for_CUT' / 'cityscapes_val'
    assert f'--dataroot {dataroot} --phase val --direction BtoA' in done.stderr


@pytest.mark.parametrize('name, message', [
    ('horse2cat', "unknown dataset 'horse2cat'"),
    ('cityscapes', 'register at https://www.cityscapes-dataset.com'),
    ('monet2photo', 'could not download'),
    ('maps', 'unexpected layout'),
    ('', 'usage:'),
])
def test_download_errors(tmp_path, name, message):
    mirror = tmp_path / 'mirror'
    _zip_dataset(mirror, 'maps', ['testA', 'testB'])
    done = _download(name, tmp_path / 'datasets', mirror)
    assert done.returncode != 0
    assert message in done.stderr


def _shim(folder, name, body):
    """A command `name` in `folder` (put first on PATH) running the shell `body`."""
    folder.mkdir(exist_ok=True)
    (folder / name).write_text('#!/bin/sh\n' + body)
    (folder / name).chmod(0o755)


@pytest.mark.parametrize('tool, body, message', [
    ('curl', 'prev=; for a; do [ "$prev" = --output ] && out=$a; prev=$a; done\n'
             'printf PK > "$out"; exit 56\n', 'could not download'),  # the connection drops after a few bytes
    ('unzip', 'dest=; prev=; for a; do [ "$prev" = -d ] && dest=$a; prev=$a; done\n'
              'mkdir -p "$dest/horse2zebra/trainA"; echo x > "$dest/horse2zebra/trainA/0.jpg"; exit 9\n',
     'not a readable zip archive'),  # the disk fills up half-way through unpacking
])
def test_a_download_that_fails_midway_leaves_no_dataset_folder(tmp_path, tool, body, message):
    mirror = tmp_path / 'mirror'
    _zip_dataset(mirror, 'horse2zebra', ['trainA', 'trainB', 'testA', 'testB'])
    _shim(tmp_path / 'bin', tool, body)
    env = {**os.environ, 'CUT_DATASETS_MIRROR': f'file://{mirror}', 'PATH': f'{tmp_path / "bin"}:{os.environ["PATH"]}'}
    done = subprocess.run(['bash', str(DOWNLOAD), 'horse2zebra', str(tmp_path / 'datasets')], capture_output=True,
                          text=True, env=env)
    assert done.returncode != 0 and message in done.stderr
    assert list((tmp_path / 'datasets').iterdir()) == []  # no horse2zebra/, no archive, no hidden partial folder
    # and the next try (the tools working again) downloads it whole
    (tmp_path / 'bin' / tool).unlink()
    done = subprocess.run(['bash', str(DOWNLOAD), 'horse2zebra', str(tmp_path / 'datasets')], capture_output=True,
                          text=True, env=env)
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in (tmp_path / 'datasets' / 'horse2zebra').iterdir()) == \
        ['testA', 'testB', 'trainA', 'trainB']
