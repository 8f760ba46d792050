"""The paper's model (Jung, Kwon, Ye, CVPR 2022): CUT with PatchNCE replaced by
L_semantic = λ_SRC·L_SRC + λ_hDCE·L_hDCE.

Flags and defaults are those of the official Hneg_SRC code, so its recipes run unchanged. Two flags
of ours reach every row of the ablation (Table 4): `--patch_loss {dce,infonce}` and, for the hard
negatives, `--hneg_weighting {official,paper}`. InfoNCE + `--lambda_SRC 0` + `--no_Hneg` is CUT.
"""
import torch

from models import losses
from models.cut_model import CUTModel, add_patch_contrastive_options
from util import util


class SRCHDCEModel(CUTModel):
    """G_GAN + ½(hDCE(X, G(X)) + hDCE(Y, G(Y))) + SRC(X, G(X)), each term averaged over nce_layers."""

    lambda_flag = 'lambda_HDCE'
    idt_flag = 'dce_idt'
    patch_loss_name = 'HDCE'

    @staticmethod
    def modify_commandline_options(parser, is_train=True):
        parser = add_patch_contrastive_options(parser)
        parser.add_argument('--lambda_HDCE', type=float, default=1.0, help='weight for HDCE loss: HDCE(G(X), X)')
        parser.add_argument('--lambda_SRC', type=float, default=1.0, help='weight for SRC loss: SRC(G(X), X)')
        parser.add_argument('--dce_idt', type=util.str2bool, nargs='?', const=True, default=False,
                            help='also apply hDCE to the identity mapping: hDCE(G(Y), Y)')
        parser.add_argument('--use_curriculum', action='store_true',
                            help='anneal the hardness gamma from HDCE_gamma to HDCE_gamma_min over all epochs')
        parser.add_argument('--HDCE_gamma', type=float, default=1, help='hardness temperature of the weights')
        parser.add_argument('--HDCE_gamma_min', type=float, default=1, help='gamma at the end of the curriculum')
        parser.add_argument('--step_gamma', action='store_true',
                            help='set gamma to 1 after --step_gamma_epoch (with --use_curriculum)')
        parser.add_argument('--step_gamma_epoch', type=int, default=200)
        parser.add_argument('--no_Hneg', action='store_true', help='plain DCE: no hard-negative weights')
        parser.add_argument('--patch_loss', type=str, default='dce', choices=['dce', 'infonce'],
                            help='contrastive loss on patches: decoupled (Eq. 6) or InfoNCE (CUT) (Table 4)')
        parser.add_argument('--hneg_weighting', type=str, default='official', choices=['official', 'paper'],
                            help='official: weights scale the negative similarities; paper: importance '
                                 'weights on exp(negative logit) (Eq. 5)')
        return parser

    @staticmethod
    def preset_defaults(opt, is_train):
        # The official code accepts --CUT_mode but ignores it; FastCUT's presets apply here when asked.
        if opt.CUT_mode.lower() == 'fastcut':
            return dict(dce_idt=False, flip_equivariance=True, n_epochs=150, n_epochs_decay=50)
        return {}

    def __init__(self, opt):
        self.patch_loss_name = 'HDCE' if opt.patch_loss == 'dce' else 'NCE'
        super().__init__(opt)
        for flag in ('HDCE_gamma', 'HDCE_gamma_min'):
            if getattr(opt, flag) <= 0:
                raise ValueError(f'--{flag} must be positive, got {getattr(opt, flag)}')
        self.use_src = opt.lambda_SRC > 0
        if self.use_src:
            self.loss_names.append('SRC')
        if self.lambda_patch > 0:
            # the coupled cross-entropy the official code logs under "HDCE": a monitor, not the objective
            self.loss_names.append('monitor_coupled_CE')
        self.total_epochs = getattr(opt, 'n_epochs', 0) + getattr(opt, 'n_epochs_decay', 0)
        self.epoch = getattr(opt, 'epoch_count', 1)

    def uses_patch_features(self):
        return self.lambda_patch > 0 or self.use_src

    def hardness(self):
        """γ of the hard-negative weights at the current epoch (official curriculum)."""
        return losses.hdce_gamma(self.epoch, self.opt.HDCE_gamma, self.opt.HDCE_gamma_min,
                                 max(self.total_epochs, 1), use_curriculum=self.opt.use_curriculum,
                                 step_gamma=self.opt.step_gamma, step_gamma_epoch=self.opt.step_gamma_epoch)

    def compute_patch_losses(self):
        zero = torch.zeros((), device=self.device)
        main, idt = self.patch_loss_name, self.patch_loss_name + '_Y'
        for name in (main, idt, 'SRC', 'monitor_coupled_CE'):
            setattr(self, 'loss_' + name, zero)
        if self.lambda_patch <= 0 and not self.use_src:
            return zero
        q, k, ids = self.sample_pairs(self.real_A, self.fake_B, which=0)
        gamma = self.hardness()
        self.loss_SRC = self.semantic_relation(q, k) if self.use_src else zero
        if self.lambda_patch <= 0:
            return self.loss_SRC
        loss_x, self.loss_monitor_coupled_CE = self.hard_dce(q, k, gamma)
        setattr(self, 'loss_' + main, loss_x)
        if not self.use_idt:
            return loss_x + self.loss_SRC
        # the identity branch reuses the locations sampled for X, as the official code does
        q_y, k_y, _ = self.sample_pairs(self.real_B, self.idt_B, which=1, sample_ids=ids)
        loss_y, _ = self.hard_dce(q_y, k_y, gamma)
        setattr(self, 'loss_' + idt, loss_y)
        return (loss_x + loss_y) * 0.5 + self.loss_SRC

    def semantic_relation(self, q, k):
        """Eq. 3: λ_SRC · Σ_k JSD(P_k‖Q_k), averaged over layers."""
        total = sum(losses.src_loss(f_q, f_k) for f_q, f_k in zip(q, k))
        return total * self.opt.lambda_SRC / len(q)

    def hard_dce(self, q, k, gamma):
        """Eq. 4–6: λ_hDCE · mean over patches, averaged over layers; plus the coupled-CE monitor.

        The monitor is what the official code logs as "HDCE": InfoNCE with the official weights.
        """
        paper = self.opt.hneg_weighting == 'paper'
        total, monitor = 0.0, 0.0
        for f_q, f_k in zip(q, k):
            w_official = w = None
            if not self.opt.no_Hneg:
                w_official = losses.relation_weights(f_k, gamma)
                w = losses.relation_weights(f_k, gamma, normalize='mean') if paper else w_official
            if self.opt.patch_loss == 'dce':
                per_patch = losses.dce_loss(f_q, f_k, tau=self.opt.nce_T, weight=w,
                                            weight_mode='paper' if paper else 'official')
            else:
                per_patch = losses.info_nce_loss(f_q, f_k, tau=self.opt.nce_T, weight=w)
            total = total + per_patch.mean() * self.lambda_patch
            # a detached monitor: the official code builds its graph anyway (kept by the reference step)
            with torch.set_grad_enabled(self.reference_step and torch.is_grad_enabled()):
                monitor = monitor + losses.info_nce_loss(f_q, f_k, tau=self.opt.nce_T, weight=w_official).mean()
        return total / len(q), monitor.detach() * self.lambda_patch / len(q)
