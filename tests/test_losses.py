"""Tests for models/losses.py: parity with the official Hneg-SRC / CUT losses and the paper's equations.

Float32 parity tolerances: values rtol 1e-4 / atol 1e-6, gradients rtol 1e-4 / atol 1e-7.
"""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from models import losses
from tests.conftest import FIXTURES

CASES = ('a', 'b', 'c', 'd')
VALUE_TOL = dict(rtol=1e-4, atol=1e-6)
GRAD_TOL = dict(rtol=1e-4, atol=1e-7)


@pytest.fixture(scope='module')
def official():
    with np.load(FIXTURES / 'official_losses.npz') as data:
        return {name: data[name] for name in data.files}


def _case(official, case):
    """Fixture tensors as one image (1, N, C), with the effective gamma and tau of the case."""
    _, _, gamma, gamma_min, curriculum, step, step_epoch, epoch, n_epochs, n_decay, tau = official[f'{case}/params']
    gamma = losses.hdce_gamma(epoch, gamma, gamma_min, n_epochs + n_decay, use_curriculum=bool(curriculum),
                              step_gamma=bool(step), step_gamma_epoch=step_epoch)
    q = torch.tensor(official[f'{case}/q'])[None]
    k = torch.tensor(official[f'{case}/k'])[None]
    return q, k, gamma, float(tau)


def _close(actual, expected, tol):
    torch.testing.assert_close(actual.detach().double(), torch.as_tensor(expected).double(), **tol)


def _value_and_grad(loss_fn, q, k):
    q = q.clone().requires_grad_(True)
    value = loss_fn(q, k)
    grad, = torch.autograd.grad(value.mean(), q)
    return value.detach(), grad


def _features(batch=2, patches=8, channels=16, seed=0):
    generator = torch.Generator().manual_seed(seed)
    q = F.normalize(torch.randn(batch, patches, channels, generator=generator), dim=-1)
    k = F.normalize(q + 0.7 * torch.randn(batch, patches, channels, generator=generator), dim=-1)
    return q, k


# 1. Parity with the official implementations.

@pytest.mark.parametrize('case', CASES)
def test_relation_weights_match_official(official, case):
    _, k, gamma, _ = _case(official, case)
    _close(losses.relation_weights(k, gamma)[0], official[f'{case}/weight'], VALUE_TOL)


@pytest.mark.parametrize('case', CASES)
def test_src_loss_matches_official(official, case):
    q, k, _, _ = _case(official, case)
    value, grad = _value_and_grad(losses.src_loss, q, k)
    _close(value, official[f'{case}/src_value'], VALUE_TOL)
    _close(grad[0], official[f'{case}/src_grad_q'], GRAD_TOL)


@pytest.mark.parametrize('case', CASES)
def test_info_nce_matches_official_patchnce(official, case):
    q, k, _, tau = _case(official, case)
    value, grad = _value_and_grad(lambda q, k: losses.info_nce_loss(q, k, tau=tau), q, k)
    _close(value, official[f'{case}/infonce_value'], VALUE_TOL)
    _close(grad[0], official[f'{case}/infonce_grad_q'], GRAD_TOL)


@pytest.mark.parametrize('case', CASES)
def test_dce_gradient_matches_official(official, case):
    q, k, gamma, tau = _case(official, case)
    _, grad = _value_and_grad(lambda q, k: losses.dce_loss(q, k, tau=tau), q, k)
    _close(grad[0], official[f'{case}/dce_grad_q'], GRAD_TOL)

    weight = losses.relation_weights(k, gamma)
    _, grad = _value_and_grad(lambda q, k: losses.dce_loss(q, k, tau=tau, weight=weight), q, k)
    _close(grad[0], official[f'{case}/hdce_grad_q'], GRAD_TOL)


@pytest.mark.parametrize('case', CASES)
def test_weighted_info_nce_is_official_hdce_monitor(official, case):
    q, k, _, tau = _case(official, case)
    weight = torch.tensor(official[f'{case}/weight'])[None]
    _close(losses.info_nce_loss(q, k, tau=tau, weight=weight), official[f'{case}/hdce_monitor_value'], VALUE_TOL)


# 2. Relations are per image: a batch of 2 equals two batches of 1.

def _paper_hdce(q, k, _):
    return losses.dce_loss(q, k, weight=losses.relation_weights(k, 0.5, normalize='mean'), weight_mode='paper')


