"""The network allowlist's plumbing between supervisor and sandbox.

The proxy (``safe_pip.proxy``) is the only way out of the sandbox.  This module wires
it up; it decides nothing about hosts.

Before forking, the supervisor binds a listener on the host's ``127.0.0.1`` with an
ephemeral port P (free by construction) and makes a ``SOCK_SEQPACKET`` pair for
passing file descriptors.  P goes into the sandbox's proxy variables.  Then:

* **namespace mode**: the first child, already inside its new network namespace with
  ``lo`` up, binds ``127.0.0.1:P`` *there* (always free in a fresh namespace) and
  sends that listening socket out over the pair (SCM_RIGHTS).  The supervisor
  accepts on it; each accepted connection comes from inside, and the proxy's own
  outgoing connections are made in the host's namespace.  Nothing else connects the
  two namespaces.  The host listener is closed unused.
* **fallback mode**: the sandbox shares the host's network stack, so the proxy serves
  the host listener.  The target installs a seccomp filter that turns ``connect()``
  into a user notification, answered by the broker -- the target's parent -- whose
  :class:`~safe_pip.sandbox.connect_guard.ConnectGuard` lets only ``127.0.0.1:P``
  through (launcher/child.py).  Landlock allows TCP connect to port P only, as a
  second wall.

The pre-fork part imports only ``_socket`` (the C module; ``socket`` would pull in
``enum``), so an allowlist costs safe-run's start-up almost nothing; the proxy
itself is imported after the fork, while the sandboxed program is starting.
"""

from __future__ import annotations

import _socket
import os
import struct
import sys

from safe_pip._records import mutable_record
from safe_pip.policy.model import NetworkPolicy

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping

    from safe_pip.launcher.credentials import CredentialSetup
    from safe_pip.proxy.log import DestinationLog
    from safe_pip.proxy.upstream_proxy import UpstreamProxy

PROXY_HOST = "127.0.0.1"
BACKLOG = 4096
TAG_LISTENER = b"listen"
TAG_DNS = b"dns"
TAG_NOTIFY = b"notify"
_INT = struct.Struct("i")


@mutable_record
class NetworkSetup:
    """Sockets made before the fork, and what the supervisor started after it."""

    port: int
    host_listener: _socket.socket
    parent_channel: _socket.socket
    child_channel: _socket.socket
    network: NetworkPolicy
    log: DestinationLog | None = None
    credentials: CredentialSetup | None = None
    #: The caller's own proxy (HTTPS_PROXY ...), read before the environment is
    #: scrubbed; its credentials stay in this process.
    upstream: UpstreamProxy | None = None


def prepare_network(network: NetworkPolicy, caller_env: Mapping[str, str]) -> NetworkSetup:
    """The pre-fork sockets for an allowlist policy, and the caller's own proxy."""
    listener = _socket.socket(_socket.AF_INET, _socket.SOCK_STREAM | _socket.SOCK_CLOEXEC)
    listener.bind((PROXY_HOST, 0))
    listener.listen(BACKLOG)
    parent, child = _socket.socketpair(
        _socket.AF_UNIX, _socket.SOCK_SEQPACKET | _socket.SOCK_CLOEXEC
    )
    port = listener.getsockname()[1]
    setup = NetworkSetup(port, listener, parent, child, network)
    if any(name.lower().endswith("_proxy") and value for name, value in caller_env.items()):
        from safe_pip.proxy.upstream_proxy import UpstreamProxy

        found = UpstreamProxy.from_environment(caller_env)
        if isinstance(found, str):
            sys.stderr.write(f"{network.reported_as}: network: {found}: connecting directly\n")
        else:
            setup.upstream = found
    return setup


def proxy_environment(port: int) -> dict[str, str]:
    """Proxy variables every common client honours (pip, uv, urllib, requests, httpx,
    aiohttp with ``trust_env``, curl, git); they win over anything the policy passes,
    since no other route out exists.  ALL_PROXY is an ``http://`` URL, not
    ``socks5://``: httpx and requests fail outright on a SOCKS URL without their extra
    packages, while the port also speaks SOCKS5 for tools configured explicitly."""
    url = f"http://{PROXY_HOST}:{port}"
    env: dict[str, str] = {}
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        env[name] = env[name.lower()] = url
    env["NO_PROXY"] = env["no_proxy"] = ""
    return env


# --- in the sandbox's children (after fork, before exec) ---


