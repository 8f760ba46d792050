"""studies/benchmark_official.py without the official code: its error, its arithmetic on fake measurements, the
process measurement, and one end-to-end run against a stand-in official checkout."""
import json
import sys
import textwrap

import pytest

from studies import benchmark_official as bo
from tests.conftest import H2Z

# a stand-in for the official Single-modal/train.py: checks what the benchmark promises to pass, then
# holds 64 MiB and spends 0.15 s of wall time per image
STAND_IN = textwrap.dedent('''\
    import argparse, os, sys, time
    p = argparse.ArgumentParser()
    for flag in ('--dataroot', '--checkpoints_dir', '--max_dataset_size', '--crop_size', '--load_size', '--n_epochs'):
        p.add_argument(flag)
    opt, rest = p.parse_known_args()
    assert '--model' not in rest and '--CUT_mode' in rest and '--dce_idt' in rest, rest
    assert os.environ['OMP_NUM_THREADS'] == os.environ['MKL_NUM_THREADS'] == '1', 'threads not set'
    assert 'MALLOC_ARENA_MAX' not in os.environ, 'ours_env leaked to the official side'
    assert os.path.isdir(os.path.join(opt.dataroot, 'trainA')) and opt.n_epochs == '1'
    assert (opt.crop_size, opt.load_size) == ('32', '35'), (opt.crop_size, opt.load_size)
    held = bytearray(64 * 2 ** 20)
    time.sleep(0.15 * int(opt.max_dataset_size))
''')


def fake_checkout(tmp_path, script=STAND_IN):
    root = tmp_path / 'Hneg_SRC'
    (root / 'Single-modal').mkdir(parents=True)
    (root / 'Single-modal' / 'train.py').write_text(script)
    return root


@pytest.mark.parametrize('argv', [[], ['--official', 'NOT_A_CHECKOUT']])
def test_without_the_official_code_it_says_how_to_get_it(tmp_path, argv):
    argv = [a.replace('NOT_A_CHECKOUT', str(tmp_path)) for a in argv]
    with pytest.raises(SystemExit) as e:
        bo.main(argv)
    message = str(e.value)
    assert message.startswith('error: ')
    assert 'git clone https://github.com/jcy132/Hneg_SRC' in message and 'nothing of it is committed' in message


def test_official_path_may_be_the_checkout_or_its_single_modal_folder(tmp_path):
    root = fake_checkout(tmp_path)
    assert bo.official_train_script(root) == root / 'Single-modal' / 'train.py'
    assert bo.official_train_script(root / 'Single-modal') == root / 'Single-modal' / 'train.py'


def fake_runner(job):
    """wall = fixed + per_step * images, with per-step values that differ between pairs (median: the middle one)
    and a pair offset that the difference between image counts cancels."""
    fixed, step, sys_step, faults, rss = {'ours': (9.0, 2.0, 0.3, 1000, 750.0),
                                          'official': (5.0, 4.0, 0.1, 200, 1000.0)}[job.side]
    jitter = (0.0, 0.5, -0.25)[job.pair]
    wall = fixed + job.pair + (step + jitter) * job.images
    sys_s = (sys_step + jitter / 10) * job.images
    return {'wall_s': wall, 'user_s': 1.5 * wall, 'sys_s': sys_s, 'cpu_s': 1.5 * wall + sys_s,
            'peak_rss_mib': rss + job.images, 'majflt': 0, 'minflt': faults * job.images, 'nvcsw': 0, 'nivcsw': 0}


def test_per_step_medians_and_ratios_on_fake_measurements(tmp_path):
    args, extra = bo.parse_args(['--official', str(fake_checkout(tmp_path)), '--size', '32', '--images', '2', '6',
                                 '--pairs', '3', '--', '--no_malloc_trim'])
    report = bo.run(args, extra, runner=fake_runner)
    assert [(r['pair'], r['images'], r['side']) for r in report['runs']][:4] == [
        (0, 2, 'ours'), (0, 2, 'official'), (0, 6, 'ours'), (0, 6, 'official')]
    assert len(report['runs']) == 12
    ours, official = report['ours'], report['official']
    assert [s['wall_s'] for s in ours['per_step_by_pair']] == [2.0, 2.5, 1.75]
    assert ours['per_step']['wall_s'] == 2.0 and official['per_step']['wall_s'] == 4.0
    assert ours['per_step']['minflt'] == 1000 and official['per_step']['sys_s'] == pytest.approx(0.1)
    assert ours['fixed_wall_s'] == pytest.approx(10.0) and official['fixed_wall_s'] == pytest.approx(6.0)
    assert ours['process']['6']['wall_s'] == 21.5  # pairs: 21, 25, 21.5
    assert ours['peak_rss_mib'] == 756 and ours['cpu_per_wall_step'] == pytest.approx(1.5 + 0.3 / 2.0)
    ratios = report['ratios']
    assert ratios['wall_per_step'] == 0.5 and ratios['sys_per_step'] == 3.0 and ratios['minflt_per_step'] == 5.0
    assert ratios['peak_rss'] == pytest.approx(756 / 1006, abs=1e-4)
    assert report['sys_per_step_excess_s'] == pytest.approx(0.2)
    assert report['targets']['wall_per_step'] == {'target': 0.75, 'measured': 0.5, 'met': True}
    assert not report['targets']['sys_per_step_excess_s']['met'] and not report['targets']['peak_rss']['met']
    assert report['commands']['ours']['6'].endswith('--max_dataset_size 6 --no_malloc_trim')
    assert '--model' not in report['commands']['official']['6'].split()
    assert report['env']['official'] == {'OMP_NUM_THREADS': '2', 'MKL_NUM_THREADS': '2'}


