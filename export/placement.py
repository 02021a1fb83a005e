"""Where an export is written and how it is put in place, all under the output's lock
(:class:`keras_resnet.outputs.DirectoryLock`, ``.NAME.lock`` beside the output).

The export is built in a hidden staging folder and moved into place at the end, after the
destination is checked again: it must be exactly what was checked at the start (absent,
empty, or with ``--force`` the same entries, sizes and times), else nothing is replaced.

* An absent output: the staging folder ``.NAME.partial-PID@HOST.*`` beside it is renamed
  to it (``rename(2)``, atomic).
* An existing plain directory of this user on the parent's file system: the old one is
  renamed aside, the new one renamed in (and given the old one's mode), the old one
  deleted: a crash at any moment leaves the old or the new export, never a mix.
* A symbolic link, a mount point or another user's directory is filled in place: the
  staging folder is made inside it, the old entries are deleted and the new ones renamed in;
  the directory itself (owner, mode, the link) is kept.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import stat
import tempfile
from pathlib import Path
from typing import Any

from keras_resnet.export.errors import UsageError

from keras_resnet.outputs import (
    INSIDE_LOCK_NAME,
    MAX_WALK_ENTRIES,
    DirectoryLock,
    command_name,
    enclosing_run,
    find_run,
)
from keras_resnet.safefiles import special_kind


def check_given(model: Any, output: str | os.PathLike, options: Any) -> None:
    """Empty strings for MODEL, ``--output`` and the path options are refused (an empty
    ``--data`` is not "no data", an empty ``-o`` not the current directory), and so is a
    FIFO, socket or device given as the model, labels or weights file. Only names and paths
    are checked here: an in-memory model, labels list or array is checked where it is read."""
    given = {"MODEL": model, "--output": output, "--labels": options.labels,
             "--weights": options.weights, "--calibration": options.calibration,
             "--data": options.data}
    paths = {flag: value for flag, value in given.items() if isinstance(value, str | os.PathLike)}
    for flag, value in paths.items():
        if not os.fspath(value).strip():
            raise UsageError(f"{flag} is an empty string; give a path or leave it out")
    for flag in ("--calibration", "--data"):
        spec = str(paths.get(flag, ""))
        if spec.startswith("folder:") and not spec[len("folder:"):].strip():
            raise UsageError(f"{spec!r} names no folder; use folder:PATH")
    for flag in ("MODEL", "--labels", "--weights"):
        kind = special_kind(paths[flag]) if flag in paths else None
        if kind:
            raise UsageError(f"{flag} {paths[flag]} is {kind}, not a regular file; refused")


def check_output(output: Path, force: bool, inputs: list[Path]) -> None:
    """Refuse an output that cannot be a directory, or one ``--force`` must not replace:
    one that is, holds or lies inside an input of the export or a training run
    (``run_config.json`` or ``checkpoints/``, at any depth), or holds the current or home
    directory."""
    ancestor = next((p for p in (output, *output.parents) if os.path.lexists(p)), Path("."))
    if ancestor != output and not ancestor.is_dir():
        raise UsageError(f"output {output}: {ancestor} is not a directory")
    if os.path.islink(output) and not output.exists():
        raise UsageError(f"output {output} is a broken symbolic link")
    if output.exists() and not output.is_dir():
        raise UsageError(f"output {output} exists and is not a directory")
    if not (output.is_dir() and _has_entries(output)):
        return
    if not force:
        raise UsageError(f"output directory {output} is not empty; use --force to replace it")
    _check_force(output, inputs)


def _check_force(output: Path, inputs: list[Path]) -> None:
    real = output.resolve()
    for path in inputs:
        where = path.resolve()
        if _within(where, real) or _within(real, where):
            raise UsageError(f"--force would delete {path}, an input of this export, which lies "
                             f"in {output}; choose another --output" if _within(where, real)
                             else f"--force will not replace {output}: it lies inside {path}, "
                             "an input of this export; choose another --output")
    for name, place in (("the current directory", Path.cwd()),
                        ("your home", Path(os.path.expanduser("~")))):
        if _within(place.resolve(), real):
            raise UsageError(f"--force will not replace {output}: it holds {name}")
    run = enclosing_run(real) or find_run(real, error=UsageError)
    if run is not None:
        relation = "lies inside" if run != real and _within(real, run) else "holds"
        raise UsageError(f"--force will not replace {output}: it {relation} the training run "
                         f"{run} (run_config.json or checkpoints/); choose another --output")


def _has_entries(folder: Path) -> bool:
    return any(not _ours(entry.name) for entry in os.scandir(folder))


def _within(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def _tag() -> str:
    """``PID@HOST``: whose staging folder this is, so a later export can tell stale ones."""
    return f"{os.getpid()}@{socket.gethostname()}"


_STAGING = re.compile(r"\.(?P<name>.+)\.(?:partial|old)-(?P<pid>\d+)@(?P<host>.+)\.[a-z0-9_]+")


def _ours(name: str) -> bool:
    """An entry the export itself makes in a directory it fills in place."""
    return name == INSIDE_LOCK_NAME or _STAGING.fullmatch(name) is not None


def remove_stale_staging(output: Path, folder: Path | None = None) -> list[Path]:
    """Delete ``.NAME.partial-*`` and ``.NAME.old-*`` folders of ``output`` (in ``folder``,
    by default its parent) whose export process (same host) is gone: what SIGKILL or a
    power cut leaves. Returns them."""
    removed = []
    host = socket.gethostname()
    for path in (folder or output.parent).iterdir():
        match = _STAGING.fullmatch(path.name)
        if (match and match["name"] == output.name and match["host"] == host
                and path.is_dir() and not path.is_symlink()
                and not _alive(int(match["pid"]))):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True


def _missing_parents(output: Path) -> list[Path]:
    """Parents of ``output`` that do not exist yet, outermost first."""
    missing = []
    for parent in output.resolve().parents:
        if parent.exists():
            break
        missing.append(parent)
    return list(reversed(missing))


def fingerprint(output: Path) -> tuple[Any, ...] | None:
    """What ``output`` is now: None when absent, else the link it is (if one), the real
    directory's identity and every entry under it (kind, size, modification time), the
    export's own staging folders and lock left out; bounded like the run walk."""
    if not os.path.lexists(output):
        return None
    real = Path(os.path.realpath(output))
    info = os.stat(real)
    link = os.readlink(output) if os.path.islink(output) else None
    entries: list[tuple[str, int, int, int]] = []
    for folder, dirs, files in os.walk(real):
        if Path(folder) == real:
            dirs[:] = [d for d in dirs if not _ours(d)]
            files = [f for f in files if not _ours(f)]
        for name in (*dirs, *files):
            entry = os.lstat(os.path.join(folder, name))
            rel = os.path.relpath(os.path.join(folder, name), real)
            entries.append((rel, stat.S_IFMT(entry.st_mode), entry.st_size, entry.st_mtime_ns))
        if len(entries) > MAX_WALK_ENTRIES:
            raise UsageError(f"output {output} holds more than {MAX_WALK_ENTRIES} entries; "
                             "choose another --output")
    return link, info.st_dev, info.st_ino, tuple(sorted(entries))


