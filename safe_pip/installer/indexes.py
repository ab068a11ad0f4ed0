"""Which network destinations an install may reach: the hosts of its indexes.

The build sandbox's network allowlist is derived from the index URLs, never written
by hand: ``https://pypi.org/simple`` allows ``pypi.org:443`` (plus
``files.pythonhosted.org:443``, where PyPI serves the files), and a local
``http://127.0.0.1:8080/simple/`` allows exactly the IP literal ``127.0.0.1:8080``,
which is also how the proxy's internal-address rule lets a loopback index through.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from safe_pip.errors import SafePipError

PYPI_HOSTS = ("pypi.org:443", "files.pythonhosted.org:443")
_DEFAULT_PORTS = {"http": 80, "https": 443}


def host_pattern(url: str) -> str:
    """The ``host:port`` allow pattern for an index (or find-links) URL."""
    parts = urlsplit(url)
    if parts.scheme not in _DEFAULT_PORTS or not parts.hostname:
        raise SafePipError(f"{url}: an index URL must be http:// or https:// with a host")
    try:
        port = parts.port or _DEFAULT_PORTS[parts.scheme]
    except ValueError:
        raise SafePipError(f"{url}: the port is not a number from 1 to 65535") from None
    host = parts.hostname
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def allowed_hosts(index_urls: list[str]) -> list[str]:
    """Allow patterns for every index, with PyPI's file host beside pypi.org."""
    patterns: list[str] = []
    for url in index_urls:
        pattern = host_pattern(url)
        patterns.append(pattern)
        if pattern == PYPI_HOSTS[0]:
            patterns.append(PYPI_HOSTS[1])
    return list(dict.fromkeys(patterns))