def test_bf16_is_ours_only_and_checked_against_the_half_time_target(tmp_path):
    args, extra = bo.parse_args(['--official', str(fake_checkout(tmp_path)), '--size', '32', '--images', '1', '2',
                                 '--amp', 'bf16'])
    report = bo.run(args, extra, runner=fake_runner)
    assert '--amp bf16' in report['commands']['ours']['2'] and '--amp' not in report['commands']['official']['2']
    assert report['targets']['wall_per_step']['target'] == 0.5


def test_process_measurement_and_a_failing_run(tmp_path):
    child = ('import time\nheld = bytearray(96 * 2 ** 20)\nend = time.process_time() + 0.2\n'
             'while time.process_time() < end: pass\ntime.sleep(0.2)\n')
    job = bo.Job('official', 1, 0, [sys.executable, '-c', child], str(tmp_path))
    m = bo.run_process(job, tmp_path / 'log')
    assert m['wall_s'] >= 0.4 and m['cpu_s'] >= 0.18 and m['cpu_s'] == m['user_s'] + m['sys_s']
    assert m['peak_rss_mib'] >= 96 and m['minflt'] >= 96 * 256  # every page of the buffer touched once
    assert m['allocator'] is None
    says = bo.Job('ours', 1, 0, [sys.executable, '-c', 'print("runtime: cpu, amp off, NCHW, allocator tcmalloc; x")'],
                  str(tmp_path))
    assert bo.run_process(says, tmp_path / 'log')['allocator'] == 'tcmalloc'
    failing = bo.Job('official', 1, 0, [sys.executable, '-c', 'print("boom"); raise SystemExit(3)'], str(tmp_path))
    with pytest.raises(SystemExit) as e:
        bo.run_process(failing, tmp_path / 'log')
    assert 'the official run failed (exit status 3)' in str(e.value) and 'boom' in str(e.value)


@pytest.mark.slow
def test_end_to_end_against_a_stand_in_official_checkout(tmp_path, capsys):
    out = tmp_path / 'report.json'
    small = ['--ngf', '4', '--ndf', '4', '--netG', 'resnet_6blocks', '--num_patches', '16', '--no_tqdm']
    assert bo.main(['--official', str(fake_checkout(tmp_path)), '--size', '32', '--images', '2', '4', '--threads', '1',
                    '--ours_env', 'MALLOC_ARENA_MAX=2', '--out', str(out), '--'] + small) == 0
    report = json.loads(out.read_text())
    assert json.loads(capsys.readouterr().out) == report
    assert [(r['side'], r['images']) for r in report['runs']] == [('ours', 2), ('official', 2), ('ours', 4),
                                                                  ('official', 4)]
    for r in report['runs']:
        assert r['wall_s'] > 0 and r['cpu_s'] > 0 and r['peak_rss_mib'] > 0 and r['minflt'] > 0
    assert 0.1 < report['official']['per_step']['wall_s'] < 0.5  # the stand-in sleeps 0.15 s per image
    assert report['official']['peak_rss_mib'] >= 64
    # a step of these tiny networks costs less than the noise of a process start: only the fields are checked
    assert isinstance(report['ours']['per_step']['wall_s'], float) and report['ours']['peak_rss_mib'] > 100
    assert set(report['ratios']) == {'wall_per_step', 'cpu_per_step', 'sys_per_step', 'minflt_per_step', 'peak_rss',
                                     'process_wall_4_images'}
    assert report['settings']['images'] == [2, 4] and report['settings']['load_size'] == 35
    assert report['env']['ours'] == {'OMP_NUM_THREADS': '1', 'MKL_NUM_THREADS': '1', 'MALLOC_ARENA_MAX': '2'}
    assert report['torch'] and report['cpu'] and report['python']
    ours_command = report['commands']['ours']['4'].split()
    assert ours_command[ours_command.index('--model') + 1] == 'src_hdce'
    assert all(flag in ours_command for flag in H2Z) and ours_command[-len(small):] == small
