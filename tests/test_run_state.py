"""A run's state across starts: one seed per run without --seed (shared by the processes, kept on resume), resume
on the other kind of device, with another number of processes, frequencies that fire when total_iters crosses a
multiple, the stop agreement's cost, finished --max_iters runs, folders holding a run, failed starts, the lock on
file systems without lock support, persistent loader workers, test.py's current device."""
import errno
import json
import os
import signal
import subprocess
import sys

import pytest
import torch
import torch.multiprocessing as mp

import data
import test as test_script
import train as train_script
from datasets.make_synthetic_dataset import make_synthetic_dataset
from models.base_model import set_generator_state
from tests.conftest import H2Z, ROOT, SMALL_TRAIN
from tests.test_devices import fake_cuda
from tests.test_distributed import free_port, join
from util import distributed, errors, run_lock

# no --seed: every start draws one at parse time
SMALL = SMALL_TRAIN + ['--print_freq', '1000', '--save_latest_freq', '1000', '--display_freq', '1000', '--no_html',
                       '--load_size', '24', '--crop_size', '24']  # the smallest side the networks take


@pytest.fixture(scope='module')
def twelve(tmp_path_factory):
    root = tmp_path_factory.mktemp('twelve') / 'synthetic'
    make_synthetic_dataset(root, n_train=12, n_test=1, size=32, seed=1)
    return root


def argv(dataset, ckpt, name, *extra):
    return ['--dataroot', str(dataset), '--checkpoints_dir', str(ckpt), '--name', name, *H2Z, *SMALL, *extra]


def record_reads(reads):
    """Patch the loader: every batch train.py reads appends (epoch, A file names) to reads."""
    iterate = data.DatasetLoader.iterate

    def recording(self, start_sample=0):
        for batch in iterate(self, start_sample):
            reads.append((self.sampler.epoch, [os.path.basename(p) for p in batch['A_paths']]))
            yield batch
    return recording


def by_epoch(*read_lists):
    epochs = {}
    for reads in read_lists:
        for epoch, names in reads:
            epochs.setdefault(epoch, []).extend(names)
    return {e: sorted(names) for e, names in epochs.items()}


# ---------------------------------------------------------------- the run's seed

@pytest.mark.slow
def test_a_resumed_run_without_seed_keeps_its_seed_and_reads_every_image_once(twelve, tmp_path, monkeypatch):
    reads = []
    monkeypatch.setattr(data.DatasetLoader, 'iterate', record_reads(reads))
    common = argv(twelve, tmp_path, 'run', '--n_epochs', '1', '--n_epochs_decay', '0')
    assert train_script.main(common + ['--max_iters', '5']) == 0
    seed = json.loads((tmp_path / 'run' / 'train_opt.json').read_text())['seed']
    assert train_script.main(common + ['--continue_train']) == 0
    epoch1 = by_epoch(reads)[1]
    assert len(epoch1) == 12 and len(set(epoch1)) == 12, epoch1
    assert json.loads((tmp_path / 'run' / 'train_opt.json').read_text())['seed'] == seed
    assert torch.load(tmp_path / 'run' / 'latest_train_state.pth', weights_only=True)['seed'] == seed


def ddp_worker(rank, port, dataset, ckpt):
    """Two processes without --seed; rank 1 gets SIGTERM during its 8th step: both must stop at step 10."""
    join(rank, port)
    reads, agreements = [], []
    data.DatasetLoader.iterate = record_reads(reads)
    any_process = distributed.any_process
    distributed.any_process = lambda flag: agreements.append(1) or any_process(flag)
    create = train_script.create_model

    def create_model(opt, runtime):
        model = create(opt, runtime)
        step, steps = model.optimize_parameters, []

        def counted():
            steps.append(1)
            if rank == 1 and len(steps) == 8:
                os.kill(os.getpid(), signal.SIGTERM)
            step()
        model.optimize_parameters = counted
        return model
    train_script.create_model = create_model
    code = train_script.main(argv(dataset, ckpt, 'ddp', '--n_epochs', '1', '--n_epochs_decay', '1'))
    (ckpt / f'rank{rank}.json').write_text(json.dumps({'code': code, 'reads': reads, 'agreements': len(agreements)}))


