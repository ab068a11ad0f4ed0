"""The Landlock binding against the real kernel: every restriction is shown twice.

Each attack runs in a forked child, once without a ruleset (it must work, so the test
can tell success from failure) and once confined (it must fail with the kernel's
errno).  Rulesets are built in the parent and enforced in the child, the way the
launcher prepares everything before the fork-and-exec.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import secrets
import signal
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from landlock_harness import outcome

from safe_pip.sandbox.landlock import (
    FILE_ONLY,
    READ,
    WRITE,
    AccessFs,
    AccessNet,
    LandlockError,
    Ruleset,
    Scope,
    abi_version,
    fs_access_for_abi,
    net_access_for_abi,
    scopes_for_abi,
)

ABI = abi_version()
needs_landlock = pytest.mark.skipif(ABI < 1, reason="Landlock is unavailable on this kernel")
needs_net = pytest.mark.skipif(ABI < 4, reason="Landlock TCP rules need ABI 4")
needs_scopes = pytest.mark.skipif(ABI < 6, reason="Landlock scopes need ABI 6")


def read_file(path: Path) -> Callable[[], bytes]:
    """An action that reads ``path`` with bare syscalls (no imports after confinement)."""

    def action() -> bytes:
        fd = os.open(path, os.O_RDONLY)
        try:
            return os.read(fd, 4096)
        finally:
            os.close(fd)

    return action


def write_file(path: Path, data: bytes = b"x") -> Callable[[], None]:
    """An action that creates or appends to ``path``."""

    def action() -> None:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)

    return action


@pytest.fixture
def dirs(tmp_path: Path) -> tuple[Path, Path]:
    """An ``inside`` directory to grant and an ``outside`` one holding a secret."""
    inside, outside = tmp_path / "inside", tmp_path / "outside"
    inside.mkdir()
    outside.mkdir()
    (inside / "data.txt").write_text("public")
    (outside / "secret.txt").write_text(secrets.token_hex(8))
    return inside, outside


# --------------------------------------------------------------------------- pure


def test_rights_per_abi_follow_the_uapi() -> None:
    assert int(fs_access_for_abi(0)) == 0
    assert int(fs_access_for_abi(1)) == 0x1FFF
    assert fs_access_for_abi(2) == fs_access_for_abi(1) | AccessFs.REFER
    assert fs_access_for_abi(3) == fs_access_for_abi(2) | AccessFs.TRUNCATE
    assert fs_access_for_abi(4) == fs_access_for_abi(3)
    assert fs_access_for_abi(5) == WRITE == fs_access_for_abi(7)
    assert AccessFs.MAKE_SYM == 1 << 12 and AccessFs.IOCTL_DEV == 1 << 15
    assert int(net_access_for_abi(3)) == 0 and int(net_access_for_abi(4)) == 3
    assert int(scopes_for_abi(5)) == 0 and int(scopes_for_abi(6)) == 3
    assert READ == AccessFs.EXECUTE | AccessFs.READ_FILE | AccessFs.READ_DIR
    assert not FILE_ONLY & (AccessFs.READ_DIR | AccessFs.MAKE_REG | AccessFs.REFER)


# --------------------------------------------------------------------------- probe


@needs_landlock
def test_abi_matches_a_raw_probe() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    raw = libc.syscall(ctypes.c_long(444), None, ctypes.c_size_t(0), ctypes.c_uint32(1))
    assert abi_version() == raw >= 1


@needs_landlock
def test_stale_errno_is_not_taken_for_failure() -> None:
    """The PyPI ``landlock`` package raised EBADF here (PLATFORM-NOTES)."""
    ctypes.set_errno(errno.EBADF)
    with Ruleset() as ruleset:
        assert ruleset.add_path("/", READ)


@needs_landlock
def test_empty_ruleset_is_a_clear_error() -> None:
    with pytest.raises(LandlockError) as caught:
        Ruleset(handled_fs=AccessFs(0))
    assert caught.value.errno == errno.ENOMSG
    assert isinstance(caught.value, OSError)


@needs_landlock
def test_older_abi_struct_is_accepted_and_reports_what_it_drops() -> None:
    with Ruleset(abi=3, handled_net=AccessNet.CONNECT_TCP, scopes=Scope.SIGNAL) as ruleset:
        assert ruleset.handled_fs == fs_access_for_abi(3)
        assert ruleset.unenforced() == (AccessFs(0), AccessNet.CONNECT_TCP, Scope.SIGNAL)


@needs_landlock
def test_closed_ruleset_refuses_rules(tmp_path: Path) -> None:
    ruleset = Ruleset()
    ruleset.close()
    ruleset.close()  # idempotent
    with pytest.raises(ValueError, match="closed"):
        ruleset.add_path(tmp_path, READ)


# --------------------------------------------------------------------------- filesystem


@needs_landlock
def test_read_outside_the_grants_is_denied(dirs: tuple[Path, Path]) -> None:
    inside, outside = dirs
    steal = read_file(outside / "secret.txt")
    assert outcome(steal) == "ok"
    with Ruleset() as ruleset:
        ruleset.add_path(inside, READ)
        assert outcome(steal, ruleset) == "EACCES"
        assert outcome(read_file(inside / "data.txt"), ruleset) == "ok"
        assert outcome(write_file(inside / "data.txt"), ruleset) == "EACCES"


@needs_landlock
def test_missing_path_is_reported_not_raised(tmp_path: Path) -> None:
    with Ruleset() as ruleset:
        assert ruleset.add_path(tmp_path / "absent", READ) is False
        assert ruleset.add_path(tmp_path / "absent" / "deeper", READ) is False


@needs_landlock
def test_file_given_directory_rights_does_not_raise(dirs: tuple[Path, Path]) -> None:
    inside, _ = dirs
    target = inside / "data.txt"
    with Ruleset() as ruleset:
        assert ruleset.add_path(target, WRITE)  # landlockpy: EINVAL
        assert outcome(write_file(target), ruleset) == "ok"
        assert outcome(write_file(inside / "new.txt"), ruleset) == "EACCES"


@needs_landlock
def test_write_rename_and_truncate_work_inside_a_write_grant(dirs: tuple[Path, Path]) -> None:
    inside, outside = dirs

    def work() -> None:
        os.mkdir(inside / "a")
        os.mkdir(inside / "b")
        write_file(inside / "a" / "f")()
        os.rename(inside / "a" / "f", inside / "b" / "f")  # cross-directory: REFER
        os.truncate(inside / "b" / "f", 0)
        os.unlink(inside / "b" / "f")

    with Ruleset() as ruleset:
        ruleset.add_path(inside, WRITE)
        assert outcome(work, ruleset) == "ok"
        assert outcome(write_file(outside / "dropped"), ruleset) == "EACCES"


@pytest.mark.skipif(ABI < 2, reason="REFER needs ABI 2")
def test_cross_directory_rename_needs_refer(tmp_path: Path) -> None:
    """Why write grants include REFER: without it renames fail with EXDEV."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "f").write_text("x")

    def move() -> None:
        os.rename(tmp_path / "a" / "f", tmp_path / "b" / "f")

    without_refer = AccessFs(int(fs_access_for_abi(ABI)) & ~int(AccessFs.REFER))
    with Ruleset() as ruleset:
        ruleset.add_path(tmp_path, without_refer)
        assert outcome(move, ruleset) == "EXDEV"


