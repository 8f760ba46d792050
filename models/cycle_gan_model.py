"""CycleGAN (Zhu et al., ICCV 2017), the classic two-generator baseline, with CUT's file layout."""
import itertools

import torch
import torch.nn.functional as F

from models import losses
from models.base_model import BaseModel
from models.networks import define_D, generator_from_options
from util.image_pool import ImagePool
from util.errors import ConfigError


class CycleGANModel(BaseModel):
    """L = GAN(G_A) + GAN(G_B) + λ_A·|G_B(G_A(A)) − A| + λ_B·|G_A(G_B(B)) − B| + identity terms."""

    @staticmethod
    def modify_commandline_options(parser, is_train=True):
        parser.set_defaults(no_dropout=True)
        if is_train:
            parser.add_argument('--lambda_A', type=float, default=10.0, help='weight for cycle loss (A -> B -> A)')
            parser.add_argument('--lambda_B', type=float, default=10.0, help='weight for cycle loss (B -> A -> B)')
            parser.add_argument('--lambda_identity', type=float, default=0.5,
                                help='weight of the identity loss, relative to the cycle loss weights')
        return parser

    def __init__(self, opt, runtime=None):
        super().__init__(opt, runtime)
        self.loss_names = ['D_A', 'G_A', 'cycle_A', 'idt_A', 'D_B', 'G_B', 'cycle_B', 'idt_B']
        visual_a = ['real_A', 'fake_B', 'rec_A']
        visual_b = ['real_B', 'fake_A', 'rec_B']
        if self.isTrain and opt.lambda_identity > 0.0:
            visual_a.append('idt_B')
            visual_b.append('idt_A')
        self.visual_names = visual_a + visual_b
        self.model_names = ['G_A', 'G_B', 'D_A', 'D_B'] if self.isTrain else ['G_A', 'G_B']

        def generator(in_nc, out_nc):
            return generator_from_options(opt, input_nc=in_nc, output_nc=out_nc).to(self.device)

        self.netG_A = generator(opt.input_nc, opt.output_nc)
        self.netG_B = generator(opt.output_nc, opt.input_nc)
        if self.isTrain:
            def discriminator(in_nc):
                return define_D(in_nc, opt.ndf, opt.netD, n_layers_D=opt.n_layers_D, norm=opt.normD,
                                init_type=opt.init_type, init_gain=opt.init_gain, no_antialias=opt.no_antialias,
                                crop_size=opt.crop_size, load_size=opt.load_size).to(self.device)

            self.netD_A = discriminator(opt.output_nc)
            self.netD_B = discriminator(opt.input_nc)
            if opt.lambda_identity > 0.0 and opt.input_nc != opt.output_nc:
                raise ConfigError('--lambda_identity > 0 needs --input_nc == --output_nc')
            self.fake_A_pool = ImagePool(opt.pool_size)
            self.fake_B_pool = ImagePool(opt.pool_size)
            betas = (opt.beta1, opt.beta2)
            self.optimizer_G = self.runtime.adam(itertools.chain(self.netG_A.parameters(), self.netG_B.parameters()),
                                               lr=opt.lr, betas=betas)
            self.optimizer_D = self.runtime.adam(itertools.chain(self.netD_A.parameters(), self.netD_B.parameters()),
                                               lr=opt.lr, betas=betas)
            self.optimizers = [self.optimizer_G, self.optimizer_D]

    def forward(self):
        with self.runtime.autocast():
            self.fake_B = self.netG_A(self.real_A).float()
            self.rec_A = self.netG_B(self.fake_B).float()
            if self.real_B is not None:
                self.fake_A = self.netG_B(self.real_B).float()
                self.rec_B = self.netG_A(self.fake_A).float()

    def backward_D_basic(self, netD, real, fake):
        with self.runtime.autocast():
            pred_real = netD(real).float()
            pred_fake = netD(fake.detach()).float()
        loss_real = losses.gan_loss(pred_real, True, self.opt.gan_mode).mean()
        loss_fake = losses.gan_loss(pred_fake, False, self.opt.gan_mode).mean()
        loss = (loss_real + loss_fake) * 0.5
        self.runtime.backward(loss)
        return loss

    def optimize_parameters(self):
        opt = self.opt
        self.forward()
        self.set_requires_grad([self.netD_A, self.netD_B], False)
        self.optimizer_G.zero_grad(set_to_none=True)
        lambda_idt, lambda_A, lambda_B = opt.lambda_identity, opt.lambda_A, opt.lambda_B
        l = self.losses
        if lambda_idt > 0:
            with self.runtime.autocast():
                self.idt_A = self.netG_A(self.real_B).float()
                self.idt_B = self.netG_B(self.real_A).float()
            l['idt_A'] = F.l1_loss(self.idt_A, self.real_B) * lambda_B * lambda_idt
            l['idt_B'] = F.l1_loss(self.idt_B, self.real_A) * lambda_A * lambda_idt
        else:
            l['idt_A'] = l['idt_B'] = torch.zeros((), device=self.device)
        with self.runtime.autocast():  # the discriminators are frozen: no DDP, which would wait for their gradients
            pred_A = self._unwrapped('D_A')(self.fake_B).float()
            pred_B = self._unwrapped('D_B')(self.fake_A).float()
        l['G_A'] = losses.gan_loss(pred_A, True, opt.gan_mode).mean()
        l['G_B'] = losses.gan_loss(pred_B, True, opt.gan_mode).mean()
        l['cycle_A'] = F.l1_loss(self.rec_A, self.real_A) * lambda_A
        l['cycle_B'] = F.l1_loss(self.rec_B, self.real_B) * lambda_B
        l['G'] = l['G_A'] + l['G_B'] + l['cycle_A'] + l['cycle_B'] + l['idt_A'] + l['idt_B']
        self.runtime.backward(l['G'])
        self.runtime.step(self.optimizer_G)

        self.set_requires_grad([self.netD_A, self.netD_B], True)
        self.optimizer_D.zero_grad(set_to_none=True)
        l['D_A'] = self.backward_D_basic(self.netD_A, self.real_B, self.fake_B_pool.query(self.fake_B))
        l['D_B'] = self.backward_D_basic(self.netD_B, self.real_A, self.fake_A_pool.query(self.fake_A))
        self.runtime.step(self.optimizer_D)
        self.runtime.update()
