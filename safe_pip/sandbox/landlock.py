"""A small ctypes binding for the Landlock LSM (filesystem, TCP and scope rules).

Why our own binding instead of a PyPI package (details in PLATFORM-NOTES):

* ``landlock`` (1.0.0.dev5) is a pre-release that stops at ABI 5 (no TCP rules, no
  scopes), treats a *stale* errno as failure even when the syscall succeeded, leaks
  the ruleset fd and ships no tests.
* ``landlockpy`` (0.2.0) is young, fails with EINVAL when a regular file is given
  directory rights, and raises where Landlock is absent instead of letting the
  caller decide.

What we need fits in one module: an ABI probe, per-ABI masking of every right,
file-versus-directory masking, TCP port rules, scopes, ``no_new_privs`` and the
final ``landlock_restrict_self``.

Thread caveat: before ABI 8 (``LANDLOCK_RESTRICT_SELF_TSYNC``) a ruleset restricts
only the *calling thread* (and what it later forks or execs).  Apply it in a
single-threaded child right before ``execve``; never in a process that has
started helper threads it expects to be confined.

Import cost: ``ctypes`` is loaded lazily, on the first syscall, so importing this
module for its constants (``--explain``, policy code) stays cheap.
"""

from __future__ import annotations

import errno
import os
import stat
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover - typing only, keeps ctypes off the import path
    import ctypes
    from typing import ClassVar, Self

__all__ = [
    "FILE_ONLY",
    "READ",
    "WRITE",
    "AccessFs",
    "AccessNet",
    "LandlockError",
    "Ruleset",
    "Scope",
    "abi_version",
    "fs_access_for_abi",
    "net_access_for_abi",
    "scopes_for_abi",
]

# Syscall numbers.  Every syscall numbered 424 or above shares one number across the
# unified syscall table (x86_64, aarch64, riscv64, ...); only alpha, ia64 and the MIPS
# ABIs add an offset, so on those we report Landlock as unavailable rather than
# invoke an unrelated syscall.
_SYS_CREATE_RULESET = 444
_SYS_ADD_RULE = 445
_SYS_RESTRICT_SELF = 446
_OFFSET_SYSCALL_MACHINES = ("alpha", "ia64", "mips")

_CREATE_RULESET_VERSION = 1 << 0
_RULE_PATH_BENEATH = 1
_RULE_NET_PORT = 2
_PR_SET_NO_NEW_PRIVS = 38

#: Flags for ``landlock_restrict_self`` (audit logging, ABI 7).  Not used yet; kept so
#: the values are checked against the uapi header in one place.
RESTRICT_SELF_LOG_SAME_EXEC_OFF = 1 << 0
RESTRICT_SELF_LOG_NEW_EXEC_ON = 1 << 1
RESTRICT_SELF_LOG_SUBDOMAINS_OFF = 1 << 2
#: ABI 8: apply the domain to every thread of the process at once.
RESTRICT_SELF_TSYNC = 1 << 3

# errno values that mean "this kernel/container offers no Landlock".  EPERM is what
# some container seccomp profiles return for syscalls they do not know.
_UNSUPPORTED_ERRNOS = frozenset({errno.ENOSYS, errno.EOPNOTSUPP, errno.EPERM})
_MISSING_PATH_ERRNOS = frozenset({errno.ENOENT, errno.ENOTDIR})


class _Bits(int):
    """An ``int`` whose bitwise results keep their type: the slice of ``enum.IntFlag``
    this module needs.  ``enum`` costs about 7 ms to import on these machines and this
    module is imported on every ``safe-run`` start, so the flags are spelled out here.
    """

    __slots__ = ()
    #: (name, bit) pairs, in bit order; filled in below for each subclass.
    _members: ClassVar[tuple[tuple[str, int], ...]] = ()

    def __or__(self, other: int) -> Self:
        return type(self)(int(self) | int(other))

    def __and__(self, other: int) -> Self:
        return type(self)(int(self) & int(other))

    def __xor__(self, other: int) -> Self:
        return type(self)(int(self) ^ int(other))

    __ror__ = __or__
    __rand__ = __and__
    __rxor__ = __xor__

    def names(self) -> list[str]:
        """Names of the set bits, lowest first (``["EXECUTE", "READ_FILE"]``)."""
        return [name for name, bit in self._members if int(self) & bit]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({'|'.join(self.names()) or '0'})"

    __str__ = __repr__


