"""The compression and evaluation tools run as a user runs them (issue 36): a search log of other inputs, a kill
while a resumed search opens its log, two searches in one folder, non-finite statistics and scores, an import into
an existing run, aligned data that holds no pairs, and the one-line errors of scripts/evolution_search.py,
export_subnet.py, import_teacher.py, count_macs.py and of --model compression's teacher check."""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from PIL import Image

from evaluation.macs import mobile_macs
from tests.conftest import ROOT, TINY, load_script
from tests.test_search import _supernet_run

pytestmark = pytest.mark.slow
ENV = dict(os.environ, OMP_NUM_THREADS='1', MKL_NUM_THREADS='1')
ENV.pop('SRC_DEBUG', None)


def command(*argv, timeout=300):
    return subprocess.run([sys.executable, *map(str, argv)], cwd=ROOT, env=ENV, capture_output=True, text=True,
                          timeout=timeout)


def assert_one_line_error(proc, *needles, code=1):
    """Exit status `code`, no traceback, and stderr ending with the one `error:` line, which holds `needles`."""
    assert proc.returncode == code, (proc.returncode, proc.stderr[-3000:])
    lines = proc.stderr.strip().splitlines()
    assert 'Traceback' not in proc.stderr and lines[-1].startswith('error: '), proc.stderr[-3000:]
    assert sum(line.startswith('error:') for line in lines) == 1
    for needle in needles:
        assert needle in lines[-1], lines[-1]


def search_argv(tmp_path, out, *extra, budget=None, population=2, generations=1):
    budget = budget or mobile_macs((8, 8, 8, 4, 8, 4, 8, 8), 32)
    return ['--checkpoints_dir', tmp_path / 'ckpt', '--name', 'supernet', '--phase', 'test', '--criterion',
            'synthetic', '--budget', budget, '--population_size', population, '--generations', generations,
            '--mutate_prob', '0.4', '--output_dir', tmp_path / out, '--no_tqdm', '--device', 'cpu', *extra]


def strs(argv):
    return [str(a) for a in argv]


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


# ---- item 2: the log records what its scores depend on ---------------------------------------------------------

def test_a_search_log_of_other_weights_images_or_metric_is_refused_or_restarted(tmp_path):
    script = load_script('scripts/evolution_search.py')
    _supernet_run(tmp_path)
    argv = search_argv(tmp_path, 'search', '--num_images', '2')
    script.main(strs(argv))
    log = tmp_path / 'search' / 'candidates.jsonl'
    before = log.read_text()
    # new super-net weights: the old scores are not replayed as the new search's
    from models.networks import define_G
    torch.manual_seed(1)
    other = define_G(3, 3, 8, 'super_mobile_resnet_9blocks', init_type='normal', init_gain=0.3, G_output='residual')
    torch.save(other.state_dict(), tmp_path / 'ckpt' / 'supernet' / 'latest_net_G.pth')
    assert_one_line_error(command('scripts/evolution_search.py', *argv), 'holds the scores of another search',
                          'weights_sha256', '--restart')
    assert log.read_text() == before
    inputs = read_jsonl(log)[0]['inputs']
    assert inputs['criterion'] == 'synthetic' and inputs['metric'] == 'stripe_iou' and inputs['images']['count'] == 2
    with pytest.raises(ValueError, match=r'images\.count: 2 -> 1'):
        script.main(strs(search_argv(tmp_path, 'search', '--num_images', '1')))
    with pytest.raises(ValueError, match=r'metric: "stripe_iou" -> "shape_iou"'):
        script.main(strs(argv) + ['--metric', 'shape_iou'])
    assert log.read_text() == before
    restarted = command('scripts/evolution_search.py', *argv, '--restart')
    assert restarted.returncode == 0, restarted.stderr[-3000:]
    lines = read_jsonl(log)
    from util.util import sha256
    assert lines[0]['inputs']['weights_sha256'] == sha256(tmp_path / 'ckpt' / 'supernet' / 'latest_net_G.pth')
    assert len(lines) == 1 + 2 * 2
    assert json.loads((tmp_path / 'search' / 'result.json').read_text())['inputs'] == lines[0]['inputs']


# ---- item 3: a kill while a resumed search opens its log; two searches in one folder -----------------------------

