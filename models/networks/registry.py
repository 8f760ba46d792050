"""Name -> builder tables for networks; argparse choices are read from here."""
import inspect

from util.errors import ConfigError

GENERATORS = {}
DISCRIMINATORS = {}


def _register(table, kind, name):
    def deco(builder):
        if name in table:
            raise ConfigError(f'{kind} {name!r} is registered twice')
        table[name] = builder
        return builder
    return deco


def register_generator(name):
    """Decorator: `@register_generator('resnet_9blocks')` on a function building the network."""
    return _register(GENERATORS, 'generator', name)


def register_discriminator(name):
    return _register(DISCRIMINATORS, 'discriminator', name)


def lookup(table, kind, name):
    if name not in table:
        raise ConfigError(f'unknown {kind} {name!r}; valid names: {", ".join(sorted(table))}')
    return table[name]


def build(table, kind, name, **options):
    """Call the builder registered as `name` with the `options` its signature names.

    `options` are the network flags of the command line, each meaningful to some builders only (e.g.
    crop_size to StyleGAN2's); a builder states what it uses and takes nothing else.
    """
    builder = lookup(table, kind, name)
    accepted = inspect.signature(builder).parameters
    return builder(**{k: v for k, v in options.items() if k in accepted})
