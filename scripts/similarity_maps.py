#!/usr/bin/env python
"""The paper's Figure 9 for one image: per nce_layer, the cosine similarity of a query patch to every
location, on the input (A) and on its translation (B), side by side in one PNG.

    python scripts/similarity_maps.py --checkpoints_dir checkpoints --name h2z_src --epoch latest \\
        --image datasets/horse2zebra/testA/n02381460_120.jpg --query 0.5 0.45 --out fig9.png

--query X Y is the point as fractions of the image width and height. The networks are built from the
run's train_opt.json; any test.py flag given here wins (an official checkpoint has no train_opt.json:
pass e.g. --model src_hdce --netG resnet_9blocks). With --features auto the features are projected by
F (what the patch losses see) when <epoch>_net_F.pth exists, else G's raw encoder features.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from data.base_dataset import get_transform  # noqa: E402
from data.image_folder import load_image  # noqa: E402
from models import create_model  # noqa: E402
from options.base_options import read_run_options  # noqa: E402
from options.test_options import TestOptions  # noqa: E402
from evaluation import similarity
from util import util  # noqa: E402

def parse(argv):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                 allow_abbrev=False,
                                 epilog='Other flags go to test.py\'s options (--name, --epoch, --gpu_ids, ...).')
    ap.add_argument('--image', required=True, help='the input image (domain A of the run\'s direction)')
    ap.add_argument('--query', nargs=2, type=float, default=[0.5, 0.5], metavar=('X', 'Y'),
                    help='query point as fractions of the width and height')
    ap.add_argument('--out', required=True, help='the PNG to write')
    ap.add_argument('--features', default='auto', choices=similarity.FEATURE_CHOICES)
    ap.add_argument('--cell', type=int, default=160, help='width of one panel in pixels')
    args, rest = ap.parse_known_args(argv)
    run = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    run.add_argument('--checkpoints_dir', default='./checkpoints')
    run.add_argument('--name', default='experiment_name')
    where, _ = run.parse_known_args(rest)
    # the image at the run's training size; the architecture comes from its train_opt.json (test.py's rule)
    size = read_run_options(where.checkpoints_dir, where.name, keys=('crop_size',)).get('crop_size')
    size_flags = ['--load_size', str(size), '--crop_size', str(size)] if size else []
    return args, TestOptions(size_flags + rest).parse()


def load_input(path, opt):
    """The image as test.py feeds it: (1, 3, H, W) in [-1, 1], resized by the run's preprocessing."""
    transform = get_transform(util.copyconf(opt, no_flip=True), grayscale=opt.input_nc == 1)
    return transform(load_image(path)).unsqueeze(0)


def main(argv=None):
    args, opt = parse(argv)
    model = create_model(opt)
    if not hasattr(model, 'nce_layers'):
        raise SystemExit(f'error: --model {opt.model} has no patch features; similarity maps need one of '
                         'cut, src_hdce, sin_src_hdce')
    model.setup(opt)
    netG = model.netG.eval()
    image = load_input(args.image, opt).to(model.device)
    f_path = os.path.join(opt.checkpoints_dir, opt.name, f'{opt.epoch}_net_F.pth')
    netF = similarity.choose_sampler(args.features, f_path, kind=opt.netF, nc=opt.netF_nc,
                                     in_channels=similarity.encoder_channels(netG, image, model.nce_layers),
                                     device=model.device)
    result = similarity.similarity_maps(netG, image, model.nce_layers, args.query, netF=netF)
    figure = similarity.render_figure(result, image, args.query, cell=args.cell)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    figure.save(args.out)
    used = 'F-projected' if netF is not None else 'raw encoder'
    agreement = ', '.join(f'layer {k}: {v:.3f}' for k, v in zip(model.nce_layers, result['agreement']))
    print(f'wrote {args.out} ({used} features); A/B map correlation {agreement}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
