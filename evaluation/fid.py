"""FID and KID on pytorch-fid's Inception features: the numbers `python -m pytorch_fid FAKE REAL` gives.

The network, file listing, transforms, batching and Fréchet distance are pytorch-fid's own
(`pytorch_fid.inception.InceptionV3`, `fid_score.get_activations`, `calculate_frechet_distance`);
only the weights come from a local file instead of a download. KID (Bińkowski et al. 2018) is the
unbiased MMD² with the cubic polynomial kernel, averaged over random subsets of the same features.

    python -m evaluation.fid results/h2z/test_latest datasets/horse2zebra/testB --json fid.json
    python -m evaluation.fid results/h2z/test_latest real_stat/horse2zebra_B.npz --no-kid   # mu/sigma file

REAL may be a `.npz` of pre-computed statistics (keys `mu`, `sigma`: gan-compression's `real_stat/` files,
or what --save-real-stats writes); FID alone then, as KID needs the real images' features.
"""
import argparse
import contextlib
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from pytorch_fid import __version__ as PYTORCH_FID_VERSION
from pytorch_fid import fid_score
from pytorch_fid import inception as fid_inception

from evaluation.common import (EvaluationError, check_whole_test_set, cli, default_device, emit, images_dir,
                               run_metadata)
from util.util import safe_torch_load

FID_WEIGHTS_URL = fid_inception.FID_WEIGHTS_URL
FID_WEIGHTS_FILE = os.path.basename(FID_WEIGHTS_URL)
FEATURE_DIMS = tuple(sorted(fid_inception.InceptionV3.BLOCK_INDEX_BY_DIM))


def default_weights_path():
    """Where torch.hub (and so pytorch-fid) caches the FID weights: $TORCH_HOME/hub/checkpoints/<file>."""
    return Path(torch.hub.get_dir()) / 'checkpoints' / FID_WEIGHTS_FILE


def load_fid_weights(path=None, *, download=False):
    """The FID Inception state dict from `path` (default: the torch hub cache); downloads only if asked."""
    path = Path(path) if path else default_weights_path()
    if not path.is_file():
        if not download:
            raise EvaluationError(
                f'FID Inception weights not found at {path}. Put {FID_WEIGHTS_FILE} ({FID_WEIGHTS_URL}) '
                f'at {default_weights_path()}, pass --fid-weights PATH, or pass --download-fid-weights.')
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.hub.download_url_to_file(FID_WEIGHTS_URL, str(path))
    try:
        return safe_torch_load(str(path)), path
    except RuntimeError as exc:
        raise EvaluationError(f'{path} could not be read as the FID Inception weights: {exc}') from exc


@contextlib.contextmanager
def _weights_instead_of_download(state_dict):
    """Make pytorch-fid's weight loader return `state_dict` instead of fetching FID_WEIGHTS_URL."""
    original = fid_inception.load_state_dict_from_url
    fid_inception.load_state_dict_from_url = lambda *args, **kwargs: state_dict
    try:
        yield
    finally:
        fid_inception.load_state_dict_from_url = original


def build_inception(state_dict, *, dims=2048, device='cpu', source='the given state dict'):
    """pytorch-fid's InceptionV3 returning `dims` features, with the FID weights in `state_dict`."""
    if dims not in FEATURE_DIMS:
        raise EvaluationError(f'--dims {dims} is not one of {", ".join(map(str, FEATURE_DIMS))}')
    try:
        with _weights_instead_of_download(state_dict):
            model = fid_inception.InceptionV3([fid_inception.InceptionV3.BLOCK_INDEX_BY_DIM[dims]])
    except RuntimeError as exc:
        raise EvaluationError(f'{source} is not an FID Inception state dict ({FID_WEIGHTS_FILE}): {exc}') from exc
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False  # FID in float32: TF32 off
    return model.to(device).eval()


