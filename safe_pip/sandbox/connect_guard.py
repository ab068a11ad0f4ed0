"""The broker's side of fallback-mode networking: decide every ``connect()`` of the sandbox.

Why this exists
===============

Without a network namespace the sandbox shares the host's network stack.  Landlock
(ABI 4+) can limit ``connect()`` to the proxy's *port*, but not to its *address*: code
could connect to an attacker's host on that same port number (the known bypass of the
"Landlock port rule + local proxy" design).  So in fallback mode with a network
allowlist the seccomp filter turns every ``connect()`` into a user notification
(``SECCOMP_RET_USER_NOTIF``), and this module, running in the broker (the program's
parent, outside its Landlock domain), answers each one.

How a connect is decided, without a time-of-check/time-of-use hole
==================================================================

The classic mistake is to read the ``sockaddr`` from the sandbox's memory, like it,
and answer ``SECCOMP_USER_NOTIF_FLAG_CONTINUE``: the kernel then reads the address
*again*, and a second thread can swap it in between.  We never let the kernel perform
the sandbox's own ``connect()``.  Instead:

1. read the ``sockaddr`` (``process_vm_readv``) only to decide;
2. if it is exactly the proxy (``127.0.0.1:PORT``), take a duplicate of the
   sandbox's socket with ``pidfd_getfd`` and call ``connect()`` on it here, to the
   proxy address held in *our* memory; the socket is shared, so the sandbox's fd is
   now connected (or in progress, for non-blocking sockets) -- and we answer with
   that call's result;
3. otherwise answer ``EACCES`` (what Landlock answers for a denied port) and report
   the destination.

``SECCOMP_IOCTL_NOTIF_ID_VALID`` is checked after opening the process's memory and
after taking its fd, so a recycled thread id can never make us act on another process.

If the broker dies the listener closes and every later ``connect()`` in the
sandbox fails with ENOSYS: the sandbox loses its network rather than gaining it (and
the parent-death signal kills it anyway).
"""

from __future__ import annotations

import os

from safe_pip.sandbox.notify import Answer, Notification, Notifications

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

_AF_INET = 2
_EACCES = 13
_MAX_SOCKADDR = 128  # sizeof(struct sockaddr_storage)


class ConnectGuard:
    """Answers the sandbox's ``connect()`` notifications: only the proxy is reachable.

    ``on_refused(address, port)`` is called for each refused destination (the
    supervisor's report at exit lists them); it must not raise.  :meth:`handle` is a
    handler for :class:`~safe_pip.sandbox.notify.Notifications`: the broker serves it
    on the listener it shares with the file handlers (launcher/child.py).
    """

    def __init__(
        self,
        notifications: Notifications,
        proxy: tuple[str, int],
        on_refused: Callable[[str, int], None],
    ) -> None:
        self._notifications = notifications
        self._proxy = proxy
        self._proxy_raw = bytes(int(part) for part in proxy[0].split(".")), proxy[1]
        self._on_refused = on_refused

    def handle(self, notification: Notification) -> Answer:
        """(return value, -errno) for one ``connect(sockfd, address, length)``."""
        sockfd, address_ptr, length = notification.args[:3]
        raw = self._notifications.read(
            notification, address_ptr, min(max(length, 0), _MAX_SOCKADDR)
        )
        family = int.from_bytes(raw[:2], "little") if len(raw) >= 2 else -1
        if family == _AF_INET and len(raw) >= 8:
            port = int.from_bytes(raw[2:4], "big")
            address = raw[4:8]
            if (address, port) == self._proxy_raw:
                return self._connect_for(notification, sockfd)
            self._on_refused(".".join(str(b) for b in address), port)
        elif family == 10 and len(raw) >= 24:  # AF_INET6: sin6_port, then the address
            import ipaddress

            port = int.from_bytes(raw[2:4], "big")
            self._on_refused(str(ipaddress.IPv6Address(raw[8:24])), port)
        return -1, -_EACCES

    def _connect_for(self, notification: Notification, sockfd: int) -> Answer:
        """Connect the sandbox's own socket to the proxy, from here."""
        try:
            dup = self._notifications.take_fd(notification, sockfd)
        except OSError as exc:
            return -1, -(exc.errno or _EACCES)
        try:
            import _socket

            sock = _socket.socket(fileno=dup)
            try:
                if sock.family != _AF_INET:
                    return -1, -_EACCES
                err = sock.connect_ex(self._proxy)
            finally:
                sock.detach()
        finally:
            os.close(dup)
        return (0, 0) if err == 0 else (-1, -err)
