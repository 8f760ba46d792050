"""Losses of CUT and of Hneg-SRC (Jung, Kwon, Ye, CVPR 2022) as pure functions.

Patch features are (B, N, C): B images, N sampled patches, C channels, L2-normalised. `feat_q` comes
from the output G(X) and carries gradient; `feat_k` comes from the input X and is always detached.
Relations are computed per image; pass (1, B*N, C) to draw negatives from the whole minibatch (CUT's
--nce_includes_all_negatives_from_minibatch). Contrastive losses return one value per patch, (B*N,);
the caller weights and reduces.
"""
import torch
import torch.nn.functional as F

from util.errors import ConfigError

GAN_MODES = ('lsgan', 'vanilla', 'wgangp', 'nonsaturating', 'hinge')
WEIGHT_MODES = ('official', 'paper')
RELATION_NORMALIZATIONS = ('max', 'mean')
REDUCTIONS = ('mean', 'sum')  # of SRC over the images of a batch

# Logit given to the self pair (i, i) among the negatives, as in CUT and Hneg-SRC: exp(-10 / tau) ~ 0.
_SELF_LOGIT = -10.0


def _check_features(feat_q, feat_k):
    for name, feat in (('feat_q', feat_q), ('feat_k', feat_k)):
        if feat.dim() != 3:
            raise ConfigError(f'{name} must be (B, N, C), got shape {tuple(feat.shape)}')
    if feat_q.shape != feat_k.shape:
        raise ConfigError(f'feat_q {tuple(feat_q.shape)} and feat_k {tuple(feat_k.shape)} must have the same shape')


def _check_positive(name, value):
    if not value > 0:
        raise ConfigError(f'{name} must be > 0, got {value}')


def _check_weight(weight, feat_q):
    batch, patches, _ = feat_q.shape
    if weight is not None and weight.shape != (batch, patches, patches):
        raise ConfigError(f'weight must be (B, N, N) = {(batch, patches, patches)}, got {tuple(weight.shape)}')


def _self_mask(patches, device):
    return torch.eye(patches, dtype=torch.bool, device=device)  # (N, N)


def l2_normalize(x, eps=1e-7):
    """x / (||x||_2 + eps) along the last dimension (the official `Normalize`). vector_norm's gradient is 0
    at a zero vector, where the official pow(2).sum().sqrt() gives NaN (an all-zero MLP output happens
    when every ReLU unit is off)."""
    return x / (torch.linalg.vector_norm(x, dim=-1, keepdim=True) + eps)


def hdce_gamma(epoch, gamma, gamma_min, total_epochs, use_curriculum=True, step_gamma=False, step_gamma_epoch=200):
    """Temperature of the hard-negative weights at `epoch` (official curriculum).

    With `use_curriculum`, gamma moves linearly from `gamma` at epoch 0 to `gamma_min` at `total_epochs`
    (n_epochs + n_epochs_decay), and becomes 1 once `step_gamma` is set and epoch > step_gamma_epoch.
    As in the official code, `step_gamma` has no effect without `use_curriculum`.
    """
    _check_positive('HDCE_gamma', gamma)
    if not use_curriculum:
        return float(gamma)
    _check_positive('total_epochs (n_epochs + n_epochs_decay)', total_epochs)
    if step_gamma and epoch > step_gamma_epoch:
        return 1.0
    current = gamma + (gamma_min - gamma) * epoch / total_epochs
    if not current > 0:
        raise ConfigError(f'HDCE_gamma_min={gamma_min} gives gamma={current} <= 0 at epoch {epoch}')
    return float(current)


def relation_weights(feat_k, gamma, normalize='max'):
    """Eq. 4-5: hard-negative weights w_ij from the source relations softmax_j(k_i.k_j / gamma), no grad.

    normalize='max' is the official form: the self pair gets similarity -10 before the division by gamma
    and the softmax, then each row is divided by its maximum (weights in (0, 1], used with
    weight_mode='official'). normalize='mean' is the importance-sampling form of Eq. 5: the self pair is
    excluded exactly (w_ii = 0) and each row is rescaled so the N-1 negative weights average 1 (use with
    weight_mode='paper'; uniform relations give all-ones weights).
    Returns (B, N, N).
    """
    if feat_k.dim() != 3:
        raise ConfigError(f'feat_k must be (B, N, C), got shape {tuple(feat_k.shape)}')
    _check_positive('gamma', gamma)
    if normalize not in RELATION_NORMALIZATIONS:
        raise ConfigError(f'unknown normalize {normalize!r}; valid: {RELATION_NORMALIZATIONS}')
    with torch.no_grad():
        feat_k = l2_normalize(feat_k)
        similarity = torch.bmm(feat_k, feat_k.transpose(1, 2))  # (B, N, N)
        self_pair = _self_mask(similarity.shape[-1], similarity.device)
        if normalize == 'max':
            weight = torch.softmax(similarity.masked_fill(self_pair, _SELF_LOGIT) / gamma, dim=-1)
            return weight / weight.amax(dim=-1, keepdim=True)
        negatives = similarity.shape[-1] - 1
        if negatives < 1:
            raise ConfigError("normalize='mean' needs at least 2 patches per image")
        weight = torch.softmax((similarity / gamma).masked_fill(self_pair, float('-inf')), dim=-1)
        return weight * negatives