def fid_image_files(folder):
    """The images `python -m pytorch_fid` reads from `folder`, in its order.

    pytorch-fid matches lower-case extensions only and stacks each batch, so an image it would
    skip (upper-case extension) or a size differing from the others is an error here, not a
    silently different score.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise EvaluationError(f'{folder} does not exist or is not a folder')
    files = sorted(f for ext in fid_score.IMAGE_EXTENSIONS for f in folder.glob(f'*.{ext}'))
    listed = set(files)
    skipped = sorted(p.name for p in folder.iterdir()
                     if p.suffix[1:].lower() in fid_score.IMAGE_EXTENSIONS and p not in listed)
    if skipped:
        raise EvaluationError(f'{folder}: pytorch-fid would skip {len(skipped)} image(s) with upper-case '
                              f'extensions, e.g. {", ".join(skipped[:3])}; rename them to lower case')
    if len(files) < 2:
        raise EvaluationError(f'{folder} holds {len(files)} image(s); FID needs at least 2 '
                              f'({", ".join(sorted(fid_score.IMAGE_EXTENSIONS))})')
    return files


def common_image_size(files, folder):
    """The (width, height) shared by all `files`; an error naming the odd ones out otherwise."""
    by_size = {}
    for f in files:
        with Image.open(f) as im:
            by_size.setdefault(im.size, []).append(f.name)
    if len(by_size) > 1:
        usual = max(by_size, key=lambda s: len(by_size[s]))
        odd = [f'{name} ({w}x{h})' for (w, h), names in by_size.items() if (w, h) != usual for name in names]
        raise EvaluationError(f'{folder}: images must share one size ({usual[0]}x{usual[1]} for most), '
                              f'but {len(odd)} differ: {", ".join(odd[:5])}')
    return next(iter(by_size))


@dataclass
class InceptionFeatures:
    """pytorch-fid's activations of every image of a folder, from one Inception instance."""
    model: torch.nn.Module
    dims: int = 2048
    batch_size: int = 50
    device: str = 'cpu'
    num_workers: int = 0

    def __call__(self, folder):
        """(N, dims) float64 features of `folder`, plus its file list and common image size."""
        files = fid_image_files(folder)
        size = common_image_size(files, folder)
        print(f'Inception features of {folder} ({len(files)} images)', file=sys.stderr)
        features = fid_score.get_activations(files, self.model, batch_size=min(self.batch_size, len(files)),
                                             dims=self.dims, device=self.device, num_workers=self.num_workers)
        return features, files, size


def feature_statistics(features):
    """Mean (D,) and covariance (D, D) of (N, D) features; FID needs N >= 2."""
    if len(features) < 2:
        raise EvaluationError(f'FID needs at least 2 images, got {len(features)}')
    return np.mean(features, axis=0), np.cov(features, rowvar=False)


def trace_sqrt_product(sigma_a, sigma_b):
    """Tr((ΣaΣb)^½) of two covariances (symmetric PSD): the square roots of the eigenvalues of
    Σa^½ Σb Σa^½, which are ΣaΣb's. Two symmetric eigendecompositions: 2048-d in 3.2 s on one core,
    where scipy's sqrtm of the (non-symmetric) product takes ~11 s; equal to it where it is real."""
    w, v = np.linalg.eigh(sigma_a)
    root_a = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    product = root_a @ sigma_b @ root_a
    eig = np.linalg.eigvalsh((product + product.T) * 0.5)
    return float(np.sum(np.sqrt(np.clip(eig, 0, None))))


