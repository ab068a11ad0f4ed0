"""Which network destinations an install may reach: the hosts of its indexes.

The build sandbox's network allowlist is derived from the index URLs, never written
by hand: ``https://pypi.org/simple`` allows ``pypi.org:443`` (plus
``files.pythonhosted.org:443``, where PyPI serves the files), and a local
``http://127.0.0.1:8080/simple/`` allows exactly the IP literal ``127.0.0.1:8080``,
which is also how the proxy's internal-address rule lets a loopback index through.
"""

from __future__ import annotations

import os
import sys
from urllib.parse import unquote, urlsplit

from safe_pip.errors import SafePipError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from safe_pip.credentials.phantom import ArmedCredential
    from safe_pip.policy.trust import Approval

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


def local_path(url: str) -> str | None:
    """The directory a ``file://`` URL or a plain path names; None for http(s)."""
    if "://" not in url:
        return os.path.abspath(url)
    parts = urlsplit(url)
    if parts.scheme == "file":
        return os.path.abspath(unquote(parts.path))
    return None


def allowed_hosts(index_urls: list[str]) -> list[str]:
    """Allow patterns for every remote index, with PyPI's file host beside pypi.org.

    Local indexes (``file://`` URLs, folders) need no network; they are read grants
    (:func:`local_path`).
    """
    patterns: list[str] = []
    for url in index_urls:
        if local_path(url) is not None:
            continue
        pattern = host_pattern(url)
        patterns.append(pattern)
        if pattern == PYPI_HOSTS[0]:
            patterns.append(PYPI_HOSTS[1])
    return list(dict.fromkeys(patterns))


DEFAULT_INDEX = "https://pypi.org/simple"
_DEFAULT_VARIABLES = ("UV_DEFAULT_INDEX", "UV_INDEX_URL", "PIP_INDEX_URL")
_EXTRA_VARIABLES = ("UV_INDEX", "UV_EXTRA_INDEX_URL", "PIP_EXTRA_INDEX_URL")


def _strip_name(entry: str) -> str:
    """``name=https://...`` (uv's named-index syntax) -> the URL, with the index's
    ``UV_INDEX_<NAME>_*`` credentials in it."""
    name, equals, rest = entry.partition("=")
    if equals and "://" not in name and "/" not in name:
        return with_env_credentials(name, rest)
    return entry


def with_env_credentials(name: str, url: str) -> str:
    """``url`` with ``UV_INDEX_<NAME>_USERNAME``/``_PASSWORD`` folded in, as uv does
    for a named index (the name upper-cased, non-alphanumerics as ``_``)."""
    key = "".join(c if c.isalnum() else "_" for c in name.upper())
    user = os.environ.get(f"UV_INDEX_{key}_USERNAME")
    password = os.environ.get(f"UV_INDEX_{key}_PASSWORD")
    if user is None and password is None:
        return url
    from urllib.parse import quote, urlunsplit

    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    userinfo = quote(user or "", safe="") + (f":{quote(password, safe='')}" if password else "")
    return urlunsplit(parts._replace(netloc=f"{userinfo}@{host}"))


def _load_toml(path: str) -> dict[str, object] | None:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - exercised on 3.10 only
        import tomli as tomllib

    from safe_pip.bounded import read_regular_file

    try:
        data = tomllib.loads(read_regular_file(path).decode("utf-8"))
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError):
        return None
    return data


def _project_config(project_dir: str | None) -> tuple[str, dict[str, object]] | None:
    """The project's own uv settings: its ``uv.toml``, else its ``[tool.uv]``, with
    the file they come from; None when it has neither (uv's order)."""
    if project_dir is None:
        return None
    uv_toml = os.path.join(project_dir, "uv.toml")
    if os.path.isfile(uv_toml):
        data = _load_toml(uv_toml)
        return None if data is None else (uv_toml, data)
    pyproject = os.path.join(project_dir, "pyproject.toml")
    data = _load_toml(pyproject)
    tool = data.get("tool") if data is not None else None
    table = tool.get("uv") if isinstance(tool, dict) else None
    return (pyproject, table) if isinstance(table, dict) else None


def _config_tables(project_dir: str | None) -> list[dict[str, object]]:
    """uv's settings tables, most specific first: the project's ``uv.toml`` (else its
    ``[tool.uv]``), the user's and the system's ``uv.toml``; each table's ``[pip]``
    section is listed before it, since ``uv pip`` reads that first."""
    config_home = os.environ.get("XDG_CONFIG_HOME") or os.path.expanduser("~/.config")
    found: list[dict[str, object]] = []
    project = _project_config(project_dir)
    if project is not None:
        found.append(project[1])
    for path in (os.path.join(config_home, "uv", "uv.toml"), "/etc/uv/uv.toml"):
        data = _load_toml(path)
        if data is not None:
            found.append(data)
    tables: list[dict[str, object]] = []
    for data in found:
        pip = data.get("pip")
        if isinstance(pip, dict):
            tables.append(pip)
        tables.append(data)
    return tables


#: The settings of a uv table that decide where packages come from.
_INDEX_KEYS = ("index", "index-url", "extra-index-url", "find-links")


