"""Multi-modal evaluation (paper §4.2, Table 2) with StarGAN v2's protocol: LPIPS diversity and per-task FID.

For every target domain and every other source domain (task `<src>2<trg>`), each validation image of the
source domain is translated `--num_outs_per_domain` times, with a fresh latent code per output (latent-guided)
or a different validation image of the target domain per output (reference-guided). LPIPS is the mean over
the pairs of one image's outputs, averaged over images, then over tasks; FID compares a task's outputs with
the *training* images of its target domain and is averaged over tasks. The networks are StarGAN v2's
(clovaai/stargan-v2 `metrics/`): LPIPS on torchvision's AlexNet with its learned linear weights, FID on
torchvision's ImageNet InceptionV3 (not pytorch-fid's TF port). Outputs land in
`<out>/<mode>/<src>2<trg>/<source stem>_<k>.png`, metrics in `<out>/metrics_multimodal.json`.

    python -m evaluation.multimodal --checkpoints_dir checkpoints --name seasons_src --dataroot datasets/seasons \\
        --lpips_weights lpips_weights.ckpt --alexnet_weights alexnet-owt-7be5be79.pth \\
        --inception_weights inception_v3_google-0cc3c7bd.pth
"""
import argparse
import functools
import json
import math
import shutil
import sys
import zlib
from pathlib import Path

import numpy as np
import torch
import torchvision
from PIL import Image
from torch import nn
from torchvision import transforms
from tqdm import tqdm

from evaluation.common import EvaluationError, cli, default_device, image_files
from evaluation.fid import feature_statistics, trace_sqrt_product  # noqa: F401  (trace_sqrt_product: part of this API)
from evaluation.fid import frechet_distance as fid_frechet_distance
from util.util import atomic_write_json, atomic_write_text, safe_torch_load
from util.errors import ConfigError

MODES = ('latent', 'reference')
ALEXNET_URL = torchvision.models.AlexNet_Weights.IMAGENET1K_V1.url
INCEPTION_URL = torchvision.models.Inception_V3_Weights.IMAGENET1K_V1.url
ALEXNET_FILE, INCEPTION_FILE = ALEXNET_URL.rsplit('/', 1)[1], INCEPTION_URL.rsplit('/', 1)[1]
LPIPS_FILE = 'lpips_weights.ckpt'
LPIPS_SOURCE = ('metrics/lpips_weights.ckpt of https://github.com/clovaai/stargan-v2 '
                '(the same file is Multimodal/metrics/lpips_weights.ckpt of jcy132/Hneg_SRC)')
RANDOM_WARNING = ('random LPIPS/FID network weights (--random_weights): for pipeline tests only, '
                  'the numbers are meaningless')
FID_INPUT_SIZE = 299
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


# ---------------------------------------------------------------------------------------------------- weights

def default_hub_path(file):
    """Where torchvision caches a downloaded weights file: $TORCH_HOME/hub/checkpoints/<file>."""
    return Path(torch.hub.get_dir()) / 'checkpoints' / file


def missing_weights(path, *, flag, file, source):
    """The error line for a weights file that is not at `path` (None when it is there)."""
    if path is not None and Path(path).is_file():
        return None
    where = 'no path given' if path is None else f'not found at {path}'
    return f'{flag}: {file} {where}; get it from {source}'


def load_weights(path, *, flag, file, source):
    """The state dict stored at `path`; an EvaluationError naming `flag` when missing or unreadable."""
    problem = missing_weights(path, flag=flag, file=file, source=source)
    if problem:
        raise EvaluationError(problem)
    try:
        return safe_torch_load(str(path))
    except RuntimeError as exc:
        raise EvaluationError(f'{flag}: {path} could not be read as {file}: {exc}') from exc


# ---------------------------------------------------------------------------------------------------- LPIPS

