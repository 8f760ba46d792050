"""The multi-modal model (models/stargan_v2_model.py): L_semantic against the official multi-modal code,
every loss combination for one step, gradients, resume, generation, test.py and the evaluation CLI."""
from pathlib import Path

import pytest
import torch

from models import objectives
from util.recipes import read_recipe

DATA = Path(__file__).parent / 'data'


def official_objective(use_hard, use_curriculum, lambda_src, lambda_dce, total_iters):
    """The objective stargan_v2 builds from the official multi-modal flags."""
    hardness = objectives.Curriculum(50.0, 1.0, total_iters, use_curriculum=use_curriculum)
    return objectives.SemanticRelation(lambda_hdce=lambda_dce, lambda_src=lambda_src, contrast='dce',
                                       hard_negatives=use_hard, hardness=hardness, src_reduction='sum')


@pytest.mark.parametrize('index', range(3))
def test_semantic_objective_matches_the_official_multimodal_losses(index):
    """studies/make_multimodal_fixture.py ran the official SRC_Loss and PatchDCELoss on these embeddings."""
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


def built_model(tmp_path, *extra, seed=0, fast_kernels=True):
    """stargan_v2 on tiny networks, set up as train.py sets it up, with one batch loaded."""
    import models
    from models.runtime import Runtime
    from tests.conftest import fake_multidomain_batch, train_opt
    opt = train_opt('stargan_v2', tmp_path, '--seed', str(seed), *extra)
    torch.manual_seed(seed)
    model = models.create_model(opt, Runtime.from_options(opt, fast_kernels=fast_kernels))
    batch = fake_multidomain_batch(opt.batch_size, opt.crop_size, opt.num_domains, seed)
    model.data_dependent_initialize(batch)
    model.setup(opt)
    model.parallelize()
    model.set_input(batch)
    return model


