"""Train a translation model with CUT's command line.

    python train.py --dataroot ./datasets/horse2zebra --name h2z --model src_hdce --dce_idt ...
    torchrun --nproc_per_node 4 train.py ...   # DistributedDataParallel, --batch_size per GPU

Checkpoints go to <checkpoints_dir>/<name>/<epoch>_net_<G|D|F>.pth (CUT's files) plus
<epoch>_train_state.pth (optimizers, schedulers, counters, RNG states) so --continue_train resumes
exactly. Losses are logged to loss_log.txt and loss_log.jsonl, plotted in visdom when a server runs, and sent to
TensorBoard / W&B with --logger (util/loggers.py, docs/monitoring.md).
"""
import argparse
import contextlib
import math
from collections import OrderedDict
import os
import random
import signal
import sys
import time

import numpy as np
import torch
from tqdm import tqdm

from data import create_dataset
from models import create_model
from models.base_model import rng_state, set_generator_state, set_rng_state
from models.runtime import Runtime, flag_device, require_cuda_for_gpu_ids
from options.base_options import read_run_options
from options.train_options import TrainOptions
from util import distributed, errors, run_folder
from util.run_lock import RunLock
from util.visualizer import Visualizer


# Under torchrun the processes agree whether one of them got a stop signal (a host-side all-reduce, a network
# round trip across nodes) at every print, display or save point and at least every STOP_AGREEMENT_STEPS steps.
STOP_AGREEMENT_STEPS = 10


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


class LossWatch:
    """The training steps' losses without a host read per step: each step folds, on the device, which losses
    were non-finite and when that first happened; `read` fetches it all (one host sync) when the losses are
    printed or a checkpoint is about to be saved."""
    NONE = 2 ** 62  # the 'first bad step' key while there is none

    def __init__(self, model):
        self.model = model
        self.bad = self.first = None
        self.stepped = False  # a run resumed at the end of an epoch saves before its first step: no losses yet

    def step(self, epoch, epoch_iter):
        self.stepped = True
        values = self.model.current_loss_tensors()
        if not values:
            return
        self.names = list(values)
        bad = ~torch.isfinite(torch.stack([v.float().reshape(()) for v in values.values()]))  # (L,)
        first = torch.where(bad.any(), epoch * 1_000_000_000 + epoch_iter, self.NONE)  # keys grow with time
        self.bad = bad if self.bad is None else self.bad | bad
        self.first = first if self.first is None else torch.minimum(self.first, first)

    def read(self):
        """(losses averaged over processes; {name: value} of the losses non-finite at any step since the last
        read, on any process; (epoch, iteration) of the first such step, or None), and start over. Before
        this process's first step there is nothing to read (every process resumes at the same iteration)."""
        if not self.stepped:
            return OrderedDict(), {}, None
        losses = self.model.get_current_losses()
        means = distributed.reduce(list(losses.values()), self.model.device, 'mean')
        losses = OrderedDict(zip(losses, means))
        bad, where = non_finite(losses), None
        if self.bad is not None:
            flags = distributed.reduce(self.bad.tolist(), self.model.device, 'max')
            first = int(distributed.reduce([self.first.item()], self.model.device, 'min')[0])
            bad.update({name: losses[name] for name, flag in zip(self.names, flags) if flag})
            if first != self.NONE:
                where = divmod(first, 1_000_000_000)
        self.bad = self.first = None
        return losses, bad, where


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
    """Rank 0 writes weights and training state under each tag; the other processes wait for it. The state
    also holds the patch-position stream and, under torchrun, every process's own RNG states."""
    per_rank = distributed.gather(rng_state(model.device)) if run.world_size > 1 else None
    if distributed.is_main():
        state = model.training_state(epoch, epoch_iter, total_iters, epoch_done, epoch_count=run.epoch_count)
        state['rng_patches'] = model.patch_generator.get_state()
        state['seed'] = run.seed
        state['epoch_samples'] = epoch_iter * run.world_size  # read by all processes: another number resumes it
        if per_rank is not None:
            state['rng_ranks'] = per_rank
        for tag in tags:
            model.save_networks(tag, state)
    distributed.barrier()


def saved_seed(opt):
    """The seed of the run saved in the checkpoint folder: its --epoch training state's, else its train_opt.json's;
    None when it has neither (a new folder, an official CUT checkpoint)."""
    path = os.path.join(opt.checkpoints_dir, opt.name, f'{opt.epoch}_train_state.pth')
    try:  # mmap: the optimizer states are not read
        state = torch.load(path, map_location='cpu', weights_only=True, mmap=True)
        return int(state.get('seed', state['options']['seed']))
    except Exception:  # absent, or damaged (which read_training_state reports)
        return read_run_options(opt.checkpoints_dir, opt.name, keys=('seed',)).get('seed')


