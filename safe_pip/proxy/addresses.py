"""IP addresses: canonical spelling, "internal or not", and resolution.

The proxy decides from addresses, not names, whether a destination is internal, and
it connects to the very address it checked.  Three things matter for that:

* One address has many spellings (``::ffff:127.0.0.1``, ``0:0::1``, ``2002:7f00:1::``
  for 127.0.0.1 behind 6to4).  :func:`canonical_ip` gives one text per address so
  rules compare equal, and :func:`is_internal` looks through the IPv6 wrappings that
  carry an IPv4 address (IPv4-mapped, 6to4, NAT64) and judges the IPv4 inside.
* ``ipaddress.is_global`` changes between Python releases (3.11.2 and 3.11.7 disagree
  about ``2002::/16``), so the ranges that matter here are also listed explicitly:
  the verdict must not depend on the interpreter's patch level.
* IP literals never reach DNS (``AI_NUMERICHOST`` semantics, done by hand), and names
  are resolved here, in the supervisor: the sandbox has no resolver of its own.

``ipaddress`` is imported on first use: it costs about 2 ms, and nothing on the
start-up path needs it.
"""

from __future__ import annotations

import socket

from safe_pip._records import record

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network

__all__ = [
    "canonical_ip",
    "describe_internal",
    "is_internal",
    "is_loopback",
    "is_site_address",
    "join_host_port",
    "resolve",
]

_MAPPED_PREFIX = b"\0" * 10 + b"\xff\xff"

# Not reachable destinations on the open internet, whatever ``is_global`` says on this
# Python: "this network", private, CGNAT, loopback, link-local (cloud metadata lives at
# 169.254.169.254), IETF protocol assignments, documentation and benchmarking ranges,
# the 6to4 relay anycast, multicast, reserved and broadcast.
_INTERNAL_V4 = (
    "0.0.0.0/8",
    "10.0.0.0/8",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.0.0.0/24",
    "192.0.2.0/24",
    "192.88.99.0/24",
    "192.168.0.0/16",
    "198.18.0.0/15",
    "198.51.100.0/24",
    "203.0.113.0/24",
    "224.0.0.0/3",
)
# Inside global unicast (2000::/3): IETF assignments including Teredo, documentation.
# Everything outside 2000::/3 (ULA, link-local, site-local, multicast, ::/96 ...) is
# internal by construction, except NAT64 (64:ff9b::/96), which is unwrapped instead.
_INTERNAL_V6 = ("2001::/23", "2001:db8::/32", "3fff::/20")

# The internal ranges a site uses for its own machines, where a host the user named
# exactly may lead (rules.py): private networks (a devpi or Artifactory on 10.x),
# CGNAT (Tailscale and other overlays hand out 100.64.0.0/10), IPv6 unique-local, and
# the documentation and benchmarking ranges, which gateways and "fake-IP" DNS proxies
# answer with.  Not here, so never reached through a name: loopback (services on this
# machine), link-local (the cloud metadata service), "this network", multicast,
# reserved and the IETF protocol ranges.  Each entry: (network, what to call it).
_SITE_RANGES = (
    ("10.0.0.0/8", "a private address"),
    ("172.16.0.0/12", "a private address"),
    ("192.168.0.0/16", "a private address"),
    ("100.64.0.0/10", "a shared (CGNAT) address"),
    ("192.0.2.0/24", "a documentation-range address"),
    ("198.51.100.0/24", "a documentation-range address"),
    ("203.0.113.0/24", "a documentation-range address"),
    ("198.18.0.0/15", "a benchmarking-range address"),
    ("fc00::/7", "a unique-local address"),
    ("2001:db8::/32", "a documentation-range address"),
    ("3fff::/20", "a documentation-range address"),
)
_GLOBAL_UNICAST = "2000::/3"
_NAT64 = "64:ff9b::/96"


@record
class _Tables:
    """The ranges above as ``ipaddress`` networks, built once on first use."""

    internal_v4: tuple[IPv4Network, ...]
    internal_v6: tuple[IPv6Network, ...]
    global_unicast: IPv6Network
    nat64: IPv6Network
    site: tuple[tuple[IPv4Network | IPv6Network, str], ...]


_built: list[_Tables] = []


def canonical_ip(text: str) -> str | None:
    """The canonical text of an IP literal, or None if ``text`` is not one.

    IPv4 must be strict dotted quad (no ``127.1``, no octal ``010.0.0.1``); IPv6 is
    compressed and lower case, without brackets.  An IPv4-mapped IPv6 address
    (``::ffff:a.b.c.d``) *is* the IPv4 address ``a.b.c.d`` — connecting to either
    reaches the same socket — so it is returned in IPv4 form.  Zone ids (``%eth0``)
    are refused: they name a local interface.
    """
    try:
        if ":" in text:
            if "%" in text:
                return None
            packed = socket.inet_pton(socket.AF_INET6, text)
            if packed[:12] == _MAPPED_PREFIX:
                return socket.inet_ntop(socket.AF_INET, packed[12:])
            return socket.inet_ntop(socket.AF_INET6, packed)
        return socket.inet_ntop(socket.AF_INET, socket.inet_pton(socket.AF_INET, text))
    except (OSError, ValueError):  # ValueError: NUL bytes or non-ASCII text
        return None


