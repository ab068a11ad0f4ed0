"""The HTTP dialect: ``CONNECT`` tunnels and absolute-URI forwarding.

* ``CONNECT host:port`` (HTTPS and any other TCP through ``HTTPS_PROXY``): a blind
  tunnel.  TLS is never intercepted, so within a tunnel the client's SNI and Host
  are its own business; the policy binds the destination host and port.
* absolute-URI HTTP (``GET http://host/path``): forwarded as an origin-form request
  with hop-by-hop headers removed, ``Host`` rewritten to the checked authority and
  ``Connection: close``; the rest of both streams is relayed raw.

Only the head is parsed, and strictly: anything a server behind us could read
differently from how we read it (folded headers, two lengths, a target with control
characters) is a 400 rather than a guess.
"""

from __future__ import annotations

from safe_pip._records import record
from safe_pip.proxy.refusal import DRAIN_SECONDS, Reject, bad, drain
from safe_pip.proxy.relay import relay, send_all
from safe_pip.proxy.rewrite import HeadCloser
from safe_pip.proxy.rules import normalise_host

TYPE_CHECKING = False
if TYPE_CHECKING:
    import socket
    from collections.abc import Callable

    from safe_pip.proxy.credentials import Vault
    from safe_pip.proxy.inbox import Inbox
    from safe_pip.proxy.upstream import Gate

__all__ = ["MAX_HEAD", "serve_http"]

#: Largest request head (request line + headers) accepted, in bytes.
MAX_HEAD = 64 * 1024

_REASONS = {
    400: "Bad Request",
    403: "Forbidden",
    404: "Not Found",
    502: "Bad Gateway",
    503: "Service Unavailable",
}
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


@record
class _Request:
    """A parsed HTTP request head."""

    method: str
    target: str
    version: str
    headers: tuple[tuple[str, str], ...]


def serve_http(
    conn: socket.socket,
    inbox: Inbox,
    gate: Gate,
    settle: Callable[[], None],
    vault: Vault | None = None,
) -> None:
    """Serve one HTTP proxy request; ``settle`` is called once the head is read.

    ``settle`` tells the server the client is past its head, so it is no longer
    the one to evict when connections run out.  With a ``vault`` (the run has
    credentials), credential routes and hosts go to safe_pip.proxy.credentials, and
    plain-HTTP requests elsewhere are watched for phantoms.
    """
    try:
        try:
            request = _parse_head(inbox.head(MAX_HEAD))
        finally:
            settle()
        forwarded: bytes | None = None  # None: a CONNECT tunnel
        if request.method == "CONNECT":
            host, port = _parse_authority(request.target, default_port=None)
            if vault is not None and vault.intercepts(host, port):
                from safe_pip.proxy.credentials import serve_intercepted

                serve_intercepted(conn, inbox, host, port, vault, _INNER_HEAD_TIMEOUT)
                return
        else:
            if vault is not None:
                from safe_pip.proxy.credentials import serve_route

                routed = vault.route(request.target)
                if routed is not None:
                    serve_route(conn, inbox, request, routed, vault)
                    return
            host, port, path = _parse_absolute_uri(request.target)
            if vault is not None and vault.serves_plain(host, port):
                from safe_pip.proxy.credentials import serve_plain_credential

                serve_plain_credential(conn, inbox, request, host, port, path, vault)
                return
            forwarded = _forwarded_head(request, path, host, port)
            if vault is not None:
                from safe_pip.proxy.credentials import check_head

                check_head(forwarded, host, port, vault)
        upstream = gate.open(host, port)
    except Reject as reject:
        _http_error(conn, reject.status, reject.message)
        return
    with upstream:
        if forwarded is not None and vault is not None:
            from safe_pip.proxy.credentials import serve_plain

            serve_plain(conn, upstream, forwarded + inbox.rest(), host, port, vault)
        elif forwarded is None:
            send_all(conn, _ESTABLISHED)
            send_all(upstream, inbox.rest())
            relay(conn, upstream)
        else:
            send_all(upstream, forwarded + inbox.rest())
            relay(conn, upstream, until_b_eof=True, first_from_b=_response_head_with_close)


_RESPONSE_HEAD_WAIT = 60.0
#: How long a client inside an intercepted TLS tunnel has to send its request head.
_INNER_HEAD_TIMEOUT = 30.0


