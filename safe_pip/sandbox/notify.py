"""seccomp user notification, the supervisor's side: receive, inspect, answer.

A filter rule returning ``SECCOMP_RET_USER_NOTIF`` stops the calling thread and
queues the call on a *listener* fd.  Whoever holds the listener decides: it answers
with a return value or an errno, performs the call itself on the caller's behalf
(and, for a call that opens something, installs the resulting fd in the caller with
``SECCOMP_IOCTL_NOTIF_ADDFD``), or lets the kernel run it as is
(``SECCOMP_USER_NOTIF_FLAG_CONTINUE``).

The time-of-check/time-of-use rule everything here follows: **an answer never rests
on memory the caller can still change.**  Arguments that point into the caller's
memory (paths, socket addresses) are copied once; a decision made on the copy is
carried out on the copy, by the decider itself.  CONTINUE re-reads the caller's
memory in the kernel, so it is used only where the decision grants nothing beyond
what the caller's own kernel-enforced rights (Landlock, mounts) already allow: a
swapped argument then meets those rights, not ours.

:class:`Notifications` wraps one listener: a loop that dispatches each notification
by syscall number to a handler, and the four ioctls (``RECV``, ``SEND``, ``ID_VALID``,
``ADDFD``).  Handlers: :class:`safe_pip.sandbox.connect_guard.ConnectGuard` (fallback
mode's network), :class:`safe_pip.sandbox.fs_broker.FsBroker` (writes to persistent
grants).  ``ctypes`` is imported here, so this module is loaded after the fork only.
"""

from __future__ import annotations

import ctypes
import os
import struct

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

# linux/seccomp.h: struct seccomp_notif {u64 id; u32 pid; u32 flags; struct seccomp_data}
# with seccomp_data {int nr; u32 arch; u64 ip; u64 args[6]}; seccomp_notif_resp
# {u64 id; s64 val; s32 error; u32 flags}; seccomp_notif_addfd {u64 id; u32 flags;
# u32 srcfd; u32 newfd; u32 newfd_flags}.  The ioctls are _IOWR/_IOW('!', n, size).
NOTIF = struct.Struct("=QIIiIQ6Q")
_RESP = struct.Struct("=QqiI")
_ID = struct.Struct("=Q")
_ADDFD = struct.Struct("=QIIII")


def _ioc(direction: int, nr: int, size: int) -> int:
    return (direction << 30) | (size << 16) | (ord("!") << 8) | nr


NOTIF_RECV = _ioc(3, 0, NOTIF.size)
NOTIF_SEND = _ioc(3, 1, _RESP.size)
NOTIF_ID_VALID = _ioc(1, 2, _ID.size)
NOTIF_ADDFD = _ioc(1, 3, _ADDFD.size)
NOTIF_SET_FLAGS = _ioc(1, 4, 8)

_FLAG_CONTINUE = 1
# SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP (Linux 6.6): the kernel switches straight to the
# woken thread instead of queuing it -- a notification round trip gets several times
# cheaper, which matters when every file creation is one.
_FD_SYNC_WAKE_UP = 1
_EINTR, _ENOENT, _EINVAL, _EACCES = 4, 2, 22, 13
O_CLOEXEC = 0o2000000
_SYS_PROCESS_VM_READV = {"x86_64": 310, "aarch64": 270}.get(os.uname().machine)
_SYS_PROCESS_VM_WRITEV = {"x86_64": 311, "aarch64": 271}.get(os.uname().machine)
_PIDFD_GETFD = 438  # the unified syscall table: x86_64 and aarch64 alike
_PIDFD_THREAD = os.O_EXCL  # pidfd_open() flag for a non-leader thread (6.9+)


class _IoVec(ctypes.Structure):
    _fields_ = (("base", ctypes.c_void_p), ("len", ctypes.c_size_t))


class Notification:
    """One stopped call: its id, the calling thread, the syscall and its arguments."""

    __slots__ = ("args", "id", "nr", "tid")

    def __init__(self, notif_id: int, tid: int, nr: int, args: tuple[int, ...]) -> None:
        self.id = notif_id
        self.tid = tid
        self.nr = nr
        self.args = args


#: What a handler returns: ``(value, -errno)`` to answer, or :data:`CONTINUE`.
Answer = tuple[int, int]
CONTINUE: Answer = (0, 1 << 30)  # a sentinel no errno can equal
#: The handler will answer later, from another thread (an open that may block).
DEFERRED: Answer = (0, 1 << 29)


