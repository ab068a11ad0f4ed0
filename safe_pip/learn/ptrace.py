"""The few ``ptrace(2)`` requests learn mode needs, through ctypes.

Why ptrace and not a seccomp user-notification listener: a notification arrives
*before* the call runs, so the listener never learns whether Landlock refused it.
With ``SECCOMP_RET_TRACE`` on the watched calls only, the tracer stops the program
at those calls, asks for the syscall-exit stop, and reads the real result; every
other call (arithmetic, reads of open files, memory) runs at full speed.

``PTRACE_GET_SYSCALL_INFO`` (Linux 5.3) gives the syscall number, arguments and
result without touching architecture-specific register layouts.
"""

from __future__ import annotations

import ctypes
import os
import struct

PTRACE_CONT = 7
PTRACE_SYSCALL = 24
PTRACE_SETOPTIONS = 0x4200
PTRACE_SEIZE = 0x4206
PTRACE_LISTEN = 0x4208
PTRACE_GET_SYSCALL_INFO = 0x420E

O_TRACESYSGOOD = 0x1
O_TRACEFORK = 0x2
O_TRACEVFORK = 0x4
O_TRACECLONE = 0x8
O_TRACEEXEC = 0x10
O_TRACESECCOMP = 0x80
O_EXITKILL = 0x100000

EVENT_FORK = 1
EVENT_VFORK = 2
EVENT_CLONE = 3
EVENT_EXEC = 4
EVENT_SECCOMP = 7
EVENT_STOP = 128

OP_EXIT = 2
OP_SECCOMP = 3

#: Options for learn mode: follow every fork, thread and exec; stop on RET_TRACE;
#: and if the supervisor dies, the traced program dies with it.
LEARN_OPTIONS = (
    O_TRACESYSGOOD
    | O_TRACEFORK
    | O_TRACEVFORK
    | O_TRACECLONE
    | O_TRACEEXEC
    | O_TRACESECCOMP
    | O_EXITKILL
)

# struct ptrace_syscall_info: u8 op, u8 pad[3], u32 arch, u64 ip, u64 sp, then a union
# of {u64 nr; u64 args[6]} (entry, seccomp) and {s64 rval; u8 is_error} (exit).
_INFO_SIZE = 88
_HEAD = struct.Struct("=B3xIQQ")
_CALL = struct.Struct("=Q6Q")
_EXIT = struct.Struct("=qB")

_libc = ctypes.CDLL(None, use_errno=True)
_ptrace = _libc.ptrace
_ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
_ptrace.restype = ctypes.c_long


class _IoVec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]


_readv = _libc.process_vm_readv
_readv.argtypes = [
    ctypes.c_int,
    ctypes.POINTER(_IoVec),
    ctypes.c_ulong,
    ctypes.POINTER(_IoVec),
    ctypes.c_ulong,
    ctypes.c_ulong,
]
_readv.restype = ctypes.c_ssize_t

_info_buffer = ctypes.create_string_buffer(_INFO_SIZE)
_info_address = ctypes.addressof(_info_buffer)
_U64 = struct.Struct("=Q")
_PAGE = os.sysconf("SC_PAGE_SIZE")
_PATH_MAX = 4096
_read_buffer = ctypes.create_string_buffer(_PATH_MAX)


def _call(request: int, pid: int, addr: int | None = None, data: int | None = None) -> int:
    result = int(_ptrace(request, pid, addr, data))
    if result == -1:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return result


def seize(pid: int, options: int) -> None:
    """Attach to ``pid`` without stopping it (``PTRACE_SEIZE``) with ``options``."""
    _call(PTRACE_SEIZE, pid, 0, options)


def resume(pid: int, signal: int = 0, *, to_syscall_exit: bool = False) -> None:
    """Restart a stopped tracee, delivering ``signal``; optionally stop at syscall exit.

    A tracee can vanish between its stop and our restart (killed by SIGKILL, say);
    that is not an error worth reporting.
    """
    try:
        _call(PTRACE_SYSCALL if to_syscall_exit else PTRACE_CONT, pid, 0, signal)
    except ProcessLookupError:
        pass


def listen(pid: int) -> None:
    """Leave a group-stopped tracee stopped but let it see SIGCONT (``PTRACE_LISTEN``)."""
    try:
        _call(PTRACE_LISTEN, pid, 0, 0)
    except ProcessLookupError:
        pass


def syscall_info(pid: int) -> tuple[int, tuple[int, ...]]:
    """``(op, values)`` for a stopped tracee.

    ``values`` is ``(nr, a0..a5)`` at a seccomp or entry stop and ``(rval, is_error)``
    at an exit stop.
    """
    _call(PTRACE_GET_SYSCALL_INFO, pid, _INFO_SIZE, _info_address)
    op = _info_buffer.raw[0]
    if op == OP_EXIT:
        return op, _EXIT.unpack_from(_info_buffer, _HEAD.size)
    return op, _CALL.unpack_from(_info_buffer, _HEAD.size)


# One pair of iovecs, refilled for every read: the tracer reads memory thousands of
# times a second and builds no objects it does not need.
_read_address = ctypes.addressof(_read_buffer)
_local = _IoVec(_read_address, 0)
_remote = _IoVec(0, 0)
_local_ref = ctypes.byref(_local)
_remote_ref = ctypes.byref(_remote)


def _read_into_buffer(pid: int, address: int, size: int) -> int:
    _local.len = size
    _remote.base = address
    _remote.len = size
    return int(_readv(pid, _local_ref, 1, _remote_ref, 1, 0))


def read_string(pid: int, address: int) -> bytes | None:
    """The NUL-terminated string at ``address`` in ``pid`` (at most PATH_MAX bytes).

    Reads page by page, so a short string near the end of a mapping does not fail
    because the next page is unmapped.  None when the memory cannot be read.
    """
    if not address:
        return None
    collected = b""
    while len(collected) < _PATH_MAX:
        chunk = min(_PAGE - address % _PAGE, _PATH_MAX - len(collected))
        got = _read_into_buffer(pid, address, chunk)
        if got <= 0:
            return None
        data = ctypes.string_at(_read_address, got)
        end = data.find(b"\0")
        if end >= 0:
            return collected + data[:end]
        collected += data
        address += got
    return None


def read_u64(pid: int, address: int) -> int | None:
    """One native 64-bit word (the flags at the head of ``struct open_how``)."""
    if not address or _read_into_buffer(pid, address, 8) != 8:
        return None
    value: int = _U64.unpack_from(_read_buffer)[0]
    return value