@pytest.mark.slow
def test_two_processes_without_seed_share_one_and_another_number_of_processes_resumes(twelve, tmp_path,
                                                                                      monkeypatch):
    mp.spawn(ddp_worker, args=(free_port(), twelve, tmp_path), nprocs=2)
    ranks = [json.loads((tmp_path / f'rank{r}.json').read_text()) for r in range(2)]
    epochs = by_epoch(ranks[0]['reads'], ranks[1]['reads'])
    assert len(epochs[1]) == 12 and len(set(epochs[1])) == 12, epochs[1]  # the ranks shuffled alike
    assert [r['code'] for r in ranks] == [128 + signal.SIGTERM] * 2  # both stopped, at the same step
    # one agreement in 10 steps (no print, display or save point): not one per step
    assert [r['agreements'] for r in ranks] == [1, 1]
    state = torch.load(tmp_path / 'ddp' / 'latest_train_state.pth', weights_only=True)
    assert (state['epoch'], state['epoch_iter'], state['total_iters'], state['epoch_samples']) == (2, 4, 20, 8)

    reads = []  # one process resumes: it skips the 8 samples both read, and reads the other 4
    monkeypatch.setattr(data.DatasetLoader, 'iterate', record_reads(reads))
    assert train_script.main(argv(twelve, tmp_path, 'ddp', '--n_epochs', '1', '--n_epochs_decay', '1',
                                  '--continue_train')) == 0
    epoch2 = by_epoch(ranks[0]['reads'], ranks[1]['reads'], reads)[2]
    assert len(epoch2) == 12 and len(set(epoch2)) == 12, epoch2


def compression_worker(rank, port, dataset, ckpt):
    """--model compression under two processes without --seed: the sub-network configuration of every step."""
    from tests.test_compression_model import PIPELINE
    join(rank, port)
    configs = []
    create = train_script.create_model

    def create_model(opt, runtime):
        model = create(opt, runtime)
        step = model.optimize_parameters

        def recorded():
            step()
            configs.append(list(model.config))
        model.optimize_parameters = recorded
        return model
    train_script.create_model = create_model
    unseeded = [a for i, a in enumerate(PIPELINE) if '--seed' not in PIPELINE[max(i - 1, 0):i + 1]]
    assert train_script.main(['--dataroot', str(dataset), '--checkpoints_dir', str(ckpt), '--name', 'c', *unseeded,
                              '--max_iters', '8']) == 0
    (ckpt / f'configs{rank}.json').write_text(json.dumps(configs))


@pytest.mark.slow
def test_compression_ranks_without_seed_sample_the_same_sub_networks(twelve, tmp_path):
    mp.spawn(compression_worker, args=(free_port(), twelve, tmp_path), nprocs=2)
    configs = [json.loads((tmp_path / f'configs{r}.json').read_text()) for r in range(2)]
    assert len(configs[0]) == 4 and configs[0] == configs[1]
    assert len({tuple(c) for c in configs[0]}) > 1  # drawn at random, alike on both ranks


@pytest.mark.slow
def test_a_compression_state_saved_on_cuda_resumes_on_the_cpu(twelve, tmp_path, capsys):
    from tests.test_compression_model import PIPELINE
    common = ['--dataroot', str(twelve), '--checkpoints_dir', str(tmp_path), '--name', 'c', *PIPELINE]
    assert train_script.main(common + ['--max_iters', '1']) == 0
    path = tmp_path / 'c' / 'latest_train_state.pth'
    state = torch.load(path, weights_only=True)
    state['patch_rng'] = torch.arange(16, dtype=torch.uint8)  # a CUDA generator's state
    torch.save(state, path)
    capsys.readouterr()
    assert train_script.main(common + ['--continue_train', '--max_iters', '2']) == 0
    assert 'the distillation patch positions restart from seed 4 (--seed + iteration)' in capsys.readouterr().out
    assert torch.load(path, weights_only=True)['total_iters'] == 2


@pytest.mark.parametrize('saved, world, batch, skip, note', [
    ({'epoch_iter': 5}, 2, 1, 2, True),  # one process (a state without epoch_samples) read 5: 4 skipped, 1 again
    ({'epoch_iter': 4, 'epoch_samples': 8, 'rng_ranks': [0, 1]}, 4, 2, 2, False),
    ({'epoch_iter': 3, 'epoch_samples': 6, 'rng_ranks': [0, 1]}, 1, 3, 6, False),
])
def test_another_number_of_processes_skips_the_samples_all_processes_read(saved, world, batch, skip, note, capsys):
    from types import SimpleNamespace
    state = dict(saved, epoch=2, epoch_done=False, total_iters=50)
    loader = SimpleNamespace(opt=SimpleNamespace(batch_size=batch))
    assert train_script.resume_point(state, loader, SimpleNamespace(world_size=world)) == (2, skip, 50)
    assert ('read the other' in capsys.readouterr().out) == note


