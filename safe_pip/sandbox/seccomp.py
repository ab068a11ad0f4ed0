"""A small classic-BPF seccomp filter: builder and installer, without libseccomp.

Why hand-rolled: the filter must work where libseccomp is absent (minimal images,
some CI runners), and it must be short enough to audit in one sitting.  The
program is a deny list -- everything not named here is allowed -- because the
sandbox's containment comes from Landlock and namespaces; seccomp only removes
kernel interfaces that would let code step around those layers (ptrace, mount,
keyrings, io_uring, TIOCSTI, ...).

Program layout
==============

``seccomp_data`` is ``{int nr; u32 arch; u64 ip; u64 args[6]}``, so ``nr`` sits at
offset 0, ``arch`` at 4 and ``args[i]`` at ``16 + 8*i``.  Both supported
architectures are little-endian, so the *low* 32 bits of ``args[i]`` are at
``16 + 8*i``.  Every argument we inspect is a 32-bit ``int``/``unsigned int``
in the kernel (socket family/type/protocol, ioctl cmd, personality) or only has
meaningful bits in the low word (clone flags), so we load the low word only:
garbage in the high half is ignored by the kernel and must be ignored by us too,
or it slips past an equality test (CVE-2019-10063, the TIOCSTI bypass).

::

    ld  [4]                    arch
    jeq AUDIT_ARCH_<build>, 1, 0
    ret KILL_PROCESS           foreign ABI: i386 int 0x80, arm32 compat, ...
    ld  [0]                    nr -- stays in A between blocks
    jge 0x40000000, 0, 1       x86_64 only: x32 numbers (x32 shares the arch value)
    ret ERRNO(ENOSYS)
    -- argument blocks: ioctl, socket, socketpair, clone, personality --
    jeq NR, 0, <past block>    not this syscall: skip the whole block
    ld  [16 + 8*i]             low word of args[i]
    ...                        compares; every path inside ends in a ret
    -- plain blocks, one per denied syscall --
    jeq NR, 0, 1
    ret ERRNO(EPERM)           clone3: ERRNO(ENOSYS)
    ...
    ret ALLOW

Why this shape:

* Each block is self-contained and only jumps forward within itself, so a jump
  offset is bounded by the size of one block, never by the length of the deny
  list: the 8-bit ``jt``/``jf`` fields cannot overflow however long the list
  grows.  The assembler still checks every offset and raises if one does not fit.
* Arguments are loaded only after the syscall number matched.  Since 5.11 the
  kernel emulates the filter once per syscall number and, when the verdict is
  ALLOW without reading arguments, caches it and skips the filter for that
  number.  So the linear scan costs nothing for read/write/futex/...; only the
  argument-inspecting syscalls run the program, and they come first.
* The arch check comes first and kills: a deny list keyed on x86_64 numbers
  means nothing for an i386 ``int 0x80`` syscall, which uses other numbers.

Arguments and policy choices
============================

* ``clone3`` gets ENOSYS (not EPERM) so glibc falls back to ``clone``, whose flags
  are a register we can inspect; ``clone3`` passes them in memory, out of BPF's reach.
  ``openat2`` likewise (its mode sits in a struct), so callers fall back to ``openat``.
* No setuid or setgid bit, ever: ``chmod``, ``fchmod``, ``fchmodat``, ``fchmodat2``,
  ``mknod``/``mknodat`` and the creating ``open``/``openat``/``creat`` are refused
  (EPERM) when their mode carries ``S_ISUID`` or ``S_ISGID``.  A file the sandbox
  leaves behind with those bits runs with its owner's rights for whoever starts it
  later -- for a root caller, root for every local user.  ``open``/``openat`` look
  at the mode only with ``O_CREAT`` or ``O_TMPFILE`` in the flags: without them the
  mode register holds whatever a C caller left there.  Ordinary modes pass.
* ``CLONE_NEWTIME`` (0x80) overlaps the exit-signal byte of ``clone``; the kernel
  never honours it there, and no valid signal number has bit 7 set, so keeping it
  in the mask refuses nothing legitimate.
* ``personality``: only ``PER_LINUX`` (0) and the query ``0xffffffff`` are allowed.
  Other values switch on ``ADDR_NO_RANDOMIZE``/``READ_IMPLIES_EXEC`` (weaker
  exploit mitigations for whatever the sandbox execs) or legacy ABIs nobody needs.
* ``socketpair(AF_UNIX)`` stays allowed even when ``socket_families`` excludes
  AF_UNIX: multiprocessing and subprocess plumbing need connected pairs, and a
  pair cannot reach anything outside the process tree.  ``socket(AF_UNIX)`` can be
  refused because in fallback mode (no network namespace) Landlock before ABI 9
  does not mediate ``connect()`` to pathname unix sockets, so a fresh AF_UNIX
  socket could talk to session services.
* Socket types are masked with 0xf before comparing: Python always ORs in
  ``SOCK_CLOEXEC`` (and maybe ``SOCK_NONBLOCK``).
* x32 syscalls get ENOSYS rather than a kill: that is exactly what a kernel
  built without x32 answers, and nothing legitimate in an x86_64 process uses them.
* The mount-API siblings ``open_tree_attr`` (6.15), ``quotactl_fd`` and the
  fd-stealing ``pidfd_getfd`` are denied alongside their older relatives.

Import cost matters (``safe-run`` start-up): this module imports only ``os``,
``struct``, ``safe_pip._records`` and ``safe_pip.errors``;
``ctypes`` (about 5 ms) is imported inside :func:`install_filter`, which runs in
the child that already pays for it (Landlock uses ctypes too).
"""

from __future__ import annotations

import os
import struct

from safe_pip._records import record
from safe_pip.errors import SandboxUnavailable

TYPE_CHECKING = False  # avoid importing typing at start-up
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping

__all__ = [
    "SUPPORTED_ARCHES",
    "SeccompError",
    "SeccompOptions",
    "build_filter",
    "denied_syscall_names",
    "describe_filter",
    "install_filter",
]


class SeccompError(SandboxUnavailable):
    """The filter cannot be built or installed; the sandbox must not start without it."""