class Notifications:
    """The listener of one sandbox and the loop that answers it."""

    def __init__(self, listener_fd: int) -> None:
        self.fd = listener_fd
        self._libc = ctypes.CDLL(None, use_errno=True)
        self._libc.syscall.restype = ctypes.c_long
        self._buffer = ctypes.create_string_buffer(NOTIF.size)
        self._recv_request = ctypes.c_ulong(NOTIF_RECV)
        self._iovecs = (_IoVec(), _IoVec())
        self._scratch = ctypes.create_string_buffer(4096)
        self._pidfds: dict[int, int] = {}
        # Best effort: before Linux 6.6 this answers EINVAL and a round trip is slower.
        # The flags travel by value, not through a pointer.
        self.sync_wake_up = (
            self._libc.ioctl(
                self.fd, ctypes.c_ulong(NOTIF_SET_FLAGS), ctypes.c_ulong(_FD_SYNC_WAKE_UP)
            )
            == 0
        )

    # -- the loop ------------------------------------------------------------------

    def serve(
        self,
        handlers: Mapping[int, Callable[[Notification], Answer]],
        default: Callable[[Notification], Answer] | None = None,
    ) -> None:
        """Answer notifications until the listener fails (it is closed, or no process
        can use it any more).  Run it in a daemon thread: the process that owns the
        sandbox exits when the program does, and the thread with it.

        A blocking ``RECV`` and nothing else: waiting in ``poll`` first would cost the
        kernel's synchronous wake-up (about 40 µs a call here).  A handler that raises
        is answered with EACCES: failing closed.  ``default`` takes numbers with no
        handler (none: EACCES).
        """
        while True:
            try:
                notification = self.receive()
            except OSError:
                return
            if notification is None:
                continue
            handler = handlers.get(notification.nr, default)
            try:
                answer = handler(notification) if handler is not None else (-1, -_EACCES)
            except Exception:
                answer = (-1, -_EACCES)
            if answer is not DEFERRED:
                self.answer(notification, answer)

    def receive(self) -> Notification | None:
        """The next notification, or None when it vanished (its caller was killed)."""
        ctypes.memset(self._buffer, 0, NOTIF.size)  # RECV insists on a zeroed struct
        if self._libc.ioctl(self.fd, self._recv_request, self._buffer) < 0:
            err = ctypes.get_errno()
            if err == _ENOENT and self._orphaned():
                raise OSError(err, "no process uses the filter any more")
            if err in (_EINTR, _ENOENT):
                return None
            raise OSError(err, os.strerror(err))
        notif_id, tid, _flags, nr, _arch, _ip, *args = NOTIF.unpack(self._buffer.raw)
        return Notification(notif_id, tid, nr, tuple(args))

    def _orphaned(self) -> bool:
        """Whether no process can use the filter any more.  Since Linux 6.6 ``RECV``
        then fails at once with ENOENT instead of waiting, so the loop must stop."""
        import select

        poller = select.poll()
        poller.register(self.fd, select.POLLIN)
        return any(mask & select.POLLHUP for _, mask in poller.poll(0))

    # -- answers -----------------------------------------------------------------------

    def answer(self, notification: Notification, answer: Answer) -> None:
        value, error = answer
        flags = 0
        if answer is CONTINUE:
            value, error, flags = 0, 0, _FLAG_CONTINUE
        response = ctypes.create_string_buffer(
            _RESP.pack(notification.id, value, error, flags), _RESP.size
        )
        self._libc.ioctl(self.fd, ctypes.c_ulong(NOTIF_SEND), response)  # ENOENT: it died

    def install_fd(self, notification: Notification, fd: int, *, cloexec: bool) -> Answer:
        """Put a copy of our ``fd`` into the caller; answer the call with its number.

        The caller gets its lowest free descriptor, as from any ``open``.  ADDFD, then
        an ordinary answer: ``SECCOMP_ADDFD_FLAG_SEND`` would do both in one call, but
        here it costs about 70 µs a call more (the synchronous wake-up of
        ``SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP`` does not apply to it).  Should the caller
        die in between, the descriptor goes with it.
        """
        newfd_flags = O_CLOEXEC if cloexec else 0
        result = self._addfd(notification.id, fd, 0, newfd_flags)
        if result < 0:
            return (-1, -ctypes.get_errno())
        return (result, 0)

    def _addfd(self, notif_id: int, fd: int, flags: int, newfd_flags: int) -> int:
        request = ctypes.create_string_buffer(
            _ADDFD.pack(notif_id, flags, fd, 0, newfd_flags), _ADDFD.size
        )
        return int(self._libc.ioctl(self.fd, ctypes.c_ulong(NOTIF_ADDFD), request))

    def take_fd(self, notification: Notification, fd: int) -> int:
        """A copy of the caller's descriptor ``fd`` (``pidfd_getfd``), checked with
        ``ID_VALID`` afterwards so a recycled tid cannot hand us another process's
        file.  Raises OSError (EBADF for a descriptor the caller does not have)."""
        pidfd = self._pidfd(notification.tid)
        dup = int(self._libc.syscall(ctypes.c_long(_PIDFD_GETFD), pidfd, fd & 0xFFFFFFFF, 0))
        if dup < 0:
            err = ctypes.get_errno()
            self._forget_pidfd(notification.tid)  # it may name a thread that is gone
            raise OSError(err, os.strerror(err))
        if not self.still_valid(notification):
            os.close(dup)
            raise ProcessLookupError(notification.tid)
        return dup

    def _pidfd(self, tid: int) -> int:
        """A pidfd for ``tid``, kept for the next call of the same thread: a busy
        program makes thousands of calls from a few threads.  Safe to keep: a pidfd
        names one process, and a tid is not handed out again while that process
        lives; one whose process is gone fails (ESRCH) and is opened afresh."""
        pidfd = self._pidfds.get(tid)
        if pidfd is None:
            if len(self._pidfds) >= 64:
                for old in list(self._pidfds)[:32]:
                    self._forget_pidfd(old)
            pidfd = self._pidfds[tid] = pidfd_open(tid)
        return pidfd

    def _forget_pidfd(self, tid: int) -> None:
        pidfd = self._pidfds.pop(tid, None)
        if pidfd is not None:
            os.close(pidfd)

    def still_valid(self, notification: Notification) -> bool:
        """Whether the caller is still stopped in this call (so its tid is still it)."""
        value = ctypes.c_uint64(notification.id)
        request = ctypes.c_ulong(NOTIF_ID_VALID)
        return bool(self._libc.ioctl(self.fd, request, ctypes.byref(value)) == 0)

    # -- the caller's memory -------------------------------------------------------------

    def read(self, notification: Notification, address: int, size: int) -> bytes:
        """Up to ``size`` bytes at ``address`` in the calling thread (fewer at the end
        of a mapping).  Checked with ``ID_VALID`` afterwards, so a recycled tid cannot
        make us read another process's memory and act on it."""
        if size > len(self._scratch):
            self._scratch = ctypes.create_string_buffer(size)
        got = -1
        if _SYS_PROCESS_VM_READV is not None:
            local, remote = self._iovecs
            local.base, local.len = ctypes.addressof(self._scratch), size
            remote.base, remote.len = address, size
            got = int(
                self._libc.syscall(
                    ctypes.c_long(_SYS_PROCESS_VM_READV),
                    ctypes.c_long(notification.tid),
                    ctypes.byref(local),
                    ctypes.c_ulong(1),
                    ctypes.byref(remote),
                    ctypes.c_ulong(1),
                    ctypes.c_ulong(0),
                )
            )
        if got >= 0:
            data = self._scratch.raw[:got]
        else:  # a read that crosses into an unmapped page, or no process_vm_readv
            mem = os.open(f"/proc/{notification.tid}/mem", os.O_RDONLY | os.O_CLOEXEC)
            try:
                data = _pread_partial(mem, size, address)
            finally:
                os.close(mem)
        if not self.still_valid(notification):
            raise ProcessLookupError(notification.tid)
        return data

    def write(self, notification: Notification, address: int, data: bytes) -> None:
        """Write ``data`` at ``address`` in the calling thread's memory (an output
        argument of a call the broker performed, such as socketpair's array).
        Raises OSError (EFAULT) when it cannot be written whole."""
        if _SYS_PROCESS_VM_WRITEV is None:
            raise OSError(38, "process_vm_writev is not available")
        if not self.still_valid(notification):
            raise ProcessLookupError(notification.tid)
        buffer = ctypes.create_string_buffer(data, len(data))
        local, remote = _IoVec(), _IoVec()
        local.base, local.len = ctypes.addressof(buffer), len(data)
        remote.base, remote.len = address, len(data)
        written = int(
            self._libc.syscall(
                ctypes.c_long(_SYS_PROCESS_VM_WRITEV),
                ctypes.c_long(notification.tid),
                ctypes.byref(local),
                ctypes.c_ulong(1),
                ctypes.byref(remote),
                ctypes.c_ulong(1),
                ctypes.c_ulong(0),
            )
        )
        if written != len(data):
            raise OSError(14, "bad address")  # EFAULT, as the kernel would say

    def read_path(self, notification: Notification, address: int) -> bytes:
        """The NUL-terminated path at ``address`` (at most PATH_MAX bytes)."""
        if address == 0:
            raise OSError(14, "bad address")  # EFAULT, as the kernel would say
        data = self.read(notification, address, 4096)
        end = data.find(b"\0")
        if end < 0:
            raise OSError(36, "path too long")  # ENAMETOOLONG
        return data[:end]


def _pread_partial(fd: int, size: int, address: int) -> bytes:
    """Read what can be read: a string near the end of a mapping is shorter than 4096."""
    try:
        return os.pread(fd, size, address)
    except OSError:
        page = 4096 - (address % 4096)
        return os.pread(fd, page, address)


def pidfd_open(tid: int) -> int:
    """A pidfd for the notifying thread (its thread-group leader on kernels < 6.9)."""
    try:
        return os.pidfd_open(tid)
    except OSError:
        pass
    try:
        return os.pidfd_open(tid, _PIDFD_THREAD)
    except OSError:
        with open(f"/proc/{tid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Tgid:"):
                    return os.pidfd_open(int(line.split()[1]))
        raise