BATCHED_LOSSES = {  # (feat_q, feat_k, official weight) -> per-patch values, or the SRC scalar as (1,)
    'info_nce': lambda q, k, w: losses.info_nce_loss(q, k),
    'info_nce_weighted': lambda q, k, w: losses.info_nce_loss(q, k, weight=w),
    'dce': lambda q, k, w: losses.dce_loss(q, k),
    'hdce_official': lambda q, k, w: losses.dce_loss(q, k, weight=w),
    'hdce_paper': _paper_hdce,
    'src': lambda q, k, w: losses.src_loss(q, k).reshape(1),
}


@pytest.mark.parametrize('name', sorted(BATCHED_LOSSES))
def test_batch_equals_separate_images(name):
    q, k = _features()
    weight = losses.relation_weights(k, 0.5)
    loss_fn = BATCHED_LOSSES[name]

    q_all = q.clone().requires_grad_(True)
    joint = loss_fn(q_all, k, weight)
    grad_joint, = torch.autograd.grad(joint.sum(), q_all)

    parts, grads = [], []
    for i in range(2):
        q_i = q[i:i + 1].clone().requires_grad_(True)
        part = loss_fn(q_i, k[i:i + 1], weight[i:i + 1])
        parts.append(part)
        grads.append(torch.autograd.grad(part.sum(), q_i)[0])
    separate = torch.stack(parts).mean(0) if name == 'src' else torch.cat(parts)
    grad_separate = torch.cat(grads) / (2 if name == 'src' else 1)
    torch.testing.assert_close(joint, separate)
    torch.testing.assert_close(grad_joint, grad_separate)


@pytest.mark.parametrize('normalize', losses.RELATION_NORMALIZATIONS)
def test_relation_weights_per_image(normalize):
    _, k = _features()
    joint = losses.relation_weights(k, 0.5, normalize=normalize)
    separate = torch.cat([losses.relation_weights(k[i:i + 1], 0.5, normalize=normalize) for i in range(2)])
    torch.testing.assert_close(joint, separate)


def test_gan_and_r1_per_sample():
    prediction = torch.randn(2, 1, 4, 4)
    for mode in losses.GAN_MODES:
        for real in (True, False):
            joint = losses.gan_loss(prediction, real, mode, for_discriminator=True)
            separate = torch.cat([losses.gan_loss(prediction[i:i + 1], real, mode, for_discriminator=True)
                                  for i in range(2)])
            torch.testing.assert_close(joint, separate)

    weight = torch.randn(3, 4, 4)
    images = torch.randn(2, 3, 4, 4, requires_grad=True)
    joint = losses.r1_penalty((weight * images.pow(2)).sum(dim=(1, 2, 3)), images)
    separate = []
    for i in range(2):
        image = images[i:i + 1].detach().requires_grad_(True)
        separate.append(losses.r1_penalty((weight * image.pow(2)).sum(dim=(1, 2, 3)), image))
    torch.testing.assert_close(joint, torch.cat(separate))


# 3. Negative-positive coupling (Eq. 7-9): d loss / d l_pos.

def _positive_logit_derivative(loss_from_logits, l_pos, l_neg):
    l_pos = torch.tensor(l_pos, dtype=torch.float64, requires_grad=True)
    loss = loss_from_logits(l_pos, torch.tensor(l_neg, dtype=torch.float64))
    grad, = torch.autograd.grad(loss, l_pos)
    return float(grad)


@pytest.mark.parametrize('tau', (0.07, 0.2))
def test_dce_positive_derivative_is_constant(tau):
    easy = [-1.0, -0.9, -0.8]
    hard = [0.99, 0.95, 0.9]
    for negatives in (easy, hard):
        for log_weight in (None, torch.log(torch.tensor([0.2, 1.0, 3.0], dtype=torch.float64))):
            derivative = _positive_logit_derivative(
                lambda p, n: losses._dce_from_logits(p, n, tau, log_weight), 0.5, negatives)
            assert derivative == pytest.approx(-1 / tau, rel=1e-12)


