"""Step 1 of Fast GAN Compression (Li et al., CVPR 2020) with the paper's L_semantic between teacher and student
(the paper's §4.3, Table 3), as the official compression code (Hneg_SRC `Compression/`) trains it.

A frozen teacher generator (`--teacher_netG --teacher_ngf --teacher_path`, this project's ResNet in
gan-compression's layout: no anti-aliasing) and a once-for-all student, the mobile ResNet super-net
(models/networks/compression.py). Each iteration draws one channel configuration (its own seeded RNG) and runs,
as gan-compression's `ResnetSupernet`: a discriminator step on the student's translation, and a student step
on λ_gan·GAN + λ_recon·L1(student, teacher's translation; the target for aligned data) + λ_distill·Σ_l
MSE(A_l(S_l), T_l) over the features S_l / T_l of children 9, 12, 15, 18 (1×1 super convolutions A_l, sliced to
the student's width) + L_semantic: objectives.SemanticRelation on the embeddings F(S_l) (queries, with gradient)
and F(T_l) (detached keys) at shared random positions, summed over the four layers. F is one 2-layer MLP per
layer built for the super-net's widest features and applied to the first c input columns (the teacher's
features use all of its own); it learns through the student's side only, with its own Adam.

The baseline (gan-compression's step 1) is the same run with `--lambda_SRC 0 --lambda_HDCE 0`. `--config_str`
trains one fixed configuration: the fine-tuning of a searched sub-net (map→satellite), started from the step-1
super-net's G and D with `--restore_G_path --restore_D_path` (A and F restart, as gan-compression's finetune.sh;
`--restore_A_path --restore_F_path` load them too). Files: <epoch>_net_{G,D,A,F}.pth (the official code does not save
F) and the training state, which holds the configuration and patch RNGs so that a resumed run draws what the
uninterrupted one would.
"""
import argparse
import os
import re
import sys
from collections import OrderedDict

import torch
import torch.nn as nn
import torch.nn.functional as F

from models import losses, objectives
from models.base_model import BaseModel, set_generator_state
from models.networks import define_D, define_F, define_G, generator_from_options
from models.networks.compression import (CONFIG_SETS, DISTILL_LAYERS, ChannelConfigs, SuperConv2d, decode_config,
                                         encode_config)
from models.networks.init import init_weights
from models.src_hdce_model import add_semantic_relation_options, semantic_relation
from util import distributed, util
from util.errors import CheckpointError, ConfigError, MissingFileError

RECON_LOSSES = {'l1': F.l1_loss, 'l2': F.mse_loss, 'smooth_l1': F.smooth_l1_loss}
# the configuration set a super-net of --ngf samples unless --config_set names one
DEFAULT_CONFIG_SETS = {64: 'channels-64-cycleGAN', 16: 'channels-16', 8: 'channels-8'}
# the networks a run can start from another run's files (gan-compression's finetune.sh restores G and D; A and
# F then start from their initialisation, as there)
RESTORABLE = {'G': 'the student super-net', 'D': 'the discriminator', 'A': 'the mapping layers A',
              'F': 'the L_semantic MLPs F'}
SEMANTIC_ALIASES = (  # the official compression flags, accepted as aliases of this project's
    ('--lambda_dce', 'lambda_HDCE', float), ('--gamma_start', 'HDCE_gamma', float),
    ('--gamma_min', 'HDCE_gamma_min', float), ('--n_patch', 'num_patches', int))


class FixedConfig:
    """One configuration for every iteration (--config_str): ChannelConfigs' sampling interface."""

    def __init__(self, config):
        self.config = decode_config(config)

    def sample(self):
        return self.config

    def state_dict(self):
        return {}

    def load_state_dict(self, state):
        pass


def teacher_flags_advice(state):
    """What to pass for a teacher state dict that does not fit: the --teacher_netG / --teacher_ngf of a ResNet
    generator file (model.1 is its first convolution, model.<i>.conv_block its blocks), or the converter for an
    official file (its blocks keep a Dropout, so their second convolution is conv_block.6)."""
    if any(re.search(r'\.conv_block\.6\.', k) for k in state) and not any('.conv_block.5.' in k for k in state):
        return 'an official gan-compression / Hneg_SRC file: convert it with scripts/import_teacher.py first'
    first = state.get('model.1.weight')
    blocks = {k.split('.')[1] for k in state if '.conv_block.' in k}
    if first is None or getattr(first, 'dim', lambda: 0)() != 4 or not blocks:
        return 'the file is not a ResNet generator of this project (--teacher_path: a <run>/latest_net_G.pth)'
    return (f'it holds a ResNet with {len(blocks)} blocks and ngf {first.shape[0]}: pass --teacher_netG '
            f'resnet_{len(blocks)}blocks --teacher_ngf {first.shape[0]} (and the --normG it was trained with)')


