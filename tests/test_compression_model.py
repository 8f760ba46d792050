"""The compression model (models/compression_model.py): one step under each setting, the λ = 0 arm against
gan-compression's step 1 written out here, the pairing of the two arms, the teacher's loading, exact resume
and test.py on the trained super-net."""
import copy
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import models
from models import losses
from models.networks.compression import DISTILL_LAYERS, ChannelConfigs
from tests.conftest import assert_same_weights, fake_batch, train_opt
from util.recipes import read_recipe

ZERO = tuple(read_recipe('compression_baseline'))  # Table 3's baseline: L_semantic off


def build(tmp_path, *extra, seed=0):
    """The model set up as train.py sets it up (tiny: ngf 8, 32 px, channels-8 configurations)."""
    opt = train_opt('compression', tmp_path, '--seed', str(seed), *extra)
    torch.manual_seed(seed)
    model = models.create_model(opt)
    model.set_epoch(1)
    model.data_dependent_initialize(fake_batch(1, opt.crop_size))
    model.setup(opt)
    model.parallelize()
    return model


def train_steps(model, steps, seed=0):
    configs = []
    for step in range(steps):
        model.set_input(fake_batch(1, model.opt.crop_size, seed=seed + step))
        model.optimize_parameters()
        configs.append(model.config)
    return configs


def weights(model, names='GDAF'):
    return {n: copy.deepcopy(getattr(model, 'net' + n).state_dict()) for n in names}


SETTINGS = {
    'default': (),
    'baseline': ZERO,
    'aligned': ('--dataset_mode', 'aligned'),
    'fixed_config': ('--config_str', '4_8_4_4_8_4_8_4'),
    'mean_over_layers': ('--layer_reduction', 'mean', '--no_hard'),
    'official_aliases': ('--lambda_dce', '0.5', '--gamma_start', '20', '--gamma_min', '5', '--n_patch', '8'),
    'no_distill': ('--lambda_distill', '0',),
    'aligned_hinge': ('--dataset_mode', 'aligned', '--gan_mode', 'hinge'),  # the pix2pix tasks' setting
}


@pytest.mark.parametrize('name', SETTINGS)
def test_one_step_under_each_setting(name, tmp_path):
    model = build(tmp_path, *SETTINGS[name])
    before = weights(model)
    train_steps(model, 1)
    logged = model.get_current_losses()
    assert list(logged) == ['D_real', 'D_fake', 'G_gan', 'G_recon', 'G_distill', 'G', 'HDCE', 'SRC',
                            'monitor_coupled_CE']
    assert all(torch.isfinite(torch.tensor(v)) for v in logged.values()), logged
    semantic = name not in ('baseline',)
    assert (logged['SRC'] > 0) == semantic and (logged['HDCE'] != 0) == semantic
    assert (logged['G_distill'] > 0) == (name != 'no_distill')
    after = weights(model)
    changed = {n for n in before if any(not torch.equal(before[n][k], after[n][k]) for k in before[n])}
    expected = set('GD') | ({'F'} if semantic else set()) | ({'A'} if name != 'no_distill' else set())
    assert changed == expected


def test_official_aliases_set_the_project_flags(tmp_path):
    opt = train_opt('compression', tmp_path, *SETTINGS['official_aliases'], '--no_hard')
    assert (opt.lambda_HDCE, opt.HDCE_gamma, opt.HDCE_gamma_min, opt.num_patches, opt.no_Hneg) == (0.5, 20, 5, 8, True)
    opt = train_opt('compression', tmp_path)  # the official compression defaults
    assert (opt.lambda_SRC, opt.lambda_HDCE, opt.HDCE_gamma, opt.HDCE_gamma_min, opt.use_curriculum,
            opt.layer_reduction, opt.no_Hneg) == (10, 0.1, 50, 10, True, 'sum', False)


def gan_compression_step(nets, optimizers, teacher, config, batch, opt):
    """gan-compression's ResnetSupernet.optimize_parameters (unaligned, lsgan), written out on copies."""
    G, D, A = nets
    real_A, real_B = batch['A'], batch['B']
    G.set_config(config)
    with torch.no_grad():
        teacher_B, teacher_feats = teacher(real_A, list(DISTILL_LAYERS))
    fake_B, student_feats = G(real_A, list(DISTILL_LAYERS))
    for o in optimizers:
        o.zero_grad(set_to_none=True)
    D.requires_grad_(True)
    loss_D = (losses.gan_loss(D(fake_B.detach()), False, 'lsgan').mean()
              + losses.gan_loss(D(real_B), True, 'lsgan').mean()) * 0.5
    loss_D.backward()
    D.requires_grad_(False)
    distill = 0.0
    for netA, s, t in zip(A, student_feats, teacher_feats):
        distill = distill + F.mse_loss(netA(s), t)
    loss_G = (losses.gan_loss(D(fake_B), True, 'lsgan').mean() * opt.lambda_gan
              + F.l1_loss(fake_B, teacher_B) * opt.lambda_recon + distill * opt.lambda_distill)
    loss_G.backward()
    for o in optimizers:
        o.step()