@pytest.mark.parametrize('tau', (0.07, 0.2))
def test_info_nce_positive_derivative_depends_on_negatives(tau):
    derivatives = []
    for negatives in ([-1.0, -0.9, -0.8], [0.99, 0.95, 0.9]):
        logits = torch.tensor([0.5] + negatives, dtype=torch.float64) / tau
        p_pos = float(torch.softmax(logits, dim=0)[0])
        derivative = _positive_logit_derivative(lambda p, n: losses._info_nce_from_logits(p, n, tau), 0.5, negatives)
        assert derivative == pytest.approx(-(1 - p_pos) / tau, rel=1e-10)
        derivatives.append(derivative)
    easy, hard = derivatives
    assert abs(easy) < 0.01 * (1 / tau)  # easy negatives: the positive barely gets gradient
    assert hard == pytest.approx(-1 / tau, rel=0.05)  # hard negatives: almost the DCE value
    assert abs(easy - hard) > 0.9 / tau


# 4. Eq. 5 importance sampling and weight=None.

def test_paper_mode_matches_direct_equation_5():
    q, k = _features(patches=6, seed=1)
    tau = 0.1
    weight = losses.relation_weights(k, 0.3, normalize='mean')
    actual = losses.dce_loss(q, k, tau=tau, weight=weight, weight_mode='paper')

    qn, kn, wn = q.double().numpy(), k.double().numpy(), weight.double().numpy()
    expected = []
    for b in range(qn.shape[0]):
        for i in range(qn.shape[1]):
            l_pos = qn[b, i] @ kn[b, i]
            negatives = sum(wn[b, i, j] * np.exp(qn[b, i] @ kn[b, j] / tau) for j in range(qn.shape[1]) if j != i)
            expected.append(-l_pos / tau + np.log(negatives))
    torch.testing.assert_close(actual.double(), torch.tensor(expected), rtol=1e-5, atol=1e-6)


def test_mean_relation_weights_average_one_over_negatives():
    _, k = _features(patches=6)
    weight = losses.relation_weights(k, 0.3, normalize='mean')
    assert torch.all(weight.diagonal(dim1=1, dim2=2) == 0)
    torch.testing.assert_close(weight.sum(-1) / 5, torch.ones(2, 6))
    uniform = losses.relation_weights(torch.ones(1, 4, 3), 0.3, normalize='mean')
    torch.testing.assert_close(uniform, 1 - torch.eye(4)[None])


def test_weight_none_equals_all_ones():
    q, k = _features()
    ones = torch.ones(2, 8, 8)
    torch.testing.assert_close(losses.info_nce_loss(q, k, weight=ones), losses.info_nce_loss(q, k))
    for mode in losses.WEIGHT_MODES:
        torch.testing.assert_close(losses.dce_loss(q, k, weight=ones, weight_mode=mode),
                                   losses.dce_loss(q, k, weight_mode=mode))
    # The modes differ only by the official self-pair logit exp(-10 / tau), negligible at tau = 0.07.
    torch.testing.assert_close(losses.dce_loss(q, k, weight_mode='paper'), losses.dce_loss(q, k))


def test_dce_value_is_decoupled_objective():
    q, k = _features()
    tau = 0.07
    l_pos = (q * k).sum(-1)
    l_neg = torch.bmm(q, k.transpose(1, 2)).masked_fill(torch.eye(8, dtype=torch.bool), -10.0)
    expected = -l_pos / tau + torch.logsumexp(l_neg / tau, dim=-1)
    torch.testing.assert_close(losses.dce_loss(q, k, tau=tau), expected.flatten())


# 5. Gradient flow, curriculum and input checks.

def test_feat_k_receives_no_gradient():
    q, k = _features()
    q.requires_grad_(True)
    k.requires_grad_(True)
    weight = losses.relation_weights(k, 0.5)
    assert not weight.requires_grad
    total = (losses.info_nce_loss(q, k, weight=weight).sum() + losses.dce_loss(q, k, weight=weight).sum()
             + losses.dce_loss(q, k, weight=losses.relation_weights(k, 0.5, 'mean'), weight_mode='paper').sum()
             + losses.src_loss(q, k))
    total.backward()
    assert k.grad is None
    assert q.grad is not None


@pytest.mark.parametrize('epoch, step_gamma, expected', [
    (0, False, 50.0), (200, False, 30.0), (400, False, 10.0), (200, True, 30.0), (201, True, 1.0)])
def test_hdce_gamma_curriculum(epoch, step_gamma, expected):
    gamma = losses.hdce_gamma(epoch, 50.0, 10.0, 400, step_gamma=step_gamma, step_gamma_epoch=200)
    assert gamma == pytest.approx(expected)


