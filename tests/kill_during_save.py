"""Run train.py and SIGKILL it at one chosen point of a checkpoint save (tests/test_run_faults.py).

    python tests/kill_during_save.py <when>:<file> train.py-arguments...

<when> is `stage` (before the temporary file of <file> is created), `partial` (after a few bytes of it
are written) or `rename` (before the temporary file is renamed to <file>); <file> is a checkpoint file
name such as 2_train_state.pth. The process kills itself with a real SIGKILL: nothing after that
point runs, no handler, no `finally`.
"""
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


def arm(when, target):
    if when == 'stage':
        real_stage = util.stage_write

        def stage_write(path, writer, binary=False):
            if os.path.basename(path) == target:
                die()
            return real_stage(path, writer, binary)
        util.stage_write = stage_write
    elif when == 'partial':
        real_save = torch.save

        def save(obj, f, *args, **kwargs):
            if util.is_staged_file(os.path.basename(getattr(f, 'name', str(f))), target):
                f.write(b'PK\x03\x04 partial')
                f.flush()
                die()
            return real_save(obj, f, *args, **kwargs)
        torch.save = save
    elif when == 'rename':
        real_replace = os.replace

        def replace(src, dst):
            if os.path.basename(dst) == target:
                die()
            return real_replace(src, dst)
        os.replace = replace
    else:
        raise SystemExit(f'error: unknown kill point {when!r}; valid: stage, partial, rename')


if __name__ == '__main__':
    point, argv = sys.argv[1], sys.argv[2:]
    arm(*point.split(':', 1))
    sys.exit(train.main(argv))