def _define(cls: type[_Bits], **members: int) -> None:
    cls._members = tuple(sorted(members.items(), key=lambda item: item[1]))
    for name, bit in members.items():
        setattr(cls, name, cls(bit))


class AccessFs(_Bits):
    """Filesystem rights (``LANDLOCK_ACCESS_FS_*``); the comment names the first ABI."""

    __slots__ = ()
    EXECUTE: ClassVar[AccessFs]  # ABI 1
    WRITE_FILE: ClassVar[AccessFs]
    READ_FILE: ClassVar[AccessFs]
    READ_DIR: ClassVar[AccessFs]
    REMOVE_DIR: ClassVar[AccessFs]
    REMOVE_FILE: ClassVar[AccessFs]
    MAKE_CHAR: ClassVar[AccessFs]
    MAKE_DIR: ClassVar[AccessFs]
    MAKE_REG: ClassVar[AccessFs]
    MAKE_SOCK: ClassVar[AccessFs]
    MAKE_FIFO: ClassVar[AccessFs]
    MAKE_BLOCK: ClassVar[AccessFs]
    MAKE_SYM: ClassVar[AccessFs]
    REFER: ClassVar[AccessFs]  # ABI 2: rename/link across directories
    TRUNCATE: ClassVar[AccessFs]  # ABI 3
    IOCTL_DEV: ClassVar[AccessFs]  # ABI 5: ioctl on opened character/block devices


_define(
    AccessFs,
    EXECUTE=1 << 0,
    WRITE_FILE=1 << 1,
    READ_FILE=1 << 2,
    READ_DIR=1 << 3,
    REMOVE_DIR=1 << 4,
    REMOVE_FILE=1 << 5,
    MAKE_CHAR=1 << 6,
    MAKE_DIR=1 << 7,
    MAKE_REG=1 << 8,
    MAKE_SOCK=1 << 9,
    MAKE_FIFO=1 << 10,
    MAKE_BLOCK=1 << 11,
    MAKE_SYM=1 << 12,
    REFER=1 << 13,
    TRUNCATE=1 << 14,
    IOCTL_DEV=1 << 15,
)


class AccessNet(_Bits):
    """TCP rights (``LANDLOCK_ACCESS_NET_*``, ABI 4); rules match ports, not addresses."""

    __slots__ = ()
    BIND_TCP: ClassVar[AccessNet]
    CONNECT_TCP: ClassVar[AccessNet]


_define(AccessNet, BIND_TCP=1 << 0, CONNECT_TCP=1 << 1)


class Scope(_Bits):
    """IPC scopes (``LANDLOCK_SCOPE_*``, ABI 6): the resource must stay inside the domain."""

    __slots__ = ()
    ABSTRACT_UNIX_SOCKET: ClassVar[Scope]
    SIGNAL: ClassVar[Scope]


_define(Scope, ABSTRACT_UNIX_SOCKET=1 << 0, SIGNAL=1 << 1)


#: Read and execute: what a read grant means for both files and directory trees.
READ = AccessFs.EXECUTE | AccessFs.READ_FILE | AccessFs.READ_DIR
#: Every filesystem right; mask it with :func:`fs_access_for_abi` before use.
WRITE = AccessFs((1 << 16) - 1)
#: The only rights valid on a non-directory; adding directory rights to a file gives EINVAL.
FILE_ONLY = (
    AccessFs.EXECUTE
    | AccessFs.WRITE_FILE
    | AccessFs.READ_FILE
    | AccessFs.TRUNCATE
    | AccessFs.IOCTL_DEV
)


