"""The data package: file discovery, image decoding, CUT's preprocessing, every dataset and the loader."""
import argparse
import random
import sys
import types

import numpy as np
import pytest
import torch
import torchvision.transforms as T
from PIL import Image

import data
from data.base_dataset import (PREPROCESS_MODES, PreprocessError, get_params, get_transform,
                               preprocess_steps)
from data.image_folder import ImageLoadError, is_image_file, load_image, make_dataset
from data.singleimage_dataset import CROPS_PER_EPOCH


def make_opt(dataroot, **overrides):
    opt = argparse.Namespace(
        dataroot=str(dataroot), phase='train', direction='AtoB', input_nc=3, output_nc=3,
        load_size=36, crop_size=32, preprocess='resize_and_crop', no_flip=False,
        serial_batches=False, batch_size=2, num_threads=0, max_dataset_size=float('inf'),
        isTrain=True, n_epochs=5, random_scale_max=3.0, dataset_mode='unaligned')
    for key, value in overrides.items():
        setattr(opt, key, value)
    return opt


def write_image(path, size=(40, 36), seed=0, mode='RGB'):
    path.parent.mkdir(parents=True, exist_ok=True)
    w, h = size
    pixels = np.random.default_rng(seed).integers(0, 256, size=(h, w, 3), dtype=np.uint8)
    Image.fromarray(pixels).convert(mode).save(path)
    return path


def random_pil(size=(50, 40), seed=0):
    w, h = size
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8))


@pytest.fixture
def unaligned_root(tmp_path):
    for i in range(5):
        write_image(tmp_path / 'trainA' / f'a{i}.png', seed=i)
    for i in range(3):
        write_image(tmp_path / 'trainB' / f'b{i}.png', seed=10 + i)
    for split in ('testA', 'testB'):
        for i in range(2):
            write_image(tmp_path / split / f'{i}.png', seed=20 + i)
    return tmp_path


def collect(loader):
    return [batch for batch in loader]


# ---------------------------------------------------------------- image_folder

def test_is_image_file_ignores_letter_case():
    for name in ('a.jpg', 'a.JPG', 'a.jpeg', 'a.PNG', 'a.ppm', 'a.bmp', 'a.tif', 'a.TIFF', 'a.webp'):
        assert is_image_file(name)
    for name in ('a.txt', 'a.png.txt', 'a.gif', 'png'):
        assert not is_image_file(name)


def test_make_dataset_is_recursive_sorted_and_truncated(tmp_path):
    names = ['z.png', 'b/c.JPG', 'a.png', 'b/a/d.webp', 'b/a/c.png']
    for name in names:
        write_image(tmp_path / name)
    (tmp_path / 'notes.txt').write_text('not an image')
    write_image(tmp_path / 'b' / '._hidden.png')
    expected = sorted(str(tmp_path / name) for name in names)
    assert make_dataset(str(tmp_path)) == expected
    assert make_dataset(str(tmp_path), max_dataset_size=2) == expected[:2]


def test_make_dataset_missing_folder_names_it(tmp_path):
    missing = tmp_path / 'nowhere'
    with pytest.raises(FileNotFoundError, match='nowhere'):
        make_dataset(str(missing))


def test_make_dataset_empty_folder_names_it_and_the_extensions(tmp_path):
    (tmp_path / 'empty').mkdir()
    (tmp_path / 'empty' / 'readme.txt').write_text('x')
    with pytest.raises(ValueError, match=r'empty.*\.png'):
        make_dataset(str(tmp_path / 'empty'))


@pytest.mark.parametrize('mode', ['L', 'LA', 'RGBA', 'P', '1', 'CMYK', 'I', 'F'])
def test_load_image_gives_rgb_for_every_mode(tmp_path, mode):
    path = write_image(tmp_path / ('x.tif' if mode in ('CMYK', 'F', 'I') else 'x.png'), mode=mode)
    img = load_image(str(path))
    assert img.mode == 'RGB' and img.size == (40, 36)


