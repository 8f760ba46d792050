"""Where a training run is watched: `--logger visdom,tensorboard,wandb` (util/visualizer.py feeds them).

Every chosen backend gets the same things, from the process of rank 0, at train.py's print and display points
(where the values are on the host already: no device sync per step): the losses and learning rates, the
current images, and the run's options once. Their step is total_iters (samples of all processes, CUT's count).

  visdom       plots and images on a visdom server (CUT's; util/visualizer.py); on unless --display_id <= 0
  tensorboard  event files in <checkpoints_dir>/<name>/tensorboard/ (torch.utils.tensorboard)
  wandb        a Weights & Biases run, its local files in <checkpoints_dir>/<name>/wandb/; WANDB_MODE=offline
               logs without a network (upload later with `wandb sync`); --use_wandb adds it

The HTML page (--no_html) and loss_log.txt / loss_log.jsonl are written as before, whatever --logger says.
A resumed run (--continue_train) continues the same TensorBoard run (its folder; events the interrupted run
wrote after the checkpoint are purged) and the same W&B run (id in <checkpoints_dir>/<name>/wandb_run_id).
`tensorboard` and `wandb` are optional packages (requirements-loggers.txt), imported only when chosen.
"""
import argparse
import atexit
import importlib.util
import os

from util import util
from util.errors import OptionError, ProjectError

LOGGERS = ('visdom', 'tensorboard', 'wandb')
PACKAGES = {'tensorboard': 'tensorboard', 'wandb': 'wandb'}  # backend -> the package it needs
WANDB_ID_FILE = 'wandb_run_id'


class LoggerError(ProjectError):
    """A chosen backend cannot start (W&B without a login or a network, for instance)."""


def logger_list(text):
    """argparse type of --logger: 'visdom,tensorboard' -> ['visdom', 'tensorboard']; 'none' -> []."""
    names = [n.strip() for n in text.split(',') if n.strip()]
    if names == ['none']:
        return []
    unknown = [n for n in names if n not in LOGGERS]
    if unknown:
        raise argparse.ArgumentTypeError(f'unknown backend {", ".join(unknown)}; valid: {", ".join(LOGGERS)} '
                                         f'(comma-separated) or none')
    return list(dict.fromkeys(names))


def add_logger_options(parser):
    """The flags of train.py that choose and configure the backends."""
    p = parser
    p.add_argument('--logger', type=logger_list, default='visdom',
                   help=f'comma-separated backends the losses, learning rates, images and options go to: '
                        f'{", ".join(LOGGERS)}, or none (the HTML page and loss_log.* are written anyway); '
                        f'--display_id <= 0 leaves visdom out, --use_wandb adds wandb (docs/monitoring.md)')
    p.add_argument('--use_wandb', action='store_true',
                   help='also log to Weights & Biases (= --logger ...,wandb); WANDB_MODE=offline for no network')
    p.add_argument('--wandb_project_name', type=str, default='CycleGAN-and-pix2pix',
                   help='W&B project of the run')
    p.add_argument('--wandb_run_name', type=str, default=None, help='W&B run name; default: --name')
    return parser


def chosen(opt):
    """The backends `opt` asks for, in LOGGERS order. Options without these flags (test.py's, or a Visualizer
    built by hand) mean CUT's behaviour: visdom unless --display_id <= 0."""
    names = set(getattr(opt, 'logger', ['visdom']))
    if getattr(opt, 'use_wandb', False):
        names.add('wandb')
    if opt.display_id is not None and opt.display_id <= 0:
        names.discard('visdom')
    return [n for n in LOGGERS if n in names]


def check_installed(opt):
    """Parse time: stop with one line when a chosen backend's package is missing (nothing is imported)."""
    require_packages(chosen(opt))


def require_packages(names):
    missing = [PACKAGES[n] for n in names if n in PACKAGES and importlib.util.find_spec(PACKAGES[n]) is None]
    if missing:
        raise OptionError(f'error: --logger {",".join(names)} needs the package(s) {", ".join(missing)}: '
                          f'pip install -r requirements-loggers.txt')


