"""The paper's result tables (Table 1, Table 3, Table 4) from metric JSONs, as Markdown and CSV.

Inputs are the JSONs the evaluation commands write: `metrics_fid.json`, `metrics_cityscapes.json`
(one epoch each) and `sweep_<phase>.json` (where --choice picks its best or last epoch). A row is a
record's `method`; a column group is its `dataset` (horse2zebra, cityscapes*; others via --alias).
Every number is marked with its epoch choice and source run, e.g. `35.21 (best@e350, h2z_src)`;
the CSV has one line per number with the same labels and the file it came from.

    python scripts/make_table.py --layout table1 results/*/sweep_test.json --out tables/table1

Table 3 (GAN compression) has its rows per dataset and model (teacher, baseline, + ours) and its columns
#params, MACs, FID, mIoU; its inputs are `table3_row` JSONs (scripts/table3.sh writes them with
`table3_row()`), each holding one model's figures.
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


# pixAcc and classAcc as the paper computed them (Hneg_SRC's get_Acc.py, `official_*` in the metric JSONs),
# beside its numbers; the correct values in the last two columns (docs/evaluation.md)
_SINGLE_MODAL_COLUMNS = (
    ('horse2zebra', 'fid', 'Horse→Zebra FID↓'),
    ('cityscapes', 'mAP', 'Cityscapes mAP↑'),
    ('cityscapes', 'official_pixAcc', 'pixAcc↑†'),
    ('cityscapes', 'official_classAcc', 'classAcc↑†'),
    ('cityscapes', 'fid', 'FID↓'),
    ('cityscapes', 'pixAcc', 'pixAcc↑ (correct)'),
    ('cityscapes', 'classAcc', 'classAcc↑ (correct)'),
)
OFFICIAL_ACC_NOTE = ("† pixAcc and classAcc with the arithmetic of Hneg_SRC's get_Acc.py, as the paper's: its BGR/RGB "
                     "colour mix-up merges classes, pixAcc divides by 128·256·500 pixels ignore included, classAcc "
                     "averages all 19 classes; the correct values follow in the last two columns "
                     "(docs/evaluation.md). – under † means the JSON lacks them: evaluate with --official-get-acc.")
LAYOUTS = {
    'table1': Layout('Table 1. Single-modal translation (Horse→Zebra; Cityscapes label→photo)', 'Method',
                     _SINGLE_MODAL_COLUMNS),
    'table4': Layout('Table 4. Ablation study (Horse→Zebra; Cityscapes label→photo)', 'Configuration',
                     _SINGLE_MODAL_COLUMNS),
}
CHOICES = ('best', 'last')
# Table 3: models per dataset in the paper's order, its columns (metric key, header, scale, digits), the
# datasets' labels, and the paper's values (../shared/paper/tables.md): params, MACs, FID, mIoU
TABLE3_MODELS = ('teacher', 'baseline', '+ ours')
TABLE3_COLUMNS = (('params', '#Params', 1e6, 'M', 3), ('macs', 'MACs', 1e9, 'G', 3), ('fid', 'FID↓', 1, '', 2),
                  ('mIoU', 'mIoU↑', 1, '', 2))
TABLE3_DATASETS = {'horse2zebra': 'Horse→Zebra', 'map2sat': 'Map→Satellite', 'cityscapes': 'Cityscapes'}
PAPER_TABLE3 = {
    ('horse2zebra', 'teacher'): (11.38e6, 56.80e9, 59.46, None),
    ('horse2zebra', 'baseline'): (0.412e6, 2.962e9, 74.39, None),
    ('horse2zebra', '+ ours'): (0.412e6, 2.962e9, 64.64, None),
    ('map2sat', 'teacher'): (11.38e6, 56.80e9, 47.90, None),
    ('map2sat', 'baseline'): (0.667e6, 4.495e9, 50.06, None),
    ('map2sat', '+ ours'): (0.667e6, 4.495e9, 48.49, None),
    ('cityscapes', 'teacher'): (11.38e6, 56.80e9, 60.38, 42.86),
    ('cityscapes', 'baseline'): (0.730e6, 5.551e9, 85.24, 41.42),
    ('cityscapes', '+ ours'): (0.685e6, 4.390e9, 72.41, 43.06),
}
# The paper's values for the rows our scripts label the same way (../shared/paper/tables.md), in the
# first five columns of _SINGLE_MODAL_COLUMNS (its pixAcc/classAcc are get_Acc.py's); None where illegible.
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
    config: str = None  # Table 3: the sub-net's channel configuration


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
    elif kind in ('fid', 'cityscapes', 'table3_row'):
        metrics = dict(data['metrics'], **{f'official_{k}': v for k, v in data.get('official_get_acc', {}).items()})
        epoch, epoch_choice = data.get('epoch'), data.get('epoch_choice') or 'fixed'
    else:
        raise EvaluationError(f'{path}: unknown kind {kind!r}; expected sweep, fid or cityscapes')
    return Record(method=data.get('method') or data.get('run') or Path(path).stem,
                  group=dataset_group(data.get('dataset'), aliases, path), metrics=metrics,
                  epoch=str(epoch), epoch_choice=epoch_choice, run=data.get('run') or '?', source=str(path),
                  config=data.get('config'))


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
            padded = list(paper[row]) + [None] * (len(layout.columns) - len(paper[row]))
            cells_paper = ['–' if v is None else f'{v:.1f}' for v in padded]
            lines.append('| ' + ' | '.join([f'*{row}, paper*'] + [f'*{v}*' for v in cells_paper]) + ' |')
    lines += ['', 'best@eN: epoch N chosen by the sweep\'s selection metric; last@eN: the last saved epoch; '
              'eN: an epoch given by hand.']
    if any('†' in h for _, _, h in layout.columns):
        lines += ['', OFFICIAL_ACC_NOTE]
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


def table3_row(dataset, model, *, macs_json, fid_json=None, miou_json=None, run=None, config=None):
    """The `table3_row` record of one model: #params and MACs from scripts/count_macs.py's JSON, FID from
    evaluation.fid's, mIoU from the Cityscapes evaluator's (its `mIoU`, when given)."""
    if model not in TABLE3_MODELS:
        raise EvaluationError(f'Table 3 models are {", ".join(TABLE3_MODELS)}, got {model!r}')
    sources = {'macs': macs_json, 'fid': fid_json, 'mIoU': miou_json}
    loaded = {}
    for key, path in sources.items():
        if path is None:
            continue
        try:
            loaded[key] = json.loads(Path(path).read_text())
        except (OSError, ValueError) as exc:
            raise EvaluationError(f'{path} is not a readable JSON file: {exc}') from exc
    counts = loaded['macs']
    metrics = {'params': counts['params'], 'macs': counts['macs']}
    if 'fid' in loaded:
        metrics['fid'] = loaded['fid']['metrics']['fid']
    if 'mIoU' in loaded:
        metrics['mIoU'] = loaded['mIoU']['metrics']['mIoU']
    epoch = (loaded.get('fid') or {}).get('epoch', 'latest')
    return {'kind': 'table3_row', 'dataset': dataset, 'method': model, 'run': run, 'epoch': epoch,
            'epoch_choice': 'fixed', 'config': config or counts.get('config'), 'metrics': metrics,
            'sources': {k: str(v) for k, v in sources.items() if v is not None}}


def _table3_value(value, column):
    _, _, scale, unit, digits = column
    return '–' if value is None else f'{value / scale:.{digits}f}{unit}'


def render_table3(records, *, paper=True):
    """Table 3 as Markdown and CSV: one row per (dataset, model) in the paper's order, the paper's values in an
    italic row under each; a second record for one (dataset, model) is an error."""
    rows = {}
    for record in records:
        if record.method not in TABLE3_MODELS:
            raise EvaluationError(f'{record.source}: Table 3 models are {", ".join(TABLE3_MODELS)}, '
                                  f'got {record.method!r}')
        key = (record.group, record.method)
        if key in rows:
            raise EvaluationError(f'two records for {key[0]} / {key[1]}: {rows[key].source} and {record.source}')
        rows[key] = record
    datasets = [d for d in TABLE3_DATASETS if any(k[0] == d for k in rows)]
    datasets += sorted({k[0] for k in rows} - set(datasets))
    header = ['Dataset', 'Model', 'Configuration'] + [c[1] for c in TABLE3_COLUMNS]
    lines = ['**Table 3. GAN compression (Fast GAN Compression; MACs of one image at 256 px as torchprofile '
             'counts them)**', '', '| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator='\n')
    writer.writerow(['table', 'dataset', 'model', 'metric', 'value', 'config', 'run', 'source'])
    for dataset in datasets:
        label = TABLE3_DATASETS.get(dataset, dataset)
        for model in TABLE3_MODELS:
            record = rows.get((dataset, model))
            if record is not None:
                values = [_table3_value(record.metrics.get(c[0]), c) for c in TABLE3_COLUMNS]
                config = record.config or '–'
                lines.append('| ' + ' | '.join([label, model, f'`{config}` ({record.run})'] + values) + ' |')
                for column in TABLE3_COLUMNS:
                    if record.metrics.get(column[0]) is not None:
                        writer.writerow(['table3', dataset, model, column[0], repr(float(record.metrics[column[0]])),
                                         config, record.run, record.source])
            if paper and (dataset, model) in PAPER_TABLE3 and (record is not None or model == 'teacher'):
                values = [_table3_value(v, c) for v, c in zip(PAPER_TABLE3[(dataset, model)], TABLE3_COLUMNS)]
                lines.append('| ' + ' | '.join([f'*{label}*', f'*{model}, paper*', ''] + [f'*{v}*' for v in values])
                             + ' |')
    lines += ['', 'Configuration: the channel widths of the sub-net (the teacher: its full network), then the run.']
    return '\n'.join(lines) + '\n', out.getvalue()


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
    parser.add_argument('--layout', default='table1', choices=sorted(LAYOUTS) + ['table3'])
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
    records = [load_record(path, choice=args.choice, aliases=aliases) for path in args.jsons]
    if args.layout == 'table3':
        markdown, table_csv = render_table3(records, paper=not args.no_paper)
    else:
        layout = LAYOUTS[args.layout]
        row_labels, cells = build_table(records, layout, args.rows)
        markdown = render_markdown(layout, row_labels, cells, digits=args.digits,
                                   paper=None if args.no_paper else PAPER.get(args.layout))
        table_csv = render_csv(args.layout, layout, row_labels, cells)
    if args.out:
        atomic_write_text(f'{args.out}.md', markdown)
        atomic_write_text(f'{args.out}.csv', table_csv)
    print(markdown, end='')


if __name__ == '__main__':
    sys.exit(cli(main))
