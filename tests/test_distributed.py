"""DistributedDataParallel on CPU (gloo, 2 processes): weights stay in sync, a 2-process run with batch 1
each computes what one process computes with batch 2, only rank 0 writes, a run saves and resumes, each
process draws its own B partners and continues its own draws exactly after a resume, and the device each
process takes from --gpu_ids."""
import json
import os
import socket

import pytest
import torch
import torch.multiprocessing as mp

import data
import models
import train as train_script
from datasets.make_synthetic_dataset import make_synthetic_dataset
from tests.conftest import fake_batch, train_opt
from tests.conftest import H2Z, assert_same_step
from util import distributed

WORLD = 2
SMALL = ['--model', 'src_hdce', *H2Z, '--ngf', '4', '--ndf', '4', '--netG', 'resnet_6blocks', '--load_size', '32',
         '--crop_size', '32', '--num_patches', '16', '--gpu_ids', '-1', '--num_threads', '0', '--display_id', '0',
         '--no_tqdm', '--seed', '3', '--serial_batches', '--no_flip', '--print_freq', '2']


def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def join(rank, port):
    """What torchrun does for a worker: the environment init_from_env reads."""
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(WORLD), MASTER_ADDR='127.0.0.1',
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)


def build(tmp_path, batch_size):
    opt = train_opt('src_hdce', tmp_path, '--seed', '0', '--batch_size', str(batch_size), *H2Z)
    torch.manual_seed(0)
    model = models.create_model(opt)
    model.data_dependent_initialize(fake_batch(batch_size, 32))
    model.setup(opt)
    model.parallelize()
    return model


def steps(model, batch, n=2):
    """n training steps on the same batch; the losses and gradients of the first."""
    first = None
    for i in range(n):
        model.set_input(batch)
        torch.manual_seed(100 + i)  # the same patch locations in every process and launch
        model.optimize_parameters()
        if first is None:
            first = (model.get_current_losses(),
                     {name: [p.grad.clone() for p in getattr(model, 'net' + name).parameters()]
                      for name in model.model_names})
    return first


def model_worker(rank, port, folder):
    join(rank, port)
    distributed.init_from_env(use_cuda=False)
    model = build(folder / f'rank{rank}', batch_size=1)
    model.distribute()
    batch = fake_batch(WORLD, 32, seed=8)
    mine = {k: v[rank:rank + 1] for k, v in batch.items()}  # this process's image of the global batch
    losses, grads = steps(model, mine)
    weights = {name: [p.detach().clone() for p in model._unwrapped(name).parameters()]
               for name in model.model_names}
    torch.save({'losses': dict(losses), 'grads': grads, 'weights': weights}, folder / f'rank{rank}.pt')
    distributed.cleanup()


@pytest.mark.slow
def test_two_processes_of_one_image_equal_one_process_of_two(tmp_path):
    mp.spawn(model_worker, args=(free_port(), tmp_path), nprocs=WORLD)
    ranks = [torch.load(tmp_path / f'rank{r}.pt', weights_only=True) for r in range(WORLD)]
    for name, weights in ranks[0]['weights'].items():
        for a, b in zip(weights, ranks[1]['weights'][name]):
            assert torch.equal(a, b), f'net{name} differs between ranks'
    for name in ranks[0]['grads']:  # DDP averaged them: every rank holds the same gradients
        assert all(torch.equal(a, b) for a, b in zip(ranks[0]['grads'][name], ranks[1]['grads'][name]))

    # one process, batch 2: every loss is a mean over images, so its gradient is the mean DDP forms
    single_losses, single_grads = steps(build(tmp_path / 'single', batch_size=WORLD), fake_batch(WORLD, 32, seed=8))
    averaged = {k: sum(r['losses'][k] for r in ranks) / WORLD for k in single_losses}
    assert_same_step((averaged, ranks[0]['grads']), (single_losses, single_grads))


def train_worker(rank, ports, dataset, ckpt):
    join(rank, ports[0])
    argv = ['--dataroot', str(dataset), '--checkpoints_dir', str(ckpt), '--name', 'ddp', *SMALL,
            '--n_epochs', '1', '--n_epochs_decay', '1']
    assert train_script.main(argv + ['--max_iters', '2']) == 0  # stops after the first step of epoch 1
    os.environ['MASTER_PORT'] = str(ports[1])
    assert train_script.main(argv + ['--continue_train']) == 0


def losses_by_iteration(run_dir):
    records = [json.loads(line) for line in (run_dir / 'loss_log.jsonl').read_text().splitlines()]
    return {r['total_iters']: r['losses'] for r in records}


