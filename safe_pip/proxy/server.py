"""The filtering proxy: the sandbox's only way out to the network.

It runs in the supervising ``safe-run`` process, outside the sandbox, on listening
sockets the launcher hands over.  One port speaks three dialects, told apart by the
first byte a client sends (0x05 opens SOCKS5; anything else is read as HTTP):

* ``CONNECT host:port`` (HTTPS and any other TCP through ``HTTPS_PROXY``): a blind
  tunnel.  TLS is never intercepted, so within a tunnel the client's SNI and Host
  are its own business; the policy binds the destination host and port.
* absolute-URI HTTP (``GET http://host/path``): forwarded as an origin-form request
  with hop-by-hop headers removed, ``Host`` rewritten to the checked authority and
  ``Connection: close``; the rest of both streams is relayed raw.
* SOCKS5 CONNECT without authentication (``ALL_PROXY=socks5h://...`` clients).

Every request goes through the same gate (:meth:`ProxyServer._open`): the allow
rules, resolution here in the supervisor (the sandbox has no DNS), the internal
address check, then a connection to the very address that was checked — never a
second lookup that DNS rebinding could answer differently.  Every decision is
recorded in the :class:`~safe_pip.proxy.log.DestinationLog`; refusals tell the
client which pattern to add.

Threads, not asyncio: ``asyncio`` costs tens of milliseconds to import, and the
kernel does the byte copying anyway (see :mod:`safe_pip.proxy.relay`).  A client
gets one thread while its request head arrives (bounded in size and in time), then
two for the tunnel.  At ``max_connections`` the oldest connection still sending its
head is dropped for the newcomer, so clients that open connections and say nothing
cannot lock out the ones that talk; only when every slot is a live tunnel do new
clients get a 503.  Established tunnels have no idle timeout (long polls and event
streams are legitimate).
"""

from __future__ import annotations

import errno
import socket
import threading
import time

from safe_pip._records import record
from safe_pip.proxy.addresses import is_internal, join_host_port, resolve
from safe_pip.proxy.relay import relay, spawn, start_thread
from safe_pip.proxy.rules import RuleSet, normalise_host

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from safe_pip.proxy.log import DestinationLog

    Resolver = Callable[[str, int], list[tuple[int, str]]]

__all__ = ["MAX_HEAD", "ProxyServer"]

#: Largest request head (request line + headers) accepted, in bytes.
MAX_HEAD = 64 * 1024

_POLICY_KEY = "[tool.safe-run.network] allow"
_REASONS = {
    400: "Bad Request",
    403: "Forbidden",
    502: "Bad Gateway",
    503: "Service Unavailable",
}
_BUSY_BODY = b"safe-run proxy: too many connections, try again later.\n"
_BUSY = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\n"
    b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(_BUSY_BODY), _BUSY_BODY)
)
_ESTABLISHED = b"HTTP/1.1 200 Connection established\r\n\r\n"

# Request headers that describe one hop, not the request (RFC 9110 7.6.1), plus the
# proxy's own.  Transfer-Encoding is hop-by-hop too, but the body is relayed raw, so
# its framing headers must travel with it.
_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "upgrade",
    }
)
# Never dropped because ``Connection`` lists them: that would unframe the raw body.
_FRAMING = frozenset({"content-length", "transfer-encoding"})
_TOKEN_CHARS = frozenset(
    "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
)

# SOCKS5 (RFC 1928) reply codes.
_SOCKS_OK = 0x00
_SOCKS_FAILURE = 0x01
_SOCKS_NOT_ALLOWED = 0x02
_SOCKS_NET_UNREACHABLE = 0x03
_SOCKS_HOST_UNREACHABLE = 0x04
_SOCKS_REFUSED = 0x05
_SOCKS_BAD_COMMAND = 0x07
_SOCKS_BAD_ADDRESS = 0x08

#: After an error reply, how long (and how much) to keep reading what the client
#: still sends, so closing does not reset the connection before it reads the reply.
_DRAIN_SECONDS = 1.0
_DRAIN_BYTES = 1 << 20
_ACCEPT_RETRY_SECONDS = 0.05


