"""One safe-pip at a time per venv: an advisory lock around every command that writes it.

Two installs into one venv at once step on each other: each run's report lists the
other's packages, and a ``--strict`` rollback of one deletes what the other just
installed.  So ``install``, ``sync``, ``uninstall`` (and ``add``/``remove``, which
sync) take an exclusive ``flock`` first; a second run waits, saying for whom, or
with ``--no-wait`` stops at once (exit 125).  The kernel drops the lock when its
holder dies, SIGKILL included, so a killed run never leaves the venv locked.

The lock files live in the user's state directory (``$XDG_STATE_HOME/safe-pip/locks``,
which every sandbox denies), one per venv, named by a hash of the venv's real path:
the venv may not exist yet, and a file inside it would be writable by anything
allowed to write the venv.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import sys

from safe_pip.errors import SafePipError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from types import TracebackType

__all__ = ["VenvLock", "lock_path"]


def lock_path(venv: str, env: Mapping[str, str]) -> str:
    """The lock file of ``venv`` (a path that need not exist yet)."""
    state = env.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    parent, name = os.path.split(os.path.abspath(venv))
    real = os.path.join(os.path.realpath(parent), name)
    digest = hashlib.sha256(real.encode("utf-8", "surrogateescape")).hexdigest()[:32]
    return os.path.join(state, "safe-pip", "locks", f"{digest}.lock")


class VenvLock:
    """``with VenvLock(venv, wait=...):`` holds the venv's lock for the block."""

    def __init__(self, venv: str, *, wait: bool = True, env: Mapping[str, str] | None = None):
        self._venv = os.path.abspath(venv)
        self._wait = wait
        self._path = lock_path(venv, os.environ if env is None else env)
        self._fd: int | None = None

    def __enter__(self) -> VenvLock:
        os.makedirs(os.path.dirname(self._path), mode=0o700, exist_ok=True)
        flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            fd = os.open(self._path, flags, 0o600)
        except OSError as exc:
            raise SafePipError(f"cannot lock {self._venv}: {self._path}: {exc.strerror}") from None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _holder(fd)
                if not self._wait:
                    raise SafePipError(
                        f"{self._venv} is being changed by another safe-pip{holder}; "
                        "try again when it is done (or leave out --no-wait to wait)"
                    ) from None
                sys.stderr.write(
                    f"safe-pip: waiting for another safe-pip{holder} changing {self._venv} "
                    "(Ctrl-C to give up)\n"
                )
                sys.stderr.flush()
                fcntl.flock(fd, fcntl.LOCK_EX)
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor releases the flock
            self._fd = None


def _holder(fd: int) -> str:
    """`` (pid N)`` from the lock file, when it names one."""
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return ""
    return f" (pid {text})" if text.isdigit() else ""
