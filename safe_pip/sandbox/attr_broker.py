"""What Landlock does not mediate, decided by the broker: fallback mode's supervised path.

Why
===

Without a mount namespace, Landlock (up to ABI 7) is the only wall around the host's
files, and it says nothing about a file's *metadata*: a program that may only read a
file -- or may not even read it -- can still ``chmod``, ``chown``, ``utime`` it, set
or remove its extended attributes, flip its inode flags (``chattr``), or watch it with
inotify and learn when the user opens ``~/.ssh/id_ed25519``.  Namespace mode never had
the problem: outside the grants nothing exists, inside read grants every mount is
read-only.  And a socketpair of datagram sockets could ``sendto`` any pathname socket
of the host (journald, ``NOTIFY_SOCKET``), passing descriptors out with it.

So in fallback mode the seccomp filter sends these calls to the broker (the program's
parent, see :mod:`safe_pip.sandbox.fs_broker`), which decides each one against the same
grants the namespace mode builds its mounts from (:class:`Areas`) and carries it out
itself:

* **mode, owner, times, extended attributes, inode flags**: allowed on what the
  program may write (its write grants and scratch space, never a denied path, never
  what :class:`~safe_pip.launcher.persistence.WriteRules` keeps in a persistent grant);
  refused with EROFS where it may only read (what a read-only bind mount answers) and
  EACCES elsewhere.  Set-id bits never get here: the filter refuses them first.
* **inotify watches**: allowed on what the program may read.
* **datagram socketpairs**: made as ``SOCK_SEQPACKET`` pairs, which keep message
  boundaries but ignore a destination address; the two descriptors are installed in
  the program and written into its array.

Race-free by construction: a path is resolved once, by the broker, to an ``O_PATH``
descriptor of the object (:meth:`FsBroker.resolve`); the decision is made on where
*that descriptor* is (``/proc/self/fd/N``), and the change is made through it.  A call
on a descriptor (``fchmod``, ``fsetxattr``, an ioctl) works on a copy of the program's
own descriptor (``pidfd_getfd``): the same open file, checked where it lives.  Nothing
is ever answered with ``CONTINUE``.

Cost: a notification round trip and a few system calls per call (tens of
microseconds); these calls are rare next to ``open`` and ``read``, which never stop.
"""

from __future__ import annotations

import ctypes
import errno
import os

from safe_pip.sandbox.notify import CONTINUE, Answer, Notification

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from safe_pip.sandbox.fs_broker import FsBroker

_AT_FDCWD = -100
_AT_SYMLINK_NOFOLLOW = 0x100
_AT_EMPTY_PATH = 0x1000
_IN_DONT_FOLLOW = 0x02000000
_XATTR_NAME_MAX = 255
_XATTR_SIZE_MAX = 65536
_AF_UNIX = 1
_SOCK_SEQPACKET = 5
_SOCK_NONBLOCK = 0o4000
_SOCK_CLOEXEC = 0o2000000
#: ioctl number -> size of the argument it reads (FS_IOC_SETFLAGS takes an int,
#: FS_IOC_FSSETXATTR a struct fsxattr, FS_IOC_SETVERSION an int).
_INODE_IOCTLS = {0x40086602: 4, 0x401C5820: 28, 0x40087602: 4}
_TIMESPEC_PAIR = 32  # struct timespec[2] on 64-bit architectures
_TIMEVAL_PAIR = 32  # struct timeval[2]
_UTIMBUF = 16  # struct utimbuf {time_t actime, modtime}


def _fd_arg(value: int) -> int:
    """A descriptor argument: the low 32 bits, signed (AT_FDCWD is -100)."""
    value &= 0xFFFFFFFF
    return value - (1 << 32) if value >= 1 << 31 else value


def _id_arg(value: int) -> int:
    """A uid/gid argument: (uid_t)-1 means "leave it"."""
    value &= 0xFFFFFFFF
    return -1 if value == 0xFFFFFFFF else value


