"""One training run per checkpoint folder: a lock on <checkpoints_dir>/<name>/train.lock.

The lock is a POSIX record lock (fcntl.lockf), which the kernel drops when its process ends in any way
(exit, exception, SIGKILL, OOM killer); unlike flock it is not inherited by forked data-loader workers,
which could outlive a killed trainer. The file holds the holder's PID, host and start time, to name
it in the error a second run gets and in the note of a run that takes over the lock of a killed one.
NFS honours these locks where its lock service runs (NFSv4, or NFSv3 with lockd). On a file system without
lock support (lockf fails with ENOLCK or ENOSYS) the run stops with an error saying so; SRC_NO_LOCK=1 in the
environment then skips the lock, leaving it to the user to start one run per folder.
"""
import errno
import fcntl
import json
import os
import socket
import sys
import time

from util.errors import FolderInUseError, ProjectError

LOCK_NAME = 'train.lock'
SKIP_ENV = 'SRC_NO_LOCK'
NO_LOCK_SUPPORT = (errno.ENOLCK, errno.ENOSYS)


class NoLockSupportError(ProjectError):
    """The checkpoint folder's file system cannot lock files."""


def _describe(holder):
    if not holder:
        return 'an unknown process'
    since = time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(holder.get('started', 0)))
    return f'PID {holder.get("pid")} on {holder.get("host")}, started {since}: {holder.get("command", "?")}'


class RunLock:
    """Held from `acquire` to `release` (or the end of the process); a context manager."""

    def __init__(self, folder):
        self.folder = folder
        self.path = os.path.join(folder, LOCK_NAME)
        self.fd = None

    def _read(self):
        try:
            os.lseek(self.fd, 0, os.SEEK_SET)
            return json.loads(os.read(self.fd, 1 << 16).decode() or 'null')
        except (OSError, ValueError):
            return None

    def acquire(self):
        os.makedirs(self.folder, exist_ok=True)
        if os.environ.get(SKIP_ENV) == '1':
            print(f'note: {SKIP_ENV}=1: {self.folder} is not locked; start no second run in it', file=sys.stderr)
            return self
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.lockf(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = self._read()
            os.close(self.fd)
            self.fd = None
            if exc.errno in NO_LOCK_SUPPORT:
                raise NoLockSupportError(
                    f'cannot lock {self.path}: its file system has no lock support ({os.strerror(exc.errno)}); '
                    f'choose a --checkpoints_dir on a local disk (or NFS with its lock service), or set '
                    f'{SKIP_ENV}=1 to train without the lock (then start one run per folder yourself)') from None
            raise FolderInUseError(
                f'checkpoint folder {self.folder} is in use by another training run ({_describe(holder)}); '
                f'two runs in one folder overwrite each other\'s checkpoints and logs. Wait for it to end, '
                f'stop it (kill {holder.get("pid") if holder else "<pid>"}), or choose another --name') from None
        previous = self._read()
        if previous and (previous.get('pid'), previous.get('host')) != (os.getpid(), socket.gethostname()):
            print(f'note: {self.path}: taking over the lock of a run that ended without releasing it '
                  f'({_describe(previous)}; killed?)', file=sys.stderr)
        record = {'pid': os.getpid(), 'host': socket.gethostname(), 'started': time.time(),
                  'command': ' '.join(sys.argv)}
        os.ftruncate(self.fd, 0)
        os.lseek(self.fd, 0, os.SEEK_SET)
        os.write(self.fd, (json.dumps(record) + '\n').encode())
        os.fsync(self.fd)
        return self

    def release(self):
        """Empty the file (a clean end) and drop the lock; the file stays, so that no second process can
        lock an unlinked copy of it."""
        if self.fd is None:
            return
        try:
            os.ftruncate(self.fd, 0)
        except OSError:
            pass  # e.g. a full disk: the lock itself goes with the descriptor
        os.close(self.fd)
        self.fd = None

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()
        return False
