"""How installed files land in a venv: hard links to safe-pip's cache where that is
safe, a reflink or a copy where it is not.

A hard-linked venv file *is* the cache's file (one inode).  Writing it in place --
``open(path, "r+")``, ``truncate``, ``chmod`` -- changes what every later install
from that cache gets, so a venv that code may write must never share inodes with the
cache.  The guarantee is split between the two commands:

* **safe-run never writes a linked venv.**  ``safe-pip`` records each venv it links
  (the venv's path in ``$XDG_STATE_HOME/safe-pip/linked-venvs``, which no sandbox may
  write, before it links anything; ``link-mode = hardlink`` in ``VENV/safe-pip.cfg``
  after); the
  persistence guard (:mod:`safe_pip.launcher.persistence`) keeps every recorded venv
  under a write grant read-only whole, whatever the policy says, and says so once
  when the policy names it for writing.
* **A venv that must be writable is never linked.**  One that a project's
  ``[tool.safe-run]`` names for writing gets copies by itself; ``--link-mode copy``
  (or ``clone``) makes any venv one of copies.  Either is remembered in its
  ``safe-pip.cfg`` for every later install and sync, and the links a linked install
  left are broken.

A reflink (``FICLONE``, btrfs and XFS) shares blocks until one side writes, which is
both fast and safe; uv's ``clone`` mode silently falls back to hard links where the
filesystem has none, so safe-pip asks for it only after cloning a probe file itself.
The builds and the resolution never get the shared cache or a linked venv (they
write only their own output and private cache), so no package code runs where it
could write a linked file during an install either.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import stat

from safe_pip.launcher.linked_venvs import (
    LINK_MODE_KEY,
    LINK_MODES,
    REGISTRY,
    SETTINGS_FILE,
    recorded_link_mode,
    registered,
)

__all__ = ["LINK_MODES", "break_links", "choose", "reflinks_work", "remember"]

_FICLONE = 0x40049409


def choose(
    venv: str, cache: str | None, requested: str | None, state_root: str | None
) -> str | None:
    """The ``--link-mode`` for uv, or None for uv's default: an install from a private
    cache that is thrown away afterwards, whose inodes nothing else will ever read.

    ``hardlink`` only once the venv is in the registry (registered first: a linked venv
    must never be missing from it) and where the sandbox can run without a mount
    namespace; otherwise ``copy``.  Where the filesystem
    reflinks, ``clone`` instead: as fast, and the venv's files are its own.
    """
    if cache is None:
        return None
    wanted = requested or recorded_link_mode(venv) or "hardlink"
    if requested is None and wanted == "hardlink" and a_policy_writes(venv):
        wanted = "copy"  # safe-run would keep a linked venv read-only against the policy
    if wanted in ("hardlink", "clone") and reflinks_work(cache, venv):
        return "clone"
    if wanted == "clone":
        return "copy"  # uv would fall back to hard links
    if wanted == "hardlink" and not (_fallback_mode_works() and _register(state_root, venv)):
        return "copy"
    return wanted


def _fallback_mode_works() -> bool:
    """Whether the sandbox can run without namespaces (Landlock ABI 6+), which a
    hard-linking install needs (installer/sandboxed_uv.py says why)."""
    from safe_pip.sandbox import landlock

    return landlock.abi_version() >= 6


def a_policy_writes(venv: str) -> bool:
    """Whether the ``[tool.safe-run]`` policy of the project holding the venv, or of the
    project here, names the venv (or a path inside it) for writing: such a venv gets
    copies, or safe-run would have to keep it read-only against its own policy.  A
    policy that cannot be read names nothing (safe-run will say why)."""
    from safe_pip.errors import SafePipError
    from safe_pip.policy.loader import CliOverrides, load_policy
    from safe_pip.policy.model import is_within

    real = os.path.realpath(venv)
    for start in dict.fromkeys([os.path.dirname(real), os.getcwd()]):
        try:
            policy = load_policy(
                cwd=start,
                project=None,
                overrides=CliOverrides(),
                variables=os.environ,
                home=os.path.expanduser("~"),
            )
        except (SafePipError, OSError, ValueError):
            continue
        if any(is_within(os.path.realpath(grant), real) for grant in policy.filesystem.write):
            return True
    return False


def reflinks_work(cache: str, venv: str) -> bool:
    """Whether a file in ``cache`` can be reflinked into ``venv``, checked by doing it
    with two unnamed files (``O_TMPFILE``: nothing is left behind)."""
    source = target = -1
    try:
        source = os.open(cache, os.O_TMPFILE | os.O_RDWR | os.O_CLOEXEC, 0o600)
        os.write(source, b"x")
        target = os.open(venv, os.O_TMPFILE | os.O_RDWR | os.O_CLOEXEC, 0o600)
        fcntl.ioctl(target, _FICLONE, source)
        return True
    except OSError:
        return False
    finally:
        for fd in (source, target):
            if fd >= 0:
                os.close(fd)


def remember(venv: str, mode: str) -> None:
    """Record ``mode`` in the venv's ``safe-pip.cfg`` (replacing an older record) by
    writing a new file and renaming it over: the old one may be in a rollback
    snapshot, which shares its inode."""
    path = os.path.join(venv, SETTINGS_FILE)
    try:
        with open(path, encoding="utf-8") as handle:
            kept = [
                line
                for line in handle.read().splitlines()
                if line.partition("=")[0].strip() != LINK_MODE_KEY
            ]
    except FileNotFoundError:
        kept = []
    temporary = path + ".safe-pip-tmp"
    with open(temporary, "w", encoding="utf-8") as handle:
        handle.writelines(line + "\n" for line in [*kept, f"{LINK_MODE_KEY} = {mode}"])
    os.replace(temporary, path)


def _register(state_root: str | None, venv: str) -> bool:
    """Add the venv to the registry safe-run reads; False when that is impossible."""
    from safe_pip.policy import owned

    if state_root is None or owned.prepare(state_root, state_root, os.geteuid(), depth=4) is None:
        return False
    real = os.path.realpath(venv)
    if real in registered([state_root]):
        return True
    flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC | os.O_NOFOLLOW
    try:
        fd = os.open(os.path.join(state_root, REGISTRY), flags, 0o600)
    except OSError:
        return False
    try:
        os.write(fd, (real + "\n").encode("utf-8", "surrogateescape"))
    except OSError:
        return False
    finally:
        os.close(fd)
    return True


def break_links(venv: str) -> int:
    """Give every multiply-linked regular file of ``venv`` an inode of its own (a copy
    renamed over it); returns how many.  For a venv that turns from ``hardlink`` to
    ``copy``: afterwards none of its files is the cache's.  (A rollback snapshot's
    links count too; copying those as well is harmless.)"""
    count = 0
    for directory, _dirs, files in os.walk(venv):
        for name in files:
            path = os.path.join(directory, name)
            info = os.lstat(path)
            if not stat.S_ISREG(info.st_mode) or info.st_nlink < 2:
                continue
            temporary = os.path.join(directory, f".{name}.safe-pip-copy")
            shutil.copy2(path, temporary, follow_symlinks=False)
            os.replace(temporary, path)
            count += 1
    return count