# --------------------------------------------------------------------------- network


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    """A TCP listener on 127.0.0.1, the target of the connect attacks."""
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    yield server
    server.close()


def connect_to(port: int) -> Callable[[], None]:
    def action() -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as client:
            client.settimeout(2)
            client.connect(("127.0.0.1", port))

    return action


def bind_any_port() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))


@needs_net
def test_tcp_connect_and_bind_are_blocked_without_a_port_rule(listener: socket.socket) -> None:
    port = listener.getsockname()[1]
    assert outcome(connect_to(port)) == "ok"
    assert outcome(bind_any_port) == "ok"
    tcp = AccessNet.BIND_TCP | AccessNet.CONNECT_TCP
    with Ruleset(handled_fs=AccessFs(0), handled_net=tcp) as ruleset:
        assert outcome(connect_to(port), ruleset) == "EACCES"
        assert outcome(bind_any_port, ruleset) == "EACCES"


@needs_net
def test_a_port_rule_allows_exactly_that_port(listener: socket.socket) -> None:
    port = listener.getsockname()[1]
    other = socket.socket()
    other.bind(("127.0.0.1", 0))
    other.listen(1)
    with other, Ruleset(handled_fs=AccessFs(0), handled_net=AccessNet.CONNECT_TCP) as ruleset:
        ruleset.add_port(port, AccessNet.CONNECT_TCP)
        assert outcome(connect_to(port), ruleset) == "ok"
        assert outcome(connect_to(other.getsockname()[1]), ruleset) == "EACCES"


# --------------------------------------------------------------------------- scopes


@needs_scopes
def test_signal_to_a_process_outside_the_domain_is_denied() -> None:
    parent = os.getpid()  # pytest itself: outside the child's domain

    def signal_parent() -> None:
        os.kill(parent, 0)

    def signal_self() -> None:
        os.kill(os.getpid(), 0)

    assert outcome(signal_parent) == "ok"
    with Ruleset(handled_fs=AccessFs(0), scopes=Scope.SIGNAL) as ruleset:
        assert outcome(signal_parent, ruleset) == "EPERM"
        assert outcome(signal_self, ruleset) == "ok"


@needs_scopes
def test_real_signal_is_blocked_too() -> None:
    """Signal 0 only probes; show a deliverable signal is refused as well."""
    victim = os.fork()
    if victim == 0:  # a bystander process outside the domain
        signal.pause()
        os._exit(0)
    try:
        with Ruleset(handled_fs=AccessFs(0), scopes=Scope.SIGNAL) as ruleset:
            assert outcome(lambda: os.kill(victim, signal.SIGTERM), ruleset) == "EPERM"
        assert os.waitpid(victim, os.WNOHANG) == (0, 0)  # still alive
        assert outcome(lambda: os.kill(victim, signal.SIGTERM)) == "ok"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(victim, signal.SIGKILL)
        os.waitpid(victim, 0)


@needs_scopes
def test_abstract_unix_socket_outside_the_domain_is_unreachable() -> None:
    name = b"\0safe-pip-test-" + secrets.token_hex(8).encode()
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(name)
    server.listen(4)

    def connect() -> None:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
            client.connect(name)

    with server:
        assert outcome(connect) == "ok"
        with Ruleset(handled_fs=AccessFs(0), scopes=Scope.ABSTRACT_UNIX_SOCKET) as ruleset:
            assert outcome(connect, ruleset) == "EPERM"


@needs_landlock
def test_restrict_sets_no_new_privs() -> None:
    def check() -> None:
        status = read_file(Path("/proc/self/status"))()
        if b"NoNewPrivs:\t1" not in status:
            raise OSError(errno.EINVAL, "no_new_privs is not set")

    with Ruleset(handled_fs=AccessFs.MAKE_SOCK) as ruleset:
        assert outcome(check, ruleset) == "ok"
