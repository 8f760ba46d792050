"""Training monitor (CUT's Visualizer): visdom plots, an HTML page of results, loss logs.

Files under <checkpoints_dir>/<name>/:
  loss_log.txt    CUT's human-readable lines (non-finite losses print as nan / inf);
  loss_log.jsonl  one JSON object per print_current_losses call:
                  {"epoch", "iters", "total_iters", "time", "t_comp", "t_data", "losses": {name: value}},
                  numbers as floats, "time" in Unix seconds; a non-finite number (nan, inf) is
                  written as null so that every line is strict JSON;
  web/index.html  the latest visuals of every epoch, images in web/images/epoch<NNN>_<label>.png.

visdom is optional at run time: an unreachable server costs one warning naming the launcher, and
plotting resumes, with the whole loss history, once a server answers again.
"""
import json
import logging
import math
import ntpath
import os
import random
import sys
import time

import numpy as np
from tqdm import tqdm

from util import distributed, html, util

logger = logging.getLogger(__name__)


def save_images(webpage, visuals, image_path, aspect_ratio=1.0, width=256):
    """Write each visual as <web_dir>/images/<label>/<name>.png and add them as one row of `webpage`.

    `name` is the file name, without extension, of image_path[0] (a path or a list of paths, as
    returned by BaseModel.get_image_paths). This is the layout test.py and the FID scripts read.
    """
    first_path = image_path if isinstance(image_path, str) else image_path[0]
    name = os.path.splitext(ntpath.basename(first_path))[0]
    image_dir = webpage.get_image_dir()
    webpage.add_header(name)
    ims, txts, links = [], [], []
    for label, image in visuals.items():
        relative = f'{label}/{name}.png'
        util.save_image(util.tensor2im(image), os.path.join(image_dir, relative), aspect_ratio=aspect_ratio)
        ims.append(relative)
        txts.append(label)
        links.append(relative)
    webpage.add_images(ims, txts, links, width=width)


def loss_line(epoch, iters, losses, t_comp, t_data):
    """CUT's loss_log.txt line: '(epoch: 1, iters: 100, time: 0.123, data: 0.004) G: 1.234 ...'."""
    message = f'(epoch: {epoch}, iters: {iters}, time: {t_comp:.3f}, data: {t_data:.3f}) '
    return message + ''.join(f'{k}: {v:.3f} ' for k, v in losses.items())


def loss_record(epoch, iters, losses, t_comp, t_data, total_iters=None, now=None):
    """The loss_log.jsonl object for one call; non-finite numbers become None (JSON null)."""
    return {
        'epoch': epoch, 'iters': iters, 'total_iters': total_iters,
        'time': time.time() if now is None else now,
        't_comp': _finite_or_none(t_comp), 't_data': _finite_or_none(t_data),
        'losses': {k: _finite_or_none(v) for k, v in losses.items()},
    }


def _finite_or_none(value):
    value = float(value)
    return value if math.isfinite(value) else None


def _bounded_visdom(server, port, env, timeout):
    """A connected _BoundedVisdom; visdom and requests are imported here, by runs that display (a machine
    without them trains with --display_id 0)."""
    import requests
    import visdom

    class _BoundedVisdom(visdom.Visdom):
        """A visdom client whose requests time out and raise ConnectionError (never print or hang).

        Built with send=False so the base constructor neither posts nor opens its event socket; the
        environment is then registered here, which raises ConnectionError if no server answers.
        """

        def __init__(self, server, port, env, timeout):
            self._timeout = timeout
            super().__init__(server=server, port=port, env=env, raise_exceptions=True,
                             use_incoming_socket=False, send=False)
            self.send = True
            self._session = requests.Session()
            self._send({'eid': env}, endpoint='env/' + env)

        def _handle_post(self, url, data=None):
            response = self.session.post(url, data=data, timeout=self._timeout)
            # visdom routes every path (errors are 500s); these come from something else on that address
            if response.status_code == 404 or 502 <= response.status_code <= 504:
                raise ConnectionError(f'HTTP {response.status_code} from {url}: not a visdom server')
            return response.text

    return _BoundedVisdom(server, port, env, timeout)