def unit_channels(x, eps=1e-10):
    """Each spatial feature vector scaled to unit length: x / sqrt(Σ_c x² + eps). (B, C, H, W)"""
    return x * torch.rsqrt(x.pow(2).sum(dim=1, keepdim=True) + eps)


def alexnet_features():
    """torchvision AlexNet's randomly initialised `features`, without building its unused 58M-parameter
    classifier (the model is laid out on the meta device, then only the features are materialised)."""
    with torch.device('meta'):
        features = torchvision.models.alexnet(weights=None).features
    features = features.to_empty(device='cpu')
    for layer in features:
        if isinstance(layer, nn.Conv2d):
            layer.reset_parameters()
    return features


class LPIPS(nn.Module):
    """LPIPS (Zhang et al. 2018), AlexNet variant as StarGAN v2 computes it:
    d(x, y) = Σ_l mean_hw(w_l · (φ̂_l(x) − φ̂_l(y))²), φ̂_l the unit-normalised l-th conv-ReLU map."""

    # LPIPS' input scaling for images in [-1, 1] (StarGAN v2 metrics/lpips.py)
    SHIFT = (-0.030, -0.088, -0.188)
    SCALE = (0.458, 0.448, 0.450)

    def __init__(self):
        super().__init__()
        self.features = alexnet_features()
        channels = [m.out_channels for m in self.features if isinstance(m, nn.Conv2d)]
        self.linear = nn.ModuleList(nn.Conv2d(c, 1, 1, bias=False) for c in channels)
        self.register_buffer('shift', torch.tensor(self.SHIFT).view(1, 3, 1, 1), persistent=False)
        self.register_buffer('scale', torch.tensor(self.SCALE).view(1, 3, 1, 1), persistent=False)
        self.weights = 'random'

    def embed(self, x):
        """The unit-normalised output of each conv-ReLU of AlexNet for images x (B, 3, H, W) in [-1, 1]."""
        if min(x.shape[-2:]) < 31:
            raise EvaluationError(f'LPIPS (AlexNet) needs images of at least 31x31 pixels, got {tuple(x.shape)}')
        h = (x - self.shift) / self.scale
        maps = []
        for layer in self.features:
            h = layer(h)
            if isinstance(layer, nn.ReLU):
                maps.append(unit_channels(h))
                if len(maps) == len(self.linear):
                    return maps  # AlexNet's last max-pool feeds no LPIPS layer

    def distance(self, maps_x, maps_y):
        """Per-image LPIPS (B,) between two embed() results."""
        return sum(lin((a - b).pow(2)).mean(dim=(1, 2, 3)) for a, b, lin in zip(maps_x, maps_y, self.linear))

    def forward(self, x, y):
        return self.distance(self.embed(x), self.embed(y))


def lpips_linear_weights(state_dict, source):
    """The 5 per-layer weights (1, C, 1, 1) from StarGAN v2's lpips_weights.ckpt key layout."""
    channels = (64, 192, 384, 256, 256)
    weights = []
    for index, c in enumerate(channels):
        key = f'lpips_weights.{index}.main.1.weight'
        if key not in state_dict:
            raise EvaluationError(f'{source} has no {key!r}: not StarGAN v2\'s {LPIPS_FILE} '
                                  f'(keys lpips_weights.<0-4>.main.1.weight)')
        if tuple(state_dict[key].shape) != (1, c, 1, 1):
            raise EvaluationError(f'{source}: {key} has shape {tuple(state_dict[key].shape)}, expected (1, {c}, 1, 1)')
        weights.append(state_dict[key])
    return weights


