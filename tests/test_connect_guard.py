"""The fallback-mode connect guard, against real sockets and a real seccomp listener.

A forked child installs the same filter the launcher installs in fallback mode with a
network allowlist (``notify_connect``), hands the notification fd to this process, and
tries to connect; the test process runs :class:`ConnectGuard` exactly as the
supervisor does.  The decisive attack is the one Landlock cannot stop: a connection to
*another* address on the proxy's port.  The thread-swap test attacks the guard itself
(change the address between the guard's check and the kernel's use).
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest

from safe_pip.launcher.network import TAG_NOTIFY, send_fd
from safe_pip.sandbox.connect_guard import ConnectGuard
from safe_pip.sandbox.notify import Notifications
from safe_pip.sandbox.seccomp import SeccompOptions, build_filter, install_filter, syscall_number

OPTIONS = SeccompOptions(
    socket_families=frozenset({socket.AF_INET, socket.AF_INET6}),
    inet_stream_only=True,
    notify_connect=True,
    deny_fastopen=True,
)


class Listener:
    """A real TCP listener that remembers whether anyone connected."""

    def __init__(self, host: str, port: int = 0) -> None:
        self.sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, port))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            conn.close()


@contextmanager
def guarded_child(
    body: Callable[[], object], proxy_port: int
) -> Iterator[tuple[list[tuple[str, int]], Callable[[], object]]]:
    """Run ``body`` in a child under the notify filter; yield (refusals, result getter)."""
    parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    result_r, result_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child never returns into pytest
        try:
            parent.close()
            os.close(result_r)
            fd = install_filter(build_filter(OPTIONS), new_listener=True)
            assert fd is not None
            send_fd(child.fileno(), TAG_NOTIFY, fd)
            os.close(fd)
            child.close()
            out = body()
            os.write(result_w, json.dumps(out).encode())
        except BaseException as exc:
            os.write(result_w, json.dumps(f"child crashed: {exc!r}").encode())
        finally:
            os._exit(0)
    child.close()
    os.close(result_w)
    _, fds, _, _ = socket.recv_fds(parent, 16, 1)
    refusals: list[tuple[str, int]] = []
    notifications = Notifications(fds[0])
    guard = ConnectGuard(
        notifications, ("127.0.0.1", proxy_port), lambda a, p: refusals.append((a, p))
    )
    handlers = {syscall_number("connect"): guard.handle}
    threading.Thread(target=notifications.serve, args=(handlers,), daemon=True).start()

    def result() -> object:
        with os.fdopen(result_r, "rb") as pipe:
            data = pipe.read()
        os.waitpid(pid, 0)
        return json.loads(data)

    try:
        yield refusals, result
    finally:
        parent.close()


def settle(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    """Wait for a listener's accept thread to catch up with what already happened."""
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert condition()


def try_connect(host: str, port: int) -> str:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as sock:
        sock.settimeout(5)
        try:
            sock.connect((host, port))
        except OSError as exc:
            return f"refused {exc.errno}"
        return "connected"


def test_only_the_proxy_address_is_reachable() -> None:
    proxy = Listener("127.0.0.1")
    # The attacker listens on the proxy's port number at another local address:
    # Landlock's port rule alone would let this through.
    other = Listener("127.0.0.2", proxy.port)
    assert try_connect("127.0.0.2", proxy.port) == "connected"  # reachable without the guard
    settle(lambda: other.connections == 1)  # the accept thread has counted it
    other.connections = 0

    def body() -> object:
        return [try_connect("127.0.0.1", proxy.port), try_connect("127.0.0.2", proxy.port)]

    with guarded_child(body, proxy.port) as (refusals, result):
        outcome = result()
    assert outcome == ["connected", "refused 13"]
    assert other.connections == 0
    settle(lambda: proxy.connections >= 1)  # the accept thread may lag under load
    assert refusals == [("127.0.0.2", proxy.port)]