@record
class SeccompOptions:
    """What the filter allows beyond the fixed deny list.

    ``socket_families``: None leaves ``socket()`` unrestricted; otherwise only these
    address families succeed and the rest get EAFNOSUPPORT (what a kernel without
    that family would say, so programs fall back gracefully).
    ``inet_stream_only``: AF_INET/AF_INET6 sockets only as SOCK_STREAM with protocol
    0 or IPPROTO_TCP (no UDP, raw, SCTP or MPTCP); others get EPERM.
    ``deny_namespaces``: refuse unshare/setns/clone with CLONE_NEW* -- True once our
    own namespace setup is done.
    ``notify_connect``: every ``connect()`` becomes a user notification for the
    supervisor, which decides it and performs the allowed ones itself (fallback-mode
    network allowlist: Landlock filters only the port, see launcher/connect_guard.py).
    ``deny_fastopen``: refuse ``sendto``/``sendmsg``/``sendmmsg`` with MSG_FASTOPEN,
    a way to open a TCP connection without calling ``connect()``.
    ``notify_writes``: every call that can write through a path -- an ``open`` that
    can write or create, ``creat``, ``truncate``, and every call that creates,
    removes or renames an entry -- becomes a user notification for the filesystem
    broker (:mod:`safe_pip.sandbox.fs_broker`); reads stay on the fast path.

    Fallback mode shares the host's kernel objects that Landlock does not mediate;
    these options put them under the broker or out of reach
    (:mod:`safe_pip.sandbox.attr_broker`):

    ``supervise_metadata``: mode, owner, time and extended-attribute changes (by
    path or descriptor), the inode-flag ioctls and ``inotify_add_watch`` are
    decided by the broker; ``fanotify_init`` is refused and ``file_setattr`` gets
    ENOSYS (callers fall back to the ioctl, which the broker sees).
    ``deny_host_ipc``: SysV IPC and POSIX message queues (host-wide namespaces of
    their own) are refused.
    ``deny_listen``: ``listen()`` is refused; an unbound socket would bind itself to
    an ephemeral port on every address without ever asking Landlock.
    ``notify_dgram_pairs``: ``socketpair(AF_UNIX, SOCK_DGRAM)`` is made by the
    broker (as SOCK_SEQPACKET, which keeps message boundaries but ignores a
    destination address: a datagram socket could ``sendto`` any pathname socket of
    the host).
    ``own_tasks_only``: priority, scheduling, I/O priority and resource-limit changes
    only for the program's own processes: on itself (pid 0) at once, on another pid
    after the broker found it in the sandbox; never on a process group other than
    its own or on every process of the user (``PRIO_USER``).  Without a pid
    namespace every process of the user is a valid target.
    """

    socket_families: frozenset[int] | None = None
    inet_stream_only: bool = False
    deny_namespaces: bool = True
    notify_connect: bool = False
    deny_fastopen: bool = False
    notify_writes: bool = False
    supervise_metadata: bool = False
    deny_host_ipc: bool = False
    deny_listen: bool = False
    notify_dgram_pairs: bool = False
    own_tasks_only: bool = False

    @property
    def needs_listener(self) -> bool:
        """Whether the filter notifies anyone (and so needs a listener fd)."""
        return (
            self.notify_connect
            or self.notify_writes
            or self.supervise_metadata
            or self.notify_dgram_pairs
            or self.own_tasks_only
        )


# --- kernel ABI constants (linux/seccomp.h, linux/bpf_common.h, linux/audit.h) ---

_BPF_LD_W_ABS = 0x00 | 0x00 | 0x20  # BPF_LD | BPF_W | BPF_ABS
_BPF_ALU_AND_K = 0x04 | 0x50 | 0x00  # BPF_ALU | BPF_AND | BPF_K
_BPF_RET_K = 0x06 | 0x00  # BPF_RET | BPF_K
_BPF_JMP = 0x05
_JEQ = 0x10
_JGE = 0x30
_JSET = 0x40
_BPF_MAXINSNS = 4096

_RET_KILL_PROCESS = 0x80000000
_RET_ERRNO = 0x00050000
_RET_ALLOW = 0x7FFF0000
_RET_USER_NOTIF = 0x7FC00000
_RET_TRACE = 0x7FF00000
_AT_EMPTY_PATH = 0x1000

# errno values are the asm-generic ones, identical on x86_64 and aarch64; spelled
# out so a program built for one arch on another host stays correct.
_EPERM = 1
_EACCES = 13
_ENOSYS = 38
_EAFNOSUPPORT = 97

_OFF_NR = 0
_OFF_ARCH = 4
_OFF_ARGS = 16

_X32_SYSCALL_BIT = 0x40000000

_AF_UNIX = 1
_AF_INET = 2
_AF_INET6 = 10
_SOCK_STREAM = 1
_SOCK_DGRAM = 2
_SOCK_TYPE_MASK = 0xF
_IPPROTO_TCP = 6
_MSG_FASTOPEN = 0x20000000
# <fcntl.h>/<sys/stat.h> (the same values on x86_64 and aarch64)
_O_CREAT = 0o100
_O_TRUNC = 0o1000
_O_ACCMODE = 0o3
_O_TMPFILE_BIT = 0o20000000  # __O_TMPFILE: O_TMPFILE is this | O_DIRECTORY
#: Flags with which an open can change the file system: write access, create, truncate.
_O_WRITES = _O_ACCMODE | _O_CREAT | _O_TRUNC | _O_TMPFILE_BIT
_S_ISUID_ISGID = 0o6000
_FAMILY_NAMES = {1: "AF_UNIX", 2: "AF_INET", 10: "AF_INET6", 16: "AF_NETLINK", 17: "AF_PACKET"}

_TIOCSTI = 0x5412
_TIOCLINUX = 0x541C
#: Inode flags and attributes set through a descriptor (chattr): FS_IOC_SETFLAGS,
#: FS_IOC_FSSETXATTR, FS_IOC_SETVERSION (the same numbers on x86_64 and aarch64).
_INODE_ATTR_IOCTLS = (0x40086602, 0x401C5820, 0x40087602)
_PER_LINUX = 0
_PERSONALITY_QUERY = 0xFFFFFFFF

_CLONE_NEW_MASK = (
    0x00020000  # CLONE_NEWNS
    | 0x02000000  # CLONE_NEWCGROUP
    | 0x04000000  # CLONE_NEWUTS
    | 0x08000000  # CLONE_NEWIPC
    | 0x10000000  # CLONE_NEWUSER
    | 0x20000000  # CLONE_NEWPID
    | 0x40000000  # CLONE_NEWNET
    | 0x00000080  # CLONE_NEWTIME (see module docstring)
)

# --- syscall numbers: only the ones the filter names ---
# x86_64: arch/x86/entry/syscalls/syscall_64.tbl; aarch64: the generic table
# (include/uapi/asm-generic/unistd.h, scripts/syscall.tbl since 6.11).


