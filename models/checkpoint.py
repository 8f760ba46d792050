"""Checkpoint files in CUT's layout, as plain functions over a run's folder: <tag>_net_<name>.pth (weights)
and <tag>_train_state.pth (optimizers, schedulers, counters, RNG states, the SHA-256 of the weight files it
belongs with). Saves are staged (temporary files, renamed once all are written, the state last), and
`repair` mends what a killed save left before a run resumes. BaseModel calls these with its networks."""
import os
import random
import re

import numpy as np
import torch

from util import util
from util.errors import CheckpointError

STATE_FORMAT = 1
# <tag>_net_<name>.pth.tmp<random> or <tag>_train_state.pth.tmp<random>: a file util.stage_write is writing
STAGED = re.compile(r'^(.+?)_(?:net_[^.]+|train_state)\.pth\.tmp')


def network_path(folder, tag, name):
    return os.path.join(folder, f'{tag}_net_{name}.pth')


def state_path(folder, tag):
    return os.path.join(folder, f'{tag}_train_state.pth')


def checkpoint_files(folder, tag, names):
    """The weight files of networks `names`, then the state file: the order saves rename them in."""
    return [network_path(folder, tag, n) for n in names] + [state_path(folder, tag)]


def rng_state(device=None):
    """Every RNG the training loop touches, as plain tensors and tuples (loadable with weights_only): Python's,
    NumPy's, torch's CPU generator and, for a run on a CUDA `device`, that device's generator (not every
    visible GPU's: the run draws from its own device alone)."""
    np_state = np.random.get_state()
    state = {
        'python': random.getstate(),
        'numpy': (np_state[0], torch.from_numpy(np_state[1].copy()), int(np_state[2]), int(np_state[3]),
                  float(np_state[4])),
        'torch': torch.get_rng_state(),
    }
    device = torch.device(device) if device is not None else None
    if device is not None and device.type == 'cuda':
        state['cuda'] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state, device=None):
    """Restore `rng_state(device)`'s result. A state saved by earlier versions holds the generators of every
    visible GPU (a list): this run's device takes its own entry, the first when it has none."""
    random.setstate(state['python'])
    name, keys, pos, has_gauss, cached = state['numpy']
    np.random.set_state((name, keys.numpy(), pos, has_gauss, cached))
    torch.set_rng_state(state['torch'])
    device = torch.device(device) if device is not None else None
    if 'cuda' in state and device is not None and device.type == 'cuda':
        cuda = state['cuda']
        if isinstance(cuda, (list, tuple)):
            index = device.index or 0
            cuda = cuda[index] if index < len(cuda) else cuda[0]
        torch.cuda.set_rng_state(cuda, device)


def set_generator_state(generator, state, seed):
    """Load a torch.Generator's saved state. A state saved on the other kind of device does not fit (a CUDA
    generator's state is 16 bytes, a CPU one's 5,056): the stream restarts from `seed` instead. Returns
    whether the saved state was loaded."""
    if state.numel() != generator.get_state().numel():
        generator.manual_seed(seed)
        return False
    generator.set_state(state)
    return True


def _stage_all(plan):
    """Stage every (target, writer) that `plan(staged)` yields (it may read `staged`, the (temporary, target)
    pairs so far), then rename them in order; a failure removes what was staged."""
    staged = []
    try:
        for path, write in plan(staged):
            staged.append((util.stage_write(path, write, binary=True), path))
    except BaseException:
        for tmp, _ in staged:
            if os.path.exists(tmp):
                os.remove(tmp)
        raise
    for tmp, path in staged:
        os.replace(tmp, path)


def _torch_save(obj):
    return lambda f: torch.save(obj, f)


def save(folder, tag, state_dicts, training_state=None):
    """Write each {name: state dict} of `state_dicts` as <tag>_net_<name>.pth and, when given, the training
    state. Every file goes to a temporary name first; the renames happen only after all are written, so a
    crash or a full disk leaves the previous checkpoint complete. The state records the SHA-256 of the
    weight files it belongs with and is renamed last: a crash between two renames leaves it complete, and
    `repair` finishes the renames."""
    remove_stale_temporaries(folder, tag, state_dicts)

    def plan(staged):
        digests = {}
        for name, state in state_dicts.items():
            yield network_path(folder, tag, name), _torch_save(state)
            digests[name] = util.sha256(staged[-1][0])
        if training_state is not None:  # weights first, the state that vouches for them last
            yield state_path(folder, tag), _torch_save(dict(training_state, net_sha256=digests))
    _stage_all(plan)


def remove_stale_temporaries(folder, tag, names):
    """Temporary files of a save of `tag` that a killed process never finished."""
    if not os.path.isdir(folder):
        return
    targets = checkpoint_files(folder, tag, names)
    for f in os.listdir(folder):
        if any(util.is_staged_file(f, target) for target in targets):
            os.remove(os.path.join(folder, f))


def read_state(path, tag):
    """The training state at `path` (format checked), with its tag."""
    state = util.safe_torch_load(path)
    if state.get('format') != STATE_FORMAT:
        raise CheckpointError(f'{path}: unknown training-state format {state.get("format")!r}')
    # states written before epoch_count had its own key kept it in the options
    state.setdefault('epoch_count', state['options'].get('epoch_count', 1))
    state['epoch_tag'] = tag
    return state


