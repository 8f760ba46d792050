"""Tests for evaluation/multimodal.py: LPIPS against a hand computation, weight files, the StarGAN v2
protocol on a tiny generated dataset with a fake translator, Table 2 and the CLI.

Networks are random (the real weights are not downloaded here); FID in the protocol tests runs on a small
feature network at 32 px so that the covariances stay tiny.
"""
import json
import sys
import types

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision
from PIL import Image
from torch import nn

from evaluation import multimodal as mm
from evaluation.common import EvaluationError, cli

DOMAINS = ['autumn', 'spring', 'winter']
SIZE = 32


class FakeTranslator:
    """StarGAN-v2-shaped translator from tiny modules: a per-domain style from z (mapping) or from the
    reference's mean colour (encoder), output tanh(conv([x, style])). Records reference calls."""

    def __init__(self, domains, img_size=SIZE, latent_dim=4, style_dim=3):
        self.domains, self.num_domains = list(domains), len(domains)
        self.latent_dim, self.img_size, self.device = latent_dim, img_size, 'cpu'
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            self.mapping = nn.Linear(latent_dim, style_dim * len(domains))
            self.encoder = nn.Linear(3, style_dim * len(domains))
            self.conv = nn.Conv2d(3 + style_dim, 3, 3, padding=1)
        self.reference_calls = []

    def _pick(self, styles, y):
        return styles.view(len(y), self.num_domains, -1)[torch.arange(len(y)), y]  # (B, style_dim)

    def style_from_latent(self, z, y):
        return self._pick(self.mapping(z), y)

    def style_from_reference(self, x_ref, y):
        self.reference_calls.append((x_ref.mean(dim=(1, 2, 3)), y.clone()))
        return self._pick(self.encoder(x_ref.mean(dim=(2, 3))) * 4, y)

    def generate(self, x_src, s):
        s_map = s[:, :, None, None].expand(-1, -1, *x_src.shape[2:])
        return torch.tanh(3 * self.conv(torch.cat([x_src, s_map], dim=1)))


def domain_level(index):
    """Mean pixel value (0-255) of every image of domain `index`, so a reference's domain is readable."""
    return 40 + 80 * index


def write_dataset(root, domains, *, num_val=3, num_train=4, side=36):
    rng = np.random.default_rng(0)
    for split, count in (('val', num_val), ('train', num_train)):
        for index, domain in enumerate(domains):
            folder = root / split / domain
            folder.mkdir(parents=True)
            for i in range(count):
                pixels = domain_level(index) + rng.uniform(-10, 10, size=(side, side, 3))
                Image.fromarray(pixels.astype(np.uint8)).save(folder / f'{domain}_{i}.png')
    return root


class SmallFeatures(nn.Module):
    """An 8-d stand-in for Inception: FID arithmetic stays fast and well-conditioned."""

    def __init__(self):
        super().__init__()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(1)
            self.net = nn.Sequential(nn.AdaptiveAvgPool2d(4), nn.Flatten(), nn.Linear(48, 8))
        self.weights = 'random'

    def forward(self, x):
        return self.net(x)


@pytest.fixture(scope='module')
def lpips_net():
    torch.manual_seed(0)
    net = mm.build_lpips()
    with torch.no_grad():
        for lin in net.linear:
            lin.weight.abs_()  # learned LPIPS weights are non-negative
    return net


@pytest.fixture(scope='module')
def dataset(tmp_path_factory):
    return write_dataset(tmp_path_factory.mktemp('data'), DOMAINS)


def evaluate(dataset, out, mode, lpips_net, *, seed=0, batch_size=2, domains=DOMAINS, **kw):
    return mm.evaluate_multimodal(FakeTranslator(domains), dataset / 'val', dataset / 'train', out, mode,
                                  lpips_net=lpips_net, fid_net=SmallFeatures(), num_outs_per_domain=3,
                                  batch_size=batch_size, seed=seed, fid_input_size=SIZE, progress=False, **kw)


# ---------------------------------------------------------------------------------------------------- LPIPS