class _Reject(Exception):
    """A request answered with an error instead of a connection."""

    def __init__(self, status: int, socks_code: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.socks_code = socks_code
        self.message = message


class _Gone(Exception):
    """The client closed, stalled past the head deadline, or was evicted."""


@record
class _Request:
    """A parsed HTTP request head."""

    method: str
    target: str
    version: str
    headers: tuple[tuple[str, str], ...]


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
    ) -> None:
        self._rules = rules
        self._log = log
        self._connect_timeout = connect_timeout
        self._head_timeout = head_timeout
        self._max_connections = max(1, max_connections)
        self._resolve: Resolver = resolve if resolver is None else resolver
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
            _no_delay(conn)
            inbox = _Inbox(conn, time.monotonic() + self._head_timeout)
            if inbox.peek() == 0x05:
                self._serve_socks(conn, inbox)
            else:
                self._serve_http(conn, inbox)
        except Exception:
            pass  # client gone or a bug: either way only this connection ends
        finally:
            self._release(conn)
            conn.close()

    def _serve_http(self, conn: socket.socket, inbox: _Inbox) -> None:
        try:
            try:
                request = _parse_head(inbox.head(MAX_HEAD))
            finally:
                self._settle(conn)
            forwarded: bytes | None = None  # None: a CONNECT tunnel
            if request.method == "CONNECT":
                host, port = _parse_authority(request.target, default_port=None)
            else:
                host, port, path = _parse_absolute_uri(request.target)
                forwarded = _forwarded_head(request, path, host, port)
            upstream = self._open(host, port)
        except _Reject as reject:
            _http_error(conn, reject.status, reject.message)
            return
        with upstream:
            if forwarded is None:
                _send_all(conn, _ESTABLISHED)
                _send_all(upstream, inbox.rest())
                relay(conn, upstream)
            else:
                _send_all(upstream, forwarded + inbox.rest())
                relay(conn, upstream, until_b_eof=True)

    def _serve_socks(self, conn: socket.socket, inbox: _Inbox) -> None:
        try:
            host, port = _socks_handshake(conn, inbox)
        finally:
            self._settle(conn)
        try:
            upstream = self._open(host, port)
        except _Reject as reject:
            _socks_reply(conn, reject.socks_code)
            return
        with upstream:
            _socks_reply(conn, _SOCKS_OK)
            _send_all(upstream, inbox.rest())
            relay(conn, upstream)

    # -- the gate ------------------------------------------------------------------

    def _open(self, host: str, port: int) -> socket.socket:
        """Check ``host:port`` against the policy and connect to a checked address."""
        destination = join_host_port(host, port)
        if self._rules.match(host, port) is None:
            hint = self._rules.hint(host, port)
            self._log.record(host, port, allowed=False, reason="no allow rule matches", hint=hint)
            raise _Reject(
                403,
                _SOCKS_NOT_ALLOWED,
                f"safe-run refused {destination}: no rule in {_POLICY_KEY} matches. "
                f'Add "{hint}" (or pass --allow-host {hint}) to allow it.',
            )
        try:
            addresses = self._resolve(host, port)
        except (OSError, UnicodeError):
            addresses = []
        if not addresses:
            self._log.record(host, port, allowed=True, reason="cannot resolve", hint=None)
            raise _Reject(502, _SOCKS_HOST_UNREACHABLE, f"safe-run could not resolve {host}.")
        usable = [
            (family, ip)
            for family, ip in addresses
            if not is_internal(ip) or self._rules.internal_allowed(host, ip, port)
        ]
        if not usable:
            internal = addresses[0][1]
            hint = self._rules.hint(internal, port)
            self._log.record(
                host,
                port,
                allowed=False,
                reason=f"resolves to internal address {internal}",
                hint=hint,
            )
            raise _Reject(
                403,
                _SOCKS_NOT_ALLOWED,
                f"safe-run refused {destination}: it resolves to the internal address "
                f"{internal}, and a host name may not lead to an internal address. "
                f'Add "{hint}" (or pass --allow-host {hint}) to allow that address.',
            )
        self._log.record(host, port, allowed=True, reason="allowed", hint=None)
        return self._connect(destination, port, usable)

    def _connect(
        self, destination: str, port: int, addresses: list[tuple[int, str]]
    ) -> socket.socket:
        """Connect to the first address that answers, each within connect_timeout."""
        failure: OSError | None = None
        for family, ip in addresses:
            try:
                upstream = socket.socket(family, socket.SOCK_STREAM)
            except OSError as exc:  # out of descriptors, or no IPv6 here
                failure = exc
                continue
            try:
                upstream.settimeout(self._connect_timeout)
                upstream.connect((ip, port))
            except OSError as exc:
                upstream.close()
                failure = exc
                continue
            _no_delay(upstream)
            return upstream
        code, why = _connect_failure(failure, self._connect_timeout)
        raise _Reject(502, code, f"safe-run could not connect to {destination}: {why}.")


