"""Real servers on loopback for the network sandbox tests and bench/network.py.

The network tests prove two things: what the policy allows still works through the
supervisor's proxy, and what it does not allow never arrives.  Both need a real
counterpart on the other side of a real socket, one that *records* what reached it:
a request log is the evidence that an exfiltration attempt succeeded (unsandboxed) or
failed (sandboxed), which a client-side error message alone cannot show (an error can
come after the bytes left).

- :class:`HttpOrigin` — a threaded HTTP/1.1 server: ``/hello``, ``/bytes/N`` (N
  deterministic bytes with their SHA-256 in ``X-Sha256``), ``/delay/MS``, and a PEP 503
  index under ``/simple/`` that serves a wheel built here by hand, so ``pip download``
  has something real to fetch without any outside index.
- :class:`TcpSink` — accepts connections and keeps what they sent.
- :class:`UdpSink` — keeps every datagram (an outside DNS resolver or UDP exfiltration
  target).

Everything binds an ephemeral port on a loopback address and runs in daemon threads,
so a test that forgets to stop a server cannot hang the test run.  Nothing here needs
root: any user may bind any 127.0.0.0/8 address and ``::1`` on Linux.
"""

from __future__ import annotations

import base64
import hashlib
import html
import io
import random
import re
import socket
import socketserver
import struct
import threading
import time
import zipfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from functools import lru_cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import TypeVar
from urllib.parse import urlsplit

#: The repeated block behind ``/bytes/N``.  One random MiB repeated is as cheap to
#: send as zeros (a memoryview slice, no per-byte work), yet a proxy that drops,
#: duplicates or reorders a chunk changes the digest, which constant bytes would hide
#: whenever the damage is block-aligned within a run of identical bytes.
PATTERN_BLOCK_SIZE = 1 << 20
PATTERN_SEED = 0x5AFE_0000
_PATTERN_BLOCK = random.Random(PATTERN_SEED).randbytes(PATTERN_BLOCK_SIZE)

#: The wheel the test index serves.
TINY_NAME = "tinypkg"
TINY_VERSION = "0.1.0"
#: A fixed timestamp so that the wheel, and therefore its digest, is the same each run.
_ZIP_DATE = (2024, 1, 1, 0, 0, 0)

HOST_V4 = "127.0.0.1"
HOST_V6 = "::1"


# --- deterministic bodies --------------------------------------------------------------


def pattern_chunks(size: int) -> Iterator[memoryview]:
    """The ``/bytes/size`` body as slices of the shared block, without copying."""
    block = memoryview(_PATTERN_BLOCK)
    remaining = size
    while remaining > 0:
        take = min(remaining, PATTERN_BLOCK_SIZE)
        yield block[:take]
        remaining -= take


@lru_cache(maxsize=32)
def pattern_sha256(size: int) -> str:
    """Hex SHA-256 of the ``/bytes/size`` body; cached because a GiB takes ~0.5 s.

    The server sends this as ``X-Sha256`` and the tests compare the client's own
    digest with it, so both sides are computed by this one routine.
    """
    digest = hashlib.sha256()
    for chunk in pattern_chunks(size):
        digest.update(chunk)
    return digest.hexdigest()


# --- a wheel, made by hand -------------------------------------------------------------


@dataclass(frozen=True)
class Wheel:
    """A built wheel: its file name, bytes and SHA-256 (hex)."""

    filename: str
    data: bytes
    sha256: str


def _record_hash(data: bytes) -> str:
    """A RECORD hash: ``sha256=`` and the urlsafe base64 digest without padding."""
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
    return "sha256=" + digest.decode("ascii")


def wheel_filename(name: str, version: str, tag: str = "py3-none-any") -> str:
    """The file name of a wheel: the name normalised as the wheel spec asks."""
    return f"{_wheel_name(name)}-{version}-{tag}.whl"


def _wheel_name(name: str) -> str:
    """A distribution name as wheel and sdist file names spell it (``a-b.c`` → ``a_b_c``)."""
    return re.sub(r"[-_.]+", "_", name).lower()