def send_fd(channel_fd: int, tag: bytes, fd: int) -> None:
    """Hand ``fd`` to the supervisor (SCM_RIGHTS); the caller closes its copy."""
    channel = _socket.socket(fileno=channel_fd)
    try:
        channel.sendmsg([tag], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, _INT.pack(fd))])
    finally:
        channel.detach()


def listen_here(port: int) -> int:
    """A listening ``127.0.0.1:port`` socket in the caller's network namespace (an fd)."""
    sock = _socket.socket(_socket.AF_INET, _socket.SOCK_STREAM | _socket.SOCK_CLOEXEC)
    try:
        sock.bind((PROXY_HOST, port))
        sock.listen(BACKLOG)
    except OSError:
        sock.close()
        raise
    return int(sock.detach())


def dns_socket_here() -> int | None:
    """A UDP socket on 127.0.0.1:53 in the caller's (the sandbox's) network namespace,
    where glibc sends queries when it finds no resolv.conf; None if it cannot bind."""
    sock = _socket.socket(_socket.AF_INET, _socket.SOCK_DGRAM | _socket.SOCK_CLOEXEC)
    try:
        sock.bind((PROXY_HOST, 53))
    except OSError:
        sock.close()
        return None
    return int(sock.detach())


# --- in the supervisor, after the fork ---


def _received_fds(channel: _socket.socket) -> dict[bytes, int]:
    """Every fd the children sent; they sent before exec, so all are queued now."""
    found: dict[bytes, int] = {}
    channel.setblocking(False)
    while True:
        try:
            data, ancillary, _flags, _addr = channel.recvmsg(64, _socket.CMSG_SPACE(_INT.size))
        except (BlockingIOError, InterruptedError):
            return found
        if not data:
            return found
        for level, kind, payload in ancillary:
            if level == _socket.SOL_SOCKET and kind == _socket.SCM_RIGHTS:
                (fd,) = _INT.unpack(payload[: _INT.size])
                found[data] = fd


def _raise_fd_limit() -> None:
    """Soft RLIMIT_NOFILE up to the hard limit: each tunnel holds up to six fds (two
    sockets, two pipes), and the common soft limit of 1024 would cap the proxy at a
    few hundred concurrent connections.  The sandbox's own limit is not changed: it
    was inherited at fork time."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError):
            pass


def start_network(setup: NetworkSetup, mode: str) -> None:
    """Start the proxy in daemon threads.

    Called once the sandbox is set up, after every fork (a process that forks while
    other threads run can deadlock in the child): from the main thread, or in learn
    mode from the thread that read the set-up reports while the main thread traces.
    """
    setup.child_channel.close()
    _raise_fd_limit()
    fds = _received_fds(setup.parent_channel)
    setup.parent_channel.close()
    import socket

    from safe_pip.proxy.advice import Advice
    from safe_pip.proxy.log import DestinationLog
    from safe_pip.proxy.rules import RuleSet
    from safe_pip.proxy.server import ProxyServer

    rules = RuleSet.parse(setup.network.allow)
    log = setup.log = DestinationLog(Advice(setup.network.reported_as))
    vault = None
    if setup.credentials is not None:
        from safe_pip.launcher.credentials import make_vault

        vault = make_vault(setup.credentials, log, setup.port, setup.upstream)
    server = ProxyServer(rules, log, vault=vault, upstream=setup.upstream)
    dns = fds.pop(TAG_DNS, None)
    if dns is not None:
        from safe_pip.proxy.dns import serve_dns
        from safe_pip.proxy.relay import start_thread

        start_thread(serve_dns, socket.socket(fileno=dns), rules, log, name="safe-run-dns")
    inside = fds.pop(TAG_LISTENER, None)
    if mode == "namespace" and inside is not None:
        setup.host_listener.close()
        server.serve(socket.socket(fileno=inside))
    else:
        host_fd = setup.host_listener.detach()
        server.serve(socket.socket(fileno=host_fd))
    for fd in fds.values():
        os.close(fd)


def abandon_network(setup: NetworkSetup) -> None:
    """Close everything when the sandbox never started."""
    for sock in (setup.host_listener, setup.parent_channel, setup.child_channel):
        sock.close()


def print_network_report(setup: NetworkSetup, verbose: bool) -> None:
    """The exit-time summary on stderr: refused destinations (and allowed ones with -v)."""
    if setup.log is None:
        return
    for line in setup.log.report_lines(verbose):
        sys.stderr.write(line + "\n")
