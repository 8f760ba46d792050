"""Exponential moving averages of a network's weights (StarGAN v2's generator networks; --G_ema_beta of the
patch-contrastive models)."""
import torch

from util.errors import ConfigError


@torch.no_grad()
def moving_average(net, net_ema, beta=0.999):
    """EMA of the weights, in place: ema <- beta * ema + (1 - beta) * param, written as ema + (1 - beta) * (param -
    ema) in one multi-tensor kernel (upstream's torch.lerp(param, ema, beta) per tensor); buffers copied."""
    params, params_ema = dict(net.named_parameters()), dict(net_ema.named_parameters())
    buffers, buffers_ema = dict(net.named_buffers()), dict(net_ema.named_buffers())
    if params.keys() != params_ema.keys() or buffers.keys() != buffers_ema.keys():
        raise ConfigError('moving_average: the network and its EMA copy have different parameters or buffers')
    if params:
        torch._foreach_lerp_([params_ema[n] for n in params], list(params.values()), 1.0 - beta)
    if buffers:
        torch._foreach_copy_([buffers_ema[n] for n in buffers], list(buffers.values()))


def warmed_up_decay(beta, step):
    """The decay of update number `step` (1, 2, ...): min(beta, (1 + step) / (10 + step)), TensorFlow's
    ExponentialMovingAverage with num_updates. Early averages then hold little of the initial weights, which a
    short run's constant decay would keep (0.999 ** 1600 = 20 % after 1,600 steps)."""
    return min(beta, (1.0 + step) / (10.0 + step))