def make_wheel(
    name: str,
    version: str,
    files: Mapping[str, bytes],
    *,
    metadata_extra: str = "",
    entry_points: str | None = None,
    tag: str = "py3-none-any",
    summary: str = "A wheel built by the safe-pip tests",
) -> Wheel:
    """A real, installable wheel built with zipfile: ``files`` plus its dist-info.

    ``files`` maps archive paths (``pkg/__init__.py``) to contents; the dist-info gets
    METADATA (with ``metadata_extra`` lines appended, e.g. ``Requires-Dist: x``),
    WHEEL, ``entry_points.txt`` when ``entry_points`` is given, and a RECORD with every
    file's hash.  Timestamps are fixed, so the same input gives the same bytes.
    """
    dist_info = f"{_wheel_name(name)}-{version}.dist-info"
    members = dict(files)
    members[f"{dist_info}/METADATA"] = (
        f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\nSummary: {summary}\n"
        + metadata_extra
    ).encode()
    members[f"{dist_info}/WHEEL"] = (
        f"Wheel-Version: 1.0\nGenerator: safe-pip-tests\nRoot-Is-Purelib: true\nTag: {tag}\n"
    ).encode()
    if entry_points is not None:
        members[f"{dist_info}/entry_points.txt"] = entry_points.encode()
    record_lines = [f"{path},{_record_hash(data)},{len(data)}" for path, data in members.items()]
    record_lines.append(f"{dist_info}/RECORD,,")
    members[f"{dist_info}/RECORD"] = ("\n".join(record_lines) + "\n").encode()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path, data in members.items():
            info = zipfile.ZipInfo(path, date_time=_ZIP_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, data)
    data = buffer.getvalue()
    return Wheel(
        filename=wheel_filename(name, version, tag),
        data=data,
        sha256=hashlib.sha256(data).hexdigest(),
    )


@lru_cache(maxsize=1)
def tiny_wheel() -> Wheel:
    """``tinypkg-0.1.0-py3-none-any.whl``: a package module and its dist-info.

    Built with zipfile rather than a build backend so the test index needs no network,
    no build isolation and no extra tool; the four files are all a wheel needs for pip
    to download it (and to install it, should a test want to).
    """
    return make_wheel(
        TINY_NAME,
        TINY_VERSION,
        {f"{TINY_NAME}/__init__.py": b'"""Served by the safe-pip test index."""\n\nVALUE = 42\n'},
        summary="A tiny wheel built by the safe-pip tests",
    )


# --- helpers ---------------------------------------------------------------------------


def ipv6_loopback_available() -> bool:
    """Whether ``::1`` can be bound (IPv6 may be disabled on a host or in a container)."""
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as probe:
            probe.bind((HOST_V6, 0))
    except OSError:
        return False
    return True


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def _authority(host: str, port: int) -> str:
    """``host:port`` as it appears in URLs and in allow rules (IPv6 in brackets)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.02) -> bool:
    """Poll ``predicate`` until it holds or ``timeout`` seconds pass; its last answer.

    Servers record from their own threads, so evidence of a connection made by a
    process that has already exited can still be a few milliseconds behind.
    """
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return predicate()
        time.sleep(interval)


# --- HTTP origin -----------------------------------------------------------------------


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the origin saw it."""

    method: str
    #: The path with its query, normalised to origin form even when the client sent
    #: an absolute URI (as a forwarding proxy may).
    path: str
    #: The request target exactly as it arrived.
    target: str
    client: tuple[str, int]
    headers: dict[str, str]
    body: bytes


