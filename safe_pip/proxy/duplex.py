"""A one-thread, full-duplex relay between two sockets that may speak TLS.

relay.py copies in the kernel with two threads, which is right for blind tunnels.
The credential routes need the bytes in user space (to rewrite them, see rewrite.py)
and usually have a TLS socket on at least one side.  An OpenSSL connection must not
be read in one thread while another writes it, so both directions run here in one
thread over non-blocking sockets and ``poll()``.

Back-pressure: a side is read only while nothing is waiting to be written to the
other side, so a slow reader slows the writer instead of filling our memory.
"""

from __future__ import annotations

import select
import socket
import ssl

from safe_pip.proxy.rewrite import Refused

TYPE_CHECKING = False
if TYPE_CHECKING:
    from safe_pip.proxy.rewrite import Chain, HeadCloser, StreamRewriter
    from safe_pip.proxy.scrub import ResponseScrubber

    Rewriter = Chain | HeadCloser | StreamRewriter | ResponseScrubber

__all__ = ["duplex"]

_CHUNK = 64 * 1024
_WOULD_BLOCK = (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError, InterruptedError)


class _Side:
    """One socket: what is still to be written to it, and whether it can be read."""

    __slots__ = ("open", "pending", "sock")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.pending = bytearray()
        self.open = True  # not yet at end of input

    def buffered(self) -> bool:
        """Decrypted bytes OpenSSL holds that poll() cannot see."""
        return isinstance(self.sock, ssl.SSLSocket) and self.sock.pending() > 0


def duplex(
    client: socket.socket,
    upstream: socket.socket,
    to_upstream: Rewriter,
    to_client: Rewriter,
    *,
    first: bytes = b"",
) -> Refused | None:
    """Relay until the upstream's response is complete (its end of stream) or the
    client leaves; returns the :class:`Refused` that stopped it, else None.

    ``first`` is request data that arrived with the head, sent through
    ``to_upstream`` before anything else.  The sockets are left non-blocking; the
    caller closes them.
    """
    near, far = _Side(client), _Side(upstream)
    for side in (near, far):
        side.sock.setblocking(False)
    try:
        far.pending += to_upstream.feed(first)
        poller = select.poll()
        while True:
            for side in (near, far):
                _write(side)
            if not far.open and not near.pending:
                return None  # the response is complete and delivered
            if not near.open and not far.pending:
                return None  # the client left: nobody is waiting for an answer
            progressed = False
            for src, dst, rewriter in ((near, far, to_upstream), (far, near, to_client)):
                if src.open and not dst.pending:
                    got = _read(src)
                    if got is None:
                        continue
                    progressed = True
                    if got:
                        dst.pending += rewriter.feed(got)
                    else:
                        src.open = False
                        dst.pending += rewriter.flush()
            if progressed:
                continue
            _wait(poller, near, far)
    except Refused as refused:
        return refused
    except (OSError, ssl.SSLError):
        return None  # either side gone: nothing more to deliver


def _read(side: _Side) -> bytes | None:
    """Bytes read, ``b""`` at end of stream, None when nothing is ready."""
    try:
        return side.sock.recv(_CHUNK)
    except _WOULD_BLOCK:
        return None
    except (ssl.SSLEOFError, ConnectionResetError):
        return b""  # a peer that closes without close_notify has still finished


def _write(side: _Side) -> None:
    while side.pending:
        try:
            sent = side.sock.send(side.pending)
        except _WOULD_BLOCK:
            return
        del side.pending[:sent]


def _wait(poller: select.poll, near: _Side, far: _Side) -> None:
    """Sleep until a socket can make progress (never when OpenSSL holds data)."""
    if any(side.buffered() and side.open for side in (near, far)):
        return
    for side, other in ((near, far), (far, near)):
        events = 0
        if side.open and not other.pending:
            events |= select.POLLIN
        if side.pending:
            events |= select.POLLOUT
        try:
            poller.unregister(side.sock)
        except KeyError:
            pass
        if events:
            poller.register(side.sock, events)
    poller.poll()