@pytest.mark.slow
def test_frequencies_fire_when_total_iters_crosses_a_multiple(twelve, tmp_path):
    """Batch 3: total_iters 3, 6, 9, 12 passes 4, 8 and 12, though only 12 is reached exactly."""
    assert train_script.main(argv(twelve, tmp_path, 'run', '--batch_size', '3', '--print_freq', '4',
                                  '--save_latest_freq', '4', '--save_by_iter', '--n_epochs', '1',
                                  '--n_epochs_decay', '0')) == 0
    records = [json.loads(line) for line in (tmp_path / 'run' / 'loss_log.jsonl').read_text().splitlines()]
    assert [r['total_iters'] for r in records] == [6, 9, 12]
    assert all((tmp_path / 'run' / f'iter_{i}_train_state.pth').is_file() for i in (6, 9, 12))


# ---------------------------------------------------------------- the other kind of device

@pytest.mark.slow
def test_a_state_saved_on_cuda_resumes_on_the_cpu(twelve, tmp_path, capsys):
    common = argv(twelve, tmp_path, 'run', '--n_epochs', '1', '--n_epochs_decay', '0')
    assert train_script.main(common + ['--max_iters', '2']) == 0
    path = tmp_path / 'run' / 'latest_train_state.pth'
    state = torch.load(path, weights_only=True)
    assert state['rng_patches'].numel() == 5056  # a CPU generator's
    state['rng_patches'] = torch.arange(16, dtype=torch.uint8)  # a CUDA generator's: (seed, offset)
    torch.save(state, path)
    capsys.readouterr()
    assert train_script.main(common + ['--continue_train', '--max_iters', '4']) == 0
    out = capsys.readouterr().out
    assert f'patch positions restart from seed {state["seed"] + 2}' in out
    assert torch.load(path, weights_only=True)['total_iters'] == 4


def test_a_generator_state_of_the_other_device_kind_restarts_the_stream():
    g = torch.Generator().manual_seed(1)
    assert not set_generator_state(g, torch.zeros(16, dtype=torch.uint8), 7)
    assert torch.equal(g.get_state(), torch.Generator().manual_seed(7).get_state())
    saved = torch.Generator().manual_seed(3).get_state()
    assert set_generator_state(g, saved, 7) and torch.equal(g.get_state(), saved)


# ---------------------------------------------------------------- finished runs, folders holding a run

def run(args, cwd=ROOT):
    env = dict(os.environ, OMP_NUM_THREADS='1')
    done = subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    return done.returncode, done.stdout + done.stderr


def error_lines(out):
    return [line for line in out.splitlines() if line.startswith('error:')]


@pytest.mark.slow
def test_a_finished_max_iters_run_resumed_with_its_flags_trains_nothing(twelve, tmp_path):
    common = ['train.py', *argv(twelve, tmp_path, 'run', '--max_iters', '2')]
    code, out = run(common)
    assert code == 0, out[-3000:]
    state = tmp_path / 'run' / 'latest_train_state.pth'
    before = state.read_bytes()
    for _ in range(2):
        code, out = run(common + ['--continue_train'])
        assert code == 0, out[-3000:]
        assert f'nothing to train in {tmp_path / "run"}: it stopped at --max_iters 2 (total_iters 2)' in out
        assert state.read_bytes() == before  # total_iters stays 2: no step, no save


@pytest.mark.slow
def test_a_folder_holding_a_run_is_refused_unless_resumed_or_overwritten(twelve, tmp_path):
    common = ['train.py', *argv(twelve, tmp_path, 'run', '--n_epochs', '1', '--n_epochs_decay', '0')]
    assert run(common + ['--max_iters', '2'])[0] == 0
    run_dir = tmp_path / 'run'
    files = {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file()}
    code, out = run(common)
    assert code == 1 and 'Traceback' not in out, out[-3000:]
    lines = error_lines(out)
    assert len(lines) == 1 and lines[0].startswith(
        f'error: checkpoint folder {run_dir} holds a run (last saved at epoch 1, iteration 2): resume it with '
        '--continue_train, start over with --overwrite (deletes its checkpoints and loss logs), or choose another '
        '--name'), lines
    assert {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file()} == files  # nothing written
    old = [n for n in files if n.endswith('.pth') or n.startswith('loss_log')]
    code, out = run(common + ['--overwrite', '--max_iters', '1'])
    assert code == 0, out[-3000:]
    assert f'deleted the {len(old)} checkpoint and log file(s) of the run in {run_dir}' in out
    assert torch.load(run_dir / 'latest_train_state.pth', weights_only=True)['total_iters'] == 1
    assert len((run_dir / 'loss_log.txt').read_text().split('Training Loss')) == 2  # this run's log alone