#: Syscalls numbered 424 and up share one number on every architecture with the
#: unified table (x86_64 and aarch64 included).
_UNIFIED_SYSCALLS: Mapping[str, int] = {
    "io_uring_setup": 425,
    "io_uring_enter": 426,
    "io_uring_register": 427,
    "open_tree": 428,
    "move_mount": 429,
    "fsopen": 430,
    "fsconfig": 431,
    "fsmount": 432,
    "fspick": 433,
    "clone3": 435,
    "openat2": 437,
    "pidfd_getfd": 438,
    "mount_setattr": 442,
    "quotactl_fd": 443,
    "fchmodat2": 452,
    "setxattrat": 463,
    "removexattrat": 466,
    "open_tree_attr": 467,
    "file_setattr": 469,
}

_X86_64_SYSCALLS: Mapping[str, int] = {
    "open": 2,
    "ioctl": 16,
    "shmget": 29,
    "shmat": 30,
    "shmctl": 31,
    "socket": 41,
    "connect": 42,
    "sendto": 44,
    "sendmsg": 46,
    "listen": 50,
    "socketpair": 53,
    "clone": 56,
    "semget": 64,
    "semop": 65,
    "semctl": 66,
    "shmdt": 67,
    "msgget": 68,
    "msgsnd": 69,
    "msgrcv": 70,
    "msgctl": 71,
    "truncate": 76,
    "rename": 82,
    "mkdir": 83,
    "rmdir": 84,
    "creat": 85,
    "link": 86,
    "unlink": 87,
    "symlink": 88,
    "chmod": 90,
    "fchmod": 91,
    "chown": 92,
    "fchown": 93,
    "lchown": 94,
    "ptrace": 101,
    "syslog": 103,
    "utime": 132,
    "mknod": 133,
    "uselib": 134,
    "personality": 135,
    "setpriority": 141,
    "sched_setparam": 142,
    "sched_setscheduler": 144,
    "vhangup": 153,
    "pivot_root": 155,
    "chroot": 161,
    "acct": 163,
    "mount": 165,
    "umount2": 166,
    "swapon": 167,
    "swapoff": 168,
    "reboot": 169,
    "iopl": 172,
    "ioperm": 173,
    "init_module": 175,
    "delete_module": 176,
    "quotactl": 179,
    "setxattr": 188,
    "lsetxattr": 189,
    "fsetxattr": 190,
    "removexattr": 197,
    "lremovexattr": 198,
    "fremovexattr": 199,
    "sched_setaffinity": 203,
    "lookup_dcookie": 212,
    "semtimedop": 220,
    "utimes": 235,
    "mq_open": 240,
    "mq_unlink": 241,
    "mq_timedsend": 242,
    "mq_timedreceive": 243,
    "mq_notify": 244,
    "mq_getsetattr": 245,
    "kexec_load": 246,
    "add_key": 248,
    "request_key": 249,
    "keyctl": 250,
    "ioprio_set": 251,
    "inotify_add_watch": 254,
    "openat": 257,
    "mkdirat": 258,
    "mknodat": 259,
    "fchownat": 260,
    "futimesat": 261,
    "unlinkat": 263,
    "renameat": 264,
    "linkat": 265,
    "symlinkat": 266,
    "fchmodat": 268,
    "unshare": 272,
    "utimensat": 280,
    "perf_event_open": 298,
    "fanotify_init": 300,
    "prlimit64": 302,
    "name_to_handle_at": 303,
    "open_by_handle_at": 304,
    "sendmmsg": 307,
    "setns": 308,
    "process_vm_readv": 310,
    "process_vm_writev": 311,
    "finit_module": 313,
    "sched_setattr": 314,
    "renameat2": 316,
    "kexec_file_load": 320,
    "bpf": 321,
    "userfaultfd": 323,
    **_UNIFIED_SYSCALLS,
}

_AARCH64_SYSCALLS: Mapping[str, int] = {
    "setxattr": 5,
    "lsetxattr": 6,
    "fsetxattr": 7,
    "removexattr": 14,
    "lremovexattr": 15,
    "fremovexattr": 16,
    "lookup_dcookie": 18,
    "inotify_add_watch": 27,
    "ioctl": 29,
    "ioprio_set": 30,
    "mknodat": 33,
    "mkdirat": 34,
    "unlinkat": 35,
    "symlinkat": 36,
    "linkat": 37,
    "renameat": 38,
    "umount2": 39,
    "mount": 40,
    "pivot_root": 41,
    "truncate": 45,
    "chroot": 51,
    "fchmod": 52,
    "fchmodat": 53,
    "fchownat": 54,
    "fchown": 55,
    "openat": 56,
    "vhangup": 58,
    "quotactl": 60,
    "acct": 89,
    "utimensat": 88,
    "personality": 92,
    "unshare": 97,
    "kexec_load": 104,
    "init_module": 105,
    "delete_module": 106,
    "syslog": 116,
    "ptrace": 117,
    "sched_setparam": 118,
    "sched_setscheduler": 119,
    "sched_setaffinity": 122,
    "setpriority": 140,
    "reboot": 142,
    "mq_open": 180,
    "mq_unlink": 181,
    "mq_timedsend": 182,
    "mq_timedreceive": 183,
    "mq_notify": 184,
    "mq_getsetattr": 185,
    "msgget": 186,
    "msgctl": 187,
    "msgrcv": 188,
    "msgsnd": 189,
    "semget": 190,
    "semctl": 191,
    "semtimedop": 192,
    "semop": 193,
    "shmget": 194,
    "shmctl": 195,
    "shmat": 196,
    "shmdt": 197,
    "socket": 198,
    "socketpair": 199,
    "listen": 201,
    "connect": 203,
    "sendto": 206,
    "sendmsg": 211,
    "add_key": 217,
    "request_key": 218,
    "keyctl": 219,
    "clone": 220,
    "swapon": 224,
    "swapoff": 225,
    "perf_event_open": 241,
    "prlimit64": 261,
    "fanotify_init": 262,
    "name_to_handle_at": 264,
    "open_by_handle_at": 265,
    "setns": 268,
    "sendmmsg": 269,
    "process_vm_readv": 270,
    "process_vm_writev": 271,
    "finit_module": 273,
    "sched_setattr": 274,
    "renameat2": 276,
    "bpf": 280,
    "userfaultfd": 282,
    "kexec_file_load": 294,
    **_UNIFIED_SYSCALLS,
}


