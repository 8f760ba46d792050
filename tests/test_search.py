"""Evolution search of a channel configuration under a MACs budget (evaluation/search.py)."""
import json

import pytest

from evaluation.macs import mobile_macs
from evaluation.search import EvolutionSearch, SearchSettings
from models.networks.compression import ChannelConfigs, encode_config

SPACE = 'channels-16'
BUDGET = 18e6  # MACs at 64 px: about 5 % of channels-16 fits, as the paper's horse->zebra budget


def macs64(config):
    return mobile_macs(config, 64)


class Criterion:
    """A made-up score with a known shape (wide residual stream, thin decoder), counting its calls."""

    def __init__(self, fail_after=None):
        self.calls = []
        self.fail_after = fail_after

    def __call__(self, config):
        if self.fail_after is not None and len(self.calls) >= self.fail_after:
            raise KeyboardInterrupt('killed')
        self.calls.append(encode_config(config))
        return 2.0 * config[2] + config[3] - 0.5 * config[6] - 0.25 * config[7] + 0.01 * config[0]


def run(tmp_path=None, log='log.jsonl', criterion=None, **overrides):
    settings = SearchSettings(**{'budget': BUDGET, 'population_size': 8, 'generations': 4, 'mutate_prob': 0.4,
                                 'weighted_sample': 2, 'seed': 0, **overrides})
    path = None if tmp_path is None else str(tmp_path / log)
    search = EvolutionSearch(ChannelConfigs(SPACE), criterion or Criterion(), True, macs64, settings,
                             log_path=path, progress=False)
    return search.run()


def read_log(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_same_seed_same_search(tmp_path):
    a = run(tmp_path, 'a.jsonl')
    b = run(tmp_path, 'b.jsonl')
    assert a['best'] == b['best'] and a['history'] == b['history']
    assert (tmp_path / 'a.jsonl').read_text() == (tmp_path / 'b.jsonl').read_text()
    other = run(tmp_path, 'c.jsonl', seed=1)
    assert [r['config'] for r in read_log(tmp_path / 'c.jsonl')[1:]] != \
        [r['config'] for r in read_log(tmp_path / 'a.jsonl')[1:]]


def test_budget_cache_and_log(tmp_path):
    criterion = Criterion()
    result = run(tmp_path, criterion=criterion)
    lines = read_log(tmp_path / 'log.jsonl')
    assert lines[0]['kind'] == 'settings' and lines[0]['budget'] == BUDGET and lines[0]['space'] == SPACE
    candidates = lines[1:]
    assert len(candidates) == 8 * 5 == result['candidates']
    assert [c['index'] for c in candidates] == list(range(40))
    assert all(c['macs'] == macs64(tuple(map(int, c['config'].split('_')))) <= BUDGET for c in candidates)
    # each configuration is scored once; repeats come from the cache
    assert len(criterion.calls) == len(set(criterion.calls)) == result['evaluations']
    assert sum(not c['cached'] for c in candidates) == len(criterion.calls)
    # generation 0 random; later ones half mutations, half crossovers
    assert {c['origin'] for c in candidates if c['generation'] == 0} == {'random'}
    for g in range(1, 5):
        origins = [c['origin'] for c in candidates if c['generation'] == g]
        assert origins == ['mutation'] * 4 + ['crossover'] * 4
    # the best never gets worse, and is the best candidate ever scored
    scores = [h['score'] for h in result['history']]
    assert scores == sorted(scores)
    assert result['best']['score'] == max(c['score'] for c in candidates)
    assert result['best']['macs'] <= BUDGET


def test_budget_below_the_smallest_configuration():
    with pytest.raises(ValueError, match='below the smallest configuration 4_4_4_4_4_4_4_4'):
        run(budget=macs64((4,) * 8) - 1)


def test_lower_is_better():
    settings = SearchSettings(budget=BUDGET, population_size=6, generations=2, seed=3)
    result = EvolutionSearch(ChannelConfigs(SPACE), lambda c: float(sum(c)), False, macs64, settings,
                             progress=False).run()
    assert result['best']['score'] == min(h['score'] for h in result['history'])


@pytest.mark.parametrize('kill_after', [0, 5, 17])
def test_resume_after_a_kill_gives_the_same_search(tmp_path, kill_after):
    whole = run(tmp_path, 'whole.jsonl')
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path, 'resumed.jsonl', criterion=Criterion(fail_after=kill_after))
    assert len(read_log(tmp_path / 'resumed.jsonl')) < len(read_log(tmp_path / 'whole.jsonl'))
    # a line cut short by the kill
    with open(tmp_path / 'resumed.jsonl', 'a') as f:
        f.write('{"kind": "candid')
    criterion = Criterion()
    resumed = run(tmp_path, 'resumed.jsonl', criterion=criterion)
    assert resumed['best'] == whole['best'] and resumed['history'] == whole['history']
    assert (tmp_path / 'resumed.jsonl').read_text() == (tmp_path / 'whole.jsonl').read_text()
    # the candidates scored before the kill are not scored again
    assert len(criterion.calls) == whole['evaluations'] - kill_after
    # a finished search replays without scoring anything
    again = Criterion()
    assert run(tmp_path, 'resumed.jsonl', criterion=again)['best'] == whole['best'] and again.calls == []


