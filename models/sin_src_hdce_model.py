"""Single-image translation (the paper's Monet recipe): SinCUT's presets and regularisers with L_semantic.

SinCUT's defaults (StyleGAN2 networks, random zoomed 64x64 crops of one image pair, batch 16, R1 and
identity losses) with SRC + hDCE as the patch objective. Negatives are the patches of all crops of the
minibatch, and so are the relations the hard-negative weights come from. (The official single-image
path samples one patch per crop but computes weights per crop, so every weight is 1 there.)
"""
from collections import OrderedDict

import torch.nn.functional as F

from models import losses
from models.src_hdce_model import SRCHDCEModel
from util.errors import ConfigError


class SinSRCHDCEModel(SRCHDCEModel):
    """SRC-hDCE + λ_R1·R1(D) + λ_idt·L1(G(Y), Y), on crops of a single image pair."""

    @staticmethod
    def modify_commandline_options(parser, is_train=True):
        parser = SRCHDCEModel.modify_commandline_options(parser, is_train)
        parser.add_argument('--lambda_R1', type=float, default=1.0, help='weight for the R1 gradient penalty')
        parser.add_argument('--lambda_identity', type=float, default=1.0,
                            help='the "identity preservation loss"')
        parser.set_defaults(nce_includes_all_negatives_from_minibatch=True, dataset_mode='singleimage',
                            netG='stylegan2', stylegan2_G_num_downsampling=1, netD='stylegan2',
                            gan_mode='nonsaturating', num_patches=1, nce_layers='0,2,4', lambda_HDCE=4.0,
                            dce_idt=True, ngf=10, ndf=8, lr=0.002, beta1=0.0, beta2=0.99, load_size=1024,
                            crop_size=64, preprocess='zoom_and_patch')
        if is_train:
            parser.set_defaults(batch_size=16, save_epoch_freq=1, save_latest_freq=20000, n_epochs=8,
                                n_epochs_decay=8)
        else:
            parser.set_defaults(preprocess='none', batch_size=1, num_test=1)
        return parser

    def __init__(self, opt, runtime=None):
        super().__init__(opt, runtime)
        if self.isTrain:
            if not self.use_idt and opt.lambda_identity > 0:
                raise ConfigError('--lambda_identity > 0 needs the identity branch: keep --dce_idt on')
            self.loss_names += (['D_R1'] if opt.lambda_R1 > 0 else []) + (['idt'] if opt.lambda_identity > 0 else [])

    def compute_D_loss(self):
        if self.opt.lambda_R1 <= 0:
            return super().compute_D_loss()
        self.real_B.requires_grad_()
        loss_gan = super().compute_D_loss()
        r1 = losses.r1_penalty(self.pred_real, self.real_B, self.runtime.loss_scale())  # scaled under --amp fp16
        self.losses['D_R1'] = r1.mean() * (self.opt.lambda_R1 * 0.5)
        return loss_gan + self.losses['D_R1']

    def generator_regularisers(self):
        if self.opt.lambda_identity <= 0:
            return OrderedDict()
        return OrderedDict(idt=F.l1_loss(self.idt_B, self.real_B) * self.opt.lambda_identity)
