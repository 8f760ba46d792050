"""How the networks run, apart from what they compute: device, mixed precision and its loss scaler,
memory layout, torch.compile and, in CPU training, the CPU package (cpu/: its training kernels, heap trimming
under glibc's malloc, the allocator the launcher preloaded); on a GPU the package is never imported.

train.py and test.py build one Runtime from the options and hand it to the model; the model asks it
for `prepare(net)`, `to_input`, `autocast()`, `backward(loss)`, `step(...)` and `update()`.
"""
from collections import Counter

import torch

from util.errors import ConfigError, DivergedError

# --amp: the dtype network forwards autocast to (None: float32 throughout); losses stay float32
PRECISIONS = {'off': None, 'bf16': torch.bfloat16, 'fp16': torch.float16}
# Under --amp fp16 the loss scale halves at every step whose gradients overflow. Below float16's smallest
# subnormal (2^-24) scaled gradients can only underflow: every step keeps overflowing (an inf or NaN the
# scale cannot cure) and nothing trains; at 2^-128 torch's unscaling factor 1/scale overflows float32
# and GradScaler writes NaN into the weights without detecting it. Training stops there instead.
MIN_GRAD_SCALE = 2.0 ** -24


def set_tf32(convolutions, matmul):
    """TensorFloat-32 (Ampere and later GPUs: float32 inputs rounded to a 10-bit mantissa) for cuDNN's
    convolutions and for matrix products, set explicitly; returns the setting in words for the log."""
    torch.backends.cudnn.allow_tf32 = convolutions
    torch.backends.cuda.matmul.allow_tf32 = matmul
    return f'TF32 convolutions {"on" if convolutions else "off"}, matmul {"on" if matmul else "off"}'


def require_cuda_for_gpu_ids(argv):
    """Training with --gpu_ids N (N >= 0; CUT's default is 0) on a machine without CUDA is an error that says
    how to train on the CPU, as CUT users expect a GPU flag to mean a GPU. Read from train.py's command line
    before the options are parsed."""
    import argparse
    if {'-h', '--help'} & set(argv):
        return
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument('--gpu_ids', type=str, default='0')
    spec = parser.parse_known_args(list(argv))[0].gpu_ids
    wanted = [tok.strip() for tok in str(spec).split(',') if tok.strip()]
    if any(tok.lstrip('-').isdigit() and int(tok) >= 0 for tok in wanted) and not torch.cuda.is_available():
        why = 'this PyTorch has no CUDA support' if torch.version.cuda is None else 'no CUDA device is visible'
        given = any(a == '--gpu_ids' or str(a).startswith('--gpu_ids=') for a in argv)
        raise SystemExit(f'error: --gpu_ids {spec}{"" if given else " (the default)"} asks for a GPU, but {why}: '
                         f'to train on the CPU, pass --gpu_ids -1')


def flag_device(opt):
    """The device --gpu_ids names for one process: its first GPU, or the CPU."""
    return f'cuda:{opt.gpu_ids[0]}' if opt.gpu_ids else 'cpu'