def test_resume_with_other_settings_is_refused(tmp_path):
    run(tmp_path)
    with pytest.raises(ValueError, match=r'another search \(mutate_prob: 0.4 -> 0.3\)'):
        run(tmp_path, mutate_prob=0.3)


def test_bad_settings():
    with pytest.raises(ValueError, match='parent_ratio'):
        run(parent_ratio=0)
    with pytest.raises(ValueError, match='weight strategy'):
        run(weight_strategy='harmonic')


# ---- scripts/evolution_search.py on a step-1 run folder -------------------------------------------------------

def _supernet_run(tmp_path, size=32):
    """A synthetic dataset and a run folder holding a (random) super-net and its train_opt.json."""
    import torch
    from datasets.make_synthetic_dataset import make_synthetic_dataset
    from models.networks import define_G
    from tests.conftest import load_script  # noqa: F401  (puts the repository on sys.path)
    data = tmp_path / 'data'
    make_synthetic_dataset(data, n_train=2, n_test=5, size=size, seed=0)
    run = tmp_path / 'ckpt' / 'supernet'
    run.mkdir(parents=True)
    opts = {'model': 'compression', 'input_nc': 3, 'output_nc': 3, 'ngf': 8, 'netG': 'super_mobile_resnet_9blocks',
            'normG': 'instance', 'no_dropout': True, 'init_type': 'normal', 'init_gain': 0.02, 'no_antialias': True,
            'no_antialias_up': True, 'crop_size': size, 'load_size': size, 'stylegan2_G_num_downsampling': 1,
            'G_output': 'residual', 'config_str': None, 'config_set': 'channels-8', 'dataroot': str(data),
            'direction': 'AtoB'}
    (run / 'train_opt.json').write_text(json.dumps(opts))
    torch.manual_seed(0)
    net = define_G(3, 3, 8, 'super_mobile_resnet_9blocks', init_type='normal', init_gain=0.3, G_output='residual')
    torch.save(net.state_dict(), run / 'latest_net_G.pth')
    return data, run, net


def _save_translations(net, data, out):
    """testA translated image by image and saved as test.py saves them; returns the folder."""
    import numpy as np
    import torch
    from PIL import Image

    from util.util import tensor2im
    out.mkdir()
    for path in sorted((data / 'testA').glob('*.png')):
        x = torch.from_numpy(np.asarray(Image.open(path).convert('RGB'), dtype=np.float32).transpose(2, 0, 1))
        with torch.no_grad():
            Image.fromarray(tensor2im(net(x[None] / 255 * 2 - 1))).save(out / path.name)
    return out


@pytest.mark.slow
def test_search_cli_on_the_synthetic_task(tmp_path):
    from evaluation import synthetic
    from models.networks.compression import export_subnet
    from tests.conftest import load_script
    script = load_script('scripts/evolution_search.py')
    data, run, net = _supernet_run(tmp_path)
    budget = mobile_macs((8, 4, 8, 4, 8, 4, 4, 8), 32)
    args = ['--checkpoints_dir', str(tmp_path / 'ckpt'), '--name', 'supernet', '--phase', 'test',
            '--criterion', 'synthetic', '--budget', str(budget), '--population_size', '4', '--generations', '2',
            '--mutate_prob', '0.4', '--output_dir', str(tmp_path / 'search'), '--no_tqdm', '--device', 'cpu']
    result = script.main(args)
    best = result['best']
    assert best['macs'] <= budget and result['config_set'] == 'channels-8' and result['num_images'] == 5
    lines = (tmp_path / 'search' / 'candidates.jsonl').read_text().splitlines()
    assert len(lines) == 1 + 4 * 3
    assert json.loads((tmp_path / 'search' / 'result.json').read_text())['best'] == best
    # the best score is evaluation.synthetic's stripe IoU of the exported sub-net's saved translations
    out = _save_translations(export_subnet(net, best['config']).eval(), data, tmp_path / 'fake_B')
    expected = synthetic.score_translations(out, data, progress=False, kid=False)['mean']['stripe_iou']
    assert best['score'] == pytest.approx(expected, abs=1e-12)
    # started again on its log, the search replays it and ends the same
    assert script.main(args)['best'] == best
    assert (tmp_path / 'search' / 'candidates.jsonl').read_text().splitlines() == lines


