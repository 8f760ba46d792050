"""Train a translation model with CUT's command line.

    python train.py --dataroot ./datasets/horse2zebra --name h2z --model src_hdce --dce_idt ...

Checkpoints go to <checkpoints_dir>/<name>/<epoch>_net_<G|D|F>.pth (CUT's files) plus
<epoch>_train_state.pth (optimizers, schedulers, counters, RNG states) so --continue_train resumes
exactly. Losses are logged to loss_log.txt and loss_log.jsonl, plotted in visdom when a server runs.
"""
import errno
import math
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
from options.train_options import TrainOptions
from util.visualizer import Visualizer


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


def train(opt):
    seed_everything(opt.seed)
    save_dir = os.path.join(opt.checkpoints_dir, opt.name)
    check_writable(save_dir)
    dataset = create_dataset(opt)
    dataset_size = len(dataset)
    print(f'The number of training images = {dataset_size}')
    model = create_model(opt)
    total_epochs = opt.n_epochs + opt.n_epochs_decay

    # set-up before the loop (not inside its first iteration as CUT does), so that a resumed run can
    # restore every RNG before the first batch of the resumed epoch is drawn
    model.set_epoch(opt.epoch_count)
    model.data_dependent_initialize(first_batch(dataset))
    model.setup(opt)
    model.parallelize()
    start_epoch, skip, total_iters = opt.epoch_count, 0, 0
    if opt.continue_train:
        counters = model.load_training_state(opt.epoch)
        if counters is None:
            print(f'no training state beside the {opt.epoch} weights (e.g. an official CUT checkpoint): '
                  f'resuming from the weights only, with fresh optimizers, at --epoch_count {opt.epoch_count}')
        else:
            opt.epoch_count = counters.get('epoch_count', opt.epoch_count)
            start_epoch = counters['epoch'] + 1 if counters['epoch_done'] else counters['epoch']
            skip = 0 if counters['epoch_done'] else counters['epoch_iter']
            total_iters = counters['total_iters']
            print(f'resuming at epoch {start_epoch}, iteration {skip} of the epoch, {total_iters} in total')

    visualizer = Visualizer(opt)
    optimize_time = 0.1
    skipped = 0
    with StopRequest() as stop:
        for epoch in range(start_epoch, total_epochs + 1):
            epoch_start = time.time()
            visualizer.reset()
            dataset.set_epoch(epoch)
            model.set_epoch(epoch)
            epoch_iter = skip if epoch == start_epoch else 0
            bar = tqdm(total=dataset_size, initial=epoch_iter, desc=f'epoch {epoch}/{total_epochs}',
                       unit='img', disable=opt.no_tqdm, dynamic_ncols=True, file=sys.stdout)
            iter_data_time = time.time()
            t_data = 0.0
            for data in dataset.iterate(start_sample=epoch_iter):
                iter_start = time.time()
                if total_iters % opt.print_freq == 0:
                    t_data = iter_start - iter_data_time
                batch_size = data['A'].size(0)
                total_iters += batch_size
                epoch_iter += batch_size
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
                bad = non_finite(losses)
                if bad and not opt.skip_nonfinite:
                    raise NonFiniteLossError(non_finite_message(bad, epoch, epoch_iter) + '; training stopped, '
                                             'the last saved checkpoint is kept unchanged')
                if bad:
                    model.restore(snapshot)
                    skipped += 1
                    bar.write(f'warning: {non_finite_message(bad, epoch, epoch_iter)}: step undone '
                              f'(--skip_nonfinite, {skipped} so far)')
                bar.update(batch_size)

                if total_iters % opt.display_freq == 0:
                    model.compute_visuals()
                    visualizer.display_current_results(model.get_current_visuals(), epoch,
                                                       total_iters % opt.update_html_freq == 0)
                if total_iters % opt.print_freq == 0:
                    bar.set_postfix({k: f'{v:.3f}' for k, v in losses.items()}, refresh=False)
                    visualizer.print_current_losses(epoch, epoch_iter, losses, optimize_time, t_data,
                                                    total_iters=total_iters)
                    if opt.display_id is None or opt.display_id > 0:
                        visualizer.plot_current_losses(epoch, float(epoch_iter) / dataset_size, losses)
                if total_iters % opt.save_latest_freq == 0:
                    tag = f'iter_{total_iters}' if opt.save_by_iter else 'latest'
                    bar.write(f'saving the {tag} model (epoch {epoch}, total_iters {total_iters})')
                    model.save_networks(tag, model.training_state(epoch, epoch_iter, total_iters, False))
                iter_data_time = time.time()
                if stop.signum is not None or (opt.max_iters and total_iters >= opt.max_iters):
                    # stopped early; it still counts as a full epoch when no batch was left
                    epoch_done = epoch_iter >= dataset.samples_per_epoch()
                    break
            else:
                epoch_done = True
            bar.close()
            interrupted = stop.signum is not None or bool(opt.max_iters and total_iters >= opt.max_iters)
            if epoch_done:
                model.update_learning_rate()
            if epoch_done and (epoch % opt.save_epoch_freq == 0 or epoch == total_epochs):
                print(f'saving the model at the end of epoch {epoch}, iters {total_iters}')
                state = model.training_state(epoch, epoch_iter, total_iters, True)
                model.save_networks('latest', state)
                model.save_networks(epoch, state)
            elif interrupted:
                print(f'saving the latest model (epoch {epoch}, iteration {epoch_iter}, total_iters {total_iters})')
                model.save_networks('latest', model.training_state(epoch, epoch_iter, total_iters, epoch_done))
            if interrupted:
                break
            print(f'End of epoch {epoch} / {total_epochs} \t Time Taken: {time.time() - epoch_start:.0f} sec')
    if stop.signum is not None:
        print(f'stopped by signal {stop.signum}; resume with --continue_train', file=sys.stderr)
        return 128 + stop.signum
    return 0


def main(argv=None):
    opt = TrainOptions(argv).parse()
    try:
        return train(opt)
    except NonFiniteLossError as exc:
        print(f'error: {exc}', file=sys.stderr)
        return 3
    except OSError as exc:
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        print(f'error: disk full while writing {exc.filename or opt.checkpoints_dir}: {exc.strerror}. '
              'The previous checkpoint files are intact; free space and resume with --continue_train.',
              file=sys.stderr)
        return 4


if __name__ == '__main__':
    sys.exit(main())
