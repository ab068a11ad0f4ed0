"""The learn-mode watch loop: every failed path call of the sandboxed program.

Runs in the supervisor's main thread (ptrace requests must come from the thread
that attached).  The sandbox's first child is seized before it does anything, and
fork, vfork and clone events attach every descendant automatically, so the whole
tree is watched, including the pid-1 init of namespace mode.  Only the target
installs the ``SECCOMP_RET_TRACE`` filter, so only its watched calls stop.

A watched call stops at its seccomp stop, where the path arguments are copied out
of the program's memory and made absolute (they, the cwd and the dirfd may change
once it runs on).  When :class:`~safe_pip.learn.foresight.Foresight` says the call
could turn out to be a refusal, it stops again at the syscall exit, where the
result decides whether it is kept.  Successful calls are dropped at once; failed
ones are kept as :class:`Attempt` records, for :mod:`safe_pip.learn.findings` to
judge.
"""

from __future__ import annotations

import os

from safe_pip._records import mutable_record, record
from safe_pip.learn import ptrace
from safe_pip.learn.syscalls import AT_FDCWD, TracedCall

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from safe_pip.learn.foresight import Foresight

#: errno values a sandbox refusal shows up as: Landlock says EACCES (EXDEV for a
#: rename across rules), a path outside namespace mode's private root is ENOENT, a
#: read-only bind is EROFS, seccomp says EPERM.
SANDBOX_ERRNOS = frozenset({1, 2, 13, 18, 30})
#: Distinct failed accesses kept; a program looping over random names cannot grow
#: the supervisor without bound.
MAX_ATTEMPTS = 20000

_WALL = 0x40000000
_SIGTRAP = 5
_SIGKILL = 9
_STOP_SIGNALS = frozenset({19, 20, 21, 22})  # SIGSTOP SIGTSTP SIGTTIN SIGTTOU
_O_ACCMODE = 0o3
_O_WRITE_FLAGS = 0o100 | 0o1000  # O_CREAT | O_TRUNC


@record
class Attempt:
    """One failed access: absolute path as the program saw it, kind, errno, call."""

    path: str
    access: str  # "read" | "write" | "exec" | "entry"
    errno: int
    call: str


@mutable_record
class _Pending:
    call: TracedCall
    #: (access, absolute path) per path argument
    args: list[tuple[str, str]]


def _signed32(value: int) -> int:
    value &= 0xFFFFFFFF
    return value - (1 << 32) if value & 0x80000000 else value


def _open_access(flags: int | None) -> str:
    if flags is None:
        return "read"
    if flags & _O_ACCMODE or flags & _O_WRITE_FLAGS:
        return "write"
    return "read"


