"""Every command README.md and docs/*.md show a user, run or checked as the user would run it (issue 31).

The commands come from the fenced code blocks (`\\` continuations joined, `VAR=... ` prefixes kept as the
environment, `$(bash scripts/recipe.sh NAME)` expanded from recipes/). For each one:

- all of them: the file or module exists and the option parser accepts the flags (a command whose file or
  flag no longer exists fails); a test.py command on a dataset of known size translates all of its test set;
- python commands of README.md and docs/usage.md run in a folder holding generated datasets under the
  documented paths, adding only size, device and iteration flags (ADDED; never --seed or --num_test); then
  train.py's schedule in train_opt.json is the recipe's and test.py's results.json says every test image was
  translated; those that need real weights say so (NEEDS) and run as far as they can without them;
- `bash scripts/...` commands run with DRY_RUN=1 (they print each command, one a line, and run nothing): the
  printed train.py/test.py lines parse, train.py's schedule is the recipe's, test.py scores the whole test set
  and runs on one dataset share one --seed.
"""
import argparse
import contextlib
import importlib
import importlib.util
import io
import json
import os
import re
import shlex
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from PIL import Image

from tests.conftest import ROOT
from util import recipes

DOCS = [ROOT / 'README.md', *sorted((ROOT / 'docs').glob('*.md'))]
RUN_IN_FULL = ('README.md', 'usage.md')  # their python commands run; the other pages' are checked
FENCE = re.compile(r'^```[^\n]*\n(.*?)^```', re.S | re.M)
COMMAND = re.compile(r'^\s*(?:[A-Z_][A-Z0-9_]*=\S*\s+)*(?:python (?:train\.py|test\.py|-m evaluation\b|scripts/)'
                     r'|bash scripts/)')
RECIPE_CALL = re.compile(r'\$\(bash scripts/recipe\.sh (\w+)\)')

# What a test adds to a command it runs: small images and networks (4 filters wide), the CPU without loader
# processes, two iterations (train.py). test.py takes the rest from the run's train_opt.json, and --ngf for an
# official pretrained folder, which has none.
ADDED = {
    'train': ['--load_size', '32', '--crop_size', '32', '--ngf', '4', '--ndf', '4', '--gpu_ids', '-1',
              '--num_threads', '0', '--max_iters', '2'],
    'test': ['--load_size', '32', '--crop_size', '32', '--ngf', '4', '--gpu_ids', '-1'],
}
# the flags that make a training schedule (a documented command must not change its recipe's)
SCHEDULE = ('n_epochs', 'n_epochs_decay', 'lr', 'lr_policy', 'lr_decay_iters', 'batch_size', 'beta1', 'beta2',
            'epoch_count')
# source images of the real test splits (the paper scores all of them), by the folder the command names
TEST_SET = {('horse2zebra', 'test', 'AtoB'): 120, ('horse2zebra', 'test', 'BtoA'): 140,
            ('cityscapes', 'test', 'BtoA'): 500, ('cityscapes', 'val', 'BtoA'): 500, ('maps', 'val', 'BtoA'): 1098}
# generated stand-ins for the documented dataset folders, 16 px images: test splits larger than CUT's --num_test 50
# default, smaller than the real ones (that a command's --num_test covers those is checked from TEST_SET)
GENERATED = {'datasets/horse2zebra': {'trainA': 2, 'trainB': 2, 'testA': 60, 'testB': 70}}
# official pretrained folders a documented command tests, made from the weights of a documented run
PRETRAINED = {'h2z-best': ('exp_h2z', 'best')}

