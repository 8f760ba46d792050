"""Paired metrics against a known ground-truth translation (the synthetic dataset's testA_gt).

    python studies/paired_metrics.py --pred results/run/test_latest/images/fake_B \
        --gt datasets/synthetic/testA_gt [--mask datasets/synthetic/testA_mask] [--out metrics.json]

PSNR (dB), SSIM (Gaussian window 11, σ 1.5, on luminance), L1 in [0, 1] grey levels; with masks also
the L1 inside the objects (was the texture translated?) and outside them (was the background kept?).
Files are paired by name; a missing or extra file is an error, never a silently partial score.
"""
import argparse
import json
import os
import sys

import numpy as np
from PIL import Image
from scipy.ndimage import gaussian_filter
from tqdm import tqdm

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from data.image_folder import is_image_file  # noqa: E402
from util import util  # noqa: E402


def list_images(folder):
    if not os.path.isdir(folder):
        raise FileNotFoundError(f'folder not found: {folder}')
    names = sorted(f for f in os.listdir(folder) if is_image_file(f))
    if not names:
        raise ValueError(f'no images in {folder}')
    return {os.path.splitext(n)[0]: os.path.join(folder, n) for n in names}


def pair_by_name(pred_dir, gt_dir):
    pred, gt = list_images(pred_dir), list_images(gt_dir)
    missing, extra = sorted(set(pred) - set(gt)), sorted(set(gt) - set(pred))
    if missing or extra:
        raise ValueError(f'{pred_dir} and {gt_dir} do not hold the same image names: '
                         f'only in predictions {missing[:5]}, only in ground truth {extra[:5]}')
    return [(k, pred[k], gt[k]) for k in sorted(pred)]


def load(path, size=None):
    img = Image.open(path).convert('RGB')
    if size is not None and img.size != size:
        raise ValueError(f'{path} is {img.size[0]}x{img.size[1]}, expected {size[0]}x{size[1]}')
    return np.asarray(img, dtype=np.float64) / 255.0


def psnr(a, b):
    mse = np.mean((a - b) ** 2)
    return float('inf') if mse == 0 else float(10 * np.log10(1.0 / mse))


def ssim(a, b, sigma=1.5):
    """Wang et al. 2004 SSIM on luminance with a Gaussian window (truncated at 11 px)."""
    ya = a @ np.array([0.299, 0.587, 0.114])
    yb = b @ np.array([0.299, 0.587, 0.114])
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    f = lambda x: gaussian_filter(x, sigma, truncate=3.5)  # noqa: E731
    mu_a, mu_b = f(ya), f(yb)
    var_a = f(ya * ya) - mu_a ** 2
    var_b = f(yb * yb) - mu_b ** 2
    cov = f(ya * yb) - mu_a * mu_b
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a ** 2 + mu_b ** 2 + c1) * (var_a + var_b + c2))
    return float(s.mean())


def paired_metrics(pred_dir, gt_dir, mask_dir=None, progress=True):
    pairs = pair_by_name(pred_dir, gt_dir)
    masks = list_images(mask_dir) if mask_dir else None
    rows = []
    for name, p, g in tqdm(pairs, desc='paired metrics', unit='img', disable=not progress):
        gt = load(g)
        pred = load(p, size=(gt.shape[1], gt.shape[0]))
        err = np.abs(pred - gt).mean(axis=2)
        row = {'name': name, 'psnr': psnr(pred, gt), 'ssim': ssim(pred, gt), 'l1': float(err.mean())}
        if masks is not None:
            if name not in masks:
                raise ValueError(f'no mask for {name} in {mask_dir}')
            m = load(masks[name], size=(gt.shape[1], gt.shape[0]))[..., 0] > 0.5
            row['l1_object'] = float(err[m].mean()) if m.any() else float('nan')
            row['l1_background'] = float(err[~m].mean()) if (~m).any() else float('nan')
        rows.append(row)
    keys = [k for k in rows[0] if k != 'name']
    summary = {k: float(np.nanmean([r[k] for r in rows])) for k in keys}
    return {'num_images': len(rows), 'mean': summary, 'per_image': rows,
            'pred_dir': os.path.abspath(pred_dir), 'gt_dir': os.path.abspath(gt_dir)}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--pred', required=True, help='folder of translated images (e.g. .../images/fake_B)')
    ap.add_argument('--gt', required=True, help='folder of ground-truth translations, same file names')
    ap.add_argument('--mask', default=None, help='optional folder of object masks, same file names')
    ap.add_argument('--out', default=None, help='write the JSON here (default: print only)')
    args = ap.parse_args(argv)
    try:
        result = paired_metrics(args.pred, args.gt, args.mask)
    except (FileNotFoundError, ValueError) as exc:
        print(f'error: {exc}', file=sys.stderr)
        return 2
    if args.out:
        util.atomic_write_json(args.out, result)
    print(json.dumps(result['mean'], indent=2))
    return 0


if __name__ == '__main__':
    sys.exit(main())
