"""Run visdom's server offline: `python -m util.visdom_server [--port 8097] [--reuse]`.

`python -m visdom.server` downloads jQuery, Plotly, React, ... from CDNs before it starts and
crashes without internet. This launcher runs the same server (visdom 0.2.4's
`run_server.start_server`) without that step, bound to 127.0.0.1 unless asked otherwise.

The pip package ships only visdom's own bundle (static/js/main.js) and CSS; the page's
third-party scripts (jQuery, Bootstrap, React, Plotly, MathJax, d3, fonts) come from that download.
Without them the page is served (HTTP 200) but draws nothing, since main.js calls the globals `$` and
`Plotly`; every window is still stored and readable through visdom's API (Visdom.get_window_data).
`python -m util.visdom_server --install-assets` installs them from npm package tarballs (registry,
mirror or a copied folder; util/visdom_assets.py, docs/monitoring.md).
"""
import argparse
import errno
import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

from util import visdom_assets
from util.errors import LaunchError

DEFAULT_PORT = 8097
LOOPBACK = '127.0.0.1'
ALL_INTERFACES = '0.0.0.0'
DEFAULT_ENV_PATH = os.path.join(os.path.expanduser('~'), '.visdom')  # visdom's default folder
HOSTNAMES = (LOOPBACK, 'localhost', ALL_INTERFACES)
INSTALL_ASSETS_COMMAND = 'python -m util.visdom_server --install-assets'
REPO_ROOT = Path(__file__).resolve().parents[1]


def server_url(port, hostname=LOOPBACK):
    """The URL a client on this machine uses; a server on all interfaces is reached via loopback."""
    host = LOOPBACK if hostname == ALL_INTERFACES else hostname
    return f'http://{host}:{port}'


def launch_command(port):
    return f'python -m util.visdom_server --port {port}'


def server_answers(url, timeout=1.0):
    """True when a visdom server answers at `url` (its env_state endpoint returns a JSON list)."""
    try:
        response = requests.post(f'{url}/env_state', data='{}', timeout=timeout)
        return response.status_code == 200 and isinstance(response.json(), list)
    except (requests.RequestException, ValueError):
        return False


def missing_web_assets(static_dir=None):
    """Files (under visdom/static/) of the third-party web assets that are not installed."""
    return visdom_assets.missing_assets(static_dir)


def missing_assets_note(missing):
    """What the launcher prints when web assets are missing, with the command that installs them."""
    shown = ', '.join(missing[:3]) + (f' and {len(missing) - 3} more' if len(missing) > 3 else '')
    return (f'note: visdom web assets missing ({shown}): the browser page cannot draw plots; they are '
            f'still recorded and readable through the visdom API. Install the assets with '
            f'`{INSTALL_ASSETS_COMMAND}` (npm registry, or --registry MIRROR, or --from-dir DIR of '
            'copied tarballs; see docs/monitoring.md).')


