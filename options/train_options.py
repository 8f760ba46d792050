"""Training flags (CUT's names and defaults)."""
import argparse

from cpu import options as cpu_options
from models.losses import GAN_MODES
from util import util
from util.errors import OptionError
from util.loggers import add_logger_options, check_installed

from .base_options import BaseOptions


class TrainOptions(BaseOptions):

    def initialize(self, parser):
        parser = BaseOptions.initialize(self, parser)
        p = parser
        # visdom and HTML visualisation
        p.add_argument('--display_freq', type=int, default=400,
                       help='frequency of showing training results on screen')
        p.add_argument('--display_ncols', type=int, default=4,
                       help='if positive, display all images in a single visdom web panel with this many per row')
        p.add_argument('--display_id', type=int, default=None,
                       help='window id of the web display; default is a random id, 0 or -1 disables visdom')
        p.add_argument('--display_server', type=str, default='http://localhost', help='visdom server')
        p.add_argument('--display_env', type=str, default=None,
                       help='visdom environment; defaults to the run name so parallel runs keep their own plots')
        p.add_argument('--display_port', type=int, default=8097, help='visdom port')
        p.add_argument('--update_html_freq', type=int, default=1000,
                       help='frequency of saving training results to html')
        p.add_argument('--print_freq', type=int, default=100,
                       help='frequency of showing training results on console')
        cpu_options.add_training_options(p)
        p.add_argument('--no_html', action='store_true',
                       help='do not save intermediate training results to <checkpoints_dir>/<name>/web/')
        add_logger_options(p)  # --logger, --use_wandb, --wandb_project_name, --wandb_run_name
        # saving and loading
        p.add_argument('--save_latest_freq', type=int, default=5000, help='frequency of saving the latest results')
        p.add_argument('--save_epoch_freq', type=int, default=5,
                       help='frequency of saving checkpoints at the end of epochs')
        # CUT's flag, accepted and ignored
        p.add_argument('--evaluation_freq', type=int, default=5000, help=argparse.SUPPRESS)
        p.add_argument('--save_by_iter', action='store_true', help='whether saves model by iteration')
        p.add_argument('--continue_train', action='store_true', help='continue training: load the latest model')
        p.add_argument('--overwrite', action='store_true',
                       help='start over in a checkpoint folder that holds a run (its checkpoints and loss logs are '
                            'deleted); without it train.py refuses such a folder unless --continue_train')
        p.add_argument('--epoch_count', type=int, default=1,
                       help='the starting epoch count (set from the training state when resuming)')
        p.add_argument('--phase', type=str, default='train', help='train, val, test, etc')
        p.add_argument('--pretrained_name', type=str, default=None,
                       help='resume training from another checkpoint')
        # training parameters
        p.add_argument('--n_epochs', type=int, default=200, help='number of epochs with the initial learning rate')
        p.add_argument('--n_epochs_decay', type=int, default=200,
                       help='number of epochs to linearly decay learning rate to zero')
        p.add_argument('--beta1', type=float, default=0.5, help='momentum term of adam')
        p.add_argument('--beta2', type=float, default=0.999, help='momentum term of adam')
        p.add_argument('--lr', type=float, default=0.0002, help='initial learning rate for adam')
        p.add_argument('--gan_mode', type=str, default='lsgan',
                       choices=list(GAN_MODES), help='the type of GAN objective')
        p.add_argument('--pool_size', type=int, default=50,
                       help='the size of image buffer that stores previously generated images')
        p.add_argument('--lr_policy', type=str, default='linear', choices=['linear', 'step', 'plateau', 'cosine'],
                       help='learning rate policy (plateau is refused: no validation metric during training)')
        p.add_argument('--lr_decay_iters', type=int, default=50,
                       help='multiply by a gamma every lr_decay_iters iterations')
        p.add_argument('--max_iters', type=int, default=None,
                       help='stop after this many iterations in total (smoke runs, benchmarks)')
        p.add_argument('--skip_nonfinite', action='store_true',
                       help='undo a step whose loss is NaN/Inf and go on (default: stop with an error)')
        p.add_argument('--no_tqdm', type=util.str2bool, nargs='?', const=True, default=False,
                       help='disable the per-epoch progress bar')
        self.isTrain = True
        return parser

    def gather_options(self):
        opt = super().gather_options()
        # without --seed, parse draws one; train.py then takes a resumed run's own seed instead (silently)
        self.seed_given = opt.seed is not None
        return opt

    def validate(self, opt):
        super().validate(opt)
        if opt.continue_train and opt.overwrite:
            raise OptionError('error: --continue_train resumes the run in the folder, --overwrite deletes it: '
                              'give one of them')
        if opt.n_epochs < 0 or opt.n_epochs_decay < 0 or opt.n_epochs + opt.n_epochs_decay < 1:
            raise SystemExit('error: --n_epochs + --n_epochs_decay must be at least 1 '
                             f'(got {opt.n_epochs} + {opt.n_epochs_decay})')
        if opt.epoch_count > opt.n_epochs + opt.n_epochs_decay and not opt.continue_train:
            raise OptionError(f'error: --epoch_count {opt.epoch_count} is past the last epoch, --n_epochs + '
                             f'--n_epochs_decay = {opt.n_epochs + opt.n_epochs_decay}: nothing would be trained '
                             f'(and the linear rule would give a negative learning rate)')
        cpu_options.check_allocator(opt.cpu_allocator)
        if opt.display_env is None:
            opt.display_env = opt.name
        check_installed(opt)
