"""visdom web-asset installer against a fake npm registry on 127.0.0.1 (no network)."""
import base64
import hashlib
import importlib.metadata
import io
import json
import re
import tarfile
import threading
from functools import partial
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from util import visdom_assets, visdom_server
from util.visdom_assets import ASSETS, AssetError, install_assets, package_versions, tarball_name
from util.util import sha256


def fake_content(asset):
    return f'/* {asset.package}@{asset.version} {asset.member} */\n'.encode()


def make_tarball(members):
    """gzip'd tar with each {path inside the package: bytes} under package/, as npm packs it."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode='w:gz') as archive:
        for path, data in members.items():
            info = tarfile.TarInfo(f'package/{path}')
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


# the real table with the fake files' hashes: same packages, versions and paths
FAKE_ASSETS = tuple(a._replace(sha256=sha256(fake_content(a))) for a in ASSETS)
TARBALLS = {(package, version): make_tarball({a.member: fake_content(a) for a in FAKE_ASSETS
                                              if (a.package, a.version) == (package, version)})
            for package, version in package_versions(FAKE_ASSETS)}


class FakeRegistry:
    """npm registry layout: /<name>/<version> (metadata), /<name> (all versions), /<name>/-/<file>.tgz.

    dists: per package, the `dist` record served (tests corrupt or drop fields); per_version: packages
    whose one-version document exists (the others answer 404 there, as some mirrors do).
    """

    def __init__(self):
        self.requests = []
        self.dists = {}
        for (package, version), data in TARBALLS.items():
            sha1 = hashlib.sha1(data).hexdigest()
            sri = 'sha512-' + base64.b64encode(hashlib.sha512(data).digest()).decode()
            self.dists[package] = {'integrity': sri, 'shasum': sha1}
        self.per_version = set(self.dists) - {'d3'}
        registry = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                registry.requests.append(self.path)
                body = registry.answer(self.path)
                self.send_response(200 if body is not None else 404)
                self.send_header('Content-Length', str(len(body or b'')))
                self.end_headers()
                self.wfile.write(body or b'')

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(('127.0.0.1', 0), Handler)
        self.url = f'http://127.0.0.1:{self.server.server_address[1]}/'
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def answer(self, path):
        for (package, version), data in TARBALLS.items():
            dist = self.dists[package]
            if path == f'/{package}/-/{tarball_name(package, version)}':
                return data
            if path == f'/{package}/{version}' and package in self.per_version:
                return json.dumps({'name': package, 'version': version, 'dist': dist}).encode()
            if path == f'/{package}':
                return json.dumps({'name': package, 'versions': {version: {'dist': dist}}}).encode()
        return None

    def downloads(self):
        return [path for path in self.requests if path.endswith('.tgz')]


@pytest.fixture
def registry():
    fake = FakeRegistry()
    yield fake
    fake.server.shutdown()
    fake.server.server_close()


def assert_installed(static_dir):
    for asset in FAKE_ASSETS:
        assert (static_dir / asset.dest).read_bytes() == fake_content(asset), asset.dest


def test_install_from_registry_then_skip_what_is_in_place(registry, tmp_path):
    registry.dists['sjcl'].pop('integrity')  # an old package with only a sha1 shasum
    static_dir = tmp_path / 'static'
    summary = install_assets(static_dir, registry=registry.url, assets=FAKE_ASSETS)
    assert_installed(static_dir)
    assert summary['installed'] == sorted(a.dest for a in FAKE_ASSETS)
    checks = {name: entry['tarball_check'] for name, entry in summary['packages'].items()}
    assert checks['sjcl@1.0.7'] == 'sha1' and checks['d3@3.5.17'] == 'sha512'  # d3: package document
    assert set(checks.values()) == {'sha512', 'sha1'}
    assert len(registry.downloads()) == len(TARBALLS)
    assert not list(static_dir.rglob('*.tmp'))

    again = install_assets(static_dir, registry=registry.url, assets=FAKE_ASSETS)
    assert again['installed'] == [] and len(again['already_present']) == len(FAKE_ASSETS)
    assert len(registry.downloads()) == len(TARBALLS)  # nothing fetched

    plotly = static_dir / 'js/plotly-plotly.min.js'
    plotly.write_bytes(b'truncated')
    (static_dir / 'js/jquery.min.js').unlink()
    repaired = install_assets(static_dir, registry=registry.url, assets=FAKE_ASSETS)
    assert repaired['installed'] == ['js/jquery.min.js', 'js/plotly-plotly.min.js']
    assert sorted(repaired['packages']) == ['jquery@3.1.1', 'plotly.js-dist-min@2.11.1']
    assert_installed(static_dir)


def test_integrity_mismatch_names_package_and_url_and_writes_nothing(registry, tmp_path):
    registry.dists['react-dom']['integrity'] = 'sha512-' + base64.b64encode(b'\0' * 64).decode()
    static_dir = tmp_path / 'static'
    with pytest.raises(AssetError, match=r'react-dom@16\.2\.0') as error:
        install_assets(static_dir, registry=registry.url, cache_dir=tmp_path / 'cache',
                       assets=FAKE_ASSETS)
    assert f'{registry.url}react-dom/-/react-dom-16.2.0.tgz' in str(error.value)
    assert 'sha512' in str(error.value)
    assert not [p for p in static_dir.rglob('*') if p.is_file()]  # nothing half-installed
    assert not (tmp_path / 'cache' / 'react-dom-16.2.0.tgz').exists()


def test_file_not_matching_the_pinned_hash_is_refused(registry, tmp_path):
    with pytest.raises(AssetError, match=r'jquery@3\.1\.1: dist/jquery\.min\.js .* expected '):
        install_assets(tmp_path / 'static', registry=registry.url, assets=ASSETS)  # real hashes


def test_unreachable_registry_names_package_and_url(tmp_path):
    with pytest.raises(AssetError, match=r'jquery@3\.1\.1: cannot download '
                                         r'http://127\.0\.0\.1:9/jquery/-/jquery-3\.1\.1\.tgz'):
        install_assets(tmp_path / 'static', registry='http://127.0.0.1:9', assets=FAKE_ASSETS)


def test_download_only_then_install_from_dir(registry, tmp_path):
    tarballs = tmp_path / 'tarballs'
    summary = visdom_assets.download_tarballs(tarballs, registry=registry.url, assets=FAKE_ASSETS)
    assert sorted(p.name for p in tarballs.iterdir()) == sorted(
        tarball_name(p, v) for p, v in TARBALLS)
    assert len(summary['tarballs']) == len(TARBALLS)
    registry.server.shutdown()  # the install below must not need it

    static_dir = tmp_path / 'static'
    installed = install_assets(static_dir, registry=registry.url, from_dir=tarballs,
                               assets=FAKE_ASSETS)
    assert_installed(static_dir)
    assert installed['source'] == str(tarballs)
    assert {entry['tarball_check'] for entry in installed['packages'].values()} == {'local'}


def test_from_dir_lists_every_missing_tarball(tmp_path):
    folder = tmp_path / 'tarballs'
    folder.mkdir()
    (folder / 'jquery-3.1.1.tgz').write_bytes(TARBALLS['jquery', '3.1.1'])
    with pytest.raises(AssetError, match='lacks bootstrap-3.3.7.tgz, react-16.2.0.tgz') as error:
        install_assets(tmp_path / 'static', from_dir=folder, assets=FAKE_ASSETS)
    assert 'jquery-3.1.1.tgz' not in str(error.value) and '--download-only' in str(error.value)


def test_cli_reads_npm_config_registry_and_prints_json(registry, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(visdom_assets, 'install_assets', partial(install_assets, assets=FAKE_ASSETS))
    monkeypatch.setenv('NPM_CONFIG_REGISTRY', registry.url)
    static_dir = tmp_path / 'static'
    assert visdom_server.main(['--install-assets', '--static-dir', str(static_dir)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary['source'] == registry.url and len(summary['installed']) == len(FAKE_ASSETS)
    assert visdom_server.missing_web_assets(static_dir) == []
    assert visdom_assets.main(['--static-dir', str(static_dir), '--from-dir', str(tmp_path)]) == 0


def test_launcher_note_names_the_fixing_command(tmp_path):
    missing = visdom_server.missing_web_assets(tmp_path)
    assert len(missing) == len(ASSETS)
    note = visdom_server.missing_assets_note(missing)
    assert 'python -m util.visdom_server --install-assets' in note
    assert f'and {len(ASSETS) - 3} more' in note and '--from-dir' in note


def test_options_need_install_assets_and_from_dir_excludes_registry(tmp_path):
    with pytest.raises(SystemExit):
        visdom_server.main(['--from-dir', str(tmp_path)])
    with pytest.raises(SystemExit):
        visdom_assets.main(['--from-dir', str(tmp_path), '--registry', 'http://127.0.0.1:9'])


def test_table_covers_every_library_visdom_pages_load():
    """Each static file index.html/login.html link is shipped by pip or installed from ASSETS."""
    shipped = {str(f).split('visdom/static/', 1)[1] for f in importlib.metadata.files('visdom')
               if str(f).startswith('visdom/static/')}
    static = Path(importlib.metadata.distribution('visdom').locate_file('visdom/static'))
    linked = set()
    for page in ('index.html', 'login.html'):
        linked |= set(re.findall(r'static_url\(\s*["\']([^"\']+)["\']', (static / page).read_text()))
    linked = {name for name in linked if not name.startswith('../')}  # ../user/style.css: a route
    assert linked - shipped <= {a.dest for a in ASSETS}
    assert {'js/plotly-plotly.min.js', 'js/jquery.min.js', 'js/react-dom.min.js'} <= linked - shipped
    assert len({a.dest for a in ASSETS}) == len(ASSETS)
