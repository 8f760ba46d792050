"""--logger: TensorBoard and W&B (offline) receive losses, learning rates, images and options, read back from
their files; a resumed run continues both; neither package (nor visdom, dominate) is imported unless used."""
import importlib.util
import io
import json
import shutil
import struct
import subprocess
import sys
import time
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from tests.conftest import ROOT
from util import loggers
from util.visualizer import Visualizer

pytest.importorskip('tensorboard', reason='pip install -r requirements-loggers.txt')
pytest.importorskip('wandb', reason='pip install -r requirements-loggers.txt')
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402
from wandb.proto import wandb_internal_pb2  # noqa: E402


@pytest.fixture(autouse=True)
def wandb_offline(monkeypatch, tmp_path):
    """W&B without a network, its settings and cache kept out of the home folder."""
    monkeypatch.setenv('WANDB_MODE', 'offline')
    monkeypatch.setenv('WANDB_SILENT', 'true')
    for var in ('WANDB_CONFIG_DIR', 'WANDB_CACHE_DIR', 'WANDB_DATA_DIR'):
        monkeypatch.setenv(var, str(tmp_path / 'wandb_home'))


def make_opt(tmp_path, logger, **overrides):
    opt = SimpleNamespace(display_id=0, isTrain=True, no_html=True, display_winsize=32, name='exp',
                          checkpoints_dir=str(tmp_path), logger=logger, use_wandb=False,
                          wandb_project_name='test', wandb_run_name=None, continue_train=False)
    vars(opt).update(overrides)
    return opt


def visuals(seed):
    gen = torch.Generator().manual_seed(seed)
    return {label: torch.rand(1, 3, 8, 8, generator=gen) * 2 - 1 for label in ('real_A', 'fake_B')}


def feed(vis, steps, epoch=1):
    """What train.py sends at its print and display points, at total_iters = each of `steps`."""
    for step in steps:
        vis.print_current_losses(epoch, step, {'G': step / 10, 'NCE': torch.tensor(0.5)}, 0.1, 0.01,
                                 total_iters=step, learning_rates={'G': 2e-4, 'D': 1e-4})
        vis.display_current_results(visuals(step), epoch, False, total_iters=step)


def scalars(log_dir, tag):
    acc = EventAccumulator(str(log_dir), size_guidance={'scalars': 0, 'images': 0, 'tensors': 0})
    acc.Reload()
    return acc, [(e.step, e.value) for e in acc.Scalars(tag)]


def wandb_records(path):
    """Records of a W&B run file (run-<id>.wandb): a ':W&B' header, then LevelDB-log records in 32 KiB blocks,
    each (crc32 u32, length u16, type u8) + data; types 1 full, 2 first, 3 middle, 4 last."""
    raw = path.read_bytes()
    assert raw[:4] == b':W&B'
    pos, block, pending = 7, 32768, b''
    while pos + 7 <= len(raw):
        left = block - pos % block
        _, length, kind = struct.unpack('<IHB', raw[pos:pos + 7]) if left >= 7 else (0, 0, 0)
        if kind == 0:  # the rest of the block is padding
            pos += left
            continue
        if pos + 7 + length > len(raw):  # a record still being written
            return
        pending += raw[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            pending = b''
            yield record


def finished_records(folder, timeout=60.0):
    """The records of the run file in `folder` once W&B's service has written them all (up to the 'exit' record:
    wandb-core writes the file on its own, and may still be writing when run.finish() has returned)."""
    deadline = time.monotonic() + timeout
    while True:
        records = list(wandb_records(next(folder.glob('run-*.wandb'))))
        if any(r.WhichOneof('record_type') == 'exit' for r in records) or time.monotonic() > deadline:
            return records
        time.sleep(0.1)


def wandb_run(run_dir):
    """(id, config, history rows) of each offline W&B run in run_dir/wandb, oldest first."""
    runs = []
    for folder in sorted((run_dir / 'wandb').glob('offline-run-*')):
        run_id, config, history = None, {}, []
        for record in finished_records(folder):
            kind = record.WhichOneof('record_type')
            if kind == 'run':
                run_id = record.run.run_id
                config.update({i.key: json.loads(i.value_json) for i in record.run.config.update})
            elif kind == 'history':
                history.append({i.key or '/'.join(i.nested_key): json.loads(i.value_json)
                                for i in record.history.item})
        runs.append((run_id, config, history))
    return runs


def test_logger_flag_and_cut_spellings():
    assert loggers.logger_list('tensorboard, wandb') == ['tensorboard', 'wandb']
    assert loggers.logger_list('none') == []
    opt = SimpleNamespace(logger=['visdom', 'tensorboard'], use_wandb=True, display_id=0)
    assert loggers.chosen(opt) == ['tensorboard', 'wandb']  # --display_id 0 turns visdom off, --use_wandb adds
    assert loggers.chosen(SimpleNamespace(display_id=None)) == ['visdom']  # a Visualizer of CUT's options


def test_unknown_logger_and_missing_package_are_one_line_errors(tmp_path, monkeypatch, capsys):
    from options.train_options import TrainOptions
    argv = ['--dataroot', str(tmp_path), '--checkpoints_dir', str(tmp_path), '--gpu_ids', '-1']
    with pytest.raises(SystemExit):
        TrainOptions(argv + ['--logger', 'visdom,mlflow']).parse(save=False)
    assert 'unknown backend mlflow; valid: visdom, tensorboard, wandb' in capsys.readouterr().err
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, 'find_spec', lambda name, *a: None if name == 'wandb' else real(name, *a))
    with pytest.raises(SystemExit, match='--logger visdom,wandb needs the package.s. wandb: pip install -r '
                                         'requirements-loggers.txt'):
        TrainOptions(argv + ['--use_wandb']).parse(save=False)


