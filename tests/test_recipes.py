"""recipes/*.txt: read the same way from Python and bash, and valid train.py flags."""
import subprocess

import pytest

from tests.conftest import ROOT, train_opt
from util import recipes


@pytest.mark.parametrize('name', recipes.available())
def test_python_and_bash_read_the_same_flags(name):
    flags = recipes.read_recipe(name)
    assert flags and all('#' not in f for f in flags)
    printed = subprocess.run(['bash', str(ROOT / 'scripts' / 'recipe.sh'), name], capture_output=True, text=True,
                             check=True).stdout.split()
    assert printed == flags


@pytest.mark.parametrize('name', ['horse2zebra', 'cityscapes', 'cut', 'cpu_demo', 'cpu_10x'])
def test_recipes_parse_as_training_options(name, tmp_path):
    flags = recipes.read_recipe(name) + recipes.read_recipe('cpu_budget') + recipes.read_recipe('cpu_schedule')
    opt = train_opt(flags[flags.index('--model') + 1], tmp_path, *flags)
    assert opt.n_epochs == int(recipes.read_recipe('cpu_schedule')[1])


def test_the_paper_recipe_is_the_official_one():
    flags = recipes.read_recipe('horse2zebra')
    assert ' '.join(flags) == ('--model src_hdce --CUT_mode CUT --dce_idt --lambda_HDCE 0.1 --lambda_SRC 0.05 '
                               '--use_curriculum --HDCE_gamma 50 --HDCE_gamma_min 10')


def test_unknown_recipe_is_named():
    with pytest.raises(ValueError, match="unknown recipe 'nope'.*valid: .*horse2zebra"):
        recipes.read_recipe('nope')
    done = subprocess.run(['bash', str(ROOT / 'scripts' / 'recipe.sh'), 'nope'], capture_output=True, text=True)
    assert done.returncode == 2 and 'no recipe' in done.stderr