def build_lpips(lpips_state=None, alexnet_state=None, *, source=None):
    """An LPIPS in eval mode; given both state dicts, with their weights (else randomly initialised).

    `alexnet_state` is a torchvision alexnet state dict (keys features.<i>.*); `source` names where the
    weights came from, for errors and the result's settings.
    """
    if (lpips_state is None) != (alexnet_state is None):
        raise ConfigError('build_lpips needs both state dicts or neither')
    net = LPIPS()
    if lpips_state is not None:
        source = source or {'lpips': 'the LPIPS state dict', 'alexnet': 'the AlexNet state dict'}
        with torch.no_grad():
            for lin, w in zip(net.linear, lpips_linear_weights(lpips_state, source['lpips'])):
                lin.weight.copy_(w)
        features = {k[len('features.'):]: v for k, v in alexnet_state.items() if k.startswith('features.')}
        try:
            net.features.load_state_dict(features)
        except RuntimeError as exc:
            raise EvaluationError(f'{source["alexnet"]} is not a torchvision AlexNet state dict '
                                  f'({ALEXNET_FILE}): {exc}') from exc
        net.weights = dict(source)
    return net.eval()


def device_of(net):
    """Where a network's parameters live (CPU for one without parameters)."""
    return next((p.device for p in net.parameters()), torch.device('cpu'))


def mean_pairwise_lpips(lpips_net, outputs):
    """Per-image mean LPIPS over all pairs of a list of K output batches (each (B, 3, H, W)): (B,)."""
    device = device_of(lpips_net)
    maps = [lpips_net.embed(x.to(device)) for x in outputs]
    pairs = [lpips_net.distance(maps[i], maps[j]) for i in range(len(maps)) for j in range(i + 1, len(maps))]
    return torch.stack(pairs).mean(dim=0).cpu()


# ---------------------------------------------------------------------------------------------------- FID

class InceptionPool(nn.Module):
    """torchvision's InceptionV3 up to its 2048-d average pool, as StarGAN v2's FID runs it (its layers
    called in order, so torchvision's transform_input is not applied)."""

    LAYERS = ('Conv2d_1a_3x3', 'Conv2d_2a_3x3', 'Conv2d_2b_3x3', 'maxpool1', 'Conv2d_3b_1x1', 'Conv2d_4a_3x3',
              'maxpool2', 'Mixed_5b', 'Mixed_5c', 'Mixed_5d', 'Mixed_6a', 'Mixed_6b', 'Mixed_6c', 'Mixed_6d',
              'Mixed_6e', 'Mixed_7a', 'Mixed_7b', 'Mixed_7c', 'avgpool')

    def __init__(self, inception):
        super().__init__()
        self.layers = nn.Sequential(*(getattr(inception, name) for name in self.LAYERS))
        self.weights = 'random'

    def forward(self, x):
        return self.layers(x).flatten(1)  # (B, 2048)


def build_inception(state_dict=None, *, source=None):
    """An InceptionPool in eval mode with torchvision's inception_v3 state dict (random when None)."""
    net = torchvision.models.inception_v3(weights=None, aux_logits=True, init_weights=state_dict is None)
    if state_dict is not None:
        try:
            net.load_state_dict(state_dict)
        except RuntimeError as exc:
            raise EvaluationError(f'{source} is not a torchvision inception_v3 state dict ({INCEPTION_FILE}): '
                                  f'{exc}') from exc
    pool = InceptionPool(net).eval()
    if state_dict is not None:
        pool.weights = str(source)
    return pool


def fid_transform(img_size, input_size=FID_INPUT_SIZE):
    """StarGAN v2's FID input: resize to the model's size, then to Inception's, ImageNet-normalised."""
    return transforms.Compose([transforms.Resize([img_size, img_size]), transforms.Resize([input_size, input_size]),
                               transforms.ToTensor(), transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)])


@torch.no_grad()
def fid_features(fid_net, files, transform, *, batch_size, desc=None, progress=True):
    """(N, D) float64 features of image files."""
    device = device_of(fid_net)
    chunks = []
    for start in tqdm(range(0, len(files), batch_size), desc=desc, leave=False, disable=not progress):
        x = torch.stack([transform(read_rgb(f)) for f in files[start:start + batch_size]])
        chunks.append(fid_net(x.to(device)).double().cpu())
    return torch.cat(chunks).numpy()


