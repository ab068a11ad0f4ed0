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

from safe_pip.proxy.addresses import is_internal, join_host_port, resolve
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

    Resolver = Callable[[str, int], list[tuple[int, str]]]

__all__ = ["Gate"]

_POLICY_KEY = "[tool.safe-run.network] allow"


class Gate:
    """Decide and open upstream connections for one proxy server."""

    def __init__(
        self,
        rules: RuleSet,
        log: DestinationLog,
        *,
        connect_timeout: float,
        resolver: Resolver | None,
    ) -> None:
        self._rules = rules
        self._log = log
        self._connect_timeout = connect_timeout
        self._resolve: Resolver = resolve if resolver is None else resolver

    def open(self, host: str, port: int) -> socket.socket:
        """Check ``host:port`` against the policy and connect to a checked address."""
        destination = join_host_port(host, port)
        if self._rules.match(host, port) is None:
            hint = self._rules.hint(host, port)
            self._log.record(host, port, allowed=False, reason="no allow rule matches", hint=hint)
            raise Reject(
                403,
                SOCKS_NOT_ALLOWED,
                f"safe-run refused {destination}: no rule in {_POLICY_KEY} matches. "
                f'Add "{hint}" (or pass --allow-host {hint}) to allow it.',
            )
        try:
            addresses = self._resolve(host, port)
        except (OSError, UnicodeError):
            addresses = []
        if not addresses:
            self._log.record(host, port, allowed=True, reason="cannot resolve", hint=None)
            raise Reject(502, SOCKS_HOST_UNREACHABLE, f"safe-run could not resolve {host}.")
        usable = [
            (family, ip)
            for family, ip in addresses
            if not is_internal(ip) or self._rules.internal_allowed(host, ip, port)
        ]
        if not usable:
            internal = addresses[0][1]
            hint = self._rules.hint(internal, port)
            self._log.record(
                host,
                port,
                allowed=False,
                reason=f"resolves to internal address {internal}",
                hint=hint,
            )
            raise Reject(
                403,
                SOCKS_NOT_ALLOWED,
                f"safe-run refused {destination}: it resolves to the internal address "
                f"{internal}, and a host name may not lead to an internal address. "
                f'Add "{hint}" (or pass --allow-host {hint}) to allow that address.',
            )
        self._log.record(host, port, allowed=True, reason="allowed", hint=None)
        return self._connect(destination, port, usable)

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
        raise Reject(502, code, f"safe-run could not connect to {destination}: {why}.")


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