def test_load_image_keeps_gray_and_palette_values(tmp_path):
    gray = np.arange(256, dtype=np.uint8).reshape(16, 16)
    Image.fromarray(gray).save(tmp_path / 'g.png')
    assert (np.asarray(load_image(str(tmp_path / 'g.png'))) == gray[..., None]).all()
    rgb = np.asarray(random_pil(seed=3))
    palette = Image.fromarray(rgb).convert('P', palette=Image.Palette.ADAPTIVE)
    palette.info['transparency'] = 0
    palette.save(tmp_path / 'p.png')
    assert (np.asarray(load_image(str(tmp_path / 'p.png'))) == np.asarray(palette.convert('RGB'))).all()


@pytest.mark.parametrize('array_dtype, name', [(np.uint16, 'x.png'), (np.int32, 'x.tif')])
def test_load_image_rescales_16_bit_instead_of_clipping(tmp_path, array_dtype, name):
    values = np.array([[0, 257, 32768, 65535]], dtype=array_dtype)
    Image.fromarray(values).save(tmp_path / name)
    with Image.open(tmp_path / name) as img:
        assert img.mode == ('I;16' if array_dtype == np.uint16 else 'I')
    out = np.asarray(load_image(str(tmp_path / name)))[0, :, 0]
    assert out.tolist() == [0, 1, 128, 255]


def test_load_image_reads_float_images_on_the_8_bit_scale(tmp_path):
    values = np.array([[0.0, 1.4, 127.6, 300.0]], dtype=np.float32)
    Image.fromarray(values).save(tmp_path / 'f.tif')
    assert np.asarray(load_image(str(tmp_path / 'f.tif')))[0, :, 0].tolist() == [0, 1, 128, 255]


