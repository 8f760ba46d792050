"""Components found by file name, as CUT does: `<package>/<name>_<kind>.py` defines `<Name><Kind>`.

`models` and `data` both use it, so a model and a dataset are added the same way (one file) and an
unknown name fails the same way, with the valid names.
"""
import importlib
import pkgutil

from util.errors import ConfigError, RegistryError


def registered_names(package_path, kind):
    """Sorted `<name>` of every module `<name>_<kind>.py` in the package folder, `base_<kind>.py` excepted."""
    suffix = '_' + kind
    return sorted(info.name[:-len(suffix)] for info in pkgutil.iter_modules(package_path)
                  if info.name.endswith(suffix) and info.name != 'base' + suffix)


def find_registered(package, kind, name, base_class, valid):
    """The subclass of `base_class` in `<package>/<name>_<kind>.py` named like `<name><kind>` (case and
    underscores ignored); `valid` is the list of registered names."""
    if name not in valid:
        raise ConfigError(f'unknown {kind} {name!r}; valid names: {", ".join(valid)}')
    module = importlib.import_module(f'{package}.{name}_{kind}')
    wanted = name.replace('_', '').lower() + kind
    for attr, cls in vars(module).items():
        if attr.lower() == wanted and isinstance(cls, type) and issubclass(cls, base_class):
            return cls
    raise RegistryError(f'{module.__file__} must define a subclass of {base_class.__name__} named like '
                    f'{wanted!r} (case-insensitive)')