def _fills_in_place(output: Path) -> bool:
    """A symbolic link, a mount point, another user's directory or the current directory:
    kept, filled in place."""
    if not output.is_dir():
        return False
    if output.is_symlink() or os.path.ismount(output) or output.resolve() == Path.cwd():
        return True
    info, parent = os.stat(output), os.stat(output.parent)
    return info.st_dev != parent.st_dev or info.st_uid != os.geteuid()


class Placement:
    """The output's lock, its staging folder and the final move, as one context manager:

    >>> with Placement(output, force, inputs) as place:
    ...     write_everything(place.staging)
    ...     place.commit()

    Leaving the block without ``commit`` (an error) removes the staging folder and the
    parents the export created; the lock is released either way."""

    def __init__(self, output: Path, force: bool, inputs: list[Path]) -> None:
        self.output, self.force, self.inputs = Path(os.path.abspath(output)), force, inputs
        self.lock = DirectoryLock(self.output, command_name(), UsageError)
        self.created: list[Path] = []
        self.staging: Path | None = None
        self.in_place = False
        self.checked: tuple[Any, ...] | None = None

    def __enter__(self) -> Placement:
        self.created = _missing_parents(self.output)
        try:
            self.output.parent.mkdir(parents=True, exist_ok=True)
            self.lock.acquire()
            self._start()
        except OSError as exc:
            self._close(failed=True)
            raise UsageError(f"cannot write the output directory {self.output}: "
                             f"{exc.strerror or exc}") from None
        except BaseException:
            self._close(failed=True)
            raise
        return self

    def _start(self) -> None:
        """Under the lock: check the destination again, remember it, make the staging."""
        output = self.output
        check_output(output, self.force, self.inputs)
        self.in_place = _fills_in_place(output)
        folder = Path(os.path.realpath(output)) if self.in_place else output.parent
        remove_stale_staging(output, folder)
        self.checked = fingerprint(output)
        self.staging = Path(tempfile.mkdtemp(prefix=f".{output.name}.partial-{_tag()}.",
                                             dir=folder))
        umask = os.umask(0)
        os.umask(umask)
        self.staging.chmod(0o777 & ~umask)  # mkdtemp makes it 0700: the result is normal

    def __exit__(self, kind: Any, value: Any, traceback: Any) -> None:
        self._close(failed=kind is not None)

    def _close(self, failed: bool) -> None:
        if failed and self.staging is not None:
            shutil.rmtree(self.staging, ignore_errors=True)
        self.lock.release()
        if failed:
            for parent in self.created:
                shutil.rmtree(parent, ignore_errors=True)

    def commit(self) -> None:
        """Move the staging folder's contents into place, once the destination is found
        unchanged since the start; else UsageError, nothing replaced."""
        now = fingerprint(self.output)
        if now != self.checked:
            raise UsageError(f"output {self.output} {_change(self.checked, now)} while "
                             "exporting; nothing was replaced: check it and run the export "
                             "again")
        if self.in_place:
            self._fill()
        elif self.checked is None:
            self.staging.rename(self.output)
        else:
            self._swap()
        self.staging = None

    def _fill(self) -> None:
        real = Path(os.path.realpath(self.output))
        for entry in list(os.scandir(real)):
            if _ours(entry.name):
                continue
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path)
            else:
                os.unlink(entry.path)
        for entry in list(os.scandir(self.staging)):
            os.rename(entry.path, real / entry.name)
        self.staging.rmdir()

    def _swap(self) -> None:
        output = self.output
        mode = stat.S_IMODE(os.stat(output).st_mode)
        old = Path(tempfile.mkdtemp(prefix=f".{output.name}.old-{_tag()}.", dir=output.parent))
        old.rmdir()
        output.rename(old)
        if fingerprint(old)[1:] != self.checked[1:]:  # written to in the last moment
            old.rename(output)
            raise UsageError(f"output {output} changed while exporting; nothing was replaced")
        try:
            self.staging.rename(output)
        except BaseException:
            old.rename(output)
            raise
        output.chmod(mode)
        shutil.rmtree(old)


def _change(before: tuple[Any, ...] | None, now: tuple[Any, ...] | None) -> str:
    if before is None:
        return "appeared"
    if now is None:
        return "was removed"
    return "changed"
