"""Command-line options shared by training and testing; names and defaults are CUT's."""
import argparse
import json
import os
import random
import sys

import data
import models
from cpu import options as cpu_options
from data.base_dataset import DIRECTIONS, PREPROCESS_MODES
from models.networks import DISCRIMINATORS, GENERATOR_ARCH_KEYS, NORM_TYPES, PATCH_SAMPLER_KEYS
from options import checks
from options.generator_options import add_generator_options
from util import distributed, util

# the options that decide how a run's networks are built: test.py (and scripts/similarity_maps.py) take
# them from the run's train_opt.json, so a checkpoint is rebuilt as it was trained; the command line wins
ARCHITECTURE_KEYS = ('model', *GENERATOR_ARCH_KEYS, *PATCH_SAMPLER_KEYS)
# Hneg_SRC kept CUT's model names for its own models: its `sincut` is SinCUT + SRC + hDCE, and its default
# `cut` (no --model in its train.sh) is SRC + hDCE. Their commands run here under our names, with a note.
OFFICIAL_MODEL_NAMES = {'sincut': 'sin_src_hdce'}
OFFICIAL_DEFAULT_MODEL = 'src_hdce'


class BaseOptions:
    """Builds the parser in three passes: base flags, then the chosen model's and dataset's hooks."""

    def __init__(self, cmd_line=None):
        self.cmd_line = None if cmd_line is None else list(cmd_line)
        self.initialized = False
        self.isTrain = False

    def initialize(self, parser):
        p = parser
        # experiment
        p.add_argument('--dataroot', default='placeholder',
                       help='path to images (should have subfolders trainA, trainB, testA, testB, ...)')
        p.add_argument('--name', type=str, default='experiment_name',
                       help='name of the experiment; checkpoints go to <checkpoints_dir>/<name>')
        # CUT's flag, accepted and ignored
        p.add_argument('--easy_label', type=str, default='experiment_name', help=argparse.SUPPRESS)
        p.add_argument('--gpu_ids', type=str, default='0',
                       help='gpu ids, e.g. 0  0,1,2  or -1 for CPU (falls back to CPU when CUDA is absent)')
        p.add_argument('--checkpoints_dir', type=str, default='./checkpoints', help='models are saved here')
        p.add_argument('--seed', type=int, default=None,
                       help='random seed; when omitted one is drawn and recorded in the saved options')
        # model
        p.add_argument('--model', type=str, default='cut', choices=models.available_models(),
                       help='which model to use')
        p.add_argument('--input_nc', type=int, default=3, help='# of input image channels')
        p.add_argument('--output_nc', type=int, default=3, help='# of output image channels')
        add_generator_options(p)
        p.add_argument('--ndf', type=int, default=64, help='# of discrim filters in the first conv layer')
        p.add_argument('--netD', type=str, default='basic', choices=sorted(DISCRIMINATORS),
                       help='discriminator architecture')
        p.add_argument('--n_layers_D', type=int, default=3, help='only used if netD==n_layers')
        p.add_argument('--normD', type=str, default='instance', choices=NORM_TYPES, help='normalisation of D')
        # dataset
        p.add_argument('--dataset_mode', type=str, default='unaligned', choices=data.available_datasets(),
                       help='how the dataset is loaded')
        p.add_argument('--direction', type=str, default='AtoB', choices=list(DIRECTIONS),
                       help='AtoB or BtoA')
        p.add_argument('--serial_batches', action='store_true',
                       help='if true, takes images in order to make batches, otherwise takes them randomly')
        p.add_argument('--num_threads', default=4, type=int, help='# threads for loading data')
        p.add_argument('--batch_size', type=int, default=1, help='input batch size')
        p.add_argument('--load_size', type=int, default=286, help='scale images to this size')
        p.add_argument('--crop_size', type=int, default=256, help='then crop to this size')
        p.add_argument('--max_dataset_size', type=float, default=float('inf'),
                       help='maximum number of samples allowed per dataset')
        p.add_argument('--preprocess', type=str, default='resize_and_crop', choices=list(PREPROCESS_MODES),
                       help='scaling and cropping of images at load time')
        p.add_argument('--no_flip', action='store_true',
                       help='if specified, do not flip the images for data augmentation')
        p.add_argument('--skip_bad_images', action='store_true',
                       help='leave out image files that cannot be decoded (checked once at start-up, with '
                            'a warning and their count) instead of stopping at the first one')
        p.add_argument('--display_winsize', type=int, default=256,
                       help='display window size for both visdom and HTML')
        p.add_argument('--random_scale_max', type=float, default=3.0,
                       help='(used for single image translation) maximum random zoom')
        # additional
        p.add_argument('--epoch', type=str, default='latest',
                       help='which epoch to load? set to latest to use latest cached model')
        p.add_argument('--verbose', action='store_true', help='if specified, print more debugging information')
        p.add_argument('--suffix', default='', type=str,
                       help='customized suffix: opt.name = opt.name + suffix, e.g. {model}_{netG}_size{load_size}')
        # speed (docs/performance.md)
        p.add_argument('--amp', type=str, default='off', choices=['off', 'bf16', 'fp16'],
                       help='mixed precision: network forwards autocast to bfloat16 or float16 (with a gradient '
                            'scaler); patch embeddings (F) and losses in float32')
        p.add_argument('--channels_last', action='store_true',
                       help='keep images and convolution weights in the channels-last memory layout')
        p.add_argument('--compile', action='store_true',
                       help='torch.compile the networks (a slow first iterations, then faster steps)')
        cpu_options.add_conv_option(p)
        self.initialized = True
        return parser

    def _args(self):
        return sys.argv[1:] if self.cmd_line is None else self.cmd_line

    def run_defaults(self, opt):
        """Defaults that come from the run itself ({} here; test.py's options read its train_opt.json)."""
        return {}

    def gather_options(self):
        """Base flags, then the model's and the dataset's `modify_commandline_options` hooks; the run's own
        defaults (`run_defaults`) go over every hook's, under the command line."""
        parser = argparse.ArgumentParser(formatter_class=argparse.ArgumentDefaultsHelpFormatter)
        parser = self.initialize(parser)
        args, self.model_note = official_model_args(self._args(), parser.get_default('model'))
        opt, _ = parser.parse_known_args(args)
        self.saved = self.run_defaults(opt)
        if 'model' in self.saved:
            parser.set_defaults(model=self.saved['model'])
            opt, _ = parser.parse_known_args(args)
        model_cls = models.find_model_using_name(opt.model)
        parser = model_cls.modify_commandline_options(parser, self.isTrain)
        opt, _ = parser.parse_known_args(args)
        presets = model_cls.preset_defaults(opt, self.isTrain)
        if presets:
            parser.set_defaults(**presets)
            opt, _ = parser.parse_known_args(args)
        parser = data.get_option_setter(opt.dataset_mode)(parser, self.isTrain)
        known = {a.dest for a in parser._actions}
        parser.set_defaults(**{k: v for k, v in self.saved.items() if k in known})
        self.parser = parser
        return parser.parse_args(args)

    def option_lines(self, opt):
        """`name: value [default: d]` lines, the default shown only where it differs (CUT's format)."""
        lines = ['----------------- Options ---------------']
        for k, v in sorted(vars(opt).items()):
            default = self.parser.get_default(k)
            mark = f'\t[default: {default}]' if v != default else ''
            lines.append(f'{k:>25}: {str(v):<30}{mark}')
        lines.append('----------------- End -------------------')
        return lines

    def save_options(self, opt):
        """Write <phase>_opt.txt (human) and <phase>_opt.json (machine) beside the checkpoints."""
        expr_dir = os.path.join(opt.checkpoints_dir, opt.name)
        try:
            util.mkdirs(expr_dir)
            text = '\n'.join(self.option_lines(opt)) + '\n'
            util.atomic_write_text(os.path.join(expr_dir, f'{opt.phase}_opt.txt'), text)
            util.atomic_write_json(os.path.join(expr_dir, f'{opt.phase}_opt.json'), util.options_to_dict(opt))
        except OSError as exc:
            raise SystemExit(f'error: cannot write to --checkpoints_dir {expr_dir!r}: {exc}') from exc

    def parse(self, save=True):
        """Parse, fill what depends on other flags, validate, print and save (unless `save` is False: then
        the caller calls `save_options`, e.g. train.py once it holds the run folder's lock)."""
        opt = self.gather_options()
        opt.isTrain = self.isTrain
        if opt.suffix:
            opt.name = opt.name + '_' + opt.suffix.format(**vars(opt))
        if opt.seed is None:
            opt.seed = random.SystemRandom().randrange(2 ** 31)
        opt.gpu_ids = parse_gpu_ids(opt.gpu_ids)
        checks.check_numbers(opt, checks.numeric_flags(self.parser))
        self.finalize(opt)
        self.validate(opt)
        if distributed.env_rank() == 0:  # torchrun starts one process per GPU; rank 0 reports and writes
            print('\n'.join(self.option_lines(opt)))
            if self.model_note:
                print(self.model_note)
            for key, value in self.saved.items():
                if getattr(opt, key, value) != value:
                    print(f'note: --{key} {getattr(opt, key)} from the command line; the run was trained with '
                          f'--{key} {value}')
            if save:
                self.save_options(opt)
        self.opt = opt
        return opt

    def finalize(self, opt):
        """Values fixed by the command (e.g. test.py's one image at a time); nothing here."""

    def validate(self, opt):
        """Loud, early errors for values argparse cannot check by itself (the numeric flags' ranges are
        checked before `finalize`, as given): the image side against the networks (options/checks.py)."""
        checks.check_image_size(opt, self.isTrain)
        if getattr(opt, 'lr_policy', None) == 'plateau':
            raise SystemExit('error: --lr_policy plateau needs a validation metric, which training does not compute '
                             '(CUT steps it on a constant); use linear, step or cosine')
        if opt.amp == 'fp16' and not opt.gpu_ids and distributed.env_rank() == 0:
            print('warning: --amp fp16 on CPU: CPUs without float16 units (most) emulate it, slower than '
                  'float32; use --amp bf16 on CPU', file=sys.stderr)


