"""The multi-domain data side: data/multidomain_dataset.py, datasets/make_multidomain_dataset.py and the
layout scores of evaluation/multidomain_synthetic.py on constructed cases."""
import argparse
import json
import random
from collections import Counter

import numpy as np
import pytest
import torch
from PIL import Image

import data
from data.image_folder import ImageLoadError
from evaluation.common import EvaluationError
from evaluation.multidomain_synthetic import layout_accuracy, layout_scores, main as score_main, score_results
from tests.conftest import load_script, tree_bytes

seasons = load_script('datasets/make_multidomain_dataset.py')

SMALL = dict(n_train=3, n_val=2, size=32)


def read(path):
    with Image.open(path) as img:
        return np.asarray(img)


def seed_both(seed):
    """Seed the two generators the dataset draws from (train.py saves both)."""
    random.seed(seed)
    torch.manual_seed(seed)


def make_opt(dataroot, **overrides):
    opt = argparse.Namespace(
        dataroot=str(dataroot), phase='train', crop_size=16, no_flip=False, randcrop_prob=0.5,
        no_balance_domains=False, serial_batches=False, batch_size=2, num_threads=0,
        max_dataset_size=float('inf'), isTrain=True, dataset_mode='multidomain')
    for key, value in overrides.items():
        setattr(opt, key, value)
    return opt


def write_domains(root, counts, phase='train', size=(20, 18)):
    """counts: {domain: number of images}; each image random, named <domain>_<i>.png."""
    for d, (name, count) in enumerate(counts.items()):
        folder = root / phase / name
        folder.mkdir(parents=True)
        for i in range(count):
            pixels = np.random.default_rng([d, i]).integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)
            Image.fromarray(pixels).save(folder / f'{name}_{i}.png')
    return root


@pytest.fixture(scope='module')
def generated(tmp_path_factory):
    root = tmp_path_factory.mktemp('seasons')
    return root, seasons.make_multidomain_dataset(root, seed=3, **SMALL)


# ---------------------------------------------------------------- generator

def test_same_seed_gives_byte_identical_tree_bytes(generated, tmp_path):
    root, _ = generated
    seasons.make_multidomain_dataset(tmp_path / 'again', seed=3, **SMALL)
    assert tree_bytes(root) == tree_bytes(tmp_path / 'again')
    seasons.make_multidomain_dataset(tmp_path / 'other', seed=4, **SMALL)
    other = tree_bytes(tmp_path / 'other')
    assert other.keys() == tree_bytes(root).keys()
    assert other['train/winter/000000.png'] != tree_bytes(root)['train/winter/000000.png']


def test_dataset_layout_and_meta(generated):
    root, meta = generated
    assert meta['seasons'] == ['spring', 'summer', 'autumn', 'winter'] and meta['classes'] == list(seasons.CLASSES)
    assert json.loads((root / 'meta.json').read_text())['palettes']['winter']['field'] == [0.97, 0.97, 0.98]
    for season in meta['seasons']:
        assert sorted(p.name for p in (root / 'train' / season).iterdir()) == ['000000.png', '000001.png', '000002.png']
        for name in ('000000.png', '000001.png'):
            assert read(root / 'val' / season / name).shape == (32, 32, 3)
            layout = read(root / 'val_layout' / season / name)
            assert layout.shape == (32, 32) and layout.dtype == np.uint8 and layout.max() < len(meta['classes'])
    # unpaired: every image has its own scene, also across seasons
    layouts = [read(root / 'val_layout' / s / '000000.png').tobytes() for s in meta['seasons']]
    assert len(set(layouts)) == len(layouts)


def test_fewer_domains_keep_the_most_distinct_seasons(tmp_path):
    assert seasons.seasons_for(2) == ['summer', 'winter'] and seasons.seasons_for(3) == ['summer', 'autumn', 'winter']
    seasons.main(['--root', str(tmp_path), '--n_train', '1', '--n_val', '1', '--size', '16', '--domains', '2'])
    assert sorted(p.name for p in (tmp_path / 'train').iterdir()) == ['summer', 'winter']


def test_generator_errors(generated):
    root, _ = generated
    with pytest.raises(FileExistsError, match='--overwrite'):
        seasons.make_multidomain_dataset(root, **SMALL)
    with pytest.raises(ValueError, match='--domains must be between 2 and 4'):
        seasons.seasons_for(5)
    with pytest.raises(ValueError, match='--size must be a multiple of 4'):
        seasons.make_multidomain_dataset(root, size=30, overwrite=True)


