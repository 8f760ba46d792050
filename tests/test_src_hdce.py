"""Model-level checks of the paper's model: official loss composition, batch independence, curriculum,
and that reusing the main pass's encoder features changes nothing."""
import pytest
import torch

import models
from tests.conftest import H2Z as RECIPE, fake_batch, train_opt
from studies.official_step import official_forward, official_sample


def build(tmp_path, *extra, batch=None, seed=0):
    opt = train_opt('src_hdce', tmp_path, '--seed', str(seed), *RECIPE, *extra)
    torch.manual_seed(seed)
    model = models.create_model(opt)
    model.set_epoch(3)
    model.data_dependent_initialize(batch if batch is not None else fake_batch(1, opt.crop_size))
    model.setup(opt)
    return model


def g_loss(model, batch, seed=123, official=False):
    """The generator loss and its gradients; `official`: translation and features as studies/official_step.py computes them."""
    model.set_input(batch)
    official_forward(model) if official else model.forward()
    torch.manual_seed(seed)  # same patch locations for every variant
    loss = model.compute_G_loss(sample=official_sample(model) if official else None)
    grads = torch.autograd.grad(loss, [p for p in model.netG.parameters()] + list(model.netF.parameters()),
                                allow_unused=True)
    return loss.detach(), grads


def official_reference(model, batch, seed=123):
    """The official Hneg_SRC step, re-derived: recomputed features, per-layer criteria, the official
    hDCE estimator exp(v - v.detach()) with weights on the negative similarities."""
    opt = model.opt
    model.set_input(batch)
    real = torch.cat((model.real_A, model.real_B))
    fake = model.netG(real)
    fake_B, idt_B = fake[:1], fake[1:]
    layers = model.nce_layers
    loss_gan = ((model.netD(fake_B) - 1) ** 2).mean()
    torch.manual_seed(seed)
    fq = model.netG(fake_B, layers, encode_only=True)
    fk = model.netG(model.real_A, layers, encode_only=True)
    q_pool, ids = model.netF(fq, opt.num_patches, None)
    k_pool, _ = model.netF(fk, opt.num_patches, ids)
    iq_pool, _ = model.netF(model.netG(idt_B, layers, encode_only=True), opt.num_patches, ids)
    ik_pool, _ = model.netF(model.netG(model.real_B, layers, encode_only=True), opt.num_patches, ids)
    total = opt.n_epochs + opt.n_epochs_decay
    gamma = opt.HDCE_gamma + (opt.HDCE_gamma_min - opt.HDCE_gamma) * model.epoch / total

    def normalize(x):
        return x / (x.pow(2).sum(1, keepdim=True).sqrt() + 1e-7)

    def src_and_weight(q, k):
        q, k = normalize(q), normalize(k.detach())
        sq, sk = q @ q.t(), k @ k.t()
        seed_w = sk.clone()
        seed_w.fill_diagonal_(-10.0)
        w = torch.softmax(seed_w / gamma, dim=1)
        w = w / w.max(dim=1, keepdim=True).values
        p1, p2 = torch.softmax(sq, dim=0), torch.softmax(sk, dim=0)
        m = 0.5 * (p1 + p2)
        jsd = 0.5 * ((p1 * (p1.log() - m.log())).sum() + (p2 * (p2.log() - m.log())).sum())
        return jsd, w.detach()

    def hdce(q, k, w):
        k = k.detach()
        l_pos = (q * k).sum(1, keepdim=True)
        l_neg = (q @ k.t()) * w
        l_neg = l_neg.masked_fill(torch.eye(len(q), dtype=torch.bool), -10.0)
        v = torch.logsumexp((l_neg - l_pos) / opt.nce_T, dim=1)
        return torch.exp(v - v.detach()).mean() - 1 + v.detach().mean()  # gradient of v, value of v

    src = hd = hd_y = 0.0
    for q, k, iq, ik in zip(q_pool, k_pool, iq_pool, ik_pool):
        s, w = src_and_weight(q, k)
        _, w_y = src_and_weight(iq, ik)
        src = src + s * opt.lambda_SRC
        hd = hd + hdce(q, k, w) * opt.lambda_HDCE
        hd_y = hd_y + hdce(iq, ik, w_y) * opt.lambda_HDCE
    n = len(layers)
    loss = loss_gan + 0.5 * (hd / n + hd_y / n) + src / n
    grads = torch.autograd.grad(loss, [p for p in model.netG.parameters()] + list(model.netF.parameters()),
                                allow_unused=True)
    return loss.detach(), grads


def assert_grads_close(ga, gb, rel=1e-4, noise=1e-3):
    """Each gradient tensor agrees to `rel` in norm.

    Tensors whose reference gradient is below `noise` everywhere are skipped: those are the biases of
    convolutions followed by instance norm, whose true gradient is exactly zero, so both sides hold
    float noise there.
    """
    checked = 0
    for a, b in zip(ga, gb):
        assert (a is None) == (b is None)
        if b is None or float(b.abs().max()) < noise:
            continue
        assert float((a - b).norm()) <= rel * float(b.norm())
        checked += 1
    assert checked > len(ga) // 2


