"""Every registered model, built with tiny options, runs one training step on CPU (timm-style)."""
import copy

import pytest
import torch

import models
from tests.conftest import H2Z, model_batch, train_opt
from util.recipes import ablation_rows


def one_step(model_name, tmp_path, *extra, batch_size=None, seed=0):
    opt = train_opt(model_name, tmp_path, '--seed', str(seed), *extra)
    torch.manual_seed(seed)
    model = models.create_model(opt)
    batch = model_batch(model_name, batch_size or opt.batch_size, opt.crop_size)
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
    assert 'real_A' in visuals and len(visuals) >= 2 and all(v.dim() == 4 for v in visuals.values())


ROW_LOSS_KEYS = ['G_GAN', 'D_real', 'D_fake', 'G', 'HDCE', 'HDCE_Y', 'SRC', 'monitor_coupled_CE']


@pytest.mark.parametrize('slug,flags', [(slug, flags) for slug, _, flags in ablation_rows()])
def test_table4_ablation_rows_train_and_log_the_same_keys(slug, flags, tmp_path):
    """Every row of recipes/table4_rows.tsv on the horse2zebra recipe: one step, the same log columns."""
    model, _ = one_step('src_hdce', tmp_path, *H2Z, *flags)
    losses = model.get_current_losses()
    assert list(losses) == ROW_LOSS_KEYS, slug  # one column layout for every row of the ablation
    assert (losses['SRC'] > 0) == ('--lambda_SRC' not in flags), slug
    assert losses['HDCE'] != 0 and losses['monitor_coupled_CE'] > 0, slug


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