class _Arch:
    """What the builder and installer need to know about one architecture.

    A plain class, not a dataclass: creating a dataclass costs about a
    millisecond of import time, and this module is on the start-up path.
    """

    __slots__ = ("audit_arch", "has_x32", "seccomp_nr", "syscalls")

    def __init__(
        self, audit_arch: int, syscalls: Mapping[str, int], *, has_x32: bool, seccomp_nr: int
    ) -> None:
        self.audit_arch = audit_arch
        self.syscalls = syscalls
        self.has_x32 = has_x32
        self.seccomp_nr = seccomp_nr


_ARCHES: Mapping[str, _Arch] = {
    "x86_64": _Arch(0xC000003E, _X86_64_SYSCALLS, has_x32=True, seccomp_nr=317),
    "aarch64": _Arch(0xC00000B7, _AARCH64_SYSCALLS, has_x32=False, seccomp_nr=277),
}
_ARCH_ALIASES = {"amd64": "x86_64", "arm64": "aarch64"}

#: Architectures :func:`build_filter` accepts (``os.uname().machine`` spelling).
SUPPORTED_ARCHES: tuple[str, ...] = tuple(_ARCHES)

# Always refused with EPERM, grouped by why.  Names missing on an arch are skipped.
_ALWAYS_DENIED: tuple[str, ...] = (
    # reading or steering other processes
    "ptrace", "process_vm_readv", "process_vm_writev", "pidfd_getfd",
    # the user keyring is shared by every process of the uid (kerberos, ecryptfs keys)
    "keyctl", "add_key", "request_key",
    # large kernel attack surface; io_uring can also create sockets without socket()
    "bpf", "perf_event_open", "userfaultfd",
    "io_uring_setup", "io_uring_enter", "io_uring_register",
    # loading code into the kernel
    "kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module",
    # reshaping the filesystem view Landlock and our mounts were built on
    "mount", "umount2", "pivot_root", "chroot", "move_mount", "open_tree",
    "open_tree_attr", "fsopen", "fsmount", "fsconfig", "fspick", "mount_setattr",
    # host administration
    "acct", "swapon", "swapoff", "reboot", "syslog", "quotactl", "quotactl_fd", "vhangup",
    # file handles bypass path-based checks
    "open_by_handle_at", "name_to_handle_at",
    # legacy (x86 only, or already gone from the kernel)
    "lookup_dcookie", "uselib", "iopl", "ioperm",
)  # fmt: skip

_NAMESPACE_DENIED: tuple[str, ...] = ("unshare", "setns")

_INSN = struct.Struct("<HBBI")  # struct sock_filter {u16 code; u8 jt; u8 jf; u32 k}
_Target = int | str  # a literal forward offset, or a label


class _Assembler:
    """Collects BPF instructions with symbolic forward jumps, then resolves them.

    Labels keep the block emitters readable (no hand-counted offsets) and give
    one place to check that every offset fits the 8-bit jt/jf fields.
    """

    def __init__(self) -> None:
        self._insns: list[tuple[int, _Target, _Target, int]] = []
        self._labels: dict[str, int] = {}
        self._label_count = 0

    def new_label(self) -> str:
        """Return a fresh label name; bind it later with :meth:`place`."""
        self._label_count += 1
        return f"L{self._label_count}"

    def place(self, label: str) -> None:
        """Bind ``label`` to the next instruction emitted."""
        if label in self._labels:
            raise SeccompError(f"seccomp: label {label} placed twice")
        self._labels[label] = len(self._insns)

    def load(self, offset: int) -> None:
        """A = 32-bit word of seccomp_data at ``offset``."""
        self._insns.append((_BPF_LD_W_ABS, 0, 0, offset))

    def load_arg_low(self, index: int) -> None:
        """A = low 32 bits of ``args[index]`` (little-endian layout)."""
        self.load(_OFF_ARGS + 8 * index)

    def load_arg_high(self, index: int) -> None:
        """A = high 32 bits of ``args[index]`` (for a pointer's NULL test)."""
        self.load(_OFF_ARGS + 8 * index + 4)

    def and_(self, mask: int) -> None:
        """A &= ``mask``."""
        self._insns.append((_BPF_ALU_AND_K, 0, 0, mask))

    def jump(self, op: int, k: int, jt: _Target, jf: _Target) -> None:
        """Conditional jump comparing A with the constant ``k``."""
        self._insns.append((_BPF_JMP | op, jt, jf, k))

    def ret(self, action: int) -> None:
        """Return ``action`` to the kernel."""
        self._insns.append((_BPF_RET_K, 0, 0, action))

    def assemble(self) -> bytes:
        """Resolve labels, check every offset, and pack ``struct sock_filter`` records."""
        count = len(self._insns)
        if not 0 < count <= _BPF_MAXINSNS:
            raise SeccompError(f"seccomp: program has {count} instructions (limit {_BPF_MAXINSNS})")
        fields: list[int] = []
        for pc, (code, jt, jf, k) in enumerate(self._insns):
            if code & 0x07 == _BPF_JMP:
                fields += (code, self._offset(pc, jt, count), self._offset(pc, jf, count), k)
            else:
                fields += (code, 0, 0, k)
        return struct.pack("<" + "HBBI" * count, *fields)

    def _offset(self, pc: int, target: _Target, count: int) -> int:
        """Offset from the jump at ``pc`` to ``target``: 0..255 and inside the program."""
        offset = target if isinstance(target, int) else self._labels[target] - pc - 1
        if 0 <= offset <= 0xFF and pc + 1 + offset < count:
            return offset
        raise SeccompError(f"seccomp: jump at {pc} to {target!r} does not fit (offset {offset})")


def _errno(value: int) -> int:
    return _RET_ERRNO | value


# --- block emitters: each starts with `jeq nr` and returns on every inner path ---


def _emit_plain(asm: _Assembler, nr: int, action: int) -> None:
    """``nr`` -> ``action`` regardless of arguments."""
    asm.jump(_JEQ, nr, 0, 1)
    asm.ret(action)


def _emit_guarded(asm: _Assembler, nr: int, body: Callable[[_Assembler], None]) -> None:
    """Run ``body`` only for syscall ``nr``; other syscalls skip past it."""
    end = asm.new_label()
    asm.jump(_JEQ, nr, 0, end)
    body(asm)
    asm.place(end)


