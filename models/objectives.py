"""Patch objectives: the generator's patch-wise terms of the patch-contrastive models.

An objective is called with `sample(branch, ids=None) -> (q, k, ids)`, which gives per layer the
L2-normalised patch embeddings of a translation (q, with gradient) and of its input (k, detached) at
shared locations (branch 'X': G(X) and X; branch 'Y': the identity G(Y) and Y; `ids` reuses locations),
and the epoch. It returns its named terms, each weighted by its λ as logged (the same names at every
step and for every setting), and `total(terms)` is their contribution to the generator's loss. No
options inside: the models build objectives from their flags.
"""
from collections import OrderedDict

import torch

from util.errors import ConfigError

from . import losses

LAYER_REDUCTIONS = ('mean', 'sum')  # of each term over the feature layers


class PatchNCE:
    """CUT: λ_NCE · PatchNCE(X, G(X)) averaged over layers, and with the identity branch the mean of that
    and PatchNCE(Y, G(Y)); each branch samples its own locations."""

    def __init__(self, lambda_nce=1.0, tau=0.07, identity=False):
        losses._check_positive('--nce_T', tau)
        self.lambda_nce, self.tau, self.identity = lambda_nce, tau, identity
        self.term_names = ('NCE', 'NCE_Y') if identity else ('NCE',)

    @property
    def uses_features(self):
        return self.lambda_nce > 0

    @property
    def samples_identity(self):
        """Whether a call samples the 'Y' branch too."""
        return self.identity and self.lambda_nce > 0

    def branch(self, sample, name):
        """λ_NCE · PatchNCE of one branch, averaged over layers."""
        q, k, _ = sample(name)
        total = 0.0
        for f_q, f_k in zip(q, k):
            total = total + losses.info_nce_loss(f_q, f_k, tau=self.tau).mean() * self.lambda_nce
        return total / len(q)

    def __call__(self, sample, epoch):
        zero = torch.zeros(())
        if not self.uses_features:
            return OrderedDict((name, zero) for name in self.term_names)
        terms = OrderedDict(NCE=self.branch(sample, 'X'))
        if self.identity:
            terms['NCE_Y'] = self.branch(sample, 'Y')
        return terms

    def total(self, terms):
        if self.identity:
            return (terms['NCE'] + terms['NCE_Y']) * 0.5
        return terms['NCE']


class Curriculum:
    """γ of the hard-negative weights per epoch (losses.hdce_gamma, the official curriculum)."""

    def __init__(self, gamma=1.0, gamma_min=1.0, total_epochs=1, use_curriculum=False, step_gamma=False,
                 step_gamma_epoch=200):
        for name, value in (('--HDCE_gamma', gamma), ('--HDCE_gamma_min', gamma_min)):
            losses._check_positive(name, value)
        self.gamma, self.gamma_min, self.total_epochs = gamma, gamma_min, max(total_epochs, 1)
        self.use_curriculum, self.step_gamma, self.step_gamma_epoch = use_curriculum, step_gamma, step_gamma_epoch

    def __call__(self, epoch):
        return losses.hdce_gamma(epoch, self.gamma, self.gamma_min, self.total_epochs,
                                 use_curriculum=self.use_curriculum, step_gamma=self.step_gamma,
                                 step_gamma_epoch=self.step_gamma_epoch)


