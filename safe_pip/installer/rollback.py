"""Put a venv back exactly as it was before an install that went wrong.

An install that fails half-way, or whose post-install audit the user rejects, must not
leave the venv half-upgraded.  :meth:`VenvBackup.take` snapshots the whole tree into a
private sibling directory before the install, :meth:`VenvBackup.restore` swaps it back
by rename, :meth:`VenvBackup.discard` throws it away after a good install.

The snapshot is cheap because it copies no data: directories are recreated, regular
files are hard-linked, symlinks are re-created as symlinks (never followed).  That is
only sound if nothing modifies an existing venv file in place while the backup
exists, since a hard link shares the inode.  uv (checked with 0.13, ``--link-mode``
hardlink, copy, symlink and the default) never does: to install or upgrade it deletes
the old files (RECORD) and creates new ones, and it replaces a file that is already
there (one distribution overwriting another's file, a console script of the same name)
by writing a temporary file and renaming it over the old name, so the backup's link
keeps the old inode and bytes.  A file that cannot be linked (another filesystem, a
file the kernel's ``protected_hardlinks`` will not let us link) is copied instead.

What the links do not protect against: anything else that writes a venv file in
place (``open(..., "w")`` on an existing file, ``chmod``) changes the backup's copy
too, being the same inode.  During an install the only code with write access to the
venv besides uv is start-up code that was already in the venv when uv ran its
interpreter, i.e. code the rollback would restore anyway.

The backup lives next to the venv (same filesystem, so links and the final rename
work) in ``.safe-pip-rollback-XXXX``, mode 0700: the venv's own modes are kept on
the copy inside it, and the private parent stops anyone else from reaching it.
"""

from __future__ import annotations

import os
import stat

from safe_pip._records import record
from safe_pip.errors import SafePipError
from safe_pip.interrupts import uninterrupted
from safe_pip.launcher.scratch import remove_tree

BACKUP_PREFIX = ".safe-pip-rollback-"
_TRASH_PREFIX = ".safe-pip-trash-"
_TREE = "venv"
#: In a backup directory: written once the snapshot is whole.
_COMPLETE = "complete"


@record
class VenvBackup:
    """A hard-linked snapshot of ``venv`` at ``directory``/venv."""

    venv: str
    directory: str

    @classmethod
    def take(cls, venv: str) -> VenvBackup:
        """Snapshot ``venv`` now; costs one syscall or two per file, no data copied."""
        venv = os.path.abspath(venv)
        if not os.path.isdir(venv) or os.path.islink(venv):
            raise SafePipError(f"{venv} is not a directory; there is nothing to back up")
        directory = _private_sibling(venv, BACKUP_PREFIX)
        try:
            _clone_tree(venv, os.path.join(directory, _TREE))
            _mark(directory, _COMPLETE, "")
        except BaseException as exc:
            uninterrupted(lambda: remove_tree(directory))
            if isinstance(exc, OSError):
                raise SafePipError(f"cannot back up {venv}: {exc}") from None
            raise
        return cls(venv=venv, directory=directory)

    def restore(self) -> None:
        """Make the venv what it was at :meth:`take`; the backup is used up (a second
        call, or :meth:`discard` after it, does nothing).

        Two renames, so the venv path never holds a mix of old and new files: the
        current venv moves aside, the snapshot moves in, the old one is deleted.
        Nothing is created on the way (a rename within one directory needs no free
        space), so a full disk cannot stop it.  SIGINT, SIGTERM and SIGHUP wait until
        it is done (safe_pip/interrupts.py).
        """
        uninterrupted(self._restore)

    def _restore(self) -> None:
        if not os.path.isdir(self.directory):
            return  # done already (the KeyboardInterrupt held till then came after it)
        moved = _sibling_name(self.venv, _TRASH_PREFIX)
        had_venv = os.path.lexists(self.venv)
        if had_venv:
            os.rename(self.venv, moved)
        try:
            os.rename(os.path.join(self.directory, _TREE), self.venv)
        except BaseException:
            if had_venv:
                os.rename(moved, self.venv)
            raise
        self._drop()
        if had_venv:
            remove_tree(moved)

    def discard(self) -> None:
        """Delete the snapshot (the install is kept); the venv is not touched."""
        uninterrupted(self._drop)

    def _drop(self) -> None:
        """Rename the snapshot's directory to trash first, then delete it: a run killed
        while deleting leaves trash, which :func:`recover` removes, never a snapshot
        with holes that it would put back."""
        if not os.path.isdir(self.directory):
            return  # used up already
        trash = _sibling_name(self.venv, _TRASH_PREFIX)
        os.rename(self.directory, trash)
        remove_tree(trash)


