"""Which malloc a CPU training process runs on (--cpu_allocator).

glibc's malloc leaves the holes that tensors of many sizes free between live ones resident; trimming them
before each backward pass (cpu/memory.py) keeps the peak down but costs a zero-filled page fault for every
page the step then reuses. tcmalloc and jemalloc (the allocators PyTorch's own CPU launcher,
`torch.backends.xeon.run_cpu`, preloads) reuse freed memory with less fragmentation: a lower peak than the
trimmed glibc heap and almost no faults (studies/performance.md, "The heap").

An allocator has to be in place before the first malloc, so the launcher sets it: `python -m cpu.launch --
python train.py ...` (Makefile, scripts/demo.sh) starts the command with the library in LD_PRELOAD, chosen by
the command's own --cpu_allocator and --gpu_ids. train.py run directly runs on the malloc it was started with
(its runtime line names it). Nothing here imports torch.
"""
import argparse
import os
import sys

# set in the environment of the command the launcher started: the allocator chosen ('glibc' for none)
# and its library
ENV_CHOSEN, ENV_LIBRARY = 'HNEG_SRC_CPU_ALLOCATOR', 'HNEG_SRC_CPU_ALLOCATOR_LIBRARY'
LIBRARIES = {
    'tcmalloc': ('libtcmalloc_minimal.so.4', 'libtcmalloc.so.4', 'libtcmalloc_minimal.so', 'libtcmalloc.so'),
    'jemalloc': ('libjemalloc.so.2', 'libjemalloc.so'),
}
AUTO_ORDER = ('tcmalloc', 'jemalloc')
CHOICES = ('auto', 'glibc') + tuple(LIBRARIES)
# jemalloc returns freed pages after 10 s by default, which in a training loop is a fault storm per step
# (measured: 20x glibc's faults); keeping them is what makes it fast here
JEMALLOC_CONF = 'dirty_decay_ms:-1,muzzy_decay_ms:-1'
INSTALL_HINT = ('install it (Debian/Ubuntu: apt install libtcmalloc-minimal4 or libjemalloc2; conda: gperftools '
                'or jemalloc; `make venv` puts tcmalloc into .venv/lib where apt is available), pass a path to '
                'the .so, or use --cpu_allocator glibc')


def search_dirs():
    """Where libraries are looked for: the environment's own lib folders first (a venv, conda), then the
    system's."""
    dirs = [os.path.join(sys.prefix, 'lib'), os.path.join(sys.base_prefix, 'lib')]
    for var in ('VIRTUAL_ENV', 'CONDA_PREFIX'):
        if os.environ.get(var):
            dirs.append(os.path.join(os.environ[var], 'lib'))
    dirs += ['/usr/local/lib', '/usr/lib/x86_64-linux-gnu', '/usr/lib/aarch64-linux-gnu', '/usr/lib64', '/usr/lib',
             '/lib/x86_64-linux-gnu', '/lib64']
    return list(dict.fromkeys(dirs))


def find(name, dirs=None):
    """The path of allocator `name`'s shared library, or None."""
    for folder in (search_dirs() if dirs is None else dirs):
        for filename in LIBRARIES[name]:
            path = os.path.join(folder, filename)
            if os.path.isfile(path):
                return path
    return None


def resolve(choice, on_cpu=True, dirs=None):
    """(name, library path) for a --cpu_allocator value; (`glibc`, None) for no preload. 'auto' picks the
    first of AUTO_ORDER that is installed, for CPU training on Linux only; a named allocator that is not
    installed, or a path that is not a file, is an error."""
    dirs = search_dirs() if dirs is None else dirs
    if choice == 'glibc':
        return 'glibc', None
    if choice == 'auto':
        if not on_cpu or not sys.platform.startswith('linux'):
            return 'glibc', None
        for name in AUTO_ORDER:
            path = find(name, dirs)
            if path:
                return name, path
        return 'glibc', None
    if choice in LIBRARIES:
        path = find(choice, dirs)
        if path is None:
            raise SystemExit(f'error: --cpu_allocator {choice}: none of {", ".join(LIBRARIES[choice])} found in '
                             f'{", ".join(dirs)}; {INSTALL_HINT}')
        return choice, path
    if os.path.isfile(choice):
        base = os.path.basename(choice)
        name = next((n for n, files in LIBRARIES.items() if any(base.startswith(f.split('.so')[0]) for f in files)),
                    base)
        return name, os.path.abspath(choice)
    raise SystemExit(f'error: --cpu_allocator expects one of {", ".join(CHOICES)} or the path of a shared library, '
                     f'got {choice!r} (no such file)')


def requested(argv, default_gpu_ids='0'):
    """(--cpu_allocator, whether training runs on the CPU) from a train.py command line, before options are
    parsed (the options define and check the same flag)."""
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument('--cpu_allocator', default='auto')
    p.add_argument('--gpu_ids', default=default_gpu_ids)
    known, _ = p.parse_known_args([a for a in argv if a != '--'])  # benchmark.py passes train.py's flags after --
    on_cpu = known.gpu_ids.strip() == '-1' or not os.path.exists('/dev/nvidiactl')
    return known.cpu_allocator, on_cpu


def preload_env(name, path, environ):
    """The environment of the process that runs on `path`."""
    env = dict(environ)
    env[ENV_CHOSEN], env[ENV_LIBRARY] = name, path
    env['LD_PRELOAD'] = ':'.join(p for p in (path, environ.get('LD_PRELOAD', '')) if p)
    if name == 'jemalloc':
        env.setdefault('MALLOC_CONF', JEMALLOC_CONF)
    return env


def launch_env(command, environ, default_gpu_ids='0'):
    """The environment to start `command` (a list: program and arguments) in: with the allocator its
    --cpu_allocator / --gpu_ids ask for preloaded, unless a launcher already chose one (ENV_CHOSEN set, so
    children do not decide again)."""
    if ENV_CHOSEN in environ:
        return dict(environ)
    name, path = resolve(*requested(command[1:], default_gpu_ids))
    return preload_env(name, path, environ) if path else {**environ, ENV_CHOSEN: name}


def loaded_libraries():
    """Paths of the shared objects mapped into this process (Linux), else an empty set."""
    try:
        with open('/proc/self/maps') as f:
            return {line.split()[-1] for line in f if '.so' in line}
    except OSError:
        return set()


def active():
    """The allocator this process runs on: the one the launcher chose if its library is really mapped (the
    loader only warns when it cannot preload one), else 'glibc'."""
    name, path = os.environ.get(ENV_CHOSEN, 'glibc'), os.environ.get(ENV_LIBRARY)
    if name == 'glibc' or not path:
        return 'glibc'
    mapped = {os.path.realpath(p) for p in loaded_libraries()}
    return name if os.path.realpath(path) in mapped else 'glibc'