class Runtime:
    """`training` enables the loss scaler (fp16), the training kernels (unless `fast_kernels` is False:
    the plain layers, as the official code runs them) and, on the CPU, heap trimming before backward."""

    def __init__(self, device='cpu', *, amp='off', channels_last=False, compile=False, conv_algo='auto',
                 training=False, fast_kernels=True, trim_heap=True, fused_adam=None):
        if amp not in PRECISIONS:
            raise ConfigError(f'--amp must be one of {", ".join(PRECISIONS)}, got {amp!r}')
        if conv_algo not in ('auto', 'direct'):
            raise ConfigError(f"--conv_algo must be 'auto' or 'direct', got {conv_algo!r}")
        self.device = torch.device(device)
        self.amp = amp
        self.amp_dtype = PRECISIONS[amp]
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.compile = compile
        self.conv_algo = conv_algo
        self.training = training
        self.fast_kernels = training and fast_kernels
        self.cpu_training = training and self.device.type == 'cpu'
        # malloc_trim is glibc's; tcmalloc / jemalloc (preloaded by `python -m cpu.launch`) keep their heaps
        # compact without it
        self.allocator = None
        if self.cpu_training:
            from cpu import allocator
            self.allocator = allocator.active()
        self.trim_heap = self.cpu_training and trim_heap and self.allocator == 'glibc'
        if self.trim_heap:
            from cpu.memory import release_free_heap
            self._release_free_heap = release_free_heap
        # fp16 gradients underflow without loss scaling; bf16 has float32's range and needs none
        self.grad_scaler = torch.amp.GradScaler(self.device.type, enabled=training and self.amp_dtype == torch.float16)
        # CUDA's fused Adam takes the scaler's found-inf flag on the device (GradScaler.step reads it on the host
        # for any other optimizer: a sync per optimizer and step); the CPU keeps PyTorch's default Adam
        self.fused_adam = self.device.type == 'cuda' if fused_adam is None else fused_adam
        self.tf32 = None  # set by configure_process
        self.swapped = Counter()  # what prepare() swapped, for the start-up report

    @classmethod
    def from_options(cls, opt, device=None, *, fast_kernels=True, fused_adam=None):
        """The runtime the flags ask for; `device` defaults to `flag_device(opt)`."""
        device = flag_device(opt) if device is None else device
        return cls(device, amp=opt.amp, channels_last=opt.channels_last, compile=opt.compile, conv_algo=opt.conv_algo,
                   training=opt.isTrain, fast_kernels=fast_kernels, trim_heap=not getattr(opt, 'no_malloc_trim', False),
                   fused_adam=fused_adam)

    def configure_process(self, preprocess='resize_and_crop'):
        """Process-wide: cuDNN's autotuner when every input has one size (a --preprocess mode that crops, cuts
        patches or resizes to a square); modes whose size varies with the image (none, zoom, scale_width,
        scale_shortside) would autotune every new size again."""
        from data.base_dataset import preprocess_steps
        if self.device.type == 'cuda' and preprocess_steps(preprocess) & {'crop', 'patch', 'resize'}:
            torch.backends.cudnn.benchmark = True
        # training's TF32 choice: convolutions on, matmul off, PyTorch's defaults and so how the official code
        # trained, stated so that another default cannot change it (FID sets both off: evaluation/fid.py)
        self.tf32 = set_tf32(convolutions=True, matmul=False)

    def adam(self, params, lr, betas, weight_decay=0.0):
        """torch.optim.Adam for the model's optimizers: the fused kernel on CUDA (see `fused_adam`)."""
        return torch.optim.Adam(params, lr=lr, betas=betas, weight_decay=weight_decay,
                                fused=True if self.fused_adam else None)

    def prepare(self, net):
        """`net` on the device in the memory layout, with the training kernels when training, compiled under
        --compile (in place: state-dict keys stay CUT's)."""
        net = net.to(self.device, memory_format=self.memory_format)
        if self.fast_kernels and self.cpu_training:
            from cpu import kernels
            self.swapped += kernels.accelerate(net, conv_algo=self.conv_algo, device=self.device, amp=self.amp_dtype,
                                               compile=self.compile)
        if self.compile:
            # on the CPU, inductor's own channels-last choice breaks replication_pad2d_backward (a stride
            # assertion in torch 2.14; --channels_last picks the layout explicitly instead). The option is
            # this compilation's, not the process's: GPU code keeps inductor's defaults (not measured there)
            net.compile(options={'layout_optimization': False} if self.device.type == 'cpu' else None)
        return net

    def describe(self):
        swaps = ', '.join(f'{n} {what}' for what, n in sorted(self.swapped.items())) or 'none'
        layout = 'channels-last' if self.memory_format == torch.channels_last else 'NCHW'
        heap = ', heap trimmed before backward' if self.trim_heap else ''
        tf32 = f', {self.tf32}' if self.tf32 and self.device.type == 'cuda' else ''
        allocator = f', allocator {self.allocator}' if self.allocator else ''
        return (f'runtime: {self.device}, amp {self.amp}, {layout}{", compiled" if self.compile else ""}{tf32}'
                f'{allocator}{heap}; training kernels: {swaps}')

    def to_input(self, tensor):
        """An image batch on the device, in the networks' memory layout (asynchronous from pinned memory)."""
        return tensor.to(self.device, memory_format=self.memory_format, non_blocking=True)

    def autocast(self):
        """The region network forwards run in: autocast to --amp's dtype, a no-op when it is off."""
        return torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None)

    def backward(self, loss):
        """loss.backward(), the loss scaled under --amp fp16. On the CPU the heap's free pages go back to the
        kernel first (cpu/memory.py; off with --no_malloc_trim): the forward's freed temporaries would
        otherwise stay resident through the backward, the step's peak."""
        if self.trim_heap:
            self._release_free_heap()
        self.grad_scaler.scale(loss).backward()

    @staticmethod
    def load_optimizer_state(optimizer, state):
        """optimizer.load_state_dict(state), keeping the implementation the optimizer was built with: a state saved
        on the CPU says fused None, and loaded as it is into CUDA's fused Adam it turned the fused kernel off (and
        under --amp fp16 GradScaler then handed a found-inf flag to an Adam that refuses it)."""
        kept = [{k: g[k] for k in ('fused', 'foreach', 'capturable') if k in g} for g in optimizer.param_groups]
        optimizer.load_state_dict(state)
        for group, implementation in zip(optimizer.param_groups, kept):
            group.update(implementation)

    def loss_scale(self):
        """The fp16 loss scale as a device tensor (no host read), None when no scaler runs: for gradients taken
        with torch.autograd.grad, which the scaler does not see (losses.r1_penalty's `scale`)."""
        if not self.grad_scaler.is_enabled():
            return None
        return self.grad_scaler.scale(torch.ones((), device=self.device))

    def step(self, *optimizers):
        """Optimizer steps; under --amp fp16 the gradients are unscaled first and a step whose gradients
        overflowed is skipped. Call `update()` once after the last step of an iteration."""
        for optimizer in optimizers:
            if optimizer is not None:
                self.grad_scaler.step(optimizer)

    def update(self):
        self.grad_scaler.update()

    def check_loss_scale(self):
        """Under --amp fp16, stop once the loss scale has collapsed (reads it from the device: train.py calls it
        when it reads the losses, not at every step)."""
        if self.grad_scaler.is_enabled() and self.grad_scaler.get_scale() < MIN_GRAD_SCALE:
            raise DivergedError(
                f'--amp fp16: the loss scale fell to {self.grad_scaler.get_scale():.3g}: the gradients kept '
                f'overflowing float16 whatever the scale, and every such step was skipped; train with --amp bf16 '
                f'or --amp off')

    def synchronize(self):
        """Wait for the device's queued work (CUDA); for timings taken where the host reads values anyway."""
        if self.device.type == 'cuda':
            torch.cuda.synchronize(self.device)

    def state_dict(self):
        return {'grad_scaler': self.grad_scaler.state_dict()}

    def load_state_dict(self, state):
        if self.grad_scaler.is_enabled() and state.get('grad_scaler'):
            self.grad_scaler.load_state_dict(state['grad_scaler'])


