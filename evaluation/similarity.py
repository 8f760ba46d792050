"""Similarity maps of the paper's Figure 9: how one query patch relates to every other location.

For each generator layer in `nce_layers`, the cosine similarity between the feature at a query point
and the features at all locations, on the input X (A) and, at the same point, on its translation
G(X) (B). Semantic relation consistency (Eq. 2–3) asks these two maps to agree. The features are the
generator's encoder features, projected by the patch MLPs of F when F's weights are given (what the
patch losses see), else the raw encoder features; either way L2-normalised per location.
"""
import os

import numpy as np
import torch
import torch.nn.functional as nnf
from PIL import Image, ImageDraw, ImageFont

from models.networks import define_F
from options.test_options import FEATURE_CHOICES
from util import util
from util.errors import CheckpointError, ConfigError, MissingFileError

# viridis sampled at 0, 1/4, 1/2, 3/4, 1 (perceptually ordered, readable in greyscale)
_COLORMAP_STOPS = np.array([[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]], dtype=float)


def load_sampler(path, *, kind, nc, in_channels, device='cpu'):
    """F (PatchSampleF) of a checkpoint `<epoch>_net_F.pth`, built for the encoder's channel counts."""
    net = define_F(kind, netF_nc=nc)
    net.build(in_channels)
    state = util.safe_torch_load(path, map_location=str(device))
    state = util.strip_module_prefix(state)
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f'{path} does not fit F --netF {kind} --netF_nc {nc} on feature channels '
                           f'{list(in_channels)} (check --nce_layers): {exc}') from exc
    return net.to(device).eval()


def choose_sampler(features, path, *, kind, nc, in_channels, device='cpu'):
    """F loaded from `path` for `features` 'projected' (or 'auto' when `path` exists); None for G's raw
    encoder features."""
    if features not in FEATURE_CHOICES:
        raise ConfigError(f'unknown similarity features {features!r}; valid: {", ".join(FEATURE_CHOICES)}')
    if features == 'encoder' or (features == 'auto' and not os.path.isfile(path)):
        return None
    if not os.path.isfile(path):
        raise MissingFileError(f'projected features need the weights of F, {path} is missing '
                                '(use the encoder features instead)')
    return load_sampler(path, kind=kind, nc=nc, in_channels=in_channels, device=device)


@torch.no_grad()
def encoder_channels(netG, image, layers):
    """Channel count of G's feature at each of `layers` (what F's MLPs were built for)."""
    return [f.shape[1] for f in netG(image, layers, encode_only=True)]


def crop_to(feat, height, width):
    """Centre-crop a (B, C, h, w) map larger than the image (G's first layer pads it) to the image size."""
    h, w = feat.shape[-2:]
    top, left = max(h - height, 0) // 2, max(w - width, 0) // 2
    return feat[..., top:top + min(h, height), left:left + min(w, width)]


@torch.no_grad()
def unit_features(netG, image, layers, netF=None):
    """(C, h, w) L2-normalised features of `image` (1, 3, H, W) at each of `layers` of G's encoder."""
    height, width = image.shape[-2:]
    feats = [crop_to(f, height, width) for f in netG(image, layers, encode_only=True)]
    if netF is not None:
        feats, _ = netF(feats, num_patches=0)  # each (1, nc, h, w)
    # exact unit length (F divides by the norm plus an epsilon, visible on tiny projections)
    return [nnf.normalize(f, dim=1)[0] for f in feats]


def query_cell(point, shape):
    """Row and column of the cell of an (h, w) map holding `point` = (x, y) in fractions of the image."""
    x, y = point
    if not (0.0 <= x <= 1.0 and 0.0 <= y <= 1.0):
        raise ConfigError(f'the query point is given as fractions of the image width and height in [0, 1], '
                         f'got ({x}, {y})')
    h, w = shape
    return min(int(y * h), h - 1), min(int(x * w), w - 1)


def cosine_map(feat, cell):
    """(h, w) cosine similarity between the unit feature at `cell` and every location of `feat` (C, h, w)."""
    i, j = cell
    return torch.einsum('c,chw->hw', feat[:, i, j], feat)


def upsample(values, height, width):
    """Bilinear resize of an (h, w) map to (height, width)."""
    return nnf.interpolate(values[None, None], size=(height, width), mode='bilinear', align_corners=False)[0, 0]