def test_only_rank_zero_opens_them(tmp_path):
    vis = Visualizer(make_opt(tmp_path, ['tensorboard', 'wandb']), rank=1)
    feed(vis, [2])
    vis.close()
    assert vis.loggers == [] and list(tmp_path.iterdir()) == []


def test_tensorboard_gets_losses_rates_images_options_and_resume_continues(tmp_path):
    vis = Visualizer(make_opt(tmp_path, ['tensorboard']))
    feed(vis, [2, 4, 6, 8])
    vis.close()
    # resumed from a checkpoint at total_iters 4: the events of steps 6 and 8 give way to the new ones
    vis = Visualizer(make_opt(tmp_path, ['tensorboard'], lambda_SRC=0.05), start_step=4)
    for step in (6, 8, 10):
        vis.print_current_losses(2, step, {'G': -step, 'NCE': 0.5}, 0.1, 0.01, total_iters=step,
                                 learning_rates={'G': 1e-4, 'D': 5e-5})
    vis.close()
    acc, losses = scalars(tmp_path / 'exp' / 'tensorboard', 'loss/G')
    assert losses == [(2, pytest.approx(0.2)), (4, pytest.approx(0.4)), (6, -6), (8, -8), (10, -10)]
    assert scalars(tmp_path / 'exp' / 'tensorboard', 'lr/D')[1] == [
        (2, pytest.approx(1e-4)), (4, pytest.approx(1e-4)), (6, pytest.approx(5e-5)), (8, pytest.approx(5e-5)),
        (10, pytest.approx(5e-5))]
    assert {'loss/NCE', 'lr/G', 'time/comp', 'time/data', 'epoch'} <= set(acc.Tags()['scalars'])
    images = acc.Images('images/fake_B')
    assert [e.step for e in images] == [2, 4]
    png = np.asarray(Image.open(io.BytesIO(images[0].encoded_image_string)))
    assert png.shape == (8, 8, 3)
    assert np.array_equal(png, ((visuals(2)['fake_B'][0].permute(1, 2, 0).numpy() + 1) / 2 * 255).astype(np.uint8))
    texts = acc.Tensors('options/text_summary')
    assert [t.step for t in texts] == [0, 4] and b'| lambda_SRC | 0.05 |' in texts[1].tensor_proto.string_val[0]


def test_wandb_offline_run_files_and_resume_continues_the_run(tmp_path):
    vis = Visualizer(make_opt(tmp_path, [], use_wandb=True, wandb_run_name='h2z'))
    feed(vis, [2, 4])
    vis.close()
    vis = Visualizer(make_opt(tmp_path, ['wandb'], continue_train=True, n_epochs=7), start_step=4)
    feed(vis, [6], epoch=2)
    vis.close()
    run_id = (tmp_path / 'exp' / 'wandb_run_id').read_text().strip()
    (first_id, config, history), (second_id, resumed_config, resumed) = wandb_run(tmp_path / 'exp')
    assert first_id == second_id == run_id
    assert config['name'] == 'exp' and config['wandb_run_name'] == 'h2z' and resumed_config['n_epochs'] == 7
    rows = [row for row in history + resumed if 'loss/G' in row]
    assert [(r['total_iters'], r['loss/G'], r['lr/G'], r['epoch']) for r in rows] == [
        (2, 0.2, 2e-4, 1), (4, 0.4, 2e-4, 1), (6, 0.6, 2e-4, 2)]
    images = [row for row in history + resumed if 'images/fake_B/path' in row]
    assert [r['total_iters'] for r in images] == [2, 4, 6]
    assert list((tmp_path / 'exp' / 'wandb').glob(f'offline-run-*-{run_id}/files/{images[0]["images/fake_B/path"]}'))


