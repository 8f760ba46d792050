"""The model contract shared by train.py and test.py, and checkpoint I/O in CUT's file layout."""
import copy
import hashlib
import os
import random
from abc import ABC, abstractmethod
from collections import OrderedDict

import numpy as np
import torch
from torch.optim import lr_scheduler

from util import distributed, memory, util

from .networks.layers import set_conv_algorithm

STATE_FORMAT = 1

# --amp: the dtype the network forwards autocast to (None: float32 throughout); losses stay float32
PRECISIONS = {'off': None, 'bf16': torch.bfloat16, 'fp16': torch.float16}
# Under --amp fp16 the loss scale halves at every step whose gradients overflow. Below float16's smallest
# subnormal (2^-24) scaled gradients can only underflow: every step keeps overflowing (an inf or NaN the
# scale cannot cure) and nothing trains; at 2^-128 torch's unscaling factor 1/scale overflows float32
# and GradScaler writes NaN into the weights without detecting it. Training stops there instead.
MIN_GRAD_SCALE = 2.0 ** -24


def get_scheduler(optimizer, opt):
    """CUT's learning-rate policies; 'linear' keeps lr for n_epochs then decays it to 0 over n_epochs_decay."""
    if opt.lr_policy == 'linear':
        def lambda_rule(epoch):
            return 1.0 - max(0, epoch + opt.epoch_count - opt.n_epochs) / float(opt.n_epochs_decay + 1)
        return lr_scheduler.LambdaLR(optimizer, lr_lambda=lambda_rule)
    if opt.lr_policy == 'step':
        return lr_scheduler.StepLR(optimizer, step_size=opt.lr_decay_iters, gamma=0.1)
    if opt.lr_policy == 'plateau':
        return lr_scheduler.ReduceLROnPlateau(optimizer, mode='min', factor=0.2, threshold=0.01, patience=5)
    if opt.lr_policy == 'cosine':
        return lr_scheduler.CosineAnnealingLR(optimizer, T_max=opt.n_epochs, eta_min=0)
    raise ValueError(f'unknown --lr_policy {opt.lr_policy!r}; valid: linear, step, plateau, cosine')


def rng_state():
    """Every RNG the training loop touches, as plain tensors and tuples (loadable with weights_only)."""
    np_state = np.random.get_state()
    state = {
        'python': random.getstate(),
        'numpy': (np_state[0], torch.from_numpy(np_state[1].copy()), int(np_state[2]), int(np_state[3]),
                  float(np_state[4])),
        'torch': torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state['cuda'] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state):
    random.setstate(state['python'])
    name, keys, pos, has_gauss, cached = state['numpy']
    np.random.set_state((name, keys.numpy(), pos, has_gauss, cached))
    torch.set_rng_state(state['torch'])
    if 'cuda' in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state['cuda'])


def _sha256(path):
    h = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(1 << 20), b''):
            h.update(block)
    return h.hexdigest()


def _scalar(value):
    return float(value.detach()) if isinstance(value, torch.Tensor) else float(value)


