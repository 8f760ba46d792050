"""The flags that build a generator (CUT's names and defaults), shared by train.py / test.py and the
scripts that build a generator without a model (evaluation/copy_floor.py)."""
from models.networks import G_OUTPUTS, GENERATORS, INIT_TYPES, NORM_TYPES
from util import util


def add_generator_options(p):
    """Add the generator flags to parser `p`; --init_type/--init_gain and --no_antialias also build D and F."""
    p.add_argument('--netG', type=str, default='resnet_9blocks', choices=sorted(GENERATORS),
                   help='generator architecture')
    p.add_argument('--ngf', type=int, default=64, help='# of gen filters in the last conv layer')
    p.add_argument('--normG', type=str, default='instance', choices=NORM_TYPES, help='normalisation of G')
    p.add_argument('--init_type', type=str, default='xavier', choices=INIT_TYPES, help='network initialisation')
    p.add_argument('--init_gain', type=float, default=0.02,
                   help='scaling factor for normal, xavier and orthogonal')
    p.add_argument('--no_dropout', type=util.str2bool, nargs='?', const=True, default=True,
                   help='no dropout for the generator')
    p.add_argument('--no_antialias', action='store_true',
                   help='if specified, use stride=2 convs instead of antialiased-downsampling (sad)')
    p.add_argument('--no_antialias_up', action='store_true',
                   help='if specified, use [upconv(learned filter)] instead of [upconv(hard-coded '
                        '[1,3,3,1] filter), conv]')
    p.add_argument('--G_output', type=str, default='tanh', choices=list(G_OUTPUTS),
                   help="resnet_* generators: tanh (CUT's) or residual: tanh(v + atanh(input)), which starts as "
                        'the identity and keeps the input\'s colour and grain unless changed (studies/results_cpu.md 2.2)')
    p.add_argument('--config_str', type=str, default=None,
                   help='GAN compression: the 8 channel widths of a mobile ResNet (e.g. 16_16_32_16_16_64_16_24), '
                        'needed by --netG sub_mobile_resnet_9blocks, fixing the configuration of the super-net')
    p.add_argument('--stylegan2_G_num_downsampling', default=1, type=int,
                   help='number of downsampling layers used by the StyleGAN2 generator')
    return p
