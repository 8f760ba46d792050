"""Visualizer, HTML page, loss logs and the offline visdom launcher, against a real local server."""
import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import visdom
from PIL import Image

from util.html import HTML
from util.visdom_server import ensure_server, server_answers
from util.visualizer import Visualizer, save_images

LOGGER = 'util.visualizer'
REPO = Path(__file__).resolve().parents[1]
# the read-back clients below run without visdom's event socket, which makes visdom call logger.warn
pytestmark = pytest.mark.filterwarnings('ignore:The .warn. method is deprecated:DeprecationWarning')


def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def stop(proc):
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except Exception:
        proc.kill()
        proc.wait()


@pytest.fixture(scope='module')
def server(tmp_path_factory):
    port = free_port()
    url, proc = ensure_server(port, env_path=tmp_path_factory.mktemp('visdom_env'))
    assert proc is not None
    yield port
    stop(proc)


def make_opt(tmp_path, port, **overrides):
    opt = SimpleNamespace(display_id=1, isTrain=True, no_html=False, display_winsize=32, name='exp',
                          display_port=port, display_ncols=2, display_server='http://127.0.0.1',
                          display_env='main', checkpoints_dir=str(tmp_path))
    for key, value in overrides.items():
        setattr(opt, key, value)
    return opt


def make_visuals(size=8):
    gen = torch.Generator().manual_seed(0)
    return {label: torch.rand(1, 3, size, size, generator=gen) * 2 - 1
            for label in ('real_A', 'fake_B', 'real_B')}


def reader(port):
    return visdom.Visdom(server='http://127.0.0.1', port=port, raise_exceptions=True,
                         use_incoming_socket=False)


def window(client, win, env):
    return json.loads(client.get_window_data(win=win, env=env))


def warnings_of(caplog):
    return [r for r in caplog.records if r.name == LOGGER and r.levelno >= logging.WARNING]


def test_plots_and_images_reach_server(tmp_path, server):
    vis = Visualizer(make_opt(tmp_path, server, display_env='plots'))
    losses = [{'G_GAN': 0.5 + i, 'NCE': 2.0 * i} for i in range(4)]
    for i, point in enumerate(losses):
        vis.plot_current_losses(1, i / 4, point)
    vis.display_current_results(make_visuals(), epoch=1, save_result=True)

    client = reader(server)
    plot = window(client, '1', 'plots')
    assert plot['type'] == 'plot'
    traces = {trace['name']: trace for trace in plot['content']['data']}
    assert list(traces) == ['G_GAN', 'NCE']
    assert traces['G_GAN']['y'] == pytest.approx([p['G_GAN'] for p in losses])
    assert traces['NCE']['y'] == pytest.approx([p['NCE'] for p in losses])
    assert traces['NCE']['x'] == pytest.approx([1.0, 1.25, 1.5, 1.75])
    assert window(client, '2', 'plots')['type'] == 'image'
    labels = window(client, '3', 'plots')
    assert labels['type'] == 'text' and 'real_B' in labels['content']


def test_one_window_per_image_when_ncols_is_zero(tmp_path, server):
    vis = Visualizer(make_opt(tmp_path, server, display_env='each', display_ncols=0, display_id=10))
    vis.display_current_results(make_visuals(), epoch=1, save_result=False)
    client = reader(server)
    titles = [window(client, str(10 + i), 'each')['title'] for i in (1, 2, 3)]
    assert titles == ['real_A', 'fake_B', 'real_B']


@pytest.mark.parametrize('retry_interval', [30.0, 0.0])
def test_absent_server_warns_once_and_training_goes_on(tmp_path, caplog, retry_interval):
    port = free_port()
    caplog.set_level(logging.INFO)
    start = time.monotonic()
    vis = Visualizer(make_opt(tmp_path, port), retry_interval=retry_interval)
    for i in range(30):
        vis.plot_current_losses(1, i / 30, {'G': 1.0, 'D': float('nan')})
        vis.display_current_results(make_visuals(), epoch=1, save_result=False)
        vis.print_current_losses(1, i, {'G': 1.0, 'D': float('nan')}, 0.1, 0.01, total_iters=i)
    assert time.monotonic() - start < 5.0
    found = warnings_of(caplog)
    assert len(found) == 1
    assert f'http://127.0.0.1:{port}' in found[0].getMessage()
    assert f'python -m util.visdom_server --port {port}' in found[0].getMessage()
    assert len(vis.plot_data['G_D']['X']) == 30