def hand_lpips(net, x, y):
    """LPIPS written out with functional ops on the module's parameters: AlexNet's conv-ReLUs (max-pools
    after the first two), unit-normalised channels, weighted squared difference, spatial mean, sum."""
    shift = torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1)
    scale = torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1)
    convs = [m for m in net.features if isinstance(m, nn.Conv2d)]
    hx, hy, total = (x - shift) / scale, (y - shift) / scale, torch.zeros(len(x))
    for i, conv in enumerate(convs):
        if i in (1, 2):
            hx, hy = F.max_pool2d(hx, 3, 2), F.max_pool2d(hy, 3, 2)
        hx = F.relu(F.conv2d(hx, conv.weight, conv.bias, conv.stride, conv.padding))
        hy = F.relu(F.conv2d(hy, conv.weight, conv.bias, conv.stride, conv.padding))
        nx = hx / torch.sqrt(hx.pow(2).sum(1, keepdim=True) + 1e-10)
        ny = hy / torch.sqrt(hy.pow(2).sum(1, keepdim=True) + 1e-10)
        total += ((nx - ny).pow(2) * net.linear[i].weight.view(1, -1, 1, 1)).sum(1).mean(dim=(1, 2))
    return total


@torch.no_grad()
def test_lpips_zero_for_identical_symmetric_positive_otherwise(lpips_net):
    torch.manual_seed(2)
    x, y = torch.rand(2, 3, SIZE, SIZE) * 2 - 1, torch.rand(2, 3, SIZE, SIZE) * 2 - 1
    assert torch.equal(lpips_net(x, x), torch.zeros(2))
    assert torch.allclose(lpips_net(x, y), lpips_net(y, x))
    assert (lpips_net(x, y) > 0).all()


@torch.no_grad()
def test_lpips_matches_hand_computation(lpips_net):
    torch.manual_seed(3)
    x, y = torch.rand(3, 3, 40, 40) * 2 - 1, torch.rand(3, 3, 40, 40) * 2 - 1
    assert torch.allclose(lpips_net(x, y), hand_lpips(lpips_net, x, y), rtol=1e-5, atol=1e-7)


@torch.no_grad()
def test_mean_pairwise_lpips_averages_all_pairs(lpips_net):
    torch.manual_seed(4)
    outs = [torch.rand(2, 3, SIZE, SIZE) * 2 - 1 for _ in range(3)]
    expected = (lpips_net(outs[0], outs[1]) + lpips_net(outs[0], outs[2]) + lpips_net(outs[1], outs[2])) / 3
    assert torch.allclose(mm.mean_pairwise_lpips(lpips_net, outs), expected)


def test_lpips_rejects_images_alexnet_cannot_take(lpips_net):
    with pytest.raises(EvaluationError, match='at least 31x31'):
        lpips_net(torch.zeros(1, 3, 16, 16), torch.zeros(1, 3, 16, 16))


def stargan_lpips_state(value=None):
    """A state dict with the key layout and shapes of StarGAN v2's lpips_weights.ckpt."""
    torch.manual_seed(5)
    return {f'lpips_weights.{i}.main.1.weight': torch.rand(1, c, 1, 1) if value is None
            else torch.full((1, c, 1, 1), value) for i, c in enumerate((64, 192, 384, 256, 256))}


def test_weight_files_load_through_the_flags(tmp_path):
    files = {flag: tmp_path / name for flag, name in (('--lpips_weights', mm.LPIPS_FILE),
                                                      ('--alexnet_weights', mm.ALEXNET_FILE),
                                                      ('--inception_weights', mm.INCEPTION_FILE))}
    lpips_state = stargan_lpips_state()
    torch.save(lpips_state, files['--lpips_weights'])
    torch.manual_seed(6)
    alexnet = nn.Module()
    alexnet.features = mm.alexnet_features()  # the keys of torchvision's file that LPIPS reads
    torch.save(dict(alexnet.state_dict(), **{'classifier.6.bias': torch.zeros(1000)}), files['--alexnet_weights'])
    inception = torchvision.models.inception_v3(weights=None, aux_logits=True, init_weights=False)
    torch.save(inception.state_dict(), files['--inception_weights'])
    argv = ['--name', 'r', '--dataroot', 'd'] + [str(x) for pair in files.items() for x in pair]
    lpips_net, fid_net = mm.build_metric_nets(mm.build_parser().parse_args(argv), 'cpu')
    for i, lin in enumerate(lpips_net.linear):
        assert torch.equal(lin.weight, lpips_state[f'lpips_weights.{i}.main.1.weight'])
    assert torch.equal(lpips_net.features[0].weight, alexnet.features[0].weight)
    assert torch.equal(fid_net.layers[0].conv.weight, inception.Conv2d_1a_3x3.conv.weight)
    assert lpips_net.weights == {'lpips': str(files['--lpips_weights']), 'alexnet': str(files['--alexnet_weights'])}
    assert fid_net.weights == str(files['--inception_weights'])