# Commands that need what the tests cannot have: (pattern on the command, what it needs, the error a run stops at
# where it runs up to the missing file, else None: not run). The others of README.md and docs/usage.md run.
NEEDS = [
    (r'python -m evaluation\.fid', 'the FID Inception weights pt_inception-2015-12-05-6726825d.pth (docs/inputs.md); '
                                   'runs past the whole-test-set check up to loading them',
     'FID Inception weights not found'),
    (r'python scripts/benchmark\.py', 'minutes of CPU at 256 px (tests/test_benchmark_official.py runs it small)',
     None),
    (r'bash scripts/gpu_check\.sh', 'a CUDA GPU (scripts/gpu_check.sh is the GPU test)', None),
    (r'bash scripts/gpu_wheels\.sh', 'downloads wheels from PyPI (tests/test_gpu_check.py builds and uses them)', None),
    (r'python -m evaluation\.(cityscapes|miou)',
     'the DRN weights (drn_d_22_cityscapes.pth, drn-d-105_ms_cityscapes.pth) and Cityscapes', None),
    (r'python -m evaluation\.(sweep|multimodal)', 'the FID / LPIPS weights and the real datasets', None),
    (r'--model compression|scripts/(evolution_search|export_subnet|import_teacher)\.py',
     'a trained teacher and super-net (docs/compression.md; tests/test_compression_model.py)', None),
    (r'--name seasons_ours|datasets/seasons', 'the Seasons dataset (tests/test_stargan_v2.py)', None),
]
# multi-modal test.py writes its translations for viewing; evaluation.multimodal scores from the checkpoints
NOT_SCORED = [r'--dataroot datasets/seasons']


@dataclass
class Command:
    doc: str
    line: int
    text: str
    env: dict = field(default_factory=dict)
    argv: list = field(default_factory=list)  # after the interpreter: train.py ..., -m evaluation.fid ...

    @property
    def id(self):
        return f'{self.doc}:{self.line}'

    @property
    def kind(self):
        if self.argv[0] == 'bash':
            return 'bash'
        head = self.argv[1]
        return {'train.py': 'train', 'test.py': 'test', '-m': 'module'}.get(head, 'script')

    @property
    def args(self):
        """The flags, after the file or module."""
        return self.argv[3:] if self.kind == 'module' else self.argv[2:]

    def needs(self):
        """(what the command needs that tests lack, the error a run stops at or None) or None."""
        return next(((why, stops) for pattern, why, stops in NEEDS if re.search(pattern, self.text)), None)


def split_command(text):
    """(environment, argv) of one shell line: VAR=value prefixes, then the words; `...` after a flag stands for
    its value (PLACEHOLDER), elsewhere for more flags (dropped)."""
    text = RECIPE_CALL.sub(lambda m: ' '.join(map(shlex.quote, recipes.read_recipe(m.group(1)))), text)
    words = shlex.split(text, comments=True)
    env = {}
    while words and re.match(r'^[A-Z_][A-Z0-9_]*=', words[0]):
        key, _, value = words.pop(0).partition('=')
        env[key] = value
    argv = []
    for word in words:
        if word == '...':
            if argv and argv[-1].startswith('--'):
                argv.append('PLACEHOLDER')
            continue
        argv.append(word)
    return env, argv


def documented_commands(docs=DOCS):
    commands = []
    for doc in docs:
        text = doc.read_text()
        for match in FENCE.finditer(text):
            first = text.count('\n', 0, match.start(1)) + 1
            lines = match.group(1).splitlines()
            i = 0
            while i < len(lines):
                start, line = i, lines[i]
                while line.rstrip().endswith('\\') and i + 1 < len(lines):
                    i += 1
                    line = line.rstrip()[:-1] + ' ' + lines[i].strip()
                i += 1
                if COMMAND.match(line):
                    env, argv = split_command(line)
                    commands.append(Command(doc.name, first + start, line.strip(), env, argv))
    return commands


COMMANDS = documented_commands()