def _model_flag(args):
    """(index, value) of the last --model in `args` ('--model X' or '--model=X'); (None, None) without one."""
    found = None, None
    for i, arg in enumerate(args):
        if arg == '--model' and i + 1 < len(args):
            found = i + 1, args[i + 1]
        elif arg.startswith('--model='):
            found = i, arg.split('=', 1)[1]
    return found


def _own_flags(model, than):
    """The flags `model`'s options hook adds that `than`'s does not."""
    def flags(name):
        parser = argparse.ArgumentParser(add_help=False)
        models.find_model_using_name(name).modify_commandline_options(parser, True)
        return {s for action in parser._actions for s in action.option_strings}
    return flags(model) - flags(than)


def official_model_args(args, default_model):
    """`args` with Hneg_SRC's model names put into ours, and the note saying so (None when unchanged).

    `--model sincut` becomes sin_src_hdce; a command without --model that passes flags only src_hdce has
    (Hneg_SRC's train.sh: --dce_idt --lambda_HDCE ...) trains src_hdce, whose flags they are. Without such
    flags CUT's default (--model cut, CUT itself) stays."""
    args = list(args)
    index, name = _model_flag(args)
    if name in OFFICIAL_MODEL_NAMES:
        ours = OFFICIAL_MODEL_NAMES[name]
        args[index] = ours if args[index] == name else f'--model={ours}'
        return args, (f'note: --model {name} is the official Hneg_SRC name of --model {ours} (SinCUT with SRC + '
                      f'hDCE): using {ours}')
    if index is not None:
        return args, None
    src_flags = _own_flags(OFFICIAL_DEFAULT_MODEL, default_model)
    given = sorted({a.split('=', 1)[0] for a in args if a.split('=', 1)[0] in src_flags})
    if not given:
        return args, None
    return args + ['--model', OFFICIAL_DEFAULT_MODEL], (
        f'note: no --model, and {" ".join(given)} are flags of --model {OFFICIAL_DEFAULT_MODEL} (the official '
        f'Hneg_SRC default model): using --model {OFFICIAL_DEFAULT_MODEL}')


