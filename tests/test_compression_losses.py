"""The teacher-student L_semantic of the compression model against the official compression code (Hneg_SRC
`Compression/`): SRC and DCE values, the gradients with respect to the student's features, its embeddings and
F, the sum over the four mapping layers and the channel-sliced F. The fixture was written by
studies/compression/make_fixture.py with the official SRC_Loss, PatchDCELoss and SuperMLP."""
from pathlib import Path

import numpy as np
import pytest
import torch

from models import objectives
from models.networks.patch_sampler import PatchSampleF, define_F

DATA = Path(__file__).parent / 'data'
SETTINGS = ('hard', 'nohard')
VALUE_TOL = dict(rtol=1e-5, atol=1e-6)
GRAD_TOL = dict(rtol=1e-4, atol=1e-6)


@pytest.fixture(scope='module')
def official():
    with np.load(DATA / 'official_compression_losses.npz') as data:
        return {name: torch.from_numpy(data[name]) for name in data.files}


def sliced_F(official, layers):
    """The project's F holding the fixture's SuperMLP weights of `layers`: built at the super-net's largest width."""
    _, nc, widest = official['w0'].shape
    net = PatchSampleF(use_mlp=True, nc=nc, slice_inputs=True).build([widest] * len(layers))
    with torch.no_grad():
        for i, layer in enumerate(layers):
            mlp = getattr(net, f'mlp_{i}')
            mlp[0].weight.copy_(official['w0'][layer])
            mlp[0].bias.copy_(official['b0'][layer])
            mlp[2].weight.copy_(official['w2'][layer])
            mlp[2].bias.copy_(official['b2'][layer])
    return net


def objective(official, setting, layer_reduction='sum'):
    """The compression model's objective from the official flags (λ_SRC 10, λ_dce 0.1, γ 50 -> 10)."""
    no_hard, _, max_epoch, lambda_src, lambda_dce, gamma_start, gamma_min, tau = official[f'{setting}/params'].tolist()
    hardness = objectives.Curriculum(gamma_start, gamma_min, max_epoch, use_curriculum=True)
    return objectives.SemanticRelation(lambda_hdce=lambda_dce, lambda_src=lambda_src, tau=tau, contrast='dce',
                                       hard_negatives=not no_hard, hardness=hardness, layer_reduction=layer_reduction)


def run(official, setting, layers=None, layer_reduction='sum'):
    """Terms and gradients of the project's objective on the fixture's features, at the official positions."""
    layers = list(range(official['student'].shape[0])) if layers is None else layers
    net = sliced_F(official, layers)
    student = official['student'].clone().requires_grad_(True)
    feats_s = [student[i] for i in layers]
    feats_t = [official['teacher'][i] for i in layers]
    ids = [official[f'{setting}/patch_ids'][i] for i in layers]
    embedded = {}

    def sample(branch, ids_=None):
        assert branch == 'X'
        q, _ = net(feats_s, num_patches=256, patch_ids=ids)
        with torch.no_grad():
            k, _ = net(feats_t, num_patches=256, patch_ids=ids)
        for f in q:
            f.retain_grad()
        embedded['q'], embedded['k'] = q, k
        return [f[None] for f in q], [f[None] for f in k], ids
    obj = objective(official, setting, layer_reduction)
    terms = obj(sample, official[f'{setting}/params'][1].item())
    obj.total(terms).backward()
    return terms, student, embedded, net


@pytest.mark.parametrize('setting', SETTINGS)
def test_values_match_the_official_compression_losses(official, setting):
    terms, _, _, _ = run(official, setting)
    torch.testing.assert_close(terms['SRC'].detach(), official[f'{setting}/src'], **VALUE_TOL)
    # the official DCE value is the coupled cross-entropy (its gradient is the decoupled loss's)
    torch.testing.assert_close(terms['monitor_coupled_CE'], official[f'{setting}/dce'], **VALUE_TOL)


