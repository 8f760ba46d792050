"""The shell scripts as a user runs them: --help, the Python lookup, DRY_RUN=1's commands (schedules, seeds, --num_test,
torchrun), the weights loaded before any training, table3.sh's search split, and a 2-process CPU launch.

DRY_RUN=1 prints one command a line (words quoted as printf %q quotes them) and runs nothing: the tests read those
lines with shlex.split, as tests/test_documented_commands.py does.
"""
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = sorted(p.name for p in (REPO / 'scripts').glob('*.sh') if p.name != 'base.sh')


def bash(script, tmp_path, *args, **env):
    """Run a script of scripts/ (or datasets/) from tmp_path, every output folder inside tmp_path."""
    full = dict(os.environ, PYTHON=sys.executable, OMP_NUM_THREADS='1', VISDOM='0',
                CHECKPOINTS_DIR=str(tmp_path / 'checkpoints'), RESULTS_DIR=str(tmp_path / 'results'),
                DATASETS_DIR=str(tmp_path / 'datasets'), SMOKE_DIR=str(tmp_path / 'smoke'))
    full.update(env)
    path = script if '/' in script else f'scripts/{script}'
    return subprocess.run(['bash', str(REPO / path), *args], cwd=tmp_path, env=full, capture_output=True, text=True)


def commands(done):
    """The DRY_RUN lines, each split into words."""
    assert done.returncode == 0, done.stderr[-3000:]
    return [shlex.split(line) for line in done.stdout.splitlines()]


def flags(words):
    """The effective value of each flag of one command (argparse keeps the last); switches map to True."""
    out, i = {}, 0
    while i < len(words):
        if words[i].startswith('--'):
            takes = i + 1 < len(words) and not words[i + 1].startswith('--')
            out[words[i]] = words[i + 1] if takes else True
            i += 2 if takes else 1
        else:
            i += 1
    return out


def script_of(words):
    """What a command runs: its .py / .sh file, or the module of `python -m` (torchrun's: the script it launches)."""
    if words[1:2] == ['-m'] and words[2] != 'torch.distributed.run':
        return words[2]
    return next((w for w in words if w.endswith('.py') or w.endswith('.sh')), None)


# ---- --help and the Python lookup ------------------------------------------------------------------------------
@pytest.mark.parametrize('script', SCRIPTS + ['../datasets/download_cut_dataset.sh'])
@pytest.mark.parametrize('flag', ['--help', '-h'])
def test_every_script_answers_help_and_runs_nothing(script, flag, tmp_path):
    done = bash(script if not script.startswith('..') else 'datasets/download_cut_dataset.sh', tmp_path, flag,
                SMOKE='1')
    assert done.returncode == 0, done.stderr
    assert len(done.stdout.splitlines()) >= 2 and not done.stdout.startswith('#'), done.stdout
    assert list(tmp_path.iterdir()) == []  # nothing made, nothing downloaded or trained


def test_table_scripts_help_lists_the_settings(tmp_path):
    text = bash('table1.sh', tmp_path, '--help').stdout
    for name in ('DATASETS', 'GPU_IDS', 'NPROC', 'NNODES', 'DRY_RUN', 'SEED', 'PYTHON', '--batch_size is per process'):
        assert name in text, name


@pytest.mark.parametrize('script, args', [('eval_fid.sh', ['fake', 'real']), ('sweep_epochs.sh', ['--name', 'x']),
                                          ('eval_cityscapes.sh', ['d', 'n', 'latest', 'w.pth']),
                                          ('table1.sh', []), ('train_horse2zebra.sh', [])])
def test_a_python_without_torch_is_one_line_naming_python_and_make_venv(script, args, tmp_path):
    shim = tmp_path / 'bin' / 'python'
    shim.parent.mkdir()
    shim.write_text('#!/bin/sh\nexec python3 -I -S "$@"\n')  # no site-packages: no torch
    shim.chmod(0o755)
    done = bash(script, tmp_path, *args, PYTHON=str(shim))
    assert done.returncode == 2
    assert done.stderr.splitlines() == [done.stderr.strip()] and done.stderr.startswith(f'error: PYTHON={shim} ')
    assert '`make venv`' in done.stderr