def run_seed(opt, seed_given=True):
    """The run's seed: a resumed run keeps its own (the order of a resumed epoch's samples, the sub-network
    and patch streams depend on it); a new run takes --seed, or the seed drawn at parse time."""
    saved = saved_seed(opt) if opt.continue_train else None
    if saved is None:
        return opt.seed
    if seed_given and saved != opt.seed:
        print(f'note: --seed {opt.seed} ignored: the run resumes with its own seed {saved}', file=sys.stderr)
    return saved


class Run:
    """What this process learns at run time, beside the (final) options: its place among the processes,
    its device and seed, and the epoch the learning-rate rule counts from."""

    def __init__(self, opt, seed_given=True):
        self.rank, self.world_size, gpu = distributed.init_from_env(use_cuda=bool(opt.gpu_ids), gpu_ids=opt.gpu_ids)
        # one seed for all processes (each drew its own at parse time): rank 0's
        self.seed = distributed.broadcast(run_seed(opt, seed_given) if self.rank == 0 else None)
        if self.world_size > 1:
            self.device = f'cuda:{gpu}' if opt.gpu_ids else 'cpu'
        elif len(opt.gpu_ids) > 1:
            raise SystemExit(f'error: --gpu_ids {",".join(map(str, opt.gpu_ids))} asks for {len(opt.gpu_ids)} GPUs, '
                             f'but one process trains on one GPU: launch one process per GPU with '
                             f'torchrun --nproc_per_node {len(opt.gpu_ids)} train.py ... (DistributedDataParallel)')
        else:
            self.device = flag_device(opt)
            if opt.gpu_ids:  # the current device: where kernels launch and unqualified CUDA calls act
                torch.cuda.set_device(self.device)
        self.epoch_count = opt.epoch_count


def own_randomness(run, model, state):
    """Random streams of the training loop. Patch positions come from one generator seeded by the run's seed,
    shared by all processes under torchrun (so N processes of batch b compute what one process of batch N*b
    computes). Every other draw (B partners, crops, flips, noise, latent codes) is each process's own: all
    processes built the model from one seed; from here rank r > 0 draws from `distributed.rank_seed(seed, r)`
    while rank 0 continues the one-process stream. A resumed run restores each process's saved states, so
    it continues exactly (load_training_state has restored rank 0's)."""
    model.patch_generator = torch.Generator(model.device).manual_seed(run.seed)
    if state is None:
        if run.rank > 0:
            seed_everything(distributed.rank_seed(run.seed, run.rank))
        return
    restart = run.seed + state['total_iters']
    if 'rng_patches' not in state:  # a state saved before the patch stream had its own generator
        model.patch_generator.manual_seed(restart)
    elif not set_generator_state(model.patch_generator, state['rng_patches'], restart):
        distributed.print0(f'note: the training state was saved on another kind of device: the patch positions '
                           f'restart from seed {restart} (the run\'s seed + iteration), not where they stopped')
    saved = state.get('rng_ranks') or [state['rng']]
    if len(saved) == run.world_size:
        set_rng_state(saved[run.rank], model.device)
        return
    # saved by another number of processes: fresh streams for all but rank 0, not an exact continuation
    distributed.print0(f'the training state holds the random state of {len(saved)} process(es), this run has '
                       f'{run.world_size}: processes other than rank 0 draw fresh streams (the run does not repeat '
                       f'the draws of an uninterrupted run)')
    if run.rank > 0:
        seed_everything(distributed.rank_seed(run.seed + state['total_iters'], run.rank))


def resume_point(state, dataset, run):
    """(epoch, samples of it this process skips, total_iters) where the saved run goes on. The state counts the
    epoch's samples over all processes, so that another number of processes skips as many (rounded down to
    whole steps of this run: a few samples are then read twice, none missed)."""
    if state['epoch_done']:
        return state['epoch'] + 1, 0, state['total_iters']
    saved_world = len(state.get('rng_ranks') or [None])
    samples = state.get('epoch_samples', state['epoch_iter'] * saved_world)
    step = dataset.opt.batch_size * run.world_size
    skip = samples // step * dataset.opt.batch_size
    skipped = skip * run.world_size
    if skipped != samples:
        distributed.print0(f'note: the state was saved {samples} samples into epoch {state["epoch"]} by '
                           f'{saved_world} process(es); {run.world_size} of batch {dataset.opt.batch_size} skip '
                           f'{skipped} of them and read the other {samples - skipped} again')
    return state['epoch'], skip, state['total_iters']


