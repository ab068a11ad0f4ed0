"""Namespaces, id maps, loopback and credentials (safe_pip.sandbox.namespaces), for real.

Every check runs in a forked child, because unshare and prctl change the calling
process for good.  Network isolation is shown both ways: the same connection works
from the host and fails from inside the new network namespace.
"""

from __future__ import annotations

import errno
import json
import os
import secrets
import select
import signal
import socket
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from ns_harness import needs_userns, outcome

from safe_pip.sandbox import namespaces as ns


def in_child(body: Callable[[], Any]) -> Any:
    """Run ``body`` in a forked child and return its JSON-able result."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(read_end)
            reply = {"value": body()}
        except BaseException:
            reply = {"error": traceback.format_exc()}
        try:
            os.write(write_end, json.dumps(reply).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    chunks = []
    while chunk := os.read(read_end, 65536):
        chunks.append(chunk)
    os.close(read_end)
    os.waitpid(pid, 0)
    reply = json.loads(b"".join(chunks))
    if "error" in reply:
        pytest.fail("child failed:\n" + reply["error"])
    return reply["value"]


def enter_namespaces(flags: int) -> None:
    uid, gid = os.getuid(), os.getgid()
    ns.unshare(ns.CLONE_NEWUSER | flags)
    ns.map_ids(uid, gid)


def capabilities(status_text: str) -> dict[str, int]:
    """The Cap* lines of /proc/<pid>/status as integers."""
    caps = {}
    for line in status_text.splitlines():
        name, _, value = line.partition(":")
        if name.startswith("Cap"):
            caps[name] = int(value.strip(), 16)
    return caps


def read_text(path: str) -> str:
    with open(path) as f:
        return f.read()


def exec_and_capture(argv: list[str]) -> str:
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.dup2(write_end, 1)
            os.execv(argv[0], argv)
        finally:
            os._exit(127)
    os.close(write_end)
    chunks = []
    while chunk := os.read(read_end, 65536):
        chunks.append(chunk)
    os.close(read_end)
    os.waitpid(pid, 0)
    return b"".join(chunks).decode()


@pytest.fixture
def tcp_listener() -> Iterator[int]:
    """A TCP listener on the host's 127.0.0.1; yields its port."""
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    try:
        yield server.getsockname()[1]
    finally:
        server.close()


def tcp_connect(port: int) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=2):
        pass


# ----------------------------------------------------------------- plain API


def test_unshare_reports_the_kernel_errno() -> None:
    # CSIGNAL bits are meaningless for unshare(2): EINVAL, and nothing changes.
    with pytest.raises(ns.NamespaceError) as info:
        ns.unshare(0x1)
    assert info.value.errno == errno.EINVAL
    assert "unshare" in str(info.value)
    assert isinstance(info.value, OSError)


def test_userns_can_be_disabled_by_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ns.NO_USERNS_ENV, "1")
    assert ns.userns_available() == (False, f"disabled by {ns.NO_USERNS_ENV}")


@pytest.mark.parametrize(
    ("err", "step", "expected"),
    [
        (errno.ENOSPC, "unshare(NEWUSER)", "limit is reached"),
        (errno.EPERM, "unshare(NEWUSER)", "refused (EPERM)"),
        (errno.EPERM, "writing the uid/gid map", "writing the uid/gid map failed"),
    ],
)
def test_probe_failures_are_explained(err: int, step: str, expected: str) -> None:
    # The sysctl-based explanations take precedence where those sysctls say "off".
    if ns._read_sysctl("/proc/sys/user/max_user_namespaces") == "0":
        pytest.skip("user namespaces are disabled by sysctl on this machine")
    assert expected in ns._explain_failure(step, err)


@needs_userns
def test_userns_available_here() -> None:
    saved = os.environ.pop(ns.NO_USERNS_ENV, None)
    try:
        assert ns.userns_available() == (True, "")
    finally:
        if saved is not None:
            os.environ[ns.NO_USERNS_ENV] = saved


# ----------------------------------------------------------------- ids and capabilities


