"""Install the browser libraries visdom's page needs, from the npm registry or from copied tarballs.

visdom 0.2.4's own server fetches jQuery, Bootstrap, React, Plotly, d3, MathJax, ... from unpkg,
cdn.plot.ly, d3js.org and cdnjs when it starts (visdom/server/build.py `download_scripts`); the pip
package ships none of them. Each of those files is also published, byte for byte, inside an npm
package at a fixed version, so they can come from the npm registry, a mirror of it, or .tgz files
downloaded elsewhere:

    python -m util.visdom_assets                         # registry.npmjs.org or $NPM_CONFIG_REGISTRY
    python -m util.visdom_assets --registry https://npm.example.org/repository/npm/
    python -m util.visdom_assets --download-only DIR     # where a registry answers; copy DIR over
    python -m util.visdom_assets --from-dir DIR          # no network at all

A downloaded tarball is checked against the registry's integrity hash (sha512, else sha1), and every
file taken from it against the sha256 pinned in ASSETS; files already in place with that hash are
skipped. All new files are staged beside their targets and renamed into place only once every one
has been read and verified, so a failure leaves the static folder as it was.
"""
import argparse
import base64
import contextlib
import hashlib
import json
import os
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import NamedTuple

import requests
from tqdm import tqdm

from util.errors import ProjectError
from util.util import sha256

DEFAULT_REGISTRY = 'https://registry.npmjs.org'
VISDOM_VERSION = '0.2.4'  # the release whose build.py the table below reproduces
TIMEOUT = (10, 60)  # seconds to connect, seconds between received bytes
_SRI_ALGORITHMS = ('sha512', 'sha384', 'sha256', 'sha1')  # strongest first


class AssetError(ProjectError, RuntimeError):
    """A package could not be fetched, verified or found; the message says which and from where."""


class Asset(NamedTuple):
    dest: str      # path under visdom/static/, as the page requests it
    package: str   # npm package
    version: str
    member: str    # path inside the package (the tarball's top folder, package/, left out)
    sha256: str    # of the file itself


