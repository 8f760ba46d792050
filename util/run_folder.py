"""What a run folder holds, and folders that a failed command leaves as they were.

train.py refuses to start a run in a folder that holds another one's checkpoints (`refuse_existing_run`),
unless it resumes it (--continue_train) or starts over (--overwrite: `clear_run`). A command that fails
before it has produced anything (a missing dataset, a bad flag, a missing checkpoint) removes the folders
it created (`removed_on_failure`), so that a retry does not find a half-made run.
"""
import contextlib
import os
import re
import shutil

import torch

from util.errors import OptionError

# <tag>_net_<name>.pth and <tag>_train_state.pth (CUT's files and train.py's state)
CHECKPOINT = re.compile(r'^(.+?)_(?:net_[^.]+|train_state)\.pth$')
LOGS = ('loss_log.txt', 'loss_log.jsonl')


def checkpoint_files(folder):
    """Names of the checkpoint files in `folder` (none when it cannot be listed, e.g. does not exist)."""
    try:
        return sorted(f for f in os.listdir(folder) if CHECKPOINT.match(f))
    except OSError:
        return []


def last_epoch(folder):
    """Where the run in `folder` stands, as words ('epoch 3', 'epoch 1, iteration 4'): from latest_train_state.pth,
    else the highest numbered checkpoint; None when neither says."""
    state = os.path.join(folder, 'latest_train_state.pth')
    try:  # mmap: the optimizer states are not read
        saved = torch.load(state, map_location='cpu', weights_only=True, mmap=True)
        return f'epoch {saved["epoch"]}' + ('' if saved['epoch_done'] else f', iteration {saved["epoch_iter"]}')
    except Exception:  # absent or unreadable: the file names still tell
        pass
    epochs = [int(m.group(1)) for m in map(CHECKPOINT.match, checkpoint_files(folder)) if m.group(1).isdigit()]
    return f'epoch {max(epochs)}' if epochs else None


def refuse_existing_run(folder):
    """An error naming `folder` and its last epoch when it holds a run's checkpoints."""
    if not checkpoint_files(folder):
        return
    epoch = last_epoch(folder)
    at = f'last saved at {epoch}' if epoch else 'checkpoints of an unknown epoch'
    raise OptionError(f'error: checkpoint folder {folder} holds a run ({at}): resume it with --continue_train, '
                      f'start over with --overwrite (deletes its checkpoints and loss logs), or choose another --name')


def clear_run(folder):
    """Delete the checkpoints and loss logs of the run in `folder` (--overwrite); returns how many files."""
    names = checkpoint_files(folder) + [f for f in LOGS if os.path.isfile(os.path.join(folder, f))]
    for name in names:
        os.remove(os.path.join(folder, name))
    return len(names)


@contextlib.contextmanager
def removed_on_failure(folder, keep_if=lambda folder: False):
    """If an exception leaves the block, `folder` and its parents that did not exist before it are removed
    (the parents only when empty), unless `keep_if(folder)` (e.g. a checkpoint was saved meanwhile)."""
    folder = os.path.abspath(folder)
    new = []
    probe = folder
    while not os.path.exists(probe):
        new.append(probe)
        probe = os.path.dirname(probe)
    try:
        yield folder
    except BaseException:
        if new and not keep_if(folder):
            shutil.rmtree(folder, ignore_errors=True)
            for parent in new[1:]:
                with contextlib.suppress(OSError):  # not empty: another command uses it now
                    os.rmdir(parent)
        raise