class VisdomLink:
    """A visdom connection that tolerates an absent server.

    `call(fn)` runs fn(client) when connected and returns whether it ran. An unreachable server
    logs one warning per outage; reconnection is attempted at most every `retry_interval` seconds.
    """

    def __init__(self, server, port, env, retry_interval=30.0, timeout=3.0):
        self.server = server if '://' in server else f'http://{server}'
        self.port = port
        self.env = env
        self.url = f'{self.server}:{port}'
        self.retry_interval = retry_interval
        self.timeout = timeout
        self._client = None
        self._next_try = time.monotonic()
        self._warned = False

    @property
    def connected(self):
        return self._client is not None

    def client(self):
        """The connected client, or None while the server is unreachable and no retry is due."""
        if self._client is None and time.monotonic() >= self._next_try:
            try:
                self._client = _bounded_visdom(self.server, self.port, self.env, self.timeout)
            except ConnectionError as exc:
                self._lost(exc)
            else:
                if self._warned:
                    logger.info('visdom server at %s is back; plotting resumed', self.url)
                self._warned = False
        return self._client

    def call(self, fn):
        client = self.client()
        if client is None:
            return False
        try:
            fn(client)
        except ConnectionError as exc:
            self._lost(exc)
            return False
        return True

    def _lost(self, exc):
        self._client = None
        self._next_try = time.monotonic() + self.retry_interval
        if not self._warned:
            self._warned = True
            logger.warning(
                'visdom server not reachable at %s (%s); training continues without plots. '
                'Start one with `python -m util.visdom_server --port %d`, or pass --display_id 0 to '
                'turn plotting off. Retrying at most every %g s.',
                self.url, exc, self.port, self.retry_interval)