def quiet(function, *args, **kwargs):
    """Call `function`, its stdout kept (returned) rather than printed."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        result = function(*args, **kwargs)
    return result, out.getvalue()


class _Parsed(Exception):
    """Raised instead of running a command once its parser accepted the flags."""


def parse_only(main, argv):
    """Run `main(argv)` up to its argparse parse: an unknown flag exits 2 (argparse), else _Parsed. A command that
    passes the flags it does not know on (parse_known_args, e.g. the sweep to test.py) stops there."""
    parse_args, parse_known_args = argparse.ArgumentParser.parse_args, argparse.ArgumentParser.parse_known_args
    inside = []

    def parse_then_stop(self, args=None, namespace=None):
        inside.append(True)
        try:
            parse_args(self, args, namespace)
        finally:
            inside.pop()
        raise _Parsed

    def parse_known_then_stop(self, args=None, namespace=None):
        result = parse_known_args(self, args, namespace)
        if not inside:
            raise _Parsed
        return result
    argparse.ArgumentParser.parse_args = parse_then_stop
    argparse.ArgumentParser.parse_known_args = parse_known_then_stop
    try:
        quiet(main, argv)
    except _Parsed:
        return
    finally:
        argparse.ArgumentParser.parse_args = parse_args
        argparse.ArgumentParser.parse_known_args = parse_known_args
    raise AssertionError('the command parsed no arguments with argparse')


def parsed(kind, argv):
    """train.py's or test.py's options for `argv`, parsed as the script parses them (nothing saved), and the
    option set that parsed them."""
    from options.test_options import TestOptions
    from options.train_options import TrainOptions
    option_set = (TrainOptions if kind == 'train' else TestOptions)(argv)
    return quiet(option_set.parse, save=False)[0], option_set


def options(kind, argv):
    return parsed(kind, argv)[0]


_RECIPES = {}


def recipe_options():
    """{name: (options of recipes/<name>.txt, the option names it sets)} of every recipe."""
    if not _RECIPES:
        for name in recipes.available():
            flags = recipes.read_recipe(name)
            opt, option_set = parsed('train', flags + ['--gpu_ids', '-1'])
            dests = {s: a.dest for a in option_set.parser._actions for s in a.option_strings}
            _RECIPES[name] = (opt, {dests[f] for f in flags if f in dests})
    return _RECIPES


# recipes that are added after a dataset's recipe to switch L_semantic off (the baseline arms): what they set is
# left out when the recipe a command follows is looked for
ADD_ONS = ('compression_baseline', 'stargan_v2_baseline')


def recipe_of(opt):
    """The recipe the training options `opt` follow (the one setting most options, all as `opt` has them, but for
    what the baseline add-ons switch)."""
    every = recipe_options()
    switched = set().union(*(every[name][1] for name in ADD_ONS if name in every))
    best, best_keys = None, set()
    for name, (recipe, keys) in every.items():
        keys = keys - switched
        if name in ADD_ONS or not keys:
            continue
        if all(getattr(opt, k, None) == getattr(recipe, k) for k in keys) and len(keys) > len(best_keys):
            best, best_keys = name, keys
    return best


def schedule(opt):
    return {k: getattr(opt, k, None) for k in SCHEDULE}


def expected_test_set(opt):
    """Source images of the real split the test options name (TEST_SET), or None when not known."""
    parts = Path(opt.dataroot).parts
    for (dataset, phase, direction), count in TEST_SET.items():
        if dataset in parts and opt.phase == phase and opt.direction == direction:
            return count
    return None


# ----------------------------------------------------------------------------------------------------------
# every command: its file exists and its flags parse; test.py commands cover the test set

def test_the_docs_show_commands_of_every_kind():
    kinds = {c.kind for c in COMMANDS}
    assert kinds == {'train', 'test', 'module', 'script', 'bash'}, kinds
    assert {c.doc for c in COMMANDS} >= set(RUN_IN_FULL)


def test_a_command_whose_file_or_flag_is_gone_fails(tmp_path):
    doc = tmp_path / 'page.md'
    doc.write_text('```bash\npython test.py --dataroot d --no_such_flag 1\npython scripts/gone.py --x\n'
                   'python -m evaluation.fid a b \\\n  --no-such-flag\npython -m evaluation.gone a\n'
                   'FOO=1 bash scripts/gone.sh\npython test.py --dataroot datasets/horse2zebra\n```\n')
    commands = documented_commands([doc])
    assert [(c.line, c.kind, c.env) for c in commands] == [(2, 'test', {}), (3, 'script', {}), (4, 'module', {}),
                                                          (6, 'module', {}), (7, 'bash', {'FOO': '1'}), (8, 'test', {})]
    for command in commands:
        with pytest.raises((SystemExit, AssertionError)):
            test_command_exists_and_parses(command)


@pytest.mark.parametrize('command', COMMANDS, ids=[c.id for c in COMMANDS])
def test_command_exists_and_parses(command):
    if command.kind == 'bash':
        assert (ROOT / command.argv[1]).is_file(), f'{command.id}: {command.argv[1]} does not exist'
        return
    if command.kind == 'module':
        module = command.argv[2]
        assert importlib.util.find_spec(module), f'{command.id}: no module {module}'
        parse_only(importlib.import_module(module).main, command.args)
        return
    path = ROOT / command.argv[1]
    assert path.is_file(), f'{command.id}: {command.argv[1]} does not exist'
    if command.kind == 'script':
        from tests.conftest import load_script
        parse_only(load_script(command.argv[1]).main, command.args)
        return
    opt = options(command.kind, command.args)
    if command.kind == 'test' and not any(re.search(p, command.text) for p in NOT_SCORED):
        wanted = expected_test_set(opt)
        if wanted is not None:
            assert opt.num_test >= wanted, (f'{command.id}: --num_test {opt.num_test} translates part of the '
                                            f'{wanted} test images of {opt.dataroot}')


# ----------------------------------------------------------------------------------------------------------
# README.md's and docs/usage.md's python commands, run

RUNS = [c for c in COMMANDS if c.doc in RUN_IN_FULL and c.kind != 'bash' and (c.needs() or (0, 1))[1]]
NOT_RUN = [c for c in COMMANDS if (c.doc in RUN_IN_FULL and c.kind != 'bash' and c not in RUNS)
           or (c.kind == 'bash' and c.needs())]


def write_images(folder, count, size=16):
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        Image.new('RGB', (size, size), (i % 256, 2 * i % 256, 255 - i % 256)).save(folder / f'{i:03d}.png')


def make_pretrained(workspace, name):
    """An official pretrained folder (the weights of a documented run, no train_opt.json), as users unpack it."""
    source, epoch = PRETRAINED[name]
    folder = workspace / 'checkpoints' / name
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(workspace / 'checkpoints' / source / 'latest_net_G.pth', folder / f'{epoch}_net_G.pth')


def run_in(workspace, command):
    """Run `command` in `workspace` as the user would, plus ADDED: (exit status, stderr text)."""
    from evaluation.common import cli
    argv = command.args + ADDED.get(command.kind, [])
    if command.kind == 'test' and '--name' in argv and argv[argv.index('--name') + 1] in PRETRAINED:
        make_pretrained(workspace, argv[argv.index('--name') + 1])
    err = io.StringIO()
    env = {'TORCH_HOME': str(workspace / 'torch_home'), **command.env}  # no FID weights here
    saved_env, saved_cwd = dict(os.environ), os.getcwd()
    os.environ.update(env)
    os.chdir(workspace)
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            if command.kind == 'train':
                import train
                status = train.main(argv)
            elif command.kind == 'test':
                import test
                status = test.main(argv)
            elif command.kind == 'module':
                status = cli(importlib.import_module(command.argv[2]).main, argv)
            else:
                from tests.conftest import load_script
                status = cli(load_script(command.argv[1]).main, argv)
    except SystemExit as exc:
        status = exc.code if isinstance(exc.code, int) else (print(exc.code, file=err) or 1)
    finally:
        os.chdir(saved_cwd)
        os.environ.clear()
        os.environ.update(saved_env)
    return status or 0, err.getvalue()


@pytest.fixture(scope='module')
def ran(tmp_path_factory):
    """Every command of RUNS, in the documents' order, in one folder holding the GENERATED datasets."""
    workspace = tmp_path_factory.mktemp('user')
    for folder, splits in GENERATED.items():
        for split, count in splits.items():
            write_images(workspace / folder / split, count)
    results = {}  # a command shown twice (README.md and docs/usage.md, flags in any order) runs once
    for command in RUNS:
        key = same_command(command.argv)
        if key not in results:
            results[key] = run_in(workspace, command)
    return workspace, {c.id: results[same_command(c.argv)] for c in RUNS}


