"""The filesystem broker: every write to a persistent grant is done on the program's behalf.

Why
===

A write grant (the project, an output directory, ``~``) outlives the run, and some
names in it are obeyed later by trusted tools: a ``.git`` anywhere (``git init
src/vendor`` plants a ``core.fsmonitor``), a ``.pth`` in any venv's site-packages, a
new entry in a ``bin/`` on ``PATH``, a missing ``~/.bash_profile``.  Neither Landlock
nor a mount can forbid a *name* that does not exist yet.  So the sandboxed program
gets only read access to persistent grants (its own Landlock domain), every call
that could write there stops in a seccomp user notification, and this broker --
which holds the write access -- decides each one against
:class:`~safe_pip.launcher.persistence.WriteRules` and, when allowed, performs it
itself: it opens the file and installs the descriptor in the program
(``SECCOMP_IOCTL_NOTIF_ADDFD``), or makes the directory, link or rename.

The same mechanism gives fallback mode (no mount namespace) what Landlock's carving
could not: a directory that holds protected entries (the project root, with its
``pyproject.toml`` and ``.git``) takes new files again, while the protected names
stay out of reach.

Where it runs, and why that is safe
===================================

The broker is the sandboxed program's parent: pid 1 of the sandbox in namespace mode,
the first child in fallback mode.  It shares the program's view of the file system
(same mount namespace and root), applies the same Landlock rules *with* write access
to persistent grants, and the program then stacks its own, narrower domain on top:
the kernel still checks everything the broker does against the policy, and Landlock
lets the broker read the program's memory and descriptors (an inner domain) but not
the other way round.  Being the parent also satisfies Yama's ``ptrace_scope=1``.

The decision never rests on memory the program can still change: the path is copied
once, resolved by the broker itself (``openat2`` from the program's working
directory or directory fd, symlinks followed step by step so ``/proc/self`` names the
program, not the broker), and the operation is carried out on that resolution.  A
call the broker does not perform is answered ``CONTINUE``, which lets the kernel run
it with the *program's* rights -- read-only on persistent grants -- so a swapped
argument cannot gain anything: scratch space (the private HOME and TMPDIR) stays
writable at full speed of the kernel, everything else stays refused by it.

Cost: one notification round trip per write-capable call (about 10-40 µs with
``SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP``); reads never stop here.
"""

from __future__ import annotations

import errno
import os
import stat

from safe_pip.sandbox.notify import CONTINUE, DEFERRED, Answer, Notification, Notifications

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from safe_pip.launcher.persistence import WriteRules

_AT_FDCWD = -100
_AT_REMOVEDIR = 0x200
_AT_SYMLINK_FOLLOW = 0x400
_AT_EMPTY_PATH = 0x1000
_O_CREAT = 0o100
_O_EXCL = 0o200
_O_NOFOLLOW = 0o400000
_O_CLOEXEC = 0o2000000
_O_TMPFILE_BIT = 0o20000000
_O_DIRECTORY = 0o200000
_MAX_HOPS = 40
_RESOLVE_NO_MAGICLINKS = 0x02
_PROC_SUPER_MAGIC = 0x9FA0


def _fd_arg(value: int) -> int:
    """A descriptor argument: the low 32 bits, signed (AT_FDCWD is -100)."""
    value &= 0xFFFFFFFF
    return value - (1 << 32) if value >= 1 << 31 else value


class Located:
    """A path as the program sees it: an open parent directory, the last name, and
    where that parent is (the kernel's own spelling, for area and rule checks)."""

    __slots__ = ("name", "parent", "parent_fd")

    def __init__(self, parent_fd: int, name: str, parent: str) -> None:
        self.parent_fd = parent_fd
        self.name = name
        self.parent = parent

    @property
    def path(self) -> str:
        return self.parent.rstrip("/") + "/" + self.name

    def close(self) -> None:
        os.close(self.parent_fd)


