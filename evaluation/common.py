"""Helpers shared by the evaluation commands: result folders, run labels, JSON output, errors."""
import json
import os
import sys
from pathlib import Path

import torch

from util.errors import ProjectError
from util.util import atomic_write_json

IMAGE_SUFFIXES = ('.bmp', '.jpg', '.jpeg', '.pgm', '.png', '.ppm', '.tif', '.tiff', '.webp')
EPOCH_CHOICES = ('best', 'last', 'fixed')


class EvaluationError(ProjectError, ValueError):
    """Bad input to an evaluation (a folder, an image, a weights file); the message names it."""


def image_files(folder):
    """Sorted image files directly inside `folder` (any letter case, hidden files skipped)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise EvaluationError(f'{folder} does not exist or is not a folder')
    files = sorted(p for p in folder.iterdir()
                   if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith('.'))
    if not files:
        raise EvaluationError(f'{folder} holds no images ({", ".join(IMAGE_SUFFIXES)})')
    return files


def images_dir(path, kind):
    """`<path>/images/<kind>` when `path` is a test.py result folder, else `path` itself."""
    path = Path(path)
    nested = path / 'images' / kind
    if nested.is_dir():
        return nested
    if not path.is_dir():
        raise EvaluationError(f'{path} does not exist or is not a folder')
    return path


def check_whole_test_set(images_path, allow_partial=False):
    """The count record test.py wrote beside `images_path` (`<result>/images/<kind>` or `<result>`): its
    results.json, or None for a folder test.py did not write. A folder holding translations of only part of
    the test split (CUT's --num_test 50 on a larger split) is an error naming both counts, unless
    `allow_partial`: the paper scores every test image."""
    path = Path(images_path)
    folder = path.parent.parent if path.parent.name == 'images' else path
    record_path = folder / 'results.json'
    if not record_path.is_file():
        return None
    try:
        record = json.loads(record_path.read_text())
    except (OSError, ValueError) as exc:
        raise EvaluationError(f'{record_path} is not a readable JSON file: {exc}') from exc
    done, total = record.get('num_source_images'), record.get('test_set_images')
    if done is not None and total is not None and done < total and not allow_partial:
        raise EvaluationError(f'{folder} holds translations of {done} of the {total} test images (test.py '
                              f'--num_test {record.get("num_test")}); rerun test.py with --num_test {total}, '
                              'or pass --allow-partial to score it anyway')
    return record


def run_metadata(images_path, *, run=None, method=None, dataset=None, epoch=None, epoch_choice=None):
    """Labels of the run behind `images_path`, read from `<results>/<name>/<phase>_<epoch>/images/<kind>`.

    Explicit arguments win over what the path says; `epoch_choice` defaults to
    default_epoch_choice(epoch).
    """
    parts = Path(images_path).resolve().parts
    from_path = {}
    if len(parts) >= 4 and parts[-2] == 'images' and '_' in parts[-3]:
        phase, path_epoch = parts[-3].split('_', 1)
        from_path = {'run': parts[-4], 'phase': phase, 'epoch': path_epoch}
    epoch = epoch if epoch is not None else from_path.get('epoch')
    epoch_choice = epoch_choice or default_epoch_choice(epoch)
    if epoch_choice not in EPOCH_CHOICES:
        raise EvaluationError(f'epoch choice {epoch_choice!r} is not one of {", ".join(EPOCH_CHOICES)}')
    run = run or from_path.get('run')
    return {'run': run, 'method': method or run, 'dataset': dataset, 'phase': from_path.get('phase'),
            'epoch': epoch, 'epoch_choice': epoch_choice}


def default_epoch_choice(epoch):
    """'last' for the 'latest' checkpoint, 'best' for one named 'best', 'fixed' for a numbered epoch."""
    return {'latest': 'last', 'best': 'best'}.get(epoch, 'fixed')


def default_device(gpu_ids=None):
    """The evaluation networks' device when --device is not given: the first GPU of `gpu_ids` (train.py's
    --gpu_ids syntax, '-1' for the CPU), else of the GPU_IDS variable the scripts set, else cuda:0 when
    CUDA is available; the CPU without CUDA."""
    spec = gpu_ids if gpu_ids is not None else os.environ.get('GPU_IDS')
    if not torch.cuda.is_available():
        return 'cpu'
    if spec is None:
        return 'cuda:0'
    ids = [int(tok) for tok in str(spec).split(',') if tok.strip()]
    return f'cuda:{ids[0]}' if ids and ids[0] >= 0 else 'cpu'


def emit(result, json_path=None):
    """Print `result` as JSON on stdout and, when `json_path` is given, write it there atomically."""
    if json_path:
        atomic_write_json(str(json_path), result)
    print(json.dumps(result, indent=2, sort_keys=True))


def cli(main, argv=None):
    """Run a command's `main(argv)`; an EvaluationError ends it with its message and exit status 2."""
    try:
        main(argv)
    except EvaluationError as exc:
        print(f'error: {exc}', file=sys.stderr)
        return 2
    return 0