def same_command(argv):
    """`argv` with its flags (each with its values) in a fixed order: one key for one command written twice."""
    head, groups = [], []
    for word in argv:
        if word.startswith('--'):
            groups.append([word])
        elif groups:
            groups[-1].append(word)
        else:
            head.append(word)
    return tuple(head) + tuple(sorted(tuple(g) for g in groups))


@pytest.mark.slow
@pytest.mark.parametrize('command', RUNS, ids=[c.id for c in RUNS])
def test_documented_python_command_runs(ran, command):
    workspace, results = ran
    status, err = results[command.id]
    needs = command.needs()
    if needs:  # runs up to the file it needs, past the checks before it
        assert status != 0 and needs[1] in err, (command.id, err[-2000:])
        return
    assert status == 0, (command.id, err[-2000:])
    argv = command.args
    if command.kind == 'train':
        opt = options('train', argv)
        saved = json.loads((workspace / 'checkpoints' / opt.name / 'train_opt.json').read_text())
        recipe = recipe_of(opt)
        assert recipe is not None, f'{command.id}: follows no recipe of recipes/'
        assert {k: saved.get(k) for k in SCHEDULE} == schedule(recipe_options()[recipe][0]), (command.id, recipe)
    elif command.kind == 'test':
        opt = options('test', argv)
        folder = workspace / 'results' / opt.name / f'{opt.phase}_{opt.epoch}'
        record = json.loads((folder / 'results.json').read_text())
        assert record['num_source_images'] == record['test_set_images'] > 50, record


