"""The proxy's credential side: routes, TLS interception, phantom swap and refusal.

The sandbox holds phantoms; this module, in the supervisor, holds the real values
(:class:`~safe_pip.credentials.phantom.ArmedCredential`) and is the only place they
are ever written to a socket.  Three kinds of request reach it:

* **base-URL route**: plain HTTP to ``http://127.0.0.1:PORT/.safe-run/NAME/...`` (the
  SDK's base-URL variable points there).  Forwarded over TLS to the credential's
  ``base-url`` origin, with the phantom swapped for the real value.
* **TLS route**: ``CONNECT host:443`` to a host of a ``tls``-mode credential.  The
  proxy answers the TLS handshake itself with a certificate from the per-run CA
  (credentials/tls.py, trusted only inside the sandbox), reads the request, and
  forwards it like a route request.
* **any other plain-HTTP request**: must not carry a phantom at all.

In all three, phantoms of credentials that do not belong to the destination are
refused (403 before anything is sent, or the connection cut before the phantom
leaves when it sits in a body) and reported; the real value of every credential
is turned back into its phantom in responses.  Requests go one per connection,
as elsewhere in the proxy; error bodies name hosts and credentials, never values.
"""

from __future__ import annotations

import base64
import socket
import ssl
import threading
import time

from safe_pip.policy.credentials import base_url_authority
from safe_pip.proxy.duplex import duplex
from safe_pip.proxy.http_proxy import (
    MAX_HEAD,
    _forwarded_head,
    _http_error,
    _parse_head,
    _Request,
)
from safe_pip.proxy.inbox import Inbox
from safe_pip.proxy.refusal import Reject, bad
from safe_pip.proxy.rewrite import Chain, HeadCloser, Refused, StreamRewriter
from safe_pip.proxy.rules import RuleSet, normalise_host
from safe_pip.proxy.scrub import ResponseScrubber, Unreadable, echo_patterns
from safe_pip.proxy.upstream import Gate

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from safe_pip.credentials.phantom import ArmedCredential
    from safe_pip.credentials.tls import RunCA
    from safe_pip.proxy.log import DestinationLog
    from safe_pip.proxy.upstream import Resolver
    from safe_pip.proxy.upstream_proxy import UpstreamProxy

__all__ = ["ROUTE_PREFIX", "Vault", "route_url"]

#: Path prefix of the base-URL routes on the proxy's port.
ROUTE_PREFIX = "/.safe-run/"
_ESTABLISHED = b"HTTP/1.1 200 Connection established\r\n\r\n"
_TLS_TIMEOUT = 30.0


def route_url(port: int, armed_name: str, base_url: str) -> str:
    """The URL the sandbox's base-URL variable gets: the route plus the API's path."""
    path = base_url.removeprefix("https://").partition("/")[2]
    return f"http://127.0.0.1:{port}{ROUTE_PREFIX}{armed_name}" + (f"/{path}" if path else "")


def _split_authority(authority: str) -> tuple[str, int]:
    host, _, port = authority.rpartition(":")
    return host.strip("[]"), int(port)