@pytest.mark.sandbox
@needs_userns
def test_map_ids_maps_the_caller_onto_itself() -> None:
    uid, gid = os.getuid(), os.getgid()

    def body() -> dict[str, Any]:
        enter_namespaces(0)
        return {
            "ids": [os.getuid(), os.geteuid(), os.getgid(), os.getegid()],
            "uid_map": read_text("/proc/self/uid_map").split(),
            "gid_map": read_text("/proc/self/gid_map").split(),
            "setgroups": read_text("/proc/self/setgroups").strip(),
        }

    result = in_child(body)
    assert result["ids"] == [uid, uid, gid, gid]
    assert result["uid_map"] == [str(uid), str(uid), "1"]
    assert result["gid_map"] == [str(gid), str(gid), "1"]
    assert result["setgroups"] == "deny"


@pytest.mark.sandbox
@needs_userns
@pytest.mark.skipif(not os.access("/usr/bin/grep", os.X_OK), reason="needs /usr/bin/grep")
def test_drop_capabilities_survives_exec() -> None:
    """After the drop, nothing is left, and an exec (even by uid 0) grants nothing."""
    grep = ["/usr/bin/grep", "^Cap", "/proc/self/status"]

    def body(drop: bool) -> dict[str, Any]:
        enter_namespaces(ns.CLONE_NEWNS)
        before = capabilities(read_text("/proc/self/status"))
        if drop:
            ns.drop_capabilities()
        return {
            "before": before,
            "after": capabilities(read_text("/proc/self/status")),
            "exec": capabilities(exec_and_capture(grep)),
        }

    kept = in_child(lambda: body(drop=False))
    assert kept["before"]["CapEff"] != 0  # the userns creator holds everything inside
    assert kept["exec"]["CapBnd"] != 0
    if os.getuid() == 0:  # root maps to 0: exec would hand all capabilities back
        assert kept["exec"]["CapEff"] != 0

    dropped = in_child(lambda: body(drop=True))
    for phase in ("after", "exec"):
        assert set(dropped[phase].values()) == {0}, (phase, dropped[phase])


# ----------------------------------------------------------------- network


@pytest.mark.sandbox
@needs_userns
def test_loopback_works_only_after_bring_up() -> None:
    def echo_over_loopback() -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
            server.bind(("127.0.0.1", 0))
            server.listen(1)
            with socket.create_connection(server.getsockname(), timeout=2) as client:
                peer, _ = server.accept()
                with peer:
                    client.sendall(b"ping")
                    if peer.recv(4) != b"ping":
                        raise OSError(errno.EIO, "echo mismatch")

    def body() -> dict[str, str]:
        enter_namespaces(ns.CLONE_NEWNET)
        down = outcome(echo_over_loopback)
        ns.bring_up_loopback()
        ns.bring_up_loopback()  # idempotent
        return {"down": down, "up": outcome(echo_over_loopback)}

    result = in_child(body)
    assert result["down"] != "ok"  # a fresh net namespace's lo is down
    assert result["up"] == "ok"


@pytest.mark.sandbox
@needs_userns
def test_host_loopback_listener_is_unreachable(tcp_listener: int) -> None:
    def body() -> str:
        enter_namespaces(ns.CLONE_NEWNET)
        ns.bring_up_loopback()
        return outcome(lambda: tcp_connect(tcp_listener))

    assert outcome(lambda: tcp_connect(tcp_listener)) == "ok"  # from the host
    assert in_child(body) == "ECONNREFUSED"  # inside: a different 127.0.0.1


@pytest.mark.sandbox
@needs_userns
def test_abstract_unix_socket_is_unreachable() -> None:
    name = b"\0safe-pip-test-" + secrets.token_hex(8).encode()
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(name)
    server.listen(8)

    def connect() -> None:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
            client.connect(name)

    def body() -> str:
        enter_namespaces(ns.CLONE_NEWNET)
        return outcome(connect)

    try:
        assert outcome(connect) == "ok"  # abstract names are per network namespace
        assert in_child(body) == "ECONNREFUSED"
    finally:
        server.close()


# ----------------------------------------------------------------- process lifetime


def _wait_readable(fd: int, timeout: float) -> bool:
    return bool(select.select([fd], [], [], timeout)[0])


