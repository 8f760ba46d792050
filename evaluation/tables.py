"""The paper's result tables (Table 1, Table 4) from metric JSONs, as Markdown and CSV.

Inputs are the JSONs the evaluation commands write: `metrics_fid.json`, `metrics_cityscapes.json`
(one epoch each) and `sweep_<phase>.json` (where --choice picks its best or last epoch). A row is a
record's `method`; a column group is its `dataset` (horse2zebra, cityscapes*; others via --alias).
Every number is marked with its epoch choice and source run, e.g. `35.21 (best@e350, h2z_src)`;
the CSV has one line per number with the same labels and the file it came from.

    python scripts/make_table.py --layout table1 results/*/sweep_test.json --out tables/table1
"""
import argparse
import csv
import io
import json
import sys
from dataclasses import dataclass
from pathlib import Path

from evaluation.common import EvaluationError, cli
from util.util import atomic_write_text


@dataclass(frozen=True)
class Layout:
    title: str
    row_header: str
    columns: tuple  # (dataset group, metric key, header)


_SINGLE_MODAL_COLUMNS = (
    ('horse2zebra', 'fid', 'Horse→Zebra FID↓'),
    ('cityscapes', 'mAP', 'Cityscapes mAP↑'),
    ('cityscapes', 'pixAcc', 'pixAcc↑'),
    ('cityscapes', 'classAcc', 'classAcc↑'),
    ('cityscapes', 'fid', 'FID↓'),
)
LAYOUTS = {
    'table1': Layout('Table 1. Single-modal translation (Horse→Zebra; Cityscapes label→photo)', 'Method',
                     _SINGLE_MODAL_COLUMNS),
    'table4': Layout('Table 4. Ablation study (Horse→Zebra; Cityscapes label→photo)', 'Configuration',
                     _SINGLE_MODAL_COLUMNS),
}
CHOICES = ('best', 'last')
# The paper's values for the rows our scripts label the same way (../shared/paper/tables.md), in the
# columns of _SINGLE_MODAL_COLUMNS; None where the paper's text is illegible.
PAPER = {
    'table1': {
        'CUT': (45.5, 24.7, 68.8, 30.7, 56.4),
        'SRC + hDCE (ours)': (34.4, 29.0, 73.5, 35.6, 46.4),
    },
    'table4': {
        'CUT': (45.5, 24.7, 68.8, 30.7, 56.4),
        'InfoNCE + SRC': (42.7, 27.2, None, None, 52.7),
        'InfoNCE + SRC + Hneg': (40.5, 27.4, 72.8, 33.5, 49.9),
        'DCE': (41.2, 27.8, 72.8, 33.4, 52.0),
        'DCE + Hneg': (37.6, 27.3, 71.4, 33.4, 50.1),
        'DCE + SRC': (36.2, 27.9, 73.3, 34.2, 49.9),
        'DCE + SRC + Hneg': (34.4, 29.0, 73.5, 35.6, 46.4),
    },
}


@dataclass(frozen=True)
class Record:
    """Metrics of one evaluated epoch of one run, with where they came from."""
    method: str
    group: str
    metrics: dict
    epoch: str
    epoch_choice: str
    run: str
    source: str


def dataset_group(dataset, aliases, source):
    """Column group of a dataset label: an alias, 'cityscapes' for cityscapes*, else the label."""
    if not dataset:
        raise EvaluationError(f'{source} names no dataset; rerun its command with --dataset or pass --alias')
    if dataset in aliases:
        return aliases[dataset]
    return 'cityscapes' if dataset.lower().startswith('cityscapes') else dataset