class _Inbox:
    """Bytes read from a client before its tunnel opens, under one deadline."""

    def __init__(self, sock: socket.socket, deadline: float) -> None:
        self._sock = sock
        self._deadline = deadline
        self._data = bytearray()

    def _fill(self) -> None:
        remaining = self._deadline - time.monotonic()
        if remaining <= 0:
            raise _Gone("the request head did not arrive in time")
        self._sock.settimeout(remaining)
        try:
            chunk = self._sock.recv(65536)
        except OSError as exc:  # includes the timeout
            raise _Gone(str(exc)) from None
        if not chunk:
            raise _Gone("the client closed the connection")
        self._data += chunk

    def peek(self) -> int:
        """The first byte, without consuming it."""
        while not self._data:
            self._fill()
        return self._data[0]

    def take(self, count: int) -> bytes:
        """Exactly ``count`` bytes."""
        while len(self._data) < count:
            self._fill()
        taken = bytes(self._data[:count])
        del self._data[:count]
        return taken

    def head(self, limit: int) -> bytes:
        """An HTTP head up to and including its blank line (CRLF or bare LF)."""
        scanned = 0  # a client trickling bytes must not make us rescan the whole buffer
        while True:
            while self._data and self._data[0] in b"\r\n":  # stray blank lines before a request
                del self._data[:1]
            start = max(0, scanned - 2)
            ends = [
                found + len(mark)
                for mark in (b"\n\r\n", b"\n\n")
                if (found := self._data.find(mark, start)) >= 0
            ]
            scanned = len(self._data)
            if ends:
                end = min(ends)
                if end > limit:
                    break
                head = bytes(self._data[:end])
                del self._data[:end]
                return head
            if len(self._data) > limit:
                break
            self._fill()
        raise _bad(f"the request head is longer than {limit} bytes")

    def rest(self) -> bytes:
        """Whatever arrived after the head: the start of a body or of a TLS handshake."""
        rest = bytes(self._data)
        self._data.clear()
        return rest


# -- HTTP ------------------------------------------------------------------------------


def _parse_head(raw: bytes) -> _Request:
    """Request line and header fields; anything ambiguous is a 400."""
    lines = raw.decode("latin-1").split("\n")
    lines = [line[:-1] if line.endswith("\r") else line for line in lines]
    parts = lines[0].split(" ")
    if len(parts) != 3:
        raise _bad("the request line must be METHOD TARGET HTTP/1.x")
    method, target, version = parts
    if not method or not _TOKEN_CHARS.issuperset(method):
        raise _bad("the request method is not a token")
    if version not in ("HTTP/1.0", "HTTP/1.1"):
        raise _bad("only HTTP/1.0 and HTTP/1.1 are spoken here")
    if not target or not target.isprintable() or not target.isascii():
        raise _bad("the request target has control or non-ASCII characters")
    headers: list[tuple[str, str]] = []
    for line in lines[1:]:
        if not line:
            continue
        name, colon, value = line.partition(":")
        if not colon or not name or not _TOKEN_CHARS.issuperset(name):
            raise _bad("a header line is malformed (or folded)")
        value = value.strip(" \t")
        if "\r" in value or "\0" in value:
            raise _bad("a header value has a CR or NUL in it")
        headers.append((name, value))
    return _Request(method, target, version, tuple(headers))


