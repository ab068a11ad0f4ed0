"""Files of ours that decide what later runs may do: created, checked and read warily.

Two stores live under the user's home and widen or shape later runs: the cache of
parsed policies (:mod:`safe_pip.policy.cache`) and the approvals of policies
(:mod:`safe_pip.policy.trust`).  Both must be written only by the user's own
unsandboxed processes, so both use the same rules:

* Directories and files are trusted only when they are real (not symlinks), owned by
  the effective uid and not writable by group or others.  A directory of ours that is
  group/other-writable is repaired (0700), but what it holds is not trusted this time.
* Directories are created 0700, and only inside directories the effective uid owns
  (``sudo`` with the caller's ``HOME`` does not leave root-owned directories in a
  user's home; a user's store is never trusted by root).
* Files are opened with ``O_NOFOLLOW`` and read up to a bound; writes go to a fresh
  ``O_EXCL`` temporary file (0600) that is then renamed into place.

The sandbox never reaches these directories: the loader denies them and protects
their parents (see :func:`safe_pip.policy.loader.load_policy`), which is why they are
created before any sandbox exists -- a deny path that does not exist cannot be
enforced, and the sandbox could create it.

Only ``os`` is imported: this runs on every ``safe-run`` start.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False  # avoid importing typing at start-up
if TYPE_CHECKING:
    from collections.abc import Mapping

# <sys/stat.h>; the stat module is not otherwise loaded on the run path.
S_IFMT = 0o170000
S_IFDIR = 0o040000
S_IFREG = 0o100000
_GROUP_OTHER_WRITE = 0o022


def normal(path: str) -> str:
    """``os.path.normpath`` without POSIX's implementation-defined leading ``//``."""
    path = os.path.normpath(path)
    if path.startswith("//"):
        path = "/" + path.lstrip("/")
    return path


def xdg_root(home: str, variables: Mapping[str, str], variable: str, default: str) -> str | None:
    """``$VARIABLE/safe-pip``, else ``HOME/DEFAULT/safe-pip``; None without either.

    ``variables`` is the caller's environment.  A relative value is ignored, as the
    XDG base directory spec says.
    """
    value = variables.get(variable, "")
    if value.startswith("/"):
        return normal(value + "/safe-pip")
    if home.startswith("/"):
        return normal(f"{home}/{default}/safe-pip")
    return None


def is_safe(mode: int, uid: int, euid: int, kind: int) -> bool:
    """A file of the right kind, owned by ``euid``, writable by nobody else."""
    return mode & S_IFMT == kind and uid == euid and not mode & _GROUP_OTHER_WRITE


def prepare(root: str, entries: str, euid: int, *, depth: int = 3) -> bool | None:
    """Create ``root/entries`` and up to ``depth`` missing directories in all (the
    entry directory, the root, the XDG base such as ``~/.cache``; 4 reaches
    ``~/.local`` for ``~/.local/state``), each inside a directory we own.  A missing
    home is never created.

    Returns True when entries may be read and written, False when they may only be
    written (a directory of ours was writable by others: it is repaired, but what it
    holds is not trusted this time), None when the store cannot be used.
    """
    try:
        os.lstat(entries)
    except FileNotFoundError:
        missing = [entries]
        while not os.path.lexists(os.path.dirname(missing[-1])):
            if len(missing) >= depth:
                return None
            missing.append(os.path.dirname(missing[-1]))
        for directory in reversed(missing):
            if not _make_dir(directory, euid):
                return None
    except OSError:
        return None
    verdict: bool | None = True
    for directory in (root, entries):
        state = _check_dir(directory, euid)
        if state is None:
            return None
        verdict = verdict and state
    return verdict


def _make_dir(directory: str, euid: int) -> bool:
    """``mkdir DIR 0700`` unless it exists; only inside a directory we own."""
    if os.path.lexists(directory):
        return True
    try:
        if os.stat(os.path.dirname(directory)).st_uid != euid:
            return False
        os.mkdir(directory, 0o700)
    except FileExistsError:
        pass
    except OSError:
        return False
    return True


def _check_dir(directory: str, euid: int) -> bool | None:
    """True: safe; False: ours but group/other-writable (repaired to 0700); None: not usable."""
    try:
        st = os.lstat(directory)
        if st.st_mode & S_IFMT != S_IFDIR or st.st_uid != euid:
            return None
        if not st.st_mode & _GROUP_OTHER_WRITE:
            return True
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            if os.fstat(fd).st_uid != euid:
                return None
            os.fchmod(fd, 0o700)
        finally:
            os.close(fd)
    except OSError:
        return None
    return False


def read_owned(path: str, euid: int, limit: int) -> bytes | None:
    """The bytes of a regular file of ours (see the module doc), at most ``limit``.

    None when it is missing, not trusted or larger than ``limit``.  Never follows a
    final symlink and never blocks on a FIFO.
    """
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        fd = os.open(path, flags)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if not is_safe(st.st_mode, st.st_uid, euid, S_IFREG) or st.st_size > limit:
            return None
        chunks: list[bytes] = []
        size = 0
        while size <= limit:
            chunk = os.read(fd, limit + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except OSError:
        return None
    finally:
        os.close(fd)
    blob = b"".join(chunks)
    return None if len(blob) > limit else blob


def write_atomically(final: str, blob: bytes) -> None:
    """Replace ``final`` with ``blob``: a fresh 0600 file beside it, then a rename."""
    temp = f"{final}.{os.getpid()}-{os.urandom(4).hex()}.tmp"
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(temp, flags, 0o600)
    try:
        try:
            view = memoryview(blob)
            while view:
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)
        os.replace(temp, final)
    except BaseException:
        try:
            os.unlink(temp)
        except OSError:
            pass
        raise
