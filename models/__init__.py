"""Model registry by file name: models/<name>_model.py defines <Name>Model (underscores ignored).

A user adds a model by adding one file; `--model` choices come from `available_models()`.
"""
import importlib
import os

from models.base_model import BaseModel

_HERE = os.path.dirname(os.path.abspath(__file__))


def available_models():
    return sorted(f[:-len('_model.py')] for f in os.listdir(_HERE)
                  if f.endswith('_model.py') and f != 'base_model.py')


def find_model_using_name(model_name):
    if model_name not in available_models():
        raise ValueError(f'unknown model {model_name!r}; valid names: {", ".join(available_models())}')
    module = importlib.import_module(f'models.{model_name}_model')
    target = model_name.replace('_', '').lower() + 'model'
    for name, cls in vars(module).items():
        if name.lower() == target and isinstance(cls, type) and issubclass(cls, BaseModel):
            return cls
    raise ValueError(f'models/{model_name}_model.py must define a BaseModel subclass named like '
                     f'{target!r} (case-insensitive)')


def create_model(opt, runtime=None):
    """The --model of `opt`, its networks run by `runtime` (models/runtime.py; by default built from the flags)."""
    model = find_model_using_name(opt.model)(opt, runtime)
    print(f'model [{type(model).__name__}] was created')
    return model