class FsBroker:
    """Handlers for the write calls of one sandbox (see the module doc).

    ``persistent``: the real paths of the write grants that outlive the run; a call
    beyond them is left to the kernel.  ``rules`` decides what may be written there.
    ``report(line)`` receives one line per refusal (the supervisor lists them).
    """

    def __init__(
        self,
        notifications: Notifications,
        persistent: Iterable[str],
        rules: WriteRules,
        report: Callable[[str], None],
        scratch: Iterable[str] | None = None,
    ) -> None:
        self._n = notifications
        self._persistent = tuple(sorted({os.path.realpath(p) for p in persistent}))
        self._rules = rules
        self._report = report
        #: Learn mode: the program's own writable places.  A write the broker leaves to
        #: the kernel anywhere else is refused there, and reported as ``outside``.
        self._scratch = None if scratch is None else tuple(os.path.realpath(p) for p in scratch)
        import ctypes

        self._libc = ctypes.CDLL(None, use_errno=True)
        self._libc.syscall.restype = ctypes.c_long
        self._ctypes = ctypes
        # openat2(dirfd, path, how, size) bound once, with its struct open_how:
        # O_PATH|O_DIRECTORY|O_CLOEXEC, no mode, RESOLVE_NO_MAGICLINKS.
        self._openat2_call = ctypes.CFUNCTYPE(
            ctypes.c_long, ctypes.c_long, ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p,
            ctypes.c_size_t, use_errno=True,
        )(("syscall", self._libc))  # fmt: skip
        self._how = ctypes.create_string_buffer(
            (os.O_PATH | os.O_DIRECTORY | _O_CLOEXEC).to_bytes(8, "little")
            + (0).to_bytes(8, "little")
            + _RESOLVE_NO_MAGICLINKS.to_bytes(8, "little"),
            24,
        )

    def handlers(self) -> dict[int, Callable[[Notification], Answer]]:
        """Syscall number -> handler, for :meth:`Notifications.serve`."""
        from safe_pip.sandbox.seccomp import syscall_number

        table: dict[str, Callable[[Notification], Answer]] = {
            "openat": lambda n: self._open(n, n.args[0], n.args[1], n.args[2], n.args[3]),
            "open": lambda n: self._open(n, _AT_FDCWD, n.args[0], n.args[1], n.args[2]),
            "creat": lambda n: self._open(
                n, _AT_FDCWD, n.args[0], os.O_WRONLY | _O_CREAT | os.O_TRUNC, n.args[1]
            ),
            "truncate": self._truncate,
            "mkdir": lambda n: self._mkdir(n, _AT_FDCWD, n.args[0], n.args[1]),
            "mkdirat": lambda n: self._mkdir(n, n.args[0], n.args[1], n.args[2]),
            "mknod": lambda n: self._mknod(n, _AT_FDCWD, n.args[0], n.args[1], n.args[2]),
            "mknodat": lambda n: self._mknod(n, n.args[0], n.args[1], n.args[2], n.args[3]),
            "rmdir": lambda n: self._remove(n, _AT_FDCWD, n.args[0], directory=True),
            "unlink": lambda n: self._remove(n, _AT_FDCWD, n.args[0], directory=False),
            "unlinkat": lambda n: self._remove(
                n, n.args[0], n.args[1], directory=bool(n.args[2] & _AT_REMOVEDIR)
            ),
            "symlink": lambda n: self._symlink(n, n.args[0], _AT_FDCWD, n.args[1]),
            "symlinkat": lambda n: self._symlink(n, n.args[0], n.args[1], n.args[2]),
            "link": lambda n: self._link(n, _AT_FDCWD, n.args[0], _AT_FDCWD, n.args[1], 0),
            "linkat": lambda n: self._link(n, *_five(n)),
            "rename": lambda n: self._rename(n, _AT_FDCWD, n.args[0], _AT_FDCWD, n.args[1], 0),
            "renameat": lambda n: self._rename(n, *_five(n)[:4], 0),
            "renameat2": lambda n: self._rename(n, *_five(n)),
        }
        found: dict[int, Callable[[Notification], Answer]] = {}
        for name, handler in table.items():
            try:
                found[syscall_number(name)] = handler
            except KeyError:  # not on this architecture (aarch64 has no open, mkdir ...)
                continue
        return found

    # -- resolution in the program's view ------------------------------------------------

    def _start(self, n: Notification, dirfd: int) -> int:
        """An O_PATH descriptor of where a relative path starts for the program."""
        dirfd = _fd_arg(dirfd)
        where = f"/proc/{n.tid}/cwd" if dirfd == _AT_FDCWD else f"/proc/{n.tid}/fd/{dirfd}"
        return os.open(where, os.O_PATH | os.O_CLOEXEC)

    def _proc_self(self, n: Notification, path: str) -> str:
        """``/proc/self`` and ``/proc/thread-self`` as the program means them."""
        if not path.startswith("/proc/"):
            return path
        for prefix in ("/proc/self", "/proc/thread-self"):
            if path == prefix or path.startswith(prefix + "/"):
                replacement = f"/proc/{self._tgid(n)}"
                if prefix == "/proc/thread-self":
                    replacement += f"/task/{n.tid}"
                return replacement + path[len(prefix) :]
        return path

    def _tgid(self, n: Notification) -> int:
        value = _status_field(n.tid, b"\nTgid:")
        if value is None:
            raise ProcessLookupError(n.tid)
        return int(value)

    def locate(self, n: Notification, dirfd: int, raw: bytes, *, follow: bool) -> Located | None:
        """Where ``raw`` (relative to ``dirfd``) leads for the program; None when the
        broker cannot tell (a missing parent, an odd name): the kernel then decides."""
        located = self._locate(n, dirfd, raw, follow=follow)
        if located is None and self._scratch is not None:
            self._note_unresolved(n, dirfd, os.fsdecode(raw))
        return located

    def _note_unresolved(self, n: Notification, dirfd: int, path: str) -> None:
        """Learn mode: a path whose parent the program cannot see (namespace mode's
        private root lacks it) is still worth reporting, spelled from its cwd."""
        try:
            if not path.startswith("/"):
                dirfd = _fd_arg(dirfd)
                base = f"/proc/{n.tid}/cwd" if dirfd == _AT_FDCWD else f"/proc/{n.tid}/fd/{dirfd}"
                path = os.readlink(base).rstrip("/") + "/" + path
            path = os.path.normpath(self._proc_self(n, path))
        except OSError:
            return
        if path.startswith("/proc/") or self.persistent(path):
            return  # a missing directory inside a grant is the program's own ENOENT
        # Not compared with the scratch places: in namespace mode /tmp is a private
        # tmpfs, and a host path under it that the program cannot see (its parent is
        # missing there) is exactly what a grant would bind in.
        self._report(f"outside entry open {path}")

    @staticmethod
    def _in(path: str, roots: Iterable[str]) -> bool:
        return any(path == root or path.startswith(root.rstrip("/") + "/") for root in roots)

    def _locate(self, n: Notification, dirfd: int, raw: bytes, *, follow: bool) -> Located | None:
        path = os.fsdecode(raw)
        if not path:
            return None
        start = self._start(n, dirfd) if not path.startswith("/") else None
        try:
            for _hop in range(_MAX_HOPS):
                located = self._locate_once(n, start, path)
                if located is None:
                    return None
                if not follow:
                    return located
                try:
                    info = os.stat(located.name, dir_fd=located.parent_fd, follow_symlinks=False)
                except OSError:
                    return located  # missing: created where it is
                if not stat.S_ISLNK(info.st_mode):
                    return located
                target = os.readlink(located.name, dir_fd=located.parent_fd)
                if start is not None:
                    os.close(start)
                start = None
                if not target.startswith("/"):
                    target = located.parent.rstrip("/") + "/" + target
                located.close()
                path = target
            return None  # ELOOP: let the kernel say so
        finally:
            if start is not None:
                os.close(start)

    def _locate_once(self, n: Notification, start: int | None, path: str) -> Located | None:
        if path.startswith("/"):
            path = self._proc_self(n, path)
        trimmed = path.rstrip("/")
        if not trimmed:
            return None  # "/" itself
        head, _, name = trimmed.rpartition("/")
        if name in ("", ".", ".."):
            return None
        if trimmed.startswith("/") and not head:
            head = "/"
        parent_fd = self._open_parent(n, start, head or ".")
        if parent_fd is None:
            return None
        try:
            parent = os.readlink(f"/proc/self/fd/{parent_fd}")
        except OSError:
            os.close(parent_fd)
            return None
        if not parent.startswith("/") or parent.endswith(" (deleted)"):
            os.close(parent_fd)
            return None
        return Located(parent_fd, name, parent)

    def _open_parent(self, n: Notification, start: int | None, head: str) -> int | None:
        """The parent directory, resolved the way the kernel would for the program."""
        dir_fd = start if start is not None and not head.startswith("/") else None
        try:
            return self._openat2(dir_fd, head)
        except OSError as exc:
            if exc.errno not in (errno.ELOOP, errno.EXDEV):
                return None
        # A magic link on the way (/proc/PID/fd/N, /dev/fd -> /proc/self/fd): walk it.
        try:
            return self._walk(n, dir_fd, head)
        except OSError:
            return None

    def _openat2(self, dir_fd: int | None, path: str) -> int:
        ctypes = self._ctypes
        fd = int(
            self._openat2_call(
                437, _AT_FDCWD if dir_fd is None else dir_fd, os.fsencode(path), self._how, 24
            )
        )
        if fd < 0:
            err = ctypes.get_errno()
            if err == errno.ENOSYS:  # before Linux 5.6: plain openat, links followed
                return os.open(path, os.O_PATH | os.O_DIRECTORY | _O_CLOEXEC, dir_fd=dir_fd)
            raise OSError(err, os.strerror(err), path)
        return fd

    def _walk(self, n: Notification, dir_fd: int | None, path: str) -> int:
        """Resolve ``path`` one component at a time: symlinks are read and followed
        here (with ``/proc/self`` meaning the program), magic links inside procfs are
        followed by the kernel (they name the program's own files)."""
        pending = [part for part in path.split("/") if part][::-1]
        if path.startswith("/"):
            current = os.open("/", os.O_PATH | _O_CLOEXEC)
        elif dir_fd is not None:
            current = os.dup(dir_fd)
        else:
            current = os.open(".", os.O_PATH | _O_CLOEXEC)
        hops = 0
        try:
            while pending:
                part = pending.pop()
                if part == ".":
                    continue
                fd = os.open(part, os.O_PATH | _O_NOFOLLOW | _O_CLOEXEC, dir_fd=current)
                if stat.S_ISLNK(os.fstat(fd).st_mode):
                    hops += 1
                    if hops > _MAX_HOPS:
                        os.close(fd)
                        raise OSError(errno.ELOOP, "too many links")
                    if self._on_procfs(current):
                        os.close(fd)
                        if part in ("self", "thread-self"):
                            rest = [p for p in self._proc_self(n, "/proc/" + part).split("/") if p]
                            pending.extend(rest[1:][::-1])  # after "proc": from /proc
                            continue
                        fd = os.open(part, os.O_PATH | _O_CLOEXEC, dir_fd=current)
                    else:
                        target = os.readlink(part, dir_fd=current)
                        os.close(fd)
                        if target.startswith("/"):
                            target = self._proc_self(n, target)
                            os.close(current)
                            current = os.open("/", os.O_PATH | _O_CLOEXEC)
                        pending.extend([p for p in target.split("/") if p][::-1])
                        continue
                os.close(current)
                current = fd
            if not stat.S_ISDIR(os.fstat(current).st_mode):
                raise OSError(errno.ENOTDIR, "not a directory")
            return current
        except BaseException:
            os.close(current)
            raise

    def _on_procfs(self, fd: int) -> bool:
        import ctypes

        buffer = ctypes.create_string_buffer(120)  # struct statfs
        if self._libc.fstatfs(ctypes.c_int(fd), buffer) != 0:
            return False
        return int.from_bytes(buffer.raw[:8], "little") == _PROC_SUPER_MAGIC

    def persistent(self, path: str) -> bool:
        """Whether ``path`` lies in a grant the broker writes for the program."""
        return self._in(path, self._persistent)

    # -- for the other handlers of the same listener (sandbox/attr_broker.py) -------------

    @property
    def notifications(self) -> Notifications:
        return self._n

    @property
    def learning(self) -> bool:
        """Learn mode: writes the kernel will refuse are reported as ``outside``."""
        return self._scratch is not None

    def report(self, line: str) -> None:
        self._report(line)

    def refuse_write(self, path: str) -> Answer | None:
        """The answer for changing ``path`` when it lies in a persistent grant and the
        rules keep it (reported like every refusal); None when they do not."""
        if not self.persistent(path):
            return None
        reason = self._rules.refuse("write", path)
        return None if reason is None else self._refused("write", path, reason)

    def resolve(self, n: Notification, dirfd: int, raw: bytes, *, follow: bool) -> int:
        """An O_PATH descriptor of the object ``raw`` names for the program (the last
        link followed when ``follow``), found the way :meth:`locate` finds parents.
        Raises OSError as the kernel would answer (ENOENT, ENOTDIR, ELOOP ...)."""
        located = self._locate(n, dirfd, raw, follow=follow)
        if located is not None:
            try:
                return os.open(
                    located.name, os.O_PATH | _O_NOFOLLOW | _O_CLOEXEC, dir_fd=located.parent_fd
                )
            finally:
                located.close()
        path = os.fsdecode(raw)
        if not path:
            raise OSError(errno.ENOENT, "empty path")
        # "/", "." or "..": the path as a whole names a directory.
        start = self._start(n, dirfd) if not path.startswith("/") else None
        try:
            fd = self._open_parent(n, start, path)
        finally:
            if start is not None:
                os.close(start)
        if fd is None:
            raise OSError(errno.ENOENT, "not found")
        return fd

    def start_of(self, n: Notification, dirfd: int) -> int:
        """An O_PATH descriptor of the program's ``dirfd`` (its cwd for AT_FDCWD)."""
        return self._start(n, dirfd)

    def _leave(self, located: Located, access: str, call: str) -> Answer:
        """Let the kernel decide with the program's rights (see the module doc); in
        learn mode, note a write it will refuse."""
        if self._scratch is not None and not self._in(located.path, self._scratch):
            if access == "write" and not _exists(located):
                access = "entry"
            self._report(f"outside {access} {call} {located.path}")
        return CONTINUE

    def _refused(self, op: str, path: str, reason: str) -> Answer:
        self._report(f"refused {op} {path}: {reason}")
        return (-1, -errno.EACCES)

    def _umask(self, n: Notification) -> int:
        """The program's umask, which the broker applies to what it creates."""
        value = _status_field(n.tid, b"\nUmask:")
        return 0o022 if value is None else int(value, 8)

    # -- the calls ---------------------------------------------------------------------------

    def _open(self, n: Notification, dirfd: int, path_ptr: int, flags: int, mode: int) -> Answer:
        flags &= 0xFFFFFFFF
        creates = bool(flags & (_O_CREAT | _O_TMPFILE_BIT))
        follow = not flags & _O_NOFOLLOW and not (flags & _O_CREAT and flags & _O_EXCL)
        raw = self._n.read_path(n, path_ptr)
        if flags & _O_TMPFILE_BIT == _O_TMPFILE_BIT:
            return self._open_tmpfile(n, dirfd, raw, flags, mode)
        located = self.locate(n, dirfd, raw, follow=follow)
        if located is None:
            return CONTINUE
        try:
            if not self.persistent(located.path):
                return self._leave(located, "write", "open")
            exists = _exists(located)
            if exists and flags & _O_CREAT and flags & _O_EXCL:
                return (-1, -errno.EEXIST)
            op = "write" if exists else ("create" if creates else "write")
            reason = self._rules.refuse(op, located.path)
            if reason is not None:
                return self._refused(op, located.path, reason)
            if mode & 0o6000 and creates:
                return (-1, -errno.EPERM)
            if exists and _is_fifo(located):
                # Opening a FIFO waits for the other end: in a thread of its own, so
                # the broker goes on answering everyone else meanwhile.
                parent = os.dup(located.parent_fd)
                args = (n, parent, located.name, flags)
                # _thread, not threading: importing threading costs every fallback
                # run about 4 ms of start-up (this module is loaded before the fork).
                import _thread

                _thread.start_new_thread(self._open_fifo, args)
                return DEFERRED
            # The program's umask shapes only a file that is made now.
            old = os.umask(self._umask(n)) if creates and not exists else None
            try:
                fd = os.open(
                    located.name,
                    (flags & ~_O_CLOEXEC) | _O_NOFOLLOW | _O_CLOEXEC,
                    mode & 0o7777,
                    dir_fd=located.parent_fd,
                )
            except OSError as exc:
                return (-1, -(exc.errno or errno.EIO))
            finally:
                if old is not None:
                    os.umask(old)
            try:
                return self._n.install_fd(n, fd, cloexec=bool(flags & _O_CLOEXEC))
            finally:
                os.close(fd)
        finally:
            located.close()

    def _open_fifo(self, n: Notification, parent_fd: int, name: str, flags: int) -> None:
        try:
            try:
                opened = (flags & ~_O_CLOEXEC) | _O_NOFOLLOW | _O_CLOEXEC
                fd = os.open(name, opened, dir_fd=parent_fd)
            except OSError as exc:
                self._n.answer(n, (-1, -(exc.errno or errno.EIO)))
                return
            try:
                self._n.answer(n, self._n.install_fd(n, fd, cloexec=bool(flags & _O_CLOEXEC)))
            finally:
                os.close(fd)
        finally:
            os.close(parent_fd)

    def _open_tmpfile(
        self, n: Notification, dirfd: int, raw: bytes, flags: int, mode: int
    ) -> Answer:
        """O_TMPFILE: an unnamed file in a directory (naming it later is a linkat)."""
        located = self.locate(n, dirfd, raw.rstrip(b"/") + b"/x", follow=False)
        if located is None:
            return CONTINUE
        try:
            if not self.persistent(located.path):
                return self._leave(located, "entry", "open")
            old = os.umask(self._umask(n))
            try:
                opened = (flags & ~_O_CLOEXEC) | _O_CLOEXEC
                fd = os.open(".", opened, mode & 0o777, dir_fd=located.parent_fd)
            except OSError as exc:
                return (-1, -(exc.errno or errno.EIO))
            finally:
                os.umask(old)
            try:
                return self._n.install_fd(n, fd, cloexec=bool(flags & _O_CLOEXEC))
            finally:
                os.close(fd)
        finally:
            located.close()

    def _truncate(self, n: Notification) -> Answer:
        located = self.locate(n, _AT_FDCWD, self._n.read_path(n, n.args[0]), follow=True)
        if located is None:
            return CONTINUE
        try:
            if not self.persistent(located.path):
                return self._leave(located, "write", "truncate")
            reason = self._rules.refuse("write", located.path)
            if reason is not None:
                return self._refused("write", located.path, reason)
            flags = os.O_WRONLY | os.O_NONBLOCK | _O_NOFOLLOW | _O_CLOEXEC
            try:
                fd = os.open(located.name, flags, dir_fd=located.parent_fd)
                try:
                    os.ftruncate(fd, n.args[1])
                finally:
                    os.close(fd)
            except OSError as exc:
                return (-1, -(exc.errno or errno.EIO))
            return (0, 0)
        finally:
            located.close()

    def _make(
        self, n: Notification, dirfd: int, path_ptr: int, act: Callable[[Located], None]
    ) -> Answer:
        """Create one entry (directory, node, symlink) for the program."""
        located = self.locate(n, dirfd, self._n.read_path(n, path_ptr), follow=False)
        if located is None:
            return CONTINUE
        try:
            if not self.persistent(located.path):
                return self._leave(located, "entry", "mkdir")
            if _exists(located):
                return (-1, -errno.EEXIST)  # what the kernel says first, protected or not
            reason = self._rules.refuse("create", located.path)
            if reason is not None:
                return self._refused("create", located.path, reason)
            old = os.umask(self._umask(n))
            try:
                act(located)
            except OSError as exc:
                return (-1, -(exc.errno or errno.EIO))
            finally:
                os.umask(old)
            return (0, 0)
        finally:
            located.close()

    def _mkdir(self, n: Notification, dirfd: int, path_ptr: int, mode: int) -> Answer:
        return self._make(
            n, dirfd, path_ptr, lambda at: os.mkdir(at.name, mode & 0o7777, dir_fd=at.parent_fd)
        )

    def _mknod(self, n: Notification, dirfd: int, path_ptr: int, mode: int, dev: int) -> Answer:
        if mode & 0o6000:
            return (-1, -errno.EPERM)
        kind = stat.S_IFMT(mode) or stat.S_IFREG
        if kind not in (stat.S_IFREG, stat.S_IFIFO, stat.S_IFSOCK):
            return CONTINUE  # devices: the kernel refuses them (no CAP_MKNOD)
        return self._make(
            n,
            dirfd,
            path_ptr,
            lambda at: os.mknod(at.name, kind | (mode & 0o777), dev, dir_fd=at.parent_fd),
        )

    def _symlink(self, n: Notification, target_ptr: int, dirfd: int, path_ptr: int) -> Answer:
        target = os.fsdecode(self._n.read_path(n, target_ptr))
        return self._make(
            n, dirfd, path_ptr, lambda at: os.symlink(target, at.name, dir_fd=at.parent_fd)
        )

    def _remove(self, n: Notification, dirfd: int, path_ptr: int, *, directory: bool) -> Answer:
        located = self.locate(n, dirfd, self._n.read_path(n, path_ptr), follow=False)
        if located is None:
            return CONTINUE
        try:
            if not self.persistent(located.path):
                return self._leave(located, "entry", "rmdir" if directory else "unlink")
            reason = self._rules.refuse("remove", located.path)
            if reason is not None:
                return self._refused("remove", located.path, reason)
            try:
                if directory:
                    os.rmdir(located.name, dir_fd=located.parent_fd)
                else:
                    os.unlink(located.name, dir_fd=located.parent_fd)
            except OSError as exc:
                return (-1, -(exc.errno or errno.EIO))
            return (0, 0)
        finally:
            located.close()

    def _pair(
        self, n: Notification, old_dir: int, old_ptr: int, new_dir: int, new_ptr: int,
        *, follow_old: bool,
    ) -> tuple[Located, Located] | None:  # fmt: skip
        """Both ends of a link or rename, or None to let the kernel decide."""
        new = self.locate(n, new_dir, self._n.read_path(n, new_ptr), follow=False)
        if new is None:
            return None
        old = self.locate(n, old_dir, self._n.read_path(n, old_ptr), follow=follow_old)
        if old is None:
            new.close()
            return None
        return old, new

    def _link(
        self, n: Notification, old_dir: int, old_ptr: int, new_dir: int, new_ptr: int, flags: int
    ) -> Answer:
        flags &= 0xFFFFFFFF
        source = self._open_file_source(n, old_dir, old_ptr, flags)
        if source is not None:  # naming an open file (an O_TMPFILE, typically)
            new = self.locate(n, new_dir, self._n.read_path(n, new_ptr), follow=False)
            if new is None:
                return CONTINUE
            try:
                if not self.persistent(new.path):
                    return self._leave(new, "entry", "link")
                if _exists(new):
                    return (-1, -errno.EEXIST)
                reason = self._rules.refuse("create", new.path)
                if reason is not None:
                    return self._refused("create", new.path, reason)
                try:
                    os.link(source, new.name, dst_dir_fd=new.parent_fd, follow_symlinks=True)
                except OSError as exc:
                    return (-1, -(exc.errno or errno.EIO))
                return (0, 0)
            finally:
                new.close()
        pair = self._pair(
            n, old_dir, old_ptr, new_dir, new_ptr, follow_old=bool(flags & _AT_SYMLINK_FOLLOW)
        )
        if pair is None:
            return CONTINUE
        old, new = pair
        try:
            if not self.persistent(new.path):
                return self._leave(new, "entry", "link")
            if _exists(new):
                return (-1, -errno.EEXIST)
            reason = self._rules.refuse("create", new.path)
            if reason is not None:
                return self._refused("create", new.path, reason)
            try:
                os.link(
                    old.name, new.name, src_dir_fd=old.parent_fd, dst_dir_fd=new.parent_fd,
                    follow_symlinks=False,
                )  # fmt: skip
            except OSError as exc:
                return (-1, -(exc.errno or errno.EIO))
            return (0, 0)
        finally:
            old.close()
            new.close()

    def _open_file_source(
        self, n: Notification, old_dir: int, old_ptr: int, flags: int
    ) -> str | None:
        """``/proc/TGID/fd/N`` when a link names an open file rather than a path:
        ``linkat(fd, "", ..., AT_EMPTY_PATH)`` or ``linkat(AT_FDCWD, "/proc/self/fd/N",
        ..., AT_SYMLINK_FOLLOW)`` (how an O_TMPFILE gets its name)."""
        if flags & _AT_EMPTY_PATH and not self._n.read_path(n, old_ptr):
            return f"/proc/{self._tgid(n)}/fd/{_fd_arg(old_dir)}"
        if not flags & _AT_SYMLINK_FOLLOW:
            return None
        path = self._proc_self(n, os.fsdecode(self._n.read_path(n, old_ptr)))
        parts = path.split("/")
        if len(parts) == 5 and parts[1] == "proc" and parts[3] == "fd" and parts[4].isdigit():
            return path
        return None

    def _rename(
        self, n: Notification, old_dir: int, old_ptr: int, new_dir: int, new_ptr: int, flags: int
    ) -> Answer:
        flags &= 0xFFFFFFFF
        pair = self._pair(n, old_dir, old_ptr, new_dir, new_ptr, follow_old=False)
        if pair is None:
            return CONTINUE
        old, new = pair
        try:
            old_in, new_in = self.persistent(old.path), self.persistent(new.path)
            if not old_in and not new_in:
                self._leave(old, "entry", "rename")
                return self._leave(new, "entry", "rename")
            if new_in and not old_in and _is_dir(old):
                # A directory made in scratch space could hold anything (a .git); moved
                # in whole it would skip every check.  EXDEV: callers copy instead,
                # one checked file at a time.
                return (-1, -errno.EXDEV)
            for op, located in (("rename-from", old), ("rename-to", new)):
                if self.persistent(located.path):
                    reason = self._rules.refuse(op, located.path)
                    if reason is not None:
                        return self._refused(op, located.path, reason)
            if flags & 2:  # RENAME_EXCHANGE: the old name receives the new entry too
                reason = self._rules.refuse("rename-to", old.path) if old_in else None
                if reason is not None:
                    return self._refused("rename-to", old.path, reason)
            return self._renameat2(old, new, flags)
        finally:
            old.close()
            new.close()

    def _renameat2(self, old: Located, new: Located, flags: int) -> Answer:
        if not flags:
            try:
                os.rename(old.name, new.name, src_dir_fd=old.parent_fd, dst_dir_fd=new.parent_fd)
            except OSError as exc:
                return (-1, -(exc.errno or errno.EIO))
            return (0, 0)
        from safe_pip.sandbox.seccomp import syscall_number

        ctypes = self._ctypes
        result = self._libc.syscall(
            ctypes.c_long(syscall_number("renameat2")),
            ctypes.c_int(old.parent_fd),
            ctypes.c_char_p(os.fsencode(old.name)),
            ctypes.c_int(new.parent_fd),
            ctypes.c_char_p(os.fsencode(new.name)),
            ctypes.c_uint(flags),
        )
        if result < 0:
            return (-1, -ctypes.get_errno())
        return (0, 0)