def frechet_distance(stats_a, stats_b, *, pytorch_fid=True):
    """FID ‖μa − μb‖² + Tr(Σa) + Tr(Σb) − 2 Tr((ΣaΣb)^½) of two (μ, Σ) pairs (`feature_statistics`).

    pytorch_fid=True computes it as pytorch-fid does (scipy's sqrtm, an offset when the product is singular,
    an error on a sizable imaginary part of the root): the number `python -m pytorch_fid` prints. False takes
    the root's trace from `trace_sqrt_product`, negative round-off eigenvalues as 0, with no offset or check:
    StarGAN v2's formula, which evaluation/multimodal.py's protocol uses.
    """
    (mu_a, sigma_a), (mu_b, sigma_b) = stats_a, stats_b
    if pytorch_fid:
        value = float(fid_score.calculate_frechet_distance(mu_a, sigma_a, mu_b, sigma_b))
    else:
        value = float(np.sum((mu_a - mu_b) ** 2) + np.trace(sigma_a) + np.trace(sigma_b)
                      - 2 * trace_sqrt_product(sigma_a, sigma_b))
    if not np.isfinite(value):
        raise EvaluationError(f'FID came out {value}: the feature statistics hold non-finite values')
    return value


def is_stats_file(path):
    return Path(path).suffix == '.npz'


def load_real_stats(path, dims):
    """(μ, Σ) of a statistics file (keys mu, sigma), checked against the feature size."""
    if not os.path.isfile(path):
        raise EvaluationError(f'real statistics {path} not found')
    with np.load(path) as data:
        if 'mu' not in data or 'sigma' not in data:
            raise EvaluationError(f'{path} holds {sorted(data.files)}; real statistics need mu and sigma')
        mu, sigma = data['mu'], data['sigma']
    if mu.shape != (dims,) or sigma.shape != (dims, dims):
        raise EvaluationError(f'{path}: mu {mu.shape} and sigma {sigma.shape} are not statistics of {dims}-d '
                              f'features (--dims {dims})')
    for name, array in (('mu', mu), ('sigma', sigma)):
        bad = ~np.isfinite(array)
        if bad.any():
            raise EvaluationError(f'{path}: {name} holds {int(bad.sum())} non-finite value(s) (first at index '
                                  f'{tuple(int(i) for i in np.argwhere(bad)[0])}); recompute the statistics '
                                  '(python -m evaluation.fid ... --save-real-stats)')
    return mu, sigma


def save_real_stats(path, features):
    """Write μ and Σ of `features` (N, dims) as a statistics file that `load_real_stats` reads."""
    mu, sigma = feature_statistics(features)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, mu=mu, sigma=sigma, count=len(features))


def polynomial_kernel(x, y):
    """k(x, y) = (xᵀy / d + 1)³ for rows of x (m, d) and y (n, d): an (m, n) matrix."""
    return (x @ y.T / x.shape[1] + 1.0) ** 3


def mmd2_unbiased(x, y):
    """Unbiased MMD² between samples x (m, d) and y (m, d) under the polynomial kernel."""
    m = x.shape[0]
    k_xx, k_yy, k_xy = polynomial_kernel(x, x), polynomial_kernel(y, y), polynomial_kernel(x, y)
    within = (k_xx.sum() - np.trace(k_xx) + k_yy.sum() - np.trace(k_yy)) / (m * (m - 1))
    return within - 2.0 * k_xy.mean()


def kid_subsets(n_a, n_b, *, subset_size=1000, num_subsets=100, seed=0):
    """Index pairs of the random subsets KID averages over (size min(subset_size, n_a, n_b))."""
    m = min(subset_size, n_a, n_b)
    if m < 2:
        raise EvaluationError(f'KID needs at least 2 images per folder, got {n_a} and {n_b}')
    rng = np.random.default_rng(seed)
    return [(rng.choice(n_a, m, replace=False), rng.choice(n_b, m, replace=False)) for _ in range(num_subsets)]


def kernel_inception_distance(features_a, features_b, *, subset_size=1000, num_subsets=100, seed=0):
    """KID mean and standard deviation over subsets, from the same features as the FID."""
    values = np.array([mmd2_unbiased(features_a[ia], features_b[ib])
                       for ia, ib in kid_subsets(len(features_a), len(features_b), subset_size=subset_size,
                                                 num_subsets=num_subsets, seed=seed)])
    return float(values.mean()), float(values.std())


