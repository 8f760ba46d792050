"""How the code is layered: util/ imports nothing from the layers above it, deliberate errors are known by
their type (util/errors.py's ProjectError hierarchy), never by the source line that raised them."""
import ast
import sys

import pytest

from tests.conftest import ROOT
from util import errors

ABOVE_UTIL = ('data', 'models', 'options', 'evaluation', 'cpu', 'train', 'test', 'scripts', 'studies')


def imported_packages(path):
    """The top-level names every import statement of `path` (nested ones included) reads from."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            yield from (alias.name.split('.')[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            yield node.module.split('.')[0]


def test_util_imports_nothing_from_the_layers_above():
    upward = {str(path.relative_to(ROOT)): sorted(set(imported_packages(path)) & set(ABOVE_UTIL))
              for path in sorted((ROOT / 'util').glob('*.py'))}
    assert {path: names for path, names in upward.items() if names} == {}


def test_base_model_is_the_contract_only():
    assert len((ROOT / 'models' / 'base_model.py').read_text().splitlines()) <= 300


def test_errors_are_deliberate_by_type():
    from data.base_dataset import PreprocessError
    from data.image_folder import ImageLoadError
    from evaluation.common import EvaluationError
    assert (ImageLoadError, PreprocessError) == (errors.ImageLoadError, errors.PreprocessError)
    for cls in (errors.ConfigError, errors.MissingFileError, errors.CheckpointError, errors.DivergedError,
                ImageLoadError, EvaluationError, errors.OptionError):
        assert errors.raised_on_purpose(cls('the message')), cls
    assert isinstance(errors.ConfigError('x'), ValueError) and isinstance(errors.MissingFileError('x'), OSError)


def test_a_researchers_own_raise_keeps_its_traceback():
    """A `raise ValueError` a researcher adds to models/losses.py is not one of the project's deliberate
    errors: the guard lets it through with its traceback (it used to be recognised by its source line)."""
    losses = ROOT / 'models' / 'losses.py'
    line = next(i for i, text in enumerate(losses.read_text().splitlines(), 1) if text.lstrip().startswith('raise '))
    code = compile('\n' * (line - 1) + "raise ValueError('my own check')", str(losses), 'exec')
    with pytest.raises(ValueError) as caught:
        exec(code, {})
    assert not errors.raised_on_purpose(caught.value)

    def main(argv):
        exec(code, {})
    with pytest.raises(ValueError, match='my own check'):
        errors.guard(main)


def test_a_deliberate_error_is_one_line(capsys, monkeypatch):
    monkeypatch.delenv(errors.DEBUG_ENV, raising=False)

    def main(argv):
        raise errors.ConfigError('--norm: unknown norm, valid: batch, instance, none')
    assert errors.guard(main) == 1
    assert capsys.readouterr().err.splitlines() == [
        f'error: --norm: unknown norm, valid: batch, instance, none (set {errors.DEBUG_ENV}=1 for the traceback)']