def _status_field(tid: int, key: bytes) -> bytes | None:
    """One field of ``/proc/TID/status`` (``key`` with its leading newline), read in
    one go: the kernel renders the whole file at every read anyway."""
    fd = os.open(f"/proc/{tid}/status", os.O_RDONLY | os.O_CLOEXEC)
    try:
        data = os.read(fd, 4096)
    finally:
        os.close(fd)
    start = data.find(key)
    if start < 0:
        return None
    start += len(key)
    end = data.find(b"\n", start)
    return data[start:end].strip()


def _five(n: Notification) -> tuple[int, int, int, int, int]:
    a = n.args
    return a[0], a[1], a[2], a[3], a[4]


def _is_fifo(located: Located) -> bool:
    try:
        info = os.stat(located.name, dir_fd=located.parent_fd, follow_symlinks=False)
    except OSError:
        return False
    return stat.S_ISFIFO(info.st_mode)


def _exists(located: Located) -> bool:
    try:
        os.stat(located.name, dir_fd=located.parent_fd, follow_symlinks=False)
    except OSError:
        return False
    return True


def _is_dir(located: Located) -> bool:
    try:
        info = os.stat(located.name, dir_fd=located.parent_fd, follow_symlinks=False)
    except OSError:
        return False
    return stat.S_ISDIR(info.st_mode)