def test_weights_loader_names_bad_keys_and_shapes():
    bad_shape = stargan_lpips_state(1.0)
    bad_shape['lpips_weights.2.main.1.weight'] = torch.ones(1, 7, 1, 1)
    with pytest.raises(EvaluationError, match=r'x.ckpt: lpips_weights.2.main.1.weight has shape \(1, 7, 1, 1\)'):
        mm.lpips_linear_weights(bad_shape, 'x.ckpt')
    with pytest.raises(EvaluationError, match='x.ckpt has no .lpips_weights.0.main.1.weight'):
        mm.lpips_linear_weights({'linear.0.weight': torch.ones(1, 64, 1, 1)}, 'x.ckpt')
    with pytest.raises(EvaluationError, match=f'alex.pth is not a torchvision AlexNet .*{mm.ALEXNET_FILE}'):
        mm.build_lpips(stargan_lpips_state(), {'features.0.weight': torch.ones(1)},
                       source={'lpips': 'x.ckpt', 'alexnet': 'alex.pth'})


def test_missing_weights_one_error_naming_every_flag(tmp_path, capsys):
    argv = ['--name', 'r', '--dataroot', str(tmp_path), '--alexnet_weights', str(tmp_path / 'no.pth'),
            '--inception_weights', str(tmp_path / 'none.pth'), '--device', 'cpu']
    assert cli(mm.main, argv) == 2
    err = capsys.readouterr().err
    for text in ('--lpips_weights', mm.LPIPS_FILE, 'clovaai/stargan-v2', '--alexnet_weights', mm.ALEXNET_URL,
                 '--inception_weights', mm.INCEPTION_URL, '--random_weights'):
        assert text in err


# ---------------------------------------------------------------------------------------------------- FID

@torch.no_grad()
def test_inception_pool_is_torchvision_inception_up_to_its_pool():
    torch.manual_seed(7)
    reference = torchvision.models.inception_v3(weights=None, aux_logits=True, init_weights=False,
                                                transform_input=False).eval()
    pooled = []
    reference.avgpool.register_forward_hook(lambda module, inputs, output: pooled.append(output.flatten(1)))
    pool = mm.build_inception(reference.state_dict(), source='inception.pth')
    x = torch.randn(2, 3, 75, 75)
    reference(x)
    features = pool(x)
    assert features.shape == (2, 2048) and torch.allclose(features, pooled[0], atol=1e-5)
    assert pool.weights == 'inception.pth'
    with pytest.raises(EvaluationError, match=f'bad.pth is not a torchvision inception_v3 .*{mm.INCEPTION_FILE}'):
        mm.build_inception({'fc.weight': torch.ones(1)}, source='bad.pth')


def test_fid_of_a_set_with_itself_is_zero(dataset):
    files = mm.domain_files(dataset / 'train', 'autumn') + mm.domain_files(dataset / 'train', 'winter')
    feats = mm.fid_features(SmallFeatures(), files, mm.fid_transform(SIZE, SIZE), batch_size=3, progress=False)
    assert feats.shape == (8, 8) and feats.dtype == np.float64
    stats = mm.feature_statistics(feats)
    assert abs(mm.frechet_distance(stats, stats)) < 1e-6
    assert mm.frechet_distance(stats, mm.feature_statistics(feats + 1.0)) == pytest.approx(8.0, rel=1e-6)


def test_trace_of_the_root_equals_scipy_sqrtm_on_covariances():
    from scipy import linalg
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(300, 40)), rng.normal(size=(300, 40)) @ rng.normal(size=(40, 40)) * 0.3
    sigma_a, sigma_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    expected = np.trace(np.real(linalg.sqrtm(sigma_a @ sigma_b)))
    assert mm.trace_sqrt_product(sigma_a, sigma_b) == pytest.approx(expected, rel=1e-9)


# ---------------------------------------------------------------------------------------------------- protocol

def test_tasks_in_stargan_v2_order():
    assert [f'{s}2{t}' for s, t in mm.enumerate_tasks(['a', 'b', 'c'])] == ['b2a', 'c2a', 'a2b', 'c2b', 'a2c', 'b2c']