def test_the_lambda_zero_arm_is_gan_compression_step_1_bit_for_bit(tmp_path):
    """With λ_SRC = λ_hDCE = 0 nothing of L_semantic (F, its optimizer, its positions) reaches the student:
    N steps equal gan-compression's step 1 on the same networks, configurations and batches."""
    model = build(tmp_path, *ZERO)
    nets = [copy.deepcopy(model._unwrapped(n)) for n in 'GDA']
    optimizers = [torch.optim.Adam(list(nets[0].parameters()) + list(nets[2].parameters()), lr=model.opt.lr,
                                   betas=(model.opt.beta1, model.opt.beta2)),
                  torch.optim.Adam(nets[1].parameters(), lr=model.opt.lr, betas=(model.opt.beta1, model.opt.beta2))]
    configs = train_steps(model, 4)
    assert len(set(configs)) > 1  # the configuration changes between steps
    for step, config in enumerate(configs):
        gan_compression_step(nets, optimizers, model.netT, config, fake_batch(1, model.opt.crop_size, seed=step),
                             model.opt)
    assert_same_weights({n: net.state_dict() for n, net in zip('GDA', nets)}, weights(model, 'GDA'))


def test_the_two_arms_are_paired(tmp_path):
    """Baseline and +Ours start from the same G, D, A (and F), draw the same configurations, leave the global
    RNGs alike (the patch positions have their own generator), and end with different students."""
    baseline, ours = build(tmp_path / 'b', *ZERO), build(tmp_path / 'o')
    assert_same_weights(weights(baseline), weights(ours))
    runs = []
    for model in (baseline, ours):
        torch.manual_seed(123)
        runs.append((train_steps(model, 3), torch.get_rng_state()))
    assert runs[0][0] == runs[1][0]
    assert torch.equal(runs[0][1], runs[1][1])
    assert not torch.equal(baseline.netG.state_dict()['model.1.weight'], ours.netG.state_dict()['model.1.weight'])


def test_the_configuration_sequence_is_the_seeded_sampler(tmp_path):
    model = build(tmp_path, *ZERO, seed=5)
    reference = ChannelConfigs('channels-8', seed=5)
    assert train_steps(model, 3) == [reference.sample() for _ in range(3)]
    fixed = build(tmp_path / 'fixed', '--config_str', '4_8_4_4_8_4_8_4')
    assert train_steps(fixed, 2) == [(4, 8, 4, 4, 8, 4, 8, 4)] * 2


def test_the_teacher_is_loaded_frozen_and_checked(tmp_path):
    source = build(tmp_path / 'src')
    path = tmp_path / 'teacher.pth'
    torch.save({'module.' + k: v for k, v in source.netT.state_dict().items()}, path)
    model = build(tmp_path / 'loaded', '--teacher_path', str(path), seed=1)
    assert_same_weights({'T': source.netT.state_dict()}, {'T': model.netT.state_dict()})
    before = copy.deepcopy(model.netT.state_dict())
    train_steps(model, 1)
    assert_same_weights({'T': before}, {'T': model.netT.state_dict()})
    assert 'T' not in model.model_names  # the teacher is an input, not saved with the run
    with pytest.raises(FileNotFoundError, match='--teacher_path'):
        build(tmp_path / 'missing', '--teacher_path', str(tmp_path / 'none.pth'))
    with pytest.raises(ValueError, match='--teacher_ngf 4 .*pass --teacher_netG resnet_9blocks --teacher_ngf 8'):
        build(tmp_path / 'narrow', '--teacher_path', str(path), '--teacher_ngf', '4')
    with pytest.raises(ValueError, match='--teacher_ngf 16 > --ngf 8'):
        build(tmp_path / 'wide', '--teacher_ngf', '16')


