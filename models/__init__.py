"""Model registry by file name: models/<name>_model.py defines <Name>Model (underscores ignored).

A user adds a model by adding one file; `--model` choices come from `available_models()`.
"""
from models.base_model import BaseModel
from util.registry import find_registered, registered_names


def available_models():
    return registered_names(__path__, 'model')


def find_model_using_name(model_name):
    return find_registered('models', 'model', model_name, BaseModel, available_models())


def create_model(opt, runtime=None):
    """The --model of `opt`, its networks run by `runtime` (models/runtime.py; by default built from the flags)."""
    model = find_model_using_name(opt.model)(opt, runtime)
    print(f'model [{type(model).__name__}] was created')
    return model
