"""Train a translation model with CUT's command line.

    python train.py --dataroot ./datasets/horse2zebra --name h2z --model src_hdce --dce_idt ...
    torchrun --nproc_per_node 4 train.py ...   # DistributedDataParallel, --batch_size per GPU

Checkpoints go to <checkpoints_dir>/<name>/<epoch>_net_<G|D|F>.pth (CUT's files) plus
<epoch>_train_state.pth (optimizers, schedulers, counters, RNG states) so --continue_train resumes
exactly. Losses are logged to loss_log.txt and loss_log.jsonl, plotted in visdom when a server runs.
"""
import math
from collections import OrderedDict
import os
import random
import signal
import sys
import time

if __name__ == '__main__':
    # before torch allocates anything: restart on tcmalloc/jemalloc when --cpu_allocator asks for one
    from util import cpu_allocator
    cpu_allocator.preload()

import numpy as np  # noqa: E402
import torch  # noqa: E402
from tqdm import tqdm  # noqa: E402

from data import create_dataset  # noqa: E402
from models import create_model  # noqa: E402
from models.runtime import Runtime, flag_device  # noqa: E402
from options.train_options import TrainOptions  # noqa: E402
from util import distributed, errors  # noqa: E402
from util.run_lock import RunLock  # noqa: E402
from util.visualizer import Visualizer  # noqa: E402


class NonFiniteLossError(RuntimeError):
    pass


def seed_everything(seed):
    random.seed(seed)
    np.random.seed(seed % (2 ** 32))
    torch.manual_seed(seed)


def first_batch(dataset):
    """One sample of the dataset with a batch dimension, for the model's data-dependent set-up."""
    item = dataset.dataset[0]
    return {k: (v.unsqueeze(0) if isinstance(v, torch.Tensor) else [v]) for k, v in item.items()}


class StopRequest:
    """Turns SIGINT/SIGTERM into a flag the loop checks between iterations (save, then exit)."""

    def __init__(self):
        self.signum = None
        self._previous = {}

    def __enter__(self):
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.signum is not None:  # a second signal: stop at once
            raise KeyboardInterrupt
        self.signum = signum
        print(f'\nreceived signal {signum}: saving a checkpoint after this iteration, then stopping',
              file=sys.stderr)

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        return False


def non_finite(losses):
    return {k: v for k, v in losses.items() if not math.isfinite(v)}


def non_finite_message(bad, epoch, epoch_iter):
    names = ', '.join(f'{k}={v}' for k, v in bad.items())
    return f'non-finite loss {names} at epoch {epoch}, iteration {epoch_iter}'


def check_writable(folder):
    try:
        os.makedirs(folder, exist_ok=True)
        probe = os.path.join(folder, f'.write_test.{os.getpid()}')
        with open(probe, 'w') as f:
            f.write('ok')
        os.remove(probe)
    except OSError as exc:
        raise SystemExit(f'error: checkpoint folder {folder} is not writable: {exc}') from exc


def save_checkpoint(model, tags, run, epoch, epoch_iter, total_iters, epoch_done):
    """Rank 0 writes weights and training state under each tag; the other processes wait for it."""
    if distributed.is_main():
        state = model.training_state(epoch, epoch_iter, total_iters, epoch_done, epoch_count=run.epoch_count)
        for tag in tags:
            model.save_networks(tag, state)
    distributed.barrier()


class Run:
    """What this process learns at run time, beside the (final) options: its place among the processes,
    its device and seed, and the epoch the learning-rate rule counts from."""

    def __init__(self, opt):
        self.rank, self.world_size, local_rank = distributed.init_from_env(use_cuda=bool(opt.gpu_ids))
        self.seed = opt.seed
        if self.world_size > 1:
            self.device = f'cuda:{local_rank}' if opt.gpu_ids else 'cpu'
            self.seed = distributed.broadcast(opt.seed)  # a seed drawn at parse time differs per process
        elif len(opt.gpu_ids) > 1:
            raise SystemExit(f'error: --gpu_ids {",".join(map(str, opt.gpu_ids))} asks for {len(opt.gpu_ids)} GPUs, '
                             f'but one process trains on one GPU: launch one process per GPU with '
                             f'torchrun --nproc_per_node {len(opt.gpu_ids)} train.py ... (DistributedDataParallel)')
        else:
            self.device = flag_device(opt)
        self.epoch_count = opt.epoch_count