def _write_truncated_png(path):
    write_image(path.with_name('full.png'), size=(64, 64))
    content = path.with_name('full.png').read_bytes()
    path.write_bytes(content[:len(content) // 2])


@pytest.mark.parametrize('kind', ['zero_byte', 'garbage', 'text', 'truncated'])
def test_load_image_errors_name_the_file(tmp_path, kind):
    path = tmp_path / f'bad_{kind}.png'
    if kind == 'zero_byte':
        path.write_bytes(b'')
    elif kind == 'garbage':
        path.write_bytes(bytes(range(256)) * 4)
    elif kind == 'text':
        path.write_text('hello, I am not a picture\n')
    else:
        _write_truncated_png(path)
    with pytest.raises(ImageLoadError, match=f'bad_{kind}.png'):
        load_image(str(path))
    assert issubclass(ImageLoadError, ValueError)


# ---------------------------------------------------------------- preprocessing

@pytest.mark.parametrize('preprocess, shape', [
    ('resize_and_crop', (32, 32)),
    ('crop', (32, 32)),
    ('scale_width', (40, 48)),  # 50x40 -> 48x38, rounded to a multiple of 4
    ('scale_width_and_crop', (32, 32)),
    ('scale_shortside', (48, 60)),
    ('scale_shortside_and_crop', (32, 32)),
    ('resize', (48, 48)),
    ('zoom', None),
    ('patch', (32, 32)),
    ('zoom_and_patch', (32, 32)),
    ('none', (40, 48)),  # width 50 rounds to 48
])
@pytest.mark.parametrize('grayscale', [False, True])
def test_every_preprocess_mode_gives_the_expected_shape(preprocess, shape, grayscale):
    opt = make_opt('.', preprocess=preprocess, load_size=48, crop_size=32)
    out = get_transform(opt, grayscale=grayscale)(random_pil(size=(50, 40)))
    channels = 1 if grayscale else 3
    if shape is None:  # a random zoom in [0.8, 1]: at least crop_size, at most the input size
        assert out.shape[0] == channels and 32 <= out.shape[1] <= 40 and 32 <= out.shape[2] <= 52
    else:
        assert out.shape == (channels, *shape)
    assert out.dtype == torch.float32 and out.min() >= -1 and out.max() <= 1


def test_every_mode_listed_is_parsed():
    assert preprocess_steps('zoom_and_patch') == {'zoom', 'patch'}
    assert all(preprocess_steps(mode) for mode in PREPROCESS_MODES)


def test_unknown_preprocess_lists_the_valid_modes():
    with pytest.raises(ValueError, match='resize_and_crop.*zoom_and_patch'):
        get_transform(make_opt('.', preprocess='resize_and_rotate'))


def test_resize_and_crop_draws_like_cuts_torchvision_pipeline():
    """Same torch seed -> same crops and flips as CUT's Resize/RandomCrop/RandomHorizontalFlip."""
    opt = make_opt('.', load_size=40, crop_size=32)
    reference = T.Compose([
        T.Resize([40, 40], T.InterpolationMode.BICUBIC), T.RandomCrop(32), T.RandomHorizontalFlip(),
        T.ToTensor(), T.Normalize((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))])
    images = [random_pil(size=(50, 44), seed=s) for s in range(6)]
    torch.manual_seed(7)
    ours = [get_transform(opt)(img) for img in images]
    torch.manual_seed(7)
    theirs = [reference(img) for img in images]
    for a, b in zip(ours, theirs):
        assert torch.equal(a, b)


def test_params_fix_crop_and_flip():
    opt = make_opt('.', preprocess='crop', crop_size=32)
    img = random_pil(size=(50, 40))
    plain = get_transform(opt, {'crop_pos': (5, 3), 'flip': False})(img)
    flipped = get_transform(opt, {'crop_pos': (5, 3), 'flip': True})(img)
    expected = get_transform(make_opt('.', preprocess='none', no_flip=True))(img.crop((5, 3, 37, 35)))
    assert torch.equal(plain, expected)
    assert torch.equal(flipped, plain.flip(-1))
    no_flip = get_transform(make_opt('.', preprocess='crop', no_flip=True), {'crop_pos': (5, 3), 'flip': True})
    assert torch.equal(no_flip(img), plain)


def test_random_flip_happens_only_without_no_flip():
    img = random_pil(size=(32, 32))
    base = get_transform(make_opt('.', preprocess='none', no_flip=True))(img)
    torch.manual_seed(0)
    flips = [torch.equal(get_transform(make_opt('.', preprocess='none'))(img), base.flip(-1))
             for _ in range(20)]
    assert any(flips) and not all(flips)
    assert all(torch.equal(get_transform(make_opt('.', preprocess='none', no_flip=True))(img), base)
               for _ in range(5))


def test_get_params_is_seeded_by_python_random():
    opt = make_opt('.', preprocess='resize_and_crop', load_size=64, crop_size=32)
    random.seed(3)
    first = [get_params(opt, (80, 60)) for _ in range(5)]
    random.seed(3)
    assert first == [get_params(opt, (80, 60)) for _ in range(5)]
    assert all(0 <= p['crop_pos'][0] <= 32 and 0 <= p['crop_pos'][1] <= 32 for p in first)


def test_zoom_and_patch_follow_their_params():
    opt = make_opt('.', preprocess='zoom_and_patch', crop_size=16, no_flip=True)
    img = random_pil(size=(64, 48))
    random.seed(0)
    tile = get_transform(opt, {'scale_factor': (1.0, 1.0), 'patch_index': 4})(img)
    # a 64x48 image holds a 4x3 grid of 16px tiles with no slack; index 4 is column 1, row 1
    expected = get_transform(make_opt('.', preprocess='none', no_flip=True))(img.crop((16, 16, 32, 32)))
    assert torch.equal(tile, expected)


# ---------------------------------------------------------------- registry

def test_registry_lists_and_finds_every_dataset():
    names = data.available_datasets()
    assert names == ['aligned', 'multidomain', 'single', 'singleimage', 'template', 'unaligned']
    for name in names:
        cls = data.find_dataset_using_name(name)
        assert issubclass(cls, data.BaseDataset) and cls.__name__.lower() == name + 'dataset'
        parser = argparse.ArgumentParser()
        assert data.get_option_setter(name)(parser, is_train=True) is parser


def test_unknown_dataset_lists_the_valid_names():
    with pytest.raises(ValueError, match="'paired'.*aligned, multidomain, single, singleimage, template, unaligned"):
        data.find_dataset_using_name('paired')


def test_a_dataset_file_without_its_class_is_reported(monkeypatch):
    module = types.ModuleType('data.fake_dataset')
    module.__file__ = 'data/fake_dataset.py'
    module.FakeDatasetTypo = type('FakeDatasetTypo', (data.BaseDataset,), {})
    monkeypatch.setitem(sys.modules, 'data.fake_dataset', module)
    monkeypatch.setattr(data, 'available_datasets', lambda: ['fake'])
    with pytest.raises(TypeError, match=r"data/fake_dataset.py.*'fakedataset'"):
        data.find_dataset_using_name('fake')


# ---------------------------------------------------------------- unaligned

def test_unaligned_items_and_length(unaligned_root):
    dataset = data.create_dataset(make_opt(unaligned_root)).dataset
    assert len(dataset) == 5
    item = dataset[6]
    assert set(item) == {'A', 'B', 'A_paths', 'B_paths'}
    assert item['A'].shape == item['B'].shape == (3, 32, 32)
    assert item['A_paths'].endswith('trainA/a1.png') and '/trainB/' in item['B_paths']


def test_unaligned_serial_batches_fixes_the_b_image(unaligned_root):
    serial = data.create_dataset(make_opt(unaligned_root, serial_batches=True)).dataset
    assert [serial[i]['B_paths'][-6:] for i in range(4)] == ['b0.png', 'b1.png', 'b2.png', 'b0.png']
    shuffled = data.create_dataset(make_opt(unaligned_root)).dataset
    random.seed(0)
    assert len({shuffled[0]['B_paths'] for _ in range(20)}) > 1


@pytest.mark.parametrize('direction, channels', [('AtoB', (1, 3)), ('BtoA', (3, 1))])
def test_direction_decides_which_domain_gets_input_nc(unaligned_root, direction, channels):
    opt = make_opt(unaligned_root, direction=direction, input_nc=1, output_nc=3)
    item = data.create_dataset(opt).dataset[0]
    assert (item['A'].shape[0], item['B'].shape[0]) == channels
    assert '/trainA/' in item['A_paths']  # A stays domain A; the model swaps for BtoA


def test_unknown_direction_is_refused(unaligned_root):
    with pytest.raises(ValueError, match='AtoB, BtoA'):
        data.create_dataset(make_opt(unaligned_root, direction='AtoC'))


def test_unaligned_finetuning_crops_at_full_resolution(unaligned_root):
    opt = make_opt(unaligned_root, load_size=64, crop_size=32, no_flip=True, n_epochs=2)
    loader = data.create_dataset(opt)
    full = get_transform(make_opt('.', preprocess='resize', load_size=32, no_flip=True))(
        load_image(str(unaligned_root / 'trainA' / 'a0.png')))
    loader.set_epoch(2)
    torch.manual_seed(0)
    assert not torch.equal(loader.dataset[0]['A'], full)
    loader.set_epoch(3)
    assert loader.dataset.current_epoch == 3
    assert torch.equal(loader.dataset[0]['A'], full)


def test_test_phase_falls_back_to_val_folders(tmp_path):
    write_image(tmp_path / 'valA' / 'x.png')
    write_image(tmp_path / 'valB' / 'y.png')
    dataset = data.create_dataset(make_opt(tmp_path, phase='test', isTrain=False)).dataset
    assert dataset.A_paths[0].endswith('valA/x.png') and dataset.B_paths[0].endswith('valB/y.png')


def test_missing_or_empty_domain_folder_is_named(tmp_path):
    write_image(tmp_path / 'trainA' / 'x.png')
    with pytest.raises(FileNotFoundError, match='trainB'):
        data.create_dataset(make_opt(tmp_path))
    (tmp_path / 'trainB').mkdir()
    with pytest.raises(ValueError, match='trainB'):
        data.create_dataset(make_opt(tmp_path))


@pytest.mark.parametrize('preprocess, size', [
    ('crop', '20x40'), ('patch', '20x40'), ('resize_and_crop', '24x24')])
def test_image_smaller_than_crop_names_the_file(tmp_path, preprocess, size):
    write_image(tmp_path / 'trainA' / 'tiny.png', size=(20, 40))
    write_image(tmp_path / 'trainB' / 'fine.png', size=(40, 40))
    opt = make_opt(tmp_path, preprocess=preprocess, load_size=24, crop_size=32)
    with pytest.raises(PreprocessError, match=rf'tiny\.png.*{size}.*crop_size=32'):
        data.create_dataset(opt).dataset[0]


def test_corrupt_file_in_a_dataset_names_it(unaligned_root):
    (unaligned_root / 'trainA' / 'a9_broken.png').write_bytes(b'\x89PNG\r\n\x1a\n garbage')
    dataset = data.create_dataset(make_opt(unaligned_root)).dataset
    with pytest.raises(ValueError, match='a9_broken.png'):
        dataset[5]


# ---------------------------------------------------------------- loader

def test_loader_is_reproducible_with_seeds(unaligned_root):
    def run(seed):
        random.seed(seed)
        torch.manual_seed(seed)
        return [(b['A'], b['B'], b['A_paths'], b['B_paths'])
                for b in data.create_dataset(make_opt(unaligned_root))]
    first, again, other = run(1), run(1), run(2)
    for x, y in zip(first, again):
        assert torch.equal(x[0], y[0]) and torch.equal(x[1], y[1]) and x[2:] == y[2:]
    assert any(not torch.equal(x[0], y[0]) for x, y in zip(first, other))


def test_loader_batches_drop_last_and_serial_order(unaligned_root):
    train = data.create_dataset(make_opt(unaligned_root, serial_batches=True))
    batches = collect(train)
    assert len(train) == 5 and [len(b['A_paths']) for b in batches] == [2, 2]
    assert [p[-6:] for b in batches for p in b['A_paths']] == ['a0.png', 'a1.png', 'a2.png', 'a3.png']
    test = data.create_dataset(make_opt(unaligned_root, isTrain=False, serial_batches=True))
    assert [len(b['A_paths']) for b in collect(test)] == [2, 2, 1]


def test_max_dataset_size_limits_files_length_and_iteration(unaligned_root):
    loader = data.create_dataset(make_opt(unaligned_root, max_dataset_size=2, batch_size=1))
    assert len(loader.dataset.A_paths) == 2 and len(loader.dataset.B_paths) == 2
    assert len(loader) == 2 and len(collect(loader)) == 2


def test_iteration_stops_at_max_dataset_size(tmp_path):
    write_image(tmp_path / 'trainA' / 'a.png', size=(64, 64))
    write_image(tmp_path / 'trainB' / 'b.png', size=(64, 64), seed=1)
    opt = make_opt(tmp_path, dataset_mode='singleimage', preprocess='zoom_and_patch',
                   load_size=64, crop_size=16, batch_size=4, max_dataset_size=10)
    loader = data.create_dataset(opt)
    assert len(loader) == 10
    assert len(collect(loader)) == 3  # batches start at samples 0, 4, 8


def test_two_ranks_read_disjoint_shards(unaligned_root):
    write_image(unaligned_root / 'trainA' / 'a5.png')
    seen = []
    for rank in range(2):
        loader = data.create_dataset(make_opt(unaligned_root, batch_size=1), rank=rank, world_size=2)
        loader.set_epoch(4)
        assert loader.dataset.current_epoch == 4 and loader.sampler.epoch == 4
        seen.append([p for b in loader for p in b['A_paths']])
    assert len(seen[0]) == len(seen[1]) == 3
    assert not set(seen[0]) & set(seen[1])
    assert set(seen[0]) | set(seen[1]) == {str(unaligned_root / 'trainA' / f'a{i}.png') for i in range(6)}


def test_sampler_reshuffles_with_the_epoch(unaligned_root):
    loader = data.create_dataset(make_opt(unaligned_root, batch_size=1), rank=0, world_size=2)
    orders = []
    for epoch in range(4):
        loader.set_epoch(epoch)
        orders.append(list(loader.sampler))
    assert len({tuple(o) for o in orders}) > 1


def test_worker_processes_load_batches(unaligned_root):
    loader = data.create_dataset(make_opt(unaligned_root, num_threads=1))
    assert [b['A'].shape for b in loader] == [(2, 3, 32, 32)] * 2


# ---------------------------------------------------------------- other datasets

def test_single_dataset_reads_dataroot_recursively(tmp_path):
    write_image(tmp_path / 'b.png')
    write_image(tmp_path / 'sub' / 'a.png')
    opt = make_opt(tmp_path, dataset_mode='single', isTrain=False, serial_batches=True,
                   no_flip=True, input_nc=1)
    dataset = data.create_dataset(opt).dataset
    assert len(dataset) == 2
    item = dataset[0]
    assert set(item) == {'A', 'A_paths'} and item['A'].shape == (1, 32, 32)
    assert item['A_paths'] == str(tmp_path / 'b.png')


def test_aligned_halves_share_crop_and_flip(tmp_path):
    half = np.asarray(random_pil(size=(40, 36), seed=5))
    (tmp_path / 'train').mkdir()
    Image.fromarray(np.concatenate([half, half], axis=1)).save(tmp_path / 'train' / 'pair.png')
    dataset = data.create_dataset(make_opt(tmp_path, dataset_mode='aligned', load_size=40)).dataset
    random.seed(0)
    items = [dataset[0] for _ in range(8)]
    assert all(torch.equal(it['A'], it['B']) for it in items)
    assert len({it['A'].sum().item() for it in items}) > 1  # crops and flips did vary
    assert items[0]['A_paths'] == items[0]['B_paths'] == str(tmp_path / 'train' / 'pair.png')


def test_aligned_splits_left_a_and_right_b(tmp_path):
    pair = np.zeros((32, 64, 3), dtype=np.uint8)
    pair[:, :32, 0] = 255
    pair[:, 32:, 2] = 255
    (tmp_path / 'train').mkdir()
    Image.fromarray(pair).save(tmp_path / 'train' / 'p.png')
    item = data.create_dataset(make_opt(tmp_path, dataset_mode='aligned', preprocess='none')).dataset[0]
    assert item['A'][0].eq(1).all() and item['A'][2].eq(-1).all()
    assert item['B'][2].eq(1).all() and item['B'][0].eq(-1).all()


def test_template_dataset_adds_its_flag_and_returns_a_as_b(tmp_path):
    parser = argparse.ArgumentParser()
    data.get_option_setter('template')(parser, is_train=True)
    assert parser.parse_args([]).template_folder == ''
    write_image(tmp_path / 'trainA' / 'x.png')
    write_image(tmp_path / 'photos' / 'y.png')
    default = data.create_dataset(make_opt(tmp_path, dataset_mode='template', template_folder=''))
    item = default.dataset[0]
    assert torch.equal(item['A'], item['B']) and item['A_paths'].endswith('trainA/x.png')
    custom = data.create_dataset(make_opt(tmp_path, dataset_mode='template', template_folder='photos',
                                          batch_size=1))
    assert collect(custom)[0]['A_paths'][0].endswith('photos/y.png')


@pytest.fixture
def single_image_root(tmp_path):
    write_image(tmp_path / 'trainA' / 'a.png', size=(96, 80), seed=1)
    write_image(tmp_path / 'trainB' / 'b.png', size=(72, 64), seed=2)
    return tmp_path


def single_image_opt(root, **overrides):
    settings = dict(dataset_mode='singleimage', preprocess='zoom_and_patch', load_size=1024,
                    crop_size=32, batch_size=4)
    return make_opt(root, **{**settings, **overrides})


def test_single_image_dataset_crops_patches_reproducibly(single_image_root):
    def items(seed):
        random.seed(seed)
        torch.manual_seed(seed)
        dataset = data.create_dataset(single_image_opt(single_image_root)).dataset
        return dataset, [dataset[i] for i in range(6)]
    dataset, first = items(0)
    _, again = items(0)
    assert len(dataset) == CROPS_PER_EPOCH
    assert all(it['A'].shape == it['B'].shape == (3, 32, 32) for it in first)
    assert all(torch.equal(x['A'], y['A']) and torch.equal(x['B'], y['B']) for x, y in zip(first, again))
    assert first[0]['A_paths'].endswith('trainA/a.png') and first[0]['B_paths'].endswith('trainB/b.png')
    # one zoom per minibatch of consecutive indices, each factor in [1 / random_scale_max, 1]
    assert dataset.batch_zoom_A[0] == dataset.batch_zoom_A[3 // 4]
    assert all(1 / 3 <= f <= 1 for zoom in dataset.batch_zoom_A[:100] for f in zoom)
    assert sorted(dataset.patch_indices_A) == list(range(CROPS_PER_EPOCH))


def test_single_image_dataset_test_phase_keeps_the_whole_image(single_image_root):
    opt = single_image_opt(single_image_root, phase='test', isTrain=False, preprocess='none',
                           no_flip=True, batch_size=1)
    item = data.create_dataset(opt).dataset[0]
    assert item['A'].shape == (3, 80, 96) and item['B'].shape == (3, 64, 72)


def test_single_image_dataset_needs_exactly_one_image(single_image_root):
    write_image(single_image_root / 'trainA' / 'another.png')
    with pytest.raises(ValueError, match='exactly one image in .*trainA.*found 2'):
        data.create_dataset(single_image_opt(single_image_root))