MATHJAX = 'js/mathjax/2.7.5/'
# build.py's list. plotly comes from cdn.plot.ly there; plotly.js-dist-min ships the identical
# plotly.min.js as plotly.js's dist/ (same sha256). d3js.org's d3.v3 and d3-selection-multi.v1 are
# the last releases of those lines. The glyphicons SVG goes to its plain name: build.py keeps the CSS
# URL's '#fragment' in the file name, which no browser requests. fonts/classnames and the React
# modal/source map are fetched by build.py but loaded by no page; they are kept for parity.
ASSETS = (
    Asset('js/jquery.min.js', 'jquery', '3.1.1', 'dist/jquery.min.js',
          '85556761a8800d14ced8fcd41a6b8b26bf012d44a318866c0d81a62092efd9bf'),
    Asset('js/bootstrap.min.js', 'bootstrap', '3.3.7', 'dist/js/bootstrap.min.js',
          '53964478a7c634e8dad34ecc303dd8048d00dce4993906de1bacf67f663486ef'),
    Asset('css/bootstrap.min.css', 'bootstrap', '3.3.7', 'dist/css/bootstrap.min.css',
          'f75e846cc83bd11432f4b1e21a45f31bc85283d11d372f7b19accd1bf6a2635c'),
    Asset('fonts/glyphicons-halflings-regular.eot', 'bootstrap', '3.3.7',
          'dist/fonts/glyphicons-halflings-regular.eot',
          '13634da87d9e23f8c3ed9108ce1724d183a39ad072e73e1b3d8cbf646d2d0407'),
    Asset('fonts/glyphicons-halflings-regular.woff2', 'bootstrap', '3.3.7',
          'dist/fonts/glyphicons-halflings-regular.woff2',
          'fe185d11a49676890d47bb783312a0cda5a44c4039214094e7957b4c040ef11c'),
    Asset('fonts/glyphicons-halflings-regular.woff', 'bootstrap', '3.3.7',
          'dist/fonts/glyphicons-halflings-regular.woff',
          'a26394f7ede100ca118eff2eda08596275a9839b959c226e15439557a5a80742'),
    Asset('fonts/glyphicons-halflings-regular.ttf', 'bootstrap', '3.3.7',
          'dist/fonts/glyphicons-halflings-regular.ttf',
          'e395044093757d82afcb138957d06a1ea9361bdcf0b442d06a18a8051af57456'),
    Asset('fonts/glyphicons-halflings-regular.svg', 'bootstrap', '3.3.7',
          'dist/fonts/glyphicons-halflings-regular.svg',
          '42f60659d265c1a3c30f9fa42abcbb56bd4a53af4d83d316d6dd7a36903c43e5'),
    Asset('js/react-react.min.js', 'react', '16.2.0', 'umd/react.production.min.js',
          'c28b91922bca297037cba02ec85c1c0dc179d1a942355f0b6e085f6021fa67df'),
    Asset('js/react-dom.min.js', 'react-dom', '16.2.0', 'umd/react-dom.production.min.js',
          'f61ac9c43e0842c58774da732e424a606898fd211914925252ac9e64f34a77c8'),
    Asset('js/react-modal.min.js', 'react-modal', '3.1.10', 'dist/react-modal.min.js',
          '096ce258905585d06758012ec6261a5dc52b11d82e112450670666109bbc6f35'),
    Asset('js/plotly-plotly.min.js', 'plotly.js-dist-min', '2.11.1', 'plotly.min.js',
          'dd146b2db18d4ced4743018fa65ada14b723bf1aae08b559a5576ba8116cd889'),
    Asset('js/sjcl.js', 'sjcl', '1.0.7', 'sjcl.js',
          'd09a8688f37c7442bb1e6699b46efb191d9281ef05a492586fa0f54dc4e5110a'),
    Asset('js/layout_bin_packer.js', 'layout-bin-packer', '1.4.0', 'dist/layout-bin-packer.js',
          '312ed1834f78f497ac3c9e943ce4657679d26ad8cd62d7f722912d26c9d0ed29'),
    Asset('js/layout-bin-packer.js.map', 'layout-bin-packer', '1.4.0', 'dist/layout-bin-packer.js.map',
          '7f39df86278f0cd247daee3ef579a09df79078e1c585bc7b8ef968266e06c0b5'),
    Asset('js/d3.v3.min.js', 'd3', '3.5.17', 'd3.min.js',
          '76c39718d1c0a3fb321676b3b7e29306c0907919a5716d5728bd1b08ae0169e7'),
    Asset('js/d3-selection-multi.v1.js', 'd3-selection-multi', '1.0.1', 'build/d3-selection-multi.js',
          '22f89270afc6f231f8b974e37172a15525f28035276ca960f8ccdce622700315'),
    Asset('js/saveSvgAsPng.js', 'save-svg-as-png', '1.4.17', 'lib/saveSvgAsPng.js',
          '71c46f2411daf6ba2a4e38ec563d92f1da42f88da9247a2bdd5c8a10bde93ae3'),
    Asset('css/react-resizable-styles.css', 'react-resizable', '1.4.6', 'css/styles.css',
          '7c9122a97c86b4be7839fd3d23c37d06aec1ece3ef830f8bae3a8c121056d528'),
    Asset('css/react-grid-layout-styles.css', 'react-grid-layout', '0.16.3', 'css/styles.css',
          '4ec035a50c31ec008bab5794e88ef056043e63aaa8dcbb24d36e5a73780b4dbc'),
    Asset('fonts/classnames', 'classnames', '2.2.5', 'index.js',
          '89f83f030d5f5234436502f5d3ecfb01c1baaabe2a82785016563eb5800b674e'),
    Asset(MATHJAX + 'MathJax.js', 'mathjax', '2.7.5', 'MathJax.js',
          '9ef249bfdc162849bcf2abe8425f5e90bd89fa4fd1588b1a492731c65b2bbfc9'),
    Asset(MATHJAX + 'config/Safe.js', 'mathjax', '2.7.5', 'config/Safe.js',
          'c3d9f149afb82798a73d14a9737a82b5cb8bb8d217de631030a702d4ae0c1d8e'),
    Asset(MATHJAX + 'config/TeX-AMS-MML_HTMLorMML.js', 'mathjax', '2.7.5',
          'config/TeX-AMS-MML_HTMLorMML.js',
          'f380ca5d5257b34fc5f0e4cccd7e1447dd3dfa3b65e06ed23f2a4f6af17e19f0'),
    Asset(MATHJAX + 'extensions/Safe.js', 'mathjax', '2.7.5', 'extensions/Safe.js',
          '1b44a7b48d991ab692da9074fe8582cd47d438b57445af064ce30d2eac3871dd'),
    Asset(MATHJAX + 'jax/output/SVG/fonts/TeX/fontdata.js', 'mathjax', '2.7.5',
          'jax/output/SVG/fonts/TeX/fontdata.js',
          'c23d4bebe304610f617983eaeab7f8aa5e13a45391318f30ccf2650fbff939e1'),
    Asset(MATHJAX + 'jax/output/SVG/jax.js', 'mathjax', '2.7.5', 'jax/output/SVG/jax.js',
          '39d9a95fcde78f560cb5fcf11bb434ca5ad2349d74737b71160c8f473861fb5d'),
    Asset(MATHJAX + 'jax/output/SVG/fonts/TeX/Size1/Regular/Main.js', 'mathjax', '2.7.5',
          'jax/output/SVG/fonts/TeX/Size1/Regular/Main.js',
          '3e1c830e9c05a62f9caf86f9e13d926c38c5136b1eba8f6171953e839ce3941f'),
    Asset(MATHJAX + 'jax/output/SVG/config.js', 'mathjax', '2.7.5', 'jax/output/SVG/config.js',
          'd680518add37c0d1bf50dea3c93a4cd2aa703d5e1d3e2748a0e016c26aee253c'),
)