def test_aligned_data_reconstructs_the_target_and_conditions_d(tmp_path):
    """--dataset_mode aligned (map->satellite, Cityscapes): L1 to the real target, not the teacher's translation,
    and a conditional D on (A, ·), as gan-compression's aligned step 1."""
    model = build(tmp_path, '--dataset_mode', 'aligned', '--gan_mode', 'hinge', '--lambda_recon', '10')
    model.set_input(fake_batch(1, model.opt.crop_size, seed=7))
    model.forward()
    model.compute_G_loss()
    expected = F.l1_loss(model.fake_B, model.real_B) * 10
    assert model.losses['G_recon'].item() == pytest.approx(expected.item(), rel=1e-6)
    assert model.losses['G_recon'].item() != pytest.approx((F.l1_loss(model.fake_B, model.teacher_B) * 10).item())
    assert model.discriminator_input(model.fake_B).shape[1] == 6


def test_fine_tuning_restores_g_and_d_and_trains_one_configuration(tmp_path):
    """gan-compression's finetune.sh: --config_str from the step-1 super-net's G and D (files of a step-1 run);
    A and F start afresh unless restored too."""
    step1 = build(tmp_path / 'step1', '--dataset_mode', 'aligned', seed=0)
    train_steps(step1, 2)
    files = {}
    for name in 'GDAF':
        files[name] = tmp_path / f'latest_net_{name}.pth'
        torch.save(getattr(step1, 'net' + name).state_dict(), files[name])
    config = '4_8_4_4_8_4_8_4'
    tune = build(tmp_path / 'tune', '--dataset_mode', 'aligned', '--config_str', config, '--restore_G_path',
                 str(files['G']), '--restore_D_path', str(files['D']), seed=1)
    assert_same_weights(weights(step1, 'GD'), weights(tune, 'GD'))
    assert not torch.equal(step1.netA.state_dict()['0.weight'], tune.netA.state_dict()['0.weight'])
    before = weights(tune, 'G')
    assert train_steps(tune, 2) == [(4, 8, 4, 4, 8, 4, 8, 4)] * 2
    assert not torch.equal(before['G']['model.1.weight'], tune.netG.state_dict()['model.1.weight'])
    every = build(tmp_path / 'every', '--dataset_mode', 'aligned', '--config_str', config,
                  *[arg for n in 'GDAF' for arg in (f'--restore_{n}_path', str(files[n]))], seed=2)
    assert_same_weights(weights(step1), weights(every))
    alias = build(tmp_path / 'alias', '--dataset_mode', 'aligned', '--restore_student_G_path', str(files['G']))
    assert_same_weights(weights(step1, 'G'), weights(alias, 'G'))
    with pytest.raises(FileNotFoundError, match='--restore_D_path'):
        build(tmp_path / 'missing', '--restore_D_path', str(tmp_path / 'none.pth'))
    with pytest.raises(RuntimeError, match='--restore_D_path .* does not fit netD'):
        build(tmp_path / 'unaligned', '--restore_D_path', str(files['D']))  # D of an aligned run: 6 channels


def test_bad_settings_are_named(tmp_path):
    with pytest.raises(ValueError, match='super_mobile_resnet_9blocks'):
        build(tmp_path, '--netG', 'resnet_9blocks')
    with pytest.raises(ValueError, match='channels-16 reaches width 16 > --ngf 8'):
        build(tmp_path, '--config_set', 'channels-16')
    with pytest.raises(ValueError, match='--config_set: no default for a super-net of --ngf 12'):
        build(tmp_path, '--ngf', '12')


# ---- train.py (resume) and test.py --------------------------------------------------------------------------
PIPELINE = ['--model', 'compression', '--ngf', '8', '--ndf', '8', '--load_size', '32', '--crop_size', '32',
            '--num_patches', '16', '--gpu_ids', '-1', '--num_threads', '0', '--display_id', '0', '--no_tqdm',
            '--n_epochs', '1', '--n_epochs_decay', '1', '--seed', '3', '--print_freq', '2']


@pytest.fixture(scope='module')
def synthetic(tmp_path_factory):
    from datasets.make_synthetic_dataset import make_synthetic_dataset
    root = tmp_path_factory.mktemp('synthetic')
    make_synthetic_dataset(root, n_train=4, n_test=2, size=32, seed=0)
    return root


def train(dataroot, ckpt, name, *extra):
    import train as train_script
    return train_script.main(['--dataroot', str(dataroot), '--checkpoints_dir', str(ckpt), '--name', name,
                              *PIPELINE, *extra])


