"""The response scrubber of the credential routes (safe_pip/proxy/scrub.py), in process.

The end-to-end tests (a real proxy, a real sandbox, a server that echoes the value)
are in test_credentials.py; these pin the forms and framings one by one, and that a
stream is never held back further than a pattern could reach.
"""

from __future__ import annotations

import base64
import gzip
import json
import zlib
from urllib.parse import quote

import pytest

from safe_pip.proxy.scrub import ResponseScrubber, Unreadable, echo_patterns

REAL = "sk-S3cretApiToken1234+/="  # awkward bytes for base64 and percent-encoding
PHANTOM = "sk-qHrGnbviiCNmXNMiKBgqA"
assert len(REAL) == len(PHANTOM)


def scrub(response: bytes, pieces: int = 1) -> bytes:
    """Feed ``response`` in ``pieces`` roughly equal reads; what the client gets."""
    scrubber = ResponseScrubber(echo_patterns([(REAL, PHANTOM)]))
    size = max(1, len(response) // pieces)
    out = b"".join(scrubber.feed(response[i : i + size]) for i in range(0, len(response), size))
    return out + scrubber.flush()


def respond(body: bytes, *headers: str) -> bytes:
    head = ["HTTP/1.1 200 OK", *headers]
    if not any(h.lower().startswith(("content-length", "transfer-encoding")) for h in headers):
        head.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


def chunked(*parts: bytes) -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts) + b"0\r\n\r\n"


def dechunk(body: bytes) -> bytes:
    out, rest = b"", body
    while True:
        line, _, rest = rest.partition(b"\r\n")
        size = int(line, 16)
        if size == 0:
            return out
        out, rest = out + rest[:size], rest[size + 2 :]


ECHOES = {
    "raw": REAL.encode(),
    "basic": base64.b64encode(f"user:{REAL}".encode()),
    "basic-urlsafe": base64.urlsafe_b64encode(f"u:{REAL}".encode()),
    "b64-aligned": base64.b64encode(REAL.encode()),
    "b64-offset-2": base64.b64encode(b"ab" + REAL.encode()),
    "percent-all": "".join(f"%{b:02X}" for b in REAL.encode()).encode(),
    "percent-lower": "".join(f"%{b:02x}" for b in REAL.encode()).encode(),
    "quote": quote(REAL, safe="").encode(),
    "json-u": "".join(f"\\u{ord(c):04x}" for c in REAL).encode(),
    "hex": REAL.encode().hex().encode(),
    "HEX": REAL.encode().hex().upper().encode(),
}


@pytest.mark.parametrize("form", sorted(ECHOES))
def test_every_form_is_scrubbed_in_a_length_delimited_body(form: str) -> None:
    echo = ECHOES[form]
    body = b'{"you sent": "' + echo + b'"}'
    out = scrub(respond(body, "Content-Type: application/json"), pieces=7)
    head, _, got = out.partition(b"\r\n\r\n")
    assert b"Content-Length: %d" % len(body) in head
    assert len(got) == len(body)  # same length: the framing stays right
    assert echo not in got
    if form in ("raw",):
        assert PHANTOM.encode() in got


def test_base64_of_the_value_does_not_decode_to_it_at_any_alignment() -> None:
    for prefix in (b"", b"u:", b"ab:", b"user:"):
        token = base64.b64encode(prefix + REAL.encode())
        out = scrub(respond(b"Authorization: Basic " + token), pieces=3)
        got = out.partition(b"\r\n\r\n")[2].removeprefix(b"Authorization: Basic ")
        decoded = base64.b64decode(got + b"=" * (-len(got) % 4))
        assert REAL.encode()[3:-3] not in decoded, prefix


def test_a_value_split_across_chunks_is_scrubbed() -> None:
    half = len(REAL) // 2
    body = chunked(b"your password is " + REAL[:half].encode(), REAL[half:].encode(), b" ok")
    out = scrub(respond(body, "Transfer-Encoding: chunked"), pieces=5)
    got = out.partition(b"\r\n\r\n")[2]
    plain = dechunk(got)
    assert plain == b"your password is " + PHANTOM.encode() + b" ok"
    assert REAL.encode() not in got


@pytest.mark.parametrize("pieces", [1, 3, 50])
def test_a_value_split_across_reads_of_a_plain_body_is_scrubbed(pieces: int) -> None:
    body = b"x" * 100 + REAL.encode() + b"y" * 100
    got = scrub(respond(body), pieces=pieces).partition(b"\r\n\r\n")[2]
    assert got == b"x" * 100 + PHANTOM.encode() + b"y" * 100


def test_headers_are_scrubbed() -> None:
    out = scrub(
        respond(b"{}", f"X-Echo: {REAL}", f"X-B64: {base64.b64encode(REAL.encode()).decode()}")
    )
    assert REAL.encode() not in out and base64.b64encode(REAL.encode()) not in out


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
def test_compressed_bodies_are_decoded_scrubbed_and_sent_plain(encoding: str) -> None:
    plain = json.dumps({"error": f"bad key {REAL}"}).encode()
    body = gzip.compress(plain) if encoding == "gzip" else zlib.compress(plain)
    out = scrub(respond(body, f"Content-Encoding: {encoding}"), pieces=4)
    head, _, got = out.partition(b"\r\n\r\n")
    assert b"content-encoding" not in head.lower() and b"Content-Length" not in head
    assert b"Transfer-Encoding: chunked" in head
    assert dechunk(got) == plain.replace(REAL.encode(), PHANTOM.encode())


def test_an_unreadable_encoding_is_cut_off_before_anything_is_sent() -> None:
    scrubber = ResponseScrubber(echo_patterns([(REAL, PHANTOM)]))
    with pytest.raises(Unreadable):
        scrubber.feed(respond(b"\x1b\x00br-data", "Content-Encoding: br"))
    assert scrubber.nothing_sent


def test_an_event_stream_is_not_held_back() -> None:
    """Only a tail that could begin a pattern waits: each SSE event goes out at once."""
    scrubber = ResponseScrubber(echo_patterns([(REAL, PHANTOM)]))
    head = scrubber.feed(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
    assert head.endswith(b"\r\n\r\n")
    event = b'data: {"delta": "hello"}\n\n'
    assert dechunk(scrubber.feed(b"%x\r\n%s\r\n" % (len(event), event)) + b"0\r\n\r\n") == event


def test_interim_and_bodiless_responses() -> None:
    out = scrub(b"HTTP/1.1 100 Continue\r\n\r\n" + respond(REAL.encode()))
    assert REAL.encode() not in out and out.count(b"HTTP/1.1") == 2
    assert scrub(b"HTTP/1.1 204 No Content\r\n\r\n") == b"HTTP/1.1 204 No Content\r\n\r\n"


def test_short_values_make_no_patterns() -> None:
    """A form shorter than 8 bytes would match ordinary text everywhere."""
    assert all(len(p) >= 8 for p in echo_patterns([("abc", "xyz"), (REAL, PHANTOM)]))