def test_scripts_without_python_use_the_repositorys_venv(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != 'PYTHON'}
    done = subprocess.run(['bash', '-c', 'source scripts/base.sh; find_python; echo "$PYTHON"'], cwd=REPO, env=env,
                          capture_output=True, text=True)
    venv = REPO / '.venv' / 'bin' / 'python'
    assert done.stdout.strip() == (str(venv) if venv.exists() else 'python3')


# ---- DRY_RUN: Table 3's schedules and seeds --------------------------------------------------------------------
def table3_trainings(tmp_path, **env):
    lines = commands(bash('table3.sh', tmp_path, DRY_RUN='1', **env))
    assert lines and all(script_of(w) for w in lines)
    assert list(tmp_path.iterdir()) == []  # no folder made
    return {flags(w)['--name']: flags(w) for w in lines if script_of(w) == 'train.py'}, lines


def test_dry_run_table3_map2sat_keeps_the_recipe_schedules_and_pairs_the_arms(tmp_path):
    runs, lines = table3_trainings(tmp_path, DATASETS='map2sat')
    step1 = [runs['map2sat_supernet_baseline'], runs['map2sat_supernet_ours']]
    for run in step1:  # the official map2sat_fast train_supernet.sh: 200 + 400 epochs, on train1
        assert (run['--n_epochs'], run['--n_epochs_decay']) == ('200', '400')
        assert run['--dataroot'].endswith('split/map2sat/train1')
    assert step1[0]['--seed'] == step1[1]['--seed'] == '0'
    assert step1[0]['--lambda_SRC'] == '0' and step1[1]['--lambda_SRC'] == '10'
    for arm in ('baseline', 'ours'):  # the official finetune.sh: 200 + 200, the whole training set
        tuned = runs[f'map2sat_supernet_{arm}_SEARCHED_finetune']
        assert (tuned['--n_epochs'], tuned['--n_epochs_decay']) == ('200', '200')
        assert tuned['--dataroot'] == str(tmp_path / 'datasets' / 'maps') and tuned['--seed'] == '0'
    teacher = runs['map2sat_teacher']
    assert (teacher['--n_epochs'], teacher['--n_epochs_decay']) == ('100', '200')
    tests = [flags(w) for w in lines if script_of(w) == 'test.py']
    assert len(tests) == 3 and all(int(t['--num_test']) >= 1000 for t in tests)  # no data here: every image found


def test_dry_run_table3_schedules_change_only_when_set(tmp_path):
    runs, _ = table3_trainings(tmp_path, DATASETS='map2sat cityscapes', EPOCHS_DECAY='7', FINETUNE_EPOCHS='3',
                               SEED='11')
    assert runs['map2sat_supernet_ours']['--n_epochs_decay'] == '7'
    assert runs['map2sat_supernet_ours']['--n_epochs'] == '200'
    assert runs['map2sat_supernet_ours_SEARCHED_finetune']['--n_epochs'] == '3'
    assert runs['map2sat_supernet_ours_SEARCHED_finetune']['--n_epochs_decay'] == '200'
    assert runs['city_supernet_baseline']['--n_epochs_decay'] == '7'
    assert {r['--seed'] for r in runs.values()} == {'11'}
    runs, _ = table3_trainings(tmp_path, DATASETS='cityscapes horse2zebra')
    assert (runs['city_supernet_ours']['--n_epochs'], runs['city_supernet_ours']['--n_epochs_decay']) == ('200', '300')
    assert (runs['h2z_supernet_ours']['--n_epochs'], runs['h2z_supernet_ours']['--n_epochs_decay']) == ('200', '200')
    assert not any(name.endswith('_finetune') for name in runs)  # only map2sat is fine-tuned