def _contrastive_logits(feat_q, feat_k):
    """l_pos_i = q_i.k_i (B, N) and l_neg_ij = q_i.k_j (B, N, N) within each image; k detached."""
    feat_k = feat_k.detach()
    l_pos = (feat_q * feat_k).sum(dim=-1)  # (B, N)
    l_neg = torch.bmm(feat_q, feat_k.transpose(1, 2))  # (B, N, N)
    return l_pos, l_neg


def _info_nce_from_logits(l_pos, l_neg, tau):
    """InfoNCE -log(e^{l_pos/tau} / (e^{l_pos/tau} + sum_j e^{l_neg_j/tau})); l_pos (...,), l_neg (..., N)."""
    logits = torch.cat([l_pos.unsqueeze(-1), l_neg], dim=-1) / tau  # (..., 1 + N)
    return torch.logsumexp(logits, dim=-1) - l_pos / tau


def _dce_from_logits(l_pos, l_neg, tau, log_weight=None):
    """Eq. 6: -l_pos/tau + log sum_j w_j e^{l_neg_j/tau}; l_pos (...,), l_neg and log_weight (..., N)."""
    logits = (l_neg - l_pos.unsqueeze(-1)) / tau  # (..., N)
    if log_weight is not None:
        logits = logits + log_weight
    return torch.logsumexp(logits, dim=-1)


def info_nce_loss(feat_q, feat_k, tau=0.07, weight=None):
    """CUT's PatchNCE (InfoNCE, coupled as analysed in Eq. 7-9) per patch, against the patches of its image.

    `weight` (B, N, N) multiplies the negative similarities before the self masking and the temperature,
    as the official hDCE does; with it this is the coupled cross-entropy the official hDCE logs.
    Returns (B*N,).
    """
    _check_features(feat_q, feat_k)
    _check_positive('tau', tau)
    _check_weight(weight, feat_q)
    l_pos, l_neg = _contrastive_logits(feat_q, feat_k)
    if weight is not None:
        l_neg = l_neg * weight.detach()
    l_neg = l_neg.masked_fill(_self_mask(l_neg.shape[-1], l_neg.device), _SELF_LOGIT)
    return _info_nce_from_logits(l_pos, l_neg, tau).flatten()


def dce_loss(feat_q, feat_k, tau=0.07, weight=None, weight_mode='official'):
    """Eq. 6 (DCE) and Eq. 4-5 (hDCE): decoupled InfoNCE, the positive removed from the denominator.

    The value is the decoupled objective -l_pos/tau + log sum_{j!=i} w_ij e^{l_neg_ij/tau}, whose
    gradient equals the official hDCE gradient (the official code reports the coupled cross-entropy
    instead; see info_nce_loss). weight_mode='official': `weight` multiplies the negative similarities
    before the temperature and the self pair keeps the official logit -10. weight_mode='paper': Eq. 5
    importance sampling, `weight` multiplies e^{l_neg/tau} and the self pair is excluded exactly (pair it
    with relation_weights(normalize='mean')). weight=None is the unweighted DCE in both modes.
    Returns (B*N,).
    """
    _check_features(feat_q, feat_k)
    _check_positive('tau', tau)
    _check_weight(weight, feat_q)
    if weight_mode not in WEIGHT_MODES:
        raise ConfigError(f'unknown weight_mode {weight_mode!r}; valid: {WEIGHT_MODES}')
    l_pos, l_neg = _contrastive_logits(feat_q, feat_k)
    self_pair = _self_mask(l_neg.shape[-1], l_neg.device)
    if weight_mode == 'official':
        if weight is not None:
            l_neg = l_neg * weight.detach()
        return _dce_from_logits(l_pos, l_neg.masked_fill(self_pair, _SELF_LOGIT), tau).flatten()
    if l_neg.shape[-1] < 2:
        raise ConfigError("weight_mode='paper' needs at least 2 patches per image")
    log_weight = torch.zeros_like(l_neg) if weight is None else weight.detach().log()
    log_weight = log_weight.masked_fill(self_pair, float('-inf'))  # (B, N, N)
    return _dce_from_logits(l_pos, l_neg, tau, log_weight).flatten()


