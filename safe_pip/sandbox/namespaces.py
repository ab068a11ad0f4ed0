"""User, mount, pid and network namespaces through raw syscalls (ctypes).

Why ctypes and not ``os.unshare``: the floor is Python 3.10 and ``os.unshare`` only
arrived in 3.12; ``prctl``, ``capset`` and the interface ioctls have no stdlib wrapper
at all.  The libc handle is the one already loaded into the interpreter
(``CDLL(None)``), so nothing is searched for on disk and ``ctypes.util`` (which may
spawn ``ldconfig``) is never imported.  ``socket`` and ``fcntl`` are not imported
either: bringing up ``lo`` needs one datagram socket and two ioctls, cheaper through
libc than through the ``socket`` module's import cost on the start-up path.

Everything here acts on the *calling* process.  ``unshare(CLONE_NEWUSER)`` refuses a
multi-threaded caller (EINVAL), so callers fork first and unshare in the child.
"""

from __future__ import annotations

import ctypes
import errno
import os

__all__ = [
    "CLONE_NEWCGROUP",
    "CLONE_NEWIPC",
    "CLONE_NEWNET",
    "CLONE_NEWNS",
    "CLONE_NEWPID",
    "CLONE_NEWUSER",
    "CLONE_NEWUTS",
    "NO_USERNS_ENV",
    "NamespaceError",
    "bring_up_loopback",
    "drop_capabilities",
    "map_ids",
    "set_child_subreaper",
    "set_pdeathsig",
    "unshare",
    "userns_available",
]

# <linux/sched.h>
CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

#: Set to "1" (or "true"/"yes") to make :func:`userns_available` report False,
#: forcing fallback mode (tests use it; so can users whose kernel misbehaves).
NO_USERNS_ENV = "SAFE_PIP_NO_USERNS"

# <linux/prctl.h>
_PR_SET_PDEATHSIG = 1
_PR_CAPBSET_READ = 23
_PR_CAPBSET_DROP = 24
_PR_SET_CHILD_SUBREAPER = 36
_PR_CAP_AMBIENT = 47
_PR_CAP_AMBIENT_CLEAR_ALL = 4

# <linux/capability.h>: version 3 uses two 32-bit data words per set.
_LINUX_CAPABILITY_VERSION_3 = 0x20080522
# Highest capability number the kernel could know; the loop stops at EINVAL anyway.
_CAP_LAST_CAP_FALLBACK = 63

# <linux/sockios.h>, <net/if.h>
_SIOCGIFFLAGS = 0x8913
_SIOCSIFFLAGS = 0x8914
_IFF_UP = 0x1
_IFF_RUNNING = 0x40
_AF_INET = 2
_SOCK_DGRAM = 2
_SOCK_CLOEXEC = 0o2000000
_IFNAMSIZ = 16
# struct ifreq is the 16-byte name followed by a 24-byte union (sockaddr or flags).
_IFREQ_SIZE = 40

_SYS_CAPSET = {"x86_64": 126, "aarch64": 91}

_CLONE_NAMES = {
    CLONE_NEWNS: "NEWNS",
    CLONE_NEWCGROUP: "NEWCGROUP",
    CLONE_NEWUTS: "NEWUTS",
    CLONE_NEWIPC: "NEWIPC",
    CLONE_NEWUSER: "NEWUSER",
    CLONE_NEWPID: "NEWPID",
    CLONE_NEWNET: "NEWNET",
}


class NamespaceError(OSError):
    """A namespace or credential syscall failed; ``errno`` is the kernel's answer."""


class _CapHeader(ctypes.Structure):
    _fields_ = (("version", ctypes.c_uint32), ("pid", ctypes.c_int))


class _CapData(ctypes.Structure):
    _fields_ = (
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    )


_libc_handle: ctypes.CDLL | None = None


def _libc() -> ctypes.CDLL:
    """The libc already mapped into this process, with argument types declared once.

    Declaring ``argtypes`` matters for correctness, not only tidiness: without them
    ctypes passes Python ints as C ``int``, which would leave the upper half of the
    64-bit ``unsigned long`` arguments of ``prctl``/``ioctl`` undefined.
    """
    global _libc_handle
    if _libc_handle is None:
        lib = ctypes.CDLL(None, use_errno=True)
        lib.unshare.argtypes = (ctypes.c_int,)
        lib.unshare.restype = ctypes.c_int
        lib.prctl.argtypes = (
            ctypes.c_int,
            ctypes.c_ulong,
            ctypes.c_ulong,
            ctypes.c_ulong,
            ctypes.c_ulong,
        )
        lib.prctl.restype = ctypes.c_int
        lib.socket.argtypes = (ctypes.c_int, ctypes.c_int, ctypes.c_int)
        lib.socket.restype = ctypes.c_int
        lib.ioctl.argtypes = (ctypes.c_int, ctypes.c_ulong, ctypes.c_void_p)
        lib.ioctl.restype = ctypes.c_int
        lib.syscall.restype = ctypes.c_long
        _libc_handle = lib
    return _libc_handle


