"""The SOCKS5 dialect: CONNECT without authentication (RFC 1928).

For ``ALL_PROXY=socks5h://...`` clients.  Only CONNECT is spoken (BIND and UDP
ASSOCIATE would open more than one connection).  With ``socks5h`` host names arrive
unresolved, so resolution stays with the gate, like every other check.
"""

from __future__ import annotations

import socket

from safe_pip.proxy.refusal import (
    DRAIN_SECONDS,
    SOCKS_BAD_ADDRESS,
    SOCKS_BAD_COMMAND,
    SOCKS_FAILURE,
    SOCKS_OK,
    Gone,
    Reject,
    drain,
)
from safe_pip.proxy.relay import relay, send_all
from safe_pip.proxy.rules import normalise_host

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from safe_pip.proxy.inbox import Inbox
    from safe_pip.proxy.upstream import Gate

__all__ = ["serve_socks"]


def serve_socks(conn: socket.socket, inbox: Inbox, gate: Gate, settle: Callable[[], None]) -> None:
    """Serve one SOCKS5 client; ``settle`` is called once the handshake is read.

    ``settle`` tells the server the client is past its handshake, so it is no
    longer the one to evict when connections run out.
    """
    try:
        host, port = _socks_handshake(conn, inbox)
    finally:
        settle()
    try:
        upstream = gate.open(host, port)
    except Reject as reject:
        _socks_reply(conn, reject.socks_code)
        return
    with upstream:
        _socks_reply(conn, SOCKS_OK)
        send_all(upstream, inbox.rest())
        relay(conn, upstream)


def _socks_handshake(conn: socket.socket, inbox: Inbox) -> tuple[str, int]:
    """Method negotiation (no authentication only) and the CONNECT request."""
    _version, count = inbox.take(2)
    if 0x00 not in inbox.take(count):
        conn.sendall(b"\x05\xff")  # "no acceptable methods"
        raise Gone("the SOCKS client offered no method without authentication")
    conn.sendall(b"\x05\x00")
    version, command, _reserved, address_type = inbox.take(4)
    if version != 0x05:
        _socks_reply(conn, SOCKS_FAILURE)
        raise Gone("not a SOCKS5 request")
    if address_type == 0x01:
        host = socket.inet_ntop(socket.AF_INET, inbox.take(4))
    elif address_type == 0x04:
        host = socket.inet_ntop(socket.AF_INET6, inbox.take(16))
    elif address_type == 0x03:
        host = inbox.take(inbox.take(1)[0]).decode("latin-1")
    else:
        _socks_reply(conn, SOCKS_BAD_ADDRESS)
        raise Gone("unknown SOCKS address type")
    port = int.from_bytes(inbox.take(2), "big")
    if command != 0x01:  # BIND and UDP ASSOCIATE would open more than one connection
        _socks_reply(conn, SOCKS_BAD_COMMAND)
        raise Gone("SOCKS command other than CONNECT")
    name = normalise_host(host)
    if name is None or port == 0:
        _socks_reply(conn, SOCKS_FAILURE)
        raise Gone("malformed SOCKS destination")
    return name, port


def _socks_reply(conn: socket.socket, code: int) -> None:
    """A reply with the bound address left as 0.0.0.0:0 (ours is nobody's business)."""
    conn.settimeout(DRAIN_SECONDS)
    conn.sendall(bytes((0x05, code, 0x00, 0x01)) + bytes(6))
    if code != SOCKS_OK:
        drain(conn)