def test_reference_indices_distinct_per_image_then_cycling():
    refs = mm.reference_indices(4, 5, 3, torch.Generator().manual_seed(0))
    assert refs.shape == (4, 3) and all(len(set(row.tolist())) == 3 for row in refs)
    few = mm.reference_indices(2, 2, 5, torch.Generator().manual_seed(0))
    assert all(sorted(row[:2].tolist()) == [0, 1] for row in few) and few.max() <= 1


def test_protocol_writes_outputs_and_json(dataset, lpips_net, tmp_path):
    result = evaluate(dataset, tmp_path, 'latent', lpips_net)
    tasks = [f'{s}2{t}' for s, t in mm.enumerate_tasks(DOMAINS)]
    for task in tasks:
        stems = [p.stem for p in (dataset / 'val' / task.split('2')[0]).iterdir()]
        assert sorted(p.name for p in (tmp_path / 'latent' / task).iterdir()) == \
            sorted(f'{s}_{k}.png' for s in stems for k in range(3))
        with Image.open(tmp_path / 'latent' / task / f'{stems[0]}_0.png') as im:
            assert im.size == (SIZE, SIZE)
    assert list(result) == ['latent', 'settings']
    for metric in ('LPIPS', 'FID'):
        values = result['latent'][metric]
        assert list(values) == tasks + ['mean']
        assert values['mean'] == pytest.approx(np.mean([values[t] for t in tasks]))
    assert all(result['latent']['LPIPS'][t] > 0 for t in tasks)
    settings = result['settings']
    assert settings['num_outs_per_domain'] == 3 and settings['seed'] == 0
    assert settings['weights'] == {'lpips': 'random', 'fid': 'random'} and 'meaningless' in settings['warning']
    assert settings['num_val_images'] == dict.fromkeys(DOMAINS, 3)
    assert settings['num_train_images'] == dict.fromkeys(DOMAINS, 4)
    assert settings['num_generated'] == dict.fromkeys(tasks, 9)
    assert json.loads((tmp_path / 'metrics_multimodal_latent.json').read_text()) == result


def test_protocol_reproducible_for_a_seed_and_any_batch_size(dataset, lpips_net, tmp_path):
    domains = DOMAINS[:2]
    data = write_dataset(tmp_path / 'data', domains)
    runs = {(seed, batch): evaluate(data, tmp_path / f'{seed}_{batch}', 'latent', lpips_net, seed=seed,
                                    batch_size=batch, domains=domains)
            for seed, batch in ((5, 2), (5, 3), (6, 2))}
    assert runs[5, 2]['latent'] == evaluate(data, tmp_path / 'again', 'latent', lpips_net, seed=5,
                                            domains=domains)['latent']
    for task in ('spring2autumn', 'autumn2spring'):
        for png in (tmp_path / '5_2' / 'latent' / task).iterdir():
            assert png.read_bytes() == (tmp_path / 'again' / 'latent' / task / png.name).read_bytes()
        assert runs[5, 3]['latent']['LPIPS'][task] == pytest.approx(runs[5, 2]['latent']['LPIPS'][task], rel=1e-5)
    assert runs[6, 2]['latent']['LPIPS'] != runs[5, 2]['latent']['LPIPS']


def test_reference_mode_styles_from_target_validation_images(dataset, lpips_net, tmp_path, monkeypatch):
    translator = FakeTranslator(DOMAINS)
    real_stats = mm.DomainStatistics(SmallFeatures(), dataset / 'train', SIZE, input_size=SIZE, progress=False)
    computed = []
    features = mm.fid_features
    monkeypatch.setattr(mm, 'fid_features', lambda net, files, *a, **kw: computed.append(files[0].parent) or
                        features(net, files, *a, **kw))
    results = [mm.evaluate_multimodal(translator, dataset / 'val', dataset / 'train', tmp_path, mode,
                                      lpips_net=lpips_net, fid_net=real_stats.fid_net, num_outs_per_domain=3,
                                      batch_size=3, fid_input_size=SIZE, real_stats=real_stats, progress=False)
               for mode in mm.MODES]
    # training statistics once per target domain over both modes, generated features once per task and mode
    assert sorted(p.name for p in computed if p.parent.name == 'train') == DOMAINS
    assert len([p for p in computed if p.parent.name != 'train']) == 2 * 6
    tasks = mm.enumerate_tasks(DOMAINS)
    assert len(translator.reference_calls) == len(tasks) * 3
    for call, (src, trg) in zip(translator.reference_calls[::3], tasks):
        means, y = call
        trg_index = DOMAINS.index(trg)
        assert (y == trg_index).all()
        assert torch.allclose(means, torch.full_like(means, domain_level(trg_index) / 255 * 2 - 1), atol=0.05)
    merged = mm.merge_results(results)
    assert list(merged) == ['latent', 'reference', 'settings']