@pytest.mark.slow
def test_train_py_under_two_processes_saves_once_resumes_and_matches_one_process(tmp_path):
    dataset = tmp_path / 'data'
    make_synthetic_dataset(dataset, n_train=4, n_test=1, size=32, seed=1)
    ckpt = tmp_path / 'ckpt'
    mp.spawn(train_worker, args=((free_port(), free_port()), dataset, ckpt), nprocs=WORLD)
    run = ckpt / 'ddp'
    state = torch.load(run / 'latest_train_state.pth', weights_only=True)
    # 4 images, 2 epochs: 8 samples, counted over both processes; epoch_iter is per process
    assert (state['epoch'], state['epoch_done'], state['total_iters'], state['epoch_iter']) == (2, True, 8, 2)
    assert (run / '2_net_G.pth').is_file() and not list(run.glob('*.tmp*'))
    assert (run / 'loss_log.txt').read_text().count('Training Loss') == 2  # rank 0 alone, once per run

    argv = ['--dataroot', str(dataset), '--checkpoints_dir', str(ckpt), '--name', 'single', *SMALL,
            '--n_epochs', '1', '--n_epochs_decay', '1', '--batch_size', str(WORLD)]
    assert train_script.main(argv) == 0
    ddp, single = losses_by_iteration(run), losses_by_iteration(ckpt / 'single')
    assert sorted(ddp) == sorted(single) == [2, 4, 6, 8]
    for it in single:
        assert ddp[it] == pytest.approx(single[it], rel=1e-4, abs=1e-6), it


def test_several_gpu_ids_without_torchrun_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    monkeypatch.setattr(torch.cuda, 'device_count', lambda: 2)
    opt = train_opt('src_hdce', tmp_path, '--gpu_ids', '0,1')
    with pytest.raises(SystemExit, match='torchrun --nproc_per_node 2'):
        train_script.Run(opt)


def multimodal_worker(rank, ports, dataset, ckpt):
    join(rank, ports[0])
    argv = ['--dataroot', str(dataset), '--checkpoints_dir', str(ckpt), '--name', 'ddp_mm', '--model', 'stargan_v2',
            '--num_domains', '2', '--crop_size', '32', '--load_size', '32', '--base_dim', '8', '--max_conv_dim', '16',
            '--hidden_dim', '16', '--num_patches', '16', '--batch_size', '1', '--gpu_ids', '-1', '--num_threads', '0',
            '--display_id', '0', '--no_tqdm', '--seed', '3', '--n_epochs', '2', '--print_freq', '2']
    assert train_script.main(argv + ['--max_iters', '4']) == 0
    os.environ['MASTER_PORT'] = str(ports[1])
    assert train_script.main(argv + ['--continue_train']) == 0


@pytest.mark.slow
def test_stargan_v2_under_two_processes_trains_in_sync_and_resumes(tmp_path):
    """R1's double backward, the networks each step trains or freezes, F, the EMA copies: under DDP (gloo)."""
    from datasets.make_multidomain_dataset import make_multidomain_dataset
    dataset = tmp_path / 'seasons'
    make_multidomain_dataset(dataset, n_train=2, n_val=1, size=32, seed=0, domains=2)
    mp.spawn(multimodal_worker, args=((free_port(), free_port()), dataset, tmp_path / 'ckpt'), nprocs=WORLD)
    run = tmp_path / 'ckpt' / 'ddp_mm'
    state = torch.load(run / 'latest_train_state.pth', weights_only=True)
    assert (state['epoch'], state['epoch_done'], state['model_steps']) == (2, True, 4)
    assert all((run / f'latest_net_{n}.pth').is_file() for n in ['G', 'M', 'E', 'D', 'F', 'G_ema', 'M_ema', 'E_ema'])


# the horse2zebra recipe at 32 px without --serial_batches or --no_flip: random B partners, crops and flips
RANDOM = [a for a in SMALL if a not in ('--serial_batches', '--no_flip')] + ['--load_size', '36']


def record_draws(draws):
    """Patch the loader so that every batch train.py reads appends its B file names to draws[draws['now']]."""
    iterate = data.DatasetLoader.iterate

    def recording(self, start_sample=0):
        for batch in iterate(self, start_sample):
            draws[draws['now']].extend(batch['B_paths'])
            yield batch
    data.DatasetLoader.iterate = recording