def jsd(p, q):
    """Eq. 3: Jensen-Shannon divergence of distributions on the last dim; returns shape (...)."""
    m = 0.5 * (p + q)
    kl_pm = (torch.xlogy(p, p) - torch.xlogy(p, m)).sum(dim=-1)
    kl_qm = (torch.xlogy(q, q) - torch.xlogy(q, m)).sum(dim=-1)
    return 0.5 * (kl_pm + kl_qm)


def src_loss(feat_q, feat_k, reduction='mean'):
    """Eq. 1-3: SRC = sum_k JSD(P_k || Q_k), P_k / Q_k the softmax of patch k's cosine similarities to all
    patches (self included, no temperature) in X / G(X); summed over patches, averaged over images
    (`reduction` 'sum': summed, as the official multi-modal code at batch size > 1).

    Features are re-normalised as the official SRC_Loss does, so the gradient is tangent to the sphere.
    Returns a scalar.
    """
    _check_features(feat_q, feat_k)
    feat_q = l2_normalize(feat_q)
    feat_k = l2_normalize(feat_k.detach())
    p = torch.softmax(torch.bmm(feat_k, feat_k.transpose(1, 2)), dim=-1)  # (B, N, N), Eq. 1
    q = torch.softmax(torch.bmm(feat_q, feat_q.transpose(1, 2)), dim=-1)  # (B, N, N), Eq. 2
    per_image = jsd(p, q).sum(dim=-1)
    if reduction not in REDUCTIONS:
        raise ConfigError(f'reduction must be one of {REDUCTIONS}, got {reduction!r}')
    return per_image.mean() if reduction == 'mean' else per_image.sum()


def hinge_loss(prediction, target_is_real, for_discriminator):
    """Hinge GAN loss (gan-compression's default), unreduced: D on real max(0, 1 - D), D on fake
    max(0, 1 + D); the generator's -D (its target must be real)."""
    if for_discriminator:
        return F.relu(1.0 - prediction) if target_is_real else F.relu(1.0 + prediction)
    if not target_is_real:
        raise ConfigError("the hinge generator loss has a real target only (target_is_real=True)")
    return -prediction


def gan_loss(prediction, target_is_real, mode, for_discriminator=None):
    """Adversarial loss per discriminator output, unreduced; its mean equals CUT's GANLoss(...).mean()
    (gan-compression's GANLoss for hinge).

    lsgan: (D - t)^2; vanilla: BCE with logits; wgangp: -D for real, D for fake;
    nonsaturating: softplus(-D) for real, softplus(D) for fake; hinge: see hinge_loss, which needs
    `for_discriminator` (True for D's loss, False for G's); the other modes ignore it.
    """
    if mode == 'lsgan':
        return (prediction - float(target_is_real)) ** 2
    if mode == 'vanilla':
        target = torch.full_like(prediction, float(target_is_real))
        return F.binary_cross_entropy_with_logits(prediction, target, reduction='none')
    if mode == 'wgangp':
        return -prediction if target_is_real else prediction
    if mode == 'nonsaturating':
        return F.softplus(-prediction if target_is_real else prediction)
    if mode == 'hinge':
        if for_discriminator is None:
            raise ConfigError("gan_mode 'hinge' has different losses for D and G: pass for_discriminator=True or "
                             "False (a model whose loss does not say which cannot train with --gan_mode hinge)")
        return hinge_loss(prediction, target_is_real, for_discriminator)
    raise ConfigError(f'unknown gan_mode {mode!r}; valid: {GAN_MODES}')


def r1_penalty(real_pred, real_img, scale=None):
    """R1 penalty ||d sum(D(x)) / dx||^2 per real sample (B,), differentiable; SinCUT scales it by lambda_R1 / 2.
    `scale` (--amp fp16's loss scale, a tensor): PyTorch's AMP gradient-penalty recipe, the sum scaled before
    autograd.grad and the gradient divided by it, so that D's float16 backward does not underflow."""
    if scale is None:
        grad, = torch.autograd.grad(real_pred.sum(), real_img, create_graph=True)
    else:
        grad, = torch.autograd.grad(real_pred.sum() * scale, real_img, create_graph=True)
        grad = grad / scale
    return grad.pow(2).flatten(1).sum(dim=1)
