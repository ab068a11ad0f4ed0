"""Responses on the credential routes: no real value gets back into the sandbox.

The proxy puts a credential's real value on requests to that credential's own hosts.
A server can send it back: an error page quoting the key, a debug endpoint echoing
the request's headers, an index page repeating the ``Authorization: Basic`` header.
If those bytes reached the sandbox, the program would hold the very value the
phantom exists to keep from it.  So every response on a credential route goes
through :class:`ResponseScrubber`, which replaces each real value with its phantom
in the forms a server is likely to echo it in:

* as is;
* base64, standard and URL-safe alphabets, at each of the three alignments a value
  can have inside a longer encoded string (``user:value`` of a Basic header is
  one): every encoded character that depends on the value's bytes alone is matched,
  so at most the one character at each end that also carries neighbouring bits
  keeps 2 or 4 of the value's bits;
* percent-encoded (every byte ``%XX``, either case; and ``quote()``'s usual form);
* JSON ``\\uXXXX`` escapes of every character (either case);
* hex (either case).

Patterns are matched across chunk and read boundaries: the body is taken out of its
``Transfer-Encoding: chunked`` framing, scrubbed as one stream (a tail that could
still begin a pattern is held back until the next bytes decide it), and framed
again.  A body compressed with gzip or deflate is decompressed first and sent on
uncompressed; any other ``Content-Encoding`` (brotli, zstd ...) cannot be read here,
so such a response is cut off (:class:`Unreadable`) rather than passed through.
Every replacement has the length of what it replaces (a phantom has its value's
length; an encoding with no same-length phantom form becomes ``X``s), so a
``Content-Length`` stays right.

Not covered (docs/credentials.md): other encodings (a value spelled backwards,
split by the server into pieces, mixed escaping, encrypted, hashed), and bytes after
``101 Switching Protocols`` beyond the plain and encoded forms above.
"""

from __future__ import annotations

import base64
import zlib
from urllib.parse import quote

from safe_pip.proxy.rewrite import Refused, StreamRewriter

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable

__all__ = ["ResponseScrubber", "Unreadable", "echo_patterns"]

_MAX_HEAD = 64 * 1024
_CRLF = b"\r\n"


class Unreadable(Refused):
    """A response on a credential route that cannot be scrubbed (an encoding the
    proxy cannot decode): the connection is cut instead."""


def _b64_cores(data: bytes, urlsafe: bool) -> list[bytes]:
    """Every base64 character that depends on ``data``'s bytes alone, for each of the
    three alignments ``data`` can have in a longer encoded string.

    At alignment ``s`` (``s`` bytes of ``data`` end the group they share with what
    precedes them), that group's last ``s`` characters are ``data``'s alone; so are the
    first ``r`` characters of the group the last ``r`` bytes share with what follows.
    Only the 2 or 4 bits in each mixed character are not matched.
    """
    encode = base64.urlsafe_b64encode if urlsafe else base64.b64encode
    cores = []
    for s in range(3):
        r = (len(data) - s) % 3
        lead = b"\0" * ((3 - s) % 3)
        encoded = encode(lead + data + b"\0" * ((3 - r) % 3))
        start = 4 - s if s else 0
        end = len(encoded) - (4 - r if r else 0)
        if end - start >= 4:
            cores.append(encoded[start:end])
    return cores


def _forms(value: bytes) -> list[bytes]:
    """``value`` in every form :mod:`scrub` matches (see the module doc), in a fixed
    order so that a value's and its phantom's forms pair up."""
    text = value.decode("utf-8", "surrogateescape")
    forms = [value]
    forms += _b64_cores(value, urlsafe=False)
    forms += _b64_cores(value, urlsafe=True)
    forms.append("".join(f"%{b:02X}" for b in value).encode())
    forms.append("".join(f"%{b:02x}" for b in value).encode())
    forms.append(quote(text, safe="").encode())
    forms.append("".join(f"\\u{ord(c):04x}" for c in text).encode())
    forms.append("".join(f"\\u{ord(c):04X}" for c in text).encode())
    forms.append(value.hex().encode())
    forms.append(value.hex().upper().encode())
    return forms


