"""Private-index credentials at install time: uv and build code get only phantoms.

uv runs inside the build sandbox together with the build backends it starts, so
anything uv knows — its argv, its environment — build code can read.  An index
password therefore never reaches the sandbox: the index URL uv gets carries a
phantom password instead (same length, random), and the proxy, which terminates TLS
for the index host with the per-run CA (credentials/tls.py), swaps it for the real
one inside the ``Authorization: Basic`` header on the way out.  The username stays
as it is: it names an account, it does not unlock one.

Passwords come from where uv would take them: the URL itself
(``https://user:pass@host/simple``, from flags, ``UV_*``/``PIP_*`` variables or uv's
config), ``UV_INDEX_<NAME>_USERNAME``/``_PASSWORD`` for named indexes (folded into
the URL by :mod:`safe_pip.installer.indexes`), or the system keyring for a URL that
names only a user (``keyring.get_password(url, user)``, then by host, as uv's
keyring provider asks).
"""

from __future__ import annotations

import base64
from urllib.parse import quote, unquote, urlsplit, urlunsplit

from safe_pip.credentials.phantom import ArmedCredential, make_phantom
from safe_pip.credentials.spec import CredentialSpec
from safe_pip.errors import SafePipError
from safe_pip.installer.indexes import host_pattern

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence


def protect_index_urls(
    urls: Sequence[str],
) -> tuple[tuple[str, ...], tuple[ArmedCredential, ...]]:
    """The URLs with every password replaced by a phantom, and the armed credentials."""
    out: list[str] = []
    armed: dict[str, ArmedCredential] = {}
    for url in urls:
        parts = urlsplit(url)
        if parts.username is None and parts.password is None:
            out.append(url)
            continue
        user = unquote(parts.username or "")
        password = unquote(parts.password or "") or _keyring_password(url, user)
        if not password:
            out.append(url)  # a user name alone: nothing secret to keep from the sandbox
            continue
        host = host_pattern(url)
        if parts.scheme != "https":
            raise SafePipError(
                f"{parts.hostname}: an index password over http:// would travel in clear "
                "text; use https:// for an index that needs credentials"
            )
        credential = armed.get(host + "\0" + password)
        if credential is None:
            spec = CredentialSpec(name=f"index {host}", env="", hosts=(host,), mode="tls")
            credential = ArmedCredential(spec, password, make_phantom(password))
            armed[host + "\0" + password] = credential
        netloc = f"{quote(user, safe='')}:{credential.phantom}@{parts.netloc.rpartition('@')[2]}"
        out.append(urlunsplit(parts._replace(netloc=netloc)))
    return tuple(out), tuple(armed.values())


def basic_auth_for(
    url: str, credentials: Sequence[ArmedCredential], index_urls: Sequence[str]
) -> str | None:
    """The real ``Authorization`` value for a download by the trusted process.

    The sdist fetch (installer/lock.py) runs outside the sandbox and goes straight to
    the index host; it uses the user name of the (phantom-bearing) index URL for that
    host and the real password.
    """
    try:
        host = host_pattern(url)
    except SafePipError:
        return None
    for credential in credentials:
        if host not in credential.spec.hosts:
            continue
        for index in index_urls:
            parts = urlsplit(index)
            if parts.password == credential.phantom and host_pattern(index) == host:
                pair = f"{unquote(parts.username or '')}:{credential.real}"
                return "Basic " + base64.b64encode(pair.encode()).decode("ascii")
    return None


def _keyring_password(url: str, user: str) -> str | None:
    """The keyring's password for ``user`` at ``url`` (then at its host), if any."""
    try:
        import keyring
    except ImportError:
        return None
    host = urlsplit(url).hostname or ""
    bare = urlunsplit(urlsplit(url)._replace(netloc=urlsplit(url).netloc.rpartition("@")[2]))
    for service in (bare, host):
        try:
            password = keyring.get_password(service, user)
        except Exception:  # any backend failure: as if the keyring had nothing
            return None
        if password:
            return str(password)
    return None
