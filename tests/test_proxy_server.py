"""The filtering proxy end to end: real sockets on 127.0.0.1, real clients and origins.

Origins are started here: a threaded ``http.server`` (``/bytes/N`` streams N
deterministic bytes, anything else echoes the request it saw as JSON) and a raw TCP
echo server.  The proxy runs in-process on a listener bound to 127.0.0.1:0.

Every protection is shown both ways: what the rules allow gets through (so a proxy
that refused everything could not pass) and what they do not is refused, with the
pattern to add.  The DNS-rebinding test uses a real /etc/hosts name for 127.0.0.1;
only the metadata-address test injects a resolver, because no real name here
resolves to 169.254.169.254.
"""

from __future__ import annotations

import hashlib
import http.client
import http.server
import json
import os
import resource
import socket
import struct
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator

import pytest

from safe_pip.proxy.log import DestinationLog
from safe_pip.proxy.relay import relay
from safe_pip.proxy.rules import RuleSet
from safe_pip.proxy.server import ProxyServer

LOOPBACK = "127.0.0.1"
# Deterministic filler whose period (65521, a prime) is not a power of two, so a
# dropped or repeated chunk changes the digest.
BLOCK = bytes((i * 131 + 7) % 251 for i in range(65521))


def stream(size: int) -> Iterator[bytes]:
    """``size`` deterministic bytes, in chunks of about 1 MiB."""
    chunk = BLOCK * 16
    while size > 0:
        piece = chunk[:size]
        size -= len(piece)
        yield piece


def digest(size: int) -> str:
    sha = hashlib.sha256()
    for piece in stream(size):
        sha.update(piece)
    return sha.hexdigest()


# -- origins ---------------------------------------------------------------------------