@pytest.mark.parametrize('command', NOT_RUN, ids=[c.id for c in NOT_RUN])
def test_commands_not_run_say_why(command):
    """README.md's and docs/usage.md's python commands and the scripts that do not run here say why (NEEDS)."""
    assert command.needs() and command.needs()[0], f'{command.id} neither runs nor says what it needs'


# ----------------------------------------------------------------------------------------------------------
# bash scripts under DRY_RUN=1

BASH = [c for c in COMMANDS if c.kind == 'bash' and not c.needs()]


@pytest.fixture(scope='module')
def datasets_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp('dry') / 'datasets'
    for split, count in GENERATED['datasets/horse2zebra'].items():
        write_images(root / 'horse2zebra' / split, count)
    return root


def printed_commands(stdout):
    """The train.py / test.py / evaluation.sweep lines of a DRY_RUN listing, each as (kind, flags)."""
    found = []
    for line in stdout.splitlines():
        words = shlex.split(line)
        if 'evaluation.sweep' in words:  # its --test-script names test.py: not a test.py command
            found.append(('sweep', words[words.index('evaluation.sweep') + 1:]))
            continue
        for kind in ('train', 'test'):
            script = next((i for i, w in enumerate(words) if Path(w).name == f'{kind}.py'), None)
            if script is not None:
                found.append((kind, words[script + 1:]))
    return found


@pytest.mark.slow
@pytest.mark.parametrize('command', BASH, ids=[c.id for c in BASH])
def test_documented_script_dry_run(command, datasets_dir):
    script = ROOT / command.argv[1]
    assert 'DRY_RUN' in script.read_text(), f'{command.argv[1]} has no DRY_RUN=1 listing'
    env = {**os.environ, 'DATASETS_DIR': str(datasets_dir), **command.env, 'DRY_RUN': '1'}
    done = subprocess.run(command.argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, (command.id, done.stderr[-2000:])
    printed = printed_commands(done.stdout)
    assert printed, f'{command.id}: DRY_RUN=1 printed no train.py, test.py or evaluation.sweep command'
    smoke = command.env.get('SMOKE') == '1'  # the SMOKE pipelines run tiny schedules on purpose
    seeds = {}
    for kind, flags in printed:
        if kind == 'sweep':  # the sweep translates every source image unless --num_test is given
            assert '--num_test' not in flags, (command.id, flags)
            continue
        opt = options(kind, flags)
        if kind == 'train':
            recipe = recipe_of(opt)
            if recipe is not None and not smoke:
                assert schedule(opt) == schedule(recipe_options()[recipe][0]), (command.id, flags, recipe)
            if '--seed' in flags:
                seeds.setdefault(opt.dataroot, []).append(opt.seed)
            assert Path(command.argv[1]).name != 'table3.sh' or '--seed' in flags, f'{command.id}: unpaired arms'
        else:
            wanted = None
            if Path(opt.dataroot).is_dir():  # the generated stand-in: the script counts what is there
                from data import create_dataset
                import test
                wanted = test.test_set_images(create_dataset(opt), opt)
            wanted = wanted or expected_test_set(opt)
            if wanted is not None:
                assert opt.num_test >= wanted, (command.id, flags)
    # arms on one dataset are paired: each seed is shared by at least two runs of that dataset
    assert all(len(s) == 1 or min(s.count(seed) for seed in s) >= 2 for s in seeds.values()), (command.id, seeds)
