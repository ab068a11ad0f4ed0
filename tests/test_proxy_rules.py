"""Allow-rule matching, internal-address classification and resolution for the proxy.

Pure functions, except :func:`resolve`, which asks this machine's real resolver
(/etc/hosts for ``localhost``).  Every refusal case sits next to a case that the same
rules allow, so a rule set that matched nothing could not pass.
"""

from __future__ import annotations

import socket

import pytest

from safe_pip.proxy.addresses import canonical_ip, is_internal, resolve
from safe_pip.proxy.rules import HostRule, RuleSet, normalise_host


def rules(*patterns: str) -> RuleSet:
    return RuleSet.parse(patterns)


# -- parsing ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ("example.com", HostRule("example.com", "example.com", False, False, (443, 80))),
        ("Example.COM:8443", HostRule("example.com:8443", "example.com", False, False, (8443,))),
        ("*.example.com", HostRule("*.example.com", "example.com", True, False, (443, 80))),
        ("*.example.com:443", HostRule("*.example.com:443", "example.com", True, False, (443,))),
        ("1.2.3.4", HostRule("1.2.3.4", "1.2.3.4", False, True, (443, 80))),
        ("1.2.3.4:80", HostRule("1.2.3.4:80", "1.2.3.4", False, True, (80,))),
        ("[::1]:8080", HostRule("[::1]:8080", "::1", False, True, (8080,))),
        ("::1", HostRule("::1", "::1", False, True, (443, 80))),
        ("[0:0::1]", HostRule("[0:0::1]", "::1", False, True, (443, 80))),
        ("[2001:DB8::A]:443", HostRule("[2001:db8::a]:443", "2001:db8::a", False, True, (443,))),
        ("::ffff:1.2.3.4", HostRule("::ffff:1.2.3.4", "1.2.3.4", False, True, (443, 80))),
    ],
)
def test_patterns_parse_into_host_wildcard_and_ports(pattern: str, expected: HostRule) -> None:
    assert HostRule.parse(pattern) == expected
    assert rules(pattern).rules == (expected,)


# -- matching --------------------------------------------------------------------------


def test_exact_name_matches_case_insensitively_and_without_trailing_dot() -> None:
    ruleset = rules("pypi.org")
    for host in ("pypi.org", "PyPI.Org", "pypi.org."):
        assert ruleset.match(host, 443) == ruleset.rules[0]
    for host in ("evil.pypi.org", "pypi.org.evil.example", "xpypi.org", "pypi.or", "pypi.org.."):
        assert ruleset.match(host, 443) is None


def test_wildcard_matches_every_depth_below_but_not_the_apex() -> None:
    ruleset = rules("*.example.com")
    assert ruleset.match("a.example.com", 443) is not None
    assert ruleset.match("a.b.example.com", 443) is not None
    assert ruleset.match("example.com", 443) is None
    assert ruleset.match("badexample.com", 443) is None
    assert ruleset.match("a.example.com.evil.example", 443) is None


def test_default_ports_are_443_and_80_only() -> None:
    ruleset = rules("example.com")
    assert ruleset.match("example.com", 443) is not None
    assert ruleset.match("example.com", 80) is not None
    assert ruleset.match("example.com", 8443) is None
    assert ruleset.match("example.com", 22) is None


def test_explicit_port_allows_that_port_only() -> None:
    ruleset = rules("example.com:8443", "*.example.org:443")
    assert ruleset.match("example.com", 8443) == ruleset.rules[0]
    assert ruleset.match("example.com", 443) is None
    assert ruleset.match("a.example.org", 443) == ruleset.rules[1]
    assert ruleset.match("a.example.org", 80) is None


def test_first_matching_rule_wins_and_ports_combine_across_rules() -> None:
    ruleset = rules("example.com:8443", "example.com")
    assert ruleset.match("example.com", 8443) == ruleset.rules[0]
    assert ruleset.match("example.com", 443) == ruleset.rules[1]


@pytest.mark.parametrize("spelling", ["127.0.0.1", "::ffff:127.0.0.1", "[::ffff:7f00:1]"])
def test_ipv4_rule_matches_every_spelling_of_the_same_address(spelling: str) -> None:
    ruleset = rules("127.0.0.1:8000")
    assert ruleset.match(spelling, 8000) is not None
    assert ruleset.match(spelling, 8001) is None


def test_ipv4_mapped_literal_is_mapped_consistently_for_matching_and_connecting() -> None:
    """The safe choice: ``::ffff:a.b.c.d`` *is* ``a.b.c.d`` everywhere, never a third
    thing.  It matches the IPv4 rule, and the proxy then connects over IPv4 to that
    same address; it matches no other IPv4 rule."""
    ruleset = rules("1.2.3.4")
    assert ruleset.match("::ffff:1.2.3.4", 443) is not None
    assert resolve("::ffff:1.2.3.4", 443) == [(socket.AF_INET, "1.2.3.4")]
    assert ruleset.match("::ffff:127.0.0.1", 443) is None
    assert ruleset.match("::ffff:1.2.3.5", 443) is None
    # 6to4 and NAT64 wrappings are different destinations (a relay forwards them).
    assert ruleset.match("2002:102:304::", 443) is None
    assert ruleset.match("64:ff9b::102:304", 443) is None


