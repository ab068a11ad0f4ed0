"""The user's own proxy (``HTTPS_PROXY`` ...): the way out the sandbox's proxy takes.

Behind a company proxy the machine often cannot reach, or even resolve, an outside
name directly: every client is expected to ask the proxy.  The sandbox's proxy is
such a client.  It still decides every destination itself (the allow list, and the
internal-address rule wherever the name resolves here); what changes is only how an
allowed connection is made: ``CONNECT host:port`` to the user's proxy instead of a
TCP connection of our own.

Where it comes from: the caller's ``https_proxy``/``HTTPS_PROXY``, else
``all_proxy``/``ALL_PROXY``, else ``http_proxy``/``HTTP_PROXY`` (lower case first,
as curl reads them), and ``no_proxy``/``NO_PROXY``.  Only ``http://`` proxies are
used (the common kind); a ``socks5://`` or ``https://`` one is not, and the run says
so once.  The user name and password of the proxy URL become a
``Proxy-Authorization`` header here, in the supervisor: the sandbox's own proxy
variables point at the sandbox's proxy, so they never reach it.

Every destination goes through ``CONNECT``, plain HTTP on port 80 included (the
request then travels inside the tunnel).  A proxy that allows ``CONNECT`` only to
port 443 (Squid's default) refuses plain-HTTP destinations; docs/network.md says so.
"""

from __future__ import annotations

import base64
import socket
from urllib.parse import unquote, urlsplit

from safe_pip._records import record
from safe_pip.proxy.addresses import canonical_ip, join_host_port

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ["UpstreamProxy", "UpstreamRefused"]

_PROXY_VARIABLES = (
    "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY", "http_proxy", "HTTP_PROXY",
)  # fmt: skip
_MAX_HEAD = 64 * 1024


class UpstreamRefused(OSError):
    """The user's proxy would not open the tunnel (its status line says why)."""


@record
class UpstreamProxy:
    """An ``http://`` proxy to send allowed connections through."""

    host: str
    port: int
    authorization: str | None  # the Proxy-Authorization value, from the URL's user:password
    no_proxy: tuple[str, ...]
    url: str  # as configured, with ``http://`` added where it was left out

    @classmethod
    def from_environment(cls, env: Mapping[str, str]) -> UpstreamProxy | str | None:
        """The caller's proxy; None without one; a sentence when it cannot be used."""
        name = next((n for n in _PROXY_VARIABLES if env.get(n)), None)
        if name is None:
            return None
        url = env[name]
        url = url if "://" in url else f"http://{url}"
        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.hostname:
            scheme = parts.scheme or "?"
            return f"{name} is a {scheme}:// proxy; only http:// proxies are used"
        try:
            port = parts.port or 80
        except ValueError:
            return f"{name} has a port that is not a number from 1 to 65535"
        authorization = None
        if parts.username is not None:
            pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
            authorization = "Basic " + base64.b64encode(pair.encode()).decode("ascii")
        raw = env.get("no_proxy") or env.get("NO_PROXY") or ""
        entries = tuple(e.strip().lower() for e in raw.split(",") if e.strip())
        return cls(parts.hostname, port, authorization, entries, url)

    def bypasses(self, host: str) -> bool:
        """Whether ``NO_PROXY`` sends ``host`` direct: ``*``, the name itself, a
        domain suffix (``example.com``, ``.example.com``, ``*.example.com``), or
        an IP literal or a CIDR range that holds it."""
        name = host.lower().rstrip(".").strip("[]")
        address = canonical_ip(name)
        for entry in self.no_proxy:
            if entry == "*":
                return True
            if "/" in entry and address is not None:
                if _in_network(address, entry):
                    return True
                continue
            bare = entry.removeprefix("*").removeprefix(".")
            if ":" in bare and canonical_ip(bare.strip("[]")) is None:
                bare = bare.rpartition(":")[0]  # "host:port": the port is not compared
            if address is not None:
                if canonical_ip(bare.strip("[]")) == address:
                    return True
            elif name == bare or name.endswith("." + bare):
                return True
        return False

    def open_tunnel(self, host: str, port: int, timeout: float) -> socket.socket:
        """A socket that ``CONNECT host:port`` through this proxy has turned into a
        tunnel; raises OSError (:class:`UpstreamRefused` for a non-2xx answer)."""
        sock = socket.create_connection((self.host, self.port), timeout=timeout)
        try:
            authority = join_host_port(host, port)
            head = f"CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n"
            if self.authorization is not None:
                head += f"Proxy-Authorization: {self.authorization}\r\n"
            sock.sendall((head + "\r\n").encode("ascii"))
            status = _read_head(sock).split(b"\r\n", 1)[0]
            words = status.split(b" ", 2)
            if len(words) < 2 or not words[1].startswith(b"2"):
                text = status.decode("latin-1")[:120]
                shown = "".join(c if " " <= c <= "~" else "?" for c in text)
                raise UpstreamRefused(f"your proxy {self.where} answered {shown!r}")
        except BaseException:
            sock.close()
            raise
        sock.settimeout(None)
        return sock

    @property
    def where(self) -> str:
        """``host:port`` of the proxy, for messages (never its credentials)."""
        return join_host_port(self.host, self.port)


def _read_head(sock: socket.socket) -> bytes:
    """The response head, up to the blank line; nothing after it is read (a tunnel's
    first bytes belong to the client)."""
    data = b""
    while not data.endswith(b"\r\n\r\n"):
        if len(data) >= _MAX_HEAD:
            raise UpstreamRefused("the proxy's answer to CONNECT has no end")
        byte = sock.recv(1)
        if not byte:
            raise UpstreamRefused("the proxy closed the connection during CONNECT")
        data += byte
    return data


def _in_network(address: str, cidr: str) -> bool:
    import ipaddress

    try:
        return ipaddress.ip_address(address) in ipaddress.ip_network(cidr, strict=False)
    except ValueError:
        return False