class SemanticRelation:
    """The paper's L_semantic = λ_SRC·L_SRC + λ_hDCE·L_hDCE on the X branch, with the identity branch
    ½(hDCE(X) + hDCE(Y)) + SRC(X), as the official code (the Y branch reuses X's locations).

    Table 4's rows are settings of one objective: `contrast` 'dce' (Eq. 6) or 'infonce' (CUT's coupled
    loss), `hard_negatives` (Eq. 4-5, γ from `hardness(epoch)`) weighted the `weighting` way ('official':
    the weights scale the negative similarities; 'paper': importance weights on e^{l_neg/τ}), SRC on
    when λ_SRC > 0, averaged over the images of a batch (`src_reduction` 'sum': the official multi-modal
    code's sum). The terms: HDCE (the row's contrastive term), HDCE_Y with the identity branch, SRC,
    and monitor_coupled_CE, the coupled cross-entropy with the official weights that the official code
    logs as "HDCE" (a detached monitor, weighted by λ_hDCE; 0 when the contrastive term is off).
    Each term is averaged over the layers (`layer_reduction` 'sum': summed, as the official compression code).
    """

    def __init__(self, lambda_hdce=1.0, lambda_src=1.0, tau=0.07, identity=False, contrast='dce',
                 hard_negatives=True, weighting='official', hardness=None, src_reduction='mean',
                 layer_reduction='mean'):
        losses._check_positive('--nce_T', tau)
        if contrast not in ('dce', 'infonce'):
            raise ConfigError(f"--patch_loss must be 'dce' or 'infonce', got {contrast!r}")
        if weighting not in losses.WEIGHT_MODES:
            raise ConfigError(f'--hneg_weighting must be one of {losses.WEIGHT_MODES}, got {weighting!r}')
        self.lambda_hdce, self.lambda_src, self.tau, self.identity = lambda_hdce, lambda_src, tau, identity
        self.contrast, self.hard_negatives, self.weighting = contrast, hard_negatives, weighting
        self.hardness = hardness or Curriculum()
        if src_reduction not in losses.REDUCTIONS:
            raise ConfigError(f'--src_batch_reduction must be one of {losses.REDUCTIONS}, got {src_reduction!r}')
        self.src_reduction = src_reduction
        if layer_reduction not in LAYER_REDUCTIONS:
            raise ConfigError(f'layer_reduction must be one of {LAYER_REDUCTIONS}, got {layer_reduction!r}')
        self.layer_reduction = layer_reduction
        self.term_names = ('HDCE', 'HDCE_Y', 'SRC', 'monitor_coupled_CE') if identity else \
            ('HDCE', 'SRC', 'monitor_coupled_CE')

    @property
    def uses_features(self):
        return self.lambda_hdce > 0 or self.lambda_src > 0

    @property
    def samples_identity(self):
        """Whether a call samples the 'Y' branch too."""
        return self.identity and self.lambda_hdce > 0

    def over_layers(self, total, layers):
        """A term summed over `layers` layers, reduced as `layer_reduction` says."""
        return total / layers if self.layer_reduction == 'mean' else total

    def semantic_relation(self, q, k):
        """Eq. 3: λ_SRC · Σ_k JSD(P_k‖Q_k), reduced over layers."""
        total = sum(losses.src_loss(f_q, f_k, self.src_reduction) for f_q, f_k in zip(q, k)) * self.lambda_src
        return self.over_layers(total, len(q))

    def contrastive(self, q, k, gamma, monitor=True):
        """Eq. 4-6: λ_hDCE · the row's contrastive loss (mean over patches), and (with `monitor`, else None) the
        coupled-CE monitor on the same scale, each reduced over layers."""
        paper = self.weighting == 'paper'
        total, coupled = 0.0, 0.0
        for f_q, f_k in zip(q, k):
            w_official = w = None
            if self.hard_negatives:
                w_official = losses.relation_weights(f_k, gamma) if monitor or not paper else None
                w = losses.relation_weights(f_k, gamma, normalize='mean') if paper else w_official
            if self.contrast == 'dce':
                per_patch = losses.dce_loss(f_q, f_k, tau=self.tau, weight=w,
                                            weight_mode='paper' if paper else 'official')
            else:
                per_patch = losses.info_nce_loss(f_q, f_k, tau=self.tau, weight=w)
            total = total + per_patch.mean() * self.lambda_hdce
            if monitor:
                with torch.no_grad():
                    coupled = coupled + losses.info_nce_loss(f_q, f_k, tau=self.tau, weight=w_official).mean()
        coupled = self.over_layers(coupled * self.lambda_hdce, len(q)) if monitor else None
        return self.over_layers(total, len(q)), coupled

    def __call__(self, sample, epoch):
        terms = OrderedDict((name, torch.zeros(())) for name in self.term_names)
        if not self.uses_features:
            return terms
        q, k, ids = sample('X')
        if self.lambda_src > 0:
            terms['SRC'] = self.semantic_relation(q, k)
        if self.lambda_hdce <= 0:
            return terms
        gamma = self.hardness(epoch)
        terms['HDCE'], terms['monitor_coupled_CE'] = self.contrastive(q, k, gamma)
        if self.identity:
            q_y, k_y, _ = sample('Y', ids)
            terms['HDCE_Y'] = self.contrastive(q_y, k_y, gamma, monitor=False)[0]  # the monitor logs X's alone
        return terms

    def total(self, terms):
        contrast = (terms['HDCE'] + terms['HDCE_Y']) * 0.5 if self.identity else terms['HDCE']
        return contrast + terms['SRC']
