"""pix2pix (Isola et al., CVPR 2017) as gan-compression trains its teachers (Table 3's map→satellite and
Cityscapes rows), with CUT's file layout, resumption and logs.

    L_D = ½·[hinge(D(A, B), real) + hinge(D(A, G(A)), fake)]
    L_G = λ_gan·(−D(A, G(A))) + λ_recon·|G(A) − B|₁

G is the ResNet-9 in gan-compression's layout (no anti-aliasing: children 9/12/15/18 are the layers step 1
distils), D the conditional PatchGAN on the channel concatenation (A, ·) with ndf 128. Defaults are
gan-compression's training options: hinge loss, λ_recon 100 (its map→satellite script sets 10), instance
norm, normal(0, 0.02) initialisation, Adam 2e-4 (0.5, 0.999), aligned data. Each iteration updates D first,
then G against the updated D, as gan-compression's Pix2PixModel does.
"""
import argparse

import torch
import torch.nn.functional as F

from models import losses
from models.base_model import BaseModel
from models.networks import define_D, generator_from_options
from util.errors import ConfigError

RECON_LOSSES = {'l1': F.l1_loss, 'l2': F.mse_loss, 'smooth_l1': F.smooth_l1_loss}


class Pix2PixModel(BaseModel):
    """Conditional GAN + reconstruction to the paired target (aligned data; --direction picks the input side)."""

    # test.py translates in the direction the run was trained in (the command line wins)
    architecture_keys = ('direction',)

    @staticmethod
    def modify_commandline_options(parser, is_train=True):
        p = parser
        # gan-compression's train options (options/train_options.py, models/pix2pix_model.py)
        p.set_defaults(dataset_mode='aligned', netG='resnet_9blocks', ngf=64, ndf=128, netD='n_layers', n_layers_D=3,
                       normG='instance', normD='instance', no_dropout=True, no_antialias=True, no_antialias_up=True,
                       init_type='normal', init_gain=0.02)
        if is_train:
            p.set_defaults(gan_mode='hinge', pool_size=0)
            p.add_argument('--lambda_recon', type=float, default=100.0,
                           help='weight of the reconstruction loss to the target (gan-compression: 100; its '
                                'map2sat script: 10)')
            p.add_argument('--lambda_L1', dest='lambda_recon', type=float, default=argparse.SUPPRESS,
                           help="alias of --lambda_recon (the name junyanz/pytorch-CycleGAN-and-pix2pix uses)")
            p.add_argument('--lambda_gan', type=float, default=1.0, help='weight of the GAN loss of G')
            p.add_argument('--recon_loss_type', type=str, default='l1', choices=sorted(RECON_LOSSES),
                           help='the reconstruction loss')
        return parser

    def __init__(self, opt, runtime=None):
        super().__init__(opt, runtime)
        self.visual_names = ['real_A', 'fake_B', 'real_B']
        self.netG = generator_from_options(opt).to(self.device)
        if not self.isTrain:
            self.model_names = ['G']
            return
        if opt.dataset_mode != 'aligned':
            raise ConfigError(f'--model pix2pix trains on pairs: --dataset_mode aligned, got --dataset_mode '
                             f'{opt.dataset_mode}')
        if opt.gan_mode not in losses.GAN_MODES:
            raise ConfigError(f'--gan_mode {opt.gan_mode!r}: valid {losses.GAN_MODES}')
        self.model_names = ['G', 'D']
        self.loss_names = ['G_gan', 'G_recon', 'D_real', 'D_fake']
        # conditional D: it sees the input beside the real or translated target
        self.netD = define_D(opt.input_nc + opt.output_nc, opt.ndf, opt.netD, n_layers_D=opt.n_layers_D,
                             norm=opt.normD, init_type=opt.init_type, init_gain=opt.init_gain,
                             no_antialias=opt.no_antialias, crop_size=opt.crop_size,
                             load_size=opt.load_size).to(self.device)
        self.recon_loss = RECON_LOSSES[opt.recon_loss_type]
        betas = (opt.beta1, opt.beta2)
        self.optimizer_G = self.runtime.adam(self.netG.parameters(), lr=opt.lr, betas=betas)
        self.optimizer_D = self.runtime.adam(self.netD.parameters(), lr=opt.lr, betas=betas)
        self.optimizers = [self.optimizer_G, self.optimizer_D]

    def set_input(self, input):
        super().set_input(input)
        if self.isTrain and self.real_B is None:
            raise ConfigError('--model pix2pix needs the target of every pair (--dataset_mode aligned)')

    def forward(self):
        with self.runtime.autocast():
            self.fake_B = self.netG(self.real_A).float()

    def pair(self, image):
        return torch.cat((self.real_A, image), 1)  # (B, input_nc + output_nc, H, W)

    def compute_D_loss(self):
        mode, l = self.opt.gan_mode, self.losses
        with self.runtime.autocast():
            pred_fake = self.netD(self.pair(self.fake_B.detach())).float()
            pred_real = self.netD(self.pair(self.real_B)).float()
        l['D_fake'] = losses.gan_loss(pred_fake, False, mode, for_discriminator=True).mean()
        l['D_real'] = losses.gan_loss(pred_real, True, mode, for_discriminator=True).mean()
        return (l['D_fake'] + l['D_real']) * 0.5

    def compute_G_loss(self):
        opt, l = self.opt, self.losses
        with self.runtime.autocast():  # D is frozen here: unwrapped, as DDP would wait for its gradients
            pred_fake = self._unwrapped('D')(self.pair(self.fake_B)).float()
        l['G_gan'] = losses.gan_loss(pred_fake, True, opt.gan_mode, for_discriminator=False).mean() * opt.lambda_gan
        l['G_recon'] = self.recon_loss(self.fake_B, self.real_B) * opt.lambda_recon
        return l['G_gan'] + l['G_recon']

    def optimize_parameters(self):
        """gan-compression's order: G(A); D's step; then G's step against the updated D."""
        self.forward()
        self.set_requires_grad(self._unwrapped('D'), True)
        self.optimizer_D.zero_grad(set_to_none=True)
        self.runtime.backward(self.compute_D_loss())
        self.runtime.step(self.optimizer_D)
        self.set_requires_grad(self._unwrapped('D'), False)
        self.optimizer_G.zero_grad(set_to_none=True)
        self.runtime.backward(self.compute_G_loss())
        self.runtime.step(self.optimizer_G)
        self.runtime.update()