class QuietHttpServer(ThreadingHTTPServer):
    """ThreadingHTTPServer that can bind IPv6 and never does a DNS lookup to start."""

    daemon_threads = True
    # The stdlib default (5) overflows when uv sends dozens of requests at once
    # through the proxy (a connection per request): dropped SYNs stall ~1 s each.
    request_queue_size = 512

    def __init__(self, host: str, handler: type[BaseHTTPRequestHandler]) -> None:
        self.address_family = _family(host)
        super().__init__((host, 0), handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind resolves the host name with getfqdn(), which may wait
        # for a resolver; the name is only used in CGI environments.
        socketserver.TCPServer.server_bind(self)
        self.server_name = "localhost"
        self.server_port = self.server_address[1]


_Service = TypeVar("_Service", bound="RecordingHttpService")


class RecordingHttpService:
    """A :class:`QuietHttpServer` in a daemon thread, and the requests it recorded.

    The shared part of :class:`HttpOrigin` and the package index of pkg_index.py:
    start and stop, the port, and a thread-safe request log.  Subclasses build their
    server in :meth:`_make_server`.  Use as a context manager.
    """

    def __init__(self, host: str) -> None:
        self.host = host
        self._lock = threading.Lock()
        self._requests: list[RecordedRequest] = []
        self._server: QuietHttpServer | None = None
        self._thread: threading.Thread | None = None

    def _make_server(self) -> QuietHttpServer:
        raise NotImplementedError

    def __enter__(self: _Service) -> _Service:
        self._server = self._make_server()
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"{type(self).__name__}:{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError(
                f"{type(self).__name__} is not running (use it as a context manager)"
            )
        return int(self._server.server_address[1])

    @property
    def authority(self) -> str:
        """``host:port``, the form an allow rule and a URL use."""
        return _authority(self.host, self.port)

    def record(self, request: RecordedRequest) -> None:
        with self._lock:
            self._requests.append(request)

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request so far, oldest first (a copy)."""
        with self._lock:
            return list(self._requests)

    def paths(self) -> list[str]:
        return [request.path for request in self.requests]

    def reset(self) -> None:
        """Forget what arrived, so the next run's evidence starts from nothing."""
        with self._lock:
            self._requests.clear()


class _OriginServer(QuietHttpServer):
    origin: HttpOrigin

    def __init__(self, host: str, origin: HttpOrigin) -> None:
        self.origin = origin
        super().__init__(host, _OriginHandler)


class _OriginHandler(BaseHTTPRequestHandler):
    """Routes of :class:`HttpOrigin`; keeps connections alive (HTTP/1.1)."""

    protocol_version = "HTTP/1.1"
    # Headers and body leave in separate writes; with Nagle's algorithm the body
    # would wait for the peer's (delayed) ACK of the headers, adding ~40 ms to some
    # small responses — a stall of this test server, not of what it is used to measure.
    disable_nagle_algorithm = True
    server: _OriginServer

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: pytest shows stderr of failing tests, and this is noise there."""

    def do_GET(self) -> None:
        self._serve(b"")

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self._serve(self.rfile.read(length) if length > 0 else b"")

    def _serve(self, body: bytes) -> None:
        split = urlsplit(self.path)
        path = split.path + (f"?{split.query}" if split.query else "")
        origin = self.server.origin
        host, port = self.client_address[:2]
        origin.record(
            RecordedRequest(
                method=self.command,
                path=path,
                target=self.path,
                client=(str(host), int(port)),
                headers={key.lower(): value for key, value in self.headers.items()},
                body=body,
            )
        )
        with origin.in_flight():
            self._route(split.path)

    def _route(self, path: str) -> None:
        if path == "/hello":
            self._reply(200, HttpOrigin.HELLO, "text/plain; charset=utf-8")
        elif path.startswith("/bytes/") and path[7:].isdigit():
            self._send_pattern(int(path[7:]))
        elif path.startswith("/delay/") and path[7:].isdigit():
            time.sleep(int(path[7:]) / 1000)
            self._reply(200, b"ok\n", "text/plain; charset=utf-8")
        elif path == "/simple/":
            self._reply(200, self.server.origin.index_page(), "text/html; charset=utf-8")
        elif path in (f"/simple/{TINY_NAME}/", f"/simple/{TINY_NAME}"):
            self._reply(200, self.server.origin.project_page(), "text/html; charset=utf-8")
        elif path == f"/files/{tiny_wheel().filename}":
            self._reply(200, tiny_wheel().data, "application/octet-stream")
        else:
            self._reply(404, b"not found\n", "text/plain; charset=utf-8")

    def _reply(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _send_pattern(self, size: int) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(size))
        self.send_header("X-Sha256", pattern_sha256(size))
        self.end_headers()
        try:
            for chunk in pattern_chunks(size):
                self.wfile.write(chunk)
        except OSError:
            self.close_connection = True  # the client went away mid-body


class HttpOrigin(RecordingHttpService):
    """A threaded HTTP/1.1 origin on loopback that records every request.

    Use as a context manager; ``port`` and the URLs are valid inside the ``with``.
    """

    HELLO = b"hello from the origin\n"

    def __init__(self, host: str = HOST_V4) -> None:
        super().__init__(host)
        self._in_flight = 0
        self._max_in_flight = 0

    def _make_server(self) -> QuietHttpServer:
        return _OriginServer(self.host, self)

    def url(self, path: str = "/") -> str:
        return f"http://{self.authority}{path}"

    @property
    def index_url(self) -> str:
        """The PEP 503 index root, for ``pip --index-url``."""
        return self.url("/simple/")

    # -- what arrived ---------------------------------------------------------------

    def saw(self, path_prefix: str) -> bool:
        """Whether any request's path starts with ``path_prefix``."""
        return any(path.startswith(path_prefix) for path in self.paths())

    def reset(self) -> None:
        super().reset()
        with self._lock:
            self._max_in_flight = 0

    @property
    def max_in_flight(self) -> int:
        """The most requests the origin was answering at once since the last reset."""
        with self._lock:
            return self._max_in_flight

    def in_flight(self) -> _InFlight:
        return _InFlight(self)

    def _enter_request(self) -> None:
        with self._lock:
            self._in_flight += 1
            self._max_in_flight = max(self._max_in_flight, self._in_flight)

    def _leave_request(self) -> None:
        with self._lock:
            self._in_flight -= 1

    # -- the package index ----------------------------------------------------------

    def index_page(self) -> bytes:
        """The PEP 503 root: one project."""
        return (
            "<!DOCTYPE html>\n<html><body>\n"
            f'<a href="/simple/{TINY_NAME}/">{TINY_NAME}</a>\n'
            "</body></html>\n"
        ).encode()

    def project_page(self) -> bytes:
        """The project page: one wheel link with its hash, which pip verifies."""
        wheel = tiny_wheel()
        href = html.escape(f"/files/{wheel.filename}#sha256={wheel.sha256}")
        return (
            "<!DOCTYPE html>\n<html><body>\n"
            f'<a href="{href}">{html.escape(wheel.filename)}</a>\n'
            "</body></html>\n"
        ).encode()


