"""Tests for the seccomp filter builder and installer, against the real kernel.

Every kernel test forks a child, optionally installs the filter at the point
the attack begins (``arm()``), attempts the syscall, and reports the result
through a pipe.  Each protection is shown twice: the attack *works* without the
filter and *fails* with it -- a check that would pass against an empty filter
proves nothing.  Raw syscall numbers used here are written down independently of
the module's tables (and those tables are cross-checked against the kernel
headers), so a wrong number in the module cannot hide behind the same wrong
number in a test.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import json
import mmap
import multiprocessing
import os
import pty
import select
import signal
import socket
import struct
import subprocess
import sys
import termios
import threading
import timeit
import tty
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import pytest

from safe_pip.sandbox import seccomp
from safe_pip.sandbox.seccomp import (
    SeccompError,
    SeccompOptions,
    build_filter,
    denied_syscall_names,
    describe_filter,
    install_filter,
)

MACHINE = os.uname().machine
ON_SUPPORTED_HOST = sys.platform == "linux" and MACHINE in ("x86_64", "aarch64")
_Test = TypeVar("_Test", bound=Callable[..., None])


def kernel(test: _Test) -> _Test:
    """Mark a test that installs filters in the real kernel.

    ``sandbox`` puts it in CI's unprivileged run (``-m sandbox``), where it matters
    most: every baseline must then work without any privilege.
    """
    skip = pytest.mark.skipif(not ON_SUPPORTED_HOST, reason="needs Linux on x86_64 or aarch64")
    marked: _Test = pytest.mark.sandbox(skip(test))
    return marked


# --- constants, spelled out independently of the module under test ---

AUDIT_ARCH_X86_64 = 0xC000003E
AUDIT_ARCH_AARCH64 = 0xC00000B7
RET_KILL_PROCESS = 0x80000000
RET_ALLOW = 0x7FFF0000
RET_ERRNO = 0x00050000

CLONE_NEWNS = 0x00020000
CLONE_NEWUSER = 0x10000000
CLONE_NEWNET = 0x40000000
TIOCSTI = 0x5412
TIOCLINUX = 0x541C
TIOCSCTTY = 0x540E
AF_NETLINK = 16
AF_PACKET = 17
IPPROTO_MPTCP = 262
STRICT = SeccompOptions(
    socket_families=frozenset({socket.AF_UNIX, socket.AF_INET, socket.AF_INET6}),
    inet_stream_only=True,
)

# Raw syscall numbers for the calls below that Python has no API for.
RAW_NR = {
    "x86_64": {
        "ioctl": 16, "socket": 41, "clone": 56, "ptrace": 101, "personality": 135,
        "chroot": 161, "mount": 165, "add_key": 248, "keyctl": 250, "unshare": 272,
        "perf_event_open": 298, "setns": 308, "process_vm_readv": 310, "bpf": 321,
        "userfaultfd": 323, "io_uring_setup": 425, "clone3": 435, "seccomp": 317,
        "openat": 257, "openat2": 437, "fchmodat2": 452, "mknodat": 259,
    },
    "aarch64": {
        "ioctl": 29, "socket": 198, "clone": 220, "ptrace": 117, "personality": 92,
        "chroot": 51, "mount": 40, "add_key": 217, "keyctl": 219, "unshare": 97,
        "perf_event_open": 241, "setns": 268, "process_vm_readv": 270, "bpf": 280,
        "userfaultfd": 282, "io_uring_setup": 425, "clone3": 435, "seccomp": 277,
        "openat": 56, "openat2": 437, "fchmodat2": 452, "mknodat": 33,
    },
}.get(MACHINE, {})  # fmt: skip

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


def raw_syscall(name: str, *args: object) -> int:
    """Call syscall ``name`` directly; integers are passed as full 64-bit words."""
    words = [ctypes.c_ulong(a & 0xFFFFFFFFFFFFFFFF) if isinstance(a, int) else a for a in args]
    result = int(_libc.syscall(ctypes.c_long(RAW_NR[name]), *words))
    if result == -1:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return result


# --- the fork harness ---


@dataclass(frozen=True)
class Outcome:
    """What happened in the child: a value, an errno, a fatal signal, or a crash."""

    value: object = None
    errno: int | None = None
    signal: int | None = None
    crash: str | None = None

    @property
    def ok(self) -> bool:
        return self.errno is None and self.signal is None and self.crash is None


Attack = Callable[[Callable[[], None]], object]


def run_child(attack: Attack, options: SeccompOptions | None, arch: str | None = None) -> Outcome:
    """Fork, run ``attack(arm)`` where ``arm()`` installs the filter (or does nothing)."""
    program = None if options is None else build_filter(options, arch)

    def arm() -> None:
        if program is not None:
            install_filter(program)

    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        os.close(read_end)
        try:
            try:
                report: dict[str, object] = {"value": attack(arm)}
            except OSError as exc:
                report = {"errno": exc.errno}
            except BaseException as exc:
                report = {"crash": repr(exc)}
            os.write(write_end, json.dumps(report).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    _, status = os.waitpid(pid, 0)
    os.set_blocking(read_end, False)
    try:
        data = os.read(read_end, 1 << 16)
    except BlockingIOError:
        data = b""
    finally:
        os.close(read_end)
    if os.WIFSIGNALED(status):
        return Outcome(signal=os.WTERMSIG(status))
    if not data:
        return Outcome(crash=f"no report, status {status:#x}")
    parsed = json.loads(data)
    return Outcome(parsed.get("value"), parsed.get("errno"), None, parsed.get("crash"))


def contrast(
    attack: Attack, options: SeccompOptions, expect_errno: int = errno.EPERM
) -> tuple[Outcome, Outcome]:
    """Assert the attack works without the filter and fails with ``expect_errno`` with it."""
    without = run_child(attack, None)
    assert without.ok, f"precondition failed: without the filter the attack got {without}"
    with_filter = run_child(attack, options)
    assert with_filter.errno == expect_errno, f"with the filter: {with_filter}"
    return without, with_filter


def baseline_or_skip(attack: Attack, why: str) -> Outcome:
    """Run without the filter; skip when this machine/user cannot do it at all."""
    without = run_child(attack, None)
    if not without.ok:
        pytest.skip(f"{why} (without the filter: {without})")
    return without


def sleeper() -> int:
    """Fork a grandchild that just waits to be killed (a target for ptrace & co)."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - grandchild
        try:
            while True:
                signal.pause()
        finally:
            os._exit(0)
    return pid


def reap(pid: int) -> None:
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)


def unshare(flags: int) -> None:
    if _libc.unshare(ctypes.c_int(flags)) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def userns_available() -> bool:
    def probe(arm: Callable[[], None]) -> object:
        unshare(CLONE_NEWUSER | CLONE_NEWNET | CLONE_NEWNS)
        return True

    return run_child(probe, None).ok


needs_userns = pytest.mark.skipif(
    ON_SUPPORTED_HOST and not userns_available(),
    reason="unprivileged user namespaces are disabled here; the test gains its "
    "capabilities (CAP_NET_RAW, CAP_SYS_ADMIN) inside one",
)


# --- a tiny classic-BPF interpreter, to check programs we cannot run (aarch64) ---