def _flag_names(flags: int) -> str:
    names = [name for bit, name in _CLONE_NAMES.items() if flags & bit]
    rest = flags & ~sum(_CLONE_NAMES)
    if rest:
        names.append(hex(rest))
    return "|".join(names) or "0"


def _fail(what: str) -> NamespaceError:
    err = ctypes.get_errno()
    return NamespaceError(err, f"{what}: {os.strerror(err)}")


def unshare(flags: int) -> None:
    """Move the calling process into new namespaces (``unshare(2)``).

    Raises :class:`NamespaceError` carrying the kernel's errno, so callers (and
    :func:`userns_available`) can tell "disabled by sysctl" (EPERM/ENOSPC) from
    "threaded caller" (EINVAL).
    """
    if _libc().unshare(flags) != 0:
        raise _fail(f"unshare({_flag_names(flags)})")


def _write_proc(path: str, data: str) -> None:
    """One ``write(2)`` per file: the id-map files reject a map split across writes."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
        try:
            os.write(fd, data.encode())
        finally:
            os.close(fd)
    except OSError as exc:
        raise NamespaceError(
            exc.errno or errno.EIO, f"writing {data!r} to {path}: {exc.strerror}"
        ) from None


def map_ids(outer_uid: int, outer_gid: int) -> None:
    """Map the caller's ids onto themselves in the user namespace it just entered.

    Inside ids equal outside ids (root maps 0 to 0) so that file ownership shown inside
    matches the host and tools that compare ``getuid()`` with ``st_uid`` keep working.
    ``setgroups`` must be denied first: an unprivileged process may only write a
    gid map once it can no longer drop supplementary groups (which could otherwise
    escape a group-based "deny" permission on the host).
    """
    try:
        _write_proc("/proc/self/setgroups", "deny")
    except NamespaceError as exc:
        # Kernels before 3.19 have no setgroups file; nothing to deny there.
        if exc.errno != errno.ENOENT:
            raise
    _write_proc("/proc/self/uid_map", f"{outer_uid} {outer_uid} 1\n")
    _write_proc("/proc/self/gid_map", f"{outer_gid} {outer_gid} 1\n")


def bring_up_loopback() -> None:
    """Set ``lo`` up in the caller's (new) network namespace.

    A fresh network namespace has only ``lo``, and it starts down: even 127.0.0.1
    is unreachable.  The sandbox's own loopback is where the proxy listener lives, so
    it must be up; nothing else is configured, so no route leads out.
    """
    lib = _libc()
    sock = lib.socket(_AF_INET, _SOCK_DGRAM | _SOCK_CLOEXEC, 0)
    if sock < 0:
        raise _fail("socket(AF_INET, SOCK_DGRAM) for lo")
    try:
        ifreq = ctypes.create_string_buffer(_IFREQ_SIZE)
        ifreq.value = b"lo"
        if lib.ioctl(sock, _SIOCGIFFLAGS, ifreq) != 0:
            raise _fail("ioctl(SIOCGIFFLAGS, lo)")
        flags = int.from_bytes(ifreq.raw[_IFNAMSIZ : _IFNAMSIZ + 2], "little", signed=False)
        if flags & _IFF_UP:
            return
        flags |= _IFF_UP | _IFF_RUNNING
        ctypes.memmove(ctypes.addressof(ifreq) + _IFNAMSIZ, flags.to_bytes(2, "little"), 2)
        if lib.ioctl(sock, _SIOCSIFFLAGS, ifreq) != 0:
            raise _fail("ioctl(SIOCSIFFLAGS, lo)")
    finally:
        os.close(sock)


def _prctl(option: int, arg2: int = 0, what: str = "prctl") -> int:
    result: int = _libc().prctl(option, arg2, 0, 0, 0)
    if result < 0:
        raise _fail(what)
    return result


def _cap_last_cap() -> int:
    try:
        with open("/proc/sys/kernel/cap_last_cap", "rb") as f:
            return int(f.read())
    except (OSError, ValueError):
        return _CAP_LAST_CAP_FALLBACK


def drop_capabilities() -> None:
    """Leave the caller with no capabilities, now and after any later ``execve``.

    Whoever unshares a user namespace holds every capability inside it, and with the
    root mapping (0 -> 0) an ``execve`` by uid 0 would grant them all again.  So three
    sets are cleared, in this order: the bounding set (caps an exec may ever grant;
    dropping it needs CAP_SETPCAP, which capset would remove), the ambient set (caps
    that survive exec for non-root), then permitted/effective/inheritable via capset.
    File capabilities on host binaries cannot bring anything back either, as they are
    masked by the bounding set.  Call this in the last process before exec; mounts,
    id maps and ``lo`` must be set up before.  Calling it again is harmless (the
    broker drops its capabilities before forking the program, which drops them again).
    """
    for cap in range(_cap_last_cap() + 1):
        if _libc().prctl(_PR_CAPBSET_READ, cap, 0, 0, 0) == 0:
            continue  # not in the bounding set (any more): nothing to drop
        try:
            _prctl(_PR_CAPBSET_DROP, cap, what=f"prctl(PR_CAPBSET_DROP, {cap})")
        except NamespaceError as exc:
            if exc.errno == errno.EINVAL:  # beyond what this kernel knows
                break
            raise
    lib = _libc()
    if lib.prctl(_PR_CAP_AMBIENT, _PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0:
        err = ctypes.get_errno()
        if err != errno.EINVAL:  # EINVAL: kernel < 4.3 has no ambient set
            raise NamespaceError(err, f"prctl(PR_CAP_AMBIENT_CLEAR_ALL): {os.strerror(err)}")
    header = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    capset = getattr(lib, "capset", None)
    if capset is not None:
        result = capset(ctypes.byref(header), data)
    else:
        number = _SYS_CAPSET[os.uname().machine]
        result = lib.syscall(ctypes.c_long(number), ctypes.byref(header), data)
    if result != 0:
        raise _fail("capset(0)")


def set_pdeathsig(sig: int) -> None:
    """Have the kernel send ``sig`` to the caller when its parent thread exits.

    The sandbox must not outlive the supervisor; this covers the supervisor being
    SIGKILLed, where no cleanup code of ours gets to run.  Note it fires on the death
    of the parent *thread*, and is cleared by exec of set-id binaries.
    """
    _prctl(_PR_SET_PDEATHSIG, sig, what=f"prctl(PR_SET_PDEATHSIG, {sig})")


def set_child_subreaper(enable: bool = True) -> None:
    """Make orphaned descendants re-parent to the caller instead of to init.

    Used by the supervisor in fallback mode (no pid namespace): a double-forked daemon
    then stays our descendant and can be found and killed when the run ends.
    """
    _prctl(_PR_SET_CHILD_SUBREAPER, int(enable), what="prctl(PR_SET_CHILD_SUBREAPER)")


def _read_sysctl(path: str) -> str | None:
    try:
        with open(path, encoding="ascii") as f:
            return f.read().strip()
    except (OSError, ValueError):
        return None


def _explain_failure(step: str, err: int) -> str:
    """Turn a failed probe step into the one sentence ``doctor`` and errors print."""
    if _read_sysctl("/proc/sys/kernel/unprivileged_userns_clone") == "0" and os.geteuid() != 0:
        return "unprivileged user namespaces are disabled (kernel.unprivileged_userns_clone=0)"
    max_ns = _read_sysctl("/proc/sys/user/max_user_namespaces")
    if max_ns == "0":
        return "user namespaces are disabled (user.max_user_namespaces=0)"
    if _read_sysctl("/proc/sys/kernel/apparmor_restrict_unprivileged_userns") == "1":
        return (
            "AppArmor restricts unprivileged user namespaces "
            f"(kernel.apparmor_restrict_unprivileged_userns=1); {step} failed: "
            f"{os.strerror(err)}"
        )
    if err == errno.ENOSPC:
        return f"the user namespace limit is reached (user.max_user_namespaces={max_ns})"
    if err == errno.EINVAL and step.startswith("unshare"):
        return "this kernel does not support user namespaces (CONFIG_USER_NS)"
    if err == errno.EPERM and step.startswith("unshare"):
        return (
            "creating a user namespace was refused (EPERM): a seccomp filter of a "
            "container runtime, a chroot, or a security module forbids it"
        )
    return f"{step} failed: {os.strerror(err)}"


def userns_available() -> tuple[bool, str]:
    """Can this user build the namespace sandbox?  Returns (ok, why-not).

    Checked by doing it, in a throw-away child: sysctls are only hints (Debian's
    ``unprivileged_userns_clone``, Ubuntu's AppArmor restriction, container seccomp
    profiles and ``max_user_namespaces`` all interact), and AppArmor's restriction
    lets ``unshare`` succeed but strips the capabilities, so the probe also performs
    the first mount the real setup does.  Costs about a fork.
    """
    if os.environ.get(NO_USERNS_ENV, "").strip().lower() in ("1", "true", "yes"):
        return False, f"disabled by {NO_USERNS_ENV}"
    flags = CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWPID
    uid, gid = os.getuid(), os.getgid()
    read_end, write_end = os.pipe2(os.O_CLOEXEC)
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the forked child
        code = b"ok"
        try:
            step = f"unshare({_flag_names(flags)})"
            try:
                unshare(flags)
                step = "writing the uid/gid map"
                map_ids(uid, gid)
                step = "mount(MS_PRIVATE) inside the new namespace"
                lib = _libc()
                ms_rec_private = 0x4000 | (1 << 18)
                if lib.mount(None, b"/", None, ctypes.c_ulong(ms_rec_private), None) != 0:
                    raise _fail(step)
            except OSError as exc:
                code = f"{exc.errno or 0}:{step}".encode()
            os.write(write_end, code)
        finally:
            os._exit(0)
    os.close(write_end)
    try:
        chunks = []
        while chunk := os.read(read_end, 4096):
            chunks.append(chunk)
    finally:
        os.close(read_end)
        os.waitpid(pid, 0)
    answer = b"".join(chunks).decode(errors="replace")
    if answer == "ok":
        return True, ""
    err_text, _, step = answer.partition(":")
    if not err_text.isdigit():
        return False, "the user namespace probe died without an answer"
    return False, _explain_failure(step, int(err_text))
