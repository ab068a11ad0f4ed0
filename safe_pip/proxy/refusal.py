"""How a proxy request ends without a tunnel, and how to close so the client hears it.

Both dialects end the same two ways: :class:`Reject`, the request is answered with an
error (a malformed head, a destination the policy refuses, an upstream that does not
answer), or :class:`Gone`, the client left before there was anything to answer.  A
:class:`Reject` carries the answer in both spellings, an HTTP status and a SOCKS5
reply code, because the gate that raises most of them does not know which dialect
the client speaks.
"""

from __future__ import annotations

import socket
import time

__all__ = [
    "DRAIN_SECONDS",
    "SOCKS_BAD_ADDRESS",
    "SOCKS_BAD_COMMAND",
    "SOCKS_FAILURE",
    "SOCKS_HOST_UNREACHABLE",
    "SOCKS_NET_UNREACHABLE",
    "SOCKS_NOT_ALLOWED",
    "SOCKS_OK",
    "SOCKS_REFUSED",
    "Gone",
    "Reject",
    "bad",
    "drain",
]

# SOCKS5 (RFC 1928) reply codes.
SOCKS_OK = 0x00
SOCKS_FAILURE = 0x01
SOCKS_NOT_ALLOWED = 0x02
SOCKS_NET_UNREACHABLE = 0x03
SOCKS_HOST_UNREACHABLE = 0x04
SOCKS_REFUSED = 0x05
SOCKS_BAD_COMMAND = 0x07
SOCKS_BAD_ADDRESS = 0x08

#: After an error reply, how long (and how much) to keep reading what the client
#: still sends, so closing does not reset the connection before it reads the reply.
DRAIN_SECONDS = 1.0
_DRAIN_BYTES = 1 << 20


class Reject(Exception):
    """A request answered with an error instead of a connection."""

    def __init__(self, status: int, socks_code: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.socks_code = socks_code
        self.message = message


class Gone(Exception):
    """The client closed, stalled past the head deadline, or was evicted."""


def bad(why: str) -> Reject:
    """A 400 for a request that cannot be read unambiguously (SOCKS: general failure)."""
    return Reject(400, SOCKS_FAILURE, f"safe-run proxy: bad request: {why}.")


def drain(conn: socket.socket) -> None:
    """Half-close, then read (and discard) what the client still sends, briefly.

    Closing a socket with unread input makes the kernel send a reset, which can
    destroy an error reply before the client has read it.
    """
    try:
        conn.shutdown(socket.SHUT_WR)
        deadline = time.monotonic() + DRAIN_SECONDS
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