def evaluate(
    program: bytes,
    nr: int,
    arch: int,
    args: tuple[int, ...] = (),
    loads: list[int] | None = None,
) -> int:
    """Run ``program`` over a seccomp_data record and return the action word.

    ``loads``, when given, collects the seccomp_data offsets the program read.
    """
    full_args = (*args, *([0] * (6 - len(args))))
    data = struct.pack("<iIQ6Q", nr, arch, 0x1000, *full_args)
    insns = decode(program)
    acc: int = 0
    pc = 0
    while True:
        code, jt, jf, k = insns[pc]
        pc += 1
        if code == 0x20:  # ld [k]
            acc = int.from_bytes(data[k : k + 4], "little")
            if loads is not None:
                loads.append(k)
        elif code == 0x54:  # and #k
            acc &= k
        elif code == 0x06:  # ret #k
            return k
        elif code == 0x05:  # ja
            pc += k
        elif code in (0x15, 0x35, 0x45):  # jeq, jge, jset
            taken = {0x15: acc == k, 0x35: acc >= k, 0x45: bool(acc & k)}[code]
            pc += jt if taken else jf
        else:
            raise AssertionError(f"unexpected opcode {code:#x}")


def decode(program: bytes) -> list[tuple[int, int, int, int]]:
    """Split a program into (code, jt, jf, k) tuples."""
    return [(c, t, f, k) for c, t, f, k in struct.iter_unpack("<HBBI", program)]


# ======================================================================
# Building (no kernel needed)
# ======================================================================

OPTION_SETS = [
    SeccompOptions(),
    SeccompOptions(deny_namespaces=False),
    STRICT,
    SeccompOptions(socket_families=frozenset()),
    SeccompOptions(inet_stream_only=True),
    SeccompOptions(socket_families=frozenset({socket.AF_INET6}), inet_stream_only=True),
]


@pytest.mark.parametrize(
    ("arch", "audit"), [("x86_64", AUDIT_ARCH_X86_64), ("aarch64", AUDIT_ARCH_AARCH64)]
)
def test_program_starts_with_the_arch_check(arch: str, audit: int) -> None:
    insns = decode(build_filter(STRICT, arch))
    assert insns[0] == (0x20, 0, 0, 4)  # ld [arch]
    assert insns[1] == (0x15, 1, 0, audit)  # jeq AUDIT_ARCH_*, skip the kill
    assert insns[2] == (0x06, 0, 0, RET_KILL_PROCESS)
    assert insns[3] == (0x20, 0, 0, 0)  # ld [nr]
    assert insns[-1] == (0x06, 0, 0, RET_ALLOW)


def test_x32_guard_only_on_x86_64() -> None:
    x86 = decode(build_filter(STRICT, "x86_64"))
    assert x86[4] == (0x35, 0, 1, 0x40000000)  # jge X32_SYSCALL_BIT
    assert x86[5] == (0x06, 0, 0, RET_ERRNO | errno.ENOSYS)
    assert all(insn[0] != 0x35 for insn in decode(build_filter(STRICT, "aarch64")))


@pytest.mark.parametrize("arch", ["x86_64", "aarch64"])
@pytest.mark.parametrize("options", OPTION_SETS, ids=repr)
def test_every_jump_is_forward_short_and_lands_inside(arch: str, options: SeccompOptions) -> None:
    insns = decode(build_filter(options, arch))
    assert len(insns) <= 4096
    for pc, (code, jt, jf, _) in enumerate(insns):
        if code & 0x07 == 0x05:
            assert jt < 256 and jf < 256
            assert pc + 1 + max(jt, jf) < len(insns)
        else:
            assert (jt, jf) == (0, 0)
    assert insns[-1][0] == 0x06


@pytest.mark.parametrize(
    ("arch", "audit"), [("x86_64", AUDIT_ARCH_X86_64), ("aarch64", AUDIT_ARCH_AARCH64)]
)
def test_unlisted_syscalls_allow_without_reading_arguments(arch: str, audit: int) -> None:
    # This is what lets the kernel's per-syscall action cache (5.11+) skip the
    # filter entirely for read/write/futex/...: the verdict depends on nr alone.
    listed = set(seccomp._ARCHES[arch].syscalls.values())
    program = build_filter(STRICT, arch)
    for nr in range(600):
        if nr in listed:
            continue
        loads: list[int] = []
        assert evaluate(program, nr, audit, (1, 2, 3), loads) == RET_ALLOW
        assert loads == [4, 0], f"nr {nr} read {loads}"


def test_aliases_and_host_default() -> None:
    assert build_filter(STRICT, "amd64") == build_filter(STRICT, "x86_64")
    assert build_filter(STRICT, "arm64") == build_filter(STRICT, "aarch64")
    if ON_SUPPORTED_HOST:
        assert build_filter(STRICT) == build_filter(STRICT, MACHINE)


@pytest.mark.parametrize("arch", ["i686", "armv7l", "mips64", "riscv64", ""])
def test_unsupported_arch_is_refused(arch: str) -> None:
    with pytest.raises(SeccompError, match="unsupported architecture"):
        build_filter(STRICT, arch)


@pytest.mark.parametrize("family", [-1, 0x10000, True, "2"])
def test_invalid_family_is_refused(family: object) -> None:
    options = SeccompOptions(socket_families=frozenset({family}))  # type: ignore[arg-type]
    with pytest.raises(SeccompError, match="invalid socket family"):
        build_filter(options, "x86_64")


def test_jump_overflow_is_detected_not_truncated() -> None:
    # 300 allowed families: the first `jeq family` would have to jump ~300 ahead.
    options = SeccompOptions(socket_families=frozenset(range(300)))
    with pytest.raises(SeccompError, match="does not fit"):
        build_filter(options, "x86_64")


def test_denied_names_follow_options_and_arch() -> None:
    x86 = denied_syscall_names(SeccompOptions(), "x86_64")
    arm = denied_syscall_names(SeccompOptions(), "aarch64")
    for name in ("ptrace", "keyctl", "bpf", "io_uring_setup", "mount", "unshare", "clone3"):
        assert name in x86 and name in arm
    assert {"iopl", "ioperm", "uselib"} <= set(x86)
    assert not {"iopl", "ioperm", "uselib"} & set(arm)
    assert "socket" not in x86 and "socketpair" not in x86
    relaxed = denied_syscall_names(SeccompOptions(deny_namespaces=False), "x86_64")
    assert not {"unshare", "setns", "clone", "clone3"} & set(relaxed)
    assert {"socket", "socketpair"} <= set(denied_syscall_names(STRICT, "x86_64"))
    assert len(x86) == len(set(x86))


def test_describe_filter_lines() -> None:
    lines = describe_filter(STRICT, "x86_64")
    assert lines[0].startswith("architecture: x86_64")
    assert "x32 syscalls: ENOSYS" in lines
    assert any(line.startswith("ioctl: ") and "TIOCSTI" in line for line in lines)
    assert any(line.startswith("socket: ") and "AF_INET6" in line for line in lines)
    assert "ptrace: EPERM" in lines


def _header_numbers(path: Path, prefixes: tuple[str, ...]) -> dict[str, int]:
    numbers: dict[str, int] = {}
    for line in path.read_text().splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[0] == "#define" and parts[2].isdigit():
            for prefix in prefixes:
                if parts[1].startswith(prefix):
                    numbers.setdefault(parts[1][len(prefix) :], int(parts[2]))
    return numbers


