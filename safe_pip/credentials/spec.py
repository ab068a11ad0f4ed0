"""What one credential is: plain data shared by the loader, the sources and the proxy.

A credential names the variable the sandbox sees (holding a random *phantom*), the
hosts the real value may travel to, and where the real value comes from.  The loader
builds these from ``[tool.safe-run.credentials.NAME]`` and the built-in definitions
(:mod:`safe_pip.credentials.builtin`); :mod:`safe_pip.credentials.sources` reads the
real value; the proxy (:mod:`safe_pip.proxy.credentials`) swaps phantom for real value
on requests to the credential's own hosts and refuses it everywhere else.
"""

from __future__ import annotations

from safe_pip._records import record

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Literal

    SourceKind = Literal["env", "dotenv", "keyring"]
    RouteMode = Literal["base-url", "tls"]

#: The keyring service under which ``safe-run secret set NAME`` stores values.
KEYRING_SERVICE = "safe-run"


@record
class CredentialSpec:
    """One credential, fully resolved (paths absolute, hosts normalised).

    * ``env``: the variable the sandbox sees; it holds the phantom, never the value.
    * ``hosts``: ``host:port`` strings (port always present, 443 by default) the real
      value may be sent to.
    * ``source``: ``env`` (the caller's environment), ``dotenv`` (a ``KEY=value``
      file, ``file``) or ``keyring`` (service :data:`KEYRING_SERVICE`, user ``name``).
    * ``key``: the name looked up in the source: the caller's variable, the dotenv
      key; defaults to ``env``.  Unused for ``keyring``.
    * ``base_url`` / ``base_url_env``: the real API root (``https://host[:port]/path``)
      and the SDK's variable that, in ``base-url`` mode, points at the proxy's
      loopback route for it instead.
    * ``mode``: ``base-url`` (the sandbox talks plain HTTP to a loopback route of the
      proxy, which speaks TLS to ``base_url``) or ``tls`` (the proxy terminates TLS
      for ``hosts`` with a per-run CA only the sandbox trusts).
    * ``plain_http``: the value may also go to ``hosts`` over plain HTTP -- only
      allowed for loopback hosts (a local gateway such as LiteLLM), where nothing
      crosses a network.
    """

    name: str
    env: str
    hosts: tuple[str, ...]
    source: SourceKind = "env"
    key: str = ""
    file: str | None = None
    base_url: str | None = None
    base_url_env: str | None = None
    mode: RouteMode = "tls"
    plain_http: bool = False

    @property
    def lookup_name(self) -> str:
        """The name to look up in the source (``key``, else ``env``)."""
        return self.key or self.env