def test_protocol_checks_domains(dataset, lpips_net, tmp_path):
    with pytest.raises(EvaluationError, match='differ from the folders'):
        mm.evaluate_multimodal(FakeTranslator(['x', 'y', 'z']), dataset / 'val', dataset / 'train', tmp_path,
                               'latent', lpips_net=lpips_net, fid_net=SmallFeatures(), progress=False)
    with pytest.raises(ValueError, match='mode must be one of latent, reference'):
        evaluate(dataset, tmp_path, 'ref', lpips_net)


# ---------------------------------------------------------------------------------------------------- Table 2

def result_of(values, warning=False):
    settings = {'seed': 0, **({'warning': mm.RANDOM_WARNING} if warning else {})}
    result = {mode: {'FID': {'mean': fid}, 'LPIPS': {'mean': lp}} for mode, (fid, lp) in values.items()}
    return dict(result, settings=settings)


def test_table2_layout_with_paper_rows():
    markdown, data = mm.table2({'StarGAN v2': result_of({'latent': (60.123, 0.4012), 'reference': (59.0, 0.3)}),
                                '+ ours': result_of({'latent': (50.0, 0.5)}, warning=True)}, 'Seasons')
    lines = markdown.splitlines()
    assert lines[2] == '| Dataset | Method | FID latent↓ | LPIPS latent↑ | FID ref↓ | LPIPS ref↑ |'
    assert lines[4] == '| Seasons | StarGAN v2 | 60.12 | 0.401 | 59.00 | 0.300 |'
    assert lines[5] == '| *Seasons* | *StarGAN v2, paper* | *63.06* | *0.413* | *61.19* | *0.346* |'
    assert lines[6] == '| Seasons | + ours | 50.00 ⚠ | 0.500 ⚠ | – ⚠ | – ⚠ |'
    assert lines[7].startswith('| *Seasons* | *+ ours, paper* | *54.70*')
    assert '+ ours: random LPIPS/FID network weights' in markdown
    assert data['columns'] == ['FID latent↓', 'LPIPS latent↑', 'FID ref↓', 'LPIPS ref↑']
    assert data['rows'][1]['values'] == {'FID latent↓': 50.0, 'LPIPS latent↑': 0.5, 'FID ref↓': None,
                                         'LPIPS ref↑': None}
    assert data['rows'][0]['paper']['FID ref↓'] == 61.19
    assert '*paper*' not in mm.table2({'StarGAN v2': result_of({})}, 'seasons', paper=False)[0]


# ---------------------------------------------------------------------------------------------------- CLI

def test_main_with_a_fake_loader(tmp_path, monkeypatch, capsys):
    data = write_dataset(tmp_path / 'seasons', DOMAINS[:2])
    loaded = []
    fake = types.ModuleType('models.stargan_v2_model')
    fake.load_translator = lambda *args: loaded.append(args) or FakeTranslator(DOMAINS[:2])
    monkeypatch.setitem(sys.modules, 'models.stargan_v2_model', fake)
    monkeypatch.setattr(mm, 'build_inception', lambda *args, **kwargs: SmallFeatures())  # 2048-d FID is slow
    out = tmp_path / 'out'
    argv = ['--checkpoints_dir', str(tmp_path / 'ckpt'), '--name', 'run', '--epoch', '7', '--dataroot', str(data),
            '--out', str(out), '--num_outs_per_domain', '2', '--batch_size', '4', '--random_weights',
            '--fid_input_size', '32', '--device', 'cpu', '--no_tqdm']
    assert cli(mm.main, argv) == 0
    assert loaded == [(str(tmp_path / 'ckpt'), 'run', '7', 'cpu')]
    merged = json.loads((out / 'metrics_multimodal.json').read_text())
    assert list(merged) == ['latent', 'reference', 'settings'] and merged['settings']['run'] == 'run'
    assert sorted(p.name for p in (out / 'reference').iterdir()) == ['autumn2spring', 'spring2autumn']
    assert '| seasons | run |' in (out / 'table2.md').read_text()
    assert json.loads((out / 'table2.json').read_text())['rows'][0]['method'] == 'run'
    assert 'meaningless' in capsys.readouterr().err