def test_ipv6_and_mapped_addresses_are_refused() -> None:
    proxy = Listener("127.0.0.1")

    def body() -> object:
        return [try_connect("::1", proxy.port), try_connect("::ffff:127.0.0.1", proxy.port)]

    with guarded_child(body, proxy.port) as (refusals, result):
        outcome = result()
    assert outcome == ["refused 13", "refused 13"]
    assert [port for _, port in refusals] == [proxy.port, proxy.port]


def test_non_blocking_connect_to_the_proxy_completes() -> None:
    proxy = Listener("127.0.0.1")

    def body() -> object:
        import select

        with socket.socket() as sock:
            sock.setblocking(False)
            code = sock.connect_ex(("127.0.0.1", proxy.port))
            select.select([], [sock], [], 5)
            return [code in (0, 115), sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)]

    with guarded_child(body, proxy.port) as (_, result):
        assert result() == [True, 0]


def test_tcp_fast_open_cannot_connect_around_the_guard() -> None:
    target = Listener("127.0.0.2")
    msg_fastopen = 0x20000000

    def body() -> object:
        with socket.socket() as sock:
            try:
                sock.sendto(b"x", msg_fastopen, ("127.0.0.2", target.port))
            except OSError as exc:
                return f"refused {exc.errno}"
            return "sent"

    with guarded_child(body, 1) as (_, result):
        assert result() == "refused 1"
    time.sleep(0.1)
    assert target.connections == 0


def test_swapping_the_address_during_the_check_never_reaches_the_attacker() -> None:
    """A second thread flips the sockaddr between the proxy and the attacker while the
    first connects in a loop: the guard must connect only ever to the proxy."""
    proxy = Listener("127.0.0.1")
    attacker = Listener("127.0.0.2", proxy.port)
    rounds = 300

    def body() -> object:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        good = socket.inet_aton("127.0.0.1")
        bad = socket.inet_aton("127.0.0.2")
        # struct sockaddr_in in memory we control: family, port (network order), addr.
        addr = ctypes.create_string_buffer(
            (2).to_bytes(2, "little") + proxy.port.to_bytes(2, "big") + good + bytes(8), 16
        )
        stop = False

        def flip() -> None:
            while not stop:
                ctypes.memmove(ctypes.addressof(addr) + 4, bad, 4)
                ctypes.memmove(ctypes.addressof(addr) + 4, good, 4)

        flipper = threading.Thread(target=flip)
        flipper.start()
        connected = 0
        for _ in range(rounds):
            sock = socket.socket()
            if libc.connect(sock.fileno(), addr, 16) == 0:
                connected += 1
            sock.close()
        stop = True
        flipper.join()
        return connected

    # Without the guard the flipping address reaches the attacker.  The race is
    # won by chance (thread scheduling on a loaded 2-core machine), so the baseline
    # gets several tries of 300 rounds before it counts as not working.
    for _ in range(10):
        pid = os.fork()
        if pid == 0:  # pragma: no cover
            body()
            os._exit(0)
        os.waitpid(pid, 0)
        time.sleep(0.1)
        if attacker.connections > 0:
            break
    settle(lambda: attacker.connections > 0)
    time.sleep(0.2)  # stragglers of the baseline are counted before the reset
    attacker.connections = 0

    with guarded_child(body, proxy.port) as (_, result):
        connected = result()
    assert isinstance(connected, int) and connected > 0  # the loop really ran
    time.sleep(0.2)
    assert attacker.connections == 0


@pytest.mark.parametrize("what", ["udp", "raw", "vsock", "mptcp"])
def test_non_tcp_sockets_are_refused(what: str) -> None:
    def body() -> object:
        args = {
            "udp": (socket.AF_INET, socket.SOCK_DGRAM, 0),
            "raw": (socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP),
            "vsock": (40, socket.SOCK_STREAM, 0),
            "mptcp": (socket.AF_INET, socket.SOCK_STREAM, 262),
        }[what]
        try:
            socket.socket(*args).close()
        except OSError as exc:
            return f"refused {exc.errno}"
        return "created"

    with guarded_child(body, 1) as (_, result):
        assert result().startswith("refused")  # type: ignore[attr-defined]