@pytest.mark.slow
def test_a_failed_start_leaves_no_new_folder(twelve, tmp_path):
    cases = {
        'missing dataset': ['train.py', *argv(tmp_path / 'nowhere', tmp_path / 'ckpt', 'a')],
        'bad flag': ['train.py', *argv(twelve, tmp_path / 'ckpt', 'b', '--lambda_SRC', '-1')],
        'no checkpoint': ['test.py', '--dataroot', str(twelve), '--checkpoints_dir', str(tmp_path / 'ckpt'),
                          '--name', 'typo', '--results_dir', str(tmp_path / 'results'), '--gpu_ids', '-1',
                          '--model', 'src_hdce', '--load_size', '32', '--crop_size', '32'],
    }
    for case, args in cases.items():
        code, out = run(args)
        assert code == 1 and len(error_lines(out)) == 1, (case, out[-3000:])
        assert sorted(p.name for p in tmp_path.iterdir()) == [], (case, list(tmp_path.rglob('*')))


# ---------------------------------------------------------------- the lock

@pytest.mark.parametrize('code', [errno.ENOLCK, errno.ENOSYS])
def test_a_file_system_without_locks_is_named_with_a_way_to_proceed(tmp_path, monkeypatch, code):
    def no_locks(fd, op):
        raise OSError(code, os.strerror(code))
    monkeypatch.setattr(run_lock.fcntl, 'lockf', no_locks)
    with pytest.raises(run_lock.NoLockSupportError, match='its file system has no lock support') as caught:
        run_lock.RunLock(tmp_path / 'run').acquire()
    assert 'SRC_NO_LOCK=1' in str(caught.value) and errors.raised_on_purpose(caught.value)
    monkeypatch.setenv('SRC_NO_LOCK', '1')
    run_lock.RunLock(tmp_path / 'run').acquire().release()


def test_a_lock_held_elsewhere_is_still_in_use(tmp_path, monkeypatch):
    def held(fd, op):
        raise OSError(errno.EAGAIN, os.strerror(errno.EAGAIN))
    monkeypatch.setattr(run_lock.fcntl, 'lockf', held)
    with pytest.raises(errors.FolderInUseError, match='is in use by another training run'):
        run_lock.RunLock(tmp_path / 'run').acquire()


# ---------------------------------------------------------------- loader workers, test.py's device

def test_persistent_workers_learn_each_epoch_and_reseed(twelve, tmp_path, monkeypatch):
    from data.unaligned_dataset import UnalignedDataset
    monkeypatch.setattr(UnalignedDataset, '__getitem__',
                        lambda self, i: {'epoch': self.current_epoch, 'pid': os.getpid(), 'draw': torch.rand(())})
    from tests.conftest import train_opt
    opt = train_opt('src_hdce', tmp_path, '--dataroot', str(twelve), '--num_threads', '1', '--batch_size', '4')

    def epochs(loader, *numbers):
        seen = []
        for epoch in numbers:
            loader.set_epoch(epoch)
            seen.append([b for b in loader])
        return seen
    loader = data.create_dataset(opt)
    assert loader.dataloader.persistent_workers
    seen = epochs(loader, 1, 2)
    assert [sorted({e for b in epoch for e in b['epoch'].tolist()}) for epoch in seen] == [[1], [2]]
    assert len({int(p) for e in seen for b in e for p in b['pid']}) == 1  # one worker for both epochs
    again = epochs(data.create_dataset(opt), 2)  # a run started at epoch 2 draws what this one drew there
    assert torch.equal(torch.cat([b['draw'] for b in again[0]]), torch.cat([b['draw'] for b in seen[1]]))
    assert not torch.equal(torch.cat([b['draw'] for b in seen[0]]), torch.cat([b['draw'] for b in seen[1]]))


def test_test_py_makes_gpu_n_the_current_device(tmp_path, monkeypatch):
    from options.test_options import TestOptions
    calls = fake_cuda(monkeypatch)
    opt = TestOptions(['--dataroot', str(tmp_path), '--checkpoints_dir', str(tmp_path), '--name', 'run',
                       '--gpu_ids', '2', '--model', 'src_hdce']).parse(save=False)

    class Stop(Exception):
        pass
    monkeypatch.setattr(test_script, 'create_dataset', lambda opt: (_ for _ in ()).throw(Stop()))
    with pytest.raises(Stop):
        test_script.run_test(opt)
    assert calls == [('set_device', 'cuda:2')]