def fid_kid(fake_dir, real_dir, features, *, real=None, kid=True, kid_subset_size=1000, kid_subsets_n=100,
            kid_seed=0, expect_count=None):
    """FID (and KID) of the images in `fake_dir` against `real_dir`, as a JSON-ready dict.

    `real` may hold the `features(real_dir)` result computed earlier (a sweep reads the target
    set once). `real_dir` may be a statistics file (is_stats_file: FID only). `expect_count` makes a fake
    folder of any other size an error: a folder written with too small a --num_test would otherwise give a
    partial score.
    """
    if is_stats_file(real_dir):
        if kid:
            raise EvaluationError(f'KID needs the real images, not the statistics {real_dir}: pass --no-kid')
        return fid_against_stats(fake_dir, real_dir, features, expect_count)
    count = len(fid_image_files(fake_dir))
    if real is None:
        fid_image_files(real_dir)
    if expect_count is not None and count != expect_count:
        raise EvaluationError(f'{fake_dir} holds {count} images, expected {expect_count} '
                              '(one per source test image); rerun test.py with --num_test covering the test set')
    fake_feats, fake_files, fake_size = features(fake_dir)
    real_feats, real_files, real_size = real if real is not None else features(real_dir)
    result = {
        'kind': 'fid',
        'fake_dir': str(fake_dir), 'real_dir': str(real_dir),
        'num_fake': len(fake_files), 'num_real': len(real_files),
        'fake_size': list(fake_size), 'real_size': list(real_size),
        'dims': features.dims, 'batch_size': features.batch_size,
        'protocol': f'pytorch-fid {PYTORCH_FID_VERSION} InceptionV3 (FID weights), bilinear resize to 299x299',
        'metrics': {'fid': frechet_distance(feature_statistics(fake_feats), feature_statistics(real_feats))},
    }
    if kid:
        mean, std = kernel_inception_distance(fake_feats, real_feats, subset_size=kid_subset_size,
                                              num_subsets=kid_subsets_n, seed=kid_seed)
        result['metrics'].update(kid_mean=mean, kid_std=std)
        result.update(kid_subset_size=min(kid_subset_size, len(fake_files), len(real_files)),
                      kid_subsets=kid_subsets_n, kid_seed=kid_seed)
    return result


def fid_against_stats(fake_dir, stats_path, features, expect_count=None):
    """FID of the images in `fake_dir` against a statistics file, as a JSON-ready dict."""
    stats = load_real_stats(stats_path, features.dims)
    fake_feats, fake_files, fake_size = features(fake_dir)
    if expect_count is not None and len(fake_files) != expect_count:
        raise EvaluationError(f'{fake_dir} holds {len(fake_files)} images, expected {expect_count}')
    return {
        'kind': 'fid',
        'fake_dir': str(fake_dir), 'real_dir': None, 'real_stats': str(stats_path),
        'num_fake': len(fake_files), 'num_real': None,
        'fake_size': list(fake_size), 'real_size': None,
        'dims': features.dims, 'batch_size': features.batch_size,
        'protocol': f'pytorch-fid {PYTORCH_FID_VERSION} InceptionV3 (FID weights), bilinear resize to 299x299, '
                    f'against pre-computed real statistics',
        'metrics': {'fid': frechet_distance(feature_statistics(fake_feats), stats)},
    }