@pytest.mark.parametrize(
    "spelling", ["::1", "[::1]", "0:0:0:0:0:0:0:1", "[0::0:1]", "[0:0:0:0:0:0:0:1]"]
)
def test_ipv6_rule_matches_every_spelling(spelling: str) -> None:
    ruleset = rules("[::1]:8080")
    assert ruleset.match(spelling, 8080) is not None
    assert ruleset.match(spelling, 443) is None
    assert rules("::2").match(spelling, 443) is None


def test_ip_literals_and_names_never_match_each_other() -> None:
    assert rules("localhost").match("localhost", 443) is not None
    assert rules("localhost").match("127.0.0.1", 443) is None
    assert rules("127.0.0.1").match("127.0.0.1", 443) is not None
    assert rules("127.0.0.1").match("localhost", 443) is None


@pytest.mark.parametrize(
    "host",
    [
        "127.1",
        "2130706433",
        "0x7f.0.0.1.",
        "01.2.3.4",
        "a..b",
        "",
        "[1.2.3.4]",
        "fe80::1%lo",
        "a b",
    ],
)
def test_disguised_or_malformed_hosts_are_not_hosts(host: str) -> None:
    """Resolvers read ``127.1`` and ``2130706433`` as IPv4; no rule may cover them."""
    assert normalise_host(host) is None
    assert rules("*.example.com", "127.0.0.1", "a.b").match(host, 443) is None


# -- internal addresses ----------------------------------------------------------------


@pytest.mark.parametrize(
    "ip",
    [
        "127.0.0.1",
        "127.255.255.254",
        "10.1.2.3",
        "172.16.0.1",
        "172.31.255.255",
        "192.168.1.1",
        "169.254.169.254",
        "100.64.0.1",
        "100.127.255.255",
        "0.0.0.0",
        "224.0.0.1",
        "255.255.255.255",
        "fc00::1",
        "fd12:3456::1",
        "fe80::1",
        "fec0::1",
        "::1",
        "::",
        "ff02::1",
        "::ffff:127.0.0.1",
        "::ffff:169.254.169.254",
        "::127.0.0.1",
        "2002:7f00:1::",
        "2002:a00:1::1",
        "64:ff9b::a9fe:a9fe",
        "64:ff9b::7f00:1",
        "2001:db8::1",
        "not an address",
    ],
)
def test_internal_addresses(ip: str) -> None:
    assert is_internal(ip)


@pytest.mark.parametrize(
    "ip",
    [
        "1.1.1.1",
        "8.8.8.8",
        "151.101.0.223",
        "172.32.0.1",
        "100.128.0.1",
        "2606:4700::1111",
        "2a00:1450:4001::1",
        "::ffff:1.1.1.1",
        "2002:808:808::",
        "64:ff9b::808:808",
    ],
)
def test_global_addresses(ip: str) -> None:
    assert not is_internal(ip)


def test_internal_allowed_only_for_the_exact_ip_rule_and_port() -> None:
    ruleset = rules("127.0.0.1:8000", "[::1]:8000", "169.254.169.254:80")
    assert ruleset.internal_allowed("127.0.0.1", "127.0.0.1", 8000)
    assert ruleset.internal_allowed("::1", "0::1", 8000)
    assert ruleset.internal_allowed("169.254.169.254", "169.254.169.254", 80)
    assert not ruleset.internal_allowed("127.0.0.1", "127.0.0.1", 8001)
    assert not ruleset.internal_allowed("127.0.0.2", "127.0.0.2", 8000)
    assert not ruleset.internal_allowed("10.0.0.1", "10.0.0.1", 8000)


def test_names_resolving_to_internal_addresses_are_not_allowed() -> None:
    """The DNS-rebinding defence: no name leads to loopback or link-local, and a
    wildcard leads to no internal address at all."""
    ruleset = rules("vm:8000", "*.example.com", "metadata.example")
    assert ruleset.match("vm", 8000) is not None
    assert not ruleset.internal_allowed("vm", "127.0.0.1", 8000)
    assert ruleset.match("rebind.example.com", 443) is not None
    assert not ruleset.internal_allowed("rebind.example.com", "10.0.0.5", 443)
    assert not ruleset.internal_allowed("metadata.example", "169.254.169.254", 80)
    assert not ruleset.internal_allowed("metadata.example", "fe80::1", 443)
    assert not ruleset.internal_allowed("metadata.example", "::ffff:169.254.169.254", 443)
    assert not ruleset.internal_allowed("metadata.example", "0.0.0.0", 443)
    assert not ruleset.internal_allowed("metadata.example", "224.0.0.1", 443)