def nothing_left(opt, start_epoch, total_iters, total_epochs):
    """Why a resumed run has nothing to train, or None."""
    if opt.max_iters and total_iters >= opt.max_iters:
        return f'it stopped at --max_iters {opt.max_iters} (total_iters {total_iters}); raise --max_iters to go on'
    if start_epoch > total_epochs:
        return f'it has trained its {total_epochs} epochs; raise --n_epochs or --n_epochs_decay to go on'
    return None


def crossed(before, after, freq):
    """Whether the count passed a multiple of freq going from before to after (it advances by
    batch x processes, so it need not land on one)."""
    return after // freq > before // freq


def train(opt, options=None, seed_given=True):
    """Train; `options` (the TrainOptions that parsed opt), when given, saves the final options (with the run's
    seed) on rank 0. `opt` is left as it is: every component reads a copy that holds the run's seed."""
    run = Run(opt, seed_given)
    rank, world_size = run.rank, run.world_size
    opt = argparse.Namespace(**dict(vars(opt), seed=run.seed))
    if options is not None and rank == 0:
        options.save_options(opt)
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
            model.load_training_state(state)
            start_epoch, skip, total_iters = resume_point(state, dataset, run)
            done = nothing_left(opt, start_epoch, total_iters, total_epochs)
            if done:
                distributed.print0(f'nothing to train in {save_dir}: {done}')
                return 0
            distributed.print0(f'resuming at epoch {start_epoch}, iteration {skip} of the epoch, '
                               f'{total_iters} in total (seed {run.seed})')
    own_randomness(run, model, state)

    visualizer = Visualizer(opt, rank=rank, start_step=total_iters)
    watch = LossWatch(model)

    def checked_losses(epoch, epoch_iter):
        """The losses, read now; a non-finite one since the last read stops the run (before a save), unless
        --skip_nonfinite, which checks (and undoes) every step itself."""
        losses, bad, where = watch.read()
        runtime.check_loss_scale()
        if bad and not opt.skip_nonfinite:
            at_epoch, at_iter = where or (epoch, epoch_iter)
            raise NonFiniteLossError(non_finite_message(bad, at_epoch, at_iter) + '; training stopped, '
                                     'the last saved checkpoint is kept unchanged')
        return losses

    skipped = 0
    steps = 0  # of this process since it started
    stopping = False  # agreed by every process, which must leave the loop at the same iteration
    with StopRequest() as stop:
        for epoch in range(start_epoch, total_epochs + 1):
            epoch_start = time.time()
            visualizer.reset()
            dataset.set_epoch(epoch)
            model.set_epoch(epoch)
            epoch_iter = skip if epoch == start_epoch else 0
            bar = tqdm(total=dataset_size, initial=epoch_iter * world_size, desc=f'epoch {epoch}/{total_epochs}',
                       unit='img', disable=opt.no_tqdm or rank != 0, dynamic_ncols=True, file=sys.stdout)
            iter_data_time = time.time()
            # timing without a per-step device sync: the wall time of the steps since the last print, less
            # their data loading, read once the printed losses have synchronised the device
            window_start, window_data, window_images = time.time(), 0.0, 0
            for data in dataset.iterate(start_sample=epoch_iter):
                iter_start = time.time()
                window_data += iter_start - iter_data_time
                batch_size = data['A'].size(0)
                before, total_iters = total_iters, total_iters + batch_size * world_size  # all processes' samples
                epoch_iter += batch_size  # this process's samples (what a resumed run skips)
                window_images += batch_size
                steps += 1
                print_now, save_now = crossed(before, total_iters, opt.print_freq), \
                    crossed(before, total_iters, opt.save_latest_freq)
                display_now = crossed(before, total_iters, opt.display_freq)
                last = bool(opt.max_iters and total_iters >= opt.max_iters)
                model.set_input(data)
                if opt.skip_nonfinite:
                    snapshot = model.snapshot()
                model.optimize_parameters()
                if opt.skip_nonfinite:  # a host read per step: the step is undone at once
                    current = model.get_current_losses()
                    bad = non_finite(OrderedDict(zip(current, distributed.reduce(list(current.values()),
                                                                                 model.device, 'mean'))))
                    if bad:
                        model.restore(snapshot)
                        skipped += 1
                        if rank == 0:
                            bar.write(f'warning: {non_finite_message(bad, epoch, epoch_iter)}: step undone '
                                      f'(--skip_nonfinite, {skipped} so far)')
                else:
                    watch.step(epoch, epoch_iter)
                # every process leaves the loop at the same iteration: they agree at points all of them see
                if world_size == 1 or print_now or save_now or display_now or last or \
                        steps % STOP_AGREEMENT_STEPS == 0:
                    stopping = distributed.any_process(stop.signum is not None)
                bar.update(batch_size * world_size)

                if display_now:
                    model.compute_visuals()
                    visualizer.display_current_results(model.get_current_visuals(), epoch,
                                                       crossed(before, total_iters, opt.update_html_freq), total_iters)
                if print_now:
                    losses = checked_losses(epoch, epoch_iter)
                    runtime.synchronize()
                    now = time.time()
                    optimize_time = (now - window_start - window_data) / window_images
                    t_data = iter_start - iter_data_time  # this step's (CUT's 'data' time)
                    window_start, window_data, window_images = now, 0.0, 0
                    bar.set_postfix({k: f'{v:.3f}' for k, v in losses.items()}, refresh=False)
                    visualizer.print_current_losses(epoch, epoch_iter * world_size, losses, optimize_time, t_data,
                                                    total_iters=total_iters,
                                                    learning_rates=model.current_learning_rates())
                    if opt.display_id is None or opt.display_id > 0:
                        visualizer.plot_current_losses(epoch, float(epoch_iter * world_size) / dataset_size, losses)
                if save_now:
                    tag = f'iter_{total_iters}' if opt.save_by_iter else 'latest'
                    checked_losses(epoch, epoch_iter)
                    if rank == 0:
                        bar.write(f'saving the {tag} model (epoch {epoch}, total_iters {total_iters})')
                    save_checkpoint(model, [tag], run, epoch, epoch_iter, total_iters, False)
                iter_data_time = time.time()
                if stopping or last:
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
                checked_losses(epoch, epoch_iter)
                distributed.print0(f'saving the model at the end of epoch {epoch}, iters {total_iters}')
                save_checkpoint(model, ['latest', epoch], run, epoch, epoch_iter, total_iters, True)
            elif interrupted:
                checked_losses(epoch, epoch_iter)
                distributed.print0(f'saving the latest model (epoch {epoch}, iteration {epoch_iter}, '
                                   f'total_iters {total_iters})')
                save_checkpoint(model, ['latest'], run, epoch, epoch_iter, total_iters, epoch_done)
            if interrupted:
                break
            distributed.print0(f'End of epoch {epoch} / {total_epochs} \t '
                               f'Time Taken: {time.time() - epoch_start:.0f} sec')
    visualizer.close()
    if stopping:
        signum = distributed.max_int(stop.signum or 0, model.device)  # the signal another process got
        print(f'stopped by signal {signum}; resume with --continue_train', file=sys.stderr)
        return 128 + signum
    return 0