@pytest.mark.slow
def test_search_cli_fid_criterion(tmp_path):
    """FID against a folder and against its mu/sigma .npz: the same score as evaluation.fid on saved images."""
    import numpy as np
    import torch
    import torchvision

    from evaluation import fid
    from tests.conftest import load_script
    script = load_script('scripts/evolution_search.py')
    data, run, net = _supernet_run(tmp_path)
    torch.manual_seed(0)
    inception = torchvision.models.inception_v3(num_classes=1008, aux_logits=False, weights=None, init_weights=False)
    weights = tmp_path / fid.FID_WEIGHTS_FILE
    torch.save(inception.state_dict(), weights)
    features = fid.InceptionFeatures(fid.build_inception(torch.load(weights, weights_only=True), dims=64), dims=64)
    real = features(data / 'testB')[0]
    np.savez(tmp_path / 'real.npz', mu=real.mean(axis=0), sigma=np.cov(real, rowvar=False))
    budget = mobile_macs((8,) * 8, 32)
    common = ['--checkpoints_dir', str(tmp_path / 'ckpt'), '--name', 'supernet', '--phase', 'test', '--criterion',
              'fid', '--fid_weights', str(weights), '--dims', '64', '--budget', str(budget), '--population_size',
              '2', '--generations', '1', '--no_tqdm', '--device', 'cpu']
    by_folder = script.main(common + ['--real_stats', str(data / 'testB'), '--output_dir', str(tmp_path / 's1')])
    by_npz = script.main(common + ['--real_stats', str(tmp_path / 'real.npz'), '--output_dir', str(tmp_path / 's2')])
    assert by_folder['higher_is_better'] is False
    assert by_npz['best']['config'] == by_folder['best']['config']
    assert by_npz['best']['score'] == pytest.approx(by_folder['best']['score'], rel=1e-6)
    # the score is evaluation.fid's FID of the exported sub-net's saved translations (translated one by one here,
    # in batches there: a pixel may round to the next grey level)
    from models.networks.compression import export_subnet
    out = _save_translations(export_subnet(net, by_npz['best']['config']).eval(), data, tmp_path / 'fake_B')
    assert by_npz['best']['score'] == pytest.approx(fid.frechet_distance(fid.feature_statistics(features(out)[0]), fid.feature_statistics(real)), rel=1e-4)
    with pytest.raises(SystemExit, match='needs --real_stats'):
        script.main(common + ['--output_dir', str(tmp_path / 's3')])