def train(opt):
    run = Run(opt)
    rank, world_size = run.rank, run.world_size
    seed_everything(run.seed)
    save_dir = os.path.join(opt.checkpoints_dir, opt.name)
    if rank == 0:
        check_writable(save_dir)
    dataset = create_dataset(opt, rank=rank, world_size=world_size)
    dataset_size = len(dataset)
    shards = f' ({world_size} processes, --batch_size {opt.batch_size} each)' if world_size > 1 else ''
    distributed.print0(f'The number of training images = {dataset_size}{shards}')
    runtime = Runtime.from_options(opt, run.device)
    runtime.configure_process(opt.preprocess)
    model = create_model(opt, runtime)
    total_epochs = opt.n_epochs + opt.n_epochs_decay

    # The state of a resumed run is read first: the learning-rate rule counts epochs from the run's first.
    # Set-up happens before the loop (not inside its first iteration as CUT does), so that a resumed run
    # restores every RNG before the first batch of the resumed epoch is drawn.
    state = model.read_training_state(opt.epoch) if opt.continue_train else None
    if state is not None:
        run.epoch_count = state['epoch_count']
    model.set_epoch(run.epoch_count)
    model.data_dependent_initialize(first_batch(dataset))
    model.setup(opt, run.epoch_count)
    model.parallelize()
    distributed.print0(runtime.describe())
    if world_size > 1:
        model.distribute()
    start_epoch, skip, total_iters = run.epoch_count, 0, 0
    if opt.continue_train:
        if state is None:
            distributed.print0(f'no training state beside the {opt.epoch} weights (e.g. an official CUT checkpoint): '
                               f'resuming from the weights only, with fresh optimizers, at --epoch_count '
                               f'{run.epoch_count}')
        else:
            counters = model.load_training_state(state)
            start_epoch = counters['epoch'] + 1 if counters['epoch_done'] else counters['epoch']
            skip = 0 if counters['epoch_done'] else counters['epoch_iter']
            total_iters = counters['total_iters']
            distributed.print0(f'resuming at epoch {start_epoch}, iteration {skip} of the epoch, '
                               f'{total_iters} in total')

    visualizer = Visualizer(opt, rank=rank)
    optimize_time = 0.1
    skipped = 0
    stopping = False  # agreed by every process, which must leave the loop at the same iteration
    with StopRequest() as stop:
        for epoch in range(start_epoch, total_epochs + 1):
            epoch_start = time.time()
            visualizer.reset()
            dataset.set_epoch(epoch)
            model.set_epoch(epoch)
            epoch_iter = skip if epoch == start_epoch else 0
            bar = tqdm(total=dataset_size, initial=epoch_iter, desc=f'epoch {epoch}/{total_epochs}',
                       unit='img', disable=opt.no_tqdm or rank != 0, dynamic_ncols=True, file=sys.stdout)
            iter_data_time = time.time()
            t_data = 0.0
            for data in dataset.iterate(start_sample=epoch_iter):
                iter_start = time.time()
                if total_iters % opt.print_freq == 0:
                    t_data = iter_start - iter_data_time
                batch_size = data['A'].size(0)
                total_iters += batch_size * world_size  # samples of all processes, as CUT counts a batch
                epoch_iter += batch_size  # this process's samples (what a resumed run skips)
                if opt.gpu_ids:
                    torch.cuda.synchronize()
                optimize_start = time.time()
                model.set_input(data)
                if opt.skip_nonfinite:
                    snapshot = model.snapshot()
                model.optimize_parameters()
                if opt.gpu_ids:
                    torch.cuda.synchronize()
                optimize_time = (time.time() - optimize_start) / batch_size * 0.005 + 0.995 * optimize_time
                losses = model.get_current_losses()
                means, stopping = distributed.agree(losses.values(), stop.signum is not None, model.device)
                losses = OrderedDict(zip(losses, means))  # averaged over processes
                bad = non_finite(losses)
                if bad and not opt.skip_nonfinite:
                    raise NonFiniteLossError(non_finite_message(bad, epoch, epoch_iter) + '; training stopped, '
                                             'the last saved checkpoint is kept unchanged')
                if bad:
                    model.restore(snapshot)
                    skipped += 1
                    if rank == 0:
                        bar.write(f'warning: {non_finite_message(bad, epoch, epoch_iter)}: step undone '
                                  f'(--skip_nonfinite, {skipped} so far)')
                bar.update(batch_size * world_size)

                if total_iters % opt.display_freq == 0:
                    model.compute_visuals()
                    visualizer.display_current_results(model.get_current_visuals(), epoch,
                                                       total_iters % opt.update_html_freq == 0)
                if total_iters % opt.print_freq == 0:
                    bar.set_postfix({k: f'{v:.3f}' for k, v in losses.items()}, refresh=False)
                    visualizer.print_current_losses(epoch, epoch_iter * world_size, losses, optimize_time, t_data,
                                                    total_iters=total_iters)
                    if opt.display_id is None or opt.display_id > 0:
                        visualizer.plot_current_losses(epoch, float(epoch_iter * world_size) / dataset_size, losses)
                if total_iters % opt.save_latest_freq == 0:
                    tag = f'iter_{total_iters}' if opt.save_by_iter else 'latest'
                    if rank == 0:
                        bar.write(f'saving the {tag} model (epoch {epoch}, total_iters {total_iters})')
                    save_checkpoint(model, [tag], run, epoch, epoch_iter, total_iters, False)
                iter_data_time = time.time()
                if stopping or (opt.max_iters and total_iters >= opt.max_iters):
                    # stopped early; it still counts as a full epoch when no batch was left
                    epoch_done = epoch_iter >= dataset.samples_per_epoch()
                    break
            else:
                epoch_done = True
            bar.close()
            interrupted = stopping or bool(opt.max_iters and total_iters >= opt.max_iters)
            if epoch_done:
                model.update_learning_rate()
            if epoch_done and (epoch % opt.save_epoch_freq == 0 or epoch == total_epochs):
                distributed.print0(f'saving the model at the end of epoch {epoch}, iters {total_iters}')
                save_checkpoint(model, ['latest', epoch], run, epoch, epoch_iter, total_iters, True)
            elif interrupted:
                distributed.print0(f'saving the latest model (epoch {epoch}, iteration {epoch_iter}, '
                                   f'total_iters {total_iters})')
                save_checkpoint(model, ['latest'], run, epoch, epoch_iter, total_iters, epoch_done)
            if interrupted:
                break
            distributed.print0(f'End of epoch {epoch} / {total_epochs} \t '
                               f'Time Taken: {time.time() - epoch_start:.0f} sec')
    if stopping:
        signum = distributed.max_int(stop.signum or 0, model.device)  # the signal another process got
        print(f'stopped by signal {signum}; resume with --continue_train', file=sys.stderr)
        return 128 + signum
    return 0