def load_record(path, *, choice, aliases):
    """The Record of one metric JSON; for a sweep, its `choice` ('best' or 'last') epoch."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise EvaluationError(f'{path} is not a readable JSON file: {exc}') from exc
    kind = data.get('kind')
    if kind == 'sweep':
        row = data.get(choice)
        if not isinstance(row, dict) or 'epoch' not in row:
            raise EvaluationError(f'{path}: sweep result without a {choice!r} epoch')
        metrics = {k: v for k, v in row.items() if k != 'epoch'}
        epoch, epoch_choice = row['epoch'], choice
    elif kind in ('fid', 'cityscapes'):
        metrics = data['metrics']
        epoch, epoch_choice = data.get('epoch'), data.get('epoch_choice') or 'fixed'
    else:
        raise EvaluationError(f'{path}: unknown kind {kind!r}; expected sweep, fid or cityscapes')
    return Record(method=data.get('method') or data.get('run') or Path(path).stem,
                  group=dataset_group(data.get('dataset'), aliases, path), metrics=metrics,
                  epoch=str(epoch), epoch_choice=epoch_choice, run=data.get('run') or '?', source=str(path))


def build_table(records, layout, rows=None):
    """(row labels, {(row, column index): Record}) for `layout`; two sources for one cell is an error."""
    row_labels = list(rows) if rows else list(dict.fromkeys(r.method for r in records))
    unknown = sorted({r.method for r in records} - set(row_labels))
    if unknown:
        raise EvaluationError(f'records for rows not listed in --rows: {", ".join(unknown)}')
    cells = {}
    for record in records:
        for index, (group, metric, _) in enumerate(layout.columns):
            if group != record.group or record.metrics.get(metric) is None:
                continue
            key = (record.method, index)
            if key in cells:
                raise EvaluationError(f'two values for {record.method} / {layout.columns[index][2]}: '
                                      f'{cells[key].source} and {record.source}')
            cells[key] = record
    return row_labels, cells


def _mark(record):
    epoch = f'e{record.epoch}'
    choice = epoch if record.epoch_choice == 'fixed' else f'{record.epoch_choice}@{epoch}'
    return f'{choice}, {record.run}'


def render_markdown(layout, row_labels, cells, *, digits=2, paper=None):
    """The table as Markdown, each number followed by (epoch choice@epoch, run); with `paper`
    ({row label: values}), the paper's values in an italic row under each of ours that it reports."""
    header = [layout.row_header] + [h for _, _, h in layout.columns]
    lines = [f'**{layout.title}**', '', '| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
    for row in row_labels:
        values = []
        for index, (_, metric, _) in enumerate(layout.columns):
            record = cells.get((row, index))
            values.append('–' if record is None else f'{record.metrics[metric]:.{digits}f} ({_mark(record)})')
        lines.append('| ' + ' | '.join([row] + values) + ' |')
        if paper and row in paper:
            cells_paper = ['–' if v is None else f'{v:.1f}' for v in paper[row]]
            lines.append('| ' + ' | '.join([f'*{row}, paper*'] + [f'*{v}*' for v in cells_paper]) + ' |')
    lines += ['', 'best@eN: epoch N chosen by the sweep\'s selection metric; last@eN: the last saved epoch; '
              'eN: an epoch given by hand.']
    return '\n'.join(lines) + '\n'


def render_csv(layout_name, layout, row_labels, cells):
    """One CSV line per number: its row, column, value, epoch choice, epoch, run and source file."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator='\n')
    writer.writerow(['table', 'row', 'column', 'dataset', 'metric', 'value', 'epoch_choice', 'epoch', 'run',
                     'source'])
    for row in row_labels:
        for index, (group, metric, header) in enumerate(layout.columns):
            record = cells.get((row, index))
            if record is not None:
                writer.writerow([layout_name, row, header, group, metric, repr(float(record.metrics[metric])),
                                 record.epoch_choice, record.epoch, record.run, record.source])
    return out.getvalue()


def parse_aliases(pairs):
    aliases = {}
    for pair in pairs:
        dataset, sep, group = pair.partition('=')
        if not sep or not dataset or not group:
            raise EvaluationError(f'--alias takes DATASET=GROUP (e.g. h2z_small=horse2zebra), got {pair!r}')
        aliases[dataset] = group
    return aliases


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('jsons', nargs='+', help='metric JSONs (sweep_*.json, metrics_fid.json, ...)')
    parser.add_argument('--layout', default='table1', choices=sorted(LAYOUTS))
    parser.add_argument('--choice', default='best', choices=CHOICES, help='epoch of each sweep to report')
    parser.add_argument('--rows', nargs='+', default=None, help='row labels (methods) in order')
    parser.add_argument('--alias', action='append', default=[], metavar='DATASET=GROUP',
                        help='put a dataset label in a column group (horse2zebra, cityscapes)')
    parser.add_argument('--digits', type=int, default=2)
    parser.add_argument('--no_paper', action='store_true',
                        help='leave out the paper\'s values (shown under each row the paper reports)')
    parser.add_argument('--out', default=None, help='write OUT.md and OUT.csv')
    args = parser.parse_args(argv)

    aliases = parse_aliases(args.alias)
    layout = LAYOUTS[args.layout]
    records = [load_record(path, choice=args.choice, aliases=aliases) for path in args.jsons]
    row_labels, cells = build_table(records, layout, args.rows)
    markdown = render_markdown(layout, row_labels, cells, digits=args.digits,
                               paper=None if args.no_paper else PAPER.get(args.layout))
    if args.out:
        atomic_write_text(f'{args.out}.md', markdown)
        atomic_write_text(f'{args.out}.csv', render_csv(args.layout, layout, row_labels, cells))
    print(markdown, end='')


if __name__ == '__main__':
    sys.exit(cli(main))
