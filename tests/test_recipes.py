"""recipes/: read the same way from Python and bash, valid train.py flags, and the only place recipes are
written out (every training script reads them; no script or test repeats a recipe's loss weights)."""
import re
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


@pytest.mark.parametrize('name', ['horse2zebra', 'cityscapes', 'cut', 'cpu_demo', 'cpu_5x', 'cpu_10x'])
def test_recipes_parse_as_training_options(name, tmp_path):
    flags = recipes.read_recipe(name) + recipes.read_recipe('cpu_budget') + recipes.read_recipe('cpu_schedule')
    opt = train_opt(flags[flags.index('--model') + 1], tmp_path, *flags)
    assert opt.n_epochs == int(recipes.read_recipe('cpu_schedule')[1])


def test_the_demo_recipe_is_the_paper_recipe_on_the_demo_networks():
    # cpu_study.py trains CUT on the demo's networks from cpu_demo_networks.txt: the two files must not drift
    assert recipes.read_recipe('cpu_demo') == recipes.read_recipe('horse2zebra') + recipes.read_recipe(
        'cpu_demo_networks')


def test_the_paper_recipe_is_the_official_one():
    flags = recipes.read_recipe('horse2zebra')
    assert ' '.join(flags) == ('--model src_hdce --CUT_mode CUT --dce_idt --lambda_HDCE 0.1 --lambda_SRC 0.05 '
                               '--use_curriculum --HDCE_gamma 50 --HDCE_gamma_min 10')


def test_unknown_recipe_is_named():
    with pytest.raises(ValueError, match="unknown recipe 'nope'.*valid: .*horse2zebra"):
        recipes.read_recipe('nope')
    done = subprocess.run(['bash', str(ROOT / 'scripts' / 'recipe.sh'), 'nope'], capture_output=True, text=True)
    assert done.returncode == 2 and 'no recipe' in done.stderr


def test_python_and_bash_read_the_same_ablation_rows():
    rows = recipes.ablation_rows()
    assert len(rows) == 8 and len(recipes.ablation_rows(paper_only=True)) == 7
    printed = subprocess.run(
        ['bash', '-c', 'source scripts/common.sh; for s in "${ROW_SLUGS[@]}"; do '
         'printf "%s\\t%s\\t%s\\n" "$s" "${ROW_LABEL[$s]}" "${ROW_FLAGS[$s]}"; done; echo "${PAPER_ROW_SLUGS[*]}"'],
        cwd=ROOT, capture_output=True, text=True, check=True).stdout.splitlines()
    assert printed[:-1] == [f'{slug}\t{label}\t{" ".join(flags)}' for slug, label, flags in rows]
    assert printed[-1].split() == [slug for slug, _, _ in recipes.ablation_rows(paper_only=True)]



def test_a_malformed_ablation_row_is_named(tmp_path, monkeypatch):
    rows = tmp_path / 'rows.tsv'
    rows.write_text('# comment\ndce\tpaper\tDCE\t--patch_loss dce\ndce_hneg paper DCE + Hneg --patch_loss dce\n')
    monkeypatch.setattr(recipes, 'ABLATION_ROWS', rows)
    with pytest.raises(ValueError, match=r'rows.tsv:3: expected slug, paper\|extra, label, flags'):
        recipes.ablation_rows()

# this file pins the official horse2zebra recipe above
# test_paper_protocol.py runs the official Hneg_SRC train.sh / test.sh commands exactly as they are written there
NOT_SCANNED = {'tests/test_recipes.py', 'tests/test_paper_protocol.py'}


def flag_tokens(text):
    """The flags and numbers of a text in order, quotes, commas and words dropped, so that
    `--lambda_HDCE 0.1` in bash and `'--lambda_HDCE', '0.1'` in Python read alike."""
    return re.findall(r'--\w+|(?<![\w.])\d+(?:\.\d+)?(?![\w.])', text)


def recipe_signatures():
    """Per recipe, its runs of two numeric flags (e.g. `--lambda_HDCE 0.1 --lambda_SRC 0.05`,
    `--HDCE_gamma 50 --HDCE_gamma_min 10`): a copy of the recipe shows them."""
    found = {}
    for name in recipes.available():
        tokens = flag_tokens(' '.join(recipes.read_recipe(name)))
        for i in range(len(tokens) - 3):
            a, x, b, y = tokens[i:i + 4]
            if a.startswith('--') and b.startswith('--') and not x.startswith('--') and not y.startswith('--'):
                found.setdefault((a, x, b, y), name)
    return found


def test_no_script_or_test_writes_a_recipe_out():
    signatures = recipe_signatures()
    assert ('--lambda_HDCE', '0.1', '--lambda_SRC', '0.05') in signatures
    copies = {}
    for path in sorted(ROOT.glob('scripts/*')) + sorted(ROOT.glob('tests/*.py')):
        relative = path.relative_to(ROOT).as_posix()
        if relative in NOT_SCANNED or path.suffix not in ('.py', '.sh'):
            continue
        tokens = ' '.join(flag_tokens(path.read_text())) + ' '
        hits = [f'{" ".join(sig)} ({name})' for sig, name in signatures.items() if ' '.join(sig) + ' ' in tokens]
        if hits:
            copies[relative] = hits
    assert not copies, f'recipe flags written out; read recipes/*.txt instead: {copies}'


def starts_training(path):
    """Whether a script runs train.py: a quoted 'train.py' argument in Python, a command line (not a comment) in bash;
    a mention in a docstring or comment is not a run."""
    text = path.read_text()
    if path.suffix == '.py':
        return re.search(r"""['"](?:[\w./]*/)?train\.py['"]""", text) is not None
    return any(re.search(r'train\.py|train_run ', line) for line in text.splitlines()
               if not line.lstrip().startswith('#'))


def test_every_training_script_reads_recipes():
    readers = re.compile(r'RECIPE_[A-Z0-9_]+\[@\]|recipe\.sh|read_recipe\(|ablation_rows\(')
    trainers = [p for p in sorted(ROOT.glob('scripts/*')) if starts_training(p)]
    assert len(trainers) >= 8
    missing = [p.name for p in trainers if not readers.search(p.read_text())]
    assert not missing, f'these scripts train without reading recipes/: {missing}'
    # the bash recipe arrays every script shares come from the recipe files
    common = (ROOT / 'scripts' / 'common.sh').read_text()
    arrays = re.findall(r'read -ra (RECIPE_\w+) <<<"\$\(bash "\$REPO/scripts/recipe\.sh" (\w+)\)"', common)
    assert dict(arrays) == {'RECIPE_H2Z': 'horse2zebra', 'RECIPE_CITYSCAPES': 'cityscapes', 'RECIPE_MONET': 'monet',
                            'RECIPE_CUT': 'cut'}
