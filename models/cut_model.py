"""CUT and FastCUT (Park et al., ECCV 2020): GAN loss + multilayer PatchNCE.

The patch-contrastive machinery here (feature extraction, patch sampling, the training step) is shared
with the paper's SRC + hDCE model, which only replaces the patch loss.
"""
import numpy as np
import torch

from models import losses
from models.base_model import BaseModel
from models.networks import SAMPLERS, define_D, define_F, define_G
from util import util


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
    parser.set_defaults(pool_size=0)
    return parser


def parse_layers(spec):
    try:
        layers = [int(t) for t in str(spec).split(',') if t.strip()]
    except ValueError:
        raise ValueError(f'--nce_layers expects comma-separated integers, got {spec!r}') from None
    if not layers:
        raise ValueError('--nce_layers is empty')
    return layers


class CUTModel(BaseModel):
    """Eq. (CUT): L = λ_GAN·GAN(G(X)) + λ_NCE·½(PatchNCE(X, G(X)) + PatchNCE(Y, G(Y)))."""

    # the option names of this model's contrastive weight and identity switch (SRC-hDCE renames them)
    lambda_flag = 'lambda_NCE'
    idt_flag = 'nce_idt'
    patch_loss_name = 'NCE'

    @staticmethod
    def modify_commandline_options(parser, is_train=True):
        parser = add_patch_contrastive_options(parser)
        parser.add_argument('--lambda_NCE', type=float, default=1.0, help='weight for NCE loss: NCE(G(X), X)')
        parser.add_argument('--nce_idt', type=util.str2bool, nargs='?', const=True, default=False,
                            help='use NCE loss for identity mapping: NCE(G(Y), Y))')
        return parser

    @staticmethod
    def preset_defaults(opt, is_train):
        mode = opt.CUT_mode.lower()
        if mode == 'cut':
            return dict(nce_idt=True, lambda_NCE=1.0)
        return dict(nce_idt=False, lambda_NCE=10.0, flip_equivariance=True, n_epochs=150, n_epochs_decay=50)

    def __init__(self, opt):
        BaseModel.__init__(self, opt)
        self.lambda_patch = getattr(opt, self.lambda_flag)
        self.use_idt = bool(getattr(opt, self.idt_flag)) and self.isTrain
        self.nce_layers = parse_layers(opt.nce_layers)
        # Without batch statistics (batch norm) or random dropout masks, an image's features do not depend
        # on the other images of its pass: the main forward pass then yields the source features of the
        # patch losses, and one encoder pass over the whole translated batch serves both branches.
        self.batch_independent = opt.normG != 'batch' and opt.no_dropout
        self.reuse_source_features = self.batch_independent
        # the same step computed the official way (every feature recomputed image by image, the detached
        # k side with autograd graphs): what scripts/benchmark.py --reference and the tests compare to
        self.reference_step = False
        self.flipped_for_equivariance = False

        self.loss_names = ['G_GAN', 'D_real', 'D_fake', 'G', self.patch_loss_name]
        self.visual_names = ['real_A', 'fake_B', 'real_B']
        if self.use_idt:
            self.loss_names.append(self.patch_loss_name + '_Y')
            self.visual_names.append('idt_B')
        self.model_names = ['G', 'F', 'D'] if self.isTrain else ['G']

        self.netG = define_G(opt.input_nc, opt.output_nc, opt.ngf, opt.netG, norm=opt.normG,
                             use_dropout=not opt.no_dropout, init_type=opt.init_type, init_gain=opt.init_gain,
                             no_antialias=opt.no_antialias, no_antialias_up=opt.no_antialias_up,
                             crop_size=opt.crop_size, load_size=opt.load_size,
                             stylegan2_G_num_downsampling=opt.stylegan2_G_num_downsampling).to(self.device)
        n_layers = self.netG.num_feature_layers
        bad = [i for i in self.nce_layers if not 0 <= i < n_layers]
        if bad:
            raise ValueError(f'--nce_layers {opt.nce_layers}: indices {bad} are outside the generator '
                             f'--netG {opt.netG} (valid: 0..{n_layers - 1})')
        if opt.nce_T <= 0:
            raise ValueError(f'--nce_T must be positive, got {opt.nce_T}')
        if opt.num_patches < 0:
            raise ValueError(f'--num_patches must be >= 0, got {opt.num_patches}')
        self.netF = define_F(opt.netF, netF_nc=opt.netF_nc, init_type=opt.init_type,
                             init_gain=opt.init_gain).to(self.device)

        if self.isTrain:
            self.netD = define_D(opt.output_nc, opt.ndf, opt.netD, n_layers_D=opt.n_layers_D, norm=opt.normD,
                                 init_type=opt.init_type, init_gain=opt.init_gain,
                                 no_antialias=opt.no_antialias, crop_size=opt.crop_size,
                                 load_size=opt.load_size).to(self.device)
            self.optimizer_G = torch.optim.Adam(self.netG.parameters(), lr=opt.lr, betas=(opt.beta1, opt.beta2))
            self.optimizer_D = torch.optim.Adam(self.netD.parameters(), lr=opt.lr, betas=(opt.beta1, opt.beta2))
            self.optimizers = [self.optimizer_G, self.optimizer_D]
            self.optimizer_F = None

    # ---- set-up ------------------------------------------------------------------------------
    def data_dependent_initialize(self, data):
        """Build F's MLPs from the channel counts of G's features on a first batch, then its optimizer.

        CUT creates them lazily inside a forward/backward pass; here it is one explicit step.
        """
        if not self.isTrain:
            return
        self.set_input(data)
        with torch.no_grad():
            feats = self.netG(self.real_A[:1], self.nce_layers, encode_only=True)
        if hasattr(self.netF, 'build') and not self.netF.built:
            self.netF.build([f.shape[1] for f in feats])
            self.netF.to(self.device)
        params = list(self.netF.parameters())
        if params and self.uses_patch_features():
            self.optimizer_F = torch.optim.Adam(params, lr=self.opt.lr, betas=(self.opt.beta1, self.opt.beta2))
            self.optimizers.append(self.optimizer_F)

    # ---- forward -----------------------------------------------------------------------------
    def forward(self):
        self.real = torch.cat((self.real_A, self.real_B), dim=0) if self.use_idt else self.real_A
        self.flipped_for_equivariance = bool(self.opt.flip_equivariance and self.isTrain
                                             and np.random.random() < 0.5)
        if self.flipped_for_equivariance:
            self.real = torch.flip(self.real, [3])
        self.real_feats = self.fake_feats = None
        with self.autocast():
            if self.reusing_source_features():
                # one pass gives the translation and the source features the patch losses need
                fake, feats = self.netG(self.real, self.nce_layers)
                self.real_feats = [f.detach() for f in feats]
            else:
                fake = self.netG(self.real)
        self.fake = fake.float()
        n = self.real_A.size(0)
        self.fake_B = self.fake[:n]
        if self.use_idt:
            self.idt_B = self.fake[n:]

    def uses_patch_features(self):
        return self.lambda_patch > 0

    def reusing_source_features(self):
        return (self.isTrain and self.reuse_source_features and not self.reference_step
                and not self.flipped_for_equivariance and self.uses_patch_features() and torch.is_grad_enabled())

    def source_features(self, src, which):
        """Encoder features of an input image (no gradient: the patch losses detach this side).

        `which` selects the rows of the batched main forward pass (0 = real_A, 1 = real_B) when they
        can be reused; otherwise they are recomputed as CUT does.
        """
        if self.real_feats is not None:
            n = self.real_A.size(0)
            return [f[which * n:(which + 1) * n] for f in self.real_feats]
        with self.autocast(), torch.set_grad_enabled(self.reference_step):
            return self.netG(src, self.nce_layers, encode_only=True)

    def target_features(self, tgt, which):
        """Encoder features of a translation, with gradient, flipped back under flip-equivariance.

        When both branches are used and images are independent, one encoder pass over the translated
        batch serves both (`which` 0 = fake_B rows, 1 = idt_B rows); otherwise `tgt` is encoded alone.
        """
        if self.batch_independent and not self.reference_step and self.use_idt and self.lambda_patch > 0:
            if self.fake_feats is None:
                with self.autocast():
                    self.fake_feats = self.netG(self.fake, self.nce_layers, encode_only=True)
            n = self.real_A.size(0)
            feats = [f[which * n:(which + 1) * n] for f in self.fake_feats]
        else:
            with self.autocast():
                feats = self.netG(tgt, self.nce_layers, encode_only=True)
        if self.flipped_for_equivariance:
            feats = [torch.flip(f, [3]) for f in feats]
        return feats

    def sample_pairs(self, src, tgt, which, sample_ids=None):
        """Pooled, L2-normalised patch features of G(src)-side `tgt` (q) and `src` (k), shared locations.

        Returns (q_list, k_list, ids), one (B, N, C) tensor per layer ((1, B*N, C) when negatives are
        drawn from the whole minibatch).
        """
        feat_q = self.target_features(tgt, which)
        feat_k = self.source_features(src, which)
        # F (MLPs and L2 normalisation) belongs to the losses and runs in float32 under every --amp: its
        # embeddings start with norms ~1e-6 (two gain-0.02 layers), below float16's normal range, and the
        # normalisation's backward divides by the squared norm, which float16 flushes to 0 (inf gradients:
        # every fp16 step skipped, the grad scaler backed off to 0). F is tiny next to G and D; it
        # casts the sampled patches, not the whole maps.
        with torch.autocast(self.device.type, enabled=False):
            q_pool, ids = self.netF(feat_q, self.opt.num_patches, sample_ids)
            with torch.set_grad_enabled(self.reference_step):
                k_pool, _ = self.netF(feat_k, self.opt.num_patches, ids)
        b = tgt.size(0)
        shape = (1, -1) if self.opt.nce_includes_all_negatives_from_minibatch else (b, -1)
        q = [p.reshape(*shape, p.shape[-1]) for p in q_pool]
        k = [p.reshape(*shape, p.shape[-1]) for p in k_pool]
        return q, k, ids

    # ---- losses ------------------------------------------------------------------------------
    def compute_D_loss(self):
        with self.autocast():
            pred_fake = self.netD(self.fake_B.detach()).float()
            self.pred_real = self.netD(self.real_B).float()
        self.loss_D_fake = losses.gan_loss(pred_fake, False, self.opt.gan_mode).mean()
        self.loss_D_real = losses.gan_loss(self.pred_real, True, self.opt.gan_mode).mean()
        self.loss_D = (self.loss_D_fake + self.loss_D_real) * 0.5
        return self.loss_D

    def compute_G_loss(self):
        if self.opt.lambda_GAN > 0.0:
            with self.autocast():  # D is frozen: no DDP, whose reducer would wait for its gradients
                pred_fake = self._unwrapped('D')(self.fake_B).float()
            self.loss_G_GAN = losses.gan_loss(pred_fake, True, self.opt.gan_mode).mean() * self.opt.lambda_GAN
        else:
            self.loss_G_GAN = torch.zeros((), device=self.device)
        self.loss_G = self.loss_G_GAN + self.compute_patch_losses()
        # the backward pass frees the saved activations these maps share storage with only if nothing
        # else holds them
        self.real_feats = self.fake_feats = None
        return self.loss_G

    def compute_patch_losses(self):
        """CUT: PatchNCE per layer, averaged over layers; X and Y branches sample their own locations."""
        zero = torch.zeros((), device=self.device)
        self.loss_NCE = self.loss_NCE_Y = zero
        if self.lambda_patch <= 0:
            return zero
        self.loss_NCE = self.patch_nce(self.real_A, self.fake_B, which=0)
        if not self.use_idt:
            return self.loss_NCE
        self.loss_NCE_Y = self.patch_nce(self.real_B, self.idt_B, which=1)
        return (self.loss_NCE + self.loss_NCE_Y) * 0.5

    def patch_nce(self, src, tgt, which):
        q, k, _ = self.sample_pairs(src, tgt, which)
        total = 0.0
        for f_q, f_k in zip(q, k):
            total = total + losses.info_nce_loss(f_q, f_k, tau=self.opt.nce_T).mean() * self.lambda_patch
        return total / len(self.nce_layers)

    # ---- training step -----------------------------------------------------------------------
    def optimize_parameters(self):
        self.forward()

        self.set_requires_grad(self.netD, True)
        self.optimizer_D.zero_grad(set_to_none=True)
        self.loss_D = self.compute_D_loss()
        self.backward(self.loss_D)
        self.step(self.optimizer_D)

        self.set_requires_grad(self.netD, False)
        self.optimizer_G.zero_grad(set_to_none=True)
        if self.optimizer_F is not None:
            self.optimizer_F.zero_grad(set_to_none=True)
        self.loss_G = self.compute_G_loss()
        self.backward(self.loss_G)
        self.step(self.optimizer_G, self.optimizer_F)
        self.grad_scaler.update()