def test_hdce_gamma_without_curriculum_is_constant():
    assert losses.hdce_gamma(300, 50.0, 10.0, 400, use_curriculum=False, step_gamma=True) == 50.0


def test_bad_inputs_name_the_argument():
    q, k = _features()
    with pytest.raises(ValueError, match='HDCE_gamma'):
        losses.hdce_gamma(0, 0.0, 1.0, 400)
    with pytest.raises(ValueError, match='HDCE_gamma_min'):
        losses.hdce_gamma(400, 1.0, -1.0, 400)
    with pytest.raises(ValueError, match='gamma'):
        losses.relation_weights(k, -1.0)
    with pytest.raises(ValueError, match="'max', 'mean'"):
        losses.relation_weights(k, 1.0, normalize='sum')
    for loss_fn in (losses.info_nce_loss, losses.dce_loss):
        with pytest.raises(ValueError, match='tau'):
            loss_fn(q, k, tau=0.0)
        with pytest.raises(ValueError, match='feat_q'):
            loss_fn(q[:, :4], k)
        with pytest.raises(ValueError, match='weight'):
            loss_fn(q, k, weight=torch.ones(8, 8))
    with pytest.raises(ValueError, match='feat_q'):
        losses.src_loss(q[0], k[0])
    with pytest.raises(ValueError, match="'official', 'paper'"):
        losses.dce_loss(q, k, weight_mode='importance')
    with pytest.raises(ValueError, match='lsgan'):
        losses.gan_loss(torch.zeros(1), True, 'relativistic')


# GAN losses against CUT's GANLoss formulas, and SinCUT's R1.

@pytest.mark.parametrize('mode', losses.GAN_MODES)
@pytest.mark.parametrize('real', (True, False))
def test_gan_loss_mean_matches_cut(mode, real):
    prediction = torch.randn(3, 1, 5, 5, generator=torch.Generator().manual_seed(2))
    target = torch.full_like(prediction, 1.0 if real else 0.0)
    expected = {
        'lsgan': lambda: torch.nn.MSELoss()(prediction, target),
        'vanilla': lambda: torch.nn.BCEWithLogitsLoss()(prediction, target),
        'wgangp': lambda: -prediction.mean() if real else prediction.mean(),
        'nonsaturating': lambda: F.softplus(-prediction if real else prediction).view(3, -1).mean(dim=1).mean(),
        # gan-compression's GANLoss(for_discriminator=True): -mean(min(D - 1, 0)) / -mean(min(-D - 1, 0))
        'hinge': lambda: -torch.minimum(prediction - 1 if real else -prediction - 1, torch.zeros(())).mean(),
    }[mode]()
    actual = losses.gan_loss(prediction, real, mode, for_discriminator=True)
    assert actual.shape == prediction.shape
    torch.testing.assert_close(actual.mean(), expected)


def test_hinge_generator_loss_and_its_errors():
    prediction = torch.randn(2, 1, 5, 5, generator=torch.Generator().manual_seed(3))
    actual = losses.gan_loss(prediction, True, 'hinge', for_discriminator=False)
    torch.testing.assert_close(actual.mean(), -prediction.mean())  # gan-compression's G side: -mean(D)
    # the discriminator side is zero beyond the margin and linear inside it
    d = torch.tensor([-2.0, -0.5, 0.5, 2.0])
    assert losses.gan_loss(d, True, 'hinge', for_discriminator=True).tolist() == [3.0, 1.5, 0.5, 0.0]
    assert losses.gan_loss(d, False, 'hinge', for_discriminator=True).tolist() == [0.0, 0.5, 1.5, 3.0]
    with pytest.raises(ValueError, match='for_discriminator'):
        losses.gan_loss(prediction, True, 'hinge')
    with pytest.raises(ValueError, match='real target'):
        losses.gan_loss(prediction, False, 'hinge', for_discriminator=False)


def test_r1_penalty_is_squared_gradient_norm_and_differentiable():
    weight = torch.randn(3, 4, 4, requires_grad=True)
    images = torch.randn(2, 3, 4, 4, requires_grad=True)
    penalty = losses.r1_penalty((weight * images.pow(2)).sum(dim=(1, 2, 3)), images)
    expected = (2 * weight * images).pow(2).flatten(1).sum(1)
    torch.testing.assert_close(penalty, expected)
    penalty.sum().backward()
    torch.testing.assert_close(weight.grad, (8 * weight * images.pow(2)).sum(0))