class Tracer:
    """Collects :class:`Attempt` records while it waits for the sandbox to finish."""

    def __init__(self, calls: dict[int, TracedCall], foresight: Foresight | None = None) -> None:
        self._calls = calls
        self._foresight = foresight
        self._pending: dict[int, _Pending] = {}
        self.attempts: dict[tuple[str, str], Attempt] = {}
        self.stops = 0
        #: Filled in by the supervisor from the proxy's log: allow patterns it refused.
        self.refused_hosts: list[str] = []
        #: ... and from the filesystem broker's report: the writes it decided (calls
        #: that stop for the broker never reach this tracer).
        self.broker_lines: list[str] = []

    def attach(self, pid: int) -> None:
        """Seize the sandbox's first child before it does anything (it waits for us)."""
        ptrace.seize(pid, ptrace.LEARN_OPTIONS)

    def run(self, root: int, kill_children: Callable[[], None]) -> int:
        """Drive every tracee until ``root`` exits and none is left; return ``root``'s
        wait status.

        The tracer must reap every tracee to the end: a traced process that exits
        stays a zombie until its tracer has waited for it, and in namespace mode pid 1
        cannot finish dying before every process of its namespace is reaped.  So once
        ``root`` has exited, whatever still runs is killed, as in an ordinary run:
        ``kill_children`` kills the supervisor's direct children (descendants that
        outlived their parents are re-parented to it, the subreaper), and a tracee
        that stops is killed where it stands.  Its pid is certain to be that tracee's
        while it is stopped, so no unrelated process can be hit.
        """
        root_status: int | None = None
        while True:
            try:
                pid, status = os.waitpid(-1, _WALL)
            except ChildProcessError:
                if root_status is None:
                    raise RuntimeError("learn mode lost its tracee") from None
                return root_status
            if os.WIFSTOPPED(status):
                if root_status is None:
                    self._on_stop(pid, status)
                else:
                    _kill(pid)
                continue
            self._pending.pop(pid, None)
            if pid == root:
                root_status = status
            if root_status is not None:
                kill_children()

    def _on_stop(self, pid: int, status: int) -> None:
        self.stops += 1
        signal = (status >> 8) & 0xFF
        event = (status >> 16) & 0xFF
        if signal == _SIGTRAP | 0x80:
            self._finish(pid)
            ptrace.resume(pid)
        elif event == ptrace.EVENT_STOP:
            if signal in _STOP_SIGNALS:
                ptrace.listen(pid)  # a real group-stop: stay stopped until SIGCONT
            else:
                ptrace.resume(pid)  # a new tracee's first stop
        elif signal == _SIGTRAP and event == ptrace.EVENT_SECCOMP:
            ptrace.resume(pid, to_syscall_exit=self._begin(pid))
        elif signal == _SIGTRAP and event:
            ptrace.resume(pid)  # fork, clone, exec: nothing to do
        else:
            ptrace.resume(pid, signal)  # a signal on its way to the program

    def _begin(self, pid: int) -> bool:
        """At the seccomp stop: copy the paths out; True to stop again at the exit."""
        try:
            op, values = ptrace.syscall_info(pid)
        except OSError:
            return False
        if op != ptrace.OP_SECCOMP:
            return False
        call = self._calls.get(values[0])
        if call is None:
            return False
        args = values[1:]
        access_of_open = None
        if call.flags is not None:
            flags = ptrace.read_u64(pid, args[2]) if call.flags < 0 else args[call.flags]
            access_of_open = _open_access(flags)
        collected: list[tuple[str, str]] = []
        for arg in call.paths:
            raw = ptrace.read_string(pid, args[arg.path])
            if not raw:  # NULL, unreadable, or "" with AT_EMPTY_PATH (an fd, no path)
                continue
            dirfd = AT_FDCWD if arg.dirfd is None else _signed32(args[arg.dirfd])
            path = _absolute(pid, raw, dirfd)  # now: the fd or cwd may change later
            if path is None:
                continue
            if arg.access == "open":
                collected.append((access_of_open or "read", path))
            else:
                collected.append((arg.access, path))
        foresight = self._foresight
        if foresight is not None:
            collected = [(a, p) for a, p in collected if foresight.may_be_refused(p, a)]
        if not collected:
            return False
        self._pending[pid] = _Pending(call, collected)
        return True

    def _finish(self, pid: int) -> None:
        """At the syscall-exit stop: keep the call if it failed the way a sandbox fails."""
        pending = self._pending.pop(pid, None)
        if pending is None:
            return
        try:
            op, values = ptrace.syscall_info(pid)
        except OSError:
            return
        if op != ptrace.OP_EXIT or not values[1]:
            return
        errno = -values[0]
        if errno not in SANDBOX_ERRNOS:
            return
        for access, path in pending.args:
            self._keep(Attempt(path, access, errno, pending.call.name))

    def _keep(self, attempt: Attempt) -> None:
        key = (attempt.path, attempt.access)
        if key in self.attempts:
            return
        if len(self.attempts) >= MAX_ATTEMPTS:
            return
        self.attempts[key] = attempt


def _kill(pid: int) -> None:
    try:
        os.kill(pid, _SIGKILL)
    except ProcessLookupError:
        pass


def _absolute(pid: int, raw: bytes, dirfd: int) -> str | None:
    """``raw`` made absolute against the program's cwd or ``dirfd``, then normalised."""
    path = os.fsdecode(raw)
    if not path.startswith("/"):
        link = f"/proc/{pid}/cwd" if dirfd == AT_FDCWD else f"/proc/{pid}/fd/{dirfd}"
        try:
            base = os.readlink(link)
        except OSError:
            return None
        if not base.startswith("/"):
            return None  # an fd that is not a directory path (pipe:, socket:, ...)
        path = os.path.join(base, path)
    return os.path.normpath(path)