def ensure_server(port=DEFAULT_PORT, hostname=LOOPBACK, timeout=30.0, env_path=None):
    """Reuse the visdom server answering on `port`, or start one in a background process.

    Returns (url, proc): proc is None when a server was already running, else the
    `subprocess.Popen` of the new server, which the caller stops (proc.terminate()).
    Raises RuntimeError if the new server exits, TimeoutError if it does not answer in `timeout` s.
    """
    url = server_url(port, hostname)
    if server_answers(url):
        return url, None
    cmd = [sys.executable, '-m', 'util.visdom_server', '--port', str(port), '--hostname', hostname]
    if env_path is not None:
        cmd += ['--env_path', str(env_path)]
    with tempfile.TemporaryFile() as output:  # the server's output, quoted if it fails to start
        proc = subprocess.Popen(cmd, cwd=REPO_ROOT, stdout=output, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while not server_answers(url, timeout=0.5):
            if proc.poll() is not None:
                output.seek(0)
                tail = output.read().decode(errors='replace')[-2000:]
                raise LaunchError(f'visdom server ({" ".join(cmd)}) exited with code '
                                   f'{proc.returncode}:\n{tail}')
            if time.monotonic() > deadline:
                proc.terminate()
                proc.wait()
                raise LaunchError(f'visdom server started by {" ".join(cmd)} did not answer at '
                                   f'{url} within {timeout} s')
            time.sleep(0.1)
    return url, proc


def _allow_visdom_page_on_new_tornado():
    """Serve visdom's page on tornado >= 6.6 and keep the server from restarting itself.

    visdom's index.html links `static_url("../user/style.css")`; tornado 6.6 refuses static paths
    outside the static folder with a 403 for the whole page. That one link is emitted unversioned
    (the browser resolves it to /user/style.css, which visdom serves). visdom also turns on tornado's
    debug mode, whose autoreload would restart the server (losing unsaved plots) whenever a loaded
    Python file changes; autoreload is switched off.
    """
    import tornado.web
    from visdom.server import app

    class StaticFiles(tornado.web.StaticFileHandler):
        @classmethod
        def make_static_url(cls, settings, path, include_version=True):
            try:
                return super().make_static_url(settings, path, include_version)
            except tornado.web.HTTPError:
                return settings.get('static_url_prefix', '/static/') + path

    app.tornado_settings['static_handler_class'] = StaticFiles
    app.tornado_settings['autoreload'] = False


def _parser():
    parser = argparse.ArgumentParser(
        description='Start a visdom server without downloading web assets (works offline).')
    parser.add_argument('--port', type=int, default=DEFAULT_PORT, help='port to listen on')
    parser.add_argument('--hostname', default=LOOPBACK, choices=HOSTNAMES,
                        help='interface to bind: loopback (default) or 0.0.0.0 for every interface '
                             '(visdom has no authentication here: anyone who reaches the port can '
                             'read and change the plots)')
    parser.add_argument('--env_path', default=DEFAULT_ENV_PATH,
                        help='folder where visdom saves and reloads environments')
    parser.add_argument('--reuse', action='store_true',
                        help='exit 0 without starting anything if a server already answers on --port')
    parser.add_argument('--check', action='store_true',
                        help='start nothing; exit 0 if a server answers on --port, 1 otherwise')
    parser.add_argument('--install-assets', action='store_true',
                        help='start nothing; install the page\'s JavaScript/CSS/fonts from npm package '
                             'tarballs (options below), print a JSON summary and exit')
    return visdom_assets.add_arguments(parser)


def main(argv=None):
    parser = _parser()
    args = parser.parse_args(argv)
    if args.install_assets:
        return visdom_assets.run(args, parser)
    asset_options = ('static_dir', 'registry', 'cache_dir', 'from_dir', 'download_only')
    given = [f'--{name.replace("_", "-")}' for name in asset_options if getattr(args, name) is not None]
    if given:
        parser.error(f'{", ".join(given)}: only used with --install-assets')
    url = server_url(args.port, args.hostname)
    if args.check:
        return 0 if server_answers(url) else 1
    if args.reuse and server_answers(url):
        print(f'visdom server already running at {url}', flush=True)
        return 0
    if args.hostname == ALL_INTERFACES:
        print(f'warning: binding every interface: anyone who can reach port {args.port} on this '
              'machine can read and change the plots', file=sys.stderr, flush=True)
    missing = missing_web_assets()
    if missing:
        print(missing_assets_note(missing), file=sys.stderr, flush=True)

    from visdom.server.run_server import start_server
    logging.basicConfig(level=logging.INFO, format='%(asctime)s %(levelname)s %(name)s: %(message)s')
    logging.getLogger('tornado.access').setLevel(logging.WARNING)
    os.makedirs(args.env_path, exist_ok=True)
    _allow_visdom_page_on_new_tornado()
    try:
        # base_url='' as visdom's own main passes: start_server's default '/' makes every route '//...'
        start_server(port=args.port, hostname=args.hostname, base_url='', env_path=args.env_path,
                     bind_local=args.hostname != ALL_INTERFACES,
                     print_func=lambda port: print(f'visdom server running at {url}', flush=True))
    except OSError as exc:
        if exc.errno != errno.EADDRINUSE:
            raise
        raise SystemExit(f'cannot listen on port {args.port}: it is in use. If a visdom server runs '
                         f'there, pass --reuse; otherwise choose another --port.') from exc
    return 0


if __name__ == '__main__':
    sys.exit(main())