class Vault:
    """The armed credentials of one run and everything the proxy does with them."""

    def __init__(
        self,
        armed: Sequence[ArmedCredential],
        log: DestinationLog,
        *,
        proxy_port: int,
        upstream_context: Callable[[], ssl.SSLContext],
        run_ca: RunCA | None = None,
        connect_timeout: float = 10.0,
        resolver: Resolver | None = None,
        upstream: UpstreamProxy | None = None,
    ) -> None:
        self._armed = tuple(armed)
        self._log = log
        self._proxy_port = proxy_port
        self._make_context = upstream_context
        self._context: ssl.SSLContext | None = None
        self._context_lock = threading.Lock()
        self._ca = run_ca
        self._routes = {a.spec.name: a for a in armed if a.spec.mode == "base-url"}
        self._intercepted = {host for a in armed if a.spec.mode == "tls" for host in a.spec.hosts}
        self._plain = {host for a in armed if a.spec.plain_http for host in a.spec.hosts}
        self._echoes = echo_patterns((a.real, a.phantom) for a in armed)
        hosts = [host for a in armed for host in a.spec.hosts]
        # Only the credentials' own hosts, whatever network.allow says: this gate is
        # what lets a route reach a host the sandbox itself may not connect to.
        self._gate = Gate(
            RuleSet.parse(hosts),
            log,
            connect_timeout=connect_timeout,
            resolver=resolver,
            upstream=upstream,
        )

    # -- which requests are ours ------------------------------------------------------

    def intercepts(self, host: str, port: int) -> bool:
        """Whether ``CONNECT host:port`` is answered here (a ``tls``-mode host)."""
        return self._ca is not None and _authority(host, port) in self._intercepted

    def serves_plain(self, host: str, port: int) -> bool:
        """Whether a plain-HTTP request to ``host:port`` is a credential's own (a
        loopback host whose credential says ``plain-http = true``)."""
        return _authority(host, port) in self._plain

    def route(self, target: str) -> tuple[str, int, str] | None:
        """``(host, port, path)`` upstream for a request to a base-URL route."""
        path = target
        if not target.startswith("/"):
            scheme, _, rest = target.partition("://")
            authority, slash, tail = rest.partition("/")
            if scheme.lower() != "http" or authority.lower() not in (
                f"127.0.0.1:{self._proxy_port}",
                f"localhost:{self._proxy_port}",
            ):
                return None
            path = slash + tail
        if not path.startswith(ROUTE_PREFIX):
            return None
        name, _, rest = path[len(ROUTE_PREFIX) :].partition("/")
        name, _, query = name.partition("?")
        armed = self._routes.get(name)
        if armed is None or armed.spec.base_url is None:
            raise Reject(404, 0, f"safe-run has no credential route named {name!r}.")
        host, port = _split_authority(base_url_authority(armed.spec.base_url))
        upstream_path = "/" + rest + (f"?{query}" if query else "")
        return host, port, upstream_path

    # -- rewriting ----------------------------------------------------------------------

    def request_rewriter(self, host: str, port: int) -> StreamRewriter:
        """Phantoms of credentials for ``host:port`` become real; others are refused."""
        where = _authority(host, port)
        replacements: dict[bytes, bytes | None] = {}
        labels: dict[bytes, str] = {}
        for armed in self._armed:
            phantom = armed.phantom.encode()
            own = where in armed.spec.hosts
            replacements[phantom] = armed.real.encode() if own else None
            labels[phantom] = armed.spec.name
        return StreamRewriter(replacements, labels)

    def refusing_rewriter(self) -> StreamRewriter:
        """Every phantom is refused: for plain HTTP, where no real value may go."""
        phantoms = [a.phantom.encode() for a in self._armed]
        refusals: dict[bytes, bytes | None] = dict.fromkeys(phantoms)
        return StreamRewriter(refusals, {a.phantom.encode(): a.spec.name for a in self._armed})

    def response_rewriter(self) -> ResponseScrubber:
        """Every real value turns back into its phantom on the way in, in the forms a
        server is likely to echo it in (proxy/scrub.py)."""
        return ResponseScrubber(self._echoes)

    def cut(self, host: str, port: int, why: str) -> None:
        """Record a response that could not be scrubbed and was cut off."""
        self._log.record(
            host, port, allowed=False, reason=f"response cut off: {why} cannot be scrubbed",
            hint=None,
        )  # fmt: skip

    # -- connections ----------------------------------------------------------------------

    def refuse(self, host: str, port: int, label: str, *, plain: bool = False) -> Reject:
        """Record a phantom caught going to the wrong place; the client's answer.

        ``plain``: the request was plain HTTP.  To one of the credential's own hosts
        that is the only reason it was refused, and the report says so, with the way
        forward where there is one (``plain-http`` for a loopback host)."""
        armed = next((a for a in self._armed if a.spec.name == label), None)
        own = ", ".join(armed.spec.hosts) if armed is not None else "its own hosts"
        where = _authority(host, port)
        if plain and armed is not None and where in armed.spec.hosts:
            from safe_pip.policy.credentials import is_loopback_authority

            why = (
                f"over plain HTTP, which would carry the value of credential {label!r} "
                "in clear text"
            )
            if is_loopback_authority(where):
                fix = (
                    f"for this loopback host add plain-http = true to "
                    f"[tool.safe-run.credentials.{label}]"
                )
            else:
                fix = "use https:// for it"
            self._log.record(host, port, allowed=False, reason=f"{why}; {fix}", hint=None)
            return Reject(403, 0, f"safe-run refused a request to {where} {why}; {fix}.")
        self._log.record(
            host,
            port,
            allowed=False,
            reason=f"the request carried the stand-in for credential {label!r}, "
            f"whose value goes only to {own}",
            hint=None,
        )
        return Reject(
            403,
            0,
            f"safe-run refused a request to {where}: it carries the "
            f"stand-in for credential {label!r}, whose value goes only to {own}.",
        )

    def open_tls(self, host: str, port: int) -> ssl.SSLSocket:
        """A verified TLS connection to a credential host (checked by the gate)."""
        raw = self._gate.open(host, port)
        try:
            raw.settimeout(_TLS_TIMEOUT)
            # An IP literal here too: Python then checks the certificate's IP entries.
            tls = self._upstream_context().wrap_socket(
                raw, server_hostname=normalise_host(host) or host
            )
        except (OSError, ValueError) as exc:
            raw.close()
            reason = getattr(exc, "reason", None) or exc.__class__.__name__
            raise Reject(
                502, 0, f"safe-run could not set up TLS to {_authority(host, port)}: {reason}."
            ) from None
        tls.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return tls

    def open_plain(self, host: str, port: int) -> socket.socket:
        """A plain connection to a ``plain-http`` credential host (loopback only)."""
        return self._gate.open(host, port)

    def server_context(self, host: str) -> ssl.SSLContext:
        assert self._ca is not None
        return self._ca.server_context(host)

    def _upstream_context(self) -> ssl.SSLContext:
        with self._context_lock:
            if self._context is None:
                self._context = self._make_context()
            return self._context