def _parse_authority(text: str, default_port: int | None) -> tuple[str, int]:
    """``host[:port]`` (IPv6 in brackets) into a normalised host and a port."""
    if "@" in text:
        raise _bad("user names in the target are not accepted")
    port_text: str | None = None
    if text.startswith("["):
        inner, bracket, rest = text[1:].partition("]")
        if not bracket or ":" not in inner or (rest and not rest.startswith(":")):
            raise _bad("the target's IPv6 address is malformed")
        host = text[: len(inner) + 2]
        port_text = rest[1:] if rest else None
    elif text.count(":") > 1:
        raise _bad("an IPv6 address in a target must be in brackets, as in [::1]:443")
    else:
        host, colon, digits = text.partition(":")
        port_text = digits if colon else None
    if port_text is None:
        if default_port is None:
            raise _bad("CONNECT needs host:port")
        port = default_port
    elif port_text.isascii() and port_text.isdigit() and len(port_text) <= 5:
        port = int(port_text)
    else:
        port = 0
    if not 1 <= port <= 65535:
        raise _bad("the port must be a number from 1 to 65535")
    name = normalise_host(host)
    if name is None:
        raise _bad("the target host is not a valid host name or IP address")
    return name, port


def _parse_absolute_uri(target: str) -> tuple[str, int, str]:
    """``http://authority/path`` into host, port and the origin-form path."""
    scheme, sep, rest = target.partition("://")
    scheme = scheme.lower()
    if sep and scheme == "https":
        raise _bad(
            "https:// URLs go through a CONNECT tunnel: set HTTPS_PROXY, "
            "the proxy does not see inside TLS"
        )
    if not sep or scheme != "http":
        raise _bad(
            "this is a proxy: send CONNECT host:port, or an absolute http:// URL "
            "(set HTTP_PROXY and HTTPS_PROXY)"
        )
    cut = min((i for i in (rest.find("/"), rest.find("?"), rest.find("#")) if i >= 0), default=-1)
    authority, path = (rest, "") if cut < 0 else (rest[:cut], rest[cut:])
    path = path.partition("#")[0]
    if not path.startswith("/"):
        path = "/" + path
    host, port = _parse_authority(authority, default_port=80)
    return host, port, path


def _forwarded_head(request: _Request, path: str, host: str, port: int) -> bytes:
    """The origin-form request: hop-by-hop headers out, Host from the checked URI.

    ``Host`` is rewritten because the connection goes to the address the URI named;
    a different Host header would ask a shared front end (a CDN) for another site.
    """
    drop = set(_HOP_BY_HOP)
    drop.add("host")
    lengths: set[str] = set()
    chunked = False
    for name, value in request.headers:
        lower = name.lower()
        if lower == "connection":
            drop.update(token.strip().lower() for token in value.split(","))
        elif lower == "content-length":
            lengths.add(value)
        elif lower == "transfer-encoding":
            chunked = True
            if value.rpartition(",")[2].strip().lower() != "chunked":
                raise _bad("a request Transfer-Encoding must end in chunked")
    if chunked and lengths:
        raise _bad("a request must not have both Content-Length and Transfer-Encoding")
    if len(lengths) > 1 or any(not (v.isascii() and v.isdigit()) for v in lengths):
        raise _bad("the Content-Length is malformed or given twice differently")
    drop -= _FRAMING
    authority = f"[{host}]" if ":" in host else host
    if port != 80:
        authority += f":{port}"
    lines = [f"{request.method} {path} {request.version}", f"Host: {authority}"]
    lines += [f"{name}: {value}" for name, value in request.headers if name.lower() not in drop]
    lines += ["Connection: close", "", ""]
    return "\r\n".join(lines).encode("latin-1")