def _ioctl_body(supervise_metadata: bool) -> Callable[[_Assembler], None]:
    """Refuse terminal input injection (TIOCSTI) and console control (TIOCLINUX);
    with ``supervise_metadata`` the inode-attribute ioctls go to the broker."""

    def body(asm: _Assembler) -> None:
        deny, notify = asm.new_label(), asm.new_label()
        asm.load_arg_low(1)
        asm.jump(_JEQ, _TIOCSTI, deny, 0)
        asm.jump(_JEQ, _TIOCLINUX, deny, 0)
        if supervise_metadata:
            for command in _INODE_ATTR_IOCTLS:
                asm.jump(_JEQ, command, notify, 0)
        asm.ret(_RET_ALLOW)
        asm.place(deny)
        asm.ret(_errno(_EPERM))
        if supervise_metadata:
            asm.place(notify)
            asm.ret(_RET_USER_NOTIF)

    return body


def _clone_body(asm: _Assembler) -> None:
    """Refuse clone() that would create namespaces; plain fork/thread clones pass."""
    asm.load_arg_low(0)
    asm.jump(_JSET, _CLONE_NEW_MASK, 0, 1)
    asm.ret(_errno(_EPERM))
    asm.ret(_RET_ALLOW)


def _personality_body(asm: _Assembler) -> None:
    """Allow only PER_LINUX and the 0xffffffff query."""
    allow = asm.new_label()
    asm.load_arg_low(0)
    asm.jump(_JEQ, _PER_LINUX, allow, 0)
    asm.jump(_JEQ, _PERSONALITY_QUERY, allow, 0)
    asm.ret(_errno(_EPERM))
    asm.place(allow)
    asm.ret(_RET_ALLOW)


def _emit_family_check(asm: _Assembler, families: Iterable[int]) -> None:
    """With the family in A: fall through when allowed, else return EAFNOSUPPORT."""
    allowed = asm.new_label()
    for family in sorted(families):
        asm.jump(_JEQ, family, allowed, 0)
    asm.ret(_errno(_EAFNOSUPPORT))
    asm.place(allowed)


def _emit_inet_stream_check(asm: _Assembler) -> None:
    """With the family in A: AF_INET/AF_INET6 must be TCP streams, others pass."""
    inet, allow, deny = asm.new_label(), asm.new_label(), asm.new_label()
    asm.jump(_JEQ, _AF_INET, inet, 0)
    asm.jump(_JEQ, _AF_INET6, inet, 0)
    asm.ret(_RET_ALLOW)
    asm.place(inet)
    asm.load_arg_low(1)
    asm.and_(_SOCK_TYPE_MASK)
    asm.jump(_JEQ, _SOCK_STREAM, 0, deny)
    asm.load_arg_low(2)
    asm.jump(_JEQ, 0, allow, 0)
    asm.jump(_JEQ, _IPPROTO_TCP, allow, deny)
    asm.place(deny)
    asm.ret(_errno(_EPERM))
    asm.place(allow)
    asm.ret(_RET_ALLOW)


def _socket_body(options: SeccompOptions) -> Callable[[_Assembler], None]:
    """socket(family, type, protocol): family allowlist, then the TCP-only rule."""
    families = options.socket_families

    def body(asm: _Assembler) -> None:
        asm.load_arg_low(0)
        if families is not None:
            _emit_family_check(asm, families)
        if options.inet_stream_only and (
            families is None or _AF_INET in families or _AF_INET6 in families
        ):
            _emit_inet_stream_check(asm)
        else:
            asm.ret(_RET_ALLOW)

    return body


def _socketpair_body(
    families: frozenset[int], *, notify_dgram: bool
) -> Callable[[_Assembler], None]:
    """socketpair(): AF_UNIX always (see module docstring), else the family allowlist;
    with ``notify_dgram`` an AF_UNIX datagram pair is made by the broker."""

    def body(asm: _Assembler) -> None:
        asm.load_arg_low(0)
        _emit_family_check(asm, families | {_AF_UNIX})
        if notify_dgram:
            allow = asm.new_label()
            asm.jump(_JEQ, _AF_UNIX, 0, allow)
            asm.load_arg_low(1)
            asm.and_(_SOCK_TYPE_MASK)
            asm.jump(_JEQ, _SOCK_DGRAM, 0, allow)
            asm.ret(_RET_USER_NOTIF)
            asm.place(allow)
        asm.ret(_RET_ALLOW)

    return body


def _fastopen_body(flags_index: int) -> Callable[[_Assembler], None]:
    """Refuse a send whose flags carry MSG_FASTOPEN (an implicit TCP connect)."""

    def body(asm: _Assembler) -> None:
        asm.load_arg_low(flags_index)
        asm.jump(_JSET, _MSG_FASTOPEN, 0, 1)
        asm.ret(_errno(_EPERM))
        asm.ret(_RET_ALLOW)

    return body


def _own_task_body(
    who_index: int, which: tuple[int, int, int] | None = None, query_index: int | None = None
) -> Callable[[_Assembler], None]:
    """A call that targets a task: pid 0 (the caller) passes, another pid goes to the
    broker.  ``which`` = the (process, group, user) values of a ``which`` argument in
    args[0]: the caller's own group (0) passes, another group and any user are
    refused.  ``query_index``: a pointer argument whose NULL makes the call a query."""

    def body(asm: _Assembler) -> None:
        allow, deny, notify, process = (asm.new_label() for _ in range(4))
        if query_index is not None:
            past = asm.new_label()
            asm.load_arg_low(query_index)
            asm.jump(_JEQ, 0, 0, past)
            asm.load_arg_high(query_index)
            asm.jump(_JEQ, 0, allow, past)
            asm.place(past)
        if which is not None:
            by_process, by_group, by_user = which
            asm.load_arg_low(0)
            asm.jump(_JEQ, by_process, process, 0)
            asm.jump(_JEQ, by_user, deny, 0)
            asm.jump(_JEQ, by_group, 0, allow)  # anything else: the kernel's EINVAL
            asm.load_arg_low(who_index)
            asm.jump(_JEQ, 0, allow, deny)
        asm.place(process)
        asm.load_arg_low(who_index)
        asm.jump(_JEQ, 0, allow, notify)
        asm.place(deny)
        asm.ret(_errno(_EPERM))
        asm.place(notify)
        asm.ret(_RET_USER_NOTIF)
        asm.place(allow)
        asm.ret(_RET_ALLOW)

    return body


