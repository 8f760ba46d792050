"""The model contract shared by train.py and test.py, and checkpoint I/O in CUT's file layout."""
import copy
import hashlib
import os
import random
import re
from abc import ABC, abstractmethod
from collections import OrderedDict

import numpy as np
import torch
from torch.optim import lr_scheduler

from util import distributed, util

from .runtime import Runtime

STATE_FORMAT = 1
# <tag>_net_<name>.pth.tmp<random> or <tag>_train_state.pth.tmp<random>: a file util.stage_write is writing
_STAGED_CHECKPOINT = re.compile(r'^(.+?)_(?:net_[^.]+|train_state)\.pth\.tmp')
LR_POLICIES = ('linear', 'step', 'cosine')


def get_scheduler(optimizer, opt, epoch_count=1):
    """CUT's learning-rate policies; 'linear' keeps lr for n_epochs then decays it to 0 over n_epochs_decay,
    counting epochs from `epoch_count` (the run's first epoch: --epoch_count, or the resumed run's)."""
    if opt.lr_policy == 'linear':
        n_epochs, n_decay = opt.n_epochs, opt.n_epochs_decay

        def lambda_rule(epoch):
            return 1.0 - max(0, epoch + epoch_count - n_epochs) / float(n_decay + 1)
        return lr_scheduler.LambdaLR(optimizer, lr_lambda=lambda_rule)
    if opt.lr_policy == 'step':
        return lr_scheduler.StepLR(optimizer, step_size=opt.lr_decay_iters, gamma=0.1)
    if opt.lr_policy == 'cosine':
        return lr_scheduler.CosineAnnealingLR(optimizer, T_max=opt.n_epochs, eta_min=0)
    raise ValueError(f'unknown --lr_policy {opt.lr_policy!r}; valid: {", ".join(LR_POLICIES)}')


def rng_state(device=None):
    """Every RNG the training loop touches, as plain tensors and tuples (loadable with weights_only): Python's,
    NumPy's, torch's CPU generator and, for a run on a CUDA `device`, that device's generator (not every
    visible GPU's: the run draws from its own device alone)."""
    np_state = np.random.get_state()
    state = {
        'python': random.getstate(),
        'numpy': (np_state[0], torch.from_numpy(np_state[1].copy()), int(np_state[2]), int(np_state[3]),
                  float(np_state[4])),
        'torch': torch.get_rng_state(),
    }
    device = torch.device(device) if device is not None else None
    if device is not None and device.type == 'cuda':
        state['cuda'] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state, device=None):
    """Restore `rng_state(device)`'s result. A state saved by earlier versions holds the generators of every
    visible GPU (a list): this run's device takes its own entry, the first when it has none."""
    random.setstate(state['python'])
    name, keys, pos, has_gauss, cached = state['numpy']
    np.random.set_state((name, keys.numpy(), pos, has_gauss, cached))
    torch.set_rng_state(state['torch'])
    device = torch.device(device) if device is not None else None
    if 'cuda' in state and device is not None and device.type == 'cuda':
        cuda = state['cuda']
        if isinstance(cuda, (list, tuple)):
            index = device.index or 0
            cuda = cuda[index] if index < len(cuda) else cuda[0]
        torch.cuda.set_rng_state(cuda, device)


def set_generator_state(generator, state, seed):
    """Load a torch.Generator's saved state. A state saved on the other kind of device does not fit (a CUDA
    generator's state is 16 bytes, a CPU one's 5,056): the stream restarts from `seed` instead. Returns
    whether the saved state was loaded."""
    if state.numel() != generator.get_state().numel():
        generator.manual_seed(seed)
        return False
    generator.set_state(state)
    return True


def _sha256(path):
    h = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(1 << 20), b''):
            h.update(block)
    return h.hexdigest()


def _discard(staged):
    """Remove the temporary files of (temporary, target) pairs staged by a save that failed."""
    for tmp, _ in staged:
        if os.path.exists(tmp):
            os.remove(tmp)


def _scalar(value):
    return float(value.detach()) if isinstance(value, torch.Tensor) else float(value)