class MappingLayers(nn.ModuleList):
    """gan-compression's netA: one 1×1 super convolution per distilled layer (student width, sliced, -> teacher
    width); called on the list of student features (a module with a forward, so DDP can wrap it)."""

    def __init__(self, layers, student_channels, teacher_channels):
        super().__init__(SuperConv2d(student_channels, teacher_channels, kernel_size=1) for _ in range(layers))

    def forward(self, feats):
        return [conv(f) for conv, f in zip(self, feats)]


def default_config_set(ngf):
    if ngf not in DEFAULT_CONFIG_SETS:
        raise ConfigError(f'--config_set: no default for a super-net of --ngf {ngf} (defaults: '
                         f'{DEFAULT_CONFIG_SETS}); name one of {", ".join(CONFIG_SETS)}')
    return DEFAULT_CONFIG_SETS[ngf]


class CompressionModel(BaseModel):
    """gan-compression's once-for-all step 1 (D step, then the student's GAN + recon + distill) + L_semantic."""

    # test.py rebuilds the student from these (with --netG / --ngf / --config_str of the run)
    architecture_keys = ('config_str',)

    @staticmethod
    def modify_commandline_options(parser, is_train=True):
        p = parser
        p.add_argument('--teacher_netG', type=str, default='resnet_9blocks',
                       help="the teacher's generator (built without anti-aliasing: gan-compression's layout, whose "
                            'children 9/12/15/18 are distilled)')
        p.add_argument('--teacher_ngf', type=int, default=None, help="the teacher's ngf (default: --ngf)")
        p.add_argument('--teacher_path', type=str, default='',
                       help="the teacher's weights (e.g. checkpoints/<teacher run>/latest_net_G_A.pth, or an "
                            "official teacher converted by scripts/import_teacher.py); '': a random teacher, for "
                            'tests only')
        p.add_argument('--config_set', type=str, default=None, choices=sorted(CONFIG_SETS),
                       help='the channel configurations sampled per iteration (default: channels-64-cycleGAN at '
                            '--ngf 64, channels-16 at 16, channels-8 at 8); --config_str trains one instead')
        p.add_argument('--lambda_gan', type=float, default=1.0, help='weight of the GAN loss')
        p.add_argument('--lambda_recon', type=float, default=100.0,
                       help="weight of the reconstruction loss (to the teacher's translation; to the target "
                            'with --dataset_mode aligned)')
        p.add_argument('--recon_loss_type', type=str, default='l1', choices=sorted(RECON_LOSSES))
        p.add_argument('--lambda_distill', type=float, default=1.0,
                       help='weight of the feature distillation: sum over the 4 layers of MSE(A(S), T)')
        add_semantic_relation_options(p, curriculum='over all epochs')
        p.add_argument('--layer_reduction', type=str, default='sum', choices=list(objectives.LAYER_REDUCTIONS),
                       help='L_semantic over the 4 layers: sum (the official compression code) or mean')
        p.add_argument('--nce_T', type=float, default=0.07, help='temperature of the contrastive term')
        p.add_argument('--num_patches', type=int, default=256, help='patches per layer (official --n_patch)')
        for name, what in RESTORABLE.items():
            p.add_argument(f'--restore_{name}_path', type=str, default='',
                           help=f'start {what} from this file (e.g. checkpoints/<step-1 run>/latest_net_{name}.pth): '
                                'the fine-tuning of a searched configuration (--config_str)')
        p.add_argument('--restore_student_G_path', dest='restore_G_path', default=argparse.SUPPRESS,
                       help='alias of --restore_G_path (gan-compression)')
        for flag, dest, kind in SEMANTIC_ALIASES:
            p.add_argument(flag, dest=dest, type=kind, default=argparse.SUPPRESS, help=f'alias of --{dest}')
        p.add_argument('--no_hard', dest='no_Hneg', action='store_true', default=argparse.SUPPRESS,
                       help='alias of --no_Hneg')
        # gan-compression's step 1: lsgan, normal(0, 0.02) initialisation, batch 1, no pool; the official
        # compression L_semantic: λ_SRC 10, λ_hDCE 0.1, γ 50 -> 10 over all epochs
        p.set_defaults(netG='super_mobile_resnet_9blocks', no_dropout=True, no_antialias=True, no_antialias_up=True,
                       gan_mode='lsgan', init_type='normal', init_gain=0.02, pool_size=0, lambda_SRC=10.0,
                       lambda_HDCE=0.1, use_curriculum=True, HDCE_gamma=50.0, HDCE_gamma_min=10.0)
        return parser

    def __init__(self, opt, runtime=None):
        super().__init__(opt, runtime)
        self.netG = generator_from_options(opt).to(self.device)
        if not self.isTrain:
            self.model_names = ['G']
            self.visual_names = ['real_A', 'fake_B']
            return
        G = self.netG
        if not hasattr(G, 'set_config'):
            raise ConfigError(f'--model compression trains a super-net: --netG super_mobile_resnet_9blocks, got '
                             f'--netG {opt.netG}')
        if opt.gan_mode not in losses.GAN_MODES:
            raise ConfigError(f'--gan_mode {opt.gan_mode!r}: valid {losses.GAN_MODES}')
        if opt.num_patches <= 0:
            raise ConfigError(f'--num_patches must be > 0 (positions per layer), got {opt.num_patches}')
        self.aligned = opt.dataset_mode == 'aligned'
        self.teacher_ngf = opt.teacher_ngf or opt.ngf
        if self.teacher_ngf > opt.ngf:
            raise ConfigError(f'--teacher_ngf {self.teacher_ngf} > --ngf {opt.ngf}: F is built for the super-net\'s '
                             f'widest features (4 * ngf columns), which must hold the teacher\'s (4 * teacher_ngf)')
        if opt.config_str:
            self.configs = FixedConfig(opt.config_str)
        else:
            self.configs = ChannelConfigs(opt.config_set or default_config_set(opt.ngf), seed=opt.seed)
            widest = max(self.configs.largest())
            if widest > opt.ngf:
                raise ConfigError(f'--config_set {self.configs.name} reaches width {widest} > --ngf {opt.ngf}')
        self.config = G.config
        self.netT = self.build_teacher(opt)
        # networks in the official order: student (above), D, the mapping layers A; then F
        self.netD = define_D(opt.input_nc + opt.output_nc if self.aligned else opt.output_nc, opt.ndf, opt.netD,
                             n_layers_D=opt.n_layers_D, norm=opt.normD, init_type=opt.init_type,
                             init_gain=opt.init_gain, no_antialias=opt.no_antialias, crop_size=opt.crop_size,
                             load_size=opt.load_size).to(self.device)
        student_c, teacher_c = 4 * opt.ngf, 4 * self.teacher_ngf
        self.netA = MappingLayers(len(DISTILL_LAYERS), student_c, teacher_c)
        init_weights(self.netA, opt.init_type, opt.init_gain)
        self.netA.to(self.device)
        self.netF = define_F('mlp_sample', netF_nc=teacher_c, init_type=opt.init_type, init_gain=opt.init_gain,
                             slice_inputs=True).build([student_c] * len(DISTILL_LAYERS)).to(self.device)
        # patch positions from their own generator: the global RNGs advance alike with and without L_semantic
        self.patch_rng = torch.Generator(device=self.device)
        self.patch_rng.manual_seed(opt.seed if opt.seed is not None else torch.seed())
        total_epochs = opt.n_epochs + opt.n_epochs_decay
        hardness = objectives.Curriculum(opt.HDCE_gamma, opt.HDCE_gamma_min, total_epochs,
                                         use_curriculum=opt.use_curriculum)
        self.objective = semantic_relation(opt, hardness, layer_reduction=opt.layer_reduction)
        self.model_names = ['G', 'D', 'A', 'F']
        self.visual_names = ['real_A', 'fake_B', 'teacher_B', 'real_B']
        self.loss_names = ['D_real', 'D_fake', 'G_gan', 'G_recon', 'G_distill', 'G', *self.objective.term_names]
        self.epoch = 1
        self.restore_networks(opt)

        def adam(params):
            return self.runtime.adam(params, lr=opt.lr, betas=(opt.beta1, opt.beta2))
        self.optimizer_G = adam(list(G.parameters()) + list(self.netA.parameters()))  # A with G, as upstream
        self.optimizer_D = adam(self.netD.parameters())
        self.optimizers = [self.optimizer_G, self.optimizer_D]
        self.optimizer_F = None  # F has no gradient without L_semantic (and DDP would wait for one)
        if self.objective.uses_features:
            self.optimizer_F = adam(self.netF.parameters())
            self.optimizers.append(self.optimizer_F)

    def build_teacher(self, opt):
        """The frozen teacher: --teacher_netG at --teacher_ngf without anti-aliasing, --normG and --G_output as the
        student's, weights from --teacher_path."""
        teacher = define_G(opt.input_nc, opt.output_nc, self.teacher_ngf, opt.teacher_netG, norm=opt.normG,
                           no_antialias=True, no_antialias_up=True, init_type=opt.init_type,
                           init_gain=opt.init_gain, crop_size=opt.crop_size, load_size=opt.load_size,
                           G_output=opt.G_output)
        if opt.teacher_path:
            if not os.path.isfile(opt.teacher_path):
                raise MissingFileError(f'--teacher_path {opt.teacher_path}: no such file (the teacher generator\'s '
                                        f'state dict, e.g. checkpoints/<teacher run>/latest_net_G_A.pth)')
            state = util.strip_module_prefix(util.safe_torch_load(opt.teacher_path))
            mismatch = util.state_dict_mismatch(teacher.state_dict(), state, n=2)
            if mismatch:
                raise ConfigError(f'--teacher_path {opt.teacher_path} does not fit --teacher_netG {opt.teacher_netG} '
                                 f'--teacher_ngf {self.teacher_ngf} --normG {opt.normG} without anti-aliasing '
                                 f'({mismatch}); {teacher_flags_advice(state)}')
            teacher.load_state_dict(state, strict=True)
            print(f'loaded the teacher from {opt.teacher_path}')
        else:
            print('warning: no --teacher_path: the teacher keeps its random initialisation (tests and smoke runs '
                  'only; step 1 distils a trained teacher)', file=sys.stderr)
        return teacher.to(self.device).eval().requires_grad_(False)

    def restore_networks(self, opt):
        """Load --restore_{G,D,A,F}_path strictly into the freshly built networks (before the optimizers exist;
        --continue_train later loads the run's own files over them)."""
        for name in RESTORABLE:
            path = getattr(opt, f'restore_{name}_path')
            if not path:
                continue
            if not os.path.isfile(path):
                raise MissingFileError(f'--restore_{name}_path {path}: no such file (a step-1 run\'s '
                                        f'<epoch>_net_{name}.pth)')
            state = util.strip_module_prefix(util.safe_torch_load(path, map_location=str(self.device)))
            try:
                getattr(self, 'net' + name).load_state_dict(state, strict=True)
            except RuntimeError as exc:
                raise CheckpointError(f'--restore_{name}_path {path} does not fit net{name} of this run (--ngf '
                                   f'{opt.ngf} --ndf {opt.ndf} --netD {opt.netD} --dataset_mode {opt.dataset_mode}: '
                                   f'the step-1 run\'s flags): {exc}') from exc
            print(f'restored net{name} from {path}')

    # ---- set-up ------------------------------------------------------------------------------
    def data_dependent_initialize(self, data):
        """Check on a first batch that teacher and student features at the distilled layers have the channels
        A and F are built for and the same size."""
        if not self.isTrain:
            return
        self.set_input(data)
        G = self._unwrapped('G')
        current = G.config
        G.set_config((self.opt.ngf,) * len(current))
        with torch.no_grad():
            student = G(self.real_A[:1], list(DISTILL_LAYERS), encode_only=True)
            teacher = self.netT(self.real_A[:1], list(DISTILL_LAYERS), encode_only=True)
        G.set_config(current)
        for layer, s, t in zip(DISTILL_LAYERS, student, teacher):
            expected = (4 * self.opt.ngf, 4 * self.teacher_ngf)
            if (s.shape[1], t.shape[1]) != expected or s.shape[2:] != t.shape[2:]:
                raise ConfigError(f'layer {layer}: the student\'s features {tuple(s.shape)} and the teacher\'s '
                                 f'{tuple(t.shape)} do not pair up (expected {expected[0]} and {expected[1]} channels '
                                 f'at one size): --teacher_netG {self.opt.teacher_netG} must be a ResNet in '
                                 f"gan-compression's layout")

    def parallelize(self):
        super().parallelize()
        if self.isTrain:
            self.netT = self.runtime.prepare(self.netT)

    def set_epoch(self, epoch):
        self.epoch = epoch

    def set_input(self, input):
        super().set_input(input)
        if self.isTrain and self.aligned and self.real_B is None:
            raise ConfigError('--dataset_mode aligned needs the target images')

    # ---- forward -----------------------------------------------------------------------------
    def forward(self):
        if not self.isTrain:
            with self.runtime.autocast():
                self.fake_B = self.netG(self.real_A).float()
            return
        layers = list(DISTILL_LAYERS)
        with self.runtime.autocast():
            with torch.no_grad():
                teacher_B, teacher_feats = self.netT(self.real_A, layers)
            fake_B, student_feats = self.netG(self.real_A, layers)
        self.teacher_B, self.fake_B = teacher_B.float(), fake_B.float()
        self.teacher_feats, self.student_feats = teacher_feats, student_feats

    def discriminator_input(self, image):
        return torch.cat((self.real_A, image), 1) if self.aligned else image

    def semantic_sample(self, branch, ids=None):
        """The objective's `sample`: F(student features) (q, with gradient) and F(teacher features) (k, no
        gradient) at shared positions, (B, N, C) per layer; F in float32."""
        if branch != 'X':
            raise ConfigError('the compression model has no identity branch')
        with torch.autocast(self.device.type, enabled=False):
            q, ids = self.netF(self.student_feats, self.opt.num_patches, ids, generator=self.patch_rng)
            with torch.no_grad():
                k, _ = self.netF(self.teacher_feats, self.opt.num_patches, ids)
        n = self.real_A.size(0)
        return [f.reshape(n, -1, f.shape[-1]) for f in q], [f.reshape(n, -1, f.shape[-1]) for f in k], ids

    def distill_loss(self):
        """Σ_l MSE(A_l(S_l), T_l) over the four layers (gan-compression's calc_distill_loss)."""
        total = 0.0
        with self.runtime.autocast():
            mapped = self.netA(self.student_feats)
        for s, t in zip(mapped, self.teacher_feats):
            total = total + F.mse_loss(s.float(), t.float())
        return total

    def compute_D_loss(self):
        with self.runtime.autocast():
            pred_fake = self.netD(self.discriminator_input(self.fake_B.detach())).float()
            pred_real = self.netD(self.discriminator_input(self.real_B)).float()
        self.losses['D_fake'] = losses.gan_loss(pred_fake, False, self.opt.gan_mode, for_discriminator=True).mean()
        self.losses['D_real'] = losses.gan_loss(pred_real, True, self.opt.gan_mode, for_discriminator=True).mean()
        return (self.losses['D_fake'] + self.losses['D_real']) * 0.5

    def compute_G_loss(self):
        opt, l = self.opt, self.losses
        with self.runtime.autocast():  # D is frozen here: unwrapped, as DDP would wait for its gradients
            pred_fake = self._unwrapped('D')(self.discriminator_input(self.fake_B)).float()
        l['G_gan'] = losses.gan_loss(pred_fake, True, opt.gan_mode, for_discriminator=False).mean() * opt.lambda_gan
        target = self.real_B if self.aligned else self.teacher_B
        l['G_recon'] = RECON_LOSSES[opt.recon_loss_type](self.fake_B, target) * opt.lambda_recon
        l['G_distill'] = self.distill_loss() * opt.lambda_distill if opt.lambda_distill > 0 else torch.zeros(())
        terms = self.objective(self.semantic_sample, self.epoch)
        l.update(terms)
        l['G'] = l['G_gan'] + l['G_recon'] + l['G_distill'] + self.objective.total(terms)
        return l['G']

    # ---- training step -----------------------------------------------------------------------
    def optimize_parameters(self):
        """gan-compression's order: one configuration; D's loss and backward; the student's loss (D not yet
        updated) and backward; then the D, G (with A) and F steps."""
        self.config = self.configs.sample()
        self._unwrapped('G').set_config(self.config)
        self.forward()
        for o in self.optimizers:
            o.zero_grad(set_to_none=True)
        self.set_requires_grad(self._unwrapped('D'), True)
        self.runtime.backward(self.compute_D_loss())
        self.set_requires_grad(self._unwrapped('D'), False)
        self.runtime.backward(self.compute_G_loss())
        self.runtime.step(self.optimizer_D, self.optimizer_G, self.optimizer_F)
        self.runtime.update()
        self.teacher_feats = self.student_feats = None

    # ---- checkpoints -------------------------------------------------------------------------
    def training_state(self, *args, **kwargs):
        state = super().training_state(*args, **kwargs)
        state.update(config_rng=self.configs.state_dict(), patch_rng=self.patch_rng.get_state(),
                     config=encode_config(self.config))
        return state

    def load_training_state(self, state):
        counters = super().load_training_state(state)
        for key in ('config_rng', 'patch_rng'):
            if key not in state:
                raise CheckpointError(f'{self.state_path(state["epoch_tag"])} has no {key}: not a compression run')
        self.configs.load_state_dict(state['config_rng'])
        restart = (self.opt.seed or 0) + counters['total_iters']
        if not set_generator_state(self.patch_rng, state['patch_rng'], restart):
            distributed.print0(f'note: {self.state_path(state["epoch_tag"])} was saved on another kind of device: '
                               f'the distillation patch positions restart from seed {restart} (--seed + iteration)')
        return counters
