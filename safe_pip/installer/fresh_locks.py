"""Remember which project locks are known to be up to date, so ``safe-pip sync`` need
not start a sandbox to run ``uv lock`` again over the very same files.

``uv sync`` checks the lock on every run; uv does it in tens of milliseconds, but for
safe-pip it is one more sandbox (``uv lock`` may build sdist metadata, so it must run
confined).  ``uv lock`` leaves a lock alone when the project's requirements did not
change: its outcome depends on what it reads (``pyproject.toml``, ``uv.lock``, the
project's ``uv.toml`` and ``.python-version``) and on what safe-pip passes (the
interpreter, the indexes, the flags).  After a lock that succeeded, the digest of all
of that, with the lock as it now is, is recorded; a later sync whose digest is
recorded skips the lock step.  Any byte changed in those files, or another index or
flag, means another digest, and the lock runs.

Not remembered: projects whose lock reads more than those files -- a workspace, or
``[tool.uv.sources]`` (path, git and URL sources are read or fetched by uv).

The record is ``$XDG_STATE_HOME/safe-pip/fresh-locks`` (digests, one per line, the
last :data:`_KEEP`): the state directory is read-only to every sandbox, so package
code cannot mark a lock fresh.
"""

from __future__ import annotations

import hashlib
import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["digest", "is_fresh", "remember"]

_RECORD = "fresh-locks"
_KEEP = 500
#: What ``uv lock`` reads in the project directory.
_READ = ("pyproject.toml", "uv.lock", "uv.toml", ".python-version")
_MAX_FILE = 64 << 20


def digest(project_dir: str, inputs: Sequence[str], files_in: str | None = None) -> str | None:
    """The digest of what a lock of ``project_dir`` with ``inputs`` (interpreter,
    index arguments, flags) depends on; None when it cannot be told from those files
    alone (a workspace, uv sources) or a file cannot be read.

    ``files_in``: read the files from this copy of the project (the one the lock
    ran on: an edit made to the project meanwhile must not be recorded as locked)."""
    hasher = hashlib.sha256(b"safe-pip fresh lock v1\0")
    hasher.update(os.path.realpath(project_dir).encode("utf-8", "surrogateescape") + b"\0")
    for item in inputs:
        hasher.update(item.encode("utf-8", "surrogateescape") + b"\0")
    for name in _READ:
        path = os.path.join(files_in or project_dir, name)
        try:
            with open(path, "rb") as handle:
                data = handle.read(_MAX_FILE + 1)
        except FileNotFoundError:
            hasher.update(b"-\0")
            continue
        except OSError:
            return None
        if len(data) > _MAX_FILE:
            return None
        if name == "pyproject.toml" and _reads_more(data):
            return None
        hasher.update(name.encode() + b"\0" + str(len(data)).encode() + b"\0" + data)
    return hasher.hexdigest()


def _reads_more(pyproject: bytes) -> bool:
    """Whether uv's lock of this project reads more than its own files: a workspace
    or ``[tool.uv.sources]`` (or a file that does not parse: the lock will say why)."""
    import sys

    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - exercised on 3.10 only
        import tomli as tomllib
    try:
        data = tomllib.loads(pyproject.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError):
        return True
    tool = data.get("tool")
    uv = tool.get("uv") if isinstance(tool, dict) else None
    return isinstance(uv, dict) and ("sources" in uv or "workspace" in uv)


def _record(state_root: str) -> str:
    return os.path.join(state_root, _RECORD)


def is_fresh(state_root: str | None, key: str | None) -> bool:
    """Whether a lock with digest ``key`` was left up to date by an earlier lock."""
    if state_root is None or key is None:
        return False
    try:
        with open(_record(state_root), encoding="ascii") as handle:
            return key in handle.read().split()
    except (OSError, UnicodeDecodeError):
        return False


def remember(state_root: str | None, key: str | None) -> None:
    """Record ``key`` (keeping the last :data:`_KEEP`); never fails the sync."""
    if state_root is None or key is None:
        return
    from safe_pip.policy import owned

    if owned.prepare(state_root, state_root, os.geteuid(), depth=4) is None:
        return
    path = _record(state_root)
    try:
        with open(path, encoding="ascii") as handle:
            keys = [k for k in handle.read().split() if k != key]
    except (OSError, UnicodeDecodeError):
        keys = []
    keys = [*keys[-(_KEEP - 1) :], key]
    temporary = f"{path}.{os.getpid()}.tmp"
    try:
        with open(temporary, "w", encoding="ascii") as handle:
            handle.write("\n".join(keys) + "\n")
        os.replace(temporary, path)
    except OSError:
        return