@pytest.mark.parametrize(
    ("arch", "headers", "prefixes"),
    [
        (
            "x86_64",
            ("/usr/include/x86_64-linux-gnu/asm/unistd_64.h", "/usr/include/asm/unistd_64.h"),
            ("__NR_",),
        ),
        ("aarch64", ("/usr/include/asm-generic/unistd.h",), ("__NR3264_", "__NR_")),
    ],
)
def test_syscall_tables_match_kernel_headers(
    arch: str, headers: tuple[str, ...], prefixes: tuple[str, ...]
) -> None:
    path = next((Path(h) for h in headers if Path(h).exists()), None)
    if path is None:
        pytest.skip(f"kernel headers not installed ({headers[0]}, from linux-libc-dev)")
    known = _header_numbers(path, prefixes)
    table = seccomp._ARCHES[arch].syscalls
    compared = {name: nr for name, nr in table.items() if name in known}
    # Headers older than a syscall simply lack it (open_tree_attr is 6.15, file_setattr
    # 6.17): only the recent numbers of the unified table may be missing.
    missing = set(table) - set(compared)
    assert all(table[name] >= 450 for name in missing), sorted(missing)
    assert compared == {name: known[name] for name in compared}


def test_test_numbers_agree_with_module() -> None:
    if not ON_SUPPORTED_HOST:
        pytest.skip("no raw numbers for this host")
    spec = seccomp._ARCHES[MACHINE]
    table = {**spec.syscalls, "seccomp": spec.seccomp_nr}
    assert {name: table[name] for name in RAW_NR} == RAW_NR


# --- semantics of the programs, including the aarch64 one we cannot run ---


@pytest.mark.parametrize(
    ("arch", "audit", "nr"),
    [
        ("x86_64", AUDIT_ARCH_X86_64, {"read": 0, "ptrace": 101, "ioctl": 16, "clone": 56,
                                        "clone3": 435, "socket": 41, "socketpair": 53}),
        ("aarch64", AUDIT_ARCH_AARCH64, {"read": 63, "ptrace": 117, "ioctl": 29, "clone": 220,
                                         "clone3": 435, "socket": 198, "socketpair": 199}),
    ],
    ids=["x86_64", "aarch64"],
)  # fmt: skip
def test_program_semantics(arch: str, audit: int, nr: dict[str, int]) -> None:
    prog = build_filter(STRICT, arch)
    eperm, allow = RET_ERRNO | errno.EPERM, RET_ALLOW
    assert evaluate(prog, nr["read"], audit) == allow
    assert evaluate(prog, nr["read"], 0x40000003) == RET_KILL_PROCESS  # i386
    assert evaluate(prog, nr["ptrace"], audit) == eperm
    assert evaluate(prog, nr["ioctl"], audit, (1, TIOCSTI)) == eperm
    assert evaluate(prog, nr["ioctl"], audit, (1, 0xFFFFFFFF00000000 | TIOCSTI)) == eperm
    assert evaluate(prog, nr["ioctl"], audit, (1, TIOCLINUX)) == eperm
    assert evaluate(prog, nr["ioctl"], audit, (1, termios.TCGETS)) == allow
    assert evaluate(prog, nr["clone"], audit, (CLONE_NEWUSER | signal.SIGCHLD,)) == eperm
    assert evaluate(prog, nr["clone"], audit, (0x003D0F00,)) == allow  # pthread flags
    assert evaluate(prog, nr["clone3"], audit) == RET_ERRNO | errno.ENOSYS
    sock = nr["socket"]
    assert evaluate(prog, sock, audit, (socket.AF_INET, 0x80001, 0)) == allow
    assert evaluate(prog, sock, audit, (socket.AF_INET6, 0x80001, 6)) == allow
    assert evaluate(prog, sock, audit, (socket.AF_INET, 0x80001, IPPROTO_MPTCP)) == eperm
    assert evaluate(prog, sock, audit, (socket.AF_INET, 0x80002, 0)) == eperm
    assert evaluate(prog, sock, audit, (0x100000000 | socket.AF_INET, 2, 0)) == eperm
    assert evaluate(prog, sock, audit, (AF_NETLINK, 3, 0)) == RET_ERRNO | errno.EAFNOSUPPORT
    assert evaluate(prog, sock, audit, (socket.AF_UNIX, 1, 0)) == allow
    assert evaluate(prog, nr["socketpair"], audit, (socket.AF_UNIX, 1, 0)) == allow
    if arch == "x86_64":
        assert evaluate(prog, 0x40000000 | 101, audit) == RET_ERRNO | errno.ENOSYS


def test_socketpair_keeps_af_unix_when_socket_refuses_it() -> None:
    prog = build_filter(SeccompOptions(socket_families=frozenset()), "aarch64")
    assert evaluate(prog, 198, AUDIT_ARCH_AARCH64, (socket.AF_UNIX, 1, 0)) == (
        RET_ERRNO | errno.EAFNOSUPPORT
    )
    assert evaluate(prog, 199, AUDIT_ARCH_AARCH64, (socket.AF_UNIX, 1, 0)) == RET_ALLOW
    assert evaluate(prog, 199, AUDIT_ARCH_AARCH64, (socket.AF_INET, 1, 0)) == (
        RET_ERRNO | errno.EAFNOSUPPORT
    )


# --- cost on the safe-run start-up path ---


def test_build_is_fast() -> None:
    per_build = min(timeit.repeat(lambda: build_filter(STRICT), number=20, repeat=5)) / 20
    # Well under 1 ms on a normal machine; the bound only catches an accidental blow-up
    # (with room for a machine at load 10: bench/startup.py measures the real cost).
    assert per_build < 0.03, f"{per_build * 1e3:.2f} ms per build"