class LandlockError(OSError):
    """A Landlock syscall failed; ``errno`` holds the kernel's reason."""


def fs_access_for_abi(abi: int) -> AccessFs:
    """All filesystem rights ABI ``abi`` handles (so none the kernel would reject)."""
    if abi < 1:
        return AccessFs(0)
    rights = AccessFs((1 << 13) - 1)
    if abi >= 2:
        rights |= AccessFs.REFER
    if abi >= 3:
        rights |= AccessFs.TRUNCATE
    if abi >= 5:
        rights |= AccessFs.IOCTL_DEV
    return rights


def net_access_for_abi(abi: int) -> AccessNet:
    """TCP rights ABI ``abi`` handles (none before ABI 4)."""
    return AccessNet.BIND_TCP | AccessNet.CONNECT_TCP if abi >= 4 else AccessNet(0)


def scopes_for_abi(abi: int) -> Scope:
    """Scopes ABI ``abi`` handles (none before ABI 6)."""
    return Scope.ABSTRACT_UNIX_SOCKET | Scope.SIGNAL if abi >= 6 else Scope(0)


# --------------------------------------------------------------------------- syscalls

_libc_handle: ctypes.CDLL | None = None
_abi_cache: int | None = None


def _libc() -> ctypes.CDLL:
    """The C library, loaded once; ``use_errno`` gives each call a reliable errno copy."""
    global _libc_handle
    if _libc_handle is None:
        import ctypes

        _libc_handle = ctypes.CDLL(None, use_errno=True)
        _libc_handle.syscall.restype = ctypes.c_long
        _libc_handle.prctl.restype = ctypes.c_int
    return _libc_handle


def _call(function: str, *args: object) -> tuple[int, int]:
    """Call a libc function; return ``(result, errno)`` with errno read only on failure.

    ctypes saves errno right after the call, but a successful call does not clear it,
    so a non-zero errno after success is stale and must not count as an error.
    """
    import ctypes

    result = int(getattr(_libc(), function)(*args))
    return result, (ctypes.get_errno() if result == -1 else 0)


def _syscall(number: int, *args: object) -> tuple[int, int]:
    """``syscall(number, *args)``; arguments must already be explicit ctypes values."""
    import ctypes

    return _call("syscall", ctypes.c_long(number), *args)


def _u64(value: int) -> bytes:
    """Encode a ``__u64`` field in native byte order (the kernel copies raw bytes)."""
    return int(value).to_bytes(8, sys.byteorder)


def _fail(err: int, what: str, hint: str = "", path: str | None = None) -> LandlockError:
    """Build a LandlockError whose message says which call failed and, if known, why."""
    message = f"{what} failed: {os.strerror(err)}"
    if hint:
        message += f" ({hint})"
    return LandlockError(err, message, path)


def _machine_has_unified_syscalls() -> bool:
    """False where 444..446 are not the Landlock syscalls (see ``_SYS_*``)."""
    return sys.platform == "linux" and not os.uname().machine.startswith(_OFFSET_SYSCALL_MACHINES)


def _probe_abi() -> int:
    """Ask the kernel for its Landlock ABI; 0 when Landlock is missing or disabled."""
    if not _machine_has_unified_syscalls():
        return 0
    import ctypes

    result, err = _syscall(
        _SYS_CREATE_RULESET,
        ctypes.c_void_p(None),
        ctypes.c_size_t(0),
        ctypes.c_uint32(_CREATE_RULESET_VERSION),
    )
    if result >= 0:
        return result
    if err in _UNSUPPORTED_ERRNOS:
        return 0
    raise _fail(err, "landlock_create_ruleset(VERSION)")


def abi_version() -> int:
    """The kernel's Landlock ABI version (0: unavailable).  Probed once, then cached."""
    global _abi_cache
    if _abi_cache is None:
        _abi_cache = _probe_abi()
    return _abi_cache