# StarGAN v2's FID: the root's trace from two eigendecompositions, no offset or check (see evaluation/fid.py)
frechet_distance = functools.partial(fid_frechet_distance, pytorch_fid=False)


class DomainStatistics:
    """FID statistics of each target domain's training images, computed on first use and kept, so that
    tasks and modes sharing a target domain read its training images once."""

    def __init__(self, fid_net, train_root, img_size, *, input_size=FID_INPUT_SIZE, batch_size=32, progress=True):
        self.fid_net, self.train_root = fid_net, Path(train_root)
        self.transform = fid_transform(img_size, input_size)
        self.img_size, self.input_size = img_size, input_size
        self.batch_size, self.progress = batch_size, progress
        self.stats, self.counts = {}, {}

    def __call__(self, domain):
        if domain not in self.stats:
            files = domain_files(self.train_root, domain)
            feats = fid_features(self.fid_net, files, self.transform, batch_size=self.batch_size,
                                 desc=f'FID statistics of train/{domain}', progress=self.progress)
            self.stats[domain], self.counts[domain] = feature_statistics(feats), len(files)
        return self.stats[domain]


# ---------------------------------------------------------------------------------------------------- images

def read_rgb(path):
    with Image.open(path) as im:
        return im.convert('RGB')


def domain_names(root):
    """Sorted domain folders of `root`; their positions are the domain labels, as in StarGAN v2."""
    root = Path(root)
    if not root.is_dir():
        raise EvaluationError(f'{root} does not exist or is not a folder (expected one subfolder per domain)')
    names = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith('.'))
    if len(names) < 2:
        raise EvaluationError(f'{root} holds {len(names)} domain folder(s); multi-modal evaluation needs at least 2')
    return names


def domain_files(root, domain):
    """Sorted images of `<root>/<domain>`; two files with one stem would write the same outputs."""
    files = image_files(Path(root) / domain)
    stems = [f.stem for f in files]
    twins = sorted({s for s in stems if stems.count(s) > 1})
    if twins:
        raise EvaluationError(f'{Path(root) / domain}: several images share the stem(s) {", ".join(twins[:5])}; '
                              'outputs are named <stem>_<k>.png')
    return files


def load_images(files, size):
    """Images resized to size x size, in [-1, 1]: (B, 3, size, size)."""
    to_tensor = transforms.Compose([transforms.Resize([size, size]), transforms.ToTensor()])
    return torch.stack([to_tensor(read_rgb(f)) for f in files]) * 2 - 1


def save_png(x, path):
    """Save one image (3, H, W) in [-1, 1] as 8-bit PNG (clamped, rounded as torchvision's save_image)."""
    pixels = ((x.detach().float().cpu() + 1) / 2).clamp(0, 1).mul(255).add(0.5).clamp(0, 255).to(torch.uint8)
    Image.fromarray(pixels.permute(1, 2, 0).numpy()).save(path)


# ---------------------------------------------------------------------------------------------------- protocol

def enumerate_tasks(domains):
    """(source, target) pairs in StarGAN v2's order: each target, then each other domain as source."""
    return [(src, trg) for trg in domains for src in domains if src != trg]


def task_generator(seed, task):
    """A CPU generator for one task, seeded from the evaluation seed and the task's name."""
    if seed < 0:
        raise ConfigError(f'--seed must be >= 0, got {seed}')
    state = np.random.SeedSequence([seed, zlib.crc32(task.encode())]).generate_state(1, np.uint64)[0]
    return torch.Generator().manual_seed(int(state))


def reference_indices(num_sources, num_refs, num_outs, generator):
    """(num_sources, num_outs) reference indices: for each source image a random draw of distinct target
    images (cycling through fresh permutations when there are fewer than num_outs)."""
    rounds = math.ceil(num_outs / num_refs)
    rows = [torch.cat([torch.randperm(num_refs, generator=generator) for _ in range(rounds)])[:num_outs]
            for _ in range(num_sources)]
    return torch.stack(rows)


