"""Reference values of the official compression L_semantic (Hneg_SRC `Compression/`: SRC_Loss and PatchDCELoss of
`models/contra_loss.py`, the header net SuperMLP of `models/modules/super_modules.py`) on seeded teacher and
student features, for tests/test_compression_losses.py.

    python studies/compression/make_fixture.py --official /path/to/Hneg_SRC [--out tests/data/...]

`--official` is a checkout of jcy132/Hneg_SRC (or a folder holding its `Compression/models/contra_loss.py`,
`Compression/models/modules/super_modules.py` and `Compression/models/modules/sync_batchnorm/`); the official
modules are imported from there, nothing of them is shipped here. Each setting runs what
`ResnetSupernet.calc_SRC_loss` runs per mapping layer: one SuperMLP per layer embeds 256 random positions of
the student's map (its first c input columns) and the same positions of the teacher's map (all columns); SRC
and DCE of the two embeddings, summed over the four layers. Stored: the inputs, the F weights, the patch
positions, per-layer and summed values, and the gradients of SRC + DCE with respect to the student's
features, the student's embeddings and the F weights.
"""
import argparse
import importlib
import os
import sys
import types
from types import SimpleNamespace

import numpy as np
import torch

LAYERS = 4
SIZE = 16  # 16 x 16 maps: the official n_patch 256 positions are all of them
STUDENT_MAX, STUDENT_C, TEACHER_C = 24, 8, 16  # 4 * ngf: super-net 6 (its config's c2 = 2), teacher 4
SETTINGS = {  # name -> (no_hard, epoch, max_epoch)
    'hard': (False, 100, 400),
    'nohard': (True, 1, 400),
}


def load_official(root):
    """The official `models.contra_loss` and `models.modules.super_modules` without running the official
    `models/__init__.py` (it imports the whole training code)."""
    base = os.path.join(root, 'Compression', 'models')
    for rel in ('contra_loss.py', os.path.join('modules', 'super_modules.py'),
                os.path.join('modules', 'sync_batchnorm', '__init__.py')):
        if not os.path.isfile(os.path.join(base, rel)):
            raise SystemExit(f'error: {os.path.join(base, rel)} not found; --official must be a checkout of '
                             f'jcy132/Hneg_SRC')
    if 'models' in sys.modules:
        raise SystemExit('error: a package named models is already imported; run this file as a script')
    for name, path in (('models', base), ('models.modules', os.path.join(base, 'modules'))):
        package = types.ModuleType(name)
        package.__path__ = [path]
        sys.modules[name] = package
    return importlib.import_module('models.contra_loss'), importlib.import_module('models.modules.super_modules')


def inputs(seed=0):
    """Teacher features (L, 1, TEACHER_C, H, W); student features (L, 1, STUDENT_C, H, W) related to them by a
    random linear map plus noise; F weights of SuperMLP(STUDENT_MAX -> TEACHER_C) per layer."""
    g = torch.Generator().manual_seed(seed)
    teacher = torch.randn(LAYERS, 1, TEACHER_C, SIZE, SIZE, generator=g)
    mix = torch.randn(LAYERS, STUDENT_C, TEACHER_C, generator=g) / TEACHER_C ** 0.5
    student = torch.einsum('lst,lbthw->lbshw', mix, teacher)
    student = student + 0.5 * torch.randn(student.shape, generator=g)
    weights = {
        'w0': torch.randn(LAYERS, TEACHER_C, STUDENT_MAX, generator=g) / STUDENT_MAX ** 0.5,
        'b0': 0.1 * torch.randn(LAYERS, TEACHER_C, generator=g),
        'w2': torch.randn(LAYERS, TEACHER_C, TEACHER_C, generator=g) / TEACHER_C ** 0.5,
        'b2': 0.1 * torch.randn(LAYERS, TEACHER_C, generator=g),
    }
    return teacher, student, weights


def official_setting(contra, supers, teacher, student, weights, no_hard, epoch, max_epoch, seed):
    """calc_SRC_loss on the given features: per layer SRC + DCE, summed; gradients of the sum."""
    opt = SimpleNamespace(lambda_SRC=10.0, lambda_dce=0.1, gamma_start=50.0, gamma_min=10.0, nce_T=0.07,
                          n_patch=SIZE * SIZE, no_hard=no_hard)
    criterion_src, criterion_dce = contra.SRC_Loss(opt), contra.PatchDCELoss(opt)
    torch.manual_seed(seed)  # SuperMLP draws its positions with torch.randperm on the global generator
    student = student.clone().requires_grad_(True)
    nets, embeddings, ids, src, dce = [], [], [], [], []
    for layer in range(LAYERS):
        net = supers.SuperMLP(in_channels=STUDENT_MAX, out_channels=TEACHER_C)
        with torch.no_grad():
            for key in ('w0', 'b0', 'w2', 'b2'):
                target = net.mlp[int(key[1])].weight if key[0] == 'w' else net.mlp[int(key[1])].bias
                target.copy_(weights[key][layer])
        q, patch_id = net(student[layer])
        k, _ = net(teacher[layer], patch_id=patch_id)
        q.retain_grad()
        value, weight = criterion_src(q, k, epoch=epoch, max_epoch=max_epoch)
        if no_hard:
            weight = None
        dce.append(criterion_dce(q, k, weight=weight).mean())
        src.append(value)
        nets.append(net)
        embeddings.append((q, k))
        ids.append(patch_id)
    total = sum(src) + sum(dce)
    total.backward()
    out = {
        'src_layers': torch.stack(src).detach(), 'dce_layers': torch.stack(dce).detach(),
        'src': sum(src).detach(), 'dce': sum(dce).detach(),
        'grad_student': student.grad, 'patch_ids': torch.stack(ids),
        'q': torch.stack([q.detach() for q, _ in embeddings]), 'k': torch.stack([k.detach() for _, k in embeddings]),
        'grad_q': torch.stack([q.grad for q, _ in embeddings]),
    }
    for key in ('w0', 'b0', 'w2', 'b2'):
        out['grad_' + key] = torch.stack([(n.mlp[int(key[1])].weight if key[0] == 'w' else n.mlp[int(key[1])].bias)
                                          .grad for n in nets])
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--official', required=True, help='checkout of jcy132/Hneg_SRC')
    p.add_argument('--out', default=os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..', 'tests',
                                                 'data', 'official_compression_losses.npz'))
    args = p.parse_args(argv)
    contra, supers = load_official(args.official)
    teacher, student, weights = inputs()
    arrays = {'teacher': teacher, 'student': student, **weights}
    for index, (name, (no_hard, epoch, max_epoch)) in enumerate(SETTINGS.items()):
        arrays[f'{name}/params'] = torch.tensor([float(no_hard), epoch, max_epoch, 10.0, 0.1, 50.0, 10.0, 0.07])
        result = official_setting(contra, supers, teacher, student, weights, no_hard, epoch, max_epoch, seed=index)
        if index:  # the embeddings of one setting show the sliced F; the gradients of every setting are kept
            result = {key: value for key, value in result.items() if key not in ('q', 'k')}
        arrays.update({f'{name}/{key}': value for key, value in result.items()})
    np.savez_compressed(args.out, **{k: v.numpy() for k, v in arrays.items()})
    print(f'wrote {args.out}: settings {", ".join(SETTINGS)}; params = [no_hard, epoch, max_epoch, lambda_SRC, '
          f'lambda_dce, gamma_start, gamma_min, nce_T]')
    return 0


if __name__ == '__main__':
    sys.exit(main())