def project_index_approval(
    project_dir: str | None, home: str, variables: Mapping[str, str]
) -> Approval | None:
    """The approval state of the index sources the project's own uv settings name.

    A ``uv.toml`` or ``[tool.uv]`` comes with the project, or from a sandbox that
    could write the project: the indexes it names are used only once approved
    (:mod:`safe_pip.policy.trust`).  None when it names none.  The user's and the
    system's ``uv.toml`` and the environment are the user's own and need nothing.
    """
    project = _project_config(project_dir)
    if project is None:
        return None
    source, table = project
    chosen: dict[str, object] = {}
    urls: list[str] = []
    for section, data in (("", table), ("pip", table.get("pip"))):
        if not isinstance(data, dict):
            continue
        picked = {key: data[key] for key in _INDEX_KEYS if key in data}
        if picked:
            chosen.update({section: picked} if section else picked)
        for key, value in picked.items():
            for item in value if isinstance(value, list) else [value]:
                url = item.get("url") if isinstance(item, dict) else item
                if isinstance(url, str):
                    urls.append(f"{url} ({key})")
    if not chosen:
        return None
    from safe_pip.policy.trust import INSTALL, ApprovalStore, canonical_lines

    canonical = "\n".join(canonical_lines(chosen)) + "\n"
    grants = [f"package sources: {', '.join(urls) or '(unreadable entries)'}"]
    return ApprovalStore(home, variables).check(INSTALL, source, canonical, grants)


def configured_indexes(
    index_url: str | None,
    extra: Sequence[str],
    find_links: Sequence[str],
    project_dir: str | None,
) -> tuple[tuple[str, ...], tuple[str, ...], tuple[ArmedCredential, ...]]:
    """(index URLs, default first; find-links; their credentials) as uv would use them.

    Passwords in the URLs are replaced by phantoms, and the credentials returned carry
    the real values for the proxy (see :mod:`safe_pip.installer.index_credentials`).

    The command line first, then uv's and pip's environment variables, then uv's
    configuration files, then PyPI.  The result decides which hosts the build
    sandbox may reach, so it must follow uv's own view of "the index".
    """
    default = index_url
    for name in _DEFAULT_VARIABLES:
        default = default or _strip_name(os.environ.get(name, "")) or None
    extras = list(extra)
    for name in _EXTRA_VARIABLES:
        extras += [_strip_name(e) for e in os.environ.get(name, "").split()]
    links = list(find_links) + os.environ.get("UV_FIND_LINKS", "").replace(",", " ").split()
    for table in _config_tables(project_dir):
        for entry in _list(table.get("index")):
            if isinstance(entry, dict) and isinstance(entry.get("url"), str):
                url = entry["url"]
                if isinstance(entry.get("name"), str):
                    url = with_env_credentials(entry["name"], url)
                if entry.get("default") is True:
                    default = default or url
                else:
                    extras.append(url)
        configured = table.get("index-url")
        if isinstance(configured, str):
            default = default or configured
        extras += [e for e in _list(table.get("extra-index-url")) if isinstance(e, str)]
        links += [e for e in _list(table.get("find-links")) if isinstance(e, str)]
    from safe_pip.installer.index_credentials import protect_index_urls

    urls, credentials = protect_index_urls(
        tuple(dict.fromkeys([default or DEFAULT_INDEX, *extras]))
    )
    link_urls, link_credentials = protect_index_urls(tuple(dict.fromkeys(links)))
    return urls, link_urls, (*credentials, *link_credentials)


def uv_setting(project_dir: str | None, key: str) -> object:
    """``key`` from uv's configuration as uv would read it (the project's file, then
    the user's and the system's; a ``[pip]`` section before its table); None when
    unset."""
    for table in _config_tables(project_dir):
        if key in table:
            return table[key]
    return None


def uv_trust_environment(project_dir: str | None, env: Mapping[str, str]) -> dict[str, str]:
    """uv's TLS settings from its configuration files, as the variables that say the
    same (what ``env`` lacks of them).

    safe-pip runs uv with ``UV_NO_CONFIG`` (a file in the project must not widen
    what a build may do), so a user's ``system-certs = true`` (or the older
    ``native-tls``) in ``uv.toml`` would be lost and uv would fall back to its
    built-in roots: "UnknownIssuer" behind a company CA that bare uv trusts.  Only
    trust *roots* are taken from a project's own file; ``allow-insecure-host`` (no
    verification at all) only from the user's and the system's.
    """
    out: dict[str, str] = {}
    project = _project_config(project_dir)
    own = [] if project is None else [project[1], project[1].get("pip")]
    users = _config_tables(None)
    for table in [t for t in own if isinstance(t, dict)] + users:
        system_certs = table.get("system-certs", table.get("native-tls"))
        if system_certs is True and "UV_SYSTEM_CERTS" not in out:
            out["UV_SYSTEM_CERTS"] = "true"
        insecure = table.get("allow-insecure-host")
        if any(table is t for t in own):
            continue
        if isinstance(insecure, list) and "UV_INSECURE_HOST" not in out:
            hosts = [h for h in insecure if isinstance(h, str) and h and " " not in h]
            if hosts:
                out["UV_INSECURE_HOST"] = " ".join(hosts)
    if env.get("UV_NATIVE_TLS") or env.get("UV_SYSTEM_CERTS"):
        out.pop("UV_SYSTEM_CERTS", None)
    return {name: value for name, value in out.items() if name not in env}


def _list(value: object) -> list[object]:
    return value if isinstance(value, list) else []