def check_domains(translator, val_root, train_root):
    """The domain names, checked against the translator and the training folders."""
    domains = domain_names(val_root)
    if list(translator.domains) != domains or translator.num_domains != len(domains):
        raise EvaluationError(f'the translator\'s domains {list(translator.domains)} (num_domains '
                              f'{translator.num_domains}) differ from the folders of {val_root} {domains}; '
                              'a domain\'s label is its position among the sorted folders')
    missing = [d for d in domains if not (Path(train_root) / d).is_dir()]
    if missing:
        raise EvaluationError(f'{train_root} lacks the domain folder(s) {", ".join(missing)} '
                              '(FID compares with the target domain\'s training images)')
    return domains


@torch.no_grad()
def translate_task(translator, src_files, ref_files, trg_index, mode, task_dir, *, num_outs, batch_size, generator,
                   lpips_net, progress=True):
    """Write num_outs translations of each source image to task_dir; return each image's mean pairwise
    LPIPS (N,). Codes and references are drawn per image up front, so batch_size does not change them."""
    device = torch.device(translator.device)
    if mode == 'latent':
        codes = torch.randn(len(src_files), num_outs, translator.latent_dim, generator=generator)  # (N, K, Z)
    else:
        refs = reference_indices(len(src_files), len(ref_files), num_outs, generator)  # (N, K)
    per_image = []
    for start in tqdm(range(0, len(src_files), batch_size), desc=task_dir.name, leave=False, disable=not progress):
        files = src_files[start:start + batch_size]
        x_src = load_images(files, translator.img_size).to(device)
        y = torch.full((len(files),), trg_index, dtype=torch.long, device=device)
        outputs = []
        for k in range(num_outs):
            if mode == 'latent':
                s = translator.style_from_latent(codes[start:start + len(files), k].to(device), y)
            else:
                chosen = [ref_files[i] for i in refs[start:start + len(files), k].tolist()]
                s = translator.style_from_reference(load_images(chosen, translator.img_size).to(device), y)
            x_fake = translator.generate(x_src, s)
            for f, image in zip(files, x_fake):
                save_png(image, task_dir / f'{f.stem}_{k}.png')
            outputs.append(x_fake)
        per_image.append(mean_pairwise_lpips(lpips_net, outputs))
    return torch.cat(per_image)


def net_weights(net):
    return getattr(net, 'weights', 'unspecified')