def default_static_dir():
    """visdom's static folder in the running environment (site-packages/visdom/static)."""
    from visdom.utils.shared_utils import get_visdom_path
    return Path(get_visdom_path('static'))


def registry_from_env():
    """The registry npm itself would use from the environment, else the public one."""
    return (os.environ.get('NPM_CONFIG_REGISTRY') or os.environ.get('npm_config_registry')
            or DEFAULT_REGISTRY)


def package_versions(assets=ASSETS):
    """The distinct (package, version) pairs `assets` come from, in table order."""
    return list(dict.fromkeys((asset.package, asset.version) for asset in assets))


def tarball_name(package, version):
    """The tarball's file name on the registry, which `npm pack package@version` also writes."""
    return f'{package.rsplit("/", 1)[-1]}-{version}.tgz'


def tarball_url(registry, package, version):
    return f'{registry.rstrip("/")}/{package}/-/{tarball_name(package, version)}'


def missing_assets(static_dir=None, assets=ASSETS):
    """Destinations (under the static folder) of `assets` that are not there at all."""
    static_dir = Path(static_dir) if static_dir is not None else default_static_dir()
    return [asset.dest for asset in assets if not (static_dir / asset.dest).is_file()]


def is_installed(static_dir, asset):
    """True when the asset's file is in place with its pinned content."""
    path = Path(static_dir) / asset.dest
    return path.is_file() and sha256(path) == asset.sha256


def expected_digest(dist):
    """(algorithm, digest) a registry `dist` record vouches for: its strongest SRI hash, else shasum.

    None when the record carries neither.
    """
    hashes = {}
    for entry in (dist.get('integrity') or '').split():
        algorithm, _, value = entry.partition('-')
        hashes[algorithm] = value.split('?')[0]  # SRI allows '?options' after the digest
    for algorithm in _SRI_ALGORITHMS:
        if hashes.get(algorithm):
            return algorithm, base64.b64decode(hashes[algorithm])
    if dist.get('shasum'):
        return 'sha1', bytes.fromhex(dist['shasum'])
    return None


def registry_dist(registry, package, version):
    """The registry's `dist` record for package@version, or None when no metadata can be had.

    Asks for the one version's document first, then the package document (abbreviated form, as npm
    requests it) for mirrors that serve only that.
    """
    base = f'{registry.rstrip("/")}/{package}'
    attempts = ((f'{base}/{version}', 'application/json', lambda doc: doc),
                (base, 'application/vnd.npm.install-v1+json; q=1.0, application/json; q=0.8',
                 lambda doc: doc['versions'][version]))
    for url, accept, pick in attempts:
        try:
            response = requests.get(url, headers={'Accept': accept}, timeout=TIMEOUT)
            if response.ok:
                return pick(response.json())['dist']
        except (requests.RequestException, ValueError, KeyError, TypeError):
            continue
    return None


