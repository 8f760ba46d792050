"""evaluation.synthetic and evaluation.curves: phase-invariant scores on constructed answers, and the
learning-curve command on a fabricated run."""
import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from evaluation import curves, synthetic
from evaluation.common import EvaluationError
from tests.conftest import load_script

dataset = load_script('datasets/make_synthetic_dataset.py')
SIZE, N_TEST = 64, 10


@pytest.fixture(scope='module')
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp('syn')
    dataset.make_synthetic_dataset(root, n_train=2, n_test=N_TEST, size=SIZE, seed=0)
    return root


def write_images(folder, images):
    folder.mkdir(parents=True, exist_ok=True)
    for name, image in images.items():
        Image.fromarray(image).save(folder / f'{name}.png')
    return folder


def rerendered(change):
    """testA scenes rendered in domain B after `change(obj)` edits each object's stripes."""
    out = {}
    for index in range(N_TEST):
        scene = dataset.sample_scene(dataset._scene_rng(0, 'testA', index), SIZE)
        for obj in scene['objects']:
            change(obj)
        out[f'{index:06d}'] = dataset.render(scene, SIZE, 'B')[0]
    return out


def scores(folder, data_root):
    return synthetic.score_translations(folder, data_root, progress=False)['mean']


@pytest.fixture(scope='module')
def truth(data_root):
    return scores(data_root / 'testA_gt', data_root)


def test_the_truth_scores_at_the_top(truth):
    assert truth['stripe_iou'] > 0.8 and truth['stripe_recall'] > 0.95
    assert truth['bg_l1'] == 0 and truth['bg_psnr'] == math.inf and truth['psnr_gt'] == math.inf
    assert truth['leakage'] < 0.05 and truth['shape_iou'] > 0.6


def test_other_stripe_phase_and_angle_score_as_well_as_the_truth(data_root, truth, tmp_path):
    def shift(obj):
        obj['stripe_phase'] += math.pi
        obj['stripe_angle'] += 0.4
    shifted = scores(write_images(tmp_path / 'shifted', rerendered(shift)), data_root)
    assert shifted['stripe_iou'] == pytest.approx(truth['stripe_iou'], abs=0.03)
    assert shifted['leakage'] == pytest.approx(truth['leakage'], abs=0.02)
    assert shifted['shape_iou'] == pytest.approx(truth['shape_iou'], abs=0.05)
    assert shifted['bg_l1'] == 0
    # the pixel-wise score the headline scores replace ranks this perfect answer below a plain copy
    assert shifted['psnr_gt'] < scores(data_root / 'testA', data_root)['psnr_gt']


def test_copying_the_input_finds_no_stripes(data_root, truth):
    copy = scores(data_root / 'testA', data_root)
    assert copy['stripe_iou'] == 0 and copy['stripe_recall'] == 0 and copy['leakage'] == 0
    assert copy['shape_iou'] == 0 and copy['bg_l1'] == 0
    assert copy['kid'] > 3 * max(truth['kid'], 0.1)


def test_stripes_over_the_whole_image_leak(data_root, truth, tmp_path):
    x = (np.arange(SIZE) + 0.5) / SIZE
    stripes = np.where(np.cos(2 * math.pi * x / 0.095) > 0, 0.92, 0.08)
    image = np.rint(np.broadcast_to(stripes[None, :, None], (SIZE, SIZE, 3)) * 255).astype(np.uint8)
    everywhere = scores(write_images(tmp_path / 'all', {f'{i:06d}': image for i in range(N_TEST)}), data_root)
    assert everywhere['stripe_iou'] < 0.4 and everywhere['leakage'] > 0.9
    assert everywhere['bg_l1'] > 0.2 and everywhere['shape_iou'] < 0.4
    assert everywhere['kid'] > truth['kid']


def test_plain_recoloured_objects_keep_shape_without_stripes(data_root, tmp_path):
    def paint(obj):
        obj['stripe_period'] = 10.0  # one stripe wider than the image: a plain object in one tone
    plain = scores(write_images(tmp_path / 'plain', rerendered(paint)), data_root)
    assert plain['stripe_iou'] < 0.1
    assert plain['bg_l1'] == 0


