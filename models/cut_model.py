"""CUT and FastCUT (Park et al., ECCV 2020): GAN loss + multilayer PatchNCE (objectives.PatchNCE)."""
from models import objectives
from models.patch_contrastive import PatchContrastiveModel, add_patch_contrastive_options
from util import util


class CUTModel(PatchContrastiveModel):
    """L = λ_GAN·GAN(G(X)) + λ_NCE·½(PatchNCE(X, G(X)) + PatchNCE(Y, G(Y))) (the second term with --nce_idt)."""

    @staticmethod
    def modify_commandline_options(parser, is_train=True):
        parser = add_patch_contrastive_options(parser)
        parser.add_argument('--lambda_NCE', type=float, default=1.0, help='weight for NCE loss: NCE(G(X), X)')
        parser.add_argument('--nce_idt', type=util.str2bool, nargs='?', const=True, default=False,
                            help='use NCE loss for identity mapping: NCE(G(Y), Y))')
        return parser

    @staticmethod
    def preset_defaults(opt, is_train):
        if opt.CUT_mode.lower() == 'cut':
            return dict(nce_idt=True, lambda_NCE=1.0)
        return dict(nce_idt=False, lambda_NCE=10.0, flip_equivariance=True, n_epochs=150, n_epochs_decay=50)

    @staticmethod
    def build_objective(opt):
        return objectives.PatchNCE(lambda_nce=opt.lambda_NCE, tau=opt.nce_T, identity=bool(opt.nce_idt))