def draws_worker(rank, ports, dataset, ckpt):
    """Two epochs straight through, then the same run stopped after its first step and resumed."""
    join(rank, ports[0])
    base = ['--dataroot', str(dataset), '--checkpoints_dir', str(ckpt), *RANDOM, '--n_epochs', '1',
            '--n_epochs_decay', '1']
    draws = {'now': 'straight', 'straight': [], 'resumed': []}
    record_draws(draws)
    assert train_script.main(base + ['--name', 'straight']) == 0
    draws['now'] = 'resumed'
    os.environ['MASTER_PORT'] = str(ports[1])
    assert train_script.main(base + ['--name', 'resumed', '--max_iters', '2']) == 0
    os.environ['MASTER_PORT'] = str(ports[2])
    assert train_script.main(base + ['--name', 'resumed', '--continue_train']) == 0
    (ckpt / f'draws{rank}.json').write_text(json.dumps(draws))


@pytest.mark.slow
def test_each_process_draws_its_own_b_partners_and_a_resumed_run_continues_them(tmp_path):
    dataset = tmp_path / 'data'
    make_synthetic_dataset(dataset, n_train=8, n_test=1, size=32, seed=1)
    ckpt = tmp_path / 'ckpt'
    mp.spawn(draws_worker, args=((free_port(), free_port(), free_port()), dataset, ckpt), nprocs=WORLD)
    draws = [json.loads((ckpt / f'draws{r}.json').read_text()) for r in range(WORLD)]
    straight = [d['straight'] for d in draws]
    assert len(straight[0]) == len(straight[1]) == 8  # 8 images, 2 epochs, 2 processes of batch 1
    # the B partner is drawn at random from 8 images: the two processes drew their own sequences
    assert straight[0] != straight[1], straight
    for rank in range(WORLD):  # stopped after one step and resumed: the same draws, per process
        assert draws[rank]['resumed'] == straight[rank], rank
    state = torch.load(ckpt / 'resumed' / 'latest_train_state.pth', weights_only=True)
    assert len(state['rng_ranks']) == WORLD
    assert not torch.equal(state['rng_ranks'][0]['torch'], state['rng_ranks'][1]['torch'])
    straight_losses, resumed_losses = losses_by_iteration(ckpt / 'straight'), losses_by_iteration(ckpt / 'resumed')
    assert sorted(straight_losses) == sorted(resumed_losses) == [2, 4, 6, 8, 10, 12, 14, 16]
    for it, losses in straight_losses.items():
        assert resumed_losses[it] == pytest.approx(losses, rel=1e-5, abs=1e-7), it


def stylegan_worker(rank, port, dataset, ckpt):
    join(rank, port)
    argv = ['--dataroot', str(dataset), '--checkpoints_dir', str(ckpt), '--name', 'small', *RANDOM,
            '--netG', 'smallstylegan2', '--nce_layers', '0,1,2,3', '--n_epochs', '1', '--n_epochs_decay', '0']
    assert train_script.main(argv) == 0


@pytest.mark.slow
def test_smallstylegan2_trains_under_two_processes(tmp_path):
    """Its unused noise weights are frozen: DDP no longer waits in vain for their gradients at step 2."""
    dataset = tmp_path / 'data'
    make_synthetic_dataset(dataset, n_train=6, n_test=1, size=32, seed=1)
    mp.spawn(stylegan_worker, args=(free_port(), dataset, tmp_path / 'ckpt'), nprocs=WORLD)
    state = torch.load(tmp_path / 'ckpt' / 'small' / 'latest_train_state.pth', weights_only=True)
    assert (state['epoch'], state['epoch_done'], state['total_iters']) == (1, True, 6)


@pytest.mark.parametrize('gpu_ids, local_rank, local_world, index', [
    ([0], 1, 2, 1),  # the default: process i on GPU i
    ([2, 3], 0, 2, 2), ([2, 3], 1, 2, 3),  # one id per process
    ([5], 0, 1, 5),  # one process per node
])
def test_torchrun_processes_take_their_gpu_from_gpu_ids(gpu_ids, local_rank, local_world, index):
    assert distributed.local_gpu(gpu_ids, local_rank, local_world) == index


@pytest.mark.parametrize('gpu_ids', [[1], [0, 1, 2]])
def test_gpu_ids_that_do_not_fit_the_torchrun_processes_are_refused(gpu_ids):
    with pytest.raises(SystemExit, match='CUDA_VISIBLE_DEVICES'):
        distributed.local_gpu(gpu_ids, 0, 2)


def test_rank_seeds_are_distinct_and_rank_zero_keeps_the_seed():
    seeds = [distributed.rank_seed(7, r) for r in range(8)]
    assert seeds[0] == 7 and len(set(seeds)) == 8
    assert all(0 <= s < 2 ** 63 for s in seeds)
    assert distributed.rank_seed(7, 3) == distributed.rank_seed(7, 3) != distributed.rank_seed(8, 3)