class _InFlight:
    """Counts a request as being answered for :attr:`HttpOrigin.max_in_flight`."""

    def __init__(self, origin: HttpOrigin) -> None:
        self._origin = origin

    def __enter__(self) -> None:
        self._origin._enter_request()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._origin._leave_request()


# --- TCP sink --------------------------------------------------------------------------


@dataclass
class SinkConnection:
    """One accepted connection and everything it sent before closing or going idle."""

    peer: tuple[str, int]
    data: bytes = b""


_Sink = TypeVar("_Sink", bound="_SocketSink")


class _SocketSink:
    """A socket bound on ``host:port`` and a daemon thread serving it until exit.

    The shared part of :class:`TcpSink` and :class:`UdpSink`; subclasses say what
    kind of socket (``kind``), how to get it ready (:meth:`_ready`) and what the
    thread does (:meth:`_serve`, which polls ``self._stop``: the socket has a short
    timeout).
    """

    kind = socket.SOCK_STREAM

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self._requested_port = port
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None

    def _ready(self, sock: socket.socket) -> None:
        """Called after bind: a TCP sink listens here."""

    def _serve(self) -> None:
        raise NotImplementedError

    def __enter__(self: _Sink) -> _Sink:
        sock = socket.socket(_family(self.host), self.kind)
        try:
            sock.bind((self.host, self._requested_port))
            self._ready(sock)
        except OSError:
            sock.close()
            raise
        sock.settimeout(0.05)
        self._sock = sock
        self._thread = threading.Thread(
            target=self._serve, name=f"{type(self).__name__}:{self.port}", daemon=True
        )
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._sock is not None:
            self._sock.close()

    @property
    def port(self) -> int:
        if self._sock is None:
            raise RuntimeError(
                f"{type(self).__name__} is not running (use it as a context manager)"
            )
        return int(self._sock.getsockname()[1])