def add_feature_args(parser):
    """Flags for the Inception features, shared with the sweep command."""
    parser.add_argument('--dims', type=int, default=2048, choices=FEATURE_DIMS,
                        help='Inception feature size (2048 = pool3, the paper protocol)')
    parser.add_argument('--batch-size', type=int, default=50, help="pytorch-fid's default batch size")
    parser.add_argument('--device', default=None,
                        help='cuda, cuda:0 or cpu (default: the first GPU of $GPU_IDS, else cuda:0 when '
                             'available)')
    parser.add_argument('--num-workers', type=int, default=min(8, os.cpu_count() or 1),
                        help='data loading processes (the score does not depend on it)')
    parser.add_argument('--fid-weights', default=None,
                        help=f'{FID_WEIGHTS_FILE} (default: $TORCH_HOME/hub/checkpoints/{FID_WEIGHTS_FILE})')
    parser.add_argument('--download-fid-weights', action='store_true',
                        help=f'download {FID_WEIGHTS_URL} into the torch hub cache when it is missing')
    parser.add_argument('--no-kid', action='store_true', help='skip KID')
    parser.add_argument('--kid-subset-size', type=int, default=1000)
    parser.add_argument('--kid-subsets', type=int, default=100)
    parser.add_argument('--kid-seed', type=int, default=0)


def features_from_args(args):
    """An InceptionFeatures built from the flags of add_feature_args, and the weights path used."""
    state_dict, path = load_fid_weights(args.fid_weights, download=args.download_fid_weights)
    device = args.device or default_device()
    model = build_inception(state_dict, dims=args.dims, device=device, source=str(path))
    return InceptionFeatures(model, dims=args.dims, batch_size=args.batch_size, device=device,
                             num_workers=args.num_workers), path


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('fake', help='translated images: a fake_B folder or a test.py result folder')
    parser.add_argument('real', help='target-domain test images, e.g. datasets/horse2zebra/testB, or their '
                                     'statistics (.npz with mu and sigma; FID only)')
    add_feature_args(parser)
    parser.add_argument('--save-real-stats', default=None,
                        help="also write mu and sigma of REAL's features to this .npz (e.g. all zebra images, "
                             "train + test, as gan-compression's horse2zebra_B.npz)")
    parser.add_argument('--expect-count', type=int, default=None,
                        help='fail unless the fake folder holds exactly this many images')
    parser.add_argument('--allow-partial', action='store_true',
                        help="score a test.py folder that translated only part of its test set (its results.json "
                             "says how many of how many); refused by default")
    parser.add_argument('--json', default=None,
                        help='write the result here (default: metrics_fid.json in a test.py result folder)')
    parser.add_argument('--run', default=None, help='run name for tables (default: read from the path)')
    parser.add_argument('--method', default=None, help='row label for tables (default: the run name)')
    parser.add_argument('--dataset', default=None, help='dataset label (default: the folder above REAL)')
    parser.add_argument('--epoch-choice', default=None, choices=('best', 'last', 'fixed'))
    args = parser.parse_args(argv)

    fake_dir = images_dir(args.fake, 'fake_B')
    check_whole_test_set(fake_dir, args.allow_partial)
    features, weights_path = features_from_args(args)
    result = fid_kid(fake_dir, Path(args.real), features, kid=not args.no_kid,
                     kid_subset_size=args.kid_subset_size, kid_subsets_n=args.kid_subsets,
                     kid_seed=args.kid_seed, expect_count=args.expect_count)
    if args.save_real_stats:
        if is_stats_file(args.real):
            raise EvaluationError(f'--save-real-stats needs a folder of real images, got {args.real}')
        save_real_stats(args.save_real_stats, features(Path(args.real))[0])
    result.update(run_metadata(fake_dir, run=args.run, method=args.method,
                               dataset=args.dataset or Path(args.real).resolve().parent.name,
                               epoch_choice=args.epoch_choice))
    result['weights'] = str(weights_path)
    if result['num_real'] is not None and result['num_fake'] != result['num_real']:
        print(f'note: {result["num_fake"]} translated vs {result["num_real"]} target images '
              '(the protocol compares with the whole target test set)', file=sys.stderr)
    json_path = args.json
    if json_path is None and fake_dir != Path(args.fake):
        json_path = Path(args.fake) / 'metrics_fid.json'
    emit(result, json_path)


if __name__ == '__main__':
    sys.exit(cli(main))