class BaseModel(ABC):
    """Subclasses fill `loss_names`, `visual_names`, `model_names` and implement the abstract methods.

    Train and test loops talk to models only through this interface.
    """
    # patch positions are drawn from this generator when set (train.py: one stream, shared by every process
    # under torchrun as one process shares a draw between the images of its batch), else from torch's own
    patch_generator = None

    def __init__(self, opt, runtime=None):
        self.opt = opt
        self.isTrain = opt.isTrain
        # how the networks run (device, precision, kernels); train.py / test.py build it from the flags
        self.runtime = runtime if runtime is not None else Runtime.from_options(opt)
        self.device = self.runtime.device
        self.save_dir = os.path.join(opt.checkpoints_dir, opt.name)
        self.loss_names = []
        self.model_names = []
        self.visual_names = []
        self.optimizers = []
        self.schedulers = []
        self.image_paths = []
        self.losses = OrderedDict()  # name -> the last step's value of each of loss_names

    @staticmethod
    def modify_commandline_options(parser, is_train):
        return parser

    @staticmethod
    def preset_defaults(opt, is_train):
        """Defaults that depend on already-parsed flags (e.g. CUT's --CUT_mode); {} for none.

        Called by the option parser after the model's flags are known, so no component ever has
        to read sys.argv itself.
        """
        return {}

    def set_input(self, input):
        """Unpack a batch: real_A is the source domain of --direction, real_B the target."""
        a, b = ('A', 'B') if self.opt.direction == 'AtoB' else ('B', 'A')
        if a not in input and not self.isTrain:  # dataset_mode single holds only 'A', whatever the direction
            a, b = 'A', 'B'
        self.real_A = self.to_input(input[a])
        # a test set may have no target domain (dataset_mode single)
        self.real_B = self.to_input(input[b]) if (b in input or self.isTrain) else None
        self.image_paths = input[a + '_paths']

    @abstractmethod
    def forward(self):
        """Run the generator(s); used by optimize_parameters and test."""

    @abstractmethod
    def optimize_parameters(self):
        """One training step: losses, gradients, optimizer updates."""

    def data_dependent_initialize(self, data):
        """Build whatever depends on data shapes (e.g. CUT's F) before optimizers and loading."""

    def set_epoch(self, epoch):
        """Called by train.py at the start of each epoch (curricula read it)."""
        self.epoch = epoch

    def setup(self, opt, epoch_count=1):
        """Schedulers when training (epochs counted from `epoch_count`); load weights when testing or resuming."""
        if self.isTrain:
            self.schedulers = [get_scheduler(o, opt, epoch_count) for o in self.optimizers]
        if not self.isTrain or opt.continue_train:
            self.load_networks(opt.epoch)
        self.print_networks(opt.verbose)

    def parallelize(self):
        """Each network on the device, as the runtime prepares it (layout, training kernels, compilation)."""
        for name in self.model_names:
            setattr(self, 'net' + name, self.runtime.prepare(getattr(self, 'net' + name)))

    def distribute(self):
        """Wrap every trained network in DistributedDataParallel (train.py under torchrun).

        Networks no optimizer trains (F without MLPs, or unused) stay unwrapped: DDP would wait for their
        gradients. Buffers are not broadcast: they are constant blur filters or batch-norm running
        statistics, and broadcasting them in place between two forwards would invalidate saved graphs.
        """
        from torch.nn.parallel import DistributedDataParallel
        trained = {id(p) for o in self.optimizers for group in o.param_groups for p in group['params']}
        device_ids = [self.device.index] if self.device.type == 'cuda' else None
        for name in self.model_names:
            net = getattr(self, 'net' + name)
            if any(id(p) in trained for p in net.parameters()):
                setattr(self, 'net' + name, DistributedDataParallel(net, device_ids=device_ids,
                                                                    broadcast_buffers=False))

    def to_input(self, tensor):
        return self.runtime.to_input(tensor)

    def eval(self):
        for name in self.model_names:
            getattr(self, 'net' + name).eval()

    def test(self):
        with torch.no_grad():
            self.forward()
            self.compute_visuals()

    def compute_visuals(self):
        """Extra visuals for display; nothing by default."""

    def get_image_paths(self):
        return self.image_paths

    def update_learning_rate(self):
        old_lr = self.optimizers[0].param_groups[0]['lr']
        for scheduler in self.schedulers:
            scheduler.step()
        lr = self.optimizers[0].param_groups[0]['lr']
        distributed.print0(f'learning rate {old_lr:.7f} -> {lr:.7f}')

    def get_current_visuals(self):
        return OrderedDict((name, getattr(self, name)) for name in self.visual_names
                           if isinstance(getattr(self, name, None), torch.Tensor))

    def get_current_losses(self):
        """The last step's losses as floats, in the order of loss_names (the same keys every step). Reading a
        loss on a GPU waits for the step to finish: train.py asks only when it prints or saves."""
        return OrderedDict((name, _scalar(self.losses[name])) for name in self.loss_names)

    def current_loss_tensors(self):
        """The last step's losses that are tensors on the model's device, detached, read by nobody (no host sync):
        what train.py checks for NaN / Inf at every step."""
        return OrderedDict((name, self.losses[name].detach()) for name in self.loss_names
                           if isinstance(self.losses[name], torch.Tensor) and self.losses[name].device == self.device)

    # ---- checkpoints -------------------------------------------------------------------------
    def network_path(self, epoch, name, load_dir=None):
        return os.path.join(load_dir or self.save_dir, f'{epoch}_net_{name}.pth')

    def state_path(self, epoch):
        return os.path.join(self.save_dir, f'{epoch}_train_state.pth')

    def _unwrapped(self, name):
        """net<name> without its DistributedDataParallel wrapper: for checkpoints, and for passes that
        give the network no gradient (a frozen discriminator), which DDP would wait for in vain."""
        net = getattr(self, 'net' + name)
        return net.module if hasattr(net, 'module') else net

    def save_networks(self, epoch, training_state=None):
        """Write <epoch>_net_<name>.pth (CUT's files) and, when given, <epoch>_train_state.pth.

        Every file goes to a temporary name first; the renames happen only after all are written,
        so a crash or a full disk leaves the previous checkpoint complete. The state records the
        SHA-256 of the weight files it belongs with and is staged last: a crash between two renames
        leaves it complete, and `read_training_state` finishes the renames (`_finish_interrupted_save`).
        """
        self._remove_stale_temporaries(epoch)
        staged = []

        def stage(obj, path):
            staged.append((util.stage_write(path, lambda f: torch.save(obj, f), binary=True), path))
        try:
            digests = {}
            for name in self.model_names:
                stage({k: v.detach().cpu() for k, v in self._unwrapped(name).state_dict().items()},
                      self.network_path(epoch, name))
                digests[name] = _sha256(staged[-1][0])
            if training_state is not None:
                stage(dict(training_state, net_sha256=digests), self.state_path(epoch))
        except BaseException:
            _discard(staged)
            raise
        for tmp, path in staged:  # weights first, the state that vouches for them last
            os.replace(tmp, path)

    def _finish_interrupted_save(self, epoch):
        """Complete the renames of a save killed between them: its staged state vouches (by SHA-256) for
        every weight file, each either renamed already or still staged. A save killed while staging
        leaves no loadable staged state, or one whose weights are not all there: nothing is touched and
        the previous checkpoint, complete, is the one loaded. Returns whether a save was finished."""
        if not os.path.isdir(self.save_dir):
            return False
        state_path = self.state_path(epoch)
        files = {f: os.path.join(self.save_dir, f) for f in sorted(os.listdir(self.save_dir))}
        for staged_state in [p for f, p in files.items() if util.is_staged_file(f, state_path)]:
            renames = self._renames_vouched_by(staged_state, epoch, files)
            if renames is None:
                continue
            for tmp, target in renames + [(staged_state, state_path)]:
                os.replace(tmp, target)
            print(f'{state_path}: finished a save interrupted between renames '
                  f'({len(renames)} weight file(s) and the state moved into place)')
            return True
        return False

    def _renames_vouched_by(self, staged_state, epoch, files):
        """(staged, target) renames that bring the weight files to the digests `staged_state` records;
        None when that state is unreadable or a weight file it names is nowhere complete."""
        try:
            digests = util.safe_torch_load(staged_state).get('net_sha256')
        except RuntimeError:  # cut short while staging
            return None
        if not digests:
            return None
        renames = []
        for name, digest in digests.items():
            target = self.network_path(epoch, name)
            if os.path.isfile(target) and _sha256(target) == digest:
                continue
            match = [p for f, p in files.items() if util.is_staged_file(f, target) and _sha256(p) == digest]
            if not match:
                return None
            renames.append((match[0], target))
        return renames

    def _remove_stale_temporaries(self, epoch):
        """Temporary files of a save that a killed process never finished."""
        if not os.path.isdir(self.save_dir):
            return
        targets = [self.network_path(epoch, n) for n in self.model_names] + [self.state_path(epoch)]
        for f in os.listdir(self.save_dir):
            if any(util.is_staged_file(f, target) for target in targets):
                os.remove(os.path.join(self.save_dir, f))

    def load_networks(self, epoch):
        load_dir = self.save_dir
        if self.isTrain and getattr(self.opt, 'pretrained_name', None):
            load_dir = os.path.join(self.opt.checkpoints_dir, self.opt.pretrained_name)
        for name in self.model_names:
            path = self.network_path(epoch, name, load_dir)
            if not os.path.isfile(path):
                raise FileNotFoundError(
                    f'checkpoint {path} not found (--name {self.opt.name} --epoch {epoch}); '
                    f'expected files <checkpoints_dir>/<name>/<epoch>_net_<{"|".join(self.model_names)}>.pth')
            state = util.safe_torch_load(path, map_location=str(self.device))
            state = util.strip_module_prefix(state)
            net = self._unwrapped(name)
            try:
                net.load_state_dict(state, strict=True)
            except RuntimeError as exc:
                raise RuntimeError(
                    f'{path} does not fit net{name} built from the current options '
                    f'(--netG {self.opt.netG} --ngf {self.opt.ngf} --netD {self.opt.netD} --ndf {self.opt.ndf} '
                    f'--normG {self.opt.normG} --no_antialias {self.opt.no_antialias} ...): {exc}') from exc
            print(f'loaded net{name} from {path}')

    def training_state(self, epoch, epoch_iter, total_iters, epoch_done, epoch_count=1):
        """Everything besides weights that a resumed run needs to continue exactly."""
        return {
            'format': STATE_FORMAT,
            'epoch': epoch,
            'epoch_iter': epoch_iter,
            'epoch_done': epoch_done,
            'total_iters': total_iters,
            'epoch_count': epoch_count,
            'optimizers': [o.state_dict() for o in self.optimizers],
            'schedulers': [s.state_dict() for s in self.schedulers],
            'rng': rng_state(self.device),
            'options': util.options_to_dict(self.opt),
            'grad_scaler': self.runtime.grad_scaler.state_dict(),
        }

    def read_training_state(self, epoch):
        """The training state saved beside the <epoch> weights (format checked); None when there is none.

        The main process first repairs what a killed save left (`repair_checkpoints`)."""
        path = self.state_path(epoch)
        if distributed.is_main():
            self.repair_checkpoints(epoch)
        distributed.barrier()
        if not os.path.isfile(path):
            return None
        return self._read_state_file(path, epoch)

    def _read_state_file(self, path, epoch):
        state = util.safe_torch_load(path)
        if state.get('format') != STATE_FORMAT:
            raise RuntimeError(f'{path}: unknown training-state format {state.get("format")!r}')
        # states written before epoch_count had its own key kept it in the options
        state.setdefault('epoch_count', state['options'].get('epoch_count', 1))
        state['epoch_tag'] = epoch
        return state

    def _staged_tags(self):
        """Checkpoint tags ('latest', '3', 'iter_40') with temporary files of an unfinished save in the folder."""
        tags = set()
        for f in os.listdir(self.save_dir):
            found = _STAGED_CHECKPOINT.match(f)
            if found:
                tags.add(found.group(1))
        return sorted(tags)

    def repair_checkpoints(self, epoch):
        """What a killed save left, before resuming from tag `epoch` (the run holds the folder's lock).

        1. Every save killed between its renames (any tag) is finished from its staged files.
        2. A resume from 'latest' that stands at the end of epoch E whose own files are incomplete (the
           process died while saving 'E' right after 'latest', from the same state) gets E's files
           copied from 'latest', byte for byte: they are what that save was writing.
        3. The temporary files left over are removed.
        Returns the tags written by 1 and 2."""
        if not os.path.isdir(self.save_dir):
            return []
        staged = self._staged_tags()
        done = [tag for tag in dict.fromkeys([str(epoch)] + staged) if self._finish_interrupted_save(tag)]
        if str(epoch) == 'latest' and os.path.isfile(self.state_path('latest')):
            lost = self._lost_epoch(self._read_state_file(self.state_path('latest'), 'latest'), staged)
            if lost is not None:
                self._copy_checkpoint('latest', lost)
                done.append(lost)
        left = [f for f in sorted(os.listdir(self.save_dir)) if _STAGED_CHECKPOINT.match(f)]
        for f in left:
            os.remove(os.path.join(self.save_dir, f))
        if left:
            print(f'{self.save_dir}: removed {len(left)} temporary file(s) of saves that never finished '
                  f'({", ".join(left)})')
        return done

    def _checkpoint_files(self, tag):
        return [self.network_path(tag, n) for n in self.model_names] + [self.state_path(tag)]

    def _lost_epoch(self, state, staged):
        """The epoch tag whose end-of-epoch save `state` (read from 'latest') belongs with, when that epoch's
        files are incomplete: its save had begun (temporary files) or was due (--save_epoch_freq, last epoch)."""
        if not state.get('epoch_done'):
            return None
        tag = str(state['epoch'])
        if all(os.path.isfile(p) for p in self._checkpoint_files(tag)):
            return None
        opt = self.opt
        last = getattr(opt, 'n_epochs', 0) + getattr(opt, 'n_epochs_decay', 0)
        freq = getattr(opt, 'save_epoch_freq', 0)
        due = (freq > 0 and state['epoch'] % freq == 0) or state['epoch'] == last
        return tag if tag in staged or due else None

    def _copy_checkpoint(self, source, tag):
        """Write tag's files as byte copies of source's, staged then renamed like `save_networks`."""
        self._remove_stale_temporaries(tag)
        staged = []

        def copy_of(path):
            def write(f):
                with open(path, 'rb') as src:
                    for block in iter(lambda: src.read(1 << 20), b''):
                        f.write(block)
            return write
        try:
            for src, dst in zip(self._checkpoint_files(source), self._checkpoint_files(tag)):
                staged.append((util.stage_write(dst, copy_of(src), binary=True), dst))
        except BaseException:
            _discard(staged)
            raise
        for tmp, path in staged:  # in save_networks' order: the state last
            os.replace(tmp, path)
        print(f'{self.state_path(tag)}: the epoch {tag} checkpoint was lost by a killed save; '
              f'written again from {self.state_path(source)} (the same state)')

    def load_training_state(self, state):
        """Restore optimizers, schedulers, RNGs and the loss scaler from `read_training_state`'s result, after
        checking that the weight files loaded are those the state was saved with; returns the counters."""
        if len(state['optimizers']) != len(self.optimizers):
            raise RuntimeError(f'{self.state_path(state["epoch_tag"])} holds {len(state["optimizers"])} optimizer '
                               f'states but the model has {len(self.optimizers)}; was it written by another --model?')
        epoch, path = state['epoch_tag'], self.state_path(state['epoch_tag'])
        for name, digest in state.get('net_sha256', {}).items():
            net_path = self.network_path(epoch, name)
            if os.path.isfile(net_path) and _sha256(net_path) != digest:
                raise RuntimeError(f'{net_path} is not the file {path} was saved with: a save was interrupted '
                                   f'between renames. Resume from an epoch checkpoint (--epoch N) instead.')
        for opt_, s in zip(self.optimizers, state['optimizers']):
            opt_.load_state_dict(s)
        for sch, s in zip(self.schedulers, state['schedulers']):
            sch.load_state_dict(s)
        set_rng_state(state['rng'], self.device)
        self.runtime.load_state_dict(state)
        return {k: state[k] for k in ('epoch', 'epoch_iter', 'epoch_done', 'total_iters', 'epoch_count')}

    def snapshot(self):
        """Copies of weights and optimizer states, to undo a step (train.py --skip_nonfinite)."""
        return ([copy.deepcopy(self._unwrapped(n).state_dict()) for n in self.model_names],
                [copy.deepcopy(o.state_dict()) for o in self.optimizers])

    def restore(self, snapshot):
        nets, optimizers = snapshot
        for name, state in zip(self.model_names, nets):
            self._unwrapped(name).load_state_dict(state)
        for o, state in zip(self.optimizers, optimizers):
            o.load_state_dict(state)

    def print_networks(self, verbose):
        if not distributed.is_main():
            return
        print('---------- Networks initialized -------------')
        for name in self.model_names:
            net = getattr(self, 'net' + name)
            n = sum(p.numel() for p in net.parameters())
            if verbose:
                print(net)
            print(f'[Network {name}] Total number of parameters : {n / 1e6:.3f} M')
        print('-----------------------------------------------')

    @staticmethod
    def set_requires_grad(nets, requires_grad=False):
        if not isinstance(nets, (list, tuple)):
            nets = [nets]
        for net in nets:
            if net is not None:
                for p in net.parameters():
                    p.requires_grad = requires_grad