@torch.no_grad()
def similarity_maps(netG, image, layers, point, netF=None):
    """Figure 9 for one image: the translation and, per layer, the query's similarity maps on A and B.

    Returns a dict: 'translation' (1, 3, H, W); 'layers'; 'cells' (query row, column per layer);
    'A' / 'B': lists of (H, W) float arrays in [-1, 1], bilinear-upsampled; 'A_lowres' / 'B_lowres':
    the (h, w) maps at feature resolution, where the query's own similarity is exactly 1;
    'agreement': per layer, the correlation of the A and B maps (1 = the relation is kept, Eq. 3).
    """
    height, width = image.shape[-2:]
    translation = netG(image)
    result = {'translation': translation, 'layers': list(layers), 'cells': [], 'A': [], 'B': [],
              'A_lowres': [], 'B_lowres': []}
    for side, source in (('A', image), ('B', translation)):
        for feat in unit_features(netG, source, layers, netF):
            cell = query_cell(point, feat.shape[-2:])
            low = cosine_map(feat, cell)
            result[side + '_lowres'].append(low.cpu().numpy())
            result[side].append(upsample(low, height, width).clamp(-1, 1).cpu().numpy())
            if side == 'A':
                result['cells'].append(cell)
    result['agreement'] = [map_agreement(a, b) for a, b in zip(result['A_lowres'], result['B_lowres'])]
    return result


def map_agreement(map_a, map_b):
    """Pearson correlation of two maps (nan when one is constant)."""
    a, b = np.ravel(map_a) - np.mean(map_a), np.ravel(map_b) - np.mean(map_b)
    norm = np.linalg.norm(a) * np.linalg.norm(b)
    return float(a @ b / norm) if norm > 0 else float('nan')


def colorize(values, low, high):
    """(H, W) floats -> (H, W, 3) uint8 through the colormap, `low` and `high` at its two ends."""
    t = np.clip((np.asarray(values, dtype=float) - low) / max(high - low, 1e-8), 0.0, 1.0)
    stops = np.linspace(0.0, 1.0, len(_COLORMAP_STOPS))
    rgb = np.stack([np.interp(t, stops, _COLORMAP_STOPS[:, c]) for c in range(3)], axis=-1)
    return np.rint(rgb).astype(np.uint8)


def _mark_query(tile, point):
    """A white ring around a red dot at `point` (fractions) of a PIL tile."""
    draw = ImageDraw.Draw(tile)
    cx, cy = point[0] * tile.width, point[1] * tile.height
    r = max(3, tile.width // 40)
    draw.ellipse([cx - 2 * r, cy - 2 * r, cx + 2 * r, cy + 2 * r], outline=(255, 255, 255), width=max(1, r // 2))
    draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=(230, 25, 25))
    return tile


def render_figure(result, image, point, cell=128):
    """One PNG-ready PIL image: rows A (input) and B (translation); columns the image, then one map per
    layer, coloured on a range shared by A and B of that layer; the query point is marked everywhere."""
    font = ImageFont.load_default()
    pictures = {'A': util.tensor2im(image), 'B': util.tensor2im(result['translation'])}
    label_w, head_h, foot_h, pad = 84, 18, 16, 4
    height, width = image.shape[-2:]
    size = (cell, max(1, round(cell * height / width)))  # tile (width, height), the image's aspect ratio
    n_cols = 1 + len(result['layers'])
    canvas = Image.new('RGB', (label_w + n_cols * (cell + pad), head_h + 2 * (size[1] + pad) + foot_h), 'white')
    draw = ImageDraw.Draw(canvas)
    draw.text((label_w, 2), 'image', fill='black', font=font)
    for row, (side, title) in enumerate((('A', 'A: input X'), ('B', 'B: G(X)'))):
        top = head_h + row * (size[1] + pad)
        draw.text((4, top + size[1] // 2 - 6), title, fill='black', font=font)
        tile = Image.fromarray(pictures[side]).resize(size, Image.BICUBIC)
        canvas.paste(_mark_query(tile, point), (label_w, top))
    for col, layer in enumerate(result['layers'], start=1):
        left = label_w + col * (cell + pad)
        low = min(float(result['A'][col - 1].min()), float(result['B'][col - 1].min()))
        high = max(float(result['A'][col - 1].max()), float(result['B'][col - 1].max()))
        draw.text((left, 2), f'layer {layer}', fill='black', font=font)
        for row, side in enumerate('AB'):
            tile = Image.fromarray(colorize(result[side][col - 1], low, high)).resize(size, Image.NEAREST)
            canvas.paste(_mark_query(tile, point), (left, head_h + row * (size[1] + pad)))
        draw.text((left, head_h + 2 * (size[1] + pad)), f'cos {low:.2f}..{high:.2f}', fill='black', font=font)
    return canvas