def test_dry_run_test_commands_translate_the_whole_test_set(tmp_path):
    for folder, count in (('testA', 3), ('testB', 5), ('trainA', 1), ('trainB', 1)):
        (tmp_path / 'datasets' / 'horse2zebra' / folder).mkdir(parents=True)
        for i in range(count):
            (tmp_path / 'datasets' / 'horse2zebra' / folder / f'{i}.png').write_bytes(b'png')
    lines = commands(bash('train_horse2zebra.sh', tmp_path, DRY_RUN='1'))
    assert [script_of(w) for w in lines] == ['train.py', 'test.py']
    assert flags(lines[1])['--num_test'] == '3'  # every horse of testA (the official test.sh: --num_test 120)
    lines = commands(bash('train_cut_baseline.sh', tmp_path, DRY_RUN='1'))
    assert flags(lines[1])['--num_test'] == '3' and flags(lines[0])['--seed'] == '0'


@pytest.mark.parametrize('script', ['table1.sh', 'table4_ablation.sh', 'train_multimodal.sh', 'train_cityscapes.sh',
                                    'train_monet.sh'])
def test_dry_run_prints_commands_only(script, tmp_path):
    lines = commands(bash(script, tmp_path, DRY_RUN='1'))
    assert lines and all(script_of(w) for w in lines), lines
    trainings = [flags(w) for w in lines if script_of(w) == 'train.py']
    assert trainings and {t['--seed'] for t in trainings} == {'0'}
    assert all('--n_epochs' not in t for t in trainings if t['--model'] != 'stargan_v2')  # the recipe's or default
    assert list(tmp_path.iterdir()) == []