def _http_error(conn: socket.socket, status: int, message: str) -> None:
    """Send a short plain-text error response, then close gently."""
    body = (message + "\n").encode("ascii", "replace")
    head = (
        f"HTTP/1.1 {status} {_REASONS[status]}\r\n"
        "Content-Type: text/plain\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    ).encode("ascii")
    conn.settimeout(_DRAIN_SECONDS)
    conn.sendall(head + body)
    _drain(conn)


def _bad(why: str) -> _Reject:
    return _Reject(400, _SOCKS_FAILURE, f"safe-run proxy: bad request: {why}.")


# -- SOCKS5 ----------------------------------------------------------------------------


def _socks_handshake(conn: socket.socket, inbox: _Inbox) -> tuple[str, int]:
    """Method negotiation (no authentication only) and the CONNECT request."""
    _version, count = inbox.take(2)
    if 0x00 not in inbox.take(count):
        conn.sendall(b"\x05\xff")  # "no acceptable methods"
        raise _Gone("the SOCKS client offered no method without authentication")
    conn.sendall(b"\x05\x00")
    version, command, _reserved, address_type = inbox.take(4)
    if version != 0x05:
        _socks_reply(conn, _SOCKS_FAILURE)
        raise _Gone("not a SOCKS5 request")
    if address_type == 0x01:
        host = socket.inet_ntop(socket.AF_INET, inbox.take(4))
    elif address_type == 0x04:
        host = socket.inet_ntop(socket.AF_INET6, inbox.take(16))
    elif address_type == 0x03:
        host = inbox.take(inbox.take(1)[0]).decode("latin-1")
    else:
        _socks_reply(conn, _SOCKS_BAD_ADDRESS)
        raise _Gone("unknown SOCKS address type")
    port = int.from_bytes(inbox.take(2), "big")
    if command != 0x01:  # BIND and UDP ASSOCIATE would open more than one connection
        _socks_reply(conn, _SOCKS_BAD_COMMAND)
        raise _Gone("SOCKS command other than CONNECT")
    name = normalise_host(host)
    if name is None or port == 0:
        _socks_reply(conn, _SOCKS_FAILURE)
        raise _Gone("malformed SOCKS destination")
    return name, port


def _socks_reply(conn: socket.socket, code: int) -> None:
    """A reply with the bound address left as 0.0.0.0:0 (ours is nobody's business)."""
    conn.settimeout(_DRAIN_SECONDS)
    conn.sendall(bytes((0x05, code, 0x00, 0x01)) + bytes(6))
    if code != _SOCKS_OK:
        _drain(conn)


# -- small helpers ---------------------------------------------------------------------


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


def _send_all(sock: socket.socket, data: bytes) -> None:
    if data:
        sock.settimeout(None)
        sock.sendall(data)


def _drain(conn: socket.socket) -> None:
    """Half-close, then read (and discard) what the client still sends, briefly.

    Closing a socket with unread input makes the kernel send a reset, which can
    destroy an error reply before the client has read it.
    """
    try:
        conn.shutdown(socket.SHUT_WR)
        deadline = time.monotonic() + _DRAIN_SECONDS
        drained = 0
        while drained < _DRAIN_BYTES:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            conn.settimeout(remaining)
            chunk = conn.recv(65536)
            if not chunk:
                return
            drained += len(chunk)
    except OSError:
        pass


def _no_delay(sock: socket.socket) -> None:
    """Forward small writes at once instead of holding them until the last is ACKed.

    A relay re-sends writes as they come; with Nagle on, a response written as head
    then body waits out the peer's delayed ACK (40 ms) between the two.
    """
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except OSError:
        pass


def _connect_failure(failure: OSError | None, timeout: float) -> tuple[int, str]:
    """The SOCKS reply code and a short reason for a failed upstream connect."""
    if isinstance(failure, TimeoutError):
        return _SOCKS_HOST_UNREACHABLE, f"no answer within {timeout:g} s"
    code = failure.errno if failure is not None else None
    if code == errno.ECONNREFUSED:
        return _SOCKS_REFUSED, "connection refused"
    if code == errno.ENETUNREACH:
        return _SOCKS_NET_UNREACHABLE, "network unreachable"
    if code == errno.EHOSTUNREACH:
        return _SOCKS_HOST_UNREACHABLE, "host unreachable"
    reason = failure.strerror if failure is not None and failure.strerror else "connect failed"
    return _SOCKS_FAILURE, reason.lower()