@pytest.mark.slow
def test_train_py_feeds_both_and_a_resumed_run_continues_them(tmp_path, tmp_path_factory):
    """train.py end to end: 2 epochs of 4 images (losses printed at total_iters 2, 4, 6, 8), then the run resumed
    from its epoch-1 checkpoint: TensorBoard keeps one curve (steps 6 and 8 written again), W&B one run id."""
    from tests.conftest import H2Z, SMALL_TRAIN, small_run_dataset
    import train as train_script
    data = small_run_dataset(tmp_path_factory, 'loggers', n_train=4)
    argv = ['--dataroot', str(data), '--checkpoints_dir', str(tmp_path), '--name', 'run', *H2Z, *SMALL_TRAIN,
            '--seed', '3', '--print_freq', '2', '--display_freq', '4', '--n_epochs', '1', '--n_epochs_decay', '1',
            '--save_epoch_freq', '1', '--logger', 'tensorboard,wandb']
    assert train_script.main(argv) == 0
    run_dir = tmp_path / 'run'
    _, first = scalars(run_dir / 'tensorboard', 'loss/G')
    for n in ('net_G', 'net_D', 'net_F', 'train_state'):
        shutil.copy(run_dir / f'1_{n}.pth', run_dir / f'latest_{n}.pth')
    assert train_script.main(argv + ['--continue_train']) == 0

    acc, losses = scalars(run_dir / 'tensorboard', 'loss/G')
    assert [s for s, _ in losses] == [2, 4, 6, 8]
    assert [v for _, v in losses] == pytest.approx([v for _, v in first], rel=1e-5)  # resumption is exact
    assert [v for _, v in scalars(run_dir / 'tensorboard', 'lr/G')[1]] == pytest.approx([2e-4, 2e-4, 1e-4, 1e-4])
    assert [e.step for e in acc.Images('images/fake_B')] == [4, 8]
    (first_id, config, history), (second_id, _, resumed) = wandb_run(run_dir)
    assert first_id == second_id == (run_dir / 'wandb_run_id').read_text().strip()
    assert config['lambda_SRC'] == 0.05
    assert [r['total_iters'] for r in history if 'loss/G' in r] == [2, 4, 6, 8]
    assert [r['total_iters'] for r in resumed if 'loss/G' in r] == [6, 8]


@pytest.mark.slow
def test_a_run_without_them_imports_no_optional_logger(tmp_path):
    """--display_id 0 --no_html (SMALL_TRAIN's visdom off): neither tensorboard, wandb, visdom nor dominate."""
    code = f'''
import sys
sys.path.insert(0, {str(ROOT)!r})
from tests.conftest import H2Z, SMALL_TRAIN
from datasets.make_synthetic_dataset import make_synthetic_dataset
import train
make_synthetic_dataset({str(tmp_path / 'data')!r}, n_train=2, n_test=1, size=32, seed=1)
assert train.main(['--dataroot', {str(tmp_path / 'data')!r}, '--checkpoints_dir', {str(tmp_path)!r}, *H2Z,
                   *SMALL_TRAIN, '--no_html', '--n_epochs', '1', '--n_epochs_decay', '0', '--print_freq', '1']) == 0
print(sorted(m for m in ('tensorboard', 'wandb', 'visdom', 'dominate') if m in sys.modules))
'''
    done = subprocess.run([sys.executable, '-c', code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == '[]'


def test_sweep_adds_each_epochs_metrics_to_the_same_runs(tmp_path):
    """evaluation/sweep.py --logger: eval/<metric> at the total_iters each epoch was saved at, beside the
    training curves (not purging them), in the training's W&B run; an epoch without a state is left out."""
    from evaluation import sweep as sw
    vis = Visualizer(make_opt(tmp_path, ['tensorboard', 'wandb']))
    feed(vis, [2, 4])
    vis.close()
    folder = tmp_path / 'exp'
    for epoch, total_iters in (('1', 2), ('2', 4)):
        torch.save({'total_iters': total_iters}, folder / f'{epoch}_train_state.pth')
    source = tmp_path / 'testA'
    source.mkdir()
    Image.new('RGB', (8, 8)).save(source / 'a.png')

    def run_test(epoch, num_test):
        (tmp_path / 'res' / f'test_{epoch}' / 'images' / 'fake_B').mkdir(parents=True)
        Image.new('RGB', (8, 8)).save(tmp_path / 'res' / f'test_{epoch}' / 'images' / 'fake_B' / 'a.png')

    fids = {'1': 80.0, '2': 60.0, 'latest': 60.0}
    evaluators = {'fid': lambda result_dir, count: {'metrics': {'fid': fids[result_dir.name[5:]], 'kid_mean': 0.1}}}
    backends = loggers.open_backends(['tensorboard', 'wandb'], str(folder), project='test', run_name='exp')
    sw.sweep(['1', '2', 'latest'], run_test=run_test, results_root=tmp_path / 'res', phase='test', source_dir=source,
             evaluators=evaluators, select='fid', on_row=sw.metric_logger(backends, folder))
    for backend in backends:
        backend.close()
    assert scalars(folder / 'tensorboard', 'eval/fid')[1] == [(2, 80.0), (4, 60.0)]
    assert [s for s, _ in scalars(folder / 'tensorboard', 'loss/G')[1]] == [2, 4]
    (train_id, _, _), (sweep_id, _, history) = wandb_run(folder)
    assert train_id == sweep_id
    assert [(r['total_iters'], r['eval/fid'], r['eval/kid_mean']) for r in history if 'eval/fid' in r] == [
        (2, 80.0, 0.1), (4, 60.0, 0.1)]
