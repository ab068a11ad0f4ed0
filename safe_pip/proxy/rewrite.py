"""Byte-stream rewriting for the credential routes: swap, scrub, refuse, close.

The proxy relays most traffic untouched (spliced in the kernel, see relay.py).  Where
credentials are involved it must look at the bytes in flight, in both directions:

* requests to a credential's own host: its phantom becomes the real value;
* any phantom going where it does not belong: the request is refused before the
  phantom itself leaves (:class:`Refused`);
* responses: a real value the server echoes (an error message quoting the key, a
  debugging endpoint) becomes the phantom again, so it never enters the sandbox.

Values and phantoms have equal lengths (see credentials/phantom.py), so no framing
(``Content-Length``, chunk sizes) changes.  A pattern can straddle two reads; the
longest tail of a read that could still begin a pattern is held back until the next
read decides it, and nothing else is held, so event streams still flow as they come.
"""

from __future__ import annotations

__all__ = ["Chain", "HeadCloser", "Refused", "StreamRewriter"]

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping

    from safe_pip.proxy.scrub import ResponseScrubber


class Refused(Exception):
    """A forbidden pattern (a phantom going to a foreign host) was about to pass."""

    def __init__(self, label: str) -> None:
        super().__init__(label)
        self.label = label


class StreamRewriter:
    """Replace patterns in a stream; a pattern mapped to None raises :class:`Refused`.

    ``labels`` names what a refused pattern was (a credential name) for the report;
    it never holds the pattern itself.
    """

    def __init__(
        self,
        replacements: Mapping[bytes, bytes | None],
        labels: Mapping[bytes, str] | None = None,
    ) -> None:
        self._replacements = {k: v for k, v in replacements.items() if k}
        self._labels = labels or {}
        self._longest = max(map(len, self._replacements), default=0)
        self._held = b""

    def feed(self, data: bytes) -> bytes:
        """Rewrite ``data``; returns what can be passed on now."""
        if not self._replacements:
            return data
        buffer = self._held + data
        for pattern, replacement in self._replacements.items():
            if pattern in buffer:
                if replacement is None:
                    raise Refused(self._labels.get(pattern, "a credential"))
                buffer = buffer.replace(pattern, replacement)
        keep = self._partial_tail(buffer)
        self._held = buffer[len(buffer) - keep :] if keep else b""
        return buffer[: len(buffer) - keep]

    def flush(self) -> bytes:
        """The end of the stream: whatever was held back cannot be a pattern any more."""
        held, self._held = self._held, b""
        return held

    def _partial_tail(self, buffer: bytes) -> int:
        """Length of the longest tail of ``buffer`` that is a proper prefix of a pattern."""
        for size in range(min(self._longest - 1, len(buffer)), 0, -1):
            tail = buffer[-size:]
            if any(pattern.startswith(tail) for pattern in self._replacements):
                return size
        return 0


class HeadCloser:
    """Mark the (final) response head ``Connection: close``; pass the body through.

    The proxy carries one request per client connection, so a client must not pool
    the connection (see http_proxy.py).  Interim ``1xx`` heads pass unchanged.
    """

    _LIMIT = 64 * 1024

    def __init__(self) -> None:
        self._buffer = b""
        self._done = False

    def feed(self, data: bytes) -> bytes:
        if self._done:
            return data
        self._buffer += data
        out = b""
        while not self._done:
            head, separator, rest = self._buffer.partition(b"\r\n\r\n")
            if not separator:
                if len(self._buffer) > self._LIMIT:  # not HTTP as we know it: pass as is
                    self._done = True
                    out, self._buffer = out + self._buffer, b""
                return out
            lines = head.split(b"\r\n")
            status = lines[0].split(b" ", 2)
            if len(status) > 1 and status[1][:1] == b"1" and status[1] != b"101":
                out += head + separator
                self._buffer = rest
                continue
            kept = [
                line
                for line in lines[1:]
                if line.split(b":", 1)[0].strip().lower() not in (b"connection", b"keep-alive")
            ]
            out += b"\r\n".join([lines[0], *kept, b"Connection: close"]) + separator + rest
            self._buffer = b""
            self._done = True
        return out

    def flush(self) -> bytes:
        held, self._buffer = self._buffer, b""
        return held


class Chain:
    """Several rewriters applied in order (each one's output feeds the next)."""

    def __init__(self, *stages: StreamRewriter | HeadCloser | ResponseScrubber) -> None:
        self._stages = stages

    def feed(self, data: bytes) -> bytes:
        for stage in self._stages:
            data = stage.feed(data)
        return data

    def flush(self) -> bytes:
        data = b""
        for stage in self._stages:
            data = stage.feed(data) + stage.flush()
        return data