def test_bad_input_is_named(data_root, tmp_path):
    with pytest.raises(EvaluationError, match='is not a synthetic dataset: .*testA is missing'):
        synthetic.score_translations(data_root / 'testA', tmp_path)
    small = np.zeros((SIZE // 2, SIZE // 2, 3), np.uint8)
    with pytest.raises(EvaluationError, match='expected 64x64'):
        synthetic.score_translations(write_images(tmp_path / 'small', {'000000': small}), data_root)
    with pytest.raises(EvaluationError, match='no input of the same name'):
        synthetic.score_translations(write_images(tmp_path / 'odd', {'zebra': small}), data_root)


def test_command_line_writes_json_and_grid(data_root, tmp_path, capsys):
    out, grid = tmp_path / 's.json', tmp_path / 'grid.png'
    assert synthetic.main([str(data_root / 'testA_gt'), '--data', str(data_root), '--json', str(out),
                           '--grid', str(grid), '--grid_num', '3', '--baselines']) is None
    result = json.loads(out.read_text())
    assert result['num_images'] == N_TEST and result['baselines']['copy_input']['stripe_iou'] == 0
    with Image.open(grid) as img:
        assert img.height > 3 * SIZE * 2 and img.width > 4 * SIZE * 2


# ---- learning curves ----------------------------------------------------------------------
def fabricate_run(run_dir, tags):
    """A run folder as train.py leaves it, with random generators at the given (tag, iterations)."""
    from models.networks import define_G
    run_dir.mkdir(parents=True)
    opts = {'input_nc': 3, 'output_nc': 3, 'ngf': 4, 'netG': 'resnet_4blocks', 'normG': 'instance',
            'no_dropout': True, 'init_type': 'xavier', 'init_gain': 0.02, 'no_antialias': False,
            'no_antialias_up': False, 'crop_size': SIZE, 'load_size': SIZE, 'stylegan2_G_num_downsampling': 1}
    (run_dir / 'train_opt.json').write_text(json.dumps(opts))
    for i, (tag, iters) in enumerate(tags):
        torch.manual_seed(i)
        net = define_G(3, 3, 4, 'resnet_4blocks')
        torch.save(net.state_dict(), run_dir / f'{tag}_net_G.pth')
        torch.save({'total_iters': iters}, run_dir / f'{tag}_train_state.pth')
    torch.save(net.state_dict(), run_dir / 'latest_net_G.pth')  # not a point of the curve


@pytest.mark.slow
def test_curves_score_every_numbered_checkpoint_and_reuse_scores(data_root, tmp_path, monkeypatch, capsys):
    for seed in (0, 1):
        fabricate_run(tmp_path / 'ck' / f'toy_seed{seed}', [('1', 10), ('2', 20)])
    fabricate_run(tmp_path / 'ck' / 'other', [('iter_5', 5)])
    (tmp_path / 'ck' / 'other' / 'iter_5_train_state.pth').unlink()  # iterations from the tag
    out = tmp_path / 'curves'
    runs = [str(p) for p in sorted((tmp_path / 'ck').iterdir())]
    curves.main(['--runs', *runs, '--data', str(data_root), '--out', str(out)])
    saved = json.loads((out / 'curves.json').read_text())
    assert [(r['run'], r['tag'], r['iterations']) for r in saved['rows']] == [
        ('other', 'iter_5', 5), ('toy_seed0', '1', 10), ('toy_seed0', '2', 20), ('toy_seed1', '1', 10),
        ('toy_seed1', '2', 20)]
    assert {r['group'] for r in saved['rows']} == {'other', 'toy'}
    assert (out / 'curves.png').stat().st_size > 10_000
    assert (out / 'curves.csv').read_text().splitlines()[0].startswith('run,group,tag,weights,iterations')
    summary = capsys.readouterr().out
    assert '| toy | 2 | 20 |' in summary and '| other | 1 | 5 |' in summary
    # a mean over seeds: the group's point at 20 iterations is the mean of its two runs
    its, mean, low, high, n = curves.aggregate(saved['rows'], 'bg_l1')['toy']
    values = [r['bg_l1'] for r in saved['rows'] if r['group'] == 'toy' and r['iterations'] == 20]
    assert n == 2 and list(its) == [10, 20] and mean[-1] == pytest.approx(np.mean(values))
    assert low[-1] == min(values) and high[-1] == max(values)

    def no_translation(*args):
        raise AssertionError('a checkpoint was scored again')
    monkeypatch.setattr(curves, 'translate', no_translation)
    curves.main(['--runs', *runs, '--data', str(data_root), '--out', str(out)])


def test_curves_match_scores_of_saved_translations(data_root, tmp_path):
    """In-process translation + scores = test.py-style saved PNGs scored by evaluation.synthetic."""
    fabricate_run(tmp_path / 'run', [('1', 10)])
    opts = curves.load_run_options(tmp_path / 'run')
    net = curves.build_generator(opts)
    net.load_state_dict(torch.load(tmp_path / 'run' / '1_net_G.pth', weights_only=True))
    outputs = curves.translate(net, curves.load_inputs(data_root, SIZE))
    write_images(tmp_path / 'png', {k: np.rint(v * 255).astype(np.uint8) for k, v in outputs.items()})
    reference = synthetic.testB_features(data_root)
    in_memory = curves.score_outputs(outputs, data_root, reference)
    from_files = scores(tmp_path / 'png', data_root)
    assert in_memory == pytest.approx(from_files, rel=1e-9)


def test_curves_refuse_a_run_without_options_or_numbered_checkpoints(data_root, tmp_path):
    from models.networks.generators import GENERATOR_KEYS
    run = tmp_path / 'empty'
    run.mkdir()
    with pytest.raises(EvaluationError, match='train_opt.json is missing'):
        curves.score_runs([run], data_root, progress=False)
    (run / 'train_opt.json').write_text(json.dumps({k: None for k in GENERATOR_KEYS}))
    with pytest.raises(EvaluationError, match='no numbered G checkpoints'):
        curves.score_runs([run], data_root, progress=False)
    (run / 'train_opt.json').write_text(json.dumps({k: None for k in GENERATOR_KEYS if k != 'ngf'}))
    with pytest.raises(EvaluationError, match=r"lacks \['ngf'\]"):
        curves.score_runs([run], data_root, progress=False)
