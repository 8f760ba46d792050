"""Reference values of the official multi-modal L_semantic (Hneg_SRC `Multimodal/core/contra_loss.py`) on
random patch embeddings, for tests/test_stargan_v2.py's parity test.

    python studies/make_multimodal_fixture.py --official /path/to/Hneg_SRC [--out tests/data/...]

The official modules are imported from the given checkout (not shipped here); the output holds the inputs,
the settings, the official SRC and DCE values per setting and their gradients with respect to the query.
"""
import argparse
import importlib.util
import os
import sys
from types import SimpleNamespace

import torch

SETTINGS = [  # (use_hard, use_curriculum, step, lambda_src, lambda_dce)
    (True, True, 250, 0.1, 1.0),
    (True, False, 0, 0.1, 0.1),
    (False, True, 0, 0.0, 1.0),
]
BATCH, PATCHES, CHANNELS, TOTAL_ITERS = 2, 16, 8, 1000


def load_official(root):
    path = os.path.join(root, 'Multimodal', 'core', 'contra_loss.py')
    if not os.path.isfile(path):
        raise SystemExit(f'error: {path} not found; --official must be a checkout of jcy132/Hneg_SRC')
    spec = importlib.util.spec_from_file_location('official_contra_loss', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def official_terms(module, q, k, use_hard, use_curriculum, step, lambda_src, lambda_dce):
    """The official SRC and DCE of one layer, as solver_hSRC.compute_g_loss calls them, and d(sum)/dq."""
    args = SimpleNamespace(batch_size=BATCH, n_patch=PATCHES, use_curriculum=use_curriculum, gamma_start=50.0,
                           gamma_end=1.0, total_iters=TOTAL_ITERS, use_hard=use_hard, lambda_src=lambda_src,
                           lambda_dce=lambda_dce, lambda_nce=0.0)
    q = q.clone().requires_grad_(True)
    src, weight = module.SRC_Loss(args)(q, k, iters=step)
    dce = module.PatchDCELoss(args)(q, k, weight if use_hard else None).mean()
    grad, = torch.autograd.grad(src + dce, q)
    return float(src.detach()), float(dce.detach()), grad


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--official', required=True, help='checkout of jcy132/Hneg_SRC')
    p.add_argument('--out', default=os.path.join(os.path.dirname(__file__), '..', 'tests', 'data',
                                                 'official_multimodal_semantic.pt'))
    args = p.parse_args(argv)
    module = load_official(args.official)
    g = torch.Generator().manual_seed(0)
    q = torch.nn.functional.normalize(torch.randn(BATCH * PATCHES, CHANNELS, generator=g), dim=1)
    k = torch.nn.functional.normalize(q + 0.5 * torch.randn(BATCH * PATCHES, CHANNELS, generator=g), dim=1)
    results = []
    for setting in SETTINGS:
        src, dce, grad = official_terms(module, q, k, *setting)
        results.append({'setting': setting, 'src': src, 'dce': dce, 'grad_q': grad})
    torch.save({'q': q, 'k': k, 'batch': BATCH, 'total_iters': TOTAL_ITERS, 'results': results}, args.out)
    print(f'wrote {args.out}: {len(results)} settings')
    return 0


if __name__ == '__main__':
    sys.exit(main())