def test_import_does_not_pull_in_ctypes() -> None:
    code = (
        "import sys, safe_pip.sandbox.seccomp as s; "
        "s.build_filter(s.SeccompOptions(), 'x86_64'); "
        "print('ctypes' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-S", "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert out.stdout.strip() == "False"


# ======================================================================
# Installing: the real kernel
# ======================================================================


@kernel
def test_install_sets_no_new_privs() -> None:
    def status(arm: Callable[[], None]) -> object:
        arm()
        text = Path("/proc/self/status").read_text()
        return next(line.split()[1] for line in text.splitlines() if line.startswith("NoNewPrivs"))

    assert run_child(status, None).value == "0"
    assert run_child(status, SeccompOptions()).value == "1"


@kernel
@pytest.mark.parametrize("program", [b"", b"\x00" * 7, b"\x00" * 8 * 4097])
def test_install_refuses_malformed_programs(program: bytes) -> None:
    with pytest.raises(SeccompError):
        install_filter(program)


@kernel
def test_kernel_rejects_nonsense_and_we_report_it() -> None:
    def attack(arm: Callable[[], None]) -> object:
        install_filter(b"\xff\xff\x00\x00\x00\x00\x00\x00")  # invalid opcode
        return "installed"

    outcome = run_child(attack, None)
    assert outcome.crash is not None and "SeccompError" in outcome.crash


@kernel
def test_install_falls_back_to_prctl_without_seccomp_syscall() -> None:
    # A first filter makes seccomp(2) answer ENOSYS, as on kernels before 3.17;
    # install_filter must then install through prctl(PR_SET_SECCOMP).
    audit = {"x86_64": AUDIT_ARCH_X86_64, "aarch64": AUDIT_ARCH_AARCH64}[MACHINE]
    insns = [
        (0x20, 0, 0, 4), (0x15, 1, 0, audit), (0x06, 0, 0, RET_KILL_PROCESS),
        (0x20, 0, 0, 0), (0x15, 0, 1, RAW_NR["seccomp"]),
        (0x06, 0, 0, RET_ERRNO | errno.ENOSYS), (0x06, 0, 0, RET_ALLOW),
    ]  # fmt: skip
    hide_seccomp = b"".join(struct.pack("<HBBI", *insn) for insn in insns)

    def attack(arm: Callable[[], None]) -> object:
        install_filter(hide_seccomp)
        try:
            raw_syscall("seccomp", 1, 0, 0)
        except OSError as exc:
            assert exc.errno == errno.ENOSYS
        arm()
        return raw_syscall("ptrace", 0, 0, 0, 0)  # PTRACE_TRACEME

    contrast(attack, SeccompOptions())


# --- architecture checks ---


@kernel
@pytest.mark.skipif(MACHINE != "x86_64", reason="x86_64 program on an x86_64 kernel")
def test_foreign_arch_program_kills_on_first_syscall() -> None:
    # The aarch64 program is valid BPF, so the kernel installs it; its arch check
    # then sees AUDIT_ARCH_X86_64 on the very next syscall and kills the process.
    def attack(arm: Callable[[], None]) -> object:
        arm()
        return os.getpid()

    assert run_child(attack, None).ok
    assert run_child(attack, SeccompOptions(), arch="aarch64").signal == signal.SIGSYS


@kernel
@pytest.mark.skipif(MACHINE != "x86_64", reason="i386 int 0x80 exists only on x86_64")
def test_i386_syscalls_are_killed() -> None:
    # mov eax, 20 (i386 getpid); int 0x80; ret -- a deny list keyed on x86_64
    # numbers would mean nothing for these.
    code = bytes.fromhex("b814000000cd80c3")

    def attack(arm: Callable[[], None]) -> object:
        mem = mmap.mmap(-1, mmap.PAGESIZE, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
        mem.write(code)
        address = ctypes.addressof(ctypes.c_char.from_buffer(mem))
        arm()
        return int(ctypes.CFUNCTYPE(ctypes.c_int)(address)())

    without = baseline_or_skip(attack, "this kernel has no IA-32 emulation")
    assert isinstance(without.value, int) and without.value > 0
    assert run_child(attack, SeccompOptions()).signal == signal.SIGSYS


@kernel
@pytest.mark.skipif(MACHINE != "x86_64", reason="x32 exists only on x86_64")
def test_x32_syscalls_are_refused() -> None:
    def attack(arm: Callable[[], None]) -> object:
        arm()
        result = int(_libc.syscall(ctypes.c_long(0x40000000 | 39)))  # x32 getpid
        if result == -1:
            raise OSError(ctypes.get_errno(), "x32 getpid")
        return result

    baseline_or_skip(attack, "this kernel has no x32 ABI, nothing to refuse")
    assert run_child(attack, SeccompOptions()).errno == errno.ENOSYS


# --- process inspection ---


@kernel
def test_ptrace_traceme_refused() -> None:
    def attack(arm: Callable[[], None]) -> object:
        arm()
        return raw_syscall("ptrace", 0, 0, 0, 0)  # PTRACE_TRACEME

    contrast(attack, SeccompOptions())


@kernel
def test_ptrace_attach_to_own_child_refused() -> None:
    def attack(arm: Callable[[], None]) -> object:
        target = sleeper()
        try:
            arm()
            raw_syscall("ptrace", 16, target, 0, 0)  # PTRACE_ATTACH
            _, status = os.waitpid(target, 0)
            return os.WIFSTOPPED(status)
        finally:
            reap(target)

    without, _ = contrast(attack, SeccompOptions())
    assert without.value is True


class _IoVec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]


@kernel
def test_process_vm_readv_on_own_child_refused() -> None:
    def attack(arm: Callable[[], None]) -> object:
        secret = ctypes.create_string_buffer(b"token-1234", 16)
        target = sleeper()  # same address space layout: `secret` is at the same address
        try:
            arm()
            stolen = ctypes.create_string_buffer(16)
            local = _IoVec(ctypes.addressof(stolen), 16)
            remote = _IoVec(ctypes.addressof(secret), 16)
            raw_syscall(
                "process_vm_readv",
                target,
                ctypes.c_void_p(ctypes.addressof(local)),
                1,
                ctypes.c_void_p(ctypes.addressof(remote)),
                1,
                0,
            )
            return stolen.value.decode()
        finally:
            reap(target)

    without, _ = contrast(attack, SeccompOptions())
    assert without.value == "token-1234"


# --- kernel keyrings ---


@kernel
def test_keyctl_refused() -> None:
    def attack(arm: Callable[[], None]) -> object:
        arm()
        return raw_syscall("keyctl", 0, -4 & 0xFFFFFFFF, 1)  # GET_KEYRING_ID(@u, create)

    without, _ = contrast(attack, SeccompOptions())
    assert isinstance(without.value, int) and without.value > 0


@kernel
def test_add_key_refused() -> None:
    def attack(arm: Callable[[], None]) -> object:
        arm()
        payload = b"secret"
        return raw_syscall(
            "add_key",
            ctypes.c_char_p(b"user"),
            ctypes.c_char_p(b"safe-pip-test"),
            ctypes.c_char_p(payload),
            len(payload),
            -2 & 0xFFFFFFFF,  # KEY_SPEC_PROCESS_KEYRING
        )

    contrast(attack, SeccompOptions())


# --- namespaces ---


@kernel
@needs_userns
def test_unshare_newuser_refused() -> None:
    def attack(arm: Callable[[], None]) -> object:
        arm()
        unshare(CLONE_NEWUSER)
        return True

    contrast(attack, SeccompOptions())


@kernel
@needs_userns
def test_unshare_allowed_when_namespaces_are_not_denied() -> None:
    def attack(arm: Callable[[], None]) -> object:
        arm()
        unshare(CLONE_NEWUSER)
        return True

    assert run_child(attack, SeccompOptions(deny_namespaces=False)).ok


@kernel
@needs_userns
def test_clone_with_newuser_refused() -> None:
    def attack(arm: Callable[[], None]) -> object:
        arm()
        pid = raw_syscall("clone", CLONE_NEWUSER | signal.SIGCHLD, 0, 0, 0, 0)
        if pid == 0:  # pragma: no cover - the raw clone's child
            os._exit(7)
        _, status = os.waitpid(pid, 0)
        return os.WEXITSTATUS(status)

    without, _ = contrast(attack, SeccompOptions())
    assert without.value == 7


@kernel
@needs_userns
def test_setns_refused() -> None:
    def attack(arm: Callable[[], None]) -> object:
        unshare(CLONE_NEWUSER | CLONE_NEWNET)  # we administer this userns and netns
        fd = os.open("/proc/self/ns/net", os.O_RDONLY)
        arm()
        return raw_syscall("setns", fd, CLONE_NEWNET)

    contrast(attack, SeccompOptions())


@kernel
def test_clone3_gets_enosys_so_libc_falls_back() -> None:
    def attack(arm: Callable[[], None]) -> object:
        arm()
        return raw_syscall("clone3", 0, 0)  # size 0: EINVAL from a real clone3

    assert run_child(attack, None).errno == errno.EINVAL
    assert run_child(attack, SeccompOptions()).errno == errno.ENOSYS


# --- mounts ---


@kernel
@needs_userns
def test_mount_refused(tmp_path: Path) -> None:
    target = str(tmp_path).encode()

    def attack(arm: Callable[[], None]) -> object:
        unshare(CLONE_NEWUSER | CLONE_NEWNS)  # a private mount namespace we own
        arm()
        return raw_syscall(
            "mount", ctypes.c_char_p(b"none"), ctypes.c_char_p(target), ctypes.c_char_p(b"tmpfs"),
            0, 0,
        )  # fmt: skip

    contrast(attack, SeccompOptions())


# --- setuid/setgid bits: a file that runs with its owner's rights later, outside ---

S_ISUID, S_ISGID = 0o4000, 0o2000
AT_FDCWD = -100


def _setid_bits(path: Path) -> int:
    return path.stat().st_mode & (S_ISUID | S_ISGID)


@kernel
@pytest.mark.parametrize("bits", [S_ISUID, S_ISGID], ids=["setuid", "setgid"])
@pytest.mark.parametrize("how", ["chmod", "fchmod", "fchmodat2"])
def test_setid_mode_change_refused(tmp_path: Path, how: str, bits: int) -> None:
    target = tmp_path / "tool"
    target.write_bytes(b"#!/bin/sh\n")

    def attack(arm: Callable[[], None]) -> object:
        arm()
        if how == "chmod":
            os.chmod(target, 0o755 | bits)
        elif how == "fchmod":
            fd = os.open(target, os.O_RDONLY)
            try:
                os.fchmod(fd, 0o755 | bits)
            finally:
                os.close(fd)
        else:  # the newest spelling (Linux 6.6), raw: libc may not have it yet
            path = ctypes.c_char_p(str(target).encode())
            try:
                raw_syscall("fchmodat2", AT_FDCWD, path, 0o755 | bits, 0)
            except OSError as exc:
                if exc.errno == errno.ENOSYS:
                    return "no fchmodat2"
                raise
        return _setid_bits(target)

    without = run_child(attack, None)
    if without.value == "no fchmodat2":
        pytest.skip("this kernel has no fchmodat2")
    assert without.ok and without.value == bits, without
    os.chmod(target, 0o644)
    with_filter = run_child(attack, SeccompOptions())
    assert with_filter.errno == errno.EPERM, with_filter
    assert _setid_bits(target) == 0


@kernel
@pytest.mark.parametrize("how", ["open", "mknod"])
def test_setuid_file_cannot_be_created(tmp_path: Path, how: str) -> None:
    target = tmp_path / "made"

    def attack(arm: Callable[[], None]) -> object:
        arm()
        if how == "open":
            os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o4755))
        else:
            os.mknod(target, 0o100755 | S_ISUID)
        return _setid_bits(target)

    old_umask = os.umask(0o022)
    try:
        without = run_child(attack, None)
        assert without.ok and without.value == S_ISUID, without
        target.unlink()
        assert run_child(attack, SeccompOptions()).errno == errno.EPERM
    finally:
        os.umask(old_umask)
    assert not target.exists()


