"""The private scratch directory of one sandboxed run: ``home/`` and ``tmp/`` inside.

Whoever creates it removes it, after any outcome; the sandbox gets it as its HOME and
TMPDIR and may leave anything there, including directories it made unreadable.
"""

from __future__ import annotations

import os

from safe_pip.errors import SafePipError


def make_private_dir() -> str:
    """``$TMPDIR/safe-run-XXXX`` with ``home/`` and ``tmp/``; cheaper than ``tempfile``."""
    base = os.environ.get("TMPDIR") or "/tmp"
    if not os.path.isdir(base):
        base = "/tmp"
    for _ in range(10):
        path = os.path.join(base, "safe-run-" + os.urandom(6).hex())
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            continue
        os.mkdir(os.path.join(path, "home"), 0o700)
        os.mkdir(os.path.join(path, "tmp"), 0o700)
        return path
    raise SafePipError(f"cannot create a private directory under {base}")


def remove_tree(path: str) -> None:
    """Delete a tree of ours (the private HOME/TMPDIR, a venv backup), even where
    directories were made unreadable (by the sandbox) or read-only (venvs may have them).

    Written out instead of ``shutil.rmtree`` because importing shutil (and with it
    bz2 and lzma) is a measurable slice of safe-run's start-up.  Symlinks are
    unlinked, never followed.
    """
    try:
        if not os.access(path, os.R_OK | os.W_OK | os.X_OK):
            os.chmod(path, 0o700)
        entries = list(os.scandir(path))
    except FileNotFoundError:
        return
    for entry in entries:
        if entry.is_dir(follow_symlinks=False):
            remove_tree(entry.path)
        else:
            try:
                os.unlink(entry.path)
            except FileNotFoundError:
                pass
    os.rmdir(path)