def test_layouts_are_landscapes():
    rng = np.random.default_rng(0)
    for _ in range(10):
        layout = seasons.sample_layout(rng, 48)
        assert (layout[0] == seasons.CLASSES.index('sky')).all()  # the top row is sky
        assert (layout[-1] != seasons.CLASSES.index('sky')).all()  # the bottom row is not


def test_render_draws_one_layout_in_every_season():
    layout = seasons.sample_layout(np.random.default_rng(1), 32)
    style = {s: seasons.sample_style(np.random.default_rng(2), s) for s in seasons.SEASONS}
    images = [seasons.render(layout, s, style[s]) for s in seasons.SEASONS]
    assert all(img.shape == (32, 32, 3) and img.dtype == np.uint8 for img in images)
    assert len({img.tobytes() for img in images}) == 4
    assert np.array_equal(seasons.render(layout, 'autumn', style['autumn']), images[2])  # a style fixes the noise
    with pytest.raises(ValueError, match='unknown season'):
        seasons.render(layout, 'monsoon', style['summer'])


def test_palette_classes_are_separable():
    for season in seasons.SEASONS:
        colors = seasons.palette(season)
        gaps = np.linalg.norm(colors[:, None] - colors[None], axis=-1) + np.eye(len(colors))
        assert gaps.min() >= 0.2, season


# ---------------------------------------------------------------- dataset

@pytest.fixture
def four_domains(tmp_path):
    return write_domains(tmp_path, {'a': 2, 'b': 2, 'c': 2, 'd': 20})


def test_registry_finds_the_dataset_and_its_flags():
    assert 'multidomain' in data.available_datasets()
    parser = data.get_option_setter('multidomain')(argparse.ArgumentParser(), is_train=True)
    opt = parser.parse_args(['--randcrop_prob', '0.2', '--no_balance_domains'])
    assert opt.randcrop_prob == 0.2 and opt.no_balance_domains


def test_items_keys_shapes_and_batches(four_domains):
    loader = data.create_dataset(make_opt(four_domains))
    dataset = loader.dataset
    assert dataset.domains == ['a', 'b', 'c', 'd'] and dataset.num_domains == 4 and len(dataset) == 26
    item = dataset[0]
    assert set(item) == {'A', 'A_paths', 'A_domain', 'ref', 'ref2', 'ref_domain', 'ref_paths', 'ref2_paths'}
    for key in ('A', 'ref', 'ref2'):
        assert item[key].shape == (3, 16, 16) and item[key].dtype == torch.float32
        assert -1 <= item[key].min() and item[key].max() <= 1
    for key in ('A_domain', 'ref_domain'):
        assert item[key].dtype == torch.int64 and item[key].dim() == 0
    batch = next(iter(loader))
    assert batch['A'].shape == (2, 3, 16, 16) and batch['A_domain'].shape == (2,) and len(batch['ref_paths']) == 2


def test_balanced_sources_are_domain_uniform(four_domains):
    dataset = data.find_dataset_using_name('multidomain')(make_opt(four_domains))
    random.seed(0)
    draws = [dataset.draw(0) for _ in range(4000)]
    shares = Counter(d[1] for d in draws)
    assert all(abs(shares[d] / 4000 - 0.25) < 0.03 for d in range(4)), shares
    assert len({d[0] for d in draws if d[1] == 3}) == 20  # every image of the large domain is drawn
    refs = Counter(d[4] for d in draws)
    assert all(abs(refs[d] / 4000 - 0.25) < 0.03 for d in range(4)), refs
    assert sum(d[1] == d[4] for d in draws) / 4000 == pytest.approx(0.25, abs=0.03)  # independent of the source


def test_without_balance_item_index_is_image_index(four_domains):
    dataset = data.find_dataset_using_name('multidomain')(make_opt(four_domains, no_balance_domains=True))
    sources = [dataset.draw(i)[:2] for i in range(len(dataset))]
    assert sources == dataset.items and Counter(d for _, d in sources)[3] == 20