@kernel
def test_plain_modes_and_opens_still_work(tmp_path: Path) -> None:
    """Only the two bits are refused; an open without O_CREAT never looks at its mode
    argument (C callers leave garbage there), and ordinary chmods pass."""
    existing = tmp_path / "existing"
    existing.write_text("x")
    path = ctypes.c_char_p(str(existing).encode())

    def work(arm: Callable[[], None]) -> object:
        arm()
        fd = raw_syscall("openat", AT_FDCWD, path, os.O_RDONLY, 0o7777)  # garbage mode
        os.close(fd)
        os.chmod(existing, 0o1755)  # sticky is harmless
        made = tmp_path / "made"
        os.close(os.open(made, os.O_WRONLY | os.O_CREAT, 0o755))
        return oct(existing.stat().st_mode & 0o7777)

    assert run_child(work, SeccompOptions()).value == "0o1755"


@kernel
def test_openat2_gets_enosys(tmp_path: Path) -> None:
    """openat2 keeps its mode in memory BPF cannot read: callers must fall back."""
    how = ctypes.create_string_buffer(struct.pack("=QQQ", os.O_RDONLY, 0, 0), 24)
    path = ctypes.c_char_p(str(tmp_path).encode())

    def attack(arm: Callable[[], None]) -> object:
        arm()
        fd = raw_syscall("openat2", AT_FDCWD, path, how, 24)
        os.close(fd)
        return True

    contrast(attack, SeccompOptions(), expect_errno=errno.ENOSYS)


@pytest.mark.parametrize(
    ("arch", "audit", "nr"),
    [
        ("x86_64", AUDIT_ARCH_X86_64, {"openat": 257, "open": 2, "chmod": 90, "fchmodat": 268,
                                        "fchmodat2": 452, "mknodat": 259}),
        ("aarch64", AUDIT_ARCH_AARCH64, {"openat": 56, "fchmodat": 53, "fchmodat2": 452,
                                         "mknodat": 33}),
    ],
    ids=["x86_64", "aarch64"],
)  # fmt: skip
def test_setid_semantics_on_both_arches(arch: str, audit: int, nr: dict[str, int]) -> None:
    prog = build_filter(SeccompOptions(), arch)
    eperm, allow = RET_ERRNO | errno.EPERM, RET_ALLOW
    high = 0xFFFFFFFF00000000
    assert evaluate(prog, nr["openat"], audit, (0, 0, os.O_CREAT, 0o4755)) == eperm
    assert evaluate(prog, nr["openat"], audit, (0, 0, 0o20200000, 0o2700)) == eperm  # O_TMPFILE
    assert evaluate(prog, nr["openat"], audit, (0, 0, os.O_CREAT, high | 0o755)) == allow
    assert evaluate(prog, nr["openat"], audit, (0, 0, os.O_RDONLY, 0o6777)) == allow
    assert evaluate(prog, nr["fchmodat"], audit, (0, 0, 0o4755)) == eperm
    assert evaluate(prog, nr["fchmodat"], audit, (0, 0, 0o1777)) == allow
    assert evaluate(prog, nr["fchmodat2"], audit, (0, 0, 0o2755, 0)) == eperm
    assert evaluate(prog, nr["mknodat"], audit, (0, 0, 0o104755, 0)) == eperm
    if arch == "x86_64":
        assert evaluate(prog, nr["open"], audit, (0, os.O_CREAT, 0o4755)) == eperm
        assert evaluate(prog, nr["chmod"], audit, (0, 0o6755)) == eperm


@kernel
@needs_userns
def test_chroot_refused() -> None:
    def attack(arm: Callable[[], None]) -> object:
        unshare(CLONE_NEWUSER)  # CAP_SYS_CHROOT in our own user namespace
        arm()
        return raw_syscall("chroot", ctypes.c_char_p(b"/"))

    contrast(attack, SeccompOptions())


# --- kernel attack surface ---


@kernel
def test_io_uring_setup_refused() -> None:
    def attack(arm: Callable[[], None]) -> object:
        params = ctypes.create_string_buffer(120)  # struct io_uring_params, zeroed
        arm()
        fd = raw_syscall("io_uring_setup", 1, ctypes.c_void_p(ctypes.addressof(params)))
        os.close(fd)
        return True

    baseline_or_skip(attack, "io_uring is disabled on this kernel (kernel.io_uring_disabled)")
    assert run_child(attack, SeccompOptions()).errno == errno.EPERM


@kernel
def test_userfaultfd_refused() -> None:
    def attack(arm: Callable[[], None]) -> object:
        arm()
        # UFFD_USER_MODE_ONLY works unprivileged even with vm.unprivileged_userfaultfd=0.
        fd = raw_syscall("userfaultfd", os.O_CLOEXEC | 1)
        os.close(fd)
        return True

    baseline_or_skip(attack, "userfaultfd unavailable to this user")
    assert run_child(attack, SeccompOptions()).errno == errno.EPERM