def options_markdown(options):
    """The options as a two-column markdown table (TensorBoard's text plugin renders it)."""
    rows = [f'| {k} | {v} |' for k, v in sorted(options.items())]
    return '\n'.join(['| option | value |', '| --- | --- |', *rows])


class TensorBoardLogger:
    """Scalars 'loss/<name>', 'lr/<network>', 'time/<what>', images 'images/<label>', text 'options'.

    `start_step` is the total_iters a training run starts (or resumes) at: events of an earlier run in the
    folder at later steps (written after the checkpoint a resumed run starts from) are purged, so curves
    continue. None (an evaluation adding its curves to a run's): nothing is purged."""

    def __init__(self, log_dir, options=None, start_step=None):
        from torch.utils.tensorboard import SummaryWriter
        purge = None if start_step is None else start_step + 1 if start_step else 0
        self.writer = SummaryWriter(log_dir=log_dir, purge_step=purge)
        if options is not None:
            self.writer.add_text('options', options_markdown(options), global_step=start_step or 0)
        self.writer.flush()
        atexit.register(self.close)  # a run that raises still leaves its events on disk

    def scalars(self, values, step):
        for tag, value in values.items():
            self.writer.add_scalar(tag, value, global_step=step)
        self.writer.flush()

    def images(self, images, step):
        for label, image in images.items():  # (H, W, 3) uint8
            self.writer.add_image(f'images/{label}', image, global_step=step, dataformats='HWC')
        self.writer.flush()

    def close(self):
        self.writer.close()
        atexit.unregister(self.close)


class WandbLogger:
    """A W&B run whose metrics are plotted against total_iters (a W&B 'step metric', so that a resumed run
    may log steps the interrupted run had logged already after its last checkpoint). With `resume`, the run
    whose id is saved in `run_dir` is continued; `options` (None: left as they are) become its config."""

    def __init__(self, run_dir, options, project, name, resume):
        import wandb
        self.wandb = wandb
        id_path = os.path.join(run_dir, WANDB_ID_FILE)
        run_id = None
        if resume and os.path.isfile(id_path):
            with open(id_path) as f:
                run_id = f.read().strip() or None
        try:
            self.run = wandb.init(project=project, name=name, id=run_id,
                                  resume='allow', dir=run_dir, config=options, allow_val_change=True,
                                  reinit='finish_previous')
        except wandb.errors.Error as exc:  # no login, no network, a refused resume
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0].rstrip('.')
            raise LoggerError(f'--logger wandb: {first}; or set WANDB_MODE=offline to log locally (upload later '
                              f'with `wandb sync`)') from exc
        self.run.define_metric('total_iters')
        self.run.define_metric('*', step_metric='total_iters')
        util.atomic_write_text(id_path, self.run.id + '\n')
        atexit.register(self.close)

    def scalars(self, values, step):
        self.run.log({**values, 'total_iters': step})

    def images(self, images, step):
        self.run.log({**{f'images/{label}': self.wandb.Image(image) for label, image in images.items()},
                      'total_iters': step})

    def close(self):
        if self.run is not None:
            self.run.finish()
            self.run = None
        atexit.unregister(self.close)


def open_backends(names, run_dir, *, project, run_name, options=None, start_step=None, resume=True):
    """The TensorBoard / W&B loggers among `names` for the run folder `run_dir` (visdom is util/visualizer's)."""
    loggers = []
    if 'tensorboard' in names:
        loggers.append(TensorBoardLogger(os.path.join(run_dir, 'tensorboard'), options, start_step))
    if 'wandb' in names:
        loggers.append(WandbLogger(run_dir, options, project, run_name, resume))
    return loggers


def open_loggers(opt, start_step=0):
    """The TensorBoard / W&B loggers of a training run, for the process of rank 0.

    `start_step`: the total_iters the run starts at (non-zero when it resumes)."""
    return open_backends(chosen(opt), os.path.join(opt.checkpoints_dir, opt.name),
                         project=getattr(opt, 'wandb_project_name', None),
                         run_name=getattr(opt, 'wandb_run_name', None) or opt.name,
                         options=util.options_to_dict(opt), start_step=start_step,
                         resume=getattr(opt, 'continue_train', False))