@torch.no_grad()
def evaluate_multimodal(translator, val_root, train_root, out_dir, mode, *, lpips_net, fid_net,
                        num_outs_per_domain=10, batch_size=32, seed=777, fid_input_size=FID_INPUT_SIZE,
                        real_stats=None, progress=True):
    """StarGAN v2's LPIPS and FID of `translator` for one mode ('latent' or 'reference').

    `translator` has num_domains, domains, latent_dim, img_size, device, style_from_latent(z, y),
    style_from_reference(x_ref, y) and generate(x_src, s) -> images in [-1, 1]. `real_stats` (a
    DomainStatistics of the same fid_net and train_root) shares training statistics between calls.
    Returns and writes `<out_dir>/metrics_multimodal_<mode>.json`:
    {mode: {'LPIPS': {task: v, ..., 'mean': v}, 'FID': {...}}, 'settings': {...}}.
    `fid_input_size` other than 299 is for tests only.
    """
    if mode not in MODES:
        raise ConfigError(f'mode must be one of {", ".join(MODES)}, got {mode!r}')
    if num_outs_per_domain < 2:
        raise ConfigError(f'--num_outs_per_domain must be >= 2 (LPIPS compares pairs), got {num_outs_per_domain}')
    domains = check_domains(translator, val_root, train_root)
    if real_stats is None:
        real_stats = DomainStatistics(fid_net, train_root, translator.img_size, input_size=fid_input_size,
                                      batch_size=batch_size, progress=progress)
    expected = (fid_net, Path(train_root), translator.img_size, fid_input_size)
    if (real_stats.fid_net, real_stats.train_root, real_stats.img_size, real_stats.input_size) != expected:
        raise ConfigError('real_stats was built for another fid_net, train_root, img_size or fid_input_size')
    val_files = {d: domain_files(val_root, d) for d in domains}
    transform = fid_transform(translator.img_size, fid_input_size)
    lpips, fid, generated = {}, {}, {}
    for src, trg in tqdm(enumerate_tasks(domains), desc=f'{mode} tasks', disable=not progress):
        task = f'{src}2{trg}'
        task_dir = Path(out_dir) / mode / task
        shutil.rmtree(task_dir, ignore_errors=True)
        task_dir.mkdir(parents=True)
        per_image = translate_task(translator, val_files[src], val_files[trg], domains.index(trg), mode, task_dir,
                                   num_outs=num_outs_per_domain, batch_size=batch_size,
                                   generator=task_generator(seed, task), lpips_net=lpips_net, progress=progress)
        lpips[task] = float(per_image.double().mean())
        fakes = sorted(task_dir.glob('*.png'))
        fake_stats = feature_statistics(fid_features(fid_net, fakes, transform, batch_size=batch_size,
                                                     desc=f'FID features of {task}', progress=progress))
        fid[task] = frechet_distance(fake_stats, real_stats(trg))
        generated[task] = len(fakes)
    lpips['mean'] = float(np.mean([lpips[t] for t in generated]))
    fid['mean'] = float(np.mean([fid[t] for t in generated]))
    weights = {'lpips': net_weights(lpips_net), 'fid': net_weights(fid_net)}
    settings = {
        'protocol': 'StarGAN v2 metrics/eval.py (clovaai/stargan-v2), as in Hneg_SRC Multimodal/metrics',
        'num_outs_per_domain': num_outs_per_domain, 'seed': seed, 'batch_size': batch_size,
        'img_size': translator.img_size, 'fid_input_size': fid_input_size, 'domains': domains,
        'val_root': str(val_root), 'train_root': str(train_root), 'weights': weights,
        'num_val_images': {d: len(val_files[d]) for d in domains},
        'num_train_images': {d: real_stats.counts[d] for d in domains},
        'num_generated': generated,
    }
    if 'random' in weights.values():
        settings['warning'] = RANDOM_WARNING
    result = {mode: {'LPIPS': lpips, 'FID': fid}, 'settings': settings}
    write_json(Path(out_dir) / f'metrics_multimodal_{mode}.json', result)
    return result


def write_json(path, obj):
    """JSON in insertion order (tasks stay in the protocol's order), written atomically."""
    atomic_write_text(str(path), json.dumps(obj, indent=2) + '\n')


def merge_results(results):
    """One {mode: ..., 'settings': ...} dict from per-mode results evaluated with the same settings."""
    merged, settings = {}, results[0]['settings']
    for result in results:
        mode = next(k for k in result if k != 'settings')
        if mode in merged:
            raise ConfigError(f'two results for mode {mode!r}')
        if result['settings'] != settings:
            raise ConfigError(f'the {mode} result was evaluated with other settings than the {next(iter(merged))} one')
        merged[mode] = result[mode]
    return dict(merged, settings=settings)


# ---------------------------------------------------------------------------------------------------- Table 2