@kernel
def test_perf_event_open_refused() -> None:
    def attack(arm: Callable[[], None]) -> object:
        attr = bytearray(128)  # struct perf_event_attr (PERF_ATTR_SIZE_VER7 is 128)
        struct.pack_into("<IIQ", attr, 0, 1, 128, 1)  # SOFTWARE, size, TASK_CLOCK
        struct.pack_into("<Q", attr, 40, (1 << 5) | (1 << 6))  # exclude_kernel, exclude_hv
        buf = ctypes.create_string_buffer(bytes(attr), 128)
        arm()
        fd = raw_syscall("perf_event_open", ctypes.c_void_p(ctypes.addressof(buf)), 0, -1, -1, 0)
        os.close(fd)
        return True

    baseline_or_skip(attack, "perf events are closed to this user (kernel.perf_event_paranoid)")
    assert run_child(attack, SeccompOptions()).errno == errno.EPERM


@kernel
def test_bpf_refused() -> None:
    def attack(arm: Callable[[], None]) -> object:
        attr = ctypes.create_string_buffer(struct.pack("<IIII", 2, 4, 4, 1), 128)  # ARRAY map
        arm()
        fd = raw_syscall("bpf", 0, ctypes.c_void_p(ctypes.addressof(attr)), 128)  # MAP_CREATE
        os.close(fd)
        return True

    baseline_or_skip(attack, "bpf() needs CAP_BPF here (kernel.unprivileged_bpf_disabled)")
    assert run_child(attack, SeccompOptions()).errno == errno.EPERM


@kernel
def test_personality_only_linux_and_query() -> None:
    def change(arm: Callable[[], None]) -> object:
        arm()
        return raw_syscall("personality", 0x0040000)  # ADDR_NO_RANDOMIZE

    def query(arm: Callable[[], None]) -> object:
        arm()
        return raw_syscall("personality", 0xFFFFFFFF)

    contrast(change, SeccompOptions())
    assert run_child(query, SeccompOptions()).ok


# --- terminals ---


def _controlling_pty() -> tuple[int, int]:
    """Open a pty and make it this (forked) process's controlling terminal."""
    master, slave = pty.openpty()
    os.setsid()
    fcntl.ioctl(slave, TIOCSCTTY, 0)
    tty.setraw(slave)
    return master, slave


def _read_injected(slave: int) -> bytes:
    ready, _, _ = select.select([slave], [], [], 2)
    return os.read(slave, 16) if ready else b""


@kernel
def test_tiocsti_refused() -> None:
    def attack(arm: Callable[[], None]) -> object:
        _, slave = _controlling_pty()
        arm()
        fcntl.ioctl(slave, TIOCSTI, b"x")
        return _read_injected(slave).decode()

    without = baseline_or_skip(attack, "TIOCSTI disabled for this user (dev.tty.legacy_tiocsti=0)")
    assert without.value == "x"
    assert run_child(attack, STRICT).errno == errno.EPERM
    assert run_child(attack, SeccompOptions()).errno == errno.EPERM


@kernel
def test_tiocsti_with_high_bits_in_cmd_refused() -> None:
    # CVE-2019-10063: the kernel truncates cmd to 32 bits, so a 64-bit compare
    # against 0x5412 would let 0xffffffff00005412 through.
    def attack(arm: Callable[[], None]) -> object:
        _, slave = _controlling_pty()
        arm()
        raw_syscall("ioctl", slave, 0xFFFFFFFF00000000 | TIOCSTI, ctypes.c_char_p(b"y"))
        return _read_injected(slave).decode()

    without = baseline_or_skip(attack, "TIOCSTI disabled for this user (dev.tty.legacy_tiocsti=0)")
    assert without.value == "y"
    assert run_child(attack, SeccompOptions()).errno == errno.EPERM


@kernel
def test_tioclinux_refused() -> None:
    # TIOCLINUX only works on a virtual console, which tests cannot own; on a pty
    # the kernel answers something other than EPERM, the filter answers EPERM.
    def attack(arm: Callable[[], None]) -> object:
        _, slave = _controlling_pty()
        arm()
        return fcntl.ioctl(slave, TIOCLINUX, b"\x0b" + b"\x00" * 7).hex()

    assert run_child(attack, None).errno != errno.EPERM
    assert run_child(attack, SeccompOptions()).errno == errno.EPERM


@kernel
def test_ordinary_tty_ioctls_still_work() -> None:
    def attack(arm: Callable[[], None]) -> object:
        _, slave = _controlling_pty()
        arm()
        attrs = termios.tcgetattr(slave)
        termios.tcsetattr(slave, termios.TCSANOW, attrs)
        return os.isatty(slave)

    assert run_child(attack, STRICT).value is True


# --- sockets ---


def _open_socket(family: int, kind: int, proto: int = 0) -> Attack:
    def attack(arm: Callable[[], None]) -> object:
        arm()
        with socket.socket(family, kind, proto):
            return True

    return attack


@kernel
def test_udp_refused_with_inet_stream_only() -> None:
    # Python adds SOCK_CLOEXEC to the type: only a masked compare catches this.
    contrast(_open_socket(socket.AF_INET, socket.SOCK_DGRAM), STRICT)
    contrast(_open_socket(socket.AF_INET, socket.SOCK_DGRAM), SeccompOptions(inet_stream_only=True))


@kernel
def test_udp6_refused_with_inet_stream_only() -> None:
    attack = _open_socket(socket.AF_INET6, socket.SOCK_DGRAM)
    baseline_or_skip(attack, "no IPv6 here")
    assert run_child(attack, STRICT).errno == errno.EPERM


@kernel
def test_udp_via_high_bits_in_family_refused() -> None:
    # The kernel reads family as an int: 0x1_00000002 is AF_INET.  A 64-bit compare
    # would not see AF_INET and skip the stream-only check.
    def attack(arm: Callable[[], None]) -> object:
        arm()
        fd = raw_syscall("socket", (1 << 32) | socket.AF_INET, socket.SOCK_DGRAM, 0)
        os.close(fd)
        return True

    contrast(attack, STRICT)


@kernel
def test_mptcp_refused_with_inet_stream_only() -> None:
    attack = _open_socket(socket.AF_INET, socket.SOCK_STREAM, IPPROTO_MPTCP)
    baseline_or_skip(attack, "MPTCP is not enabled on this kernel (net.mptcp.enabled)")
    assert run_child(attack, STRICT).errno == errno.EPERM


@kernel
def test_udp_allowed_without_socket_options() -> None:
    assert run_child(_open_socket(socket.AF_INET, socket.SOCK_DGRAM), SeccompOptions()).ok


@kernel
@needs_userns
@pytest.mark.parametrize(
    ("family", "kind", "proto", "expect"),
    [
        (socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP, errno.EPERM),
        (AF_PACKET, socket.SOCK_RAW, 0, errno.EAFNOSUPPORT),
    ],
    ids=["inet-raw", "packet"],
)
def test_raw_and_packet_sockets_refused(family: int, kind: int, proto: int, expect: int) -> None:
    # CAP_NET_RAW comes from a user+network namespace of our own, so the attack
    # also works unprivileged without the filter.
    def attack(arm: Callable[[], None]) -> object:
        unshare(CLONE_NEWUSER | CLONE_NEWNET)
        arm()
        with socket.socket(family, kind, proto):
            return True

    contrast(attack, STRICT, expect)