def test_references_share_one_domain(four_domains):
    dataset = data.find_dataset_using_name('multidomain')(make_opt(four_domains))
    random.seed(1)
    for _ in range(200):
        _, _, ref, ref2, ref_domain = dataset.draw(0)
        assert ref in dataset.paths[ref_domain] and ref2 in dataset.paths[ref_domain]
    item = dataset[0]
    assert f'/{dataset.domains[int(item["ref_domain"])]}/' in item['ref_paths']


def test_draws_follow_the_saved_random_states(four_domains):
    dataset = data.find_dataset_using_name('multidomain')(make_opt(four_domains, randcrop_prob=1.0))
    seed_both(5)
    first = dataset[3]
    seed_both(5)
    again = dataset[3]
    assert all(torch.equal(first[k], again[k]) if torch.is_tensor(first[k]) else first[k] == again[k] for k in first)


def test_training_augments_and_val_only_resizes(tmp_path):
    root = write_domains(tmp_path, {'x': 1, 'y': 1}, phase='train')
    write_domains(tmp_path, {'x': 1, 'y': 1}, phase='val')
    train = data.find_dataset_using_name('multidomain')(make_opt(root, randcrop_prob=1.0))
    path = train.paths[0][0]
    crops = {train.load(path).numpy().tobytes() for _ in range(5)}
    assert len(crops) > 1
    for is_train in (True, False):  # a val set during training is not augmented either
        val = data.find_dataset_using_name('multidomain')(make_opt(root, phase='val', isTrain=is_train))
        path = val.paths[1][0]
        seed_both(0)
        first = val.load(path)
        seed_both(1)
        assert torch.equal(first, val.load(path))
        expected = np.asarray(Image.open(path).convert('RGB').resize((16, 16), Image.BILINEAR)) / 127.5 - 1
        assert torch.allclose(first, torch.from_numpy(expected).permute(2, 0, 1).float(), atol=1e-6)


def test_test_phase_reads_val_and_still_draws_references(tmp_path):
    root = write_domains(tmp_path, {'x': 2, 'y': 3}, phase='val')
    dataset = data.find_dataset_using_name('multidomain')(make_opt(root, phase='test', isTrain=False))
    assert dataset.dir.endswith('val') and not dataset.balance
    assert [dataset[i]['A_paths'] for i in range(5)] == [p for p, _ in dataset.items]
    assert {'ref', 'ref2', 'ref_domain'} <= set(dataset[0])


@pytest.mark.parametrize('case, error, message', [
    ('no_root', FileNotFoundError, "--dataroot '.*missing' does not exist"),
    ('no_phase', FileNotFoundError, r"'.*train' does not exist: .*<dataroot>/train/<domain>/<images>"),
    ('one_domain', ValueError, r'at least two; found 1: only'),
    ('empty_domain', ValueError, r"domain 'b': found no images in '.*train/b'"),
    ('other_val_domains', ValueError, r'domains of .*train.* \(a, b\) and .*val.* \(a, c\) differ'),
    ('num_domains', ValueError, r'--num_domains 3 but .*train has 2 domain folders \(a, b\)'),
    ('randcrop_prob', ValueError, r'--randcrop_prob must lie in \[0, 1\], got 1.5'),
])
def test_dataset_errors_name_the_folder(tmp_path, case, error, message):
    root, overrides = tmp_path, {}
    if case == 'no_root':
        root = tmp_path / 'missing'
    elif case == 'one_domain':
        write_domains(root, {'only': 1})
    elif case != 'no_phase':
        write_domains(root, {'a': 1, 'b': 0 if case == 'empty_domain' else 1})
    if case == 'other_val_domains':
        write_domains(root, {'a': 1, 'c': 1}, phase='val')
    overrides = {'num_domains': {'num_domains': 3}, 'randcrop_prob': {'randcrop_prob': 1.5}}.get(case, {})
    with pytest.raises(error, match=message):
        data.find_dataset_using_name('multidomain')(make_opt(root, **overrides))


def test_a_broken_image_names_the_file(tmp_path):
    root = write_domains(tmp_path, {'a': 1, 'b': 1})
    (root / 'train' / 'a' / 'a_0.png').write_bytes(b'not a png')
    dataset = data.find_dataset_using_name('multidomain')(make_opt(root, no_balance_domains=True))
    with pytest.raises(ImageLoadError, match=r"a_0.png.*--skip_bad_images"):
        dataset[0]