def test_sigkill_while_a_resumed_search_opens_its_1_mb_log_keeps_every_complete_line(tmp_path, monkeypatch):
    """A 1.2 MB log (8,020 candidates, written here with a made-up criterion), cut to 95 % of its lines plus half a
    line; the resumed search is SIGKILLed as soon as the log's size changes (before: the rewrite emptied it)."""
    script = load_script('scripts/evolution_search.py')
    _supernet_run(tmp_path)
    real = script.synthetic_criterion

    def made_up(*args, **kwargs):  # the real criterion's inputs and direction, a quick score
        _, higher, *inputs = real(*args, **kwargs)
        return (lambda config: float(sum(config)), higher, *inputs)
    monkeypatch.setattr(script, 'synthetic_criterion', made_up)
    monkeypatch.setattr(os, 'fsync', lambda fd: None)
    budget = mobile_macs((4, 4, 4, 4, 4, 4, 4, 8), 32)
    argv = search_argv(tmp_path, 'search', '--num_images', '1', '--weighted_sample', '2', budget=budget,
                       population=20, generations=400)
    script.main(strs(argv))
    monkeypatch.undo()
    log = tmp_path / 'search' / 'candidates.jsonl'
    lines = log.read_bytes().splitlines(keepends=True)
    assert len(lines) == 1 + 20 * 401 and log.stat().st_size > 1e6
    kept = b''.join(lines[:int(0.95 * len(lines))])
    log.write_bytes(kept + lines[len(kept.splitlines())][:40])  # and a line cut short by an earlier kill
    size = log.stat().st_size
    proc = subprocess.Popen([sys.executable, 'scripts/evolution_search.py', *strs(argv)], cwd=ROOT, env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 240
        while time.time() < deadline and proc.poll() is None and log.stat().st_size == size:
            pass  # busy: the window of a rewrite is milliseconds
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read()[-3000:]
    assert log.read_bytes().startswith(kept)


def test_a_second_search_in_one_output_dir_is_refused(tmp_path):
    """The first search holds --output_dir's lock (stopped with SIGSTOP while it holds it); the second exits with
    one line before it writes anything."""
    _supernet_run(tmp_path)
    argv = strs(search_argv(tmp_path, 'search', '--num_images', '1', generations=50))
    log = tmp_path / 'search' / 'candidates.jsonl'
    first = subprocess.Popen([sys.executable, 'scripts/evolution_search.py', *argv], cwd=ROOT, env=ENV,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 240
        while time.time() < deadline and first.poll() is None and not (log.is_file() and log.stat().st_size > 0):
            time.sleep(0.05)
        first.send_signal(signal.SIGSTOP)
        assert first.poll() is None, first.stderr.read()[-3000:]
        held = log.read_bytes()
        second = command('scripts/evolution_search.py', *argv, timeout=120)
        assert_one_line_error(second, f'--output_dir {tmp_path / "search"} is in use by another search',
                              f'PID {first.pid}')
        assert log.read_bytes() == held
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=60)


# ---- item 4: non-finite statistics and scores --------------------------------------------------------------------

def test_non_finite_statistics_and_scores_are_refused_by_name(tmp_path):
    from evaluation import fid
    from evaluation.common import EvaluationError
    from util.errors import DivergedError
    from evaluation.search import EvolutionSearch, SearchSettings
    from models.networks.compression import ChannelConfigs
    _supernet_run(tmp_path)
    mu, sigma = np.zeros(64), np.eye(64)
    mu[5] = np.inf
    np.savez(tmp_path / 'inf.npz', mu=mu, sigma=sigma)
    sigma_nan = np.eye(64)
    sigma_nan[2, 3] = np.nan
    np.savez(tmp_path / 'nan.npz', mu=np.zeros(64), sigma=sigma_nan)
    proc = command('scripts/evolution_search.py', *search_argv(tmp_path, 'search', '--criterion', 'fid', '--dims',
                                                               '64', '--real_stats', tmp_path / 'inf.npz'))
    assert_one_line_error(proc, f'{tmp_path / "inf.npz"}: mu holds 1 non-finite value(s) (first at index (5,))')
    assert not (tmp_path / 'search').exists()
    with pytest.raises(EvaluationError, match=r'nan.npz: sigma holds 1 non-finite value\(s\) \(first at index '
                                              r'\(2, 3\)'):
        fid.load_real_stats(tmp_path / 'nan.npz', 64)
    with pytest.raises(EvaluationError, match='FID came out nan'):
        fid.frechet_distance((np.zeros(4), np.eye(4)), (np.full(4, np.nan), np.eye(4)), pytorch_fid=False)

    def score(config):
        return float('inf') if config[0] == 4 else 1.0
    search = EvolutionSearch(ChannelConfigs('channels-8'), score, False, lambda c: mobile_macs(c, 32),
                             SearchSettings(budget=1e12, population_size=8, generations=1), progress=False)
    with pytest.raises(DivergedError, match=r'the criterion gave inf for configuration 4(_[48]){7}: a non-finite'):
        search.run()


# ---- item 5: scripts/import_teacher.py into an existing run folder ----------------------------------------------

def test_import_teacher_refuses_an_existing_run_unless_overwrite_and_writes_its_options(tmp_path):
    from models.networks import define_G
    torch.manual_seed(0)
    official = define_G(3, 3, 4, 'resnet_9blocks', use_dropout=True, no_antialias=True, no_antialias_up=True)
    torch.save({f'module.{k}': v for k, v in official.state_dict().items()}, tmp_path / 'official_net_G.pth')
    run = tmp_path / 'ckpt' / 'teacher'
    argv = ['scripts/import_teacher.py', '--source', tmp_path / 'official_net_G.pth', '--checkpoints_dir',
            tmp_path / 'ckpt', '--name', 'teacher', '--ngf', '4', '--model', 'pix2pix']
    first = command(*argv)
    assert first.returncode == 0, first.stderr[-3000:]
    assert json.loads((run / 'train_opt.json').read_text())['direction'] == 'AtoB'
    weights = (run / 'latest_net_G.pth').read_bytes()
    assert_one_line_error(command(*argv, '--direction', 'BtoA'), f'run folder {run} exists (latest_net_G.pth)',
                          '--overwrite')
    assert json.loads((run / 'train_opt.json').read_text())['direction'] == 'AtoB'
    assert (run / 'latest_net_G.pth').read_bytes() == weights
    again = command(*argv, '--direction', 'BtoA', '--overwrite')
    assert again.returncode == 0, again.stderr[-3000:]
    assert json.loads((run / 'train_opt.json').read_text())['direction'] == 'BtoA'
    assert sorted(p.name for p in run.iterdir()) == ['latest_net_G.pth', 'train_opt.json']  # no temporary file


# ---- item 6: --model pix2pix on single photos ----------------------------------------------------------------------

def test_pix2pix_on_a_folder_of_single_square_photos_is_refused_naming_the_file(tmp_path):
    (tmp_path / 'data' / 'train').mkdir(parents=True)
    for i in range(2):
        Image.new('RGB', (32, 32), (40 * i, 90, 200)).save(tmp_path / 'data' / 'train' / f'{i}.png')
    proc = command('train.py', '--model', 'pix2pix', '--dataroot', tmp_path / 'data', '--checkpoints_dir',
                   tmp_path / 'ckpt', '--name', 'run', *TINY, '--netG', 'resnet_6blocks', '--max_iters', '1')
    assert_one_line_error(proc, f'{tmp_path / "data" / "train" / "0.png"} is 32x32', '[A | B] pairs')


# ---- the one-line errors -----------------------------------------------------------------------------------------

class CodeObject:
    """Pickled into a .pth file: loading it would import and run this module's code."""


def error_case(name, tmp_path):
    """(argv, needles) of one deliberate error of the tools."""
    _supernet_run(tmp_path)
    run = tmp_path / 'ckpt' / 'supernet'
    search = strs(search_argv(tmp_path, 'search'))
    export = ['scripts/export_subnet.py', '--checkpoint', run, '--output', tmp_path / 'sub' / 'latest_net_G.pth']
    if name == 'wrong_keys':
        torch.save({'model.0.weight': torch.zeros(1)}, run / 'latest_net_G.pth')
    if name == 'code_pickle':
        torch.save({'model.0.weight': CodeObject()}, run / 'latest_net_G.pth')
    return {
        'bad_configuration': ([*export, '--config_str', '8_8_x'],
                              ['a channel configuration is 8 integers joined by "_"', "'8_8_x'"]),
        'budget_below_every_configuration': (['scripts/evolution_search.py', *search, '--budget', '1000'],
                                             ['budget 1000 MACs is below the smallest configuration']),
        'missing_statistics': (['scripts/evolution_search.py', *search, '--criterion', 'fid', '--real_stats',
                                tmp_path / 'absent.npz'], [f'real statistics {tmp_path / "absent.npz"} not found']),
        'wrong_keys': ([*export, '--config_str', '8_8_8_8_8_8_8_8'],
                       [f'{run / "latest_net_G.pth"} is not a super_mobile_resnet_9blocks of --ngf 8: ',
                        'missing keys', '1 unexpected keys (model.0.weight)']),
        'code_pickle': (['scripts/evolution_search.py', *search],
                        [f'refused to load {run / "latest_net_G.pth"}: it contains tests.test_tool_faults.CodeObject']),
        'count_macs_config_of_a_resnet': (['scripts/count_macs.py', '--netG', 'resnet_9blocks', '--config',
                                           '16_16_32_16_16_64_16_24'], ['--netG resnet_9blocks has none']),
        'negative_num_images': (['scripts/evolution_search.py', *search, '--num_images', '-1'],
                                ['--num_images must be >= 1', 'got -1']),
    }[name]


@pytest.mark.parametrize('name', ['bad_configuration', 'budget_below_every_configuration', 'missing_statistics',
                                  'wrong_keys', 'code_pickle', 'count_macs_config_of_a_resnet',
                                  'negative_num_images'])
def test_deliberate_errors_of_the_tools_are_one_line(name, tmp_path):
    argv, needles = error_case(name, tmp_path)
    assert_one_line_error(command(*argv), *needles)
    assert not (tmp_path / 'search').exists() and not (tmp_path / 'sub').exists()


def test_a_teacher_of_other_widths_is_one_line_naming_the_flags_to_pass(tmp_path):
    from datasets.make_synthetic_dataset import make_synthetic_dataset
    from models.networks import define_G
    make_synthetic_dataset(tmp_path / 'data', n_train=2, n_test=1, size=32, seed=0)
    teacher = define_G(3, 3, 8, 'resnet_9blocks', no_antialias=True, no_antialias_up=True)
    torch.save(teacher.state_dict(), tmp_path / 'teacher.pth')
    proc = command('train.py', '--model', 'compression', '--dataroot', tmp_path / 'data', '--checkpoints_dir',
                   tmp_path / 'ckpt', '--name', 'run', *TINY, '--num_patches', '16', '--teacher_path',
                   tmp_path / 'teacher.pth', '--teacher_ngf', '4', '--max_iters', '1')
    assert_one_line_error(proc, f'--teacher_path {tmp_path / "teacher.pth"} does not fit --teacher_netG '
                          'resnet_9blocks --teacher_ngf 4', 'keys of another shape',
                          'pass --teacher_netG resnet_9blocks --teacher_ngf 8')
    assert len(proc.stderr.strip().splitlines()) <= 3  # before: 48 lines of load_state_dict's message


def test_miou_refuses_labels_of_another_aspect_or_below_the_output_stride(tmp_path):
    from evaluation import miou
    from evaluation.common import EvaluationError
    from tests.test_miou import RedToClass, uniform_photo, write_set

    class Strided(RedToClass):
        output_stride = 8
    for name, label, match in (('tiny', np.zeros((2, 4)), 'is 4x2, below the segmenter\'s output stride 8'),
                               ('aspect', np.zeros((30, 8)), 'is 8x30, photo .* 8x8: the label has neither')):
        results, table, root = write_set(tmp_path / name, [uniform_photo(0)], [label])
        with pytest.raises(EvaluationError, match=match):
            miou.evaluate_miou(results / 'images' / 'fake_B', table, root, Strided())
    results, table, root = write_set(tmp_path / 'fits', [uniform_photo(0)], [np.zeros((8, 16))])
    assert miou.evaluate_miou(results / 'images' / 'fake_B', table, root, Strided())['metrics']['mIoU'] == 100
