"""Testing flags (CUT's names and defaults); load_size defaults to crop_size to avoid cropping."""
import models

from .base_options import BaseOptions, read_run_options

# Figure 9's features (evaluation/similarity.py). projected: through F's patch MLPs (what the losses see);
# encoder: G's raw features; auto: projected when the checkpoint has F's weights
FEATURE_CHOICES = ('auto', 'projected', 'encoder')


class TestOptions(BaseOptions):

    def initialize(self, parser):
        parser = BaseOptions.initialize(self, parser)
        parser.add_argument('--results_dir', type=str, default='./results/', help='saves results here.')
        parser.add_argument('--phase', type=str, default='test', help='train, val, test, etc')
        parser.add_argument('--eval', action='store_true', help='use eval mode during test time.')
        parser.add_argument('--num_test', type=int, default=50, help='how many test images to run')
        # the paper's Figure 9, rendered at the end of testing
        parser.add_argument('--similarity_maps', action='store_true',
                            help='render the Figure 9 similarity maps of the first --sim_num images')
        parser.add_argument('--sim_query', nargs=2, type=float, default=[0.5, 0.5], metavar=('X', 'Y'),
                            help='query point as fractions of the image width and height')
        parser.add_argument('--sim_num', type=int, default=10, help='how many test images get similarity maps')
        parser.add_argument('--sim_features', default='auto', choices=FEATURE_CHOICES,
                            help='projected by F (auto: when <epoch>_net_F.pth exists) or raw encoder features')
        parser.set_defaults(load_size=parser.get_default('crop_size'))
        self.isTrain = False
        return parser

    def run_defaults(self, opt):
        """The architecture the run was trained with (its train_opt.json): --netG, --ngf, ... need not be repeated,
        nor the flags a model names in its `architecture_keys` (e.g. stargan_v2's --num_domains)."""
        saved = read_run_options(opt.checkpoints_dir, opt.name)
        model_cls = models.find_model_using_name(saved.get('model', opt.model))
        extra = tuple(getattr(model_cls, 'architecture_keys', ()))
        return dict(saved, **read_run_options(opt.checkpoints_dir, opt.name, keys=extra)) if extra else saved

    def finalize(self, opt):
        # CUT's test-time settings: one image at a time, in order, no augmentation
        opt.num_threads, opt.batch_size, opt.serial_batches, opt.no_flip = 0, 1, True, True