def _ruleset_attr(abi: int, fs: int, net: int, scoped: int) -> bytes:
    """``struct landlock_ruleset_attr`` cut to the size ABI ``abi`` knows.

    A kernel accepts any size up to the struct it knows; sending the ABI's own size
    means an older kernel never sees a field it cannot enforce.
    """
    attr = _u64(fs)
    if abi >= 4:
        attr += _u64(net)
    if abi >= 6:
        attr += _u64(scoped)
    return attr


def _set_no_new_privs() -> None:
    """``prctl(PR_SET_NO_NEW_PRIVS, 1)``: required to restrict without CAP_SYS_ADMIN,
    and it stops setuid binaries from regaining privileges inside the sandbox."""
    import ctypes

    zero = ctypes.c_ulong(0)
    result, err = _call(
        "prctl", ctypes.c_int(_PR_SET_NO_NEW_PRIVS), ctypes.c_ulong(1), zero, zero, zero
    )
    if result != 0:
        raise _fail(err, "prctl(PR_SET_NO_NEW_PRIVS)")


# --------------------------------------------------------------------------- rulesets


class Ruleset:
    """One Landlock ruleset: create, add rules, then :meth:`restrict_self`.

    Everything requested is masked to what the ABI supports, so one policy works on
    every kernel; compare :attr:`handled_net` / :attr:`scopes` with what you asked
    for (or call :meth:`unenforced`) to know what an older kernel cannot enforce.
    The ruleset fd is close-on-exec (the kernel creates it so) and is closed by
    :meth:`close` / the context manager.
    """

    def __init__(
        self,
        *,
        abi: int | None = None,
        handled_fs: AccessFs | None = None,
        handled_net: AccessNet = AccessNet(0),  # noqa: B008 - immutable enum value
        scopes: Scope = Scope(0),  # noqa: B008 - immutable enum value
    ) -> None:
        self.abi = abi_version() if abi is None else abi
        if self.abi < 1:
            raise LandlockError(errno.EOPNOTSUPP, "Landlock is not available on this kernel")
        all_fs = fs_access_for_abi(self.abi)
        self._requested = (all_fs if handled_fs is None else handled_fs, handled_net, scopes)
        self.handled_fs = all_fs & self._requested[0]
        self.handled_net = handled_net & net_access_for_abi(self.abi)
        self.scopes = scopes & scopes_for_abi(self.abi)
        self._fd = self._create()

    def _create(self) -> int:
        """``landlock_create_ruleset`` with the masked handled sets."""
        import ctypes

        if not (self.handled_fs or self.handled_net or self.scopes):
            # Fail here with the same errno the kernel would use, but a clearer message.
            raise LandlockError(errno.ENOMSG, "a Landlock ruleset must handle some right or scope")
        attr = _ruleset_attr(self.abi, self.handled_fs, self.handled_net, self.scopes)
        fd, err = _syscall(
            _SYS_CREATE_RULESET,
            ctypes.c_char_p(attr),
            ctypes.c_size_t(len(attr)),
            ctypes.c_uint32(0),
        )
        if fd < 0:
            raise _fail(
                err, "landlock_create_ruleset", "does the kernel know every right asked for?"
            )
        return fd

    # -- lifecycle

    def __enter__(self) -> Ruleset:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __del__(self) -> None:
        self.close()

    def close(self) -> None:
        """Close the ruleset fd (idempotent); a restricted domain stays in force."""
        fd, self._fd = getattr(self, "_fd", -1), -1
        if fd >= 0:
            os.close(fd)

    def _live_fd(self) -> int:
        if self._fd < 0:
            raise ValueError("the Landlock ruleset is closed")
        return self._fd

    def unenforced(self) -> tuple[AccessFs, AccessNet, Scope]:
        """Requested rights and scopes that this ABI cannot handle (all zero: none)."""
        fs, net, scopes = self._requested
        return (
            AccessFs(int(fs) & ~int(self.handled_fs)),
            AccessNet(int(net) & ~int(self.handled_net)),
            Scope(int(scopes) & ~int(self.scopes)),
        )

    # -- rules

    def add_path(self, path: str | os.PathLike[str], access: AccessFs) -> bool:
        """Allow ``access`` on ``path`` and everything beneath it.

        The path is opened with ``O_PATH`` and so follows symlinks: the rule lands on
        the target's inode (wanted for paths like ``/lib64``).  Returns False when the
        path does not exist; True otherwise, also when nothing was left to grant after
        masking (rights the ruleset does not handle are allowed anyway, and only
        :data:`FILE_ONLY` rights apply to a non-directory).
        """
        try:
            fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
        except OSError as exc:
            if exc.errno in _MISSING_PATH_ERRNOS:
                return False
            raise _fail(exc.errno or 0, "open(O_PATH)", path=os.fspath(path)) from exc
        try:
            allowed = self._mask_for_inode(fd, access)
            if allowed:
                self._add_path_rule(fd, allowed, os.fspath(path))
        finally:
            os.close(fd)
        return True

    def _mask_for_inode(self, fd: int, access: AccessFs) -> AccessFs:
        """Limit ``access`` to the handled set and, for non-directories, to FILE_ONLY."""
        allowed = self.handled_fs & access
        if not stat.S_ISDIR(os.fstat(fd).st_mode):
            allowed &= FILE_ONLY
        return allowed

    def _add_path_rule(self, fd: int, allowed: AccessFs, path: str) -> None:
        """``landlock_add_rule(PATH_BENEATH)``; the attr struct is packed (12 bytes)."""
        import ctypes

        attr = _u64(allowed) + fd.to_bytes(4, sys.byteorder, signed=True)
        result, err = _syscall(
            _SYS_ADD_RULE,
            ctypes.c_int(self._live_fd()),
            ctypes.c_int(_RULE_PATH_BENEATH),
            ctypes.c_char_p(attr),
            ctypes.c_uint32(0),
        )
        if result != 0:
            raise _fail(err, f"landlock_add_rule({allowed!r})", path=path)

    def add_port(self, port: int, access: AccessNet) -> None:
        """Allow TCP ``access`` (bind and/or connect) on ``port``; any address.

        A no-op when the ABI handles no TCP rights (check :meth:`unenforced`).
        Port 0 is a real rule: it allows binding to an ephemeral port.
        """
        if not 0 <= port <= 0xFFFF:
            raise ValueError(f"TCP port out of range: {port}")
        allowed = self.handled_net & access
        if not allowed:
            return
        self._add_port_rule(port, allowed)

    def _add_port_rule(self, port: int, allowed: AccessNet) -> None:
        """``landlock_add_rule(NET_PORT)``; the attr is two ``__u64`` (16 bytes)."""
        import ctypes

        attr = _u64(allowed) + _u64(port)
        result, err = _syscall(
            _SYS_ADD_RULE,
            ctypes.c_int(self._live_fd()),
            ctypes.c_int(_RULE_NET_PORT),
            ctypes.c_char_p(attr),
            ctypes.c_uint32(0),
        )
        if result != 0:
            raise _fail(err, f"landlock_add_rule(port {port}, {allowed!r})")

    # -- enforcement

    def restrict_self(self, no_new_privs: bool = True) -> None:
        """Confine the calling thread (and its future children) to this ruleset.

        ``no_new_privs`` is required unless the caller has CAP_SYS_ADMIN; keep it on
        (it also disarms setuid binaries).  Irreversible.  Call it in the
        single-threaded child right before exec (see the module docstring).
        """
        import ctypes

        if no_new_privs:
            _set_no_new_privs()
        result, err = _syscall(
            _SYS_RESTRICT_SELF, ctypes.c_int(self._live_fd()), ctypes.c_uint32(0)
        )
        if result != 0:
            hint = {
                errno.EPERM: "set no_new_privs or hold CAP_SYS_ADMIN",
                errno.E2BIG: "too many stacked Landlock domains (16 at most)",
            }.get(err, "")
            raise _fail(err, "landlock_restrict_self", hint)
