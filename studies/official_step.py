"""The test oracle of the training step: the step computed the way the official Hneg_SRC / CUT code computes
it, on the same model. CUT's plain layers (a runtime without training kernels or heap trimming), the
translation by its own pass, every encoder feature recomputed branch by branch, and autograd graphs built
for the input side too, which the objectives detach. scripts/benchmark.py --reference times it."""
import numpy as np
import torch

from models.runtime import Runtime


def official_runtime(opt, fast_kernels=False):
    """A runtime that runs the networks as the official code does (`fast_kernels`: with the training
    kernels, so that only the step's own computation differs from the optimised one)."""
    runtime = Runtime.from_options(opt, fast_kernels=fast_kernels)
    runtime.trim_heap = False
    return runtime


def official_sample(model):
    """The objective's `sample` as the official code computes it: G encodes the translation and then its
    input, each with a graph, and F embeds both with gradients."""
    def sample(branch, sample_ids=None):
        src, tgt = (model.real_A, model.fake_B) if branch == 'X' else (model.real_B, model.idt_B)
        with model.runtime.autocast():
            feat_q = model.netG(tgt, model.nce_layers, encode_only=True)
        if model.flipped_for_equivariance:
            feat_q = [torch.flip(f, [3]) for f in feat_q]
        with model.runtime.autocast():
            feat_k = model.netG(src, model.nce_layers, encode_only=True)
        with torch.autocast(model.device.type, enabled=False):
            q_pool, ids = model.netF(feat_q, model.opt.num_patches, sample_ids)
            k_pool, _ = model.netF(feat_k, model.opt.num_patches, ids)
        shape = (1, -1) if model.opt.nce_includes_all_negatives_from_minibatch else (tgt.size(0), -1)
        return [p.reshape(*shape, p.shape[-1]) for p in q_pool], [p.reshape(*shape, p.shape[-1]) for p in k_pool], ids
    return sample


def official_forward(model):
    """G(X) (and G(Y) with the identity branch) by one plain pass, flipped as the model's forward flips."""
    model.real = torch.cat((model.real_A, model.real_B), dim=0) if model.use_idt else model.real_A
    model.flipped_for_equivariance = bool(model.opt.flip_equivariance and np.random.random() < 0.5)
    if model.flipped_for_equivariance:
        model.real = torch.flip(model.real, [3])
    model.real_feats = model.fake_feats = None
    with model.runtime.autocast():
        model.fake = model.netG(model.real).float()
    n = model.real_A.size(0)
    model.fake_B = model.fake[:n]
    if model.use_idt:
        model.idt_B = model.fake[n:]


def official_step(model):
    """One training step of a patch-contrastive model, computed the official way."""
    runtime = model.runtime
    official_forward(model)
    model.set_requires_grad(model.netD, True)
    model.optimizer_D.zero_grad(set_to_none=True)
    runtime.backward(model.compute_D_loss())
    runtime.step(model.optimizer_D)
    model.set_requires_grad(model.netD, False)
    model.optimizer_G.zero_grad(set_to_none=True)
    if model.optimizer_F is not None:
        model.optimizer_F.zero_grad(set_to_none=True)
    runtime.backward(model.compute_G_loss(sample=official_sample(model)))
    runtime.step(model.optimizer_G, model.optimizer_F)
    runtime.update()