TABLE2_COLUMNS = (  # (mode, metric, header)
    ('latent', 'FID', 'FID latent↓'), ('latent', 'LPIPS', 'LPIPS latent↑'),
    ('reference', 'FID', 'FID ref↓'), ('reference', 'LPIPS', 'LPIPS ref↑'),
)
# The paper's Table 2 (../shared/paper/tables.md, read from the paper's text), in TABLE2_COLUMNS order.
PAPER_TABLE2 = {
    ('seasons', 'StarGAN v2'): (63.06, 0.413, 61.19, 0.346),
    ('seasons', '+ LSeSim'): (61.50, 0.378, 60.40, 0.302),
    ('seasons', '+ ours'): (54.70, 0.496, 54.23, 0.365),
    ('weather', 'StarGAN v2'): (62.45, 0.415, 64.20, 0.342),
    ('weather', '+ LSeSim'): (60.07, 0.335, 62.17, 0.286),
}
DIGITS = {'FID': 2, 'LPIPS': 3}


def table2(results_by_method, dataset, *, paper=True):
    """Table 2 rows (dataset, method) from {method: merged result}, as (Markdown, JSON-ready dict); with
    `paper`, the paper's values in an italic row under each of ours that it reports."""
    header = ['Dataset', 'Method'] + [h for _, _, h in TABLE2_COLUMNS]
    lines = ['**Table 2. Multi-modal translation, StarGAN v2 protocol (mean over tasks <src>2<trg>)**', '',
             '| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
    rows, random_rows = [], []
    for method, result in results_by_method.items():
        values = {h: result.get(mode, {}).get(metric, {}).get('mean') for mode, metric, h in TABLE2_COLUMNS}
        cells = ['–' if values[h] is None else f'{values[h]:.{DIGITS[metric]}f}' for _, metric, h in TABLE2_COLUMNS]
        if 'warning' in result.get('settings', {}):
            random_rows.append(method)
            cells = [f'{c} ⚠' for c in cells]
        lines.append('| ' + ' | '.join([dataset, method] + cells) + ' |')
        reported = PAPER_TABLE2.get((dataset.lower(), method)) if paper else None
        if reported:
            lines.append('| ' + ' | '.join([f'*{dataset}*', f'*{method}, paper*'] + [
                f'*{v:.{DIGITS[metric]}f}*' for (_, metric, _), v in zip(TABLE2_COLUMNS, reported)]) + ' |')
        rows.append({'dataset': dataset, 'method': method, 'values': values,
                     'paper': dict(zip(values, reported)) if reported else None,
                     'settings': result.get('settings')})
    if random_rows:
        lines += ['', f'⚠ {", ".join(random_rows)}: {RANDOM_WARNING}.']
    data = {'table': 'table2', 'dataset': dataset, 'columns': [h for _, _, h in TABLE2_COLUMNS], 'rows': rows}
    return '\n'.join(lines) + '\n', data


def write_table2(out_stem, markdown, data):
    """OUT.md and OUT.json."""
    atomic_write_text(f'{out_stem}.md', markdown)
    atomic_write_json(f'{out_stem}.json', data)


# ---------------------------------------------------------------------------------------------------- CLI

def build_metric_nets(args, device):
    """The LPIPS and FID networks the flags ask for; every missing weights file in one error."""
    if args.random_weights:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(args.seed)
            return build_lpips().to(device), build_inception().to(device)
    files = {
        'lpips': (args.lpips_weights, '--lpips_weights', LPIPS_FILE, LPIPS_SOURCE),
        'alexnet': (args.alexnet_weights, '--alexnet_weights', ALEXNET_FILE, ALEXNET_URL),
        'inception': (args.inception_weights, '--inception_weights', INCEPTION_FILE, INCEPTION_URL),
    }
    problems = [missing_weights(path, flag=flag, file=file, source=src) for path, flag, file, src in files.values()]
    problems = [p for p in problems if p]
    if problems:
        raise EvaluationError('missing weights (or pass --random_weights, for pipeline tests only):\n  '
                              + '\n  '.join(problems))
    state = {k: load_weights(path, flag=flag, file=file, source=src) for k, (path, flag, file, src) in files.items()}
    lpips_net = build_lpips(state['lpips'], state['alexnet'],
                            source={'lpips': str(args.lpips_weights), 'alexnet': str(args.alexnet_weights)})
    return lpips_net.to(device), build_inception(state['inception'], source=args.inception_weights).to(device)


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--checkpoints_dir', default='./checkpoints')
    parser.add_argument('--name', required=True, help='the run to evaluate (trained with --model stargan_v2)')
    parser.add_argument('--epoch', default='latest')
    parser.add_argument('--dataroot', required=True, help='folder with train/<domain>/ and val/<domain>/')
    parser.add_argument('--out', default=None, help='output folder (default: ./results/<name>/multimodal_<epoch>)')
    parser.add_argument('--modes', nargs='+', default=list(MODES), choices=MODES)
    parser.add_argument('--num_outs_per_domain', type=int, default=10, help='outputs per source image')
    parser.add_argument('--batch_size', type=int, default=32)
    parser.add_argument('--seed', type=int, default=777, help='draws the latent codes and references')
    parser.add_argument('--lpips_weights', default=None, help=f'{LPIPS_FILE}: {LPIPS_SOURCE}')
    parser.add_argument('--alexnet_weights', default=str(default_hub_path(ALEXNET_FILE)),
                        help=f'torchvision AlexNet ImageNet weights ({ALEXNET_URL})')
    parser.add_argument('--inception_weights', default=str(default_hub_path(INCEPTION_FILE)),
                        help=f'torchvision InceptionV3 ImageNet weights ({INCEPTION_URL})')
    parser.add_argument('--random_weights', action='store_true',
                        help='PIPELINE TESTS ONLY: random LPIPS/FID networks; the numbers are meaningless')
    parser.add_argument('--fid_input_size', type=int, default=FID_INPUT_SIZE,
                        help='TESTS ONLY: Inception input side (the protocol uses 299)')
    parser.add_argument('--device', default=None,
                        help='cuda, cuda:0 or cpu (default: the first GPU of $GPU_IDS, else cuda:0 when '
                             'available)')
    parser.add_argument('--method', default=None, help='Table 2 row label (default: --name)')
    parser.add_argument('--dataset', default=None, help='Table 2 dataset label (default: the --dataroot folder name)')
    parser.add_argument('--no_tqdm', action='store_true', help='no progress bars')
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    device = args.device or default_device()
    root = Path(args.dataroot)
    lpips_net, fid_net = build_metric_nets(args, device)
    if args.random_weights:
        print(f'WARNING: {RANDOM_WARNING}', file=sys.stderr)
    from models.stargan_v2_model import load_translator
    try:
        translator = load_translator(args.checkpoints_dir, args.name, args.epoch, device)
    except (FileNotFoundError, ValueError) as exc:
        raise EvaluationError(str(exc)) from exc
    out = Path(args.out or Path('results') / args.name / f'multimodal_{args.epoch}')
    real_stats = DomainStatistics(fid_net, root / 'train', translator.img_size, input_size=args.fid_input_size,
                                  batch_size=args.batch_size, progress=not args.no_tqdm)
    results = [evaluate_multimodal(translator, root / 'val', root / 'train', out, mode, lpips_net=lpips_net,
                                   fid_net=fid_net, num_outs_per_domain=args.num_outs_per_domain,
                                   batch_size=args.batch_size, seed=args.seed, fid_input_size=args.fid_input_size,
                                   real_stats=real_stats, progress=not args.no_tqdm)
               for mode in args.modes]
    merged = merge_results(results)
    merged['settings'].update(run=args.name, epoch=args.epoch, checkpoints_dir=args.checkpoints_dir)
    write_json(out / 'metrics_multimodal.json', merged)
    markdown, data = table2({args.method or args.name: merged}, args.dataset or root.resolve().name)
    write_table2(out / 'table2', markdown, data)
    print(markdown, end='')
    if args.random_weights:
        print(f'WARNING: {RANDOM_WARNING}', file=sys.stderr)


if __name__ == '__main__':
    sys.exit(cli(main))