def test_matching_num_domains_passes(four_domains):
    assert data.find_dataset_using_name('multidomain')(make_opt(four_domains, num_domains=4)).num_domains == 4


# ---------------------------------------------------------------- layout scores

def constructed_cases(meta, n=6, size=64):
    """Mean scores over `n` scenes and every target season of: the true rendering, the untranslated source
    (summer and winter, the most distinct pair), a constant grey image, another scene's true rendering."""
    rng = np.random.default_rng(0)
    scores = {'true': [], 'source': [], 'grey': [], 'other': []}
    agreement = []
    for _ in range(n):
        layout, other = seasons.sample_layout(rng, size), seasons.sample_layout(rng, size)
        agreement.append((layout == other).mean())
        for season in seasons.SEASONS:
            style = seasons.sample_style(rng, season)
            scores['true'].append(layout_scores(seasons.render(layout, season, style), layout, season, meta))
            scores['other'].append(layout_scores(seasons.render(other, season, style), layout, season, meta))
            grey = np.full((size, size, 3), 128, np.uint8)
            scores['grey'].append(layout_scores(grey, layout, season, meta))
        for src, trg in (('summer', 'winter'), ('winter', 'summer')):
            source = seasons.render(layout, src, seasons.sample_style(rng, src))
            scores['source'].append(layout_scores(source, layout, trg, meta))
    means = {case: {key: float(np.mean([s[key] for s in found])) for key in found[0]} for case, found in scores.items()}
    return means, float(np.mean(agreement))


def test_layout_scores_on_constructed_cases(generated):
    means, agreement = constructed_cases(generated[1])
    assert means['true']['layout_accuracy'] > 0.95 and means['true']['mean_iou'] > 0.8
    assert means['source']['layout_accuracy'] < 0.3 and means['grey']['layout_accuracy'] < 0.3
    # another scene agrees only where the two label maps do (sky above field): chance for these scenes
    assert means['other']['layout_accuracy'] == pytest.approx(agreement, abs=0.06)
    assert means['other']['mean_iou'] < means['true']['mean_iou'] - 0.4


def test_layout_accuracy_reads_floats_and_other_sizes(generated):
    meta = generated[1]
    layout = seasons.sample_layout(np.random.default_rng(3), 32)
    image = seasons.render(layout, 'autumn', seasons.mean_style('autumn'))
    score = layout_accuracy(image, layout, 'autumn', meta)
    assert layout_accuracy(image / 127.5 - 1, layout, 'autumn', meta) == pytest.approx(score)
    big = np.asarray(Image.fromarray(image).resize((64, 64), Image.NEAREST))
    assert layout_accuracy(big, layout, 'autumn', meta) == pytest.approx(score, abs=0.05)
    with pytest.raises(EvaluationError, match=r'must lie in \[-1, 1\]'):
        layout_accuracy(image * 1.0, layout, 'autumn', meta)


def test_score_results_per_task(generated, tmp_path, capsys):
    root, meta = generated
    task = tmp_path / 'summer2winter'
    task.mkdir()
    for name in ('000000', '000001'):
        layout = read(root / 'val_layout' / 'summer' / f'{name}.png')
        truth = seasons.render(layout, 'winter', seasons.mean_style('winter'))
        Image.fromarray(truth).save(task / f'{name}_0.png')
        Image.fromarray(read(root / 'val' / 'summer' / f'{name}.png')).save(task / f'{name}_1.png')
    result = score_results(tmp_path, root)
    assert result['images'] == 4 and set(result['tasks']) == {'summer2winter'}
    assert 0.4 < result['layout_accuracy'] < 0.75  # half true (about 1), half untranslated (about 0.05)
    assert score_main(['--data', str(root), '--results', str(tmp_path), '--json', str(tmp_path / 's.json')]) is None
    assert json.loads((tmp_path / 's.json').read_text())['tasks'] == result['tasks']
    capsys.readouterr()
    (task / 'noindex.png').write_bytes((task / '000000_0.png').read_bytes())
    with pytest.raises(EvaluationError, match=r'noindex.png: a translation must be named <id>_<k>.png'):
        score_results(tmp_path, root)
    (task / 'noindex.png').unlink()
    (tmp_path / 'summer2monsoon').mkdir()
    with pytest.raises(EvaluationError, match=r"'summer2monsoon' is not named <src>2<trg>"):
        score_results(tmp_path, root)