def run_weights(run_dir):
    return {n: torch.load(Path(run_dir) / f'latest_net_{n}.pth', weights_only=True) for n in 'GDAF'}


@pytest.mark.slow
def test_resumed_training_ends_with_the_same_weights(synthetic, tmp_path):
    """Two epochs (8 steps; γ moves per epoch) straight, and 6 steps then a resumed run."""
    assert train(synthetic, tmp_path, 'straight') == 0
    assert train(synthetic, tmp_path, 'split', '--max_iters', '6') == 0
    state = torch.load(tmp_path / 'split' / 'latest_train_state.pth', weights_only=True)
    assert {'config_rng', 'patch_rng', 'config'} <= set(state)
    assert train(synthetic, tmp_path, 'split', '--continue_train') == 0
    assert_same_weights(run_weights(tmp_path / 'straight'), run_weights(tmp_path / 'split'))


@pytest.mark.slow
def test_test_py_translates_with_the_super_net_at_a_configuration(synthetic, tmp_path):
    import test as test_script
    from PIL import Image

    from options.test_options import TestOptions
    assert train(synthetic, tmp_path, 'run', '--n_epochs_decay', '0') == 0
    common = ['--dataroot', str(synthetic), '--checkpoints_dir', str(tmp_path), '--name', 'run', '--gpu_ids', '-1',
              '--num_test', '2', '--model', 'compression']
    outputs = {}
    for config in ('8_8_8_8_8_8_8_8', '4_4_4_4_4_4_4_4'):
        results = tmp_path / config
        summary = test_script.run_test(TestOptions(common + ['--results_dir', str(results), '--config_str', config])
                                       .parse())
        assert summary['num_images'] == 2
        outputs[config] = sorted((Path(summary['images_dir']) / 'fake_B').glob('*.png'))
        assert len(outputs[config]) == 2
    a, b = (torch.tensor(list(Image.open(outputs[c][0]).getdata())) for c in outputs)
    assert not torch.equal(a, b)  # the configuration reaches the super-net


def test_the_gpu_check_runs_on_the_cpu(tmp_path):
    """studies/compression/gpu_check.py, prepared for a GPU machine, on CPU at 32 px: both arms time their steps,
    the exported sub-net equals the super-net, MACs are counted."""
    from tests.conftest import load_script
    check = load_script('studies/compression/gpu_check.py')
    result = check.main(['--device', 'cpu', '--size', '32', '--ngf', '8', '--steps', '2', '--warmup', '1',
                         '--json', str(tmp_path / 'check.json')])
    assert set(result['arms']) == {'baseline', 'ours'}
    assert result['arms']['baseline']['losses']['SRC'] == 0 and result['arms']['ours']['losses']['SRC'] > 0
    assert all(arm['iterations_per_second'] > 0 for arm in result['arms'].values())
    assert result['subnets']['4_4_4_4_4_4_4_4']['max_abs_difference'] == 0
    assert result['subnets']['teacher']['params'] > result['subnets']['4_4_4_4_4_4_4_4']['params']


def ddp_worker(rank, ports, dataset, ckpt):
    """One torchrun worker of train.py --model compression (gloo, CPU): 4 steps, then a resumed run."""
    import os

    import train as train_script
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE='2', MASTER_ADDR='127.0.0.1',
                      MASTER_PORT=str(ports[0]))
    torch.set_num_threads(1)
    argv = ['--dataroot', str(dataset), '--checkpoints_dir', str(ckpt), '--name', 'ddp', *PIPELINE]
    assert train_script.main(argv + ['--max_iters', '4']) == 0
    os.environ['MASTER_PORT'] = str(ports[1])
    assert train_script.main(argv + ['--continue_train']) == 0


@pytest.mark.slow
def test_train_py_under_two_processes(synthetic, tmp_path):
    """DistributedDataParallel (gloo, 2 processes): the super-net's sliced weights, A (a module with a forward, as
    DDP needs) and F train, the run saves and resumes to the end of its 2 epochs."""
    import torch.multiprocessing as mp

    from tests.test_distributed import free_port
    mp.spawn(ddp_worker, args=((free_port(), free_port()), synthetic, tmp_path), nprocs=2)
    state = torch.load(tmp_path / 'ddp' / 'latest_train_state.pth', weights_only=True)
    assert (state['epoch'], state['epoch_done'], state['total_iters']) == (2, True, 8)
    assert all((tmp_path / 'ddp' / f'latest_net_{n}.pth').is_file() for n in 'GDAF')
