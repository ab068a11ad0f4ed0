"""The private scratch directory of one sandboxed run: ``home/`` and ``tmp/`` inside.

Whoever creates it removes it, after any outcome; the sandbox gets it as its HOME and
TMPDIR and may leave anything there, including directories it made unreadable.

A run that is SIGKILLed removes nothing, so each directory carries an ``.owner`` file
its creator holds a write lock on (``lockf``: a POSIX record lock, no module to
import on the start-up path) for as long as it lives; the kernel drops it when the
process dies, whatever killed it.  :func:`sweep_stale` -- run by the
next safe-pip or safe-run of the same user, after its own work -- removes the
directories whose lock it can take: only the user's own, only of dead owners, with
no guessing from pids that may have been reused.
"""

from __future__ import annotations

import os

from safe_pip.errors import SafePipError

PREFIX = "safe-run-"
_OWNER = ".owner"
#: Descriptors holding the ``.owner`` locks of this process's directories.
_HELD: dict[str, int] = {}


def _base() -> str:
    base = os.environ.get("TMPDIR") or "/tmp"
    return base if os.path.isdir(base) else "/tmp"


def make_private_dir() -> str:
    """``$TMPDIR/safe-run-XXXX`` with ``home/`` and ``tmp/``; cheaper than ``tempfile``."""
    base = _base()
    for _ in range(10):
        path = os.path.join(base, PREFIX + os.urandom(6).hex())
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            continue
        except OSError as exc:
            raise SafePipError(
                f"cannot create a private directory under {base} ({exc.strerror}); "
                "set TMPDIR to a writable directory"
            ) from None
        try:
            owner = os.open(
                os.path.join(path, _OWNER), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600
            )
            os.lockf(owner, os.F_LOCK, 0)
            _HELD[path] = owner
            os.mkdir(os.path.join(path, "home"), 0o700)
            os.mkdir(os.path.join(path, "tmp"), 0o700)
        except OSError as exc:
            remove_tree(path)
            raise SafePipError(
                f"cannot set up a private directory under {base} ({exc.strerror}); is it full?"
            ) from None
        return path
    raise SafePipError(f"cannot create a private directory under {base}")


#: Sweep at most this often (seconds): a temp dir holding thousands of entries costs
#: milliseconds to scan, too much for every run.
SWEEP_INTERVAL = 600


def sweep_if_due(env: dict[str, str] | os._Environ[str] | None = None) -> int:
    """:func:`sweep_stale`, unless this user swept in the last :data:`SWEEP_INTERVAL`
    seconds (a stamp file's mtime in the user's state directory: one ``stat``)."""
    import time

    variables = os.environ if env is None else env
    state = variables.get("XDG_STATE_HOME") or os.path.join(
        variables.get("HOME") or os.path.expanduser("~"), ".local", "state"
    )
    stamp = os.path.join(state, "safe-pip", "last-sweep")
    try:
        if time.time() - os.stat(stamp).st_mtime < SWEEP_INTERVAL:
            return 0
    except OSError:
        pass
    try:
        os.makedirs(os.path.dirname(stamp), mode=0o700, exist_ok=True)
        os.close(os.open(stamp, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600))
        os.utime(stamp)
    except OSError:
        pass
    return sweep_stale()


def sweep_stale(base: str | None = None) -> int:
    """Remove the private directories of this user's dead runs under ``base``
    (default: the temp dir); returns how many.  Never raises."""
    removed = 0
    uid = os.getuid()
    try:
        entries = list(os.scandir(base or _base()))
    except OSError:
        return 0
    for entry in entries:
        if not entry.name.startswith(PREFIX) or entry.path in _HELD:
            continue
        try:
            if (
                not entry.is_dir(follow_symlinks=False)
                or entry.stat(follow_symlinks=False).st_uid != uid
            ):
                continue
            fd = os.open(os.path.join(entry.path, _OWNER), os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            continue  # no owner file: being created this instant, or not ours to judge
        try:
            os.lockf(fd, os.F_TLOCK, 0)
        except OSError:
            os.close(fd)
            continue  # its owner lives
        try:
            remove_tree(entry.path)
            removed += 1
        except OSError:
            pass
        finally:
            os.close(fd)
    return removed


def remove_tree(path: str) -> None:
    """Delete a tree of ours (the private HOME/TMPDIR, a venv backup), even where
    directories were made unreadable (by the sandbox) or read-only (venvs may have them).

    Written out instead of ``shutil.rmtree`` because importing shutil (and with it
    bz2 and lzma) is a measurable slice of safe-run's start-up.  Symlinks are
    unlinked, never followed.
    """
    held = _HELD.pop(path, None)
    try:
        _remove_tree(path)
    finally:
        if held is not None:
            os.close(held)


def _remove_tree(path: str) -> None:
    try:
        if not os.access(path, os.R_OK | os.W_OK | os.X_OK):
            os.chmod(path, 0o700)
        entries = list(os.scandir(path))
    except FileNotFoundError:
        return
    for entry in entries:
        if entry.is_dir(follow_symlinks=False):
            _remove_tree(entry.path)
        else:
            try:
                os.unlink(entry.path)
            except FileNotFoundError:
                pass
    os.rmdir(path)
