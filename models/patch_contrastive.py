"""The patch-contrastive model shared by CUT and the paper's model: a generator G trained by a GAN loss
plus a patch objective (models/objectives.py) on embeddings F of G's encoder features; subclasses
choose the objective from their flags and may add regularisers.
"""
import copy
from collections import OrderedDict

import numpy as np
import torch

from models import losses
from models.base_model import BaseModel
from models.networks import SAMPLERS, define_D, define_F, generator_from_options
from models.networks.averaging import moving_average, warmed_up_decay
from util import util
from util.errors import ConfigError


def add_patch_contrastive_options(parser):
    """Flags shared by every patch-contrastive model (CUT's names and defaults)."""
    parser.add_argument('--CUT_mode', type=str, default='CUT', choices=['CUT', 'cut', 'FastCUT', 'fastcut'])
    parser.add_argument('--lambda_GAN', type=float, default=1.0, help='weight for GAN loss: GAN(G(X))')
    parser.add_argument('--nce_layers', type=str, default='0,4,8,12,16',
                        help='compute the patch losses on which generator layers')
    parser.add_argument('--nce_includes_all_negatives_from_minibatch', type=util.str2bool, nargs='?',
                        const=True, default=False,
                        help='(used for single image translation) if True, the negatives of a patch include '
                             'the patches of the other images of the minibatch')
    parser.add_argument('--netF', type=str, default='mlp_sample', choices=list(SAMPLERS),
                        help='how to downsample the feature map')
    parser.add_argument('--netF_nc', type=int, default=256)
    parser.add_argument('--nce_T', type=float, default=0.07, help='temperature for the patch losses')
    parser.add_argument('--num_patches', type=int, default=256, help='number of patches per layer')
    parser.add_argument('--flip_equivariance', type=util.str2bool, nargs='?', const=True, default=False,
                        help='enforce flip-equivariance as additional regularization (FastCUT)')
    parser.add_argument('--G_ema_beta', type=float, default=0.0,
                        help='keep an exponential moving average of G\'s weights with this decay (warmed up: '
                             'min(beta, (1+t)/(10+t)) at step t), saved as <epoch>_net_G_ema.pth; test.py and '
                             'evaluation.curves then translate with it (test.py --G_ema_beta 0: with G itself). '
                             "0: none, CUT's behaviour")
    parser.set_defaults(pool_size=0)
    return parser


def parse_layers(spec):
    try:
        layers = [int(t) for t in str(spec).split(',') if t.strip()]
    except ValueError:
        raise ConfigError(f'--nce_layers expects comma-separated integers, got {spec!r}') from None
    if not layers:
        raise ConfigError('--nce_layers is empty')
    return layers