def rewrite_head(head: bytes, rewriter: StreamRewriter) -> bytes:
    """The request head through ``rewriter``, Basic credentials decoded for it."""
    lines = head.split(b"\r\n")
    for index, line in enumerate(lines):
        name, colon, value = line.partition(b":")
        if colon and name.strip().lower() in (b"authorization", b"proxy-authorization"):
            lines[index] = name + b": " + _rewrite_basic(value.strip(), rewriter)
    return rewriter.feed(b"\r\n".join(lines)) + rewriter.flush()


def _rewrite_basic(value: bytes, rewriter: StreamRewriter) -> bytes:
    scheme, _, token = value.partition(b" ")
    if scheme.lower() != b"basic":
        return value
    try:
        decoded = base64.b64decode(token.strip(), validate=True)
    except ValueError:
        return value
    swapped = rewriter.feed(decoded) + rewriter.flush()
    if swapped == decoded:
        return value
    return scheme + b" " + base64.b64encode(swapped)


def _authority(host: str, port: int) -> str:
    from safe_pip.proxy.addresses import join_host_port

    return join_host_port(normalise_host(host) or host, port)


# -- serving ---------------------------------------------------------------------------


def serve_route(
    conn: socket.socket,
    inbox: Inbox,
    request: _Request,
    routed: tuple[str, int, str],
    vault: Vault,
) -> None:
    """Forward one base-URL route request over TLS to the credential's origin."""
    host, port, path = routed
    _forward(conn, inbox.rest(), request, host, port, path, vault)