@pytest.mark.parametrize('setting', SETTINGS)
def test_gradients_match_the_official_compression_losses(official, setting):
    _, student, embedded, net = run(official, setting)
    torch.testing.assert_close(student.grad, official[f'{setting}/grad_student'], **GRAD_TOL)
    torch.testing.assert_close(torch.stack([f.grad for f in embedded['q']]), official[f'{setting}/grad_q'], **GRAD_TOL)
    for i in range(student.shape[0]):
        mlp = getattr(net, f'mlp_{i}')
        for key, param in (('w0', mlp[0].weight), ('b0', mlp[0].bias), ('w2', mlp[2].weight), ('b2', mlp[2].bias)):
            torch.testing.assert_close(param.grad, official[f'{setting}/grad_{key}'][i], **GRAD_TOL)


def test_the_sliced_F_embeds_as_the_official_super_mlp(official):
    """Student maps (c < widest channels) meet the first c input columns, the teacher's all of its own."""
    _, _, embedded, _ = run(official, 'hard')
    torch.testing.assert_close(torch.stack(embedded['q']).detach(), official['hard/q'], **VALUE_TOL)
    torch.testing.assert_close(torch.stack(embedded['k']), official['hard/k'], **VALUE_TOL)


@pytest.mark.parametrize('setting', SETTINGS)
def test_each_layer_and_the_layer_sum(official, setting):
    """Per layer the official SRC and DCE; 'sum' adds the four layers (the official total), 'mean' is a quarter."""
    layers = official['student'].shape[0]
    for layer in range(layers):
        terms, _, _, _ = run(official, setting, layers=[layer])
        torch.testing.assert_close(terms['SRC'].detach(), official[f'{setting}/src_layers'][layer], **VALUE_TOL)
        torch.testing.assert_close(terms['monitor_coupled_CE'], official[f'{setting}/dce_layers'][layer], **VALUE_TOL)
    summed, _, _, _ = run(official, setting)
    averaged, _, _, _ = run(official, setting, layer_reduction='mean')
    torch.testing.assert_close(summed['SRC'].detach(), official[f'{setting}/src_layers'].sum(), **VALUE_TOL)
    for name in ('SRC', 'HDCE', 'monitor_coupled_CE'):
        torch.testing.assert_close(averaged[name].detach(), summed[name].detach() / layers, rtol=1e-6, atol=0)


def test_layer_reduction_is_checked():
    with pytest.raises(ValueError, match="layer_reduction must be one of \\('mean', 'sum'\\)"):
        objectives.SemanticRelation(layer_reduction='max')


def test_a_sliced_F_equals_an_F_built_for_the_narrow_width():
    torch.manual_seed(0)
    wide = define_F('mlp_sample', netF_nc=8, slice_inputs=True).build([12, 12])
    narrow = define_F('mlp_sample', netF_nc=8).build([5, 12])
    with torch.no_grad():
        for name, p in narrow.named_parameters():
            p.copy_(wide.state_dict()[name][:, :5] if name == 'mlp_0.0.weight' else wide.state_dict()[name])
    feats = [torch.randn(2, 5, 4, 4), torch.randn(2, 12, 4, 4)]
    ids = [torch.randperm(16)[:6], torch.randperm(16)[:6]]
    for a, b in zip(wide(feats, 6, ids)[0], narrow(feats, 6, ids)[0]):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_a_sliced_F_refuses_wider_maps_and_an_unsliced_one_other_widths():
    wide = define_F('mlp_sample', netF_nc=8, slice_inputs=True).build([12])
    with pytest.raises(ValueError, match='at most \\[12\\]'):
        wide([torch.randn(1, 13, 4, 4)], 4)
    plain = define_F('mlp_sample', netF_nc=8).build([12])
    with pytest.raises(ValueError, match='built for feature channels \\[12\\], got \\[5\\]'):
        plain([torch.randn(1, 5, 4, 4)], 4)
