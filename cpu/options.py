"""The flags of this package's CPU speed machinery, defined beside it: options/ adds them to train.py's parser
(and --conv_algo to every parser, as the runtime reads it). This module holds flag definitions only; the kernels
and the allocator are imported by CPU training alone (models/runtime.py, `python -m cpu.launch`)."""


def add_conv_option(parser):
    parser.add_argument('--conv_algo', type=str, default='auto', choices=['auto', 'direct'],
                        help='auto: float32 CPU training runs the ResNet blocks\' 3x3 convolutions by Winograd '
                             'F(4x4,3x3) (faster, the same function up to float32 rounding: cpu/winograd.py); '
                             'direct: the framework\'s kernels everywhere')
    return parser


def add_training_options(parser):
    parser.add_argument('--no_malloc_trim', action='store_true',
                        help='CPU, glibc malloc: do not return freed heap pages to the kernel before each backward '
                             'pass (malloc_trim: lower peak memory for more page faults; cpu/memory.py)')
    parser.add_argument('--cpu_allocator', type=str, default='auto',
                        help='CPU training: the malloc `python -m cpu.launch -- python train.py ...` starts '
                             'train.py on (LD_PRELOAD): auto, glibc, tcmalloc, jemalloc or the path of a shared '
                             'library; auto: tcmalloc, else jemalloc, when installed and training on the CPU, else '
                             'glibc with heap trimming (cpu/allocator.py; studies/performance.md, "The heap")')
    return parser


def check_allocator(value):
    """--cpu_allocator names a known allocator or an existing library file (one `error:` line otherwise)."""
    if value in ('auto', 'glibc'):
        return
    from cpu import allocator
    if value not in allocator.CHOICES:
        allocator.resolve(value)  # a path: fails unless it is a file
