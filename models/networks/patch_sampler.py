"""Patch sampler F of CUT: picks the same random locations in every image's feature maps and
projects them with a per-layer 2-layer MLP onto the unit sphere (the embeddings of the patch-wise
losses: PatchNCE, hDCE and SRC)."""
import torch
import torch.nn as nn
import torch.nn.functional as F

from util.errors import ConfigError

from ..losses import l2_normalize
from .init import init_weights

SAMPLERS = ('sample', 'mlp_sample')


class PatchSampleF(nn.Module):
    """Samples `num_patches` positions per feature map and embeds them (keys `mlp_<i>.0/.2`).

    With `use_mlp`, the MLPs depend on the channel counts of the generator's features, so they are
    created by an explicit `build(in_channels)` before training (CUT creates them lazily in forward).
    With `slice_inputs` (a super-net's features, the official compression code's SuperMLP), `build` takes the
    largest channel counts and a map of c channels meets the first c input columns of the first Linear.
    """

    def __init__(self, use_mlp, nc=256, init_type='normal', init_gain=0.02, slice_inputs=False):
        super().__init__()
        self.use_mlp = use_mlp
        self.slice_inputs = slice_inputs
        self.nc = nc
        self.init_type = init_type
        self.init_gain = init_gain
        self.in_channels = None

    @property
    def built(self):
        return self.in_channels is not None or not self.use_mlp

    def build(self, in_channels):
        """Create and initialise `mlp_<i>` = Linear(c_i, nc) -> ReLU -> Linear(nc, nc) for each feature."""
        if self.in_channels is not None:
            raise RuntimeError(f'PatchSampleF is already built for channels {list(self.in_channels)}')
        self.in_channels = tuple(int(c) for c in in_channels)
        if self.use_mlp:
            for i, c in enumerate(self.in_channels):
                mlp = nn.Sequential(nn.Linear(c, self.nc), nn.ReLU(), nn.Linear(self.nc, self.nc))
                self.add_module(f'mlp_{i}', mlp)
            init_weights(self, self.init_type, self.init_gain)
        return self

    def _check_inputs(self, feats, patch_ids):
        if not self.built:
            raise RuntimeError('PatchSampleF(use_mlp=True) has no MLPs yet: call '
                               'build(in_channels) with the channel count of each feature first')
        channels = tuple(f.shape[1] for f in feats)
        built = self.in_channels
        if built is not None:
            if self.slice_inputs:  # a super-net's features: at most the widths built for
                fits = len(channels) == len(built) and all(c <= m for c, m in zip(channels, built))
            else:
                fits = channels == built
            if not fits:
                bound = 'at most ' if self.slice_inputs else ''
                raise ConfigError(f'PatchSampleF was built for feature channels {bound}{list(built)}, '
                                 f'got {list(channels)}')
        if patch_ids is not None and len(patch_ids) != len(feats):
            raise ConfigError(f'got {len(patch_ids)} patch id tensors for {len(feats)} features')

    def forward(self, feats, num_patches=64, patch_ids=None, generator=None):
        """Sample and embed each (B, C, H, W) feature map.

        Returns (samples, ids): samples[i] is (B * n, nc or C) with n = min(num_patches, H * W), rows
        ordered image by image, or the whole map (B, nc or C, H, W) when num_patches == 0; ids[i] is
        the LongTensor of flattened positions used for every image of the batch. Pass `patch_ids`
        (the ids of an earlier call) to sample the same positions; `generator` seeds torch.randperm.
        """
        self._check_inputs(feats, patch_ids)
        samples, ids = [], []
        for i, feat in enumerate(feats):
            b, _, h, w = feat.shape
            if num_patches > 0:
                if patch_ids is not None:
                    pos = patch_ids[i]
                else:
                    pos = torch.randperm(h * w, device=feat.device, generator=generator)[:num_patches]
                if feat.is_contiguous():
                    # gather in the map's own layout: the gradient comes back as an NCHW map, not as
                    # a channels-last copy that the layers below would convert back
                    x = feat.flatten(2)[:, :, pos].transpose(1, 2).flatten(0, 1)  # (B*n, C)
                else:
                    x = feat.permute(0, 2, 3, 1).flatten(1, 2)[:, pos, :].flatten(0, 1)  # (B*n, C)
            else:
                pos = torch.arange(h * w, device=feat.device)
                x = feat.permute(0, 2, 3, 1).flatten(1, 2)  # (B, H*W, C)
            x = x.to(torch.promote_types(x.dtype, torch.float32))  # --amp: embeddings in float32
            if self.use_mlp:
                x = self._embed(getattr(self, f'mlp_{i}'), x)
            x = l2_normalize(x)
            if num_patches == 0:
                x = x.permute(0, 2, 1).reshape(b, -1, h, w)  # (B, C', H, W)
            samples.append(x)
            ids.append(pos)
        return samples, ids

    def _embed(self, mlp, x):
        """mlp(x) for x (n, c); sliced: its first Linear restricted to the first c input columns."""
        first = mlp[0]
        if not self.slice_inputs or x.shape[-1] == first.in_features:
            return mlp(x)
        x = F.linear(x, first.weight[:, :x.shape[-1]], first.bias)  # (n, nc)
        return mlp[2](mlp[1](x))


# the options that decide F: the encoder layers it samples, its kind and its MLPs' width
PATCH_SAMPLER_KEYS = ('nce_layers', 'netF', 'netF_nc')


def define_F(netF, netF_nc=256, init_type='normal', init_gain=0.02, slice_inputs=False):
    """'sample': positions only; 'mlp_sample': positions embedded by per-layer MLPs (call `build`, with the
    largest channel counts when `slice_inputs`)."""
    if netF not in SAMPLERS:
        raise ConfigError(f'unknown netF {netF!r}; valid names: {", ".join(SAMPLERS)}')
    return PatchSampleF(use_mlp=netF == 'mlp_sample', nc=netF_nc, init_type=init_type, init_gain=init_gain,
                        slice_inputs=slice_inputs)