class Visualizer:
    """CUT's Visualizer: visdom display, HTML page and loss logs, for rank 0 only.

    Reads from `opt`: display_id (None: a random window id; > 0: visdom on; 0 or -1: off), isTrain,
    no_html, display_winsize, name, display_port, display_ncols, display_server, display_env,
    checkpoints_dir. `rank` defaults to torch.distributed's rank when it is initialised; any rank
    but 0 does nothing.
    """

    def __init__(self, opt, rank=None, retry_interval=30.0, timeout=3.0):
        self.enabled = (distributed.get_rank() if rank is None else rank) == 0
        self.display_id = opt.display_id
        if self.display_id is None:  # a private generator: numpy's global stream stays untouched
            self.display_id = random.Random().randrange(1, 100000) * 10
        self.use_html = opt.isTrain and not opt.no_html
        self.win_size = opt.display_winsize
        self.name = opt.name
        self.ncols = 0
        self.saved = False
        self.plot_data = {}
        self.link = None
        if not self.enabled:
            return
        if self.display_id > 0:
            self.ncols = opt.display_ncols
            self.link = VisdomLink(opt.display_server, opt.display_port, opt.display_env,
                                   retry_interval=retry_interval, timeout=timeout)
            self.link.client()  # connect now, so that a missing server is reported at start-up
        expr_dir = os.path.join(opt.checkpoints_dir, opt.name)
        self.web_dir = os.path.join(expr_dir, 'web')
        self.img_dir = os.path.join(self.web_dir, 'images')
        if self.use_html:
            util.mkdirs([self.web_dir, self.img_dir])
        util.mkdirs(expr_dir)
        self.log_name = os.path.join(expr_dir, 'loss_log.txt')
        self.jsonl_name = os.path.join(expr_dir, 'loss_log.jsonl')
        with open(self.log_name, 'a') as log_file:
            log_file.write(f'================ Training Loss ({time.strftime("%c")}) ================\n')

    def reset(self):
        """Start of an epoch: the next display_current_results writes the HTML page again."""
        self.saved = False

    def display_current_results(self, visuals, epoch, save_result):
        """Show `visuals` (label -> (B, C, H, W) tensor) in visdom; write them to the HTML page
        when save_result is true or nothing was written yet this epoch."""
        if not self.enabled:
            return
        images = {label: util.tensor2im(image) for label, image in visuals.items()}  # (H, W, 3)
        if self.link is not None:
            if self.ncols > 0:
                self.link.call(lambda vis: self._show_grid(vis, images))
            else:
                self.link.call(lambda vis: self._show_each(vis, images))
        if self.use_html and (save_result or not self.saved):
            self.saved = True
            for label, image in images.items():
                util.save_image(image, os.path.join(self.img_dir, f'epoch{epoch:03d}_{label}.png'))
            self._write_page(list(images), epoch)

    def _show_grid(self, vis, images):
        """One image panel (ncols per row, blank cells padded white) and one panel of labels."""
        ncols = min(self.ncols, len(images))
        h, w = next(iter(images.values())).shape[:2]
        panels = [image.transpose(2, 0, 1) for image in images.values()]  # (3, H, W) each
        labels = list(images)
        blank = np.full_like(panels[0], 255)
        while len(panels) % ncols:
            panels.append(blank)
            labels.append('')
        rows = ''.join('<tr>' + ''.join(f'<td>{label}</td>' for label in labels[i:i + ncols]) + '</tr>'
                       for i in range(0, len(labels), ncols))
        table_css = ('<style>table {border-collapse: separate; border-spacing: 4px; white-space: nowrap; '
                     f'text-align: center}} table td {{width: {w}px; height: {h}px; padding: 4px; '
                     'outline: 4px solid black}</style>')
        vis.images(np.stack(panels), nrow=ncols, padding=2, win=str(self.display_id + 1),
                   opts=dict(title=f'{self.name} images'))
        vis.text(f'{table_css}<table>{rows}</table>', win=str(self.display_id + 2),
                 opts=dict(title=f'{self.name} labels'))

    def _show_each(self, vis, images):
        for idx, (label, image) in enumerate(images.items(), start=1):
            vis.image(image.transpose(2, 0, 1), win=str(self.display_id + idx), opts=dict(title=label))

    def _write_page(self, labels, epoch):
        """index.html with a row per epoch, newest first (CUT links every epoch up to `epoch`)."""
        webpage = html.HTML(self.web_dir, f'Experiment name = {self.name}', refresh=0)
        for n in range(epoch, 0, -1):
            webpage.add_header(f'epoch [{n}]')
            paths = [f'epoch{n:03d}_{label}.png' for label in labels]
            webpage.add_images(paths, labels, paths, width=self.win_size)
        webpage.save()

    def plot_current_losses(self, epoch, counter_ratio, losses):
        """Append one point (x = epoch + counter_ratio) per loss and redraw the whole history.

        Every distinct set of loss names gets its own window, as in CUT. Points are kept while the
        server is away and sent with the next successful plot.
        """
        if not self.enabled or self.link is None or not losses:
            return
        plot_name = '_'.join(losses)
        data = self.plot_data.setdefault(plot_name, {'X': [], 'Y': [], 'legend': list(losses)})
        data['X'].append(epoch + counter_ratio)
        data['Y'].append([float(losses[k]) for k in data['legend']])
        win = str(self.display_id - list(self.plot_data).index(plot_name))
        self.link.call(lambda vis: self._send_plot(vis, data, win))

    def _send_plot(self, vis, data, win):
        y = np.array(data['Y'], dtype=np.float64)  # (T, L)
        y[~np.isfinite(y)] = np.nan  # visdom sends nan as a gap; inf would break the page's JSON
        x = np.repeat(np.array(data['X'], dtype=np.float64)[:, None], y.shape[1], axis=1)  # (T, L)
        vis.line(X=x, Y=y, win=win, opts={'title': self.name, 'legend': data['legend'],
                                          'xlabel': 'epoch', 'ylabel': 'loss'})

    def print_current_losses(self, epoch, iters, losses, t_comp, t_data, total_iters=None):
        """Print CUT's loss line and append it to loss_log.txt, and a JSON record to loss_log.jsonl.

        t_comp / t_data: seconds of computation / data loading per image; iters counts within the epoch.
        """
        if not self.enabled:
            return
        losses = {k: float(v) for k, v in losses.items()}
        message = loss_line(epoch, iters, losses, t_comp, t_data)
        tqdm.write(message, file=sys.stdout)
        with open(self.log_name, 'a') as log_file:
            log_file.write(message + '\n')
        record = loss_record(epoch, iters, losses, t_comp, t_data, total_iters=total_iters)
        with open(self.jsonl_name, 'a') as jsonl_file:
            jsonl_file.write(json.dumps(record, allow_nan=False) + '\n')