#: Calls that change another task: (name, who/pid index, which values, query index).
_TASK_CALLS: tuple[tuple[str, int, tuple[int, int, int] | None, int | None], ...] = (
    ("setpriority", 1, (0, 1, 2), None),  # PRIO_PROCESS, PRIO_PGRP, PRIO_USER
    ("ioprio_set", 1, (1, 2, 3), None),  # IOPRIO_WHO_PROCESS, _PGRP, _USER
    ("sched_setaffinity", 0, None, None),
    ("sched_setscheduler", 0, None, None),
    ("sched_setparam", 0, None, None),
    ("sched_setattr", 0, None, None),
    ("prlimit64", 0, None, 2),  # a NULL new limit only reads
)


def _setid_mode_body(mode_index: int) -> Callable[[_Assembler], None]:
    """Refuse a mode argument carrying S_ISUID or S_ISGID (chmod family, mknod)."""

    def body(asm: _Assembler) -> None:
        asm.load_arg_low(mode_index)
        asm.jump(_JSET, _S_ISUID_ISGID, 0, 1)
        asm.ret(_errno(_EPERM))
        asm.ret(_RET_ALLOW)

    return body


def _setid_mode_then_notify_body(mode_index: int) -> Callable[[_Assembler], None]:
    """creat/mknod with the broker: setid modes refused here, the rest notified."""

    def body(asm: _Assembler) -> None:
        asm.load_arg_low(mode_index)
        asm.jump(_JSET, _S_ISUID_ISGID, 0, 1)
        asm.ret(_errno(_EPERM))
        asm.ret(_RET_USER_NOTIF)

    return body


def _open_body(
    flags_index: int, mode_index: int, *, notify_writes: bool
) -> Callable[[_Assembler], None]:
    """open/openat: a setid mode on a file it creates is refused; with
    ``notify_writes`` an open that can write goes to the broker; the rest pass.

    The mode only counts when the call creates (O_CREAT, O_TMPFILE); otherwise it is
    whatever was left in the register and must not be read.
    """

    def body(asm: _Assembler) -> None:
        allow, writes = asm.new_label(), asm.new_label()
        asm.load_arg_low(flags_index)
        asm.jump(_JSET, _O_CREAT | _O_TMPFILE_BIT, 0, writes)
        asm.load_arg_low(mode_index)
        asm.jump(_JSET, _S_ISUID_ISGID, 0, 1)
        asm.ret(_errno(_EPERM))
        asm.load_arg_low(flags_index)  # A was the mode: the flags again
        asm.place(writes)
        if notify_writes:
            asm.jump(_JSET, _O_WRITES, 0, allow)
            asm.ret(_RET_USER_NOTIF)
        asm.place(allow)
        asm.ret(_RET_ALLOW)

    return body


# --- the rule table: one source for the program and for --explain ---


class _Rule:
    """One syscall the filter may refuse, how, and a one-line explanation.

    A plain rule returns ``action`` whatever the arguments; a guarded rule runs
    ``body`` (which inspects arguments) for its syscall only.
    """

    __slots__ = ("action", "body", "name", "summary")

    def __init__(
        self,
        name: str,
        summary: str,
        *,
        action: int = _RET_ALLOW,
        body: Callable[[_Assembler], None] | None = None,
    ) -> None:
        self.name = name
        self.summary = summary
        self.action = action
        self.body = body

    def emit(self, asm: _Assembler, nr: int) -> None:
        """Append this rule's block for syscall number ``nr``."""
        if self.body is None:
            _emit_plain(asm, nr, self.action)
        else:
            _emit_guarded(asm, nr, self.body)


def _plain_rule(name: str, action: int, summary: str) -> _Rule:
    return _Rule(name, summary, action=action)


def _guarded_rule(name: str, summary: str, body: Callable[[_Assembler], None]) -> _Rule:
    return _Rule(name, summary, body=body)


# Built once: these do not depend on the options.
_CLONE3_RULE = _plain_rule("clone3", _errno(_ENOSYS), "ENOSYS, so libc falls back to clone()")
# openat2 passes its mode inside a struct that BPF cannot read; ENOSYS is what kernels
# before 5.6 answer, and every caller falls back to openat.
_OPENAT2_RULE = _plain_rule("openat2", _errno(_ENOSYS), "ENOSYS, so callers fall back to openat()")
_NAMESPACE_RULES = tuple(_plain_rule(n, _errno(_EPERM), "EPERM") for n in _NAMESPACE_DENIED)
_ALWAYS_RULES = tuple(_plain_rule(n, _errno(_EPERM), "EPERM") for n in _ALWAYS_DENIED)


def _family_list(families: Iterable[int]) -> str:
    return ", ".join(_FAMILY_NAMES.get(f, str(f)) for f in sorted(families)) or "none"


_SETID_SUMMARY = "EPERM when the mode sets S_ISUID or S_ISGID"
# (name, flags index or None, mode index): every call that sets a file's mode bits.
# A setuid file made here would run with its owner's rights for whoever starts it
# later, outside the sandbox: for a root caller, a root shell for every local user.
_SETID_CALLS: tuple[tuple[str, int | None, int], ...] = (
    ("openat", 2, 3),
    ("open", 1, 2),
    ("creat", None, 1),
    ("chmod", None, 1),
    ("fchmod", None, 1),
    ("fchmodat", None, 2),
    ("fchmodat2", None, 2),
    ("mknod", None, 1),
    ("mknodat", None, 2),
)


_BROKER_SUMMARY = "; otherwise decided by the filesystem broker (user notification)"
#: Calls that create, remove or rename an entry, or write through a path: with
#: ``notify_writes`` each goes to the broker (the setid check stays on those above).
_WRITE_CALLS: tuple[str, ...] = (
    "mkdir", "mkdirat", "rmdir", "unlink", "unlinkat", "link", "linkat",
    "symlink", "symlinkat", "rename", "renameat", "renameat2", "truncate",
)  # fmt: skip


#: Metadata changes Landlock does not mediate (up to ABI 7): with
#: ``supervise_metadata`` each is decided by the broker (the chmod family above
#: keeps its setid check first).
_METADATA_CALLS: tuple[str, ...] = (
    "chown", "fchown", "lchown", "fchownat", "utime", "utimes", "futimesat", "utimensat",
    "setxattr", "lsetxattr", "fsetxattr", "removexattr", "lremovexattr", "fremovexattr",
    "setxattrat", "removexattrat", "inotify_add_watch",
)  # fmt: skip
#: The host's SysV IPC and POSIX message queues (``deny_host_ipc``).
_HOST_IPC_CALLS: tuple[str, ...] = (
    "shmget", "shmat", "shmctl", "shmdt", "semget", "semop", "semtimedop", "semctl",
    "msgget", "msgsnd", "msgrcv", "msgctl",
    "mq_open", "mq_unlink", "mq_timedsend", "mq_timedreceive", "mq_notify", "mq_getsetattr",
)  # fmt: skip
_MODE_CALLS = ("chmod", "fchmod", "fchmodat", "fchmodat2")