class _Roots:
    """A set of directory trees: is a path in one of them?  One set lookup per path
    component, not one comparison per root: a policy's grants and base's deny list
    are a few hundred paths, and every supervised call asks."""

    __slots__ = ("_roots",)

    def __init__(self, roots: Iterable[str]) -> None:
        self._roots = frozenset(os.path.normpath(os.path.realpath(p)) for p in roots)

    def __contains__(self, path: object) -> bool:
        if not isinstance(path, str):
            return False
        roots = self._roots
        while True:
            if path in roots:
                return True
            if path in ("/", ""):
                return False
            path = os.path.dirname(path)


class Areas:
    """Where the program may read and write: the same grants its Landlock domain and
    namespace mode's mounts are built from, as real paths."""

    __slots__ = ("_deny", "_read", "_write")

    def __init__(self, read: Iterable[str], write: Iterable[str], deny: Iterable[str]) -> None:
        write = tuple(write)
        self._write = _Roots(write)
        self._read = _Roots((*read, *write))
        self._deny = _Roots(deny)

    def denied(self, path: str) -> bool:
        return path in self._deny

    def writable(self, path: str) -> bool:
        return path in self._write and not self.denied(path)

    def readable(self, path: str) -> bool:
        return path in self._read and not self.denied(path)


class AttrBroker:
    """Handlers for the metadata calls, inotify watches and datagram socketpairs of one
    sandbox (see the module doc); they share the file broker's listener."""

    def __init__(self, broker: FsBroker, areas: Areas) -> None:
        self._broker = broker
        self._n = broker.notifications
        self._areas = areas
        self._libc = ctypes.CDLL(None, use_errno=True)

    def handlers(self) -> dict[int, Callable[[Notification], Answer]]:
        """Syscall number -> handler, for :meth:`Notifications.serve`."""
        from safe_pip.sandbox.seccomp import syscall_number

        cwd = _AT_FDCWD
        table: dict[str, Callable[[Notification], Answer]] = {
            "chmod": lambda n: self._chmod(n, cwd, n.args[0], n.args[1], 0),
            "fchmodat": lambda n: self._chmod(n, n.args[0], n.args[1], n.args[2], 0),
            "fchmodat2": lambda n: self._chmod(n, n.args[0], n.args[1], n.args[2], n.args[3]),
            "fchmod": lambda n: self._on_fd(n, n.args[0], "fchmod", _mode_act(n.args[1])),
            "chown": lambda n: self._chown(n, cwd, n.args[0], n.args[1], n.args[2], 0),
            "lchown": lambda n: self._chown(
                n, cwd, n.args[0], n.args[1], n.args[2], _AT_SYMLINK_NOFOLLOW
            ),
            "fchownat": lambda n: self._chown(n, *n.args[:5]),
            "fchown": lambda n: self._on_fd(
                n, n.args[0], "fchown", _owner_act(n.args[1], n.args[2])
            ),
            "utime": lambda n: self._old_utime(n, cwd, n.args[0], n.args[1], "utime"),
            "utimes": lambda n: self._old_utime(n, cwd, n.args[0], n.args[1], "utimes"),
            "futimesat": lambda n: self._old_utime(n, n.args[0], n.args[1], n.args[2], "utimes"),
            "utimensat": self._utimensat,
            "setxattr": lambda n: self._setxattr(n, cwd, n.args[0], n.args[1:5], 0),
            "lsetxattr": lambda n: self._setxattr(
                n, cwd, n.args[0], n.args[1:5], _AT_SYMLINK_NOFOLLOW
            ),
            "fsetxattr": lambda n: self._setxattr(n, n.args[0], None, n.args[1:5], 0),
            "setxattrat": self._setxattrat,
            "removexattr": lambda n: self._removexattr(n, cwd, n.args[0], n.args[1], 0),
            "lremovexattr": lambda n: self._removexattr(
                n, cwd, n.args[0], n.args[1], _AT_SYMLINK_NOFOLLOW
            ),
            "fremovexattr": lambda n: self._removexattr(n, n.args[0], None, n.args[1], 0),
            "removexattrat": lambda n: self._removexattr(
                n, n.args[0], n.args[1], n.args[3], n.args[2]
            ),
            "inotify_add_watch": self._inotify_add_watch,
            "ioctl": self._ioctl,
            "socketpair": self._socketpair,
            "setpriority": lambda n: self._own_task(n, n.args[1]),
            "ioprio_set": lambda n: self._own_task(n, n.args[1]),
            "sched_setaffinity": lambda n: self._own_task(n, n.args[0]),
            "sched_setscheduler": lambda n: self._own_task(n, n.args[0]),
            "sched_setparam": lambda n: self._own_task(n, n.args[0]),
            "sched_setattr": lambda n: self._own_task(n, n.args[0]),
            "prlimit64": lambda n: self._own_task(n, n.args[0]),
        }
        found: dict[int, Callable[[Notification], Answer]] = {}
        for name, handler in table.items():
            try:
                found[syscall_number(name)] = handler
            except KeyError:  # not on this architecture (aarch64 has no chmod, utime ...)
                continue
        return found

    # -- where an object is, and whether it may change ------------------------------------

    def _object(self, n: Notification, dirfd: int, path_ptr: int, flags: int) -> int:
        """An O_PATH descriptor of what a path call names: the last link followed unless
        ``AT_SYMLINK_NOFOLLOW``; an empty path names ``dirfd`` with ``AT_EMPTY_PATH``."""
        raw = self._n.read_path(n, path_ptr)
        if not raw:
            if not flags & _AT_EMPTY_PATH:
                raise OSError(errno.ENOENT, "empty path")
            return self._broker.start_of(n, dirfd)
        follow = not flags & _AT_SYMLINK_NOFOLLOW
        return self._broker.resolve(n, dirfd, raw, follow=follow)

    def _judge(self, fd: int, call: str, *, write: bool = True) -> Answer | None:
        """None when the program may change (``write``) or watch the object behind
        ``fd``; otherwise the answer that refuses it."""
        path = os.readlink(f"/proc/self/fd/{fd}")
        if not path.startswith("/"):
            return None  # a pipe, a socket, an anonymous inode: nothing on disk
        if path.endswith(" (deleted)"):
            if os.fstat(fd).st_nlink == 0:
                return None  # nothing names it any more (a memfd, an unlinked temp file)
            path = path[: -len(" (deleted)")]
        areas = self._areas
        if areas.denied(path):
            return self._outside(call, path, errno.EACCES)
        if not write:
            return None if areas.readable(path) else self._outside(call, path, errno.EACCES)
        kept = self._broker.refuse_write(path)
        if kept is not None:
            return kept
        if areas.writable(path):
            return None
        return self._outside(call, path, errno.EROFS if areas.readable(path) else errno.EACCES)

    def _outside(self, call: str, path: str, error: int) -> Answer:
        if self._broker.learning:
            self._broker.report(f"outside write {call} {path}")
        return (-1, -error)

    def _on_path(
        self,
        n: Notification,
        dirfd: int,
        path_ptr: int,
        flags: int,
        call: str,
        act: Callable[[str | int], None],
    ) -> Answer:
        """Resolve, judge, then ``act`` on ``/proc/self/fd/N``: the magic link lands on
        the object itself (a symlink stays a symlink), never on a name that could
        have been swapped since the check."""
        try:
            fd = self._object(n, _fd_arg(dirfd), path_ptr, flags & 0xFFFFFFFF)
        except OSError as exc:
            return (-1, -(exc.errno or errno.ENOENT))
        try:
            refused = self._judge(fd, call)
            if refused is not None:
                return refused
            act(f"/proc/self/fd/{fd}")
            return (0, 0)
        except OSError as exc:
            return (-1, -(exc.errno or errno.EIO))
        finally:
            os.close(fd)

    def _on_fd(
        self, n: Notification, target_fd: int, call: str, act: Callable[[str | int], None]
    ) -> Answer:
        """Judge and ``act`` on a copy of the program's own descriptor: the same open
        file, so what is checked is what changes (and an O_PATH descriptor fails the
        way it fails for the program)."""
        try:
            fd = self._n.take_fd(n, target_fd)
        except OSError as exc:
            return (-1, -(exc.errno or errno.EBADF))
        try:
            refused = self._judge(fd, call)
            if refused is not None:
                return refused
            act(fd)
            return (0, 0)
        except OSError as exc:
            return (-1, -(exc.errno or errno.EIO))
        finally:
            os.close(fd)

    # -- the calls ---------------------------------------------------------------------------

    def _chmod(self, n: Notification, dirfd: int, path_ptr: int, mode: int, flags: int) -> Answer:
        return self._on_path(n, dirfd, path_ptr, flags, "chmod", _mode_act(mode))

    def _chown(
        self, n: Notification, dirfd: int, path_ptr: int, uid: int, gid: int, flags: int
    ) -> Answer:
        return self._on_path(n, dirfd, path_ptr, flags, "chown", _owner_act(uid, gid))

    def _old_utime(
        self, n: Notification, dirfd: int, path_ptr: int, times_ptr: int, call: str
    ) -> Answer:
        """utime(2), utimes(2), futimesat(2): their times become utimensat's."""
        try:
            times = self._old_times(n, times_ptr, call)
        except OSError as exc:
            return (-1, -(exc.errno or errno.EFAULT))
        return self._on_path(n, dirfd, path_ptr, 0, call, self._times_act(times))

    def _utimensat(self, n: Notification) -> Answer:
        dirfd, path_ptr, times_ptr, flags = n.args[0], n.args[1], n.args[2], n.args[3]
        try:
            times = None
            if times_ptr:
                times = self._n.read(n, times_ptr, _TIMESPEC_PAIR)
                if len(times) < _TIMESPEC_PAIR:
                    raise OSError(errno.EFAULT, "bad address")
        except OSError as exc:
            return (-1, -(exc.errno or errno.EFAULT))
        if path_ptr == 0:  # futimens(): the descriptor itself
            if _fd_arg(dirfd) == _AT_FDCWD:
                return (-1, -errno.EFAULT)
            return self._on_fd(n, dirfd, "utimensat", self._times_act(times))
        return self._on_path(n, dirfd, path_ptr, flags, "utimensat", self._times_act(times))

    def _times_act(self, times: bytes | None) -> Callable[[str | int], None]:
        def act(target: str | int) -> None:
            buffer = None if times is None else ctypes.create_string_buffer(times, len(times))
            if isinstance(target, int):  # glibc's utimensat refuses a NULL path
                result = self._libc.futimens(ctypes.c_int(target), buffer)
            else:
                path = ctypes.c_char_p(os.fsencode(target))
                result = self._libc.utimensat(ctypes.c_int(_AT_FDCWD), path, buffer, 0)
            if result != 0:
                err = ctypes.get_errno()
                raise OSError(err, os.strerror(err))

        return act

    def _old_times(self, n: Notification, pointer: int, call: str) -> bytes | None:
        """utime's ``struct utimbuf`` or utimes' ``struct timeval[2]`` as utimensat's
        ``struct timespec[2]``; None (now) for a NULL pointer."""
        if pointer == 0:
            return None
        size = _UTIMBUF if call == "utime" else _TIMEVAL_PAIR
        raw = self._n.read(n, pointer, size)
        if len(raw) < size:
            raise OSError(errno.EFAULT, "bad address")
        words = [int.from_bytes(raw[i : i + 8], "little", signed=True) for i in range(0, size, 8)]
        if call == "utime":
            pairs = [(words[0], 0), (words[1], 0)]
        else:
            if not all(0 <= usec < 1_000_000 for usec in (words[1], words[3])):
                raise OSError(errno.EINVAL, "bad microseconds")
            pairs = [(words[0], words[1] * 1000), (words[2], words[3] * 1000)]
        return b"".join(
            sec.to_bytes(8, "little", signed=True) + nsec.to_bytes(8, "little")
            for sec, nsec in pairs
        )

    def _xattr_name(self, n: Notification, pointer: int) -> str:
        name = self._n.read_path(n, pointer)
        if not name or len(name) > _XATTR_NAME_MAX:
            raise OSError(errno.ERANGE, "bad attribute name")
        return os.fsdecode(name)

    def _setxattr(
        self,
        n: Notification,
        dirfd_or_fd: int,
        path_ptr: int | None,
        rest: tuple[int, ...],
        flags: int,
    ) -> Answer:
        """setxattr/lsetxattr (a path) and fsetxattr (``path_ptr`` None: a descriptor);
        ``rest`` is (name, value, size, flags)."""
        name_ptr, value_ptr, size, xattr_flags = rest[0], rest[1], rest[2], rest[3]
        try:
            name = self._xattr_name(n, name_ptr)
            value = self._xattr_value(n, value_ptr, size)
        except OSError as exc:
            return (-1, -(exc.errno or errno.EFAULT))
        xattr_flags &= 0xFFFFFFFF

        def act(target: str | int) -> None:
            os.setxattr(target, name, value, xattr_flags)

        if path_ptr is None:
            return self._on_fd(n, dirfd_or_fd, "fsetxattr", act)
        return self._on_path(n, dirfd_or_fd, path_ptr, flags, "setxattr", act)

    def _setxattrat(self, n: Notification) -> Answer:
        """setxattrat(dirfd, path, at_flags, name, struct xattr_args *, size) (6.13)."""
        dirfd, path_ptr, at_flags, name_ptr, args_ptr, args_size = n.args
        if args_size < 16:
            return (-1, -errno.EINVAL)
        try:
            raw = self._n.read(n, args_ptr, 16)
            if len(raw) < 16:
                raise OSError(errno.EFAULT, "bad address")
        except OSError as exc:
            return (-1, -(exc.errno or errno.EFAULT))
        value_ptr = int.from_bytes(raw[:8], "little")
        size = int.from_bytes(raw[8:12], "little")
        xattr_flags = int.from_bytes(raw[12:16], "little")
        return self._setxattr(
            n, dirfd, path_ptr, (name_ptr, value_ptr, size, xattr_flags), at_flags
        )

    def _xattr_value(self, n: Notification, pointer: int, size: int) -> bytes:
        if size > _XATTR_SIZE_MAX:
            raise OSError(errno.E2BIG, "attribute value too large")
        if size == 0:
            return b""
        value = self._n.read(n, pointer, size)
        if len(value) < size:
            raise OSError(errno.EFAULT, "bad address")
        return value

    def _removexattr(
        self, n: Notification, dirfd_or_fd: int, path_ptr: int | None, name_ptr: int, flags: int
    ) -> Answer:
        try:
            name = self._xattr_name(n, name_ptr)
        except OSError as exc:
            return (-1, -(exc.errno or errno.EFAULT))

        def act(target: str | int) -> None:
            os.removexattr(target, name)

        if path_ptr is None:
            return self._on_fd(n, dirfd_or_fd, "fremovexattr", act)
        return self._on_path(n, dirfd_or_fd, path_ptr, flags, "removexattr", act)

    def _ioctl(self, n: Notification) -> Answer:
        """The inode-attribute ioctls (chattr); the filter sends no other."""
        target_fd, command, arg = n.args[0], n.args[1] & 0xFFFFFFFF, n.args[2]
        size = _INODE_IOCTLS.get(command)
        if size is None:
            return (-1, -errno.EPERM)
        try:
            data = self._n.read(n, arg, size)
            if len(data) < size:
                raise OSError(errno.EFAULT, "bad address")
        except OSError as exc:
            return (-1, -(exc.errno or errno.EFAULT))

        def act(target: str | int) -> None:
            assert isinstance(target, int)
            buffer = ctypes.create_string_buffer(data, size)
            if self._libc.ioctl(ctypes.c_int(target), ctypes.c_ulong(command), buffer) != 0:
                err = ctypes.get_errno()
                raise OSError(err, os.strerror(err))

        return self._on_fd(n, target_fd, "chattr", act)

    def _inotify_add_watch(self, n: Notification) -> Answer:
        """A watch only on what the program may read; the broker adds it to a copy of
        the program's inotify descriptor (the same instance) and answers its number."""
        inotify_fd, path_ptr, mask = n.args[0], n.args[1], n.args[2] & 0xFFFFFFFF
        flags = _AT_SYMLINK_NOFOLLOW if mask & _IN_DONT_FOLLOW else 0
        try:
            instance = self._n.take_fd(n, inotify_fd)
        except OSError as exc:
            return (-1, -(exc.errno or errno.EBADF))
        try:
            try:
                fd = self._object(n, _AT_FDCWD, path_ptr, flags)
            except OSError as exc:
                return (-1, -(exc.errno or errno.ENOENT))
            try:
                refused = self._judge(fd, "inotify", write=False)
                if refused is not None:
                    return refused
                # Through the magic link the watch lands on the object (a symlink itself
                # under IN_DONT_FOLLOW); the flag must not stop at the link.
                watch = self._libc.inotify_add_watch(
                    ctypes.c_int(instance),
                    ctypes.c_char_p(f"/proc/self/fd/{fd}".encode()),
                    ctypes.c_uint32(mask & ~_IN_DONT_FOLLOW),
                )
                if watch < 0:
                    return (-1, -ctypes.get_errno())
                return (int(watch), 0)
            finally:
                os.close(fd)
        finally:
            os.close(instance)

    def _own_task(self, n: Notification, pid_arg: int) -> Answer:
        """A priority, scheduling or limit change aimed at another pid: only a process
        of the sandbox (a descendant of the broker) may be its target; any other
        gets ESRCH, as in namespace mode, where it does not exist.  The arguments are
        registers, copied at the call, so letting the kernel go on (``CONTINUE``)
        carries out exactly what was checked; the pid could only name another process
        if it were freed and handed out again in between, which takes wrapping the
        whole pid space."""
        pid = _fd_arg(pid_arg)  # pid_t: the low 32 bits, signed
        if pid > 0 and self._in_sandbox(pid):
            return CONTINUE
        return (-1, -errno.ESRCH)

    def _in_sandbox(self, pid: int) -> bool:
        me = os.getpid()
        for _hop in range(128):
            try:
                with open(f"/proc/{pid}/status", "rb") as status:
                    fields = dict(
                        line.split(b":", 1) for line in status.read().splitlines() if b":" in line
                    )
            except OSError:
                return False
            tgid = int(fields.get(b"Tgid", b"0"))
            if tgid == me:
                return False  # the broker itself is not the program's to change
            parent = int(fields.get(b"PPid", b"0"))
            if parent == me:
                return True
            if parent <= 1:
                return False
            pid = parent
        return False

    def _socketpair(self, n: Notification) -> Answer:
        """socketpair(AF_UNIX, SOCK_DGRAM, ...) as a SOCK_SEQPACKET pair: connected,
        message boundaries kept, and a destination address is ignored, so no datagram
        (and no descriptor in one) can be sent to a socket outside the sandbox."""
        _family, kind, _protocol, array = n.args[:4]
        kind &= 0xFFFFFFFF
        if kind & ~(_SOCK_NONBLOCK | _SOCK_CLOEXEC | 0xF):
            return (-1, -errno.EINVAL)
        import _socket

        seqpacket = _SOCK_SEQPACKET | (kind & _SOCK_NONBLOCK) | _SOCK_CLOEXEC
        try:
            pair = _socket.socketpair(_AF_UNIX, seqpacket)
        except OSError as exc:
            return (-1, -(exc.errno or errno.ENFILE))
        try:
            numbers = []
            for end in pair:
                value, error = self._n.install_fd(
                    n, end.fileno(), cloexec=bool(kind & _SOCK_CLOEXEC)
                )
                if error:
                    return (value, error)
                numbers.append(value)
            try:
                self._n.write(n, array, b"".join(v.to_bytes(4, "little") for v in numbers))
            except OSError as exc:
                return (-1, -(exc.errno or errno.EFAULT))
            return (0, 0)
        finally:
            for end in pair:
                end.close()


def _mode_act(mode: int) -> Callable[[str | int], None]:
    mode &= 0o7777

    def act(target: str | int) -> None:
        if mode & 0o6000:
            raise OSError(errno.EPERM, "set-id bits")  # the filter refuses them first
        if isinstance(target, int):
            os.fchmod(target, mode)
        else:
            os.chmod(target, mode)

    return act


def _owner_act(uid: int, gid: int) -> Callable[[str | int], None]:
    owner, group = _id_arg(uid), _id_arg(gid)

    def act(target: str | int) -> None:
        if isinstance(target, int):
            os.fchown(target, owner, group)
        else:
            os.chown(target, owner, group)

    return act