# ---- torchrun ---------------------------------------------------------------------------------------------------
def test_gpu_ids_launch_every_training_with_torchrun(tmp_path):
    lines = commands(bash('table1.sh', tmp_path, DRY_RUN='1', GPU_IDS='0,1'))
    launch = [sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node', '2', 'train.py']
    trainings = [w for w in lines if script_of(w) == 'train.py']
    assert len(trainings) == 4 and all(w[:len(launch)] == launch for w in trainings)
    assert all(flags(w)['--gpu_ids'] == '0,1' for w in trainings)  # process i takes the i-th id
    others = [w for w in lines if script_of(w) != 'train.py']
    assert others and all('torch.distributed.run' not in w for w in others)
    assert all(flags(w)['--gpu_ids'] == '0' for w in others if '--gpu_ids' in w)  # evaluation: one process


def test_several_nodes_and_a_rendezvous(tmp_path):
    lines = commands(bash('train_horse2zebra.sh', tmp_path, DRY_RUN='1', NPROC='4', NNODES='2', NODE_RANK='1',
                          MASTER_ADDR='node0'))
    assert len(lines) == 1  # node 1 only trains
    assert lines[0][1:12] == ['-m', 'torch.distributed.run', '--nnodes', '2', '--node_rank', '1', '--master_addr',
                              'node0', '--master_port', '29500', '--nproc_per_node']
    lines = commands(bash('train_horse2zebra.sh', tmp_path, DRY_RUN='1', NNODES='2', RDZV_ENDPOINT='node0:29400'))
    assert '--rdzv_endpoint' in lines[0] and 'node0:29400' in lines[0] and len(lines) == 2
    done = bash('train_horse2zebra.sh', tmp_path, DRY_RUN='1', NNODES='2')
    assert done.returncode == 2 and 'MASTER_ADDR' in done.stderr
    done = bash('table1.sh', tmp_path, DRY_RUN='1', GPU_IDS='0,1,2', NPROC='2')
    assert done.returncode == 2 and done.stderr.startswith('error: GPU_IDS=0,1,2 names 3 GPUs but NPROC=2')
    done = bash('table3.sh', tmp_path, DRY_RUN='1', NNODES='2', MASTER_ADDR='node0')
    assert done.returncode == 2 and 'one node' in done.stderr


@pytest.mark.slow
def test_two_cpu_processes_train_through_a_script(tmp_path):
    """SMOKE=1 NPROC=2: torchrun with two gloo processes on the CPU trains, then test.py translates the test set."""
    done = bash('train_horse2zebra.sh', tmp_path, SMOKE='1', NPROC='2')
    assert done.returncode == 0, done.stderr[-3000:]
    assert '(2 processes, --batch_size 1 each)' in done.stdout
    assert (tmp_path / 'smoke' / 'checkpoints' / 'h2z_src_hdce' / 'latest_net_G.pth').is_file()
    assert len(list((tmp_path / 'smoke' / 'results' / 'h2z_src_hdce' / 'test_latest' / 'images' / 'fake_B')
                    .iterdir())) == 2  # SMOKE's two test images, every one


# ---- weights loaded before any training --------------------------------------------------------------------------
def test_an_html_page_as_weights_fails_before_training_naming_the_file(tmp_path):
    page = tmp_path / 'w' / 'drn_d_22_cityscapes.pth'
    page.parent.mkdir()
    page.write_text('<!DOCTYPE html><html><head><title>Google Drive - Virus scan warning</title></head></html>')
    for folder in ('trainA', 'trainB', 'testA', 'testB'):
        (tmp_path / 'datasets' / 'cityscapes' / folder).mkdir(parents=True)
    done = bash('table1.sh', tmp_path, DATASETS='cityscapes', DRN_WEIGHTS=str(page), FID_WEIGHTS=str(page))
    assert done.returncode == 2
    errors = done.stderr.splitlines()
    assert [e.split(':')[1].strip() for e in errors] == ['FID_WEIGHTS', 'DRN_WEIGHTS'], done.stderr
    assert all(str(page) in e and 'damaged or not a PyTorch checkpoint' in e and 'unpickling' not in e for e in errors)
    assert not (tmp_path / 'checkpoints').exists()  # nothing trained


def test_multimodal_weights_are_checked_before_training(tmp_path):
    for split in ('train', 'val'):
        (tmp_path / 'datasets' / 'seasons' / split / 'spring').mkdir(parents=True)
    done = bash('train_multimodal.sh', tmp_path, TORCH_HOME=str(tmp_path / 'hub'))
    assert done.returncode == 2 and done.stderr.startswith('error: LPIPS_WEIGHTS / ALEXNET_WEIGHTS / INCEPTION_WEIGHTS')
    assert '--lpips_weights: lpips_weights.ckpt no path given' in done.stderr
    assert not (tmp_path / 'checkpoints').exists()


def test_a_file_that_is_no_checkpoint_is_called_damaged_not_unsafe(tmp_path):
    from util.util import safe_torch_load
    page = tmp_path / 'page.pth'
    page.write_text('<html>a download page</html>')
    with pytest.raises(RuntimeError, match=r'damaged or not a PyTorch checkpoint') as caught:
        safe_torch_load(page)
    assert 'unpickling' not in str(caught.value) and str(page) in str(caught.value)


# ---- table3.sh's search split -----------------------------------------------------------------------------------
def split_env(tmp_path, **env):
    """The settings of a generated map2sat folder: 5 training pairs, 1 validation pair."""
    maps = tmp_path / 'maps'
    for split, count in (('train', 5), ('val', 1)):
        (maps / split).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            (maps / split / f'{i}.jpg').write_bytes(b'jpg')
    return dict(DATASETS='map2sat', MAPS_DIR=str(maps), **env)


def run_split(tmp_path, **env):
    """Source table3.sh's functions up to the split and make it (configure + make_search_split)."""
    script = (REPO / 'scripts' / 'table3.sh').read_text()
    functions = script[:script.index('if [[ "$DRY_RUN" != 1 && "$SMOKE" == 1 ]]; then')]
    body = functions + '\nconfigure map2sat\nmake_search_split\n'
    (tmp_path / 'split.sh').write_text(body.replace('source "$(dirname "${BASH_SOURCE[0]}")/common.sh"',
                                                    f'source {REPO}/scripts/common.sh'))
    full = dict(os.environ, PYTHON=sys.executable, OMP_NUM_THREADS='1', RESULTS_DIR=str(tmp_path / 'results'),
                **split_env(tmp_path, **env))
    return subprocess.run(['bash', str(tmp_path / 'split.sh')], cwd=tmp_path, env=full, capture_output=True, text=True)


def test_the_split_is_atomic_recorded_and_refused_when_changed(tmp_path):
    split = tmp_path / 'results' / 'table3' / 'split' / 'map2sat'
    # a split that broke half-way (an older table3.sh's, or a kill): remade, not FileExistsError
    (split / 'train2' / 'train').mkdir(parents=True)
    (tmp_path / 'results' / 'table3' / 'split' / 'map2sat.partial' / 'train1').mkdir(parents=True)
    done = run_split(tmp_path, SEARCH_IMAGES='2')
    assert done.returncode == 0, done.stderr
    assert len(list((split / 'train2' / 'train').iterdir())) == 2 and len(list((split / 'train1' / 'train').iterdir())) == 3
    assert not (split.parent / 'map2sat.partial').exists()
    assert 'SEARCH_IMAGES=2' in (split / 'done').read_text()
    assert run_split(tmp_path, SEARCH_IMAGES='2').returncode == 0  # the same split: kept
    done = run_split(tmp_path, SEARCH_IMAGES='3')
    assert done.returncode == 2 and done.stderr.strip().splitlines() == [done.stderr.strip()]
    assert done.stderr.startswith(f'error: the search split {split} was made with') and 'SEARCH_IMAGES=2' in done.stderr


def test_the_split_reads_gan_compressions_meta_lists(tmp_path):
    metas = tmp_path / 'metas' / 'maps'
    metas.mkdir(parents=True)
    (metas / 'train1.meta').write_text('0.jpg\n3.jpg\n4.jpg\n')
    (metas / 'train2.meta').write_text('1.jpg\n2.jpg\n')
    done = run_split(tmp_path, META_DIR=str(tmp_path / 'metas'))
    assert done.returncode == 0, done.stderr
    split = tmp_path / 'results' / 'table3' / 'split' / 'map2sat'
    assert sorted(p.name for p in (split / 'train2' / 'train').iterdir()) == ['1.jpg', '2.jpg']
    assert sorted(p.name for p in (split / 'train1' / 'train').iterdir()) == ['0.jpg', '3.jpg', '4.jpg']
    (metas / 'train2.meta').write_text('1.jpg\n9.jpg\n')
    done = run_split(tmp_path, META_DIR=str(tmp_path / 'metas'), SPLIT_DIR=str(tmp_path / 'other'))
    assert done.returncode == 2 and 'names 1 files not in' in done.stderr and '9.jpg' in done.stderr
    assert not (tmp_path / 'other' / 'map2sat').exists() and not (tmp_path / 'other' / 'map2sat.partial').exists()


# ---- the visdom server of a script that stops -----------------------------------------------------------------
@pytest.mark.slow
def test_a_visdom_server_the_script_started_is_stopped_when_it_fails(tmp_path):
    import socket
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        port = sock.getsockname()[1]
    for folder in ('trainA', 'trainB', 'testA', 'testB'):
        (tmp_path / 'datasets' / 'horse2zebra' / folder).mkdir(parents=True)  # empty: train.py stops
    done = bash('train_horse2zebra.sh', tmp_path, VISDOM='1', DISPLAY_PORT=str(port),
                VISDOM_RUN_DIR=str(tmp_path / 'visdom'))
    assert done.returncode != 0
    assert f'visdom server running at http://127.0.0.1:{port}' in done.stderr, done.stderr[-2000:]
    pid = int((tmp_path / 'visdom' / f'visdom_{port}.pid').read_text())
    assert 'stopped the visdom server this script started' in done.stderr
    stat = Path(f'/proc/{pid}/stat')
    for _ in range(100):  # SIGTERM sent: gone (or a zombie nobody reaps, in a container) within seconds
        if not stat.exists() or stat.read_text().rsplit(')', 1)[1].split()[0] == 'Z':
            break
        time.sleep(0.1)
    else:
        pytest.fail(f'visdom server {pid} still running')