COMBINATIONS = {
    'stargan_v2_alone': (read_recipe('stargan_v2_baseline'), {'SRC': 0, 'HDCE': 0, 'CE': 0}),
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
    'amp_bf16': (['--amp', 'bf16'], {}),
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


def test_training_kernels_give_the_generator_step_of_plain_layers(tmp_path):
    """The kernels train.py swaps in (cpu/kernels.py) give the latent-guided generator loss and its
    gradients of the plain layers (a step's weights are not compared: Adam turns the float32 noise of the
    exactly-zero gradients of biases before instance norms into full steps of either sign)."""
    results = []
    for fast in (True, False):
        model = built_model(tmp_path / str(fast), fast_kernels=fast)
        model.set_requires_grad(model.netD, False)
        torch.manual_seed(7)
        model.generator_loss((model.z, model.z2), 'latent').backward()
        losses = {k: float(torch.as_tensor(v).detach()) for k, v in model.losses.items()}
        results.append((losses, {n: p.grad for n, p in model.netG.named_parameters()}))
    assert type(model.netG.encoder[0].norm1).__name__ == 'InstanceNorm2d'
    assert type(built_model(tmp_path / 'x').netG.encoder[0].norm1).__name__ == 'GroupInstanceNorm2d'
    (losses_fast, grads_fast), (losses_plain, grads_plain) = results
    for key in losses_plain:
        assert losses_fast[key] == pytest.approx(losses_plain[key], rel=1e-5, abs=1e-7), key
    largest = max(float(g.abs().max()) for g in grads_plain.values())
    for name, grad in grads_plain.items():
        assert grads_fast[name] is not None, name
        torch.testing.assert_close(grads_fast[name], grad, rtol=1e-4, atol=1e-5 * largest, msg=f'netG.{name}')


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


# ---- the pipeline: train.py (resume), test.py, the evaluation -------------------------------------------------
PIPELINE = ['--model', 'stargan_v2', '--num_domains', '3', '--crop_size', '32', '--load_size', '32',
            '--base_dim', '8', '--max_conv_dim', '16', '--hidden_dim', '16', '--num_patches', '16', '--batch_size', '2',
            '--gpu_ids', '-1', '--num_threads', '0', '--display_id', '0', '--no_tqdm', '--print_freq', '4',
            '--use_curriculum', '--gamma_iter', '8', '--ds_iter', '8', '--seed', '3']


@pytest.fixture(scope='module')
def seasons(tmp_path_factory):
    from datasets.make_multidomain_dataset import make_multidomain_dataset
    root = tmp_path_factory.mktemp('seasons')
    make_multidomain_dataset(root, n_train=4, n_val=2, size=32, seed=0, domains=3)
    return root


def run(dataroot, ckpt, name, *extra):
    import train
    return train.main(['--dataroot', str(dataroot), '--checkpoints_dir', str(ckpt), '--name', name, *PIPELINE,
                       *extra])


def all_weights(run_dir):
    names = ['G', 'M', 'E', 'D', 'F', 'G_ema', 'M_ema', 'E_ema']
    return {n: torch.load(Path(run_dir) / f'latest_net_{n}.pth', weights_only=True) for n in names}


@pytest.mark.slow
def test_resumed_training_ends_with_the_same_weights(seasons, tmp_path):
    """Two epochs (12 steps: λ_ds and γ move every step) straight, and one epoch then a resumed one."""
    from tests.conftest import assert_same_weights
    assert run(seasons, tmp_path, 'straight', '--n_epochs', '2') == 0
    assert run(seasons, tmp_path, 'split', '--n_epochs', '2', '--max_iters', '12') == 0  # one epoch of 12 images
    assert run(seasons, tmp_path, 'split', '--n_epochs', '2', '--continue_train') == 0
    state = torch.load(tmp_path / 'split' / 'latest_train_state.pth', weights_only=True)
    assert state['model_steps'] == 12
    assert_same_weights(all_weights(tmp_path / 'straight'), all_weights(tmp_path / 'split'))


@pytest.fixture(scope='module')
def trained(seasons, tmp_path_factory):
    ckpt = tmp_path_factory.mktemp('ckpt')
    assert run(seasons, ckpt, 'run', '--n_epochs', '1') == 0
    return ckpt


def test_test_py_writes_latent_and_reference_translations_with_the_ema_networks(seasons, trained, tmp_path):
    import test as test_script
    assert test_script.main(['--dataroot', str(seasons), '--checkpoints_dir', str(trained), '--name', 'run',
                             '--results_dir', str(tmp_path), '--phase', 'val', '--gpu_ids', '-1']) == 0
    images = tmp_path / 'run' / 'val_latest' / 'images'
    assert sorted(p.name for p in images.iterdir()) == ['fake_latent', 'fake_ref', 'real_A', 'rec', 'ref']
    assert len(list((images / 'fake_ref').iterdir())) == 6  # 2 val images x 3 domains


def test_translator_generates_per_latent_code_and_per_reference(seasons, trained):
    from models.stargan_v2_model import load_translator
    translator = load_translator(str(trained), 'run', 'latest')
    assert translator.domains == ['autumn', 'summer', 'winter'] and translator.num_domains == 3
    x, y = torch.rand(2, 3, 32, 32) * 2 - 1, torch.tensor([0, 2])
    z = torch.randn(2, translator.latent_dim)
    a = translator.generate(x, translator.style_from_latent(z, y))
    b = translator.generate(x, translator.style_from_latent(torch.randn(2, translator.latent_dim), y))
    assert a.shape == x.shape and a.abs().max() <= 1 and not torch.equal(a, b)
    torch.testing.assert_close(a, translator.generate(x, translator.style_from_latent(z, y)))
    r = translator.generate(x, translator.style_from_reference(torch.rand(2, 3, 32, 32), y))
    assert r.shape == x.shape
    assert translator.model.model_names == ['G_ema', 'M_ema', 'E_ema']
    with pytest.raises(FileNotFoundError, match='train_opt.json'):
        load_translator(str(trained), 'no_such_run')


@pytest.mark.slow
def test_evaluation_cli_on_a_trained_run(seasons, trained, tmp_path):
    """evaluation.multimodal (random weights) then the content score of the synthetic seasons."""
    import json
    from evaluation import multidomain_synthetic, multimodal
    multimodal.main(['--checkpoints_dir', str(trained), '--name', 'run', '--dataroot', str(seasons),
                     '--out', str(tmp_path), '--num_outs_per_domain', '2', '--random_weights',
                     '--fid_input_size', '75', '--no_tqdm'])
    result = json.loads((tmp_path / 'metrics_multimodal.json').read_text())
    assert set(result) >= {'latent', 'reference'}
    assert len([k for k in result['latent']['LPIPS'] if k != 'mean']) == 6
    scores = multidomain_synthetic.score_results(tmp_path / 'latent', seasons)
    assert 0 <= scores['layout_accuracy'] <= 1 and scores['images'] == 6 * 2 * 2


@pytest.mark.parametrize('name,domains,lambda_hdce', [('seasons', 4, 1.0), ('weather', 5, 0.1)])
def test_official_multimodal_recipes_parse(name, domains, lambda_hdce, tmp_path):
    from options.train_options import TrainOptions
    opt = TrainOptions(['--dataroot', str(tmp_path), '--name', name, '--checkpoints_dir', str(tmp_path),
                        *read_recipe(name)]).parse()
    assert (opt.model, opt.num_domains, opt.lambda_HDCE, opt.lambda_SRC) == ('stargan_v2', domains, lambda_hdce, 0.1)
    assert (opt.batch_size, opt.crop_size, opt.lr, opt.f_lr, opt.beta1, opt.beta2) == (8, 256, 1e-4, 1e-6, 0.0, 0.99)
    assert opt.max_iters == 100000 * opt.batch_size and opt.lambda_ds == 2 and opt.use_curriculum
    assert (opt.num_patches, opt.HDCE_gamma, opt.HDCE_gamma_min, opt.gamma_iter, opt.ds_iter) == \
        (128, 50, 1, 100000, 100000)


@pytest.mark.slow
def test_cpu_study_driver_trains_scores_and_summarises(tmp_path):
    import json
    from tests.conftest import load_script
    study = load_script('studies/multimodal_study.py')
    assert study.main(['--out', str(tmp_path), '--steps', '3', '--seeds', '0', '1', '--n_train', '4', '--n_val', '2',
                       '--num_outs', '2', '--no_tqdm', '--configs', 'stargan_v2', 'stargan_v2+semantic']) == 0
    runs = sorted(p.name for p in (tmp_path / 'runs').iterdir())
    assert runs == ['stargan_v2+semantic_s0.json', 'stargan_v2+semantic_s1.json', 'stargan_v2_s0.json',
                    'stargan_v2_s1.json']
    run = json.loads((tmp_path / 'runs' / 'stargan_v2_s0.json').read_text())
    assert '--lambda_SRC' in run['flags'] and len(run['latent']['tasks']) == 12
    summary = json.loads((tmp_path / 'summary.json').read_text())
    paired = summary['reference']['paired_minus_baseline']['stargan_v2+semantic']['layout_accuracy']
    assert sorted(paired['per_seed']) == ['0', '1']
    text = (tmp_path / 'summary.md').read_text()
    assert '(paired)' in text and '*true translation' in text
    truth, copy = summary['references']['truth'], summary['references']['copy']
    assert truth['layout_accuracy'] > 0.9 and copy['diversity_l1'] == 0 and truth['kid'] < copy['kid']
