"""The multi-modal model (models/stargan_v2_model.py): L_semantic against the official multi-modal code,
every loss combination for one step, gradients, resume, generation, test.py and the evaluation CLI."""
from pathlib import Path

import pytest
import torch

from models import objectives

DATA = Path(__file__).parent / 'data'


def official_objective(use_hard, use_curriculum, lambda_src, lambda_dce, total_iters):
    """The objective stargan_v2 builds from the official multi-modal flags."""
    hardness = objectives.Curriculum(50.0, 1.0, total_iters, use_curriculum=use_curriculum)
    return objectives.SemanticRelation(lambda_hdce=lambda_dce, lambda_src=lambda_src, contrast='dce',
                                       hard_negatives=use_hard, hardness=hardness, src_reduction='sum')


@pytest.mark.parametrize('index', range(3))
def test_semantic_objective_matches_the_official_multimodal_losses(index):
    """scripts/make_multimodal_fixture.py ran the official SRC_Loss and PatchDCELoss on these embeddings."""
    ref = torch.load(DATA / 'official_multimodal_semantic.pt', weights_only=True)
    result = ref['results'][index]
    use_hard, use_curriculum, step, lambda_src, lambda_dce = result['setting']
    objective = official_objective(use_hard, use_curriculum, lambda_src, lambda_dce, ref['total_iters'])
    b = ref['batch']
    q = ref['q'].clone().requires_grad_(True)

    def sample(branch, ids=None):
        return [q.reshape(b, -1, q.shape[-1])], [ref['k'].reshape(b, -1, q.shape[-1])], None
    terms = objective(sample, step)
    torch.testing.assert_close(float(terms['SRC'].detach()), result['src'], rtol=1e-5, atol=1e-7)
    # the official value is the coupled cross-entropy (its gradient is the decoupled loss's)
    torch.testing.assert_close(float(terms['monitor_coupled_CE']), result['dce'], rtol=1e-5, atol=1e-6)
    grad, = torch.autograd.grad(objective.total(terms), q)
    torch.testing.assert_close(grad, result['grad_q'], rtol=1e-4, atol=1e-6)


def built_model(tmp_path, *extra, seed=0):
    """stargan_v2 on tiny networks, set up as train.py sets it up, with one batch loaded."""
    import models
    from tests.conftest import fake_multidomain_batch, train_opt
    opt = train_opt('stargan_v2', tmp_path, '--seed', str(seed), *extra)
    torch.manual_seed(seed)
    model = models.create_model(opt)
    batch = fake_multidomain_batch(opt.batch_size, opt.crop_size, opt.num_domains, seed)
    model.data_dependent_initialize(batch)
    model.setup(opt)
    model.parallelize()
    model.set_input(batch)
    return model


COMBINATIONS = {
    'stargan_v2_alone': (['--lambda_SRC', '0', '--lambda_HDCE', '0'], {'SRC': 0, 'HDCE': 0, 'CE': 0}),
    'src_only': (['--lambda_HDCE', '0'], {'HDCE': 0, 'CE': 0}),
    'hdce_only': (['--lambda_SRC', '0'], {'SRC': 0}),
    'dce_no_hneg': (['--no_Hneg'], {}),
    'infonce': (['--patch_loss', 'infonce'], {}),
    'curriculum': (['--use_curriculum', '--gamma_iter', '10'], {}),
    'paper_weighting': (['--hneg_weighting', 'paper'], {}),
    'translation_query': (['--semantic_query', 'translation'], {}),
    'src_mean': (['--src_batch_reduction', 'mean'], {}),
    'cycle_from_real': (['--cycle_source', 'real'], {}),
    'no_r1_no_ds': (['--lambda_reg', '0', '--lambda_ds', '0'], {'reg': 0}),
    'clovaai_generator': (['--mm_generator', 'stargan_v2', '--mm_nce_layers', '1,2'], {}),
    'lsgan': (['--gan_mode', 'lsgan'], {}),
}


@pytest.mark.parametrize('name', COMBINATIONS)
def test_one_step_of_every_loss_combination(name, tmp_path):
    flags, zeros = COMBINATIONS[name]
    model = built_model(tmp_path, *flags)
    before = {n: {k: v.clone() for k, v in getattr(model, 'net' + n).state_dict().items()} for n in 'GMEDF'}
    model.optimize_parameters()
    losses = model.get_current_losses()
    assert all(torch.isfinite(torch.tensor(v)) for v in losses.values()), losses
    for key, value in losses.items():
        suffix = key.rsplit('_', 1)[-1]
        if suffix in zeros:
            assert value == zeros[suffix], key
        elif not key.startswith('lambda'):
            assert value != 0, key
    changed = {n for n in 'GMEDF' if any(not torch.equal(before[n][k], v)
                                         for k, v in getattr(model, 'net' + n).state_dict().items())}
    semantic = not ('SRC' in zeros and 'HDCE' in zeros)
    assert changed == ({'G', 'M', 'E', 'D', 'F'} if semantic else {'G', 'M', 'E', 'D'}), name


@pytest.mark.parametrize('query', ['source', 'translation'])
def test_semantic_gradients_reach_the_generator(query, tmp_path):
    """L_semantic alone: the source-query form (official) trains G's encoder through the source image's
    features; the translation-query form also reaches the decoder, through G(x, s)."""
    model = built_model(tmp_path, '--semantic_query', query)
    G = model.netG
    fake = G(model.real_A, model.netM(model.z, model.y_trg))
    terms = model.objective(model.semantic_sample(fake), 0)
    model.objective.total(terms).backward()

    def has_grad(module):
        return any(p.grad is not None and p.grad.abs().sum() > 0 for p in module.parameters())
    assert has_grad(G.encoder) and has_grad(model.netF)
    assert has_grad(G.decode) == (query == 'translation')
    assert has_grad(model.netM) == (query == 'translation')


def test_diversity_weight_and_hardness_follow_the_step_count(tmp_path):
    model = built_model(tmp_path, '--lambda_ds', '2', '--ds_iter', '10', '--use_curriculum', '--gamma_iter', '10')
    assert model.lambda_ds() == 2.0 and model.objective.hardness(model.steps) == 50.0
    model.steps = 5
    assert model.lambda_ds() == 1.0 and model.objective.hardness(model.steps) == pytest.approx(25.5)
    model.steps = 12
    assert model.lambda_ds() == 0.0


def test_ema_networks_follow_their_networks(tmp_path):
    model = built_model(tmp_path, '--ema_beta', '0.9')
    for name in 'GME':
        torch.testing.assert_close(getattr(model, f'net{name}_ema').state_dict(),
                                   getattr(model, 'net' + name).state_dict())
    ema_before = {k: v.clone() for k, v in model.netG_ema.state_dict().items()}
    model.optimize_parameters()
    for key, value in model.netG.state_dict().items():
        if value.is_floating_point():
            torch.testing.assert_close(model.netG_ema.state_dict()[key], ema_before[key] * 0.9 + value * 0.1)
    assert not any(p.requires_grad for p in model.netG_ema.parameters())


def test_bad_settings_are_named(tmp_path):
    with pytest.raises(ValueError, match='--num_domains'):
        built_model(tmp_path, '--num_domains', '1')
    with pytest.raises(ValueError, match='--mm_nce_layers'):
        built_model(tmp_path, '--mm_nce_layers', '0,99')
    with pytest.raises(ValueError, match='--crop_size'):
        built_model(tmp_path, '--load_size', '64')
    with pytest.raises(ValueError, match='--w_hpf'):
        built_model(tmp_path, '--mm_generator', 'stargan_v2', '--w_hpf', '1')