@pytest.mark.parametrize("armed", [False, True], ids=["without", "with"])
def test_pdeathsig_kills_the_orphan(armed: bool) -> None:
    """B (child of A) dies when A dies — only if B set the parent-death signal."""
    alive_read, alive_write = os.pipe()  # only B keeps the write end: EOF once B is gone
    info_read, info_write = os.pipe()  # A reports B's pid once B is armed
    a = os.fork()
    if a == 0:
        os.close(alive_read)
        os.close(info_read)
        ready_read, ready_write = os.pipe()
        b = os.fork()
        if b == 0:
            if armed:
                ns.set_pdeathsig(signal.SIGKILL)
            os.write(ready_write, b"!")
            time.sleep(30)
            os._exit(0)
        os.close(alive_write)
        os.read(ready_read, 1)
        os.write(info_write, str(b).encode())
        os._exit(0)
    os.close(alive_write)
    os.close(info_write)
    b_pid = int(os.read(info_read, 32))
    os.close(info_read)
    os.waitpid(a, 0)
    try:
        gone = _wait_readable(alive_read, 5 if armed else 0.5)
        assert gone is armed
        if armed:
            assert os.read(alive_read, 1) == b""  # EOF: B's end of the pipe closed
    finally:
        if not armed:
            os.kill(b_pid, signal.SIGKILL)
        os.close(alive_read)


@pytest.mark.parametrize("enabled", [False, True], ids=["without", "with"])
def test_child_subreaper_adopts_orphans(enabled: bool) -> None:
    """A double-forked grandchild comes back to the subreaper instead of init."""

    def body() -> str:
        if enabled:
            ns.set_child_subreaper()
        read_end, write_end = os.pipe()
        middle = os.fork()
        if middle == 0:
            grandchild = os.fork()
            if grandchild == 0:
                time.sleep(0.3)
                os._exit(7)
            os.write(write_end, str(grandchild).encode())
            os._exit(0)
        os.waitpid(middle, 0)
        grandchild = int(os.read(read_end, 32))
        try:
            _, status = os.waitpid(grandchild, 0)
        except ChildProcessError:
            return "not ours"
        return f"reaped {os.waitstatus_to_exitcode(status)}"

    assert in_child(body) == ("reaped 7" if enabled else "not ours")


# ----------------------------------------------------------------- doctor's advice


def test_doctor_advice_for_ubuntus_apparmor_restriction() -> None:
    """Ubuntu 24.04: the supported way is a profile for one dedicated executable; a
    profile for the interpreter would open user namespaces to every Python program,
    and safe-pip never switches the restriction off itself."""
    from safe_pip.sandbox.probe import namespace_advice

    why = (
        "AppArmor restricts unprivileged user namespaces "
        "(kernel.apparmor_restrict_unprivileged_userns=1); mount(MS_PRIVATE) inside "
        "the new namespace failed: Operation not permitted"
    )
    advice = " ".join(namespace_advice(why))
    assert "`userns,`" in advice and "dedicated" in advice
    assert os.path.realpath(sys.executable) in advice
    assert "every Python program" in advice
    assert "administrator's decision" in advice


def test_doctor_advice_follows_the_probes_own_explanations() -> None:
    from safe_pip.sandbox.probe import namespace_advice

    container = ns._explain_failure("unshare(NEWUSER)", errno.EPERM)
    assert "seccomp profile" in " ".join(namespace_advice(container))
    assert "unset" in namespace_advice(f"disabled by {ns.NO_USERNS_ENV}")[0]
    for why in (container, "anything else"):
        assert any("docs/sandbox.md" in line for line in namespace_advice(why))


def test_doctor_in_fallback_mode_says_why_and_what_holds() -> None:
    env = {**os.environ, ns.NO_USERNS_ENV: "1"}
    doctor = subprocess.run(
        [str(Path(sys.executable).parent / "safe-pip"), "doctor"],
        capture_output=True, text=True, check=False, timeout=60, env=env,
    )  # fmt: skip
    assert doctor.returncode == 0, doctor.stderr
    assert "mode: fallback" in doctor.stdout
    assert f"namespace mode is off: disabled by {ns.NO_USERNS_ENV}" in doctor.stdout
    assert "supervised-calls     yes" in doctor.stdout