@pytest.mark.slow
def test_search_cli_miou_criterion_on_aligned_data(tmp_path):
    """Cityscapes' criterion (gan-compression's --criterion mIoU) on constructed aligned [photo | label map] images
    with random DRN-D-105 weights: the best score is evaluation.miou's mIoU of the exported sub-net's saved
    translations of the right halves (--direction BtoA), against the trainIds labels the table names."""
    import numpy as np
    import torch
    from PIL import Image

    from evaluation import miou
    from evaluation.drn import DRNSeg
    from models.networks.compression import export_subnet
    from tests.conftest import load_script
    from util.util import tensor2im
    script = load_script('scripts/evolution_search.py')
    _, run, net = _supernet_run(tmp_path)
    opts = json.loads((run / 'train_opt.json').read_text())
    (run / 'train_opt.json').write_text(json.dumps({**opts, 'dataset_mode': 'aligned', 'direction': 'BtoA'}))
    rng = np.random.default_rng(0)
    split, root = tmp_path / 'city' / 'train2', tmp_path / 'origin'
    split.mkdir(parents=True)
    (root / 'gtFine' / 'train' / 'c').mkdir(parents=True)
    lines, fake = [], tmp_path / 'fake_B'
    fake.mkdir()
    for i in range(3):
        ab = rng.integers(0, 256, (32, 64, 3), dtype=np.uint8)
        Image.fromarray(ab).save(split / f'{i}.png')
        label = rng.integers(0, 19, (24, 48)).astype(np.uint8)
        label[:2] = 255
        rel = f'gtFine/train/c/c_{i:06d}_000019_gtFine_trainIds.png'
        Image.fromarray(label).save(root / rel)
        lines.append(f'{i} {rel} leftImg8bit/train/c/c_{i:06d}_000019_leftImg8bit.png')
    (tmp_path / 'train_table.txt').write_text('\n'.join(lines) + '\n')
    torch.manual_seed(0)
    drn = DRNSeg(arch='drn_d_105').eval()
    torch.save(drn.state_dict(), tmp_path / 'drn-d-105_ms_cityscapes.pth')
    budget = mobile_macs((8, 4, 8, 4, 8, 4, 4, 8), 32)
    common = ['--checkpoints_dir', str(tmp_path / 'ckpt'), '--name', 'supernet', '--dataroot', str(tmp_path / 'city'),
              '--phase', 'train2', '--budget', str(budget), '--population_size', '2', '--generations', '1',
              '--no_tqdm', '--device', 'cpu', '--batch_size', '2']
    result = script.main(common + ['--criterion', 'mIoU', '--table', str(tmp_path / 'train_table.txt'),
                                   '--cityscapes_root', str(root), '--drn_weights',
                                   str(tmp_path / 'drn-d-105_ms_cityscapes.pth'), '--output_dir', str(tmp_path / 's')])
    assert result['higher_is_better'] is True and result['metric'] == 'mIoU' and result['num_images'] == 3
    best = result['best']
    assert best['macs'] <= budget
    sub = export_subnet(net, best['config']).eval()
    for i in range(3):
        ab = np.asarray(Image.open(split / f'{i}.png').convert('RGB'), dtype=np.float32)
        x = torch.from_numpy(ab[:, 32:].transpose(2, 0, 1)) / 255 * 2 - 1
        with torch.no_grad():
            Image.fromarray(tensor2im(sub(x[None]))).save(fake / f'{i}.png')
    expected = miou.evaluate_miou(fake, tmp_path / 'train_table.txt', root, drn)['metrics']['mIoU']
    assert best['score'] == pytest.approx(expected, abs=1e-9)
    with pytest.raises(SystemExit, match='needs --table'):
        script.main(common + ['--criterion', 'miou', '--output_dir', str(tmp_path / 's2')])


def test_search_cli_refuses_a_plain_generator(tmp_path):
    from tests.conftest import load_script
    script = load_script('scripts/evolution_search.py')
    data, run, _ = _supernet_run(tmp_path)
    opts = json.loads((run / 'train_opt.json').read_text())
    (run / 'train_opt.json').write_text(json.dumps({**opts, 'netG': 'sub_mobile_resnet_9blocks',
                                                    'config_str': '8_8_8_8_8_8_8_8'}))
    with pytest.raises(SystemExit, match='needs a super-net'):
        script.main(['--checkpoints_dir', str(tmp_path / 'ckpt'), '--name', 'supernet', '--phase', 'test',
                     '--criterion', 'synthetic', '--budget', '1e9', '--output_dir', str(tmp_path / 's'),
                     '--device', 'cpu'])