def download_tarball(registry, package, version, dest_dir):
    """Download package@version's tarball into dest_dir, verified against the registry's metadata.

    Returns (path, check): check names the hash compared ('sha512', 'sha1', ...) or is 'unavailable'
    when the registry offered no metadata (the files inside are still checked against ASSETS).
    Raises AssetError naming the package and URL on any HTTP failure or integrity mismatch.
    """
    url = tarball_url(registry, package, version)
    dist = registry_dist(registry, package, version)
    expected = expected_digest(dist) if dist else None
    digest = hashlib.new(expected[0] if expected else 'sha512')
    target = Path(dest_dir) / tarball_name(package, version)
    fd, partial = tempfile.mkstemp(dir=dest_dir, prefix=f'.{target.name}.', suffix='.part')
    try:
        with os.fdopen(fd, 'wb') as out:
            response = requests.get(url, stream=True, timeout=TIMEOUT)
            response.raise_for_status()
            size = int(response.headers.get('content-length') or 0) or None
            with tqdm(total=size, unit='B', unit_scale=True, desc=f'{package}@{version}',
                      leave=False) as bar:
                for chunk in response.iter_content(1 << 16):
                    out.write(chunk)
                    digest.update(chunk)
                    bar.update(len(chunk))
        if expected and digest.digest() != expected[1]:
            raise AssetError(
                f'{package}@{version}: the tarball downloaded from {url} does not match the '
                f'registry\'s {expected[0]} integrity ({base64.b64encode(expected[1]).decode()}, '
                f'got {base64.b64encode(digest.digest()).decode()}); the download or the mirror is '
                'corrupt')
        os.replace(partial, target)
    except requests.RequestException as exc:
        raise AssetError(f'{package}@{version}: cannot download {url}: {exc}. Point --registry (or '
                         'NPM_CONFIG_REGISTRY) at a reachable npm mirror, or use --from-dir') from exc
    finally:
        if os.path.exists(partial):
            os.remove(partial)
    return target, expected[0] if expected else 'unavailable'


def read_assets(tarball, assets):
    """{dest: bytes} for `assets` (all from one package version) read from `tarball` and checked
    against their pinned sha256. Raises AssetError naming the package, file and tarball."""
    package, version = assets[0].package, assets[0].version
    try:
        with tarfile.open(tarball, 'r:gz') as archive:
            # npm drops each entry's first path component (usually package/)
            members = {m.name.split('/', 1)[1]: m for m in archive.getmembers()
                       if m.isfile() and '/' in m.name}
            contents = {}
            for asset in assets:
                if asset.member not in members:
                    raise AssetError(f'{package}@{version}: {tarball} has no {asset.member}; is it '
                                     'the right package tarball?')
                contents[asset.dest] = archive.extractfile(members[asset.member]).read()
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise AssetError(f'{package}@{version}: cannot read {tarball}: {exc}') from exc
    for asset in assets:
        got = sha256(contents[asset.dest])
        if got != asset.sha256:
            raise AssetError(f'{package}@{version}: {asset.member} in {tarball} has sha256 {got}, '
                             f'expected {asset.sha256}: not the published file (a cached or copied '
                             'tarball may be corrupt: delete it and fetch it again)')
    return contents


def _absent_tarballs(folder, pairs):
    return [tarball_name(package, version) for package, version in pairs
            if not (Path(folder) / tarball_name(package, version)).is_file()]


def _fetch(package, version, registry, cache_dir, from_dir):
    """(tarball path, how it was checked) for package@version from from_dir, cache_dir or the registry."""
    if from_dir is not None:
        return Path(from_dir) / tarball_name(package, version), 'local'
    cached = Path(cache_dir) / tarball_name(package, version)
    if cached.is_file():
        return cached, 'cached'
    return download_tarball(registry, package, version, cache_dir)


def _write_all(static_dir, contents):
    """Stage every file beside its destination, then rename them all into place."""
    staged = []
    try:
        for dest, data in contents.items():
            target = Path(static_dir) / dest
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f'.{target.name}.', suffix='.tmp')
            staged.append((tmp, target))
            with os.fdopen(fd, 'wb') as out:
                out.write(data)
            os.chmod(tmp, 0o644)  # the server may run as another user than the installer
    except BaseException:
        for tmp, _ in staged:
            os.remove(tmp)
        raise
    for tmp, target in staged:
        os.replace(tmp, target)


def _check_visdom_version():
    import visdom
    if visdom.__version__ != VISDOM_VERSION:
        tqdm.write(f'warning: this asset list is visdom {VISDOM_VERSION}\'s; visdom '
                   f'{visdom.__version__} is installed and may expect other files', file=sys.stderr)


