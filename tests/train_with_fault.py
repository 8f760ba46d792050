"""Run train.py with one fault at a chosen point of a checkpoint save (tests/test_run_faults.py).

    python tests/train_with_fault.py <when>:<file>[:<n>] train.py-arguments...

<when> is `stage` (SIGKILL before the temporary file of <file> is created), `partial` (SIGKILL after a
few bytes of it are written), `rename` (SIGKILL before the temporary file is renamed to <file>) or
`enospc` (a few bytes written, then OSError ENOSPC, as a full disk does); <file> is a checkpoint file
name such as 2_train_state.pth, and the fault strikes at its <n>-th save (default 1). The SIGKILL is
real: nothing after that point runs, no handler, no `finally`.
"""
import errno
import os
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

import train  # noqa: E402
from util import util  # noqa: E402


def die():
    sys.stdout.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def arm(when, target, nth=1):
    seen = {'n': 0}

    def strikes(name):
        if name == target or util.is_staged_file(name, target):
            seen['n'] += 1
            return seen['n'] == nth
        return False
    if when == 'stage':
        real_stage = util.stage_write

        def stage_write(path, writer, binary=False):
            if strikes(os.path.basename(path)):
                die()
            return real_stage(path, writer, binary)
        util.stage_write = stage_write
    elif when in ('partial', 'enospc'):
        real_save = torch.save

        def save(obj, f, *args, **kwargs):
            if strikes(os.path.basename(getattr(f, 'name', str(f)))):
                f.write(b'PK\x03\x04 partial')
                f.flush()
                if when == 'enospc':
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                die()
            return real_save(obj, f, *args, **kwargs)
        torch.save = save
    elif when == 'rename':
        real_replace = os.replace

        def replace(src, dst):
            if strikes(os.path.basename(dst)):
                die()
            return real_replace(src, dst)
        os.replace = replace
    else:
        raise SystemExit(f'error: unknown kill point {when!r}; valid: stage, partial, rename, enospc')


if __name__ == '__main__':
    when, target, *nth = sys.argv[1].split(':')
    arm(when, target, *map(int, nth))
    sys.exit(train.main(sys.argv[2:]))