def test_other_http_server_on_port_counts_as_absent(tmp_path, caplog):
    class NotFound(BaseHTTPRequestHandler):
        def do_POST(self):
            self.send_response(404)
            self.send_header('Content-Length', '0')
            self.end_headers()

        def log_message(self, *args):
            pass

    httpd = ThreadingHTTPServer(('127.0.0.1', 0), NotFound)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        vis = Visualizer(make_opt(tmp_path, httpd.server_address[1]))
        vis.plot_current_losses(1, 0.0, {'G': 1.0})
        found = warnings_of(caplog)
        assert not vis.link.connected and len(found) == 1 and 'not a visdom server' in found[0].getMessage()
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.mark.slow
def test_server_restart_resumes_with_history(tmp_path, tmp_path_factory, caplog):
    caplog.set_level(logging.INFO)
    port = free_port()
    env_dir = tmp_path_factory.mktemp('restart_env')
    _, proc = ensure_server(port, env_path=env_dir)
    try:
        vis = Visualizer(make_opt(tmp_path, port, display_env='restart'), retry_interval=0.2)
        values = [float(i) for i in range(9)]
        for i in range(3):
            vis.plot_current_losses(1, i / 10, {'G': values[i]})
        assert vis.link.connected
        stop(proc)
        for i in range(3, 6):
            vis.plot_current_losses(1, i / 10, {'G': values[i]})
        assert not vis.link.connected and len(warnings_of(caplog)) == 1

        _, proc = ensure_server(port, env_path=env_dir)
        time.sleep(0.25)
        for i in range(6, 9):
            vis.plot_current_losses(1, i / 10, {'G': values[i]})
        assert vis.link.connected and len(warnings_of(caplog)) == 1
        trace = window(reader(port), '1', 'restart')['content']['data'][0]
        assert trace['y'] == pytest.approx(values)

        stop(proc)
        for i in range(3):
            vis.plot_current_losses(2, i / 10, {'G': 1.0})
        assert len(warnings_of(caplog)) == 2
    finally:
        if proc.poll() is None:
            stop(proc)


def test_html_page_and_loss_logs(tmp_path):
    vis = Visualizer(make_opt(tmp_path, free_port(), display_id=0))
    visuals = make_visuals()
    vis.display_current_results(visuals, epoch=1, save_result=False)
    vis.display_current_results(visuals, epoch=1, save_result=False)  # already saved this epoch
    vis.reset()
    vis.display_current_results(visuals, epoch=2, save_result=False)
    web = tmp_path / 'exp' / 'web'
    for epoch in (1, 2):
        for label in visuals:
            assert (web / 'images' / f'epoch{epoch:03d}_{label}.png').is_file()
    page = (web / 'index.html').read_text()
    assert page.index('epoch [2]') < page.index('epoch [1]')
    assert 'src="images/epoch002_fake_B.png"' in page and 'width:32px' in page

    vis.print_current_losses(3, 40, {'G': 1.25, 'NCE': torch.tensor(0.5)}, 0.123, 0.004, total_iters=440)
    vis.print_current_losses(3, 41, {'G': float('nan'), 'NCE': float('inf')}, 0.1, 0.0)
    text = (tmp_path / 'exp' / 'loss_log.txt').read_text().splitlines()
    assert re.fullmatch(r'=+ Training Loss \(.+\) =+', text[0])
    assert text[1] == '(epoch: 3, iters: 40, time: 0.123, data: 0.004) G: 1.250 NCE: 0.500 '
    assert text[2].endswith('G: nan NCE: inf ')
    jsonl = (tmp_path / 'exp' / 'loss_log.jsonl').read_text().splitlines()
    first, second = [json.loads(line) for line in jsonl]
    assert set(first) == {'epoch', 'iters', 'total_iters', 'time', 't_comp', 't_data', 'losses'}
    assert (first['epoch'], first['iters'], first['total_iters']) == (3, 40, 440)
    assert first['losses'] == {'G': 1.25, 'NCE': 0.5}
    assert first['t_comp'] == pytest.approx(0.123) and abs(first['time'] - time.time()) < 60
    assert second['losses'] == {'G': None, 'NCE': None} and second['total_iters'] is None


