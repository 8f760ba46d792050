"""Every registered model, built with tiny options, runs one training step on CPU (timm-style)."""
import copy
import itertools

import pytest
import torch

import models
from tests.conftest import fake_batch, train_opt


def one_step(model_name, tmp_path, *extra, batch_size=None, seed=0):
    opt = train_opt(model_name, tmp_path, '--seed', str(seed), *extra)
    torch.manual_seed(seed)
    model = models.create_model(opt)
    batch = fake_batch(batch_size or opt.batch_size, opt.crop_size)
    model.set_epoch(1)
    model.data_dependent_initialize(batch)
    model.setup(opt)
    before = {n: copy.deepcopy(getattr(model, 'net' + n).state_dict()) for n in model.model_names}
    model.set_input(batch)
    model.optimize_parameters()
    return model, before


@pytest.mark.parametrize('model_name', models.available_models())
def test_every_model_trains_one_step(model_name, tmp_path):
    model, before = one_step(model_name, tmp_path)
    losses = model.get_current_losses()
    assert losses and all(torch.isfinite(torch.tensor(v)) for v in losses.values()), losses
    for name in model.model_names:
        after = getattr(model, 'net' + name).state_dict()
        changed = any(not torch.equal(before[name][k], after[k]) for k in after if after[k].is_floating_point())
        assert changed, f'net{name} of {model_name} did not change after one step'
    visuals = model.get_current_visuals()
    assert 'real_A' in visuals and 'fake_B' in visuals


ABLATION = list(itertools.product(['dce', 'infonce'], [True, False], [True, False]))


@pytest.mark.parametrize('patch_loss,use_src,hneg', ABLATION)
def test_table4_ablation_rows_train(patch_loss, use_src, hneg, tmp_path):
    extra = ['--patch_loss', patch_loss, '--lambda_SRC', '0.05' if use_src else '0', '--dce_idt',
             '--use_curriculum', '--HDCE_gamma', '50', '--HDCE_gamma_min', '10']
    if not hneg:
        extra.append('--no_Hneg')
    model, _ = one_step('src_hdce', tmp_path, *extra)
    losses = model.get_current_losses()
    main = 'HDCE' if patch_loss == 'dce' else 'NCE'
    assert main in losses and main + '_Y' in losses
    assert ('SRC' in losses) == use_src
    assert 'monitor_coupled_CE' in losses


def test_hneg_paper_form_trains(tmp_path):
    model, _ = one_step('src_hdce', tmp_path, '--hneg_weighting', 'paper', '--dce_idt')
    assert torch.isfinite(torch.tensor(model.get_current_losses()['HDCE']))


def test_bad_flags_fail_before_training(tmp_path):
    with pytest.raises(ValueError, match='--nce_layers'):
        one_step('src_hdce', tmp_path, '--nce_layers', '0,4,99')
    with pytest.raises(ValueError, match='--HDCE_gamma'):
        one_step('src_hdce', tmp_path, '--HDCE_gamma', '0')
    with pytest.raises(ValueError, match='--nce_T'):
        one_step('src_hdce', tmp_path, '--nce_T', '-1')


def test_unknown_names_list_the_valid_ones(tmp_path, capsys):
    with pytest.raises(SystemExit):
        train_opt('no_such_model', tmp_path)
    err = capsys.readouterr().err
    assert 'src_hdce' in err and 'cut' in err
    with pytest.raises(SystemExit):
        train_opt('cut', tmp_path, '--netG', 'resnet_99blocks')
    assert 'resnet_9blocks' in capsys.readouterr().err