def start_in(save_dir, opt):
    """A new run does not write over a run's checkpoints unless asked (--overwrite deletes them first)."""
    if opt.continue_train:
        return
    if not opt.overwrite:
        run_folder.refuse_existing_run(save_dir)
    elif distributed.env_rank() == 0:
        removed = run_folder.clear_run(save_dir)
        if removed:
            print(f'note: --overwrite: deleted the {removed} checkpoint and log file(s) of the run in {save_dir}')


def started(save_dir):
    """Whether training began in save_dir (its loss log or a checkpoint exists): a failure after that keeps it."""
    return os.path.isfile(os.path.join(save_dir, 'loss_log.txt')) or bool(run_folder.checkpoint_files(save_dir))


def main(argv=None):
    """Parse, lock the run's checkpoint folder (the process of rank 0), check that it holds no other run, train;
    a start that fails before training removes the folder it made.

    Returns the exit status: 0, 3 (non-finite loss), 4 (disk full), 128 + signal; deliberate errors
    propagate (as one line at the command line, util/errors.py)."""
    require_cuda_for_gpu_ids(sys.argv[1:] if argv is None else argv)
    options = TrainOptions(argv)
    opt = options.parse(save=False)
    save_dir = os.path.join(opt.checkpoints_dir, opt.name)
    # one run per folder: a second one would interleave checkpoints, options and logs with this one's
    lock = RunLock(save_dir) if distributed.env_rank() == 0 else None
    made = run_folder.removed_on_failure(save_dir, keep_if=started) if lock else contextlib.nullcontext()
    try:
        with made:
            if lock is not None:
                try:
                    lock.acquire()
                except OSError as exc:
                    raise SystemExit(f'error: cannot write to --checkpoints_dir {save_dir!r}: {exc}') from exc
            start_in(save_dir, opt)
            return train(opt, options, options.seed_given)
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
