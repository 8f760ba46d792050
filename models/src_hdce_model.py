"""The paper's model (Jung, Kwon, Ye, CVPR 2022): CUT with PatchNCE replaced by
L_semantic = λ_SRC·L_SRC + λ_hDCE·L_hDCE (objectives.SemanticRelation).

Flags and defaults are those of the official Hneg_SRC code, so its recipes run unchanged. Two flags
of ours reach every row of the ablation (Table 4): `--patch_loss {dce,infonce}` and, for the hard
negatives, `--hneg_weighting {official,paper}`. InfoNCE + `--lambda_SRC 0` + `--no_Hneg` is CUT.
"""
from models import objectives
from models.patch_contrastive import PatchContrastiveModel, add_patch_contrastive_options
from util import util


def add_semantic_relation_options(parser, curriculum):
    """The flags of L_semantic (objectives.SemanticRelation), shared with the multi-modal model; `curriculum`
    says what --use_curriculum anneals over."""
    parser.add_argument('--lambda_HDCE', type=float, default=1.0, help='weight for HDCE loss: HDCE(G(X), X)')
    parser.add_argument('--lambda_SRC', type=float, default=1.0, help='weight for SRC loss: SRC(G(X), X)')
    parser.add_argument('--use_curriculum', action='store_true',
                        help=f'anneal the hardness gamma from HDCE_gamma to HDCE_gamma_min {curriculum}')
    parser.add_argument('--HDCE_gamma', type=float, default=1, help='hardness temperature of the weights')
    parser.add_argument('--HDCE_gamma_min', type=float, default=1, help='gamma at the end of the curriculum')
    parser.add_argument('--no_Hneg', action='store_true', help='plain DCE: no hard-negative weights')
    parser.add_argument('--patch_loss', type=str, default='dce', choices=['dce', 'infonce'],
                        help='contrastive loss on patches: decoupled (Eq. 6) or InfoNCE (CUT) (Table 4); '
                             'logged as HDCE either way')
    parser.add_argument('--hneg_weighting', type=str, default='official', choices=['official', 'paper'],
                        help='official: weights scale the negative similarities; paper: importance '
                             'weights on exp(negative logit) (Eq. 5)')
    return parser


def semantic_relation(opt, hardness, **options):
    """objectives.SemanticRelation from the flags of add_semantic_relation_options (and --nce_T); `options` are
    the model's own settings (identity branch, SRC's batch reduction)."""
    return objectives.SemanticRelation(lambda_hdce=opt.lambda_HDCE, lambda_src=opt.lambda_SRC, tau=opt.nce_T,
                                       contrast=opt.patch_loss, hard_negatives=not opt.no_Hneg,
                                       weighting=opt.hneg_weighting, hardness=hardness, **options)


class SRCHDCEModel(PatchContrastiveModel):
    """G_GAN + ½(hDCE(X, G(X)) + hDCE(Y, G(Y))) + SRC(X, G(X)), each term averaged over nce_layers."""

    @staticmethod
    def modify_commandline_options(parser, is_train=True):
        parser = add_patch_contrastive_options(parser)
        parser = add_semantic_relation_options(parser, curriculum='over all epochs')
        parser.add_argument('--dce_idt', type=util.str2bool, nargs='?', const=True, default=False,
                            help='also apply hDCE to the identity mapping: hDCE(G(Y), Y)')
        parser.add_argument('--step_gamma', action='store_true',
                            help='set gamma to 1 after --step_gamma_epoch (with --use_curriculum)')
        parser.add_argument('--step_gamma_epoch', type=int, default=200)
        return parser

    @staticmethod
    def preset_defaults(opt, is_train):
        # The official code accepts --CUT_mode but ignores it; FastCUT's presets apply here when asked.
        if opt.CUT_mode.lower() == 'fastcut':
            return dict(dce_idt=False, flip_equivariance=True, n_epochs=150, n_epochs_decay=50)
        return {}

    @staticmethod
    def build_objective(opt):
        total_epochs = getattr(opt, 'n_epochs', 0) + getattr(opt, 'n_epochs_decay', 0)  # test.py has neither
        hardness = objectives.Curriculum(opt.HDCE_gamma, opt.HDCE_gamma_min, total_epochs,
                                         use_curriculum=opt.use_curriculum, step_gamma=opt.step_gamma,
                                         step_gamma_epoch=opt.step_gamma_epoch)
        return semantic_relation(opt, hardness, identity=bool(opt.dce_idt))