def parse_gpu_ids(spec):
    """'0,1' -> [0, 1]; '-1' or '' -> []. Falls back to CPU (with one warning) when CUDA is absent."""
    import torch
    ids = []
    for tok in str(spec).split(','):
        tok = tok.strip()
        if not tok:
            continue
        try:
            i = int(tok)
        except ValueError:
            raise SystemExit(f'error: --gpu_ids expects comma-separated integers, got {spec!r}') from None
        if i >= 0:
            ids.append(i)
    if ids and not torch.cuda.is_available():
        print(f'warning: --gpu_ids {spec} requested but CUDA is not available; running on CPU',
              file=sys.stderr)
        return []
    if ids and max(ids) >= torch.cuda.device_count():
        raise SystemExit(f'error: --gpu_ids {spec}: only {torch.cuda.device_count()} CUDA device(s) present')
    return ids


def read_run_options(checkpoints_dir, name, keys=ARCHITECTURE_KEYS):
    """`keys` of <checkpoints_dir>/<name>/train_opt.json ({} when the run has none, e.g. an official
    checkpoint); a file that is not JSON is an error that names it."""
    path = os.path.join(checkpoints_dir, name, 'train_opt.json')
    if not os.path.isfile(path):
        return {}
    try:
        with open(path) as f:
            saved = json.load(f)
    except (OSError, ValueError) as exc:
        raise SystemExit(f'error: cannot read the run\'s options {path}: {exc}') from exc
    return {k: saved[k] for k in keys if k in saved}