def test_no_html_and_test_mode_write_no_page(tmp_path):
    Visualizer(make_opt(tmp_path / 'a', 0, display_id=0, no_html=True)).display_current_results(
        make_visuals(), 1, True)
    Visualizer(make_opt(tmp_path / 'b', 0, display_id=-1, isTrain=False)).display_current_results(
        make_visuals(), 1, True)
    assert not (tmp_path / 'a' / 'exp' / 'web').exists() and not (tmp_path / 'b' / 'exp' / 'web').exists()


def test_only_rank_zero_writes(tmp_path):
    vis = Visualizer(make_opt(tmp_path, free_port()), rank=1)
    vis.display_current_results(make_visuals(), 1, True)
    vis.plot_current_losses(1, 0.5, {'G': 1.0})
    vis.print_current_losses(1, 1, {'G': 1.0}, 0.1, 0.1)
    assert vis.link is None and list(tmp_path.iterdir()) == []


def test_save_images_layout_and_atomic_writes(tmp_path, monkeypatch):
    web_dir = tmp_path / 'results' / 'test_latest'
    webpage = HTML(str(web_dir), 'Experiment = exp')
    visuals = make_visuals(size=16)
    save_images(webpage, visuals, ['/data/testA/n02381460_1000.jpg'], width=64)
    webpage.save()
    for label in visuals:
        saved = web_dir / 'images' / label / 'n02381460_1000.png'
        assert np.asarray(Image.open(saved)).shape == (16, 16, 3)
    page = (web_dir / 'index.html').read_text()
    assert '<h3>n02381460_1000</h3>' in page and 'src="images/fake_B/n02381460_1000.png"' in page
    before = (web_dir / 'images' / 'real_A' / 'n02381460_1000.png').read_bytes()

    def failing_save(self, fp, *args, **kwargs):
        fp.write(b'partial')
        raise OSError('disk full')
    monkeypatch.setattr(Image.Image, 'save', failing_save)
    with pytest.raises(OSError, match='disk full'):
        save_images(webpage, make_visuals(size=4), ['n02381460_1000.jpg'])
    assert (web_dir / 'images' / 'real_A' / 'n02381460_1000.png').read_bytes() == before
    assert [p.name for p in tmp_path.rglob('*') if p.name.endswith('.tmp')] == []


def test_launcher_reuses_running_server(server):
    url, proc = ensure_server(server)
    assert proc is None and server_answers(url)
    assert not server_answers(f'http://127.0.0.1:{free_port()}', timeout=0.5)
    reuse = subprocess.run([sys.executable, '-m', 'util.visdom_server', '--port', str(server), '--reuse'],
                           cwd=REPO, capture_output=True, text=True, timeout=30)
    assert reuse.returncode == 0 and url in reuse.stdout


@pytest.mark.slow
def test_shell_wrapper_starts_server_with_pid_file(tmp_path):
    port = free_port()
    env = dict(os.environ, VISDOM_RUN_DIR=str(tmp_path), PYTHON=sys.executable)
    cmd = ['bash', str(REPO / 'scripts' / 'visdom_server.sh'), '--port', str(port),
           '--env_path', str(tmp_path / 'env')]
    first = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=60)
    pid = int((tmp_path / f'visdom_{port}.pid').read_text())
    try:
        assert first.returncode == 0, first.stderr
        assert f'running at http://127.0.0.1:{port}' in first.stdout
        again = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=60)
        assert again.returncode == 0 and 'already running' in again.stdout
    finally:
        os.kill(pid, signal.SIGTERM)