def check_weights(folder, state):
    """Refuse weight files of the state's tag that are not those the state was saved with."""
    tag = state['epoch_tag']
    for name, digest in state.get('net_sha256', {}).items():
        path = network_path(folder, tag, name)
        if os.path.isfile(path) and util.sha256(path) != digest:
            raise CheckpointError(f'{path} is not the file {state_path(folder, tag)} was saved with: a save was '
                                  f'interrupted between renames. Resume from an epoch checkpoint (--epoch N) instead.')


def finish_interrupted_save(folder, tag):
    """Complete the renames of a save killed between them: its staged state vouches (by SHA-256) for every
    weight file, each either renamed already or still staged. A save killed while staging leaves no loadable
    staged state, or one whose weights are not all there: nothing is touched and the previous checkpoint,
    complete, is the one loaded. Returns whether a save was finished."""
    if not os.path.isdir(folder):
        return False
    target_state = state_path(folder, tag)
    files = {f: os.path.join(folder, f) for f in sorted(os.listdir(folder))}
    for staged_state in [p for f, p in files.items() if util.is_staged_file(f, target_state)]:
        renames = _renames_vouched_by(folder, staged_state, tag, files)
        if renames is None:
            continue
        for tmp, target in renames + [(staged_state, target_state)]:
            os.replace(tmp, target)
        print(f'{target_state}: finished a save interrupted between renames '
              f'({len(renames)} weight file(s) and the state moved into place)')
        return True
    return False


def _renames_vouched_by(folder, staged_state, tag, files):
    """(staged, target) renames that bring the weight files to the digests `staged_state` records; None when
    that state is unreadable or a weight file it names is nowhere complete."""
    try:
        digests = util.safe_torch_load(staged_state).get('net_sha256')
    except RuntimeError:  # cut short while staging
        return None
    if not digests:
        return None
    renames = []
    for name, digest in digests.items():
        target = network_path(folder, tag, name)
        if os.path.isfile(target) and util.sha256(target) == digest:
            continue
        match = [p for f, p in files.items() if util.is_staged_file(f, target) and util.sha256(p) == digest]
        if not match:
            return None
        renames.append((match[0], target))
    return renames


def staged_tags(folder):
    """Checkpoint tags ('latest', '3', 'iter_40') with temporary files of an unfinished save in `folder`."""
    return sorted({found.group(1) for found in map(STAGED.match, os.listdir(folder)) if found})


def repair(folder, tag, names, last_epoch=0, save_epoch_freq=0):
    """What a killed save left in `folder`, before resuming from `tag` (the run holds the folder's lock).

    1. Every save killed between its renames (any tag) is finished from its staged files.
    2. A resume from 'latest' that stands at the end of epoch E whose own files are incomplete (the
       process died while saving 'E' right after 'latest', from the same state) gets E's files
       copied from 'latest', byte for byte: they are what that save was writing.
    3. The temporary files left over are removed.
    Returns the tags written by 1 and 2."""
    if not os.path.isdir(folder):
        return []
    staged = staged_tags(folder)
    done = [t for t in dict.fromkeys([str(tag)] + staged) if finish_interrupted_save(folder, t)]
    if str(tag) == 'latest' and os.path.isfile(state_path(folder, 'latest')):
        state = read_state(state_path(folder, 'latest'), 'latest')
        lost = _lost_epoch(folder, names, state, staged, last_epoch, save_epoch_freq)
        if lost is not None:
            _copy_checkpoint(folder, names, 'latest', lost)
            done.append(lost)
    left = [f for f in sorted(os.listdir(folder)) if STAGED.match(f)]
    for f in left:
        os.remove(os.path.join(folder, f))
    if left:
        print(f'{folder}: removed {len(left)} temporary file(s) of saves that never finished ({", ".join(left)})')
    return done


def _lost_epoch(folder, names, state, staged, last_epoch, save_epoch_freq):
    """The epoch tag whose end-of-epoch save `state` (read from 'latest') belongs with, when that epoch's
    files are incomplete: its save had begun (temporary files) or was due (`save_epoch_freq`, last epoch)."""
    if not state.get('epoch_done'):
        return None
    tag = str(state['epoch'])
    if all(os.path.isfile(p) for p in checkpoint_files(folder, tag, names)):
        return None
    due = (save_epoch_freq > 0 and state['epoch'] % save_epoch_freq == 0) or state['epoch'] == last_epoch
    return tag if tag in staged or due else None


def _copy_checkpoint(folder, names, source, tag):
    """Write tag's files as byte copies of source's, staged then renamed like `save`."""
    remove_stale_temporaries(folder, tag, names)

    def copy_of(path):
        def write(f):
            with open(path, 'rb') as src:
                for block in iter(lambda: src.read(1 << 20), b''):
                    f.write(block)
        return write
    _stage_all(lambda staged: ((dst, copy_of(src)) for src, dst in zip(checkpoint_files(folder, source, names),
                                                                       checkpoint_files(folder, tag, names))))
    print(f'{state_path(folder, tag)}: the epoch {tag} checkpoint was lost by a killed save; '
          f'written again from {state_path(folder, source)} (the same state)')
