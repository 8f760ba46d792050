"""Training recipes kept as data: recipes/<name>.txt holds train.py flags (see recipes/README.md)."""
import re
import shlex
from pathlib import Path

from util.errors import ConfigError

RECIPES_DIR = Path(__file__).resolve().parents[1] / 'recipes'


def available():
    return sorted(p.stem for p in RECIPES_DIR.glob('*.txt'))


def read_recipe(name, with_model=True):
    """The flags of recipes/<name>.txt as a list of strings, comments and line breaks dropped; without its
    `--model X` when `with_model` is False (the caller chooses the model)."""
    path = RECIPES_DIR / f'{name}.txt'
    if not path.is_file():
        raise ConfigError(f'unknown recipe {name!r}: {path} does not exist (valid: {", ".join(available())})')
    flags = []
    for line in path.read_text().splitlines():
        flags += shlex.split(line, comments=True)
    if not with_model and '--model' in flags:
        i = flags.index('--model')
        del flags[i:i + 2]
    return flags


ABLATION_ROWS = RECIPES_DIR / 'table4_rows.tsv'


def ablation_rows(paper_only=False):
    """Table 4's rows from recipes/table4_rows.tsv as [(slug, label, flags)], the paper's in its order,
    then (unless paper_only) the combinations it does not report."""
    rows = []
    for number, line in enumerate(ABLATION_ROWS.read_text().splitlines(), 1):
        if not line.strip() or line.lstrip().startswith('#'):
            continue
        fields = re.split(r'\t+', line.strip())  # consecutive tabs are one separator, as in bash's read
        if len(fields) != 4 or fields[1] not in ('paper', 'extra'):
            raise ConfigError(f'{ABLATION_ROWS}:{number}: expected slug, paper|extra, label, flags separated '
                             f'by tabs; got {line!r}')
        slug, source, label, flags = fields
        if source == 'paper' or not paper_only:
            rows.append((slug, label, shlex.split(flags)))
    return rows