class PatchContrastiveModel(BaseModel):
    """L_G = λ_GAN·GAN(G(X)) + objective terms (+ regularisers); L_D = ½(GAN(D(Y), real) + GAN(D(G(X)), fake))."""

    architecture_keys = ('G_ema_beta',)  # test.py loads the averaged generator of a run that kept one

    @staticmethod
    def build_objective(opt):
        """The patch objective the model's flags describe (models/objectives.py)."""
        raise NotImplementedError

    def __init__(self, opt, runtime=None):
        super().__init__(opt, runtime)
        self.objective = self.build_objective(opt)
        self.use_idt = self.objective.identity and self.isTrain
        self.nce_layers = parse_layers(opt.nce_layers)
        if opt.num_patches < 0:
            raise ConfigError(f'--num_patches must be >= 0, got {opt.num_patches}')
        if not 0.0 <= opt.G_ema_beta < 1.0:
            raise ConfigError(f'--G_ema_beta must be in [0, 1), got {opt.G_ema_beta}')
        # Without batch statistics (batch norm) or random dropout masks, an image's features do not depend
        # on the other images of its pass: the main forward pass then yields the source features of the
        # patch objective, and one encoder pass over the whole translated batch serves both branches.
        self.batch_independent = opt.normG != 'batch' and opt.no_dropout
        self.flipped_for_equivariance = False
        self.epoch = 1

        self.loss_names = ['G_GAN', 'D_real', 'D_fake', 'G', *self.objective.term_names]
        self.visual_names = ['real_A', 'fake_B', 'real_B'] + (['idt_B'] if self.use_idt else [])
        self.model_names = ['G', 'F', 'D'] if self.isTrain else ['G']

        self.netG = generator_from_options(opt).to(self.device)
        self.netF = define_F(opt.netF, netF_nc=opt.netF_nc, init_type=opt.init_type,
                             init_gain=opt.init_gain).to(self.device)
        self.optimizer_F = None
        if self.isTrain:
            self.netD = define_D(opt.output_nc, opt.ndf, opt.netD, n_layers_D=opt.n_layers_D, norm=opt.normD,
                                 init_type=opt.init_type, init_gain=opt.init_gain,
                                 no_antialias=opt.no_antialias, crop_size=opt.crop_size,
                                 load_size=opt.load_size).to(self.device)
            self.optimizer_G = self.runtime.adam(self.netG.parameters(), lr=opt.lr, betas=(opt.beta1, opt.beta2))
            self.optimizer_D = self.runtime.adam(self.netD.parameters(), lr=opt.lr, betas=(opt.beta1, opt.beta2))
            self.optimizers = [self.optimizer_G, self.optimizer_D]
            if opt.G_ema_beta > 0:
                self.netG_ema = copy.deepcopy(self.netG).requires_grad_(False)
                self.model_names.append('G_ema')
        self.ema_steps = 0  # updates of G_ema so far (the warm-up counts them)

    # ---- set-up ------------------------------------------------------------------------------
    def data_dependent_initialize(self, data):
        """Build F's MLPs from the channel counts of G's features on a first batch, then its optimizer
        (CUT creates them lazily inside its first step). An --nce_layers index outside G fails here."""
        if not self.isTrain:
            return
        self.set_input(data)
        with torch.no_grad():
            feats = self.netG(self.real_A[:1], self.nce_layers, encode_only=True)
        if hasattr(self.netF, 'build') and not self.netF.built:
            self.netF.build([f.shape[1] for f in feats])
            self.netF.to(self.device)
        params = list(self.netF.parameters())
        if params and self.objective.uses_features:
            self.optimizer_F = self.runtime.adam(params, lr=self.opt.lr, betas=(self.opt.beta1, self.opt.beta2))
            self.optimizers.append(self.optimizer_F)

    def set_epoch(self, epoch):
        self.epoch = epoch

    # ---- forward -----------------------------------------------------------------------------
    def forward(self):
        self.real = torch.cat((self.real_A, self.real_B), dim=0) if self.use_idt else self.real_A
        self.flipped_for_equivariance = bool(self.opt.flip_equivariance and self.isTrain
                                             and np.random.random() < 0.5)
        if self.flipped_for_equivariance:
            self.real = torch.flip(self.real, [3])
        self.real_feats = self.fake_feats = None
        with self.runtime.autocast():
            if self.reusing_source_features():
                # one pass gives the translation and the source features the patch objective needs
                fake, feats = self.netG(self.real, self.nce_layers)
                self.real_feats = [f.detach() for f in feats]
            else:
                fake = self.netG(self.real)
        self.fake = fake.float()
        n = self.real_A.size(0)
        self.fake_B = self.fake[:n]
        if self.use_idt:
            self.idt_B = self.fake[n:]

    def reusing_source_features(self):
        return (self.isTrain and self.batch_independent and not self.flipped_for_equivariance
                and self.objective.uses_features and torch.is_grad_enabled())

    def source_features(self, src, row):
        """Encoder features of an input image, without gradient (the objective detaches this side): rows
        `row` (0 = real_A, 1 = real_B) of the main pass when it kept them, else one pass over `src`."""
        if self.real_feats is not None:
            n = self.real_A.size(0)
            return [f[row * n:(row + 1) * n] for f in self.real_feats]
        with self.runtime.autocast(), torch.no_grad():
            return self.netG(src, self.nce_layers, encode_only=True)

    def target_features(self, tgt, row):
        """Encoder features of a translation, with gradient, flipped back under flip-equivariance. When both
        branches are used and images are independent, one pass over the translated batch serves both
        (`row` 0 = fake_B, 1 = idt_B); otherwise `tgt` is encoded alone."""
        if self.batch_independent and self.use_idt and self.objective.samples_identity:
            if self.fake_feats is None:
                with self.runtime.autocast():
                    self.fake_feats = self.netG(self.fake, self.nce_layers, encode_only=True)
            n = self.real_A.size(0)
            feats = [f[row * n:(row + 1) * n] for f in self.fake_feats]
        else:
            with self.runtime.autocast():
                feats = self.netG(tgt, self.nce_layers, encode_only=True)
        if self.flipped_for_equivariance:
            feats = [torch.flip(f, [3]) for f in feats]
        return feats

    def embed(self, feat_q, feat_k, batch_size, sample_ids=None):
        """F's embeddings of the translation's (q) and the input's (k) features at shared random locations:
        (q, k, ids), one (B, N, C) tensor per layer ((1, B*N, C) when negatives come from the whole batch).

        F runs in float32 under every --amp: its embeddings start with norms ~1e-6 (two gain-0.02 layers),
        below float16's normal range, and the normalisation's backward divides by the squared norm, which
        float16 flushes to 0. F is tiny next to G and D; it casts the sampled patches, not the maps.
        """
        with torch.autocast(self.device.type, enabled=False):
            q_pool, ids = self.netF(feat_q, self.opt.num_patches, sample_ids, generator=self.patch_generator)
            with torch.no_grad():
                k_pool, _ = self.netF(feat_k, self.opt.num_patches, ids)
        shape = (1, -1) if self.opt.nce_includes_all_negatives_from_minibatch else (batch_size, -1)
        return [p.reshape(*shape, p.shape[-1]) for p in q_pool], [p.reshape(*shape, p.shape[-1]) for p in k_pool], ids

    def sample(self, branch, sample_ids=None):
        """The objective's `sample`: branch 'X' pairs G(X) with X, 'Y' the identity G(Y) with Y."""
        src, tgt, row = (self.real_A, self.fake_B, 0) if branch == 'X' else (self.real_B, self.idt_B, 1)
        return self.embed(self.target_features(tgt, row), self.source_features(src, row), tgt.size(0), sample_ids)

    # ---- losses ------------------------------------------------------------------------------
    def compute_D_loss(self):
        with self.runtime.autocast():
            pred_fake = self.netD(self.fake_B.detach()).float()
            self.pred_real = self.netD(self.real_B).float()
        self.losses['D_fake'] = losses.gan_loss(pred_fake, False, self.opt.gan_mode).mean()
        self.losses['D_real'] = losses.gan_loss(self.pred_real, True, self.opt.gan_mode).mean()
        return (self.losses['D_fake'] + self.losses['D_real']) * 0.5

    def generator_gan_loss(self):
        if self.opt.lambda_GAN <= 0.0:
            return torch.zeros((), device=self.device)
        with self.runtime.autocast():  # D is frozen: no DDP, whose reducer would wait for its gradients
            pred_fake = self._unwrapped('D')(self.fake_B).float()
        return losses.gan_loss(pred_fake, True, self.opt.gan_mode).mean() * self.opt.lambda_GAN

    def generator_regularisers(self):
        """Extra named generator terms of a subclass, already weighted; none here."""
        return OrderedDict()

    def compute_G_loss(self, sample=None):
        """GAN term + the objective's terms (with `sample`, e.g. a test's oracle, instead of self.sample)
        + regularisers; every term goes to self.losses."""
        self.losses['G_GAN'] = self.generator_gan_loss()
        terms = self.objective(sample or self.sample, self.epoch)
        extra = self.generator_regularisers()
        self.losses.update(terms)
        self.losses.update(extra)
        loss = self.losses['G_GAN'] + self.objective.total(terms)
        for value in extra.values():
            loss = loss + value
        self.losses['G'] = loss
        # the backward pass frees the saved activations these maps share storage with only if nothing
        # else holds them
        self.real_feats = self.fake_feats = None
        return loss

    # ---- training step -----------------------------------------------------------------------
    def optimize_parameters(self):
        self.forward()

        self.set_requires_grad(self.netD, True)
        self.optimizer_D.zero_grad(set_to_none=True)
        self.runtime.backward(self.compute_D_loss())
        self.runtime.step(self.optimizer_D)

        self.set_requires_grad(self.netD, False)
        self.optimizer_G.zero_grad(set_to_none=True)
        if self.optimizer_F is not None:
            self.optimizer_F.zero_grad(set_to_none=True)
        self.runtime.backward(self.compute_G_loss())
        self.runtime.step(self.optimizer_G, self.optimizer_F)
        self.runtime.update()
        if self.opt.G_ema_beta > 0:
            self.ema_steps += 1
            moving_average(self._unwrapped('G'), self._unwrapped('G_ema'),
                           warmed_up_decay(self.opt.G_ema_beta, self.ema_steps))

    # ---- checkpoints -------------------------------------------------------------------------
    def network_path(self, epoch, name, load_dir=None):
        """Testing a run that kept an EMA generator reads G from <epoch>_net_G_ema.pth."""
        if name == 'G' and not self.isTrain and self.opt.G_ema_beta > 0:
            name = 'G_ema'
        return super().network_path(epoch, name, load_dir)

    def training_state(self, *args, **kwargs):
        return dict(super().training_state(*args, **kwargs), ema_steps=self.ema_steps)

    def load_training_state(self, state):
        counters = super().load_training_state(state)
        self.ema_steps = int(state.get('ema_steps', 0))
        return counters
