"""DNS queries inside the sandbox: noted for the report, answered "refused", never sent.

The sandbox has no resolver: names are resolved by the proxy, outside.  A program
that resolves a name itself (one that ignores ``HTTPS_PROXY``, or looks a host up
before connecting) fails with "Temporary failure in name resolution", and the user
is left guessing which host it wanted.  In namespace mode glibc, finding no readable
``/etc/resolv.conf``, asks 127.0.0.1:53 — inside the sandbox's own network namespace,
where the launcher binds a UDP socket and hands it to the supervisor.  This module
reads those queries, records the name in the exit report, and answers REFUSED.

Nothing is forwarded: a query is not a way out (a name like
``<secret>.attacker.example`` would otherwise carry data to the attacker's DNS
server).  Only the question is parsed, with every length checked; anything malformed
is dropped without an answer.
"""

from __future__ import annotations

import socket
import struct

TYPE_CHECKING = False
if TYPE_CHECKING:
    from safe_pip.proxy.log import DestinationLog
    from safe_pip.proxy.rules import RuleSet

__all__ = ["note_lookup", "parse_question", "refused_answer", "serve_dns"]

_HEADER = struct.Struct("!HHHHHH")
_REFUSED = 5
_MAX_DATAGRAM = 4096


#: Query types that ask where a host is (A, AAAA, HTTPS): what a connection needs.
#: Others (PTR for ``getfqdn()``, SRV, TXT) are answered but not reported.
ADDRESS_TYPES = frozenset((1, 28, 65))


def parse_question(packet: bytes) -> tuple[str, int, int] | None:
    """``(name, query type, end of the question section)`` of a standard query with
    one question, or None when ``packet`` is anything else."""
    if len(packet) < _HEADER.size:
        return None
    _id, flags, questions, _an, _ns, _ar = _HEADER.unpack_from(packet)
    if flags & 0x8000 or (flags >> 11) & 0xF != 0 or questions != 1:
        return None  # a response, not a standard QUERY, or not exactly one question
    labels: list[str] = []
    offset = _HEADER.size
    while True:
        if offset >= len(packet):
            return None
        length = packet[offset]
        offset += 1
        if length == 0:
            break
        if length > 63 or offset + length > len(packet):
            return None  # compression pointers have no place in a question
        labels.append(packet[offset : offset + length].decode("ascii", "replace"))
        offset += length
    if offset + 4 > len(packet):
        return None
    (qtype,) = struct.unpack_from("!H", packet, offset)
    return ".".join(labels).lower(), qtype, offset + 4


def refused_answer(packet: bytes, question_end: int) -> bytes:
    """The REFUSED response to ``packet``: same id and question, no records."""
    query_id, flags = struct.unpack_from("!HH", packet)
    flags = 0x8000 | (flags & 0x0100) | 0x0080 | _REFUSED  # QR, RD copied, RA, rcode
    return _HEADER.pack(query_id, flags, 1, 0, 0, 0) + packet[_HEADER.size : question_end]


def note_lookup(name: str, rules: RuleSet, log: DestinationLog) -> None:
    """Record a lookup of ``name`` with what would let the program reach it."""
    from safe_pip.proxy.rules import normalise_host

    host = normalise_host(name)
    if host is not None and (rules.match(host, 443) or rules.match(host, 80)):
        reason = (
            "it is allowed, but only through the proxy in HTTPS_PROXY, and this program "
            "resolves names itself (see docs/network.md)"
        )
        hint = None
    else:
        reason = "the sandbox has no DNS; allowed hosts are reached through the proxy"
        hint = None if host is None else rules.hint(host, 443)
    log.record(name, 53, allowed=False, reason=reason, hint=hint, via="dns")


def serve_dns(sock: socket.socket, rules: RuleSet, log: DestinationLog) -> None:
    """Answer queries on ``sock`` until it fails (the sandbox's namespace is gone)."""
    while True:
        try:
            packet, address = sock.recvfrom(_MAX_DATAGRAM)
        except OSError:
            return
        question = parse_question(packet)
        if question is None:
            continue
        name, qtype, end = question
        if qtype in ADDRESS_TYPES:
            note_lookup(name, rules, log)
        try:
            sock.sendto(refused_answer(packet, end), address)
        except OSError:
            pass
