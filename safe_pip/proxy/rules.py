"""The policy's ``network.allow`` patterns, and the questions the proxy asks of them.

A pattern names a host **and** ports: ``example.com`` (ports 443 and 80),
``example.com:8443``, ``*.example.com`` (any name below example.com, at any depth, but
not example.com itself), IPv4 ``1.2.3.4[:port]`` and IPv6 ``::1`` / ``[::1]:8080``.
Patterns arrive already validated by :mod:`safe_pip.policy.loader`.

Internal destinations — loopback, private ranges, link-local (including the cloud
metadata service at 169.254.169.254), CGNAT, ULA, reserved ranges; see
:func:`safe_pip.proxy.addresses.is_internal` — are reachable only when the policy
names them explicitly:

* an IP-literal rule for that very address and port (``127.0.0.1:8000``), any range;
* the request host is exactly ``localhost``, a ``localhost[:port]`` rule matched, and
  the address is a loopback one.  That name comes from /etc/hosts, not from DNS an
  attacker controls;
* the request host is a name the policy lists *exactly* (not through a wildcard)
  for that port, and the address is in a site range
  (:func:`~safe_pip.proxy.addresses.is_site_address`: private, CGNAT, unique-local,
  documentation, benchmarking).  That is how gateways, split-horizon DNS and
  self-hosted indexes work: ``pypi.org`` answered with 203.0.113.80 by the company's
  resolver, ``devpi.corp`` on 10.1.2.3.  The user chose that name; its DNS is the
  user's network's.

Everything else stays refused, and this is the DNS-rebinding defence: a name reached
through a wildcard (``*.githubusercontent.com`` covers names nobody reviewed) never
leads to an internal address, and no name leads to loopback (services on this
machine) or link-local (the metadata service), whoever runs its DNS.
"""

from __future__ import annotations

from safe_pip._records import record
from safe_pip.proxy.addresses import canonical_ip, is_loopback, is_site_address, join_host_port

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable

__all__ = ["DEFAULT_PORTS", "HostRule", "RuleSet", "normalise_host"]

#: Ports a pattern without ``:PORT`` allows: HTTPS and plain HTTP.
DEFAULT_PORTS = (443, 80)

_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-_")


@record
class HostRule:
    """One allow pattern, taken apart."""

    pattern: str  # as written in the policy, lower case
    host: str  # the name without "*.", or the canonical IP text (IPv6 without brackets)
    wildcard: bool
    is_ip: bool
    ports: tuple[int, ...]

    @classmethod
    def parse(cls, pattern: str) -> HostRule:
        """Split a validated pattern into host, wildcard flag and ports."""
        text = pattern.lower()
        port: int | None = None
        if text.startswith("["):
            host, _, rest = text[1:].partition("]")
            if rest:
                port = int(rest[1:])
        elif text.count(":") > 1:
            host = text
        else:
            host, colon, digits = text.partition(":")
            if colon:
                port = int(digits)
        ports = DEFAULT_PORTS if port is None else (port,)
        address = canonical_ip(host)
        if address is not None:
            return cls(text, address, wildcard=False, is_ip=True, ports=ports)
        if host.startswith("*."):
            return cls(text, host[2:], wildcard=True, is_ip=False, ports=ports)
        return cls(text, host, wildcard=False, is_ip=False, ports=ports)

    def covers_name(self, name: str) -> bool:
        """Whether this name rule covers the (normalised) host name ``name``."""
        if self.is_ip:
            return False
        if self.wildcard:
            return name.endswith("." + self.host)
        return name == self.host


@record
class RuleSet:
    """All allow rules of a policy, in the order written."""

    rules: tuple[HostRule, ...]

    @classmethod
    def parse(cls, patterns: Iterable[str]) -> RuleSet:
        """Rules from ``host[:port]`` patterns (already checked by the policy loader)."""
        return cls(tuple(HostRule.parse(pattern) for pattern in patterns))

    def match(self, host: str, port: int) -> HostRule | None:
        """The first rule allowing ``host:port``, or None.

        ``host`` is compared case-insensitively, without a trailing dot or IPv6
        brackets.  An IP literal matches only IP rules for the same address (any
        spelling of it); a name matches only name rules.
        """
        name = normalise_host(host)
        if name is None:
            return None
        is_ip = canonical_ip(name) is not None
        for rule in self.rules:
            if port not in rule.ports:
                continue
            if (rule.is_ip and rule.host == name) if is_ip else rule.covers_name(name):
                return rule
        return None

    def internal_allowed(self, host: str, ip: str, port: int) -> bool:
        """Whether the internal address ``ip``, reached as ``host:port``, may be used.

        See the module docstring: an IP rule for ``ip`` and ``port``; ``localhost``
        through a ``localhost`` rule to a loopback address; a name listed exactly to
        a site-range address.  Nothing else.
        """
        address = canonical_ip(ip)
        if address is None:
            return False
        for rule in self.rules:
            if rule.is_ip and rule.host == address and port in rule.ports:
                return True
        name = normalise_host(host)
        if name is None or canonical_ip(name) is not None:
            return False
        if name == "localhost":
            return is_loopback(address) and self.names_exactly(name, port)
        return is_site_address(address) and self.names_exactly(name, port)

    def names_exactly(self, host: str, port: int) -> bool:
        """Whether a rule lists the name ``host`` itself (no wildcard) for ``port``."""
        name = normalise_host(host)
        return any(
            not rule.is_ip and not rule.wildcard and rule.host == name and port in rule.ports
            for rule in self.rules
        )

    def hint(self, host: str, port: int) -> str:
        """The allow pattern a user would add for ``host:port``.

        ``example.com`` covers ports 443 and 80, so the port is named only when it is
        another one: ``example.com:8443``, ``[::1]:8080``.
        """
        name = normalise_host(host) or host.lower()
        if port in DEFAULT_PORTS:
            return name
        return join_host_port(name, port)


def normalise_host(host: str) -> str | None:
    """The comparable form of a requested host, or None if it is not a valid one.

    Lower case, one trailing dot and IPv6 brackets removed, IP literals canonical.
    Names may use letters, digits, ``-`` and ``_`` (seen in real DNS names), in
    non-empty labels; a numeric last label is refused, because resolvers read
    ``127.1`` or ``2130706433`` as IPv4 addresses in disguise.
    """
    text = host.lower()
    if text.startswith("[") and text.endswith("]"):
        inner = text[1:-1]
        return canonical_ip(inner) if ":" in inner else None
    if text.endswith("."):
        text = text[:-1]
    address = canonical_ip(text)
    if address is not None:
        return address
    labels = text.split(".")
    if not text or len(text) > 253 or labels[-1].isdigit():
        return None
    for label in labels:
        if not label or len(label) > 63 or not _NAME_CHARS.issuperset(label):
            return None
    return text
