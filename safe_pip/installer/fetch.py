"""The HTTP requests safe-pip makes itself, outside any sandbox, held to the sandbox's
network rules.

Nearly all network traffic of an install happens inside the install sandbox, behind
the proxy.  One request does not: the sdist of a package that must be built is
fetched by the trusted process (installer/lock.py), checked against the lock's
sha256 and handed to the build sandbox.  That process has the machine's whole
network, so it must not be talked into requesting anything the sandbox could not:
an index that answers with ``302 Location: http://169.254.169.254/...`` would
otherwise make it query the cloud metadata service (a blind GET, but a GET with the
machine's identity).

Every hop -- the first URL and each redirect -- must

* keep the scheme of the first URL (no https -> http downgrade),
* name a host the install's own allow list covers (the indexes, find-links hosts,
  ``--allow-host``), and
* resolve to an address the proxy would use (proxy/rules.py): a name leading to an
  internal address is refused unless the address is allowed as an IP literal, or it
  is a site-range address (private, a gateway's) of a host the install names exactly.

A refused hop fails the install with one line naming the redirect.  (What is left:
the name is resolved again when urllib connects, so a DNS answer that changes in
between is not seen.)

Behind the user's own proxy (``HTTPS_PROXY`` ..., proxy/upstream_proxy.py) the fetch
goes through it like every other client's, and a name that does not resolve here
is left to the proxy to resolve; a name that does is still checked.
"""

from __future__ import annotations

import urllib.request
from typing import IO
from urllib.parse import urlsplit

from safe_pip.errors import SafePipError
from safe_pip.installer.indexes import host_pattern
from safe_pip.proxy.addresses import is_internal, resolve
from safe_pip.proxy.rules import RuleSet

TYPE_CHECKING = False
if TYPE_CHECKING:
    import ssl
    from collections.abc import Sequence
    from http.client import HTTPMessage

_DEFAULT_PORTS = {"http": 80, "https": 443}


def check_hop(url: str, scheme: str, rules: RuleSet, proxied: bool = False) -> str | None:
    """Why ``url`` may not be requested (None when it may), for a fetch that began on
    ``scheme``; ``proxied``: through the user's proxy, which resolves what we cannot."""
    parts = urlsplit(url)
    if parts.scheme != scheme:
        return f"it changes the scheme from {scheme} to {parts.scheme or 'none'}"
    try:
        pattern = host_pattern(url)
    except SafePipError:
        return "it names no usable host"
    host = parts.hostname or ""
    port = parts.port or _DEFAULT_PORTS[scheme]
    if rules.match(host, port) is None:
        return f"{pattern} is not one of the indexes (or --allow-host)"
    try:
        addresses = resolve(host, port)
    except (OSError, UnicodeError):
        return None if proxied else f"{host} does not resolve"
    usable = [ip for _, ip in addresses if rules.internal_allowed(host, ip, port)]
    usable += [ip for _, ip in addresses if not is_internal(ip)]
    if not usable:
        internal = addresses[0][1] if addresses else "?"
        return f"{host} resolves to the internal address {internal}"
    return None


def _user_proxies(host: str) -> dict[str, str]:
    """urllib's proxy table for the user's ``http://`` proxy, unless NO_PROXY sends
    ``host`` direct (the same reading as the sandbox's proxy)."""
    import os

    from safe_pip.proxy.upstream_proxy import UpstreamProxy

    found = UpstreamProxy.from_environment(os.environ)
    if not isinstance(found, UpstreamProxy) or found.bypasses(host):
        return {}
    return {"http": found.url, "https": found.url}


class _CheckedRedirects(urllib.request.HTTPRedirectHandler):
    """Follow a redirect only where :func:`check_hop` allows it."""

    def __init__(self, scheme: str, rules: RuleSet, proxied: bool) -> None:
        self._scheme = scheme
        self._rules = rules
        self._proxied = proxied

    def redirect_request(
        self,
        req: urllib.request.Request,
        fp: IO[bytes],
        code: int,
        msg: str,
        headers: HTTPMessage,
        newurl: str,
    ) -> urllib.request.Request | None:
        why = check_hop(newurl, self._scheme, self._rules, self._proxied)
        if why is not None:
            raise SafePipError(
                f"{req.full_url} redirected ({code}) to {newurl}, which is not followed: {why}"
            )
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def open_checked(
    url: str,
    *,
    allow: Sequence[str],
    context: ssl.SSLContext,
    authorization: str | None = None,
    timeout: float = 60,
) -> IO[bytes]:
    """GET ``url`` from the trusted process under the install's allow list ``allow``
    (``host:port`` patterns); raises SafePipError for a refused hop.  An
    ``authorization`` header goes to the first URL only, never along a redirect."""
    scheme = urlsplit(url).scheme
    if scheme not in _DEFAULT_PORTS:
        raise SafePipError(f"{url}: only http:// and https:// are fetched")
    rules = RuleSet.parse(allow)
    proxies = _user_proxies(urlsplit(url).hostname or "")
    why = check_hop(url, scheme, rules, bool(proxies))
    if why is not None:
        raise SafePipError(f"refusing to fetch {url}: {why}")
    opener = urllib.request.build_opener(
        urllib.request.ProxyHandler(proxies),
        urllib.request.HTTPSHandler(context=context),
        _CheckedRedirects(scheme, rules, bool(proxies)),
    )
    request = urllib.request.Request(url)
    if authorization is not None:
        request.add_unredirected_header("Authorization", authorization)
    response: IO[bytes] = opener.open(request, timeout=timeout)
    return response