def _setid_rules(options: SeccompOptions) -> list[_Rule]:
    rules = []
    notify_writes = options.notify_writes
    for name, flags_index, mode_index in _SETID_CALLS:
        creates = name in ("creat", "mknod", "mknodat")
        if flags_index is not None:
            summary = _SETID_SUMMARY + " on a file it creates (O_CREAT, O_TMPFILE)"
            if notify_writes:
                summary += "; an open that can write is decided by the filesystem broker"
            body = _open_body(flags_index, mode_index, notify_writes=notify_writes)
            rules.append(_guarded_rule(name, summary, body))
        elif (notify_writes and creates) or (options.supervise_metadata and name in _MODE_CALLS):
            body = _setid_mode_then_notify_body(mode_index)
            rules.append(_guarded_rule(name, _SETID_SUMMARY + _BROKER_SUMMARY, body))
        else:
            rules.append(_guarded_rule(name, _SETID_SUMMARY, _setid_mode_body(mode_index)))
    return rules


def _argument_rules(options: SeccompOptions) -> list[_Rule]:
    """Rules that inspect arguments, most frequently called syscall first."""
    setid = _setid_rules(options)
    rules = setid[:2]  # openat and open: the busiest calls of all
    ioctl_summary = "EPERM for TIOCSTI and TIOCLINUX (low 32 bits of cmd)"
    if options.supervise_metadata:
        ioctl_summary += "; inode flags (FS_IOC_SETFLAGS, FSSETXATTR, SETVERSION) " + (
            "decided by the filesystem broker"
        )
    rules.append(_guarded_rule("ioctl", ioctl_summary, _ioctl_body(options.supervise_metadata)))
    families = options.socket_families
    if families is not None or options.inet_stream_only:
        parts = []
        if families is not None:
            parts.append(f"EAFNOSUPPORT unless family is one of: {_family_list(families)}")
        if options.inet_stream_only:
            parts.append(
                "AF_INET/AF_INET6 only SOCK_STREAM with protocol 0/IPPROTO_TCP, else EPERM"
            )
        rules.append(_guarded_rule("socket", "; ".join(parts), _socket_body(options)))
    if families is not None:
        summary = f"EAFNOSUPPORT unless family is one of: {_family_list(families | {_AF_UNIX})}"
        if options.notify_dgram_pairs:
            summary += "; an AF_UNIX SOCK_DGRAM pair is made by the broker (as SOCK_SEQPACKET)"
        body = _socketpair_body(families, notify_dgram=options.notify_dgram_pairs)
        rules.append(_guarded_rule("socketpair", summary, body))
    if options.deny_namespaces:
        rules.append(_guarded_rule("clone", "EPERM when flags contain CLONE_NEW*", _clone_body))
    if options.deny_fastopen:
        for name, index in (("sendto", 3), ("sendmsg", 2), ("sendmmsg", 3)):
            rules.append(
                _guarded_rule(
                    name,
                    "EPERM with MSG_FASTOPEN (connect without connect())",
                    _fastopen_body(index),
                )
            )
    rules.append(
        _guarded_rule("personality", "EPERM except PER_LINUX and the query", _personality_body)
    )
    return rules + setid[2:]


def _rules(options: SeccompOptions) -> list[_Rule]:
    """Every rule for ``options``, in program order."""
    rules = _argument_rules(options)
    if options.notify_connect:
        rules.append(
            _plain_rule("connect", _RET_USER_NOTIF, "decided by the supervisor (user notification)")
        )
    if options.notify_writes:
        summary = "decided by the filesystem broker (user notification)"
        rules += [_plain_rule(name, _RET_USER_NOTIF, summary) for name in _WRITE_CALLS]
    if options.supervise_metadata:
        summary = "decided by the filesystem broker (user notification)"
        rules += [_plain_rule(name, _RET_USER_NOTIF, summary) for name in _METADATA_CALLS]
        rules.append(_plain_rule("fanotify_init", _errno(_EPERM), "EPERM"))
        rules.append(
            _plain_rule("file_setattr", _errno(_ENOSYS), "ENOSYS, so callers use the ioctl")
        )
    if options.deny_host_ipc:
        summary = "EPERM (the host's IPC namespace)"
        rules += [_plain_rule(name, _errno(_EPERM), summary) for name in _HOST_IPC_CALLS]
    if options.deny_listen:
        rules.append(_plain_rule("listen", _errno(_EACCES), "EACCES (no serving)"))
    if options.own_tasks_only:
        summary = "itself only at once; another pid decided by the broker; no other group or user"
        for name, who, which, query in _TASK_CALLS:
            rules.append(_guarded_rule(name, summary, _own_task_body(who, which, query)))
    rules.append(_OPENAT2_RULE)
    if options.deny_namespaces:
        rules.append(_CLONE3_RULE)
        rules += _NAMESPACE_RULES
    rules += _ALWAYS_RULES
    return rules


def _resolve_arch(arch: str | None) -> tuple[str, _Arch]:
    """Map ``arch`` (or this host) to its table; refuse what we cannot filter."""
    if arch is None:
        if struct.calcsize("P") != 8:
            # A 32-bit interpreter on a 64-bit kernel makes compat syscalls, which
            # the arch check would kill on the first call.
            raise SeccompError("seccomp: a 32-bit Python is not supported")
        arch = os.uname().machine
    name = _ARCH_ALIASES.get(arch, arch)
    spec = _ARCHES.get(name)
    if spec is None:
        raise SeccompError(
            f"seccomp: unsupported architecture {arch!r} (supported: {', '.join(SUPPORTED_ARCHES)})"
        )
    return name, spec


def _check_options(options: SeccompOptions) -> None:
    """Reject family values that cannot be a 32-bit BPF constant."""
    for family in options.socket_families or ():
        if isinstance(family, bool) or not isinstance(family, int) or not 0 <= family <= 0xFFFF:
            raise SeccompError(f"seccomp: invalid socket family {family!r}")