class TcpSink(_SocketSink):
    """Accepts TCP connections on ``host:port`` and keeps what each one sent.

    A connection at all is evidence (an exfiltration channel opened), and the bytes
    show what was sent.  The sink never answers; it closes a connection after
    ``idle_timeout`` seconds of silence so that a client waiting for a reply (a TLS
    handshake, say) gets an end-of-file instead of hanging.
    """

    def __init__(self, host: str = HOST_V4, port: int = 0, *, idle_timeout: float = 1.0) -> None:
        super().__init__(host, port)
        self.idle_timeout = idle_timeout
        self._connections: list[SinkConnection] = []

    def _ready(self, sock: socket.socket) -> None:
        sock.listen(64)

    @property
    def authority(self) -> str:
        return _authority(self.host, self.port)

    @property
    def connections(self) -> list[SinkConnection]:
        with self._lock:
            return [SinkConnection(c.peer, c.data) for c in self._connections]

    @property
    def connected(self) -> bool:
        """Whether anyone connected since the last reset."""
        with self._lock:
            return bool(self._connections)

    @property
    def received(self) -> bytes:
        """Everything every connection sent, concatenated."""
        with self._lock:
            return b"".join(c.data for c in self._connections)

    def seen(self) -> bool:
        """The evidence test: a connection arrived (with or without data)."""
        return self.connected

    def reset(self) -> None:
        with self._lock:
            self._connections.clear()

    def _serve(self) -> None:
        assert self._sock is not None
        while not self._stop.is_set():
            try:
                conn, peer = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            record = SinkConnection(peer=(str(peer[0]), int(peer[1])))
            with self._lock:
                self._connections.append(record)
            threading.Thread(target=self._drain, args=(conn, record), daemon=True).start()

    def _drain(self, conn: socket.socket, record: SinkConnection) -> None:
        conn.settimeout(self.idle_timeout)
        with conn:
            while not self._stop.is_set():
                try:
                    chunk = conn.recv(65536)
                except OSError:  # idle timeout or reset
                    return
                if not chunk:
                    return
                with self._lock:
                    record.data += chunk


# --- UDP sink --------------------------------------------------------------------------


class UdpSink(_SocketSink):
    """Keeps every datagram sent to ``host:port``: a stand-in outside resolver.

    An unsandboxed program can send DNS queries (or anything else) straight to a
    resolver of its choosing; if one datagram arrives here from a sandboxed run, UDP
    is an exfiltration channel.
    """

    kind = socket.SOCK_DGRAM

    def __init__(self, host: str = HOST_V4, port: int = 0) -> None:
        super().__init__(host, port)
        self._datagrams: list[tuple[bytes, tuple[str, int]]] = []

    @property
    def datagrams(self) -> list[bytes]:
        with self._lock:
            return [data for data, _ in self._datagrams]

    def seen(self) -> bool:
        """The evidence test: any datagram arrived."""
        with self._lock:
            return bool(self._datagrams)

    def reset(self) -> None:
        with self._lock:
            self._datagrams.clear()

    def _serve(self) -> None:
        assert self._sock is not None
        while not self._stop.is_set():
            try:
                data, peer = self._sock.recvfrom(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                self._datagrams.append((data, (str(peer[0]), int(peer[1]))))


# --- DNS wire format -------------------------------------------------------------------


def dns_query_name(packet: bytes) -> str | None:
    """The question name of a DNS query packet, or None if it is not one.

    Lets a test tell "a DNS query carrying the secret arrived" from "some bytes
    arrived": the header must say query (QR=0) with one question, and the name must
    be well-formed labels.
    """
    if len(packet) < 12:
        return None
    _qid, flags, qdcount = struct.unpack("!HHH", packet[:6])
    if flags & 0x8000 or qdcount != 1:
        return None
    labels: list[str] = []
    offset = 12
    while offset < len(packet):
        length = packet[offset]
        offset += 1
        if length == 0:
            return ".".join(labels) if offset + 4 <= len(packet) else None
        if length > 63 or offset + length > len(packet):
            return None
        labels.append(packet[offset : offset + length].decode("ascii", errors="replace"))
        offset += length
    return None