def recover(venv: str) -> str | None:
    """Finish what a killed install of ``venv`` left; call with the venv's lock held
    (installer/venv_lock.py), so nothing found here belongs to a live run.

    Siblings carry a hash of the venv's name in theirs.  A whole snapshot means the
    install had started changing the venv: it is put back (that install is undone).
    A partial one means the kill came while it was being taken, before any change: it
    is dropped.  Trash is a venv that a restore had moved aside; once the venv is
    back, it is dropped.  Returns a sentence for the user when
    something was undone, else None.
    """
    venv = os.path.abspath(venv)
    parent, name = os.path.split(venv)
    undone = None
    try:
        entries = sorted(os.scandir(parent), key=lambda e: e.name)
    except OSError:
        return None
    for prefix in (BACKUP_PREFIX, _TRASH_PREFIX):
        for entry in entries:
            if not entry.name.startswith(prefix + _tag(name) + "-"):
                continue
            whole = os.path.exists(os.path.join(entry.path, _COMPLETE)) and os.path.isdir(
                os.path.join(entry.path, _TREE)
            )
            if prefix == BACKUP_PREFIX and whole:
                VenvBackup(venv=venv, directory=entry.path).restore()
                undone = (
                    f"an earlier install into {venv} was killed half-way; the venv was put "
                    "back as it was before it"
                )
            else:
                remove_tree(entry.path)
    return undone


def _tag(name: str) -> str:
    """A short, file-name-safe stand-in for a venv's name in its siblings' names."""
    import hashlib

    return hashlib.sha256(name.encode("utf-8", "surrogateescape")).hexdigest()[:12]


def _sibling_name(path: str, prefix: str) -> str:
    """A fresh name beside ``path`` that says which venv it belongs to."""
    parent, name = os.path.split(path)
    return os.path.join(parent, f"{prefix}{_tag(name)}-{os.urandom(6).hex()}")


def _mark(directory: str, name: str, text: str) -> None:
    fd = os.open(os.path.join(directory, name), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)


def _private_sibling(path: str, prefix: str) -> str:
    """A new mode-0700 directory beside ``path``: same filesystem, ours only, named
    for the venv it belongs to (:func:`recover`)."""
    for _ in range(10):
        candidate = _sibling_name(path, prefix)
        try:
            os.mkdir(candidate, 0o700)
        except FileExistsError:
            continue
        return candidate
    raise SafePipError(f"cannot create a private directory in {os.path.dirname(path)}")


def _clone_tree(source: str, target: str) -> None:
    """Recreate ``source`` at ``target``: new dirs, hard-linked files, copied symlinks.

    Directory modes and times are set after their contents are in place (a read-only
    directory could not be filled otherwise, and filling it changes its mtime).
    """
    info = os.lstat(source)
    os.mkdir(target, 0o700)
    with os.scandir(source) as entries:
        for entry in entries:
            destination = os.path.join(target, entry.name)
            if entry.is_dir(follow_symlinks=False):
                _clone_tree(entry.path, destination)
            elif entry.is_symlink():
                os.symlink(os.readlink(entry.path), destination)
            else:
                _link_or_copy(entry.path, destination)
    os.chmod(target, stat.S_IMODE(info.st_mode))
    os.utime(target, ns=(info.st_atime_ns, info.st_mtime_ns))


def _link_or_copy(source: str, destination: str) -> None:
    """Hard-link a file; copy it (bytes, mode, times) where linking is refused."""
    try:
        os.link(source, destination, follow_symlinks=False)
        return
    except OSError:
        info = os.lstat(source)
        if not stat.S_ISREG(info.st_mode):
            raise
    _copy_file(source, destination, info)


def _copy_file(source: str, destination: str, info: os.stat_result) -> None:
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW
    reader = os.open(source, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        writer = os.open(destination, flags, 0o600)
        try:
            while chunk := os.read(reader, 1 << 20):
                view = memoryview(chunk)
                while view:
                    view = view[os.write(writer, view) :]
            os.fchmod(writer, stat.S_IMODE(info.st_mode))
            os.utime(writer, ns=(info.st_atime_ns, info.st_mtime_ns))
        finally:
            os.close(writer)
    finally:
        os.close(reader)
