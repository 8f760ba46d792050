"""Pre-flight check of the scripts (scripts/common.sh): load every evaluation network's weights before any
training, so that a missing file, an HTML page saved under a weights file's name or the wrong network's
weights stop the run in seconds instead of after days of training.

    python scripts/check_weights.py --fid [PATH] --drn22 drn_d_22_cityscapes.pth --drn105 drn-d-105_ms_cityscapes.pth
    python scripts/check_weights.py --lpips lpips_weights.ckpt --alexnet alexnet.pth --inception inception_v3.pth

Each file is loaded the way its metric loads it (and the network built with it); every problem is printed as one
`error: <variable or flag>: ...` line, and the exit status is 2 when there is any.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def check_fid(path):
    from evaluation.fid import build_inception, load_fid_weights
    state, found = load_fid_weights(path or None)
    build_inception(state, source=str(found))


def check_drn(arch):
    def check(path):
        from evaluation.drn import DRNSeg, load_drn_weights
        load_drn_weights(DRNSeg(arch=arch), path)
    return check


def check_multimodal(lpips, alexnet, inception):
    from evaluation import multimodal
    args = argparse.Namespace(random_weights=False, lpips_weights=lpips,
                              alexnet_weights=alexnet or str(multimodal.default_hub_path(multimodal.ALEXNET_FILE)),
                              inception_weights=inception or str(multimodal.default_hub_path(multimodal.INCEPTION_FILE)))
    multimodal.build_metric_nets(args, 'cpu')


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--fid', nargs='?', const='', default=None,
                        help='the FID Inception weights (no PATH: the torch hub cache); variable FID_WEIGHTS')
    parser.add_argument('--drn22', help='drn_d_22_cityscapes.pth (Table 1/4 Cityscapes scores); DRN_WEIGHTS')
    parser.add_argument('--drn105', help='drn-d-105_ms_cityscapes.pth (Table 3 Cityscapes mIoU); DRN105_WEIGHTS')
    parser.add_argument('--multimodal', action='store_true', help='check the StarGAN v2 metric networks')
    parser.add_argument('--lpips', help='lpips_weights.ckpt; LPIPS_WEIGHTS')
    parser.add_argument('--alexnet', help='alexnet-owt-7be5be79.pth (default: the torch hub cache); ALEXNET_WEIGHTS')
    parser.add_argument('--inception', help='inception_v3_google-0cc3c7bd.pth (default: the hub cache); '
                                            'INCEPTION_WEIGHTS')
    args = parser.parse_args(argv)
    checks = []
    if args.fid is not None:
        checks.append(('FID_WEIGHTS', check_fid, (args.fid,)))
    if args.drn22 is not None:
        checks.append(('DRN_WEIGHTS', check_drn('drn_d_22'), (args.drn22,)))
    if args.drn105 is not None:
        checks.append(('DRN105_WEIGHTS', check_drn('drn_d_105'), (args.drn105,)))
    if args.multimodal:
        checks.append(('LPIPS_WEIGHTS / ALEXNET_WEIGHTS / INCEPTION_WEIGHTS', check_multimodal,
                       (args.lpips, args.alexnet, args.inception)))
    from evaluation.common import EvaluationError
    failed = 0
    for variable, check, values in checks:
        try:
            check(*values)
        except (EvaluationError, RuntimeError, OSError) as exc:  # every problem of every file, one line each
            message = ' '.join(str(exc).split())
            print(f'error: {variable}: {message}', file=sys.stderr)
            failed += 1
    return 2 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
