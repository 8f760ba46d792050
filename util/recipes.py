"""Training recipes kept as data: recipes/<name>.txt holds train.py flags (see recipes/README.md)."""
import shlex
from pathlib import Path

RECIPES_DIR = Path(__file__).resolve().parents[1] / 'recipes'


def available():
    return sorted(p.stem for p in RECIPES_DIR.glob('*.txt'))


def read_recipe(name):
    """The flags of recipes/<name>.txt as a list of strings, comments and line breaks dropped."""
    path = RECIPES_DIR / f'{name}.txt'
    if not path.is_file():
        raise ValueError(f'unknown recipe {name!r}: {path} does not exist (valid: {", ".join(available())})')
    flags = []
    for line in path.read_text().splitlines():
        flags += shlex.split(line, comments=True)
    return flags
