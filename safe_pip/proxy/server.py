"""The filtering proxy: the sandbox's only way out to the network.

It runs in the supervising ``safe-run`` process, outside the sandbox, on listening
sockets the launcher hands over.  One port speaks three dialects, told apart by the
first byte a client sends (0x05 opens SOCKS5; anything else is read as HTTP):

* ``CONNECT host:port`` (HTTPS and any other TCP through ``HTTPS_PROXY``) and
  absolute-URI HTTP (``GET http://host/path``): :mod:`safe_pip.proxy.http_proxy`.
* SOCKS5 CONNECT without authentication (``ALL_PROXY=socks5h://...`` clients):
  :mod:`safe_pip.proxy.socks5`.

Every request goes through the same gate (:meth:`safe_pip.proxy.upstream.Gate.open`):
the allow rules, resolution here in the supervisor (the sandbox has no DNS), the
internal address check, then a connection to the very address that was checked.

This module is the part that is neither dialect nor gate: accepting, and sharing out
connection slots.  Threads, not asyncio: ``asyncio`` costs tens of milliseconds to
import, and the kernel does the byte copying anyway (see :mod:`safe_pip.proxy.relay`).
A client gets one thread while its request head arrives (bounded in size and in time,
see :mod:`safe_pip.proxy.inbox`), then two for the tunnel.  At ``max_connections``
the oldest connection still sending its head is dropped for the newcomer, so clients
that open connections and say nothing cannot lock out the ones that talk; only when
every slot is a live tunnel do new clients get a 503.  Established tunnels have no
idle timeout (long polls and event streams are legitimate).
"""

from __future__ import annotations

import errno
import socket
import threading
import time

from safe_pip.proxy.http_proxy import MAX_HEAD, serve_http
from safe_pip.proxy.inbox import Inbox
from safe_pip.proxy.relay import no_delay, spawn, start_thread
from safe_pip.proxy.socks5 import serve_socks
from safe_pip.proxy.upstream import Gate

TYPE_CHECKING = False
if TYPE_CHECKING:
    from safe_pip.proxy.credentials import Vault
    from safe_pip.proxy.log import DestinationLog
    from safe_pip.proxy.rules import RuleSet
    from safe_pip.proxy.upstream import Resolver
    from safe_pip.proxy.upstream_proxy import UpstreamProxy

__all__ = ["MAX_HEAD", "ProxyServer"]

_BUSY_BODY = b"safe-run proxy: too many connections, try again later.\n"
_BUSY = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\n"
    b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(_BUSY_BODY), _BUSY_BODY)
)
_ACCEPT_RETRY_SECONDS = 0.05


class ProxyServer:
    """Serve the filtering proxy on any number of listening sockets."""

    def __init__(
        self,
        rules: RuleSet,
        log: DestinationLog,
        *,
        connect_timeout: float = 10.0,
        head_timeout: float = 30.0,
        max_connections: int = 1024,
        resolver: Resolver | None = None,
        vault: Vault | None = None,
        upstream: UpstreamProxy | None = None,
    ) -> None:
        self._gate = Gate(
            rules, log, connect_timeout=connect_timeout, resolver=resolver, upstream=upstream
        )
        self._vault = vault
        self._head_timeout = head_timeout
        self._max_connections = max(1, max_connections)
        self._lock = threading.Lock()
        self._listeners: list[socket.socket] = []
        self._closed = False
        self._active = 0
        # Connections still sending their head, oldest first: the eviction candidates.
        self._waiting: dict[int, socket.socket] = {}

    def serve(self, listener: socket.socket) -> threading.Thread:
        """Accept connections on ``listener`` in a new daemon thread, returned."""
        listener.settimeout(None)
        with self._lock:
            self._listeners.append(listener)
        return start_thread(self._accept_loop, listener, name="safe-run-proxy-accept")

    def close(self) -> None:
        """Stop accepting and close the listeners; established tunnels run on."""
        with self._lock:
            self._closed = True
            listeners, self._listeners = self._listeners, []
        for listener in listeners:
            try:
                listener.shutdown(socket.SHUT_RDWR)  # wakes a thread blocked in accept()
            except OSError:
                pass
            listener.close()

    # -- accepting -----------------------------------------------------------------

    def _accept_loop(self, listener: socket.socket) -> None:
        """Accept until closed; nothing a client does can end this loop."""
        while not self._closed:
            try:
                conn, _ = listener.accept()
            except OSError as exc:
                if self._closed or exc.errno in (errno.EBADF, errno.EINVAL, errno.ENOTSOCK):
                    return
                # Out of descriptors or memory (EMFILE, ENOBUFS...), or a client that
                # reset before we got to it: wait a moment rather than spin.
                if exc.errno != errno.ECONNABORTED:
                    time.sleep(_ACCEPT_RETRY_SECONDS)
                continue
            try:
                self._dispatch(conn)
            except Exception:  # pragma: no cover - _dispatch handles its own failures
                conn.close()

    def _dispatch(self, conn: socket.socket) -> None:
        if not self._admit(conn):
            _turn_away(conn)
            return
        try:
            spawn(self._handle, conn)
        except Exception:  # RuntimeError "can't start new thread": drop this one
            self._release(conn)
            conn.close()

    def _admit(self, conn: socket.socket) -> bool:
        """Take a slot for ``conn``, evicting the oldest head-phase client if full."""
        with self._lock:
            if self._active >= self._max_connections:
                # Evicted threads take a moment to leave; never exceed twice the limit.
                if not self._waiting or self._active >= 2 * self._max_connections:
                    return False
                oldest = self._waiting.pop(next(iter(self._waiting)))
                try:
                    oldest.shutdown(socket.SHUT_RDWR)  # its thread sees EOF and leaves
                except OSError:
                    pass
            self._active += 1
            self._waiting[id(conn)] = conn
            return True

    def _settle(self, conn: socket.socket) -> None:
        """The head is in: ``conn`` is no longer a candidate for eviction."""
        with self._lock:
            self._waiting.pop(id(conn), None)

    def _release(self, conn: socket.socket) -> None:
        """Give the slot back.  Called before ``conn`` is closed, under the lock that
        eviction holds, so eviction never shuts down a reused descriptor."""
        with self._lock:
            self._waiting.pop(id(conn), None)
            self._active -= 1

    # -- one client ----------------------------------------------------------------

    def _handle(self, conn: socket.socket) -> None:
        """Serve one client connection; every failure ends here, quietly."""
        try:
            no_delay(conn)
            inbox = Inbox(conn, time.monotonic() + self._head_timeout)
            if inbox.peek() == 0x05:
                serve_socks(conn, inbox, self._gate, lambda: self._settle(conn))
            else:
                serve_http(conn, inbox, self._gate, lambda: self._settle(conn), self._vault)
        except Exception:
            pass  # client gone or a bug: either way only this connection ends
        finally:
            self._release(conn)
            conn.close()


def _turn_away(conn: socket.socket) -> None:
    """Answer 503 and close, without blocking the accept loop.

    Whatever the client already sent is read first (without waiting), so that the
    close is a FIN after our reply and not a reset that could destroy it.
    """
    try:
        conn.send(_BUSY, socket.MSG_DONTWAIT)
        conn.shutdown(socket.SHUT_WR)
        while conn.recv(65536, socket.MSG_DONTWAIT):
            pass
    except OSError:
        pass
    conn.close()