def build_filter(options: SeccompOptions, arch: str | None = None) -> bytes:
    """Return the filter as packed ``struct sock_filter`` records for ``arch``.

    ``arch`` defaults to this host (``os.uname().machine``); building for another
    architecture is for tests and docs.  Raises :class:`SeccompError` for an
    unsupported architecture or a program that would not fit BPF's limits.
    """
    _check_options(options)
    _, spec = _resolve_arch(arch)
    asm = _Assembler()
    asm.load(_OFF_ARCH)
    asm.jump(_JEQ, spec.audit_arch, 1, 0)
    asm.ret(_RET_KILL_PROCESS)
    asm.load(_OFF_NR)
    if spec.has_x32:
        asm.jump(_JGE, _X32_SYSCALL_BIT, 0, 1)
        asm.ret(_errno(_ENOSYS))
    for rule in _rules(options):
        nr = spec.syscalls.get(rule.name)
        if nr is not None:
            rule.emit(asm, nr)
    asm.ret(_RET_ALLOW)
    return asm.assemble()


def build_trace_filter(
    numbers: Iterable[int],
    arch: str | None = None,
    fd_only_flags: Mapping[int, int] | None = None,
) -> bytes:
    """Learn mode's second filter: ``SECCOMP_RET_TRACE`` for ``numbers``, allow the rest.

    It is stacked on the main filter, and the kernel takes the strictest verdict of
    all filters, so it can only add tracer stops, never allow what the main filter
    refuses.  A foreign architecture is allowed here because the main filter kills it.
    Without an attached tracer ``RET_TRACE`` fails the call with ENOSYS, so the
    launcher installs this only in a process the supervisor already traces.

    ``fd_only_flags`` maps a syscall number to the index of its ``AT_*`` flags
    argument: with ``AT_EMPTY_PATH`` set there the call is let through without a stop
    (it works on a file descriptor; every ``fstat`` is such a call).
    """
    _, spec = _resolve_arch(arch)
    fd_only = fd_only_flags or {}
    asm = _Assembler()
    asm.load(_OFF_ARCH)
    asm.jump(_JEQ, spec.audit_arch, 1, 0)
    asm.ret(_RET_ALLOW)
    asm.load(_OFF_NR)
    trace, allow = asm.new_label(), asm.new_label()
    for nr in sorted(set(numbers)):
        index = fd_only.get(nr)
        if index is None:
            asm.jump(_JEQ, nr, trace, 0)
            continue
        other = asm.new_label()
        asm.jump(_JEQ, nr, 0, other)
        asm.load_arg_low(index)
        asm.jump(_JSET, _AT_EMPTY_PATH, allow, trace)
        asm.place(other)  # reached before the load: A still holds the number
    asm.place(allow)
    asm.ret(_RET_ALLOW)
    asm.place(trace)
    asm.ret(_RET_TRACE)
    return asm.assemble()


def syscall_number(name: str, arch: str | None = None) -> int:
    """The number of syscall ``name`` on ``arch`` (this host by default)."""
    return _resolve_arch(arch)[1].syscalls[name]


def denied_syscall_names(options: SeccompOptions, arch: str | None = None) -> list[str]:
    """Names of every syscall the filter refuses, always or for some arguments.

    Program order; syscalls that do not exist on ``arch`` are left out.
    """
    _, spec = _resolve_arch(arch)
    return [rule.name for rule in _rules(options) if rule.name in spec.syscalls]


def describe_filter(options: SeccompOptions, arch: str | None = None) -> list[str]:
    """One ``name: effect`` line per rule, for ``safe-run --explain`` and docs."""
    name, spec = _resolve_arch(arch)
    header = [
        f"architecture: {name} only (other ABIs are killed)",
        *(["x32 syscalls: ENOSYS"] if spec.has_x32 else []),
    ]
    return header + [
        f"{rule.name}: {rule.summary}" for rule in _rules(options) if rule.name in spec.syscalls
    ]


# --- installation (ctypes is imported here, not at module import) ---

_PR_SET_SECCOMP = 22
_PR_SET_NO_NEW_PRIVS = 38
_PR_GET_NO_NEW_PRIVS = 39
_SECCOMP_MODE_FILTER = 2
_SECCOMP_SET_MODE_FILTER = 1
_SECCOMP_FILTER_FLAG_NEW_LISTENER = 1 << 3
_SOCK_FPROG = struct.Struct("=HxxxxxxQ")  # struct sock_fprog {u16 len; sock_filter *filter}


def install_filter(program: bytes, *, new_listener: bool = False) -> int | None:
    """Install ``program`` on the calling thread; it is inherited across fork and exec.

    Sets no_new_privs first when it is not set (the kernel requires it for an
    unprivileged filter, and we want it anyway).  Uses ``seccomp(2)`` and falls
    back to ``prctl(PR_SET_SECCOMP)`` on kernels without that syscall.  No TSYNC:
    the launcher installs the filter in a single-threaded child right before exec.

    ``new_listener`` asks for a user-notification fd (a program with
    ``notify_connect``); it is returned, and the caller hands it to the supervisor.
    """
    count, rest = divmod(len(program), _INSN.size)
    if rest or not 0 < count <= _BPF_MAXINSNS:
        raise SeccompError("seccomp: program is not a list of 1..4096 sock_filter records")
    import ctypes

    _, spec = _resolve_arch(None)
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    word = ctypes.c_ulong

    def prctl(*args: int | ctypes.c_void_p) -> int:
        # Every argument as a full machine word: prctl() checks unused ones are 0.
        words = [word(a) if isinstance(a, int) else a for a in args]
        return int(libc.prctl(*words, *[word(0)] * (5 - len(words))))

    if prctl(_PR_GET_NO_NEW_PRIVS) != 1 and prctl(_PR_SET_NO_NEW_PRIVS, 1) != 0:
        raise _failure("cannot set no_new_privs", ctypes.get_errno())
    # Both buffers are locals, so they stay alive until the kernel has copied them.
    code = ctypes.create_string_buffer(program, len(program))
    fprog = ctypes.create_string_buffer(
        _SOCK_FPROG.pack(count, ctypes.addressof(code)), _SOCK_FPROG.size
    )
    fprog_ptr = ctypes.c_void_p(ctypes.addressof(fprog))
    flags = _SECCOMP_FILTER_FLAG_NEW_LISTENER if new_listener else 0
    rc = libc.syscall(word(spec.seccomp_nr), word(_SECCOMP_SET_MODE_FILTER), word(flags), fprog_ptr)
    if rc < 0 and ctypes.get_errno() == _ENOSYS and not new_listener:
        rc = prctl(_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, fprog_ptr)
    if rc < 0:
        raise _failure("installing the filter failed", ctypes.get_errno())
    return int(rc) if new_listener else None


def _failure(what: str, err: int) -> SeccompError:
    return SeccompError(f"seccomp: {what}: {os.strerror(err)}")