@kernel
def test_netlink_refused_by_family_allowlist() -> None:
    attack = _open_socket(AF_NETLINK, socket.SOCK_RAW, 0)
    contrast(attack, STRICT, errno.EAFNOSUPPORT)


@kernel
def test_af_unix_refused_but_socketpair_works() -> None:
    no_families = SeccompOptions(socket_families=frozenset())

    def pair(arm: Callable[[], None]) -> object:
        arm()
        left, right = socket.socketpair()
        with left, right:
            left.sendall(b"ping")
            return right.recv(4).decode()

    contrast(_open_socket(socket.AF_UNIX, socket.SOCK_STREAM), no_families, errno.EAFNOSUPPORT)
    assert run_child(pair, no_families).value == "ping"
    assert run_child(_open_socket(socket.AF_INET, socket.SOCK_STREAM), no_families).errno == (
        errno.EAFNOSUPPORT
    )


# --- what must keep working ---


def _tcp_roundtrip(family: int, host: str) -> Attack:
    def attack(arm: Callable[[], None]) -> object:
        arm()
        with socket.socket(family, socket.SOCK_STREAM) as server:
            server.bind((host, 0))
            server.listen()
            with socket.create_connection(server.getsockname()[:2]) as client:
                conn, _ = server.accept()
                with conn:
                    client.sendall(b"hello")
                    return conn.recv(5).decode()

    return attack


@kernel
def test_tcp_streams_still_work_with_inet_stream_only() -> None:
    assert run_child(_tcp_roundtrip(socket.AF_INET, "127.0.0.1"), STRICT).value == "hello"
    explicit = _open_socket(socket.AF_INET, socket.SOCK_STREAM | socket.SOCK_NONBLOCK, 6)
    assert run_child(explicit, STRICT).ok


@kernel
def test_tcp6_streams_still_work_with_inet_stream_only() -> None:
    attack = _tcp_roundtrip(socket.AF_INET6, "::1")
    baseline_or_skip(attack, "no IPv6 loopback here")
    assert run_child(attack, STRICT).value == "hello"


@kernel
def test_subprocess_still_works() -> None:
    def attack(arm: Callable[[], None]) -> object:
        arm()
        out = subprocess.run(
            [sys.executable, "-c", "print('child ok')"], capture_output=True, text=True, check=True
        )
        return out.stdout.strip()

    assert run_child(attack, STRICT).value == "child ok"


@kernel
def test_posix_spawn_falls_back_from_clone3() -> None:
    # glibc's posix_spawn tries clone3 first; ENOSYS makes it use clone().
    def attack(arm: Callable[[], None]) -> object:
        arm()
        pid = os.posix_spawn("/bin/sh", ["sh", "-c", "exit 3"], {})
        _, status = os.waitpid(pid, 0)
        return os.WEXITSTATUS(status)

    assert run_child(attack, STRICT).value == 3