def serve_intercepted(
    conn: socket.socket, inbox: Inbox, host: str, port: int, vault: Vault, head_timeout: float
) -> None:
    """Answer a CONNECT to a ``tls``-mode host ourselves, then forward its request."""
    if inbox.rest():
        raise bad("data sent before the tunnel was established")
    conn.sendall(_ESTABLISHED)
    conn.settimeout(_TLS_TIMEOUT)
    try:
        tls = vault.server_context(normalise_host(host) or host).wrap_socket(conn, server_side=True)
    except (OSError, ssl.SSLError):
        return  # the client did not trust us or went away: nothing to answer
    with tls:
        inner = Inbox(tls, time.monotonic() + head_timeout)
        try:
            request = _parse_head(inner.head(MAX_HEAD))
            if not request.target.startswith("/"):
                raise bad("inside a tunnel, requests use origin form (/path)")
        except Reject as reject:
            _http_error(tls, reject.status, reject.message)
            return
        _forward(tls, inner.rest(), request, host, port, request.target, vault)


def serve_plain_credential(
    conn: socket.socket, inbox: Inbox, request: _Request, host: str, port: int, path: str,
    vault: Vault,
) -> None:  # fmt: skip
    """A plain-HTTP request to a ``plain-http`` credential's own (loopback) host: the
    phantom is swapped as on the TLS routes, echoes are scrubbed the same way."""
    _forward(conn, inbox.rest(), request, host, port, path, vault, plain=True)


def _forward(
    conn: socket.socket,
    body_start: bytes,
    request: _Request,
    host: str,
    port: int,
    path: str,
    vault: Vault,
    *,
    plain: bool = False,
) -> None:
    """Swap, connect, relay; refusals become 403s (or a cut connection mid-body)."""
    try:
        default_port = 80 if plain else 443
        head = _forwarded_head(request, path, host, port, default_port=default_port, identity=True)
        try:
            head = rewrite_head(head, vault.request_rewriter(host, port))
        except Refused as refused:
            raise vault.refuse(host, port, refused.label) from None
        upstream = vault.open_plain(host, port) if plain else vault.open_tls(host, port)
    except Reject as reject:
        _http_error(conn, reject.status, reject.message)
        return
    with upstream:
        upstream.setblocking(True)
        upstream.sendall(head)
        scrubber = vault.response_rewriter()
        stopped = duplex(
            conn,
            upstream,
            vault.request_rewriter(host, port),
            Chain(scrubber, HeadCloser()),
            first=body_start,
        )
    if isinstance(stopped, Unreadable):
        vault.cut(host, port, stopped.label)
        if scrubber.nothing_sent:
            conn.setblocking(True)
            _http_error(
                conn,
                502,
                f"safe-run cut off the response from {_authority(host, port)}: "
                f"{stopped.label} cannot be scrubbed of credential values.",
            )
    elif stopped is not None:
        vault.refuse(host, port, stopped.label)


def serve_plain(
    conn: socket.socket,
    upstream: socket.socket,
    forwarded: bytes,
    host: str,
    port: int,
    vault: Vault,
) -> None:
    """Relay a plain-HTTP request to a non-credential host, watching for phantoms.

    The head was already checked by the caller; the body is watched as it flows.
    """
    refused = duplex(conn, upstream, vault.refusing_rewriter(), HeadCloser(), first=forwarded)
    if refused is not None:
        vault.refuse(host, port, refused.label, plain=True)


def check_head(head: bytes, host: str, port: int, vault: Vault) -> None:
    """Raise a 403 :class:`Reject` when a plain-HTTP head carries any phantom
    (no real value is ever sent in clear, so no phantom may go that way either)."""
    try:
        rewrite_head(head, vault.refusing_rewriter())
    except Refused as refused:
        raise vault.refuse(host, port, refused.label, plain=True) from None