def echo_patterns(pairs: Iterable[tuple[str, str]]) -> dict[bytes, bytes]:
    """Pattern -> same-length replacement for every (real value, phantom) pair."""
    patterns: dict[bytes, bytes] = {}
    for real, phantom in pairs:
        for found, instead in zip(_forms(real.encode()), _forms(phantom.encode()), strict=True):
            if len(found) < 8 or found in patterns:
                continue  # too short to be a value's echo (and would hit everywhere)
            patterns[found] = instead if len(instead) == len(found) else b"X" * len(found)
    return patterns


class ResponseScrubber:
    """One response stream (a credential route carries one request per connection):
    its head scrubbed whole, its body scrubbed as one stream out of its framing."""

    def __init__(self, patterns: dict[bytes, bytes]) -> None:
        self._patterns = patterns
        self._head = b""
        self._state = "head"  # head, length, chunked, close, done
        self._remaining = 0  # length: body bytes still to come
        self._chunk_part = "size"  # chunked: size line, data, or the CRLF after it
        self._chunk_left = 0  # chunked: bytes of the current chunk still to come
        self._frame = b""  # chunked: a size or CRLF line being read
        self._chunked_out = False
        self._decoder: zlib._Decompress | None = None
        self._body = StreamRewriter(patterns)  # same-length patterns, tail held back
        #: Whether no byte of this response has gone to the client yet (so a refusal
        #: can still be answered with an error response).
        self.nothing_sent = True

    # -- the head -------------------------------------------------------------------

    def feed(self, data: bytes) -> bytes:
        out = self._feed(data)
        if out:
            self.nothing_sent = False
        return out

    def _feed(self, data: bytes) -> bytes:
        out = b""
        while data:
            if self._state == "head":
                out_part, data = self._feed_head(data)
                out += out_part
            elif self._state == "length":
                take = data[: self._remaining]
                data = data[len(take) :]
                self._remaining -= len(take)
                out += self._payload(take)
                if self._remaining == 0:
                    out += self._end_body()
            elif self._state == "chunked":
                out_part, data = self._feed_chunked(data)
                out += out_part
            elif self._state == "close":
                out += self._payload(data)
                data = b""
            else:  # done: nothing may follow a complete response on this connection
                data = b""
        return out

    def flush(self) -> bytes:
        """End of the upstream's stream."""
        if self._state == "head":
            head, self._head = self._head, b""
            return _scrub_whole(head, self._patterns)
        if self._state in ("length", "chunked", "close"):
            return self._end_body()
        return b""

    def _feed_head(self, data: bytes) -> tuple[bytes, bytes]:
        self._head += data
        end = self._head.find(b"\r\n\r\n")
        if end < 0:
            if len(self._head) > _MAX_HEAD:  # not HTTP as we know it: one raw stream
                self._state = "close"
                head, self._head = self._head, b""
                return self._payload(head), b""
            return b"", b""
        head, rest = self._head[: end + 4], self._head[end + 4 :]
        self._head = b""
        lines = head[:-4].split(_CRLF)
        status = lines[0].split(b" ", 2)
        code = status[1] if len(status) > 1 else b""
        if code[:1] == b"1" and code != b"101":
            return _scrub_whole(head, self._patterns), rest  # interim: the real head follows
        headers = _Headers(lines[1:])
        if code == b"101" or code in (b"204", b"304"):
            self._state = "close" if code == b"101" else "done"
            return _scrub_whole(head, self._patterns), rest
        encoding = headers.get(b"content-encoding").lower()
        if encoding not in (b"", b"identity"):
            if encoding not in (b"gzip", b"x-gzip", b"deflate"):
                raise Unreadable(f"a response in {encoding.decode('latin-1')}")
            wbits = 16 + zlib.MAX_WBITS if b"gzip" in encoding else zlib.MAX_WBITS
            self._decoder = zlib.decompressobj(wbits)
            headers.remove(b"content-encoding")
        chunked = b"chunked" in headers.get(b"transfer-encoding").lower()
        length = headers.get(b"content-length")
        if chunked:
            self._state = "chunked"
        elif length.strip().isdigit():
            self._state = "length"
            self._remaining = int(length)
        else:
            self._state = "close"
        if self._decoder is not None:
            # The body's length changes: sent on chunked, whatever it came as.
            headers.remove(b"content-length")
            headers.remove(b"transfer-encoding")
            headers.add(b"Transfer-Encoding: chunked")
            self._chunked_out = True
        elif chunked:
            self._chunked_out = True  # framed again around what is released
        new_head = _CRLF.join([lines[0], *headers.lines]) + b"\r\n\r\n"
        out = _scrub_whole(new_head, self._patterns)
        if self._state == "length" and self._remaining == 0:
            out += self._end_body()
        return out, rest

    # -- the body -------------------------------------------------------------------

    def _payload(self, data: bytes) -> bytes:
        """Body bytes as they arrived (out of chunked framing): decoded, scrubbed and,
        where the output is chunked, framed."""
        if self._decoder is not None:
            try:
                data = self._decoder.decompress(data)
            except zlib.error:
                raise Unreadable("a corrupt compressed response") from None
        return self._framed(self._body.feed(data))

    def _framed(self, data: bytes) -> bytes:
        if not data or not self._chunked_out:
            return data
        return b"%x\r\n%s\r\n" % (len(data), data)

    def _end_body(self) -> bytes:
        tail = b""
        if self._decoder is not None:
            tail = self._decoder.flush()
        out = self._framed(self._body.feed(tail)) + self._framed(self._body.flush())
        if self._chunked_out:
            out += b"0\r\n\r\n"  # trailers, which could echo too, are dropped
        self._state = "done"
        return out

    def _feed_chunked(self, data: bytes) -> tuple[bytes, bytes]:
        """One step through chunked framing: chunk data, or a size or CRLF line."""
        if self._chunk_part == "data":
            take = data[: self._chunk_left]
            self._chunk_left -= len(take)
            if self._chunk_left == 0:
                self._chunk_part = "crlf"
            return self._payload(take), data[len(take) :]
        self._frame += data
        end = self._frame.find(_CRLF)
        if end < 0:
            if len(self._frame) > 4096:
                raise Unreadable("a malformed chunked response")
            return b"", b""
        line, rest = self._frame[:end], self._frame[end + 2 :]
        self._frame = b""
        if self._chunk_part == "crlf":  # the end of a chunk's data
            self._chunk_part = "size"
            return b"", rest
        try:
            size = int(line.split(b";", 1)[0].strip(), 16)
        except ValueError:
            raise Unreadable("a malformed chunked response") from None
        if size == 0:
            return self._end_body(), b""  # trailers are not passed on
        self._chunk_left = size
        self._chunk_part = "data"
        return b"", rest


class _Headers:
    """Header lines of a response head, editable by name."""

    def __init__(self, lines: list[bytes]) -> None:
        self.lines = list(lines)

    def get(self, name: bytes) -> bytes:
        values = [
            line.partition(b":")[2].strip()
            for line in self.lines
            if line.partition(b":")[0].strip().lower() == name
        ]
        return b", ".join(values)

    def remove(self, name: bytes) -> None:
        self.lines = [
            line for line in self.lines if line.partition(b":")[0].strip().lower() != name
        ]

    def add(self, line: bytes) -> None:
        self.lines.append(line)


def _scrub_whole(data: bytes, patterns: dict[bytes, bytes]) -> bytes:
    for pattern, replacement in patterns.items():
        if pattern in data:
            data = data.replace(pattern, replacement)
    return data