def is_loopback(ip: str) -> bool:
    """Whether ``ip`` (any spelling) is a loopback address: 127.0.0.0/8 or ::1."""
    address = canonical_ip(ip)
    return address is not None and (address.startswith("127.") or address == "::1")


def is_internal(ip: str) -> bool:
    """True unless ``ip`` is a globally routable unicast address.

    Unparseable text counts as internal: this function guards a door, so doubt
    closes it.
    """
    import ipaddress

    address = _unwrapped(ip)
    if address is None:
        return True
    tables = _tables()
    if isinstance(address, ipaddress.IPv6Address):
        if address not in tables.global_unicast:
            return True
        if any(address in network for network in tables.internal_v6):
            return True
        return not address.is_global
    if any(address in network for network in tables.internal_v4):
        return True
    return not address.is_global or address.is_multicast


def _unwrapped(ip: str) -> IPv4Address | IPv6Address | None:
    """``ip`` parsed, with an IPv4 address that IPv6 merely wraps (mapped, 6to4,
    NAT64) taken out; None when it is not an address."""
    import ipaddress

    try:
        address: IPv4Address | IPv6Address = ipaddress.ip_address(ip)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address):
        return _embedded_ipv4(address, _tables().nat64) or address
    return address


def _site_range(ip: str) -> str | None:
    """What to call ``ip`` if it lies in one of the site ranges (an IPv4 address
    wrapped in IPv6 counts as itself), else None."""
    address = _unwrapped(ip)
    if address is None:
        return None
    for network, what in _tables().site:
        if address.version == network.version and address in network:
            return what
    return None


def is_site_address(ip: str) -> bool:
    """Whether ``ip`` is internal but of the kind a site's own hosts have (private,
    CGNAT, unique-local, documentation, benchmarking): where an exactly named host may
    lead.  Loopback, link-local, multicast and reserved addresses are not."""
    return _site_range(ip) is not None


def describe_internal(ip: str) -> str:
    """A few words on what kind of internal address ``ip`` is, for refusals."""
    what = _site_range(ip)
    if what is not None:
        return what
    if is_loopback(ip):
        return "a loopback address (this machine)"
    address = canonical_ip(ip) or ""
    if address.startswith("169.254.") or address.startswith("fe80:"):
        return "a link-local address (where cloud metadata services live)"
    return "a reserved or special-purpose address"


def _embedded_ipv4(address: IPv6Address, nat64: IPv6Network) -> IPv4Address | None:
    """The IPv4 address an IPv6 address merely wraps (mapped, 6to4, NAT64), if any."""
    import ipaddress

    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in nat64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def _tables() -> _Tables:
    if not _built:  # two threads may both build: harmless, both results are equal
        import ipaddress

        _built.append(
            _Tables(
                internal_v4=tuple(ipaddress.IPv4Network(text) for text in _INTERNAL_V4),
                internal_v6=tuple(ipaddress.IPv6Network(text) for text in _INTERNAL_V6),
                global_unicast=ipaddress.IPv6Network(_GLOBAL_UNICAST),
                nat64=ipaddress.IPv6Network(_NAT64),
                site=tuple((ipaddress.ip_network(net), what) for net, what in _SITE_RANGES),
            )
        )
    return _built[0]


def resolve(host: str, port: int) -> list[tuple[int, str]]:
    """``(family, ip)`` pairs for a TCP connection to ``host``, in resolver order.

    An IP literal is returned as it is (canonical form) without asking DNS.  Duplicate
    addresses are dropped; a name that resolves to nothing raises ``OSError``, as do
    names the IDNA codec rejects.
    """
    literal = canonical_ip(host)
    if literal is not None:
        family = socket.AF_INET6 if ":" in literal else socket.AF_INET
        return [(family, literal)]
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except UnicodeError as exc:
        raise OSError(f"cannot resolve {host!r}: {exc}") from None
    found: list[tuple[int, str]] = []
    for family, _type, _proto, _name, sockaddr in infos:
        if family not in (socket.AF_INET, socket.AF_INET6):
            continue
        pair = (int(family), str(sockaddr[0]))
        if pair not in found:
            found.append(pair)
    if not found:
        raise OSError(f"{host!r} has no IPv4 or IPv6 address")
    return found


def join_host_port(host: str, port: int) -> str:
    """``host:port``, with IPv6 addresses in brackets: ``[::1]:8080``."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