# ---- scripts/export_subnet.py, then test.py on the exported folder ---------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize('model', ['compression', 'cut'])
def test_export_then_test_py(tmp_path, model):
    import numpy as np
    from PIL import Image

    import test as test_script
    from models.networks.compression import SubMobileResnetGenerator
    from tests.conftest import load_script
    script = load_script('scripts/export_subnet.py')
    data, run, net = _supernet_run(tmp_path)
    opts = json.loads((run / 'train_opt.json').read_text())
    (run / 'train_opt.json').write_text(json.dumps({**opts, 'model': model}))
    config = '4_8_8_4_8_4_8_4'
    (tmp_path / 'result.json').write_text(json.dumps({'best': {'config': config}}))
    out = tmp_path / 'ckpt' / 'exported' / 'latest_net_G.pth'
    summary = script.main(['--checkpoint', str(run), '--search_result', str(tmp_path / 'result.json'),
                           '--output', str(out)])
    assert summary['max_abs_difference'] == 0 and summary['macs'] == mobile_macs(config, 32)
    state = json.loads((out.parent / 'train_opt.json').read_text())
    assert (state['netG'], state['config_str'], state['model']) == ('sub_mobile_resnet_9blocks', config, model)
    sub = SubMobileResnetGenerator(3, 3, config, output='residual')
    sub.load_state_dict(torch_load(out), strict=True)
    assert summary['params'] == sum(p.numel() for p in sub.parameters())
    # test.py rebuilds the sub-net from the folder's options alone and translates as the super-net does
    test_script.main(['--dataroot', str(data), '--checkpoints_dir', str(tmp_path / 'ckpt'), '--name', 'exported',
                      '--results_dir', str(tmp_path / 'results'), '--gpu_ids', '-1', '--crop_size', '32',
                      '--load_size', '32', '--num_test', '5'])
    produced = tmp_path / 'results' / 'exported' / 'test_latest' / 'images' / 'fake_B'
    expected = _save_translations(net.set_config(config).eval(), data, tmp_path / 'expected')
    names = sorted(p.name for p in expected.iterdir())
    assert sorted(p.name for p in produced.iterdir()) == names
    for name in names:
        assert np.array_equal(np.asarray(Image.open(produced / name)), np.asarray(Image.open(expected / name)))
    # the same export again is fine; a folder holding another network is not overwritten
    script.main(['--checkpoint', str(run / 'latest_net_G.pth'), '--config_str', config, '--output', str(out)])
    with pytest.raises(SystemExit, match='describes another network'):
        script.main(['--checkpoint', str(run), '--config_str', '8_8_8_8_8_8_8_8', '--output', str(out)])


def torch_load(path):
    import torch
    return torch.load(path, weights_only=True)


def test_export_needs_options_or_ngf(tmp_path):
    import torch

    from models.networks import define_G
    from tests.conftest import load_script
    script = load_script('scripts/export_subnet.py')
    net = define_G(3, 3, 8, 'super_mobile_resnet_9blocks', init_type='normal', init_gain=0.3)
    torch.save({f'module.{k}': v for k, v in net.state_dict().items()}, tmp_path / 'net_G.pth')
    args = ['--checkpoint', str(tmp_path / 'net_G.pth'), '--config_str', '4_4_8_4_4_8_4_8',
            '--output', str(tmp_path / 'out' / 'latest_net_G.pth')]
    with pytest.raises(SystemExit, match='give --ngf'):
        script.main(args)
    with pytest.raises(ValueError, match='not a super_mobile_resnet_9blocks of --ngf 16: .*keys of another shape'):
        script.main(args + ['--ngf', '16'])
    summary = script.main(args + ['--ngf', '8', '--crop_size', '64'])
    assert summary['macs'] == mobile_macs('4_4_8_4_4_8_4_8', 64) and summary['max_abs_difference'] == 0
    with pytest.raises(SystemExit, match='--config_str or --search_result'):
        script.main(args[:2] + args[4:])


@pytest.mark.slow
def test_search_cli_killed_and_resumed(tmp_path):
    """SIGKILL of a running `scripts/evolution_search.py` after some candidates; run again, it ends as a search
    that was never interrupted (same log, same result)."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from tests.conftest import ROOT, load_script
    script = load_script('scripts/evolution_search.py')
    _supernet_run(tmp_path)
    budget = mobile_macs((8, 8, 8, 4, 8, 4, 8, 8), 32)

    def argv(out):
        return ['--checkpoints_dir', str(tmp_path / 'ckpt'), '--name', 'supernet', '--phase', 'test', '--criterion',
                'synthetic', '--budget', str(budget), '--population_size', '6', '--generations', '12',
                '--mutate_prob', '0.4', '--output_dir', str(tmp_path / out), '--no_tqdm', '--device', 'cpu']
    whole = script.main(argv('whole'))
    log = tmp_path / 'killed' / 'candidates.jsonl'
    env = dict(os.environ, OMP_NUM_THREADS='1', MKL_NUM_THREADS='1')
    proc = subprocess.Popen([sys.executable, 'scripts/evolution_search.py', *argv('killed')], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while time.time() < deadline and proc.poll() is None:
            if log.is_file() and len(log.read_text().splitlines()) >= 8:
                break
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, 'the search ended before it was killed'
    done = len(log.read_text().splitlines())
    assert 8 <= done < 1 + 6 * 13
    resumed = script.main(argv('killed'))
    assert resumed['best'] == whole['best'] and resumed['history'] == whole['history']
    assert log.read_text() == (tmp_path / 'whole' / 'candidates.jsonl').read_text()
