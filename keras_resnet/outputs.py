"""Output directories shared by the trainer and the exporter: one lock per directory, and the
bounded walk that finds the training runs ``--force`` must never replace.

A directory ``DIR`` is locked through the file ``.NAME.lock`` beside it (``NAME`` its name),
so that a directory that does not exist yet (an export's output, renamed into place at the
end) and one that already does (a training run) are locked the same way, and a trainer and
an exporter aimed at the same directory exclude each other. When the parent cannot be
written (a mount point whose parent is read-only), the lock is ``DIR/.keras-resnet.lock``.
The lock is a ``flock(2)`` advisory lock (released by the kernel when its process dies, so a
lock file left by a killed process never blocks anyone), and the file holds the holder's
``PID HOST COMMAND`` so that a refused command can name it. The holder removes the file
when it is done, as git does with ``index.lock``.
"""

from __future__ import annotations

import fcntl
import os
import socket
import sys
from pathlib import Path

from keras_resnet.console import UsageError

INSIDE_LOCK_NAME = ".keras-resnet.lock"
#: Most directory entries the walks below look at before giving up (and refusing).
MAX_WALK_ENTRIES = 200_000
RUN_MARKERS = ("run_config.json", "checkpoints")


def lock_path(directory: Path) -> Path:
    """Where the lock of ``directory`` lives: ``.NAME.lock`` beside its real location, or
    inside it when the parent cannot be written."""
    real = Path(os.path.realpath(directory))
    if real.parent != real and os.access(real.parent, os.W_OK | os.X_OK):
        return real.parent / f".{real.name}.lock"
    return real / INSIDE_LOCK_NAME


class DirectoryLock:
    """An exclusive, non-blocking lock on one output directory (see the module docstring).

    ``acquire`` raises ``error`` (a UsageError class) with one line naming the holder's PID
    when another process holds it; ``release`` removes the lock file."""

    def __init__(self, directory: str | os.PathLike, command: str,
                 error: type[Exception] = UsageError) -> None:
        self.directory, self.command, self.error = Path(directory), command, error
        self.path: Path | None = None
        self._fd: int | None = None

    def acquire(self) -> DirectoryLock:
        for _ in range(10):  # another process may remove the file between open and flock
            path = lock_path(self.directory)
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            except OSError as exc:
                raise self.error(f"cannot lock {self.directory}: {path} cannot be created "
                                 f"({exc.strerror or exc})") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                holder = _read_holder(fd)
                os.close(fd)
                raise self.error(f"{self.directory} is in use by {holder} (lock {path}); "
                                 "wait for it to finish or choose another directory") from None
            if _same_file(fd, path):
                os.ftruncate(fd, 0)
                os.write(fd, f"{os.getpid()} {socket.gethostname()} {self.command}\n".encode())
                self.path, self._fd = path, fd
                return self
            os.close(fd)
        raise self.error(f"cannot lock {self.directory}: its lock file keeps changing")

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            if self.path is not None and _same_file(self._fd, self.path):
                self.path.unlink()
        except OSError:
            pass
        os.close(self._fd)
        self._fd = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def __enter__(self) -> DirectoryLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def _same_file(fd: int, path: Path) -> bool:
    try:
        mine, there = os.fstat(fd), os.stat(path)
    except OSError:
        return False
    return (mine.st_dev, mine.st_ino) == (there.st_dev, there.st_ino)


def _read_holder(fd: int) -> str:
    """``process PID (COMMAND on HOST)`` from a held lock file, or what is known."""
    try:
        fields = os.pread(fd, 512, 0).decode("utf-8", "replace").split()
    except OSError:
        fields = []
    if len(fields) >= 3 and fields[0].isdigit():
        return f"process {fields[0]} ({' '.join(fields[2:])} on {fields[1]})"
    return "another process"


def find_run(root: Path, limit: int = MAX_WALK_ENTRIES,
             error: type[Exception] = UsageError) -> Path | None:
    """The first training run (a folder holding ``run_config.json`` or ``checkpoints/``)
    at or below ``root``, walked breadth-first without following symbolic links and
    bounded by ``limit`` entries; raises UsageError past the bound."""
    queue, seen = [Path(root)], 0
    while queue:
        folder = queue.pop(0)
        if is_run(folder):
            return folder
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        seen += len(entries)
        if seen > limit:
            raise error(f"--force will not replace {root}: it holds more than {limit} "
                             "entries to check for training runs; remove it yourself")
        queue += [Path(e.path) for e in entries if e.is_dir(follow_symlinks=False)]
    return None


def is_run(folder: Path) -> bool:
    """A training run's directory: ``run_config.json`` or ``checkpoints/`` in it."""
    return (folder / RUN_MARKERS[0]).is_file() or (folder / RUN_MARKERS[1]).is_dir()


def enclosing_run(path: Path) -> Path | None:
    """The training run that ``path`` lies inside (strictly), or None."""
    real = Path(os.path.realpath(path))
    return next((p for p in real.parents if is_run(p)), None)


def command_name() -> str:
    """The running command's name (``keras-resnet-export``) for a lock file."""
    return Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "python"