@pytest.mark.parametrize(
    "ip",
    [
        "10.1.2.3", "172.16.0.9", "192.168.1.1", "100.64.0.7", "203.0.113.80",
        "198.51.100.1", "192.0.2.1", "198.18.0.1", "fd00::5", "2001:db8::1",
        "::ffff:10.1.2.3",
    ],
)  # fmt: skip
def test_a_name_listed_exactly_may_lead_to_a_site_address(ip: str) -> None:
    """Gateways and private indexes: pypi.org answered with 203.0.113.80, devpi on
    10.x.  The user named the host; its address is the user's network's business."""
    ruleset = rules("pypi.org", "devpi.corp:3141", "*.example.com")
    assert ruleset.internal_allowed("pypi.org", ip, 443)
    assert ruleset.internal_allowed("PyPI.org.", ip, 80)
    assert ruleset.internal_allowed("devpi.corp", ip, 3141)
    assert not ruleset.internal_allowed("devpi.corp", ip, 443), "another port"
    assert not ruleset.internal_allowed("a.example.com", ip, 443), "through a wildcard"
    assert not ruleset.internal_allowed("unlisted.org", ip, 443)


@pytest.mark.parametrize(
    ("ip", "site", "words"),
    [
        ("10.1.2.3", True, "a private address"),
        ("100.100.1.1", True, "a shared (CGNAT) address"),
        ("203.0.113.80", True, "a documentation-range address"),
        ("198.19.255.1", True, "a benchmarking-range address"),
        ("fd12::1", True, "a unique-local address"),
        ("127.0.0.5", False, "a loopback address (this machine)"),
        ("::1", False, "a loopback address (this machine)"),
        ("169.254.169.254", False, "a link-local address (where cloud metadata services live)"),
        ("fe80::1", False, "a link-local address (where cloud metadata services live)"),
        ("0.0.0.0", False, "a reserved or special-purpose address"),
        ("240.0.0.1", False, "a reserved or special-purpose address"),
        ("192.0.0.8", False, "a reserved or special-purpose address"),
    ],
)
def test_site_ranges_and_their_names(ip: str, site: bool, words: str) -> None:
    from safe_pip.proxy.addresses import describe_internal, is_site_address

    assert is_internal(ip)
    assert is_site_address(ip) is site
    assert describe_internal(ip) == words


def test_localhost_rule_reaches_loopback_only() -> None:
    ruleset = rules("localhost:8000")
    assert ruleset.internal_allowed("localhost", "127.0.0.1", 8000)
    assert ruleset.internal_allowed("LOCALHOST.", "::1", 8000)
    assert not ruleset.internal_allowed("localhost", "127.0.0.1", 8001)
    assert not ruleset.internal_allowed("localhost", "10.0.0.1", 8000)
    assert not ruleset.internal_allowed("localhost", "169.254.169.254", 8000)
    assert not ruleset.internal_allowed("a.localhost", "127.0.0.1", 8000)
    assert not rules("*.localhost:8000").internal_allowed("a.localhost", "127.0.0.1", 8000)
    assert not rules("localhost:8000").internal_allowed("vm", "127.0.0.1", 8000)


# -- hints -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "port", "hint"),
    [
        ("Example.COM", 443, "example.com"),
        ("example.com.", 80, "example.com"),
        ("example.com", 8443, "example.com:8443"),
        ("1.2.3.4", 443, "1.2.3.4"),
        ("127.0.0.1", 8000, "127.0.0.1:8000"),
        ("::1", 8080, "[::1]:8080"),
        ("[::1]", 8080, "[::1]:8080"),
        ("::1", 443, "::1"),
        ("::ffff:127.0.0.1", 8000, "127.0.0.1:8000"),
    ],
)
def test_hint_is_the_pattern_to_add(host: str, port: int, hint: str) -> None:
    ruleset = rules()
    assert ruleset.hint(host, port) == hint
    # The hint really allows what was refused.
    assert rules(hint).match(host, port) is not None


# -- resolution ------------------------------------------------------------------------


def test_ip_literals_never_reach_the_resolver(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_dns(*_args: object, **_kwargs: object) -> object:
        raise AssertionError("getaddrinfo called for an IP literal")

    assert resolve("localhost", 80)  # the real resolver works here...
    monkeypatch.setattr(socket, "getaddrinfo", no_dns)
    assert resolve("10.0.0.1", 80) == [(socket.AF_INET, "10.0.0.1")]  # ...and is skipped
    assert resolve("0:0::1", 80) == [(socket.AF_INET6, "::1")]


def test_resolve_returns_unique_addresses_and_raises_oserror_on_failure() -> None:
    found = resolve("localhost", 443)
    assert (socket.AF_INET, "127.0.0.1") in found
    assert len(found) == len(set(found))
    with pytest.raises(OSError):
        resolve("no-such-host.invalid", 443)


def test_canonical_ip_spellings() -> None:
    assert canonical_ip("0:0:0:0:0:0:0:1") == "::1"
    assert canonical_ip("2001:DB8:0:0::A") == "2001:db8::a"
    assert canonical_ip("::ffff:10.0.0.1") == "10.0.0.1"
    assert canonical_ip("10.0.0.1") == "10.0.0.1"
    for not_ip in ("010.0.0.1", "10.1", "fe80::1%eth0", "example.com", "1.2.3.4\x00"):
        assert canonical_ip(not_ip) is None
