"""Errors the project raises on purpose, and the guard that prints them as one line at the command line.

A deliberate error (a bad flag, an unreadable image, a missing folder, a damaged checkpoint, a folder in
use by another run, a full disk) is a ProjectError: it ends train.py, test.py and the evaluation commands
with one line, `error: <message>`, and a non-zero exit status. Anything else, a researcher's own `raise`
included, keeps its traceback. Set SRC_DEBUG=1 to see the traceback of deliberate errors too. Each class
also derives from the built-in exception it stands for, so `except ValueError` and the like still catch it.
"""
import errno
import os
import re
import shutil
import sys

DEBUG_ENV = 'SRC_DEBUG'


class ProjectError(Exception):
    """An error whose message says what went wrong and what to do; `exit_code` is the status it ends with."""
    exit_code = 1


class ConfigError(ProjectError, ValueError):
    """A value refused by the component that reads it: an unknown name, a size or index out of range."""


class DataError(ProjectError, ValueError):
    """An input image or dataset that cannot be used."""


class ImageLoadError(DataError):
    """A file that looks like an image (by its extension) could not be decoded."""


class PreprocessError(DataError):
    """An image cannot go through the requested preprocessing, e.g. it is smaller than crop_size."""


class MissingFileError(ProjectError, FileNotFoundError):
    """A file or folder the command needs is not there."""


class CheckpointError(ProjectError, RuntimeError):
    """A checkpoint or weights file that is damaged or does not fit the networks of the run."""


class LaunchError(ProjectError, RuntimeError):
    """The process's surroundings do not fit the command: a launcher's variables, a device, a server."""


class UnsupportedError(ProjectError, NotImplementedError):
    """A combination of choices this code does not implement."""


class RegistryError(ProjectError, TypeError):
    """A module of a registry (models/<name>_model.py, data/<name>_dataset.py) without its class."""


class DivergedError(ProjectError, FloatingPointError):
    """A computation became non-finite (training, a fit), with what to change."""


class OptionError(SystemExit, ProjectError, ValueError):
    """A flag's value refused while the options are parsed: it ends the command like argparse's own errors
    (SystemExit, status 1, the message on stderr) and is the ValueError the models raise for the flags they
    check themselves."""


class OutputExistsError(ProjectError, FileExistsError):
    """An output the command would replace is there already; the message names the flag that replaces it."""


class FolderInUseError(ProjectError):
    """Another live process holds the lock of a run's checkpoint folder."""


class DiskFullError(ProjectError):
    """A write failed because the file system is full (docs/reliability.md: exit status 4)."""
    exit_code = 4


# torch.save's zip writer reports a short write (ENOSPC included) only as these RuntimeErrors
_TORCH_WRITE_FAILURE = re.compile(r'PytorchStreamWriter|inline_container\.cc|unexpected pos|file write failed')
_FULL = (errno.ENOSPC, errno.EDQUOT)
MIN_FREE = 64 << 20  # below this much free space a failed checkpoint write counts as a full disk


def _chain(exc):
    seen = []
    while exc is not None and exc not in seen:
        seen.append(exc)
        exc = exc.__cause__ or exc.__context__
    return seen


def _existing(folder):
    """`folder`, or its nearest existing parent (whose file system it would be on)."""
    folder = os.path.abspath(folder)
    while not os.path.isdir(folder) and os.path.dirname(folder) != folder:
        folder = os.path.dirname(folder)
    return folder


def _largest_checkpoint(folder):
    """Bytes of the largest complete checkpoint (all files of one tag) in `folder`; 0 for none."""
    sizes = {}
    try:
        for f in os.listdir(folder):
            m = re.match(r'^(.+?)_(?:net_[^.]+|train_state)\.pth$', f)
            if m:
                sizes[m.group(1)] = sizes.get(m.group(1), 0) + os.path.getsize(os.path.join(folder, f))
    except OSError:
        return 0
    return max(sizes.values(), default=0)


def disk_full(exc, folder, advice='Free space and run the command again.'):
    """A DiskFullError naming `folder` and its free space when `exc` (or an exception it chains to) is a
    full disk: an OSError ENOSPC/EDQUOT, or torch.save's short-write RuntimeError while the folder's file
    system has less room than one checkpoint of the folder (at least MIN_FREE); else None."""
    chain = _chain(exc)
    full = [e for e in chain if isinstance(e, OSError) and e.errno in _FULL]
    torch_write = [e for e in chain if isinstance(e, RuntimeError) and _TORCH_WRITE_FAILURE.search(str(e))]
    if full and full[0].filename:
        folder = os.path.dirname(os.path.abspath(full[0].filename))
    try:
        free = shutil.disk_usage(_existing(folder)).free
    except OSError:
        free = None
    if not full and not (torch_write and free is not None and free < max(MIN_FREE, _largest_checkpoint(folder))):
        return None
    detail = full[0].strerror if full else f'torch.save: {torch_write[0]}'
    room = f'{free / (1 << 20):.1f} MiB free' if free is not None else 'free space unknown'
    return DiskFullError(f'disk full while writing to {folder} ({room} on its file system; {detail}). {advice}')


def raised_on_purpose(exc):
    """Whether `exc` is deliberate: a ProjectError (also when a DataLoader worker raised it: the loader
    raises it again with its type)."""
    return isinstance(exc, ProjectError)


def debugging():
    return os.environ.get(DEBUG_ENV, '') not in ('', '0')


def one_line(exc):
    message = str(exc).strip() or type(exc).__name__
    if 'Original Traceback' in message:  # re-raised by a DataLoader worker: its last line is the message
        message = message.splitlines()[-1].split(': ', 1)[-1]
    return message[len('error: '):] if message.startswith('error: ') else message


def guard(main, argv=None):
    """Run a command's `main(argv)` and return its exit status; a deliberate error is printed as one
    `error: ...` line (its traceback only when SRC_DEBUG is set), anything else propagates."""
    try:
        return main(argv)
    except Exception as exc:
        if debugging() or not raised_on_purpose(exc):
            raise
        sys.stdout.flush()
        print(f'error: {one_line(exc)} (set {DEBUG_ENV}=1 for the traceback)', file=sys.stderr)
        return getattr(exc, 'exit_code', 1)