def test_loss_and_gradients_equal_the_official_step(tmp_path):
    model = build(tmp_path)
    batch = fake_batch(1, 32, seed=5)
    ours, g_ours = g_loss(model, batch)
    ref, g_ref = official_reference(model, batch)
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-6)
    assert_grads_close(g_ours, g_ref)


def test_reusing_main_pass_features_changes_nothing(tmp_path):
    model = build(tmp_path)
    batch = fake_batch(1, 32, seed=7)
    fast, g_fast = g_loss(model, batch)
    slow, g_slow = g_loss(model, batch, official=True)
    torch.testing.assert_close(fast, slow, rtol=1e-6, atol=1e-7)
    assert_grads_close(g_fast, g_slow)


def test_batch_of_two_equals_two_batches_of_one(tmp_path):
    batch = fake_batch(2, 32, seed=9)
    model = build(tmp_path, '--batch_size', '2')
    model.set_input(batch)
    model.forward()
    torch.manual_seed(1)
    model.compute_G_loss()
    both = {k: float(model.losses[k].detach()) for k in ('G_GAN', 'HDCE', 'HDCE_Y', 'SRC')}
    singles = []
    for i in range(2):
        one = {k: (v[i:i + 1] if torch.is_tensor(v) else v[i:i + 1]) for k, v in batch.items()}
        model.set_input(one)
        model.forward()
        torch.manual_seed(1)
        model.compute_G_loss()
        singles.append({k: float(model.losses[k].detach()) for k in both})
    for k in both:
        assert both[k] == pytest.approx((singles[0][k] + singles[1][k]) / 2, rel=1e-5), k


@pytest.mark.parametrize('epoch,expected', [(1, 50 - 40 / 400), (200, 30.0), (400, 10.0)])
def test_curriculum_gamma(tmp_path, epoch, expected):
    model = build(tmp_path)
    model.set_epoch(epoch)
    assert model.objective.hardness(model.epoch) == pytest.approx(expected)


def test_step_gamma_after_epoch(tmp_path):
    model = build(tmp_path, '--step_gamma', '--step_gamma_epoch', '200')
    model.set_epoch(200)
    assert model.objective.hardness(model.epoch) == pytest.approx(30.0)
    model.set_epoch(201)
    assert model.objective.hardness(model.epoch) == 1


def test_num_patches_above_positions_uses_every_position(tmp_path):
    model = build(tmp_path, '--num_patches', '100000')
    loss, _ = g_loss(model, fake_batch(1, 32, seed=3))
    assert torch.isfinite(loss)


def test_logged_hdce_is_the_optimised_objective(tmp_path):
    model = build(tmp_path, '--lambda_SRC', '0', '--dce_idt', 'false')
    batch = fake_batch(1, 32, seed=11)
    model.set_input(batch)
    model.forward()
    loss = model.compute_G_loss()
    assert loss.item() == pytest.approx(model.losses['G_GAN'].item() + model.losses['HDCE'].item(), rel=1e-6)
    assert model.losses['monitor_coupled_CE'].item() != pytest.approx(model.losses['HDCE'].item(), rel=1e-3)


def test_fastcut_mode_presets(tmp_path):
    opt = train_opt('src_hdce', tmp_path, '--CUT_mode', 'FastCUT')
    assert opt.flip_equivariance and not opt.dce_idt and opt.n_epochs == 150
    opt = train_opt('cut', tmp_path, '--CUT_mode', 'FastCUT')
    assert opt.lambda_NCE == 10.0 and not opt.nce_idt
    assert train_opt('cut', tmp_path).nce_idt


def test_gan_only_has_no_f_optimizer(tmp_path):
    model = build(tmp_path, '--lambda_HDCE', '0', '--lambda_SRC', '0')
    assert model.optimizer_F is None
    model.set_input(fake_batch(1, 32))
    model.optimize_parameters()
    assert model.losses['G'].item() == model.losses['G_GAN'].item()


@pytest.mark.parametrize('weights', [('0', '1'), ('1', '0'), ('1', '1')], ids=['src_only', 'hdce_only', 'both'])
def test_F_learns_whenever_a_patch_loss_uses_it(tmp_path, weights):
    """λ_hDCE 0 with λ_SRC > 0 still trains F: SRC's gradient reaches F, so F needs its optimizer."""
    model = build(tmp_path, '--lambda_HDCE', weights[0], '--lambda_SRC', weights[1])
    assert model.optimizer_F is not None and model.optimizer_F in model.optimizers
    before = [p.detach().clone() for p in model.netF.parameters()]
    for step in range(2):
        model.set_input(fake_batch(1, model.opt.crop_size, seed=step))
        model.optimize_parameters()
    changed = [not torch.equal(b, p) for b, p in zip(before, model.netF.parameters())]
    assert all(changed), f'{changed.count(False)} of {len(changed)} F tensors did not move'


def test_F_has_no_optimizer_without_patch_losses(tmp_path):
    model = build(tmp_path, '--lambda_HDCE', '0', '--lambda_SRC', '0')
    assert model.optimizer_F is None