class BaseModel(ABC):
    """Subclasses fill `loss_names`, `visual_names`, `model_names` and implement the abstract methods.

    Train and test loops talk to models only through this interface.
    """

    def __init__(self, opt):
        self.opt = opt
        self.gpu_ids = opt.gpu_ids
        self.isTrain = opt.isTrain
        self.device = torch.device(f'cuda:{self.gpu_ids[0]}') if self.gpu_ids else torch.device('cpu')
        self.save_dir = os.path.join(opt.checkpoints_dir, opt.name)
        if self.gpu_ids and opt.preprocess != 'scale_width':
            torch.backends.cudnn.benchmark = True
        self.loss_names = []
        self.model_names = []
        self.visual_names = []
        self.optimizers = []
        self.schedulers = []
        self.image_paths = []
        self.metric = 0
        # options files written before these flags existed lack them
        self.amp_dtype = PRECISIONS[getattr(opt, 'amp', 'off')]
        self.memory_format = torch.channels_last if getattr(opt, 'channels_last', False) else torch.contiguous_format
        self.compile = getattr(opt, 'compile', False)
        self.conv_algo = getattr(opt, 'conv_algo', 'auto')
        # fp16 gradients underflow without loss scaling; bf16 has float32's range and needs none
        self.grad_scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp_dtype == torch.float16)
        self.trim_heap = self.device.type == 'cpu' and self.isTrain and not getattr(opt, 'no_malloc_trim', False)

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

    def setup(self, opt):
        """Schedulers when training; load weights when testing or resuming."""
        if self.isTrain:
            self.schedulers = [get_scheduler(o, opt) for o in self.optimizers]
        if not self.isTrain or opt.continue_train:
            self.load_networks(opt.epoch)
        self.print_networks(opt.verbose)

    def parallelize(self):
        """Move the networks to the device, in the --channels_last layout, compiled under --compile."""
        if self.compile:
            import torch._inductor.config
            # inductor's own channels-last choice breaks replication_pad2d_backward (a stride assertion
            # in torch 2.14); --channels_last picks the layout explicitly instead
            torch._inductor.config.layout_optimization = False
        for name in self.model_names:
            net = getattr(self, 'net' + name).to(self.device, memory_format=self.memory_format)
            set_conv_algorithm(net, self.conv_algo)
            if self.compile:
                net.compile()  # in place: state-dict keys stay CUT's
            setattr(self, 'net' + name, net)

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
        """An image batch on the model's device, in the networks' memory layout."""
        return tensor.to(self.device, memory_format=self.memory_format)

    def autocast(self):
        """The region network forwards run in: autocast to --amp's dtype, a no-op when it is off."""
        return torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None)

    def backward(self, loss):
        """loss.backward(), with the loss scaled under --amp fp16. On CPU the heap's free pages go back to the
        kernel first (util/memory.py; off with --no_malloc_trim): the forward's freed temporaries would
        otherwise stay resident through the backward, the step's peak."""
        if self.trim_heap:
            memory.release_free_heap()
        self.grad_scaler.scale(loss).backward()

    def step(self, *optimizers):
        """Optimizer steps; under --amp fp16 the gradients are unscaled first and a step whose gradients
        overflowed is skipped. Call `grad_scaler.update()` once after the last step of an iteration."""
        if self.grad_scaler.is_enabled() and self.grad_scaler.get_scale() < MIN_GRAD_SCALE:
            raise FloatingPointError(
                f'--amp fp16: the loss scale fell to {self.grad_scaler.get_scale():.3g}: the gradients kept '
                f'overflowing float16 whatever the scale, and every such step was skipped; train with --amp bf16 '
                f'or --amp off')
        for optimizer in optimizers:
            if optimizer is not None:
                self.grad_scaler.step(optimizer)

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
            if self.opt.lr_policy == 'plateau':
                scheduler.step(self.metric)
            else:
                scheduler.step()
        lr = self.optimizers[0].param_groups[0]['lr']
        distributed.print0(f'learning rate {old_lr:.7f} -> {lr:.7f}')

    def get_current_visuals(self):
        return OrderedDict((name, getattr(self, name)) for name in self.visual_names
                           if isinstance(getattr(self, name, None), torch.Tensor))

    def get_current_losses(self):
        return OrderedDict((name, _scalar(getattr(self, 'loss_' + name))) for name in self.loss_names)

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
        SHA-256 of the weight files it belongs with, so a crash between two renames is detected
        at resume instead of silently mixing two checkpoints.
        """
        self._remove_stale_temporaries(epoch)
        staged = []
        try:
            digests = {}
            for name in self.model_names:
                state = {k: v.detach().cpu() for k, v in self._unwrapped(name).state_dict().items()}
                tmp, path = self._stage(state, self.network_path(epoch, name))
                staged.append((tmp, path))
                digests[name] = _sha256(tmp)
            if training_state is not None:
                staged.append(self._stage(dict(training_state, net_sha256=digests), self.state_path(epoch)))
        except BaseException:
            for tmp, _ in staged:
                if os.path.exists(tmp):
                    os.remove(tmp)
            raise
        for tmp, path in staged:  # weights first, the state that vouches for them last
            os.replace(tmp, path)

    def _remove_stale_temporaries(self, epoch):
        """Temporary files of a save that a killed process never finished."""
        if not os.path.isdir(self.save_dir):
            return
        prefixes = [os.path.basename(self.network_path(epoch, n)) + '.tmp' for n in self.model_names]
        prefixes.append(os.path.basename(self.state_path(epoch)) + '.tmp')
        for f in os.listdir(self.save_dir):
            if f.startswith(tuple(prefixes)):
                os.remove(os.path.join(self.save_dir, f))

    @staticmethod
    def _stage(obj, path):
        tmp = f'{path}.tmp{os.getpid()}'
        try:
            with open(tmp, 'wb') as f:
                torch.save(obj, f)
                f.flush()
                os.fsync(f.fileno())
        except BaseException:
            if os.path.exists(tmp):
                os.remove(tmp)
            raise
        return tmp, path

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

    def training_state(self, epoch, epoch_iter, total_iters, epoch_done):
        """Everything besides weights that a resumed run needs to continue exactly."""
        from options.base_options import options_to_dict
        return {
            'format': STATE_FORMAT,
            'epoch': epoch,
            'epoch_iter': epoch_iter,
            'epoch_done': epoch_done,
            'total_iters': total_iters,
            'optimizers': [o.state_dict() for o in self.optimizers],
            'schedulers': [s.state_dict() for s in self.schedulers],
            'rng': rng_state(),
            'options': options_to_dict(self.opt),
            'grad_scaler': self.grad_scaler.state_dict(),
        }

    def load_training_state(self, epoch):
        """Restore optimizers, schedulers and RNGs; returns the counters, or None if no state file."""
        path = self.state_path(epoch)
        if not os.path.isfile(path):
            return None
        state = util.safe_torch_load(path)
        if state.get('format') != STATE_FORMAT:
            raise RuntimeError(f'{path}: unknown training-state format {state.get("format")!r}')
        if len(state['optimizers']) != len(self.optimizers):
            raise RuntimeError(f'{path} holds {len(state["optimizers"])} optimizer states but the model has '
                               f'{len(self.optimizers)}; was it written by another --model?')
        for name, digest in state.get('net_sha256', {}).items():
            net_path = self.network_path(epoch, name)
            if os.path.isfile(net_path) and _sha256(net_path) != digest:
                raise RuntimeError(f'{net_path} is not the file {path} was saved with: a save was interrupted '
                                   f'between renames. Resume from an epoch checkpoint (--epoch N) instead.')
        for opt_, s in zip(self.optimizers, state['optimizers']):
            opt_.load_state_dict(s)
        for sch, s in zip(self.schedulers, state['schedulers']):
            sch.load_state_dict(s)
        set_rng_state(state['rng'])
        if self.grad_scaler.is_enabled() and state.get('grad_scaler'):
            self.grad_scaler.load_state_dict(state['grad_scaler'])
        counters = {k: state[k] for k in ('epoch', 'epoch_iter', 'epoch_done', 'total_iters')}
        counters['epoch_count'] = state['options'].get('epoch_count', 1)
        return counters

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
