"""The model contract shared by train.py and test.py; its checkpoints in CUT's file layout are written and
repaired by models/checkpoint.py."""
import copy
import os
from abc import ABC, abstractmethod
from collections import OrderedDict

import torch
from torch.optim import lr_scheduler

from util import distributed, util
from util.errors import CheckpointError, ConfigError, MissingFileError

from . import checkpoint
from .checkpoint import rng_state, set_generator_state, set_rng_state  # noqa: F401 (train.py imports them from here)
from .runtime import Runtime

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
    raise ConfigError(f'unknown --lr_policy {opt.lr_policy!r}; valid: {", ".join(LR_POLICIES)}')


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

    def current_learning_rates(self):
        """{network: learning rate} of each optimizer (optimizer_G -> 'G'), from its first parameter group."""
        names = {id(o): k[len('optimizer_'):] for k, o in vars(self).items() if k.startswith('optimizer_')}
        return OrderedDict((names.get(id(o), str(i)), o.param_groups[0]['lr']) for i, o in enumerate(self.optimizers))

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
        return checkpoint.network_path(load_dir or self.save_dir, epoch, name)

    def state_path(self, epoch):
        return checkpoint.state_path(self.save_dir, epoch)

    def _unwrapped(self, name):
        """net<name> without its DistributedDataParallel wrapper: for checkpoints, and for passes that
        give the network no gradient (a frozen discriminator), which DDP would wait for in vain."""
        net = getattr(self, 'net' + name)
        return net.module if hasattr(net, 'module') else net

    def save_networks(self, epoch, training_state=None):
        """Write <epoch>_net_<name>.pth (CUT's files) and, when given, <epoch>_train_state.pth, staged so that a
        crash or a full disk leaves the previous checkpoint complete (models/checkpoint.py)."""
        checkpoint.save(self.save_dir, epoch, {name: {k: v.detach().cpu() for k, v in
                                                      self._unwrapped(name).state_dict().items()}
                                               for name in self.model_names}, training_state)

    def load_networks(self, epoch):
        load_dir = self.save_dir
        if self.isTrain and getattr(self.opt, 'pretrained_name', None):
            load_dir = os.path.join(self.opt.checkpoints_dir, self.opt.pretrained_name)
        for name in self.model_names:
            path = self.network_path(epoch, name, load_dir)
            if not os.path.isfile(path):
                raise MissingFileError(
                    f'checkpoint {path} not found (--name {self.opt.name} --epoch {epoch}); '
                    f'expected files <checkpoints_dir>/<name>/<epoch>_net_<{"|".join(self.model_names)}>.pth')
            state = util.safe_torch_load(path, map_location=str(self.device))
            state = util.strip_module_prefix(state)
            net = self._unwrapped(name)
            try:
                net.load_state_dict(state, strict=True)
            except RuntimeError as exc:
                raise CheckpointError(
                    f'{path} does not fit net{name} built from the current options '
                    f'(--netG {self.opt.netG} --ngf {self.opt.ngf} --netD {self.opt.netD} --ndf {self.opt.ndf} '
                    f'--normG {self.opt.normG} --no_antialias {self.opt.no_antialias} ...): {exc}') from exc
            print(f'loaded net{name} from {path}')

    def training_state(self, epoch, epoch_iter, total_iters, epoch_done, epoch_count=1):
        """Everything besides weights that a resumed run needs to continue exactly."""
        return {
            'format': checkpoint.STATE_FORMAT,
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
        return checkpoint.read_state(path, epoch) if os.path.isfile(path) else None

    def repair_checkpoints(self, epoch):
        """Finish or undo what a killed save left before resuming from tag `epoch` (checkpoint.repair)."""
        opt = self.opt
        return checkpoint.repair(self.save_dir, epoch, self.model_names,
                                 getattr(opt, 'n_epochs', 0) + getattr(opt, 'n_epochs_decay', 0),
                                 getattr(opt, 'save_epoch_freq', 0))

    def load_training_state(self, state):
        """Restore optimizers, schedulers, RNGs and the loss scaler from `read_training_state`'s result, after
        checking that the weight files loaded are those the state was saved with; returns the counters."""
        if len(state['optimizers']) != len(self.optimizers):
            raise CheckpointError(f'{self.state_path(state["epoch_tag"])} holds {len(state["optimizers"])} optimizer '
                               f'states but the model has {len(self.optimizers)}; was it written by another --model?')
        checkpoint.check_weights(self.save_dir, state)
        for opt_, s in zip(self.optimizers, state['optimizers']):
            self.runtime.load_optimizer_state(opt_, s)  # the state of a run on another device kind too
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
