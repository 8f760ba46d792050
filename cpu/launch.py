"""Start a command on the malloc CPU training is fastest with (cpu/allocator.py):

    python -m cpu.launch -- python train.py --gpu_ids -1 ...   # tcmalloc or jemalloc if installed
    python -m cpu.launch -- python -m pytest tests               # as `make test` does

The allocator is chosen by the command's --cpu_allocator (auto: tcmalloc, then jemalloc, for CPU training on
Linux; glibc: none; a name or the path of a library) and --gpu_ids, and set in LD_PRELOAD for the command and
its children, which this process becomes (same PID, so torchrun and job schedulers see nothing).
"""
import os
import sys

from cpu.allocator import launch_env


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    command = argv[1:] if argv[:1] == ['--'] else argv
    if not command or command[0] in ('-h', '--help'):
        print(__doc__.strip(), file=sys.stdout if command else sys.stderr)
        return 0 if command else 2
    env = launch_env(command, os.environ)
    try:
        os.execvpe(command[0], command, env)
    except OSError as exc:
        print(f'error: cpu.launch: cannot start {command[0]!r}: {exc.strerror}', file=sys.stderr)
        return 127


if __name__ == '__main__':
    sys.exit(main())