def main(argv=None):
    """Parse, lock the run's checkpoint folder (the process of rank 0), save the options, train.

    Returns the exit status: 0, 3 (non-finite loss), 4 (disk full), 128 + signal; deliberate errors
    propagate (as one line at the command line, util/errors.py)."""
    options = TrainOptions(argv)
    opt = options.parse(save=False)
    save_dir = os.path.join(opt.checkpoints_dir, opt.name)
    # one run per folder: a second one would interleave checkpoints, options and logs with this one's
    lock = RunLock(save_dir) if distributed.env_rank() == 0 else None
    try:
        if lock is not None:
            try:
                lock.acquire()
            except OSError as exc:
                raise SystemExit(f'error: cannot write to --checkpoints_dir {save_dir!r}: {exc}') from exc
            options.save_options(opt)
        return train(opt)
    except NonFiniteLossError as exc:
        print(f'error: {exc}', file=sys.stderr)
        return 3
    except (OSError, RuntimeError) as exc:
        full = errors.disk_full(exc, save_dir, advice='The previous checkpoint files are intact; free space and '
                                'resume with --continue_train.')
        if full is None:
            raise
        print(f'error: {full}', file=sys.stderr)
        return full.exit_code
    finally:
        distributed.cleanup()
        if lock is not None:
            lock.release()


if __name__ == '__main__':
    sys.exit(errors.guard(main))