def install_assets(static_dir=None, registry=DEFAULT_REGISTRY, cache_dir=None, from_dir=None,
                   assets=ASSETS):
    """Put every file of `assets` into visdom's static folder; returns a JSON-ready summary.

    static_dir: target folder (default: the installed visdom's static/). registry: npm registry or
    mirror the tarballs come from. cache_dir: keep downloaded tarballs there and reuse them (default:
    a temporary folder). from_dir: take the tarballs from this folder instead, with no network.
    Files already present with the pinned sha256 are skipped; only packages with something
    missing are fetched. Raises AssetError (static folder untouched) when any file cannot be had.
    """
    static_dir = Path(static_dir) if static_dir is not None else default_static_dir()
    _check_visdom_version()
    todo = [asset for asset in assets if not is_installed(static_dir, asset)]
    absent = _absent_tarballs(from_dir, package_versions(todo)) if from_dir is not None else []
    if absent:
        raise AssetError(f'{from_dir} lacks {", ".join(absent)}. Fetch them where an npm registry '
                         'answers with `python -m util.visdom_assets --download-only DIR` (or '
                         '`npm pack <package>@<version>`) and copy them into it')
    packages = {}
    contents = {}
    with contextlib.ExitStack() as stack:
        if from_dir is None and cache_dir is None:
            cache_dir = stack.enter_context(tempfile.TemporaryDirectory(prefix='visdom_assets_'))
        elif cache_dir is not None:
            Path(cache_dir).mkdir(parents=True, exist_ok=True)
        for package, version in tqdm(package_versions(todo), desc='visdom assets', unit='package',
                                     disable=not todo):
            tarball, check = _fetch(package, version, registry, cache_dir, from_dir)
            wanted = [a for a in todo if (a.package, a.version) == (package, version)]
            contents.update(read_assets(tarball, wanted))
            packages[f'{package}@{version}'] = {'tarball': tarball.name, 'tarball_check': check}
    _write_all(static_dir, contents)
    return {'static_dir': str(static_dir),
            'source': str(from_dir) if from_dir is not None else registry,
            'installed': sorted(contents),
            'already_present': sorted(a.dest for a in assets if a.dest not in contents),
            'packages': packages}


def download_tarballs(dest_dir, registry=DEFAULT_REGISTRY, assets=ASSETS):
    """Download (or keep, if already there) every package tarball `assets` need into dest_dir and
    check the files inside, for a later `--from-dir dest_dir` install elsewhere."""
    Path(dest_dir).mkdir(parents=True, exist_ok=True)
    tarballs = {}
    for package, version in tqdm(package_versions(assets), desc='visdom assets', unit='package'):
        tarball, check = _fetch(package, version, registry, dest_dir, None)
        read_assets(tarball, [a for a in assets if (a.package, a.version) == (package, version)])
        tarballs[f'{package}@{version}'] = {'tarball': tarball.name, 'tarball_check': check}
    return {'dir': str(dest_dir), 'source': registry, 'tarballs': tarballs,
            'next': f'copy {dest_dir} to the target machine, then run '
                    f'`python -m util.visdom_server --install-assets --from-dir <copy>`'}


def add_arguments(parser):
    """The installer's options, shared by this module's CLI and util.visdom_server's."""
    group = parser.add_argument_group('visdom web assets')
    group.add_argument('--static-dir', default=None,
                       help='folder to install into (default: the installed visdom\'s static/)')
    group.add_argument('--registry', default=None,
                       help=f'npm registry or mirror URL (default: $NPM_CONFIG_REGISTRY, else '
                            f'{DEFAULT_REGISTRY})')
    group.add_argument('--cache-dir', default=None,
                       help='keep downloaded tarballs here and reuse them (default: a temporary folder)')
    source = group.add_mutually_exclusive_group()
    source.add_argument('--from-dir', default=None, metavar='DIR',
                        help='install from the .tgz files in DIR (made by --download-only), no network')
    source.add_argument('--download-only', default=None, metavar='DIR',
                        help='download and check the package tarballs into DIR; install nothing')
    return parser


def run(args, parser):
    """Carry out the parsed installer options: print the JSON summary, return the exit code."""
    if args.from_dir is not None and (args.registry is not None or args.cache_dir is not None):
        parser.error('--from-dir uses local tarballs only; drop --registry and --cache-dir')
    if args.download_only is not None and (args.static_dir is not None or args.cache_dir is not None):
        parser.error('--download-only DIR installs nothing and keeps the tarballs in DIR; '
                     'drop --static-dir and --cache-dir')
    registry = args.registry or registry_from_env()
    try:
        if args.download_only is not None:
            summary = download_tarballs(args.download_only, registry=registry)
        else:
            summary = install_assets(static_dir=args.static_dir, registry=registry,
                                     cache_dir=args.cache_dir, from_dir=args.from_dir)
    except AssetError as exc:
        print(f'error: {exc}', file=sys.stderr)
        return 1
    print(json.dumps(summary, indent=2))
    return 0


def main(argv=None):
    parser = add_arguments(argparse.ArgumentParser(
        description='Install the JavaScript, CSS and fonts visdom\'s web page needs from npm '
                    'package tarballs (registry, mirror or local folder).'))
    return run(parser.parse_args(argv), parser)


if __name__ == '__main__':
    sys.exit(main())