def _response_head_with_close(upstream: socket.socket) -> bytes:
    """The upstream's response head (and whatever body came with it), marked
    ``Connection: close``.

    The proxy serves one request per client connection.  Without the header an
    HTTP/1.1 client pools the connection and its next request fails on the closed
    socket (uv retries after a ~1.5 s back-off), because a server answering a
    ``Connection: close`` request need not say so itself (Python's http.server
    does not).  A head that is not found within the size limit is passed on as is.
    """
    import select
    import time

    # The socket stays blocking (the other direction may be splicing into it); poll()
    # bounds the wait instead of a socket timeout (select() fails above fd 1023).
    deadline = time.monotonic() + _RESPONSE_HEAD_WAIT
    poller = select.poll()
    poller.register(upstream, select.POLLIN)
    data = b""
    while b"\r\n\r\n" not in data and len(data) < MAX_HEAD:
        remaining = deadline - time.monotonic()
        try:
            if remaining <= 0 or not poller.poll(remaining * 1000):
                break
            chunk = upstream.recv(65536)
        except OSError:
            break
        if not chunk:
            break
        data += chunk
    closer = HeadCloser()
    return closer.feed(data) + closer.flush()


def _parse_head(raw: bytes) -> _Request:
    """Request line and header fields; anything ambiguous is a 400."""
    lines = raw.decode("latin-1").split("\n")
    lines = [line[:-1] if line.endswith("\r") else line for line in lines]
    parts = lines[0].split(" ")
    if len(parts) != 3:
        raise bad("the request line must be METHOD TARGET HTTP/1.x")
    method, target, version = parts
    if not method or not _TOKEN_CHARS.issuperset(method):
        raise bad("the request method is not a token")
    if version not in ("HTTP/1.0", "HTTP/1.1"):
        raise bad("only HTTP/1.0 and HTTP/1.1 are spoken here")
    if not target or not target.isprintable() or not target.isascii():
        raise bad("the request target has control or non-ASCII characters")
    headers: list[tuple[str, str]] = []
    for line in lines[1:]:
        if not line:
            continue
        name, colon, value = line.partition(":")
        if not colon or not name or not _TOKEN_CHARS.issuperset(name):
            raise bad("a header line is malformed (or folded)")
        value = value.strip(" \t")
        if "\r" in value or "\0" in value:
            raise bad("a header value has a CR or NUL in it")
        headers.append((name, value))
    return _Request(method, target, version, tuple(headers))


def _parse_authority(text: str, default_port: int | None) -> tuple[str, int]:
    """``host[:port]`` (IPv6 in brackets) into a normalised host and a port."""
    if "@" in text:
        raise bad("user names in the target are not accepted")
    port_text: str | None = None
    if text.startswith("["):
        inner, bracket, rest = text[1:].partition("]")
        if not bracket or ":" not in inner or (rest and not rest.startswith(":")):
            raise bad("the target's IPv6 address is malformed")
        host = text[: len(inner) + 2]
        port_text = rest[1:] if rest else None
    elif text.count(":") > 1:
        raise bad("an IPv6 address in a target must be in brackets, as in [::1]:443")
    else:
        host, colon, digits = text.partition(":")
        port_text = digits if colon else None
    if port_text is None:
        if default_port is None:
            raise bad("CONNECT needs host:port")
        port = default_port
    elif port_text.isascii() and port_text.isdigit() and len(port_text) <= 5:
        port = int(port_text)
    else:
        port = 0
    if not 1 <= port <= 65535:
        raise bad("the port must be a number from 1 to 65535")
    name = normalise_host(host)
    if name is None:
        raise bad("the target host is not a valid host name or IP address")
    return name, port


def _parse_absolute_uri(target: str) -> tuple[str, int, str]:
    """``http://authority/path`` into host, port and the origin-form path."""
    scheme, sep, rest = target.partition("://")
    scheme = scheme.lower()
    if sep and scheme == "https":
        raise bad(
            "https:// URLs go through a CONNECT tunnel: set HTTPS_PROXY, "
            "the proxy does not see inside TLS"
        )
    if not sep or scheme != "http":
        raise bad(
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


def _forwarded_head(
    request: _Request,
    path: str,
    host: str,
    port: int,
    *,
    default_port: int = 80,
    identity: bool = False,
) -> bytes:
    """The origin-form request: hop-by-hop headers out, Host from the checked URI.

    ``identity`` asks for an uncompressed response (the credential routes scrub
    real values out of responses, which they cannot do inside gzip).

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
                raise bad("a request Transfer-Encoding must end in chunked")
    if chunked and lengths:
        raise bad("a request must not have both Content-Length and Transfer-Encoding")
    if len(lengths) > 1 or any(not (v.isascii() and v.isdigit()) for v in lengths):
        raise bad("the Content-Length is malformed or given twice differently")
    drop -= _FRAMING
    authority = f"[{host}]" if ":" in host else host
    if port != default_port:
        authority += f":{port}"
    if identity:  # the credential routes must read responses to scrub them: no gzip
        drop.add("accept-encoding")
    lines = [f"{request.method} {path} {request.version}", f"Host: {authority}"]
    lines += [f"{name}: {value}" for name, value in request.headers if name.lower() not in drop]
    if identity:
        lines.append("Accept-Encoding: identity")
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
    conn.settimeout(DRAIN_SECONDS)
    conn.sendall(head + body)
    drain(conn)