@kernel
def test_threads_still_work() -> None:
    def attack(arm: Callable[[], None]) -> object:
        arm()
        results: list[int] = []
        workers = [threading.Thread(target=results.append, args=(i,)) for i in range(4)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        return sorted(results)

    assert run_child(attack, STRICT).value == [0, 1, 2, 3]


def _square(value: int) -> int:
    return value * value


@kernel
def test_multiprocessing_fork_still_works() -> None:
    # Pool uses fork, pipes and threads; Pipe() (duplex) uses socketpair(AF_UNIX),
    # here with socket() refused for every family.
    def attack(arm: Callable[[], None]) -> object:
        arm()
        ctx = multiprocessing.get_context("fork")
        with ctx.Pool(2) as pool:
            squares = pool.map(_square, [1, 2, 3])
        left, right = ctx.Pipe()
        left.send("over the pair")
        return [squares, right.recv()]

    outcome = run_child(attack, SeccompOptions(socket_families=frozenset()))
    assert outcome.value == [[1, 4, 9], "over the pair"]


@kernel
def test_pipes_still_work() -> None:
    def attack(arm: Callable[[], None]) -> object:
        arm()
        read_end, write_end = os.pipe()
        os.write(write_end, b"data")
        return os.read(read_end, 4).decode()

    assert run_child(attack, STRICT).value == "data"


@kernel
def test_filter_survives_exec() -> None:
    script = (
        "import ctypes, sys\n"
        "libc = ctypes.CDLL(None, use_errno=True)\n"
        f"rc = libc.unshare({CLONE_NEWUSER})\n"
        "print(rc, ctypes.get_errno())\n"
    )

    def attack(arm: Callable[[], None]) -> object:
        arm()
        out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
        return out.stdout.split()

    assert run_child(attack, SeccompOptions()).value == ["-1", str(errno.EPERM)]


def _seccomp_status() -> str:
    status = Path("/proc/self/status")
    if not status.exists():
        return ""
    lines = status.read_text().splitlines()
    return " ".join(line for line in lines if line.startswith("Seccomp"))


@pytest.fixture(autouse=True)
def _no_filter_leaks_into_pytest() -> Iterator[None]:
    """A filter installed in the pytest process itself (a harness bug) would
    silently change every later baseline; fail loudly instead."""
    before = _seccomp_status()
    yield
    assert _seccomp_status() == before


@pytest.mark.parametrize(
    ("arch", "audit", "nr"),
    [
        ("x86_64", AUDIT_ARCH_X86_64, {"openat": 257, "read": 0, "mkdirat": 258, "creat": 85,
                                        "renameat2": 316, "unlinkat": 263, "mknodat": 259}),
        ("aarch64", AUDIT_ARCH_AARCH64, {"openat": 56, "read": 63, "mkdirat": 34,
                                         "renameat2": 276, "unlinkat": 35, "mknodat": 33}),
    ],
    ids=["x86_64", "aarch64"],
)  # fmt: skip
def test_write_notifications_leave_reads_on_the_fast_path(
    arch: str, audit: int, nr: dict[str, int]
) -> None:
    """With ``notify_writes`` (the filesystem broker) every call that can write through
    a path stops for the broker; an open that only reads never does."""
    prog = build_filter(SeccompOptions(notify_writes=True), arch)
    notif, eperm, allow = 0x7FC00000, RET_ERRNO | errno.EPERM, RET_ALLOW
    openat = nr["openat"]
    o_tmpfile = 0o20200000
    for flags in (os.O_RDONLY, os.O_RDONLY | os.O_APPEND, os.O_RDONLY | os.O_DIRECTORY):
        assert evaluate(prog, openat, audit, (0, 0, flags, 0o777)) == allow, oct(flags)
    assert evaluate(prog, openat, audit, (0, 0, 1 << 32 | os.O_RDONLY, 0)) == allow
    for flags in (os.O_WRONLY, os.O_RDWR, os.O_RDONLY | os.O_CREAT, os.O_RDONLY | os.O_TRUNC,
                  o_tmpfile | os.O_WRONLY, os.O_WRONLY | os.O_CREAT | os.O_EXCL):  # fmt: skip
        assert evaluate(prog, openat, audit, (0, 0, flags, 0o644)) == notif, oct(flags)
    assert evaluate(prog, openat, audit, (0, 0, os.O_WRONLY | os.O_CREAT, 0o4755)) == eperm
    for name in ("mkdirat", "renameat2", "unlinkat"):
        assert evaluate(prog, nr[name], audit, (0, 0, 0o755)) == notif, name
    assert evaluate(prog, nr["mknodat"], audit, (0, 0, 0o100644, 0)) == notif
    assert evaluate(prog, nr["mknodat"], audit, (0, 0, 0o104755, 0)) == eperm
    assert evaluate(prog, nr["read"], audit) == allow
    if arch == "x86_64":
        assert evaluate(prog, nr["creat"], audit, (0, 0o644)) == notif
        assert evaluate(prog, nr["creat"], audit, (0, 0o4755)) == eperm
    # Without the option nothing stops: the broker is off.
    plain = build_filter(SeccompOptions(), arch)
    assert evaluate(plain, openat, audit, (0, 0, os.O_WRONLY, 0)) == allow
    assert evaluate(plain, nr["mkdirat"], audit, (0, 0, 0o755)) == allow


@pytest.mark.parametrize(
    ("arch", "audit", "nr"),
    [
        ("x86_64", AUDIT_ARCH_X86_64, {"fchmodat": 268, "fchmod": 91, "fchownat": 260,
            "utimensat": 280, "setxattr": 188, "fremovexattr": 199, "inotify_add_watch": 254,
            "ioctl": 16, "socketpair": 53, "listen": 50, "shmget": 29, "msgrcv": 70,
            "mq_open": 240, "fanotify_init": 300, "file_setattr": 469, "read": 0}),
        ("aarch64", AUDIT_ARCH_AARCH64, {"fchmodat": 53, "fchmod": 52, "fchownat": 54,
            "utimensat": 88, "setxattr": 5, "fremovexattr": 16, "inotify_add_watch": 27,
            "ioctl": 29, "socketpair": 199, "listen": 201, "shmget": 194, "msgrcv": 188,
            "mq_open": 180, "fanotify_init": 262, "file_setattr": 469, "read": 63}),
    ],
    ids=["x86_64", "aarch64"],
)  # fmt: skip
def test_fallback_options_send_unmediated_calls_to_the_broker(
    arch: str, audit: int, nr: dict[str, int]
) -> None:
    """Fallback mode's options: metadata changes, inotify watches, inode-flag ioctls and
    datagram socketpairs stop for the broker; host IPC, listen and fanotify are refused;
    set-id modes are still refused before any broker sees them."""
    options = SeccompOptions(
        socket_families=frozenset(),
        supervise_metadata=True,
        deny_host_ipc=True,
        deny_listen=True,
        notify_dgram_pairs=True,
    )
    prog = build_filter(options, arch)
    notif, allow = 0x7FC00000, RET_ALLOW
    for name in ("fchmod", "fchownat", "utimensat", "setxattr", "fremovexattr"):
        assert evaluate(prog, nr[name], audit, (3, 0, 0, 0, 0)) == notif, name
    assert evaluate(prog, nr["inotify_add_watch"], audit, (3, 0, 0xFFF)) == notif
    assert evaluate(prog, nr["fchmodat"], audit, (0, 0, 0o644)) == notif
    assert evaluate(prog, nr["fchmodat"], audit, (0, 0, 0o4755)) == RET_ERRNO | errno.EPERM
    assert evaluate(prog, nr["ioctl"], audit, (3, 0x40086602, 0)) == notif  # FS_IOC_SETFLAGS
    assert evaluate(prog, nr["ioctl"], audit, (3, termios.TCGETS, 0)) == allow
    assert evaluate(prog, nr["socketpair"], audit, (socket.AF_UNIX, 0x80002, 0)) == notif
    assert evaluate(prog, nr["socketpair"], audit, (socket.AF_UNIX, 0x80001, 0)) == allow
    assert evaluate(prog, nr["socketpair"], audit, (socket.AF_UNIX, 0x80005, 0)) == allow
    assert evaluate(prog, nr["listen"], audit, (3, 128)) == RET_ERRNO | errno.EACCES
    for name in ("shmget", "msgrcv", "mq_open", "fanotify_init"):
        assert evaluate(prog, nr[name], audit) == RET_ERRNO | errno.EPERM, name
    assert evaluate(prog, nr["file_setattr"], audit) == RET_ERRNO | errno.ENOSYS
    assert evaluate(prog, nr["read"], audit) == allow
    assert SeccompOptions(supervise_metadata=True).needs_listener
    # Without the options (namespace mode) none of this stops or is refused.
    plain = build_filter(SeccompOptions(socket_families=frozenset()), arch)
    for name in ("fchmod", "utimensat", "inotify_add_watch", "listen", "shmget"):
        assert evaluate(plain, nr[name], audit, (3, 0, 0, 0)) == allow, name
    assert evaluate(plain, nr["socketpair"], audit, (socket.AF_UNIX, 2, 0)) == allow


@pytest.mark.parametrize(
    ("arch", "audit", "nr"),
    [
        ("x86_64", AUDIT_ARCH_X86_64, {"setpriority": 141, "ioprio_set": 251,
                                        "sched_setaffinity": 203, "prlimit64": 302}),
        ("aarch64", AUDIT_ARCH_AARCH64, {"setpriority": 140, "ioprio_set": 30,
                                         "sched_setaffinity": 122, "prlimit64": 261}),
    ],
    ids=["x86_64", "aarch64"],
)  # fmt: skip
def test_own_tasks_only(arch: str, audit: int, nr: dict[str, int]) -> None:
    """Itself at once, another pid through the broker, another group or every process
    of the user never; a prlimit query passes."""
    prog = build_filter(SeccompOptions(own_tasks_only=True), arch)
    notif, eperm, allow = 0x7FC00000, RET_ERRNO | errno.EPERM, RET_ALLOW
    prio_process, prio_pgrp, prio_user = 0, 1, 2
    setpriority = nr["setpriority"]
    assert evaluate(prog, setpriority, audit, (prio_process, 0, 5)) == allow
    assert evaluate(prog, setpriority, audit, (prio_process, 4242, 5)) == notif
    assert evaluate(prog, setpriority, audit, (prio_pgrp, 0, 5)) == allow
    assert evaluate(prog, setpriority, audit, (prio_pgrp, 4242, 5)) == eperm
    assert evaluate(prog, setpriority, audit, (prio_user, 0, 5)) == eperm
    assert evaluate(prog, setpriority, audit, (prio_user, 1000, 5)) == eperm
    assert evaluate(prog, nr["ioprio_set"], audit, (1, 0, 0)) == allow
    assert evaluate(prog, nr["ioprio_set"], audit, (1, 4242, 0)) == notif
    assert evaluate(prog, nr["ioprio_set"], audit, (3, 1000, 0)) == eperm
    assert evaluate(prog, nr["sched_setaffinity"], audit, (0, 8, 0)) == allow
    assert evaluate(prog, nr["sched_setaffinity"], audit, (4242, 8, 0)) == notif
    prlimit = nr["prlimit64"]
    assert evaluate(prog, prlimit, audit, (0, 4, 0x7FFF0000, 0)) == allow
    assert evaluate(prog, prlimit, audit, (4242, 4, 0, 0x7FFF0000)) == allow  # a query
    assert evaluate(prog, prlimit, audit, (4242, 4, 0x7FFF0000, 0)) == notif
    assert evaluate(prog, prlimit, audit, (4242, 4, 1 << 32, 0)) == notif  # high word
    plain = build_filter(SeccompOptions(), arch)
    assert evaluate(plain, setpriority, audit, (prio_user, 1000, 5)) == allow