class _OriginHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        super().setup()
        # Head and body go out as two writes: without this the origin itself would
        # wait for a delayed ACK between them, hiding what the proxy adds.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def do_GET(self) -> None:
        if self.path.startswith("/bytes/"):
            size = int(self.path.rsplit("/", 1)[1])
            self.send_response(200)
            self.send_header("Content-Length", str(size))
            self.end_headers()
            for piece in stream(size):
                self.wfile.write(piece)
            return
        self._echo(b"")

    def do_POST(self) -> None:
        self._echo(self.rfile.read(int(self.headers.get("Content-Length", "0"))))

    do_PUT = do_POST

    def _echo(self, body: bytes) -> None:
        seen = {
            "request_line": self.requestline,
            "headers": [[name, value] for name, value in self.headers.items()],
            "body": body.decode("latin-1"),
        }
        payload = json.dumps(seen).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def origin() -> Iterator[int]:
    """Port of a threaded HTTP origin server on 127.0.0.1."""
    server = http.server.ThreadingHTTPServer((LOOPBACK, 0), _OriginHandler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def _echo_client(conn: socket.socket) -> None:
    with conn:
        try:
            while data := conn.recv(1 << 20):
                conn.sendall(data)
            conn.shutdown(socket.SHUT_WR)
        except OSError:
            pass


def _echo_accept(listener: socket.socket) -> None:
    while True:
        try:
            conn, _ = listener.accept()
        except OSError:
            return
        threading.Thread(target=_echo_client, args=(conn,), daemon=True).start()


@pytest.fixture(scope="module")
def echo() -> Iterator[int]:
    """Port of a raw TCP echo server (half-closes after the client does)."""
    listener = socket.create_server((LOOPBACK, 0), backlog=128)
    threading.Thread(target=_echo_accept, args=(listener,), daemon=True).start()
    yield listener.getsockname()[1]
    listener.shutdown(socket.SHUT_RDWR)
    listener.close()


@pytest.fixture
def closed_port() -> int:
    """A loopback port nothing listens on (connect gets ECONNREFUSED)."""
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def loopback_name() -> str:
    """A name from /etc/hosts, other than localhost, that resolves only to 127.x."""
    try:
        with open("/etc/hosts", encoding="utf-8") as hosts:
            lines = hosts.read().splitlines()
    except OSError:
        lines = []
    candidates = [socket.gethostname()]
    for line in lines:
        fields = line.partition("#")[0].split()
        if fields and fields[0].startswith("127."):
            candidates += fields[1:]
    for name in candidates:
        if name.lower().startswith("localhost") or "." in name.rstrip("."):
            continue
        try:
            infos = socket.getaddrinfo(name, 80, type=socket.SOCK_STREAM)
        except OSError:
            continue
        if infos and all(str(info[4][0]).startswith("127.") for info in infos):
            return name
    pytest.skip("no name other than localhost resolves to 127.0.0.1 here")


@pytest.fixture(autouse=True)
def _no_proxy_bypass(monkeypatch: pytest.MonkeyPatch) -> None:
    """urllib would skip our proxy for hosts listed in no_proxy."""
    for name in ("no_proxy", "NO_PROXY", "http_proxy", "HTTP_PROXY"):
        monkeypatch.delenv(name, raising=False)


# -- the proxy under test --------------------------------------------------------------


class Proxy:
    """A running ProxyServer and what the tests need to reach and inspect it."""

    def __init__(self, server: ProxyServer, log: DestinationLog, listener: socket.socket):
        self.server = server
        self.log = log
        self.port = int(listener.getsockname()[1])
        self.thread = server.serve(listener)
        self.url = f"http://{LOOPBACK}:{self.port}"

    def opener(self, url: str | None = None) -> urllib.request.OpenerDirector:
        handler = urllib.request.ProxyHandler({"http": url or self.url})
        return urllib.request.build_opener(handler)


MakeProxy = Callable[..., Proxy]


@pytest.fixture
def make_proxy() -> Iterator[MakeProxy]:
    started: list[Proxy] = []

    def make(*patterns: str, **options: object) -> Proxy:
        log = DestinationLog()
        server = ProxyServer(RuleSet.parse(patterns), log, **options)  # type: ignore[arg-type]
        listener = socket.create_server((LOOPBACK, 0), backlog=socket.SOMAXCONN)
        started.append(Proxy(server, log, listener))
        return started[-1]

    yield make
    for proxy in started:
        proxy.server.close()


# -- client helpers --------------------------------------------------------------------


def read_to_eof(sock: socket.socket, timeout: float = 5.0) -> bytes:
    sock.settimeout(timeout)
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def read_head(sock: socket.socket) -> bytes:
    sock.settimeout(5.0)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(1)
        if not chunk:
            break
        data += chunk
    return data


def status_of(response: bytes) -> int:
    return int(response.split(b" ", 2)[1])


def body_of(response: bytes) -> str:
    return response.partition(b"\r\n\r\n")[2].decode()


def exchange(proxy: Proxy, raw: bytes) -> bytes:
    """Send raw bytes to the proxy; return everything it answers until it closes."""
    with socket.create_connection((LOOPBACK, proxy.port), timeout=5) as sock:
        sock.sendall(raw)
        return read_to_eof(sock)


def connect_tunnel(proxy: Proxy, target: str) -> tuple[bytes, socket.socket]:
    """Send CONNECT; return the response head and the socket (the tunnel if 200)."""
    sock = socket.create_connection((LOOPBACK, proxy.port), timeout=5)
    sock.sendall(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode())
    return read_head(sock), sock


def socks5(
    proxy: Proxy, address: bytes, port: int, *, command: int = 1
) -> tuple[int, socket.socket]:
    """A SOCKS5 CONNECT (``address`` is ATYP + address bytes); the reply code and socket."""
    sock = socket.create_connection((LOOPBACK, proxy.port), timeout=5)
    sock.sendall(b"\x05\x01\x00")
    assert sock.recv(2) == b"\x05\x00"
    sock.sendall(bytes((5, command, 0)) + address + struct.pack("!H", port))
    reply = b""
    while len(reply) < 10:
        chunk = sock.recv(10 - len(reply))
        if not chunk:
            break
        reply += chunk
    assert reply[:1] == b"\x05", reply
    return reply[1], sock


def socks_ipv4(ip: str) -> bytes:
    return b"\x01" + socket.inet_aton(ip)


def socks_name(name: str) -> bytes:
    return b"\x03" + bytes((len(name),)) + name.encode()


def echo_once(sock: socket.socket, payload: bytes = b"ping through the tunnel") -> bytes:
    sock.settimeout(5)
    sock.sendall(payload)
    received = b""
    while len(received) < len(payload):
        chunk = sock.recv(65536)
        if not chunk:
            break
        received += chunk
    return received


# -- CONNECT ---------------------------------------------------------------------------


def test_connect_tunnel_to_allowed_port_and_403_for_another(
    make_proxy: MakeProxy, echo: int, origin: int
) -> None:
    proxy = make_proxy(f"{LOOPBACK}:{echo}")

    head, tunnel = connect_tunnel(proxy, f"{LOOPBACK}:{echo}")
    with tunnel:
        assert head == b"HTTP/1.1 200 Connection established\r\n\r\n"
        assert echo_once(tunnel) == b"ping through the tunnel"

    # The IPv4-mapped spelling is the same address: allowed, and reached over IPv4.
    head, tunnel = connect_tunnel(proxy, f"[::ffff:{LOOPBACK}]:{echo}")
    with tunnel:
        assert status_of(head) == 200
        assert echo_once(tunnel) == b"ping through the tunnel"

    head, sock = connect_tunnel(proxy, f"{LOOPBACK}:{origin}")
    with sock:
        response = head + read_to_eof(sock)
    assert status_of(response) == 403
    assert b"Content-Type: text/plain\r\n" in response
    assert b"Connection: close\r\n" in response
    body = body_of(response)
    assert f'add "{LOOPBACK}:{origin}" to [tool.safe-run.network] allow' in body
    assert f"--allow-host {LOOPBACK}:{origin}" in body
    assert "[tool.safe-run.network] allow" in body
    assert proxy.log.refused_count() == 1


def test_connect_upstream_failure_is_502(make_proxy: MakeProxy, closed_port: int) -> None:
    proxy = make_proxy(f"{LOOPBACK}:{closed_port}")
    head, sock = connect_tunnel(proxy, f"{LOOPBACK}:{closed_port}")
    with sock:
        response = head + read_to_eof(sock)
    assert status_of(response) == 502
    assert "connection refused" in body_of(response)


# -- absolute-URI HTTP -----------------------------------------------------------------


def test_absolute_uri_request_is_forwarded_in_origin_form(
    make_proxy: MakeProxy, origin: int
) -> None:
    proxy = make_proxy(f"{LOOPBACK}:{origin}")
    # Credentials in the proxy URL make urllib send Proxy-Authorization: it must not
    # reach the origin.
    opener = proxy.opener(f"http://user:secret@{LOOPBACK}:{proxy.port}")
    request = urllib.request.Request(
        f"http://{LOOPBACK}:{origin}/echo?q=1", data=b"request body", headers={"X-Test": "kept"}
    )
    with opener.open(request, timeout=5) as response:
        seen = json.load(response)
    headers = {name.lower(): value for name, value in seen["headers"]}
    assert seen["request_line"] == "POST /echo?q=1 HTTP/1.1"
    assert seen["body"] == "request body"
    assert headers["x-test"] == "kept"
    assert headers["connection"] == "close"
    assert headers["host"] == f"{LOOPBACK}:{origin}"
    assert not [name for name in headers if name.startswith("proxy-")]

    # urllib fixes its own Connection header; a raw client shows the rest of the rules.
    raw = (
        f"PUT http://{LOOPBACK}:{origin}/raw HTTP/1.1\r\n"
        "Host: elsewhere.example\r\n"
        "Proxy-Authorization: Basic dXNlcjpzZWNyZXQ=\r\n"
        "Proxy-Connection: keep-alive\r\n"
        "Connection: keep-alive, X-Hop, Content-Length\r\n"
        "X-Hop: dropped\r\n"
        "Keep-Alive: timeout=5\r\n"
        "TE: trailers\r\n"
        "Upgrade: websocket\r\n"
        "X-Kept: yes\r\n"
        "Content-Length: 4\r\n\r\nbody"
    )
    response = exchange(proxy, raw.encode())
    assert status_of(response) == 200
    seen = json.loads(body_of(response))
    assert seen["request_line"] == "PUT /raw HTTP/1.1"
    assert seen["body"] == "body"
    assert seen["headers"] == [
        ["Host", f"{LOOPBACK}:{origin}"],
        ["X-Kept", "yes"],
        ["Content-Length", "4"],
        ["Connection", "close"],
    ]

    with proxy.opener().open(f"http://{LOOPBACK}:{origin}/bytes/100000", timeout=5) as response:
        assert hashlib.sha256(response.read()).hexdigest() == digest(100000)


def test_forwarded_responses_say_connection_close_so_pooling_clients_reconnect(
    make_proxy: MakeProxy, origin: int
) -> None:
    """The proxy serves one request per connection.  The origin (http.server) does not
    say ``Connection: close`` itself; unless the proxy does, an HTTP/1.1 client pools
    the connection and its next request fails on the closed socket (uv then waits a
    ~1.5 s retry back-off)."""
    proxy = make_proxy(f"{LOOPBACK}:{origin}")
    response = exchange(proxy, f"GET http://{LOOPBACK}:{origin}/a HTTP/1.1\r\n\r\n".encode())
    head = response.split(b"\r\n\r\n", 1)[0].lower().split(b"\r\n")
    assert [line for line in head if line.startswith(b"connection:")] == [b"connection: close"]
    client = http.client.HTTPConnection(LOOPBACK, proxy.port, timeout=5)
    try:
        for path in ("/first", "/second", "/third"):
            client.request("GET", f"http://{LOOPBACK}:{origin}{path}")
            answer = client.getresponse()
            assert answer.status == 200
            assert json.loads(answer.read())["request_line"] == f"GET {path} HTTP/1.1"
    finally:
        client.close()


def test_forwarded_request_body_sent_after_the_head_still_arrives(
    make_proxy: MakeProxy, origin: int
) -> None:
    """The proxy waits for the response head while the body still flows upstream."""
    proxy = make_proxy(f"{LOOPBACK}:{origin}")
    with socket.create_connection((LOOPBACK, proxy.port), timeout=5) as conn:
        conn.sendall(
            f"POST http://{LOOPBACK}:{origin}/late HTTP/1.1\r\nContent-Length: 9\r\n\r\n".encode()
        )
        time.sleep(0.5)
        conn.sendall(b"late body")
        response = read_to_eof(conn)
    assert status_of(response) == 200
    assert json.loads(body_of(response))["body"] == "late body"


def test_absolute_uri_to_unlisted_destination_is_403_without_request_details(
    make_proxy: MakeProxy, origin: int, echo: int
) -> None:
    proxy = make_proxy(f"{LOOPBACK}:{origin}")
    with proxy.opener().open(f"http://{LOOPBACK}:{origin}/allowed", timeout=5) as response:
        assert response.status == 200

    for url, hint in (
        (f"http://{LOOPBACK}:{echo}/secret-path", f"{LOOPBACK}:{echo}"),
        ("http://evil.example/secret-path", "evil.example"),
    ):
        request = urllib.request.Request(url, headers={"Authorization": "Bearer s3cret-token"})
        with pytest.raises(urllib.error.HTTPError) as refused:
            proxy.opener().open(request, timeout=5)
        assert refused.value.code == 403
        body = refused.value.read().decode()
        refused.value.close()
        assert (
            f'add "{hint}" to [tool.safe-run.network] allow (or pass --allow-host {hint})' in body
        )
        assert "s3cret" not in body
        assert "secret-path" not in body
    report = "\n".join(proxy.log.report_lines(verbose=True))
    assert "s3cret" not in report
    assert "secret-path" not in report
    assert "refused evil.example:80: no allow rule matches" in report


# -- internal addresses ----------------------------------------------------------------


def test_allowed_name_resolving_to_loopback_is_refused_but_ip_rule_works(
    make_proxy: MakeProxy, origin: int, loopback_name: str
) -> None:
    target = f"http://{loopback_name}:{origin}/rebind"
    # Without the proxy the name does reach the service on loopback: the attack works.
    with urllib.request.urlopen(target, timeout=5) as response:
        assert response.status == 200

    named = make_proxy(f"{loopback_name}:{origin}")
    with pytest.raises(urllib.error.HTTPError) as refused:
        named.opener().open(target, timeout=5)
    assert refused.value.code == 403
    body = refused.value.read().decode()
    refused.value.close()
    assert "resolves to 127.0.0.1 (a loopback address" in body
    assert f'add "{LOOPBACK}:{origin}" to [tool.safe-run.network] allow' in body
    head, sock = connect_tunnel(named, f"{loopback_name}:{origin}")
    sock.close()
    assert status_of(head) == 403
    assert named.log.report_lines(verbose=False) == [
        f"safe-run: network: refused {loopback_name}:{origin} (2 times): it resolves to "
        "127.0.0.1 (a loopback address (this machine)), which no host name may lead to; to "
        f'allow it add "{LOOPBACK}:{origin}" to [tool.safe-run.network] allow (or pass '
        f"--allow-host {LOOPBACK}:{origin})"
    ]

    literal = make_proxy(f"{LOOPBACK}:{origin}")
    with literal.opener().open(f"http://{LOOPBACK}:{origin}/by-ip", timeout=5) as response:
        assert response.status == 200


def test_name_resolving_to_metadata_or_private_address_is_refused(
    make_proxy: MakeProxy, origin: int
) -> None:
    answers = {
        "metadata.test": [(socket.AF_INET, "169.254.169.254")],
        "intranet.corp.test": [(socket.AF_INET6, "fd00::5"), (socket.AF_INET, "10.1.2.3")],
        "service.test": [(socket.AF_INET, LOOPBACK)],
    }

    def resolver(host: str, port: int) -> list[tuple[int, str]]:
        return answers[host]

    proxy = make_proxy(
        "metadata.test",
        "*.corp.test",
        f"service.test:{origin}",
        f"{LOOPBACK}:{origin}",
        resolver=resolver,
    )
    # Named exactly, the metadata address is still refused: no name leads to
    # link-local.  Through a wildcard, not even a private address is reached; the
    # advice is the exact name, which would open it.
    for host, says in (
        ("metadata.test", "resolves to 169.254.169.254 (a link-local address"),
        ("intranet.corp.test", "resolves to fd00::5 (a unique-local address), which only"),
    ):
        head, sock = connect_tunnel(proxy, f"{host}:443")
        with sock:
            response = head + read_to_eof(sock)
        assert status_of(response) == 403
        assert says in body_of(response)
    report = "\n".join(proxy.log.report_lines(verbose=False))
    assert 'add "169.254.169.254" to [tool.safe-run.network] allow' in report
    assert 'add "intranet.corp.test" to [tool.safe-run.network] allow' in report
    # The same resolver's loopback answer is used once the IP rule names it.
    with proxy.opener().open(f"http://service.test:{origin}/", timeout=5) as response:
        assert response.status == 200


# -- SOCKS5 ----------------------------------------------------------------------------


def test_socks5_connect_allowed_and_refused(
    make_proxy: MakeProxy, echo: int, closed_port: int, loopback_name: str
) -> None:
    proxy = make_proxy(f"{LOOPBACK}:{echo}", f"localhost:{echo}", f"{LOOPBACK}:{closed_port}")

    for address in (socks_ipv4(LOOPBACK), socks_name("localhost")):
        code, sock = socks5(proxy, address, echo)
        with sock:
            assert code == 0x00
            assert echo_once(sock) == b"ping through the tunnel"

    refusals = [
        (socks_name("evil.example"), 443, 1, 0x02),
        (socks_name(loopback_name), echo, 1, 0x02),
        (b"\x04" + socket.inet_pton(socket.AF_INET6, "::1"), echo, 1, 0x02),
        (socks_ipv4(LOOPBACK), closed_port, 1, 0x05),
        (socks_ipv4(LOOPBACK), echo, 2, 0x07),
    ]
    for address, port, command, expected in refusals:
        code, sock = socks5(proxy, address, port, command=command)
        sock.close()
        assert code == expected, (address, port, command)

    with socket.create_connection((LOOPBACK, proxy.port), timeout=5) as sock:
        sock.sendall(b"\x05\x01\x02")  # offers username/password only
        assert read_to_eof(sock) == b"\x05\xff"


# -- robustness ------------------------------------------------------------------------


GARBAGE = [
    b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03\r\n\r\n",
    b"\x00\xff" * 100 + b"\r\n\r\n",
    b"GET /relative HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
    b"GET https://127.0.0.1/ HTTP/1.1\r\n\r\n",
    b"CONNECT 127.0.0.1 HTTP/1.1\r\n\r\n",
    b"CONNECT 127.0.0.1:99999 HTTP/1.1\r\n\r\n",
    b"CONNECT ::1:443 HTTP/1.1\r\n\r\n",
    b"GET http://user@127.0.0.1/ HTTP/1.1\r\n\r\n",
    b"GET http://127.0.0.1/ HTTP/2.0\r\n\r\n",
    b"GET http://127.0.0.1/ HTTP/1.1\r\nno colon here\r\n\r\n",
    b"GET http://127.0.0.1/ HTTP/1.1\r\nX: a\r\n folded\r\n\r\n",
    b"POST http://127.0.0.1/ HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
    b"GET http://127.0.0.1/ HTTP/1.1\r\nX: " + b"a" * 70000 + b"\r\n\r\n",
]


def test_garbage_gets_400_and_the_next_client_is_served(make_proxy: MakeProxy, echo: int) -> None:
    proxy = make_proxy(f"{LOOPBACK}:{echo}", f"{LOOPBACK}:80")
    for raw in GARBAGE:
        response = exchange(proxy, raw)
        assert status_of(response) == 400, raw[:40]
        assert body_of(response).startswith("safe-run proxy: bad request: ")
    assert "CONNECT" in body_of(exchange(proxy, GARBAGE[3]))

    head, tunnel = connect_tunnel(proxy, f"{LOOPBACK}:{echo}")
    with tunnel:
        assert status_of(head) == 200
        assert echo_once(tunnel) == b"ping through the tunnel"
    assert proxy.thread.is_alive()


def _raise_nofile(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= needed:
        return
    if hard != resource.RLIM_INFINITY and hard < needed:
        pytest.skip(f"RLIMIT_NOFILE hard limit {hard} < {needed}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))


def test_2000_idle_connections_do_not_lock_out_a_real_client(
    make_proxy: MakeProxy, origin: int
) -> None:
    _raise_nofile(6000)
    proxy = make_proxy(f"{LOOPBACK}:{origin}")  # default max_connections: 1024
    idle = [socket.create_connection((LOOPBACK, proxy.port)) for _ in range(2000)]
    try:
        # Served at all (no wall-clock bound: the suite runs on loaded machines too).
        with proxy.opener().open(f"http://{LOOPBACK}:{origin}/bytes/1000", timeout=60) as reply:
            assert reply.read() == next(stream(1000))
        # The oldest idle clients were dropped to make room; threads stay bounded.
        idle[0].settimeout(5)
        assert idle[0].recv(1) == b""
        assert len(os.listdir("/proc/self/task")) < 2 * 1024 + 50
    finally:
        for sock in idle:
            sock.close()


def test_stalled_and_trickling_heads_are_cut_without_blocking_others(
    make_proxy: MakeProxy, echo: int
) -> None:
    proxy = make_proxy(f"{LOOPBACK}:{echo}", head_timeout=1.0)
    silent = socket.create_connection((LOOPBACK, proxy.port))
    silent.sendall(b"CONNECT 127.0.0.1:")
    trickler = socket.create_connection((LOOPBACK, proxy.port))
    started = time.monotonic()

    head, tunnel = connect_tunnel(proxy, f"{LOOPBACK}:{echo}")
    with tunnel:
        assert status_of(head) == 200
        assert echo_once(tunnel) == b"ping through the tunnel"
    # Served while the stallers still hold their connections (not after they were cut).
    served_at = time.monotonic() - started
    if served_at < 0.8:  # on a loaded machine the check below would race the cut
        with pytest.raises(BlockingIOError):
            silent.recv(1, socket.MSG_DONTWAIT)

    cut_at = None
    header = b"GET http://127.0.0.1/ HTTP/1.1\r\nX-Slow: " + b"a" * 100
    for byte in header:
        try:
            trickler.send(bytes((byte,)))
            if trickler.recv(1, socket.MSG_DONTWAIT) == b"":
                cut_at = time.monotonic() - started
                break
        except BlockingIOError:
            pass
        except OSError:
            cut_at = time.monotonic() - started
            break
        time.sleep(0.1)
    # Never before the head timeout; the upper bound only catches "never".
    assert cut_at is not None and 0.8 <= cut_at <= 20
    silent.settimeout(3)
    assert silent.recv(1) == b""
    silent.close()
    trickler.close()


def test_beyond_max_connections_of_live_tunnels_is_503_then_recovers(
    make_proxy: MakeProxy, echo: int
) -> None:
    proxy = make_proxy(f"{LOOPBACK}:{echo}", max_connections=2)
    tunnels = [connect_tunnel(proxy, f"{LOOPBACK}:{echo}") for _ in range(2)]
    for head, tunnel in tunnels:
        assert status_of(head) == 200
        assert echo_once(tunnel) == b"ping through the tunnel"

    # Over the limit: turned away at once (a 503 when the reply beats the reset).
    with socket.create_connection((LOOPBACK, proxy.port), timeout=5) as sock:
        sock.sendall(f"CONNECT {LOOPBACK}:{echo} HTTP/1.1\r\n\r\n".encode())
        try:
            response = read_to_eof(sock)
        except ConnectionResetError:
            response = b""
    assert response == b"" or status_of(response) == 503

    tunnels[0][1].close()
    deadline = time.monotonic() + 3
    while True:
        head, tunnel = connect_tunnel(proxy, f"{LOOPBACK}:{echo}")
        if head.startswith(b"HTTP/1.1 200") or time.monotonic() > deadline:
            break
        tunnel.close()
        time.sleep(0.05)
    with tunnel:
        assert status_of(head) == 200
        assert echo_once(tunnel) == b"ping through the tunnel"
    tunnels[1][1].close()


def test_close_stops_accepting(make_proxy: MakeProxy, echo: int) -> None:
    proxy = make_proxy(f"{LOOPBACK}:{echo}")
    head, tunnel = connect_tunnel(proxy, f"{LOOPBACK}:{echo}")
    proxy.server.close()
    proxy.thread.join(timeout=2)
    assert not proxy.thread.is_alive()
    with pytest.raises(OSError):
        socket.create_connection((LOOPBACK, proxy.port), timeout=1)
    with tunnel:  # established tunnels are not cut
        assert status_of(head) == 200
        assert echo_once(tunnel) == b"ping through the tunnel"


# -- throughput and concurrency --------------------------------------------------------


def test_256_mib_through_connect_arrive_intact(make_proxy: MakeProxy, echo: int) -> None:
    size = 256 << 20
    proxy = make_proxy(f"{LOOPBACK}:{echo}")
    head, tunnel = connect_tunnel(proxy, f"{LOOPBACK}:{echo}")
    assert status_of(head) == 200

    def send() -> None:
        for piece in stream(size):
            tunnel.sendall(piece)
        tunnel.shutdown(socket.SHUT_WR)

    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    sha = hashlib.sha256()
    received = 0
    buffer = bytearray(1 << 20)
    tunnel.settimeout(30)
    with tunnel:
        while count := tunnel.recv_into(buffer):
            sha.update(memoryview(buffer)[:count])
            received += count
    sender.join()
    assert received == size
    assert sha.hexdigest() == digest(size)


def test_20_concurrent_requests(make_proxy: MakeProxy, origin: int) -> None:
    proxy = make_proxy(f"{LOOPBACK}:{origin}")
    results: dict[int, str] = {}

    def fetch(index: int) -> None:
        size = (1 << 20) + index
        url = f"http://{LOOPBACK}:{origin}/bytes/{size}"
        if index % 2:
            with proxy.opener().open(url, timeout=10) as response:
                results[index] = hashlib.sha256(response.read()).hexdigest()
            return
        head, tunnel = connect_tunnel(proxy, f"{LOOPBACK}:{origin}")
        assert status_of(head) == 200
        with tunnel:
            tunnel.sendall(f"GET /bytes/{size} HTTP/1.1\r\nConnection: close\r\n\r\n".encode())
            response = read_to_eof(tunnel, timeout=10)
        results[index] = hashlib.sha256(response.partition(b"\r\n\r\n")[2]).hexdigest()

    threads = [threading.Thread(target=fetch, args=(index,)) for index in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=20)
    assert results == {index: digest((1 << 20) + index) for index in range(20)}
    assert proxy.log.report_lines(verbose=True) == [
        f"safe-run: network: allowed {LOOPBACK}:{origin} (20 times)"
    ]


def test_small_writes_are_not_held_back_by_nagle(make_proxy: MakeProxy, origin: int) -> None:
    """The origin answers in two writes (head, then body), with Nagle off.  A relay
    with Nagle on would hold the second until the client's delayed ACK: 40 ms each."""
    proxy = make_proxy(f"{LOOPBACK}:{origin}")

    def median_round_trip(connection: http.client.HTTPConnection) -> float:
        timings = []
        for _ in range(20):
            started = time.monotonic()
            connection.request("GET", "/small")
            with connection.getresponse() as response:
                assert response.status == 200
                response.read()
            timings.append(time.monotonic() - started)
        connection.close()
        return sorted(timings)[len(timings) // 2]

    tunnelled = http.client.HTTPConnection(LOOPBACK, proxy.port, timeout=30)
    tunnelled.set_tunnel(LOOPBACK, origin)
    through_proxy = median_round_trip(tunnelled)
    direct = median_round_trip(http.client.HTTPConnection(LOOPBACK, origin, timeout=30))
    # Nagle's penalty is additive (a delayed ACK: ~40 ms per response); machine load
    # slows both sides alike.  Compared with the direct path, not with a clock.
    assert through_proxy - direct < 0.03, (through_proxy, direct)


# -- relay -----------------------------------------------------------------------------


def _tcp_pair() -> tuple[socket.socket, socket.socket]:
    with socket.create_server((LOOPBACK, 0)) as listener:
        client = socket.create_connection(listener.getsockname())
        server, _ = listener.accept()
    return client, server


def one_byte_crosses(left: socket.socket, right: socket.socket) -> bool:
    left.sendall(b"x")
    right.settimeout(5)
    return right.recv(1) == b"x"


@pytest.mark.parametrize("mode", ["splice", "copy"])
def test_relay_keeps_half_close_and_counts_bytes(
    mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if mode == "copy":
        monkeypatch.delattr(os, "splice", raising=False)
    left, left_inner = _tcp_pair()
    right, right_inner = _tcp_pair()
    counts: list[tuple[int, int]] = []
    worker = threading.Thread(target=lambda: counts.append(relay(left_inner, right_inner)))
    worker.start()
    left.sendall(b"request")
    left.shutdown(socket.SHUT_WR)
    assert read_to_eof(right) == b"request"  # EOF arrives while the other way is open
    right.sendall(b"the response")
    right.shutdown(socket.SHUT_WR)
    assert read_to_eof(left) == b"the response"
    worker.join(timeout=5)
    assert counts == [(7, 12)]
    for sock in (left, left_inner, right, right_inner):
        sock.close()


@pytest.mark.parametrize("mode", ["splice", "copy"])
def test_relay_until_b_eof_does_not_wait_for_an_idle_a(
    mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Plain HTTP: once the origin has answered and closed, a pooling client that
    keeps its connection open must not hold the relay (and its threads)."""
    if mode == "copy":
        monkeypatch.delattr(os, "splice", raising=False)
    client, client_inner = _tcp_pair()
    origin, origin_inner = _tcp_pair()
    counts: list[tuple[int, int]] = []

    def run() -> None:
        counts.append(relay(client_inner, origin_inner, until_b_eof=True))

    worker = threading.Thread(target=run)
    worker.start()
    client.sendall(b"GET / HTTP/1.1\r\n\r\n")  # and then stays open, idle
    origin.settimeout(5)
    assert origin.recv(100) == b"GET / HTTP/1.1\r\n\r\n"
    origin.sendall(b"HTTP/1.1 200 OK\r\n\r\nhello")
    origin.close()
    assert read_to_eof(client) == b"HTTP/1.1 200 OK\r\n\r\nhello"
    worker.join(timeout=5)
    assert counts == [(18, 24)]
    for sock in (client, client_inner, origin_inner):
        sock.close()


def test_relay_error_on_one_side_ends_both_directions() -> None:
    left, left_inner = _tcp_pair()
    right, right_inner = _tcp_pair()
    worker = threading.Thread(target=relay, args=(left_inner, right_inner))
    worker.start()
    assert one_byte_crosses(left, right)
    # A reset (linger 0) on one side: the relay must not hang on the other.
    left.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    left.close()
    worker.join(timeout=5)
    assert not worker.is_alive()
    assert read_to_eof(right) == b""
    for sock in (left_inner, right, right_inner):
        sock.close()


# -- the report ------------------------------------------------------------------------


def test_report_lines_format_and_counts() -> None:
    log = DestinationLog()
    for _ in range(3):
        log.record(
            "evil.example", 443, allowed=False, reason="no allow rule matches", hint="evil.example"
        )
    log.record(
        "vm",
        8000,
        allowed=False,
        reason="resolves to internal address 127.0.0.1",
        hint="127.0.0.1:8000",
    )
    log.record("10.0.0.1", 443, allowed=False, reason="", hint=None, via="direct")
    for _ in range(5):
        log.record("pypi.org", 443, allowed=True, reason="allowed", hint=None)
    log.record("::1", 8080, allowed=True, reason="allowed", hint=None)
    log.record("bad\x1b[31m.example", 443, allowed=False, reason="no allow rule matches", hint=None)

    refused = [
        "safe-run: network: refused evil.example:443 (3 times): no allow rule matches; to allow "
        'it add "evil.example" to [tool.safe-run.network] allow (or pass --allow-host '
        "evil.example)",
        "safe-run: network: refused vm:8000: resolves to internal address 127.0.0.1; to allow "
        'it add "127.0.0.1:8000" to [tool.safe-run.network] allow (or pass --allow-host '
        "127.0.0.1:8000)",
        "safe-run: network: refused direct connection to 10.0.0.1:443 "
        "(use the proxy in HTTPS_PROXY)",
        "safe-run: network: refused bad?[31m.example:443: no allow rule matches",
    ]
    assert log.report_lines(verbose=False) == refused
    assert log.report_lines(verbose=True) == [
        *refused,
        "safe-run: network: allowed pypi.org:443 (5 times)",
        "safe-run: network: allowed [::1]:8080",
    ]
    assert log.refused_count() == 6


def test_install_report_names_safe_pips_own_settings() -> None:
    """A build sandbox's refusal must not send the user to [tool.safe-run.network],
    which safe-pip does not read."""
    from safe_pip.proxy.advice import INSTALL

    log = DestinationLog(INSTALL)
    log.record(
        "mirror.example", 443, allowed=False, reason="no allow rule matches", hint="mirror.example"
    )
    (line,) = log.report_lines(verbose=False)
    assert line.startswith("safe-pip: network: refused mirror.example:443: ")
    assert "pass --allow-host mirror.example" in line and "allow-hosts in [tool.safe-pip]" in line
    assert "tool.safe-run" not in line
