"""The one gate every request passes: policy, resolution, internal check, connect.

Both dialects end in the same question, "may this client reach ``host:port``?", so
it is answered in one place (:meth:`Gate.open`): the allow rules, resolution here
in the supervisor (the sandbox has no DNS), the internal address check, then a
connection to the very address that was checked — never a second lookup that DNS
rebinding could answer differently.  Every decision is recorded in the
:class:`~safe_pip.proxy.log.DestinationLog`; refusals tell the client which pattern
to add.
"""

from __future__ import annotations

import errno
import socket

from safe_pip.proxy.addresses import (
    canonical_ip,
    describe_internal,
    is_internal,
    is_site_address,
    join_host_port,
    resolve,
)
from safe_pip.proxy.refusal import (
    SOCKS_FAILURE,
    SOCKS_HOST_UNREACHABLE,
    SOCKS_NET_UNREACHABLE,
    SOCKS_NOT_ALLOWED,
    SOCKS_REFUSED,
    Reject,
)
from safe_pip.proxy.relay import no_delay

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from safe_pip.proxy.log import DestinationLog
    from safe_pip.proxy.rules import RuleSet
    from safe_pip.proxy.upstream_proxy import UpstreamProxy

    Resolver = Callable[[str, int], list[tuple[int, str]]]

__all__ = ["Gate"]


class Gate:
    """Decide and open upstream connections for one proxy server."""

    def __init__(
        self,
        rules: RuleSet,
        log: DestinationLog,
        *,
        connect_timeout: float,
        resolver: Resolver | None,
        upstream: UpstreamProxy | None = None,
    ) -> None:
        self._upstream = upstream
        self._rules = rules
        self._log = log
        self._connect_timeout = connect_timeout
        self._resolve: Resolver = resolve if resolver is None else resolver
        self._advice = log.advice

    def open(self, host: str, port: int) -> socket.socket:
        """Check ``host:port`` against the policy and connect to a checked address."""
        destination = join_host_port(host, port)
        command = self._advice.command
        if self._rules.match(host, port) is None:
            hint = self._rules.hint(host, port)
            self._log.record(host, port, allowed=False, reason="no allow rule matches", hint=hint)
            raise Reject(
                403,
                SOCKS_NOT_ALLOWED,
                f"{command} refused {destination}: no allow rule matches; to allow it "
                f"{self._advice.how_to_allow(hint)}.",
            )
        try:
            addresses = self._resolve(host, port)
        except (OSError, UnicodeError):
            addresses = []
        via_upstream = self._upstream is not None and self._uses_upstream(host)
        if not addresses and via_upstream:
            return self._through_upstream(host, port)  # only the user's proxy can resolve it
        if not addresses:
            self._log.record(host, port, allowed=True, reason="cannot resolve", hint=None)
            raise Reject(502, SOCKS_HOST_UNREACHABLE, f"{command} could not resolve {host}.")
        usable = [
            (family, ip)
            for family, ip in addresses
            if not is_internal(ip) or self._rules.internal_allowed(host, ip, port)
        ]
        if not usable:
            reason, hint = self._internal_refusal(host, port, addresses[0][1])
            self._log.record(host, port, allowed=False, reason=reason, hint=hint)
            raise Reject(
                403,
                SOCKS_NOT_ALLOWED,
                f"{command} refused {destination}: {reason}; to allow it "
                f"{self._advice.how_to_allow(hint)}.",
            )
        if via_upstream:
            return self._through_upstream(host, port)
        self._log.record(host, port, allowed=True, reason="allowed", hint=None)
        return self._connect(destination, port, usable)

    def _uses_upstream(self, host: str) -> bool:
        """Whether an allowed ``host`` is reached through the user's proxy: not when
        NO_PROXY says so, nor for ``localhost`` or an internal IP literal (a service
        on this machine or this network, which no outside proxy can reach)."""
        assert self._upstream is not None
        if host.lower().rstrip(".") == "localhost" or self._upstream.bypasses(host):
            return False
        literal = canonical_ip(host.strip("[]"))
        return literal is None or not is_internal(literal)

    def _through_upstream(self, host: str, port: int) -> socket.socket:
        """``CONNECT host:port`` through the user's proxy (the name as asked for: the
        proxy resolves it)."""
        from safe_pip.proxy.upstream_proxy import UpstreamRefused

        assert self._upstream is not None
        destination = join_host_port(host, port)
        command = self._advice.command
        try:
            upstream = self._upstream.open_tunnel(host, port, self._connect_timeout)
        except UpstreamRefused as exc:
            self._log.record(host, port, allowed=True, reason=str(exc), hint=None)
            raise Reject(
                502, SOCKS_FAILURE, f"{command} could not reach {destination}: {exc}."
            ) from None
        except OSError as exc:
            _code, why = _connect_failure(exc, self._connect_timeout)
            where = self._upstream.where
            self._log.record(host, port, allowed=True, reason=f"your proxy: {why}", hint=None)
            raise Reject(
                502, SOCKS_FAILURE, f"{command} could not connect to your proxy {where}: {why}."
            ) from None
        self._log.record(host, port, allowed=True, reason="allowed", hint=None)
        no_delay(upstream)
        return upstream

    def _internal_refusal(self, host: str, port: int, internal: str) -> tuple[str, str]:
        """Why ``host`` may not lead to ``internal``, and the one pattern that fixes it.

        A site-range address (a gateway, a private index) is allowed for a name listed
        exactly, so the fix is that name; a reached-through-a-wildcard name gets the
        same advice.  Loopback, link-local and reserved addresses are never reached
        through a name: the fix is the address itself, named as an IP rule.
        """
        what = describe_internal(internal)
        if is_site_address(internal):
            return (
                f"it resolves to {internal} ({what}), which only a host named exactly "
                "(not through a wildcard) may lead to",
                self._rules.hint(host, port),
            )
        return (
            f"it resolves to {internal} ({what}), which no host name may lead to",
            self._rules.hint(internal, port),
        )

    def _connect(
        self, destination: str, port: int, addresses: list[tuple[int, str]]
    ) -> socket.socket:
        """Connect to the first address that answers, each within connect_timeout."""
        failure: OSError | None = None
        for family, ip in addresses:
            try:
                upstream = socket.socket(family, socket.SOCK_STREAM)
            except OSError as exc:  # out of descriptors, or no IPv6 here
                failure = exc
                continue
            try:
                upstream.settimeout(self._connect_timeout)
                upstream.connect((ip, port))
            except OSError as exc:
                upstream.close()
                failure = exc
                continue
            no_delay(upstream)
            return upstream
        code, why = _connect_failure(failure, self._connect_timeout)
        raise Reject(
            502, code, f"{self._advice.command} could not connect to {destination}: {why}."
        )


def _connect_failure(failure: OSError | None, timeout: float) -> tuple[int, str]:
    """The SOCKS reply code and a short reason for a failed upstream connect."""
    if isinstance(failure, TimeoutError):
        return SOCKS_HOST_UNREACHABLE, f"no answer within {timeout:g} s"
    code = failure.errno if failure is not None else None
    if code == errno.ECONNREFUSED:
        return SOCKS_REFUSED, "connection refused"
    if code == errno.ENETUNREACH:
        return SOCKS_NET_UNREACHABLE, "network unreachable"
    if code == errno.EHOSTUNREACH:
        return SOCKS_HOST_UNREACHABLE, "host unreachable"
    reason = failure.strerror if failure is not None and failure.strerror else "connect failed"
    return SOCKS_FAILURE, reason.lower()
