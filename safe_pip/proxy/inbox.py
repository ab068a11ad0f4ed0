"""What a client sends before its tunnel opens, read under one deadline.

The request head (HTTP) or handshake (SOCKS5) is the only part of a connection the
proxy reads itself; one deadline for all of it keeps a client that trickles bytes
from holding a thread and a connection slot forever.  Bytes that arrive with the
head but belong after it (a body, a TLS ClientHello) stay here until
:meth:`Inbox.rest` hands them to the upstream side.
"""

from __future__ import annotations

import time

from safe_pip.proxy.refusal import Gone, bad

TYPE_CHECKING = False
if TYPE_CHECKING:
    import socket

__all__ = ["Inbox"]


class Inbox:
    """Bytes read from a client before its tunnel opens, under one deadline."""

    def __init__(self, sock: socket.socket, deadline: float) -> None:
        self._sock = sock
        self._deadline = deadline
        self._data = bytearray()

    def _fill(self) -> None:
        remaining = self._deadline - time.monotonic()
        if remaining <= 0:
            raise Gone("the request head did not arrive in time")
        self._sock.settimeout(remaining)
        try:
            chunk = self._sock.recv(65536)
        except OSError as exc:  # includes the timeout
            raise Gone(str(exc)) from None
        if not chunk:
            raise Gone("the client closed the connection")
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
        raise bad(f"the request head is longer than {limit} bytes")

    def rest(self) -> bytes:
        """Whatever arrived after the head: the start of a body or of a TLS handshake."""
        rest = bytes(self._data)
        self._data.clear()
        return rest
