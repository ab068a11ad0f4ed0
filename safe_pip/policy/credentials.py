"""``credentials`` in a policy layer: validation, merging and the final definitions.

Two spellings, because TOML cannot give one key both forms:

* ``credentials = ["openai", "github"]``: built-in definitions, unchanged;
* ``[tool.safe-run.credentials.NAME]`` tables: a new credential, or single keys of a
  built-in one overridden (``[tool.safe-run.credentials.openai] source = "keyring"``).

Layers merge key by key per name, later layers winning, like ``env.set``.  Only once
every layer is in are the definitions completed and checked as a whole
(:func:`resolve_credentials`), because a key missing in one layer may come from
another.  Kept out of :mod:`safe_pip.policy.loader`, which only calls in here when a
layer mentions credentials.
"""

from __future__ import annotations

from safe_pip.credentials.builtin import BUILTIN_CREDENTIALS
from safe_pip.credentials.spec import CredentialSpec
from safe_pip.errors import PolicyError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    #: Expands one path as the loader does: (raw, key) -> absolute path.
    PathExpander = Callable[[str, str], str]

#: Keys of one ``[tool.safe-run.credentials.NAME]`` table.
CREDENTIAL_KEYS: tuple[str, ...] = (
    "env",
    "hosts",
    "source",
    "key",
    "file",
    "base-url",
    "base-url-env",
    "mode",
    "plain-http",
)
SOURCES = ("env", "dotenv", "keyring")
MODES = ("base-url", "tls")
#: Where ``source = "dotenv"`` reads when ``file`` is not given (beside the pyproject).
DEFAULT_DOTENV = ".env"
#: Where a merged definition was last written: (file, key prefix), for error messages.
WHERE = "\0where"
_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-")


def parse_credentials(
    value: object,
    *,
    source: str,
    key: str,
    expand: PathExpander,
    check_env_name: Callable[[str, str, str], str],
    check_host: Callable[[str, str, str], str],
) -> dict[str, dict[str, object]]:
    """One layer's ``credentials`` value as ``{name: {key: checked value}}``.

    ``expand`` anchors ``file`` at the declaring file's directory (and records
    where it came from: ``file`` must be known before the defaults apply);
    ``check_env_name`` and ``check_host`` are the loader's own checks, so a
    credential's host or variable is spelled exactly as elsewhere in a policy.
    """
    if isinstance(value, list):
        tables: dict[str, object] = {}
        for index, name in enumerate(value):
            if not isinstance(name, str):
                raise PolicyError(source, f"{key}[{index}]", "must be a string")
            if name not in BUILTIN_CREDENTIALS:
                raise PolicyError(
                    source,
                    f"{key}[{index}]",
                    f"{name!r} is not a built-in credential (built-in: "
                    f"{', '.join(BUILTIN_CREDENTIALS)}); define it in a "
                    f"[{key}.{name}] table instead",
                )
            tables[name] = {}
    elif isinstance(value, dict):
        tables = value
    else:
        raise PolicyError(
            source, key, "must be an array of built-in names or a table of credential tables"
        )
    parsed: dict[str, dict[str, object]] = {}
    for name, table in tables.items():
        item_key = f"{key}.{name}"
        if not name or not _NAME_CHARS.issuperset(name) or len(name) > 64:
            raise PolicyError(source, item_key, "a credential name is 1-64 of [A-Za-z0-9_.-]")
        if not isinstance(table, dict):
            raise PolicyError(source, item_key, "must be a table")
        parsed[name] = _parse_table(table, source, item_key, expand, check_env_name, check_host)
        parsed[name][WHERE] = (source, item_key)
    return parsed


def _parse_table(
    table: dict[str, object],
    source: str,
    prefix: str,
    expand: PathExpander,
    check_env_name: Callable[[str, str, str], str],
    check_host: Callable[[str, str, str], str],
) -> dict[str, object]:
    out: dict[str, object] = {}
    for name, value in table.items():
        key = f"{prefix}.{name}"
        if name not in CREDENTIAL_KEYS:
            raise PolicyError(
                source, key, f"unknown key (expected one of: {', '.join(CREDENTIAL_KEYS)})"
            )
        if name == "plain-http":
            if not isinstance(value, bool):
                raise PolicyError(source, key, "must be true or false")
            out[name] = value
            continue
        if name == "hosts":
            if not isinstance(value, list) or not value:
                raise PolicyError(source, key, "must be a non-empty array of host[:port]")
            out[name] = tuple(
                _credential_host(item, source, f"{key}[{index}]", check_host)
                for index, item in enumerate(value)
            )
            continue
        if not isinstance(value, str) or not value:
            raise PolicyError(source, key, "must be a non-empty string")
        if name in ("env", "base-url-env"):
            out[name] = check_env_name(value, source, key)
        elif name == "source" and value not in SOURCES:
            raise PolicyError(source, key, f"must be one of {', '.join(SOURCES)}")
        elif name == "mode" and value not in MODES:
            raise PolicyError(source, key, f"must be one of {', '.join(MODES)}")
        elif name == "file":
            out[name] = expand(value, key)
        elif name == "base-url":
            out[name] = _base_url(value, source, key)
        else:
            out[name] = value
    return out


def _credential_host(
    item: object, source: str, key: str, check_host: Callable[[str, str, str], str]
) -> str:
    """``host[:port]`` → ``host:port`` (443 by default); no wildcards for a secret."""
    if not isinstance(item, str):
        raise PolicyError(source, key, "must be a string")
    pattern = check_host(item, source, key)
    if "*" in pattern:
        raise PolicyError(source, key, "a credential's hosts are exact names, without '*'")
    from safe_pip.proxy.addresses import join_host_port
    from safe_pip.proxy.rules import HostRule

    rule = HostRule.parse(pattern)
    port = 443 if len(rule.ports) != 1 else rule.ports[0]
    return join_host_port(rule.host, port)


def _base_url(value: str, source: str, key: str) -> str:
    """An ``https://`` URL without credentials, query or fragment; trailing ``/`` cut."""
    scheme, sep, rest = value.partition("://")
    if not sep or scheme.lower() != "https":
        raise PolicyError(
            source, key, "must be an https:// URL (the real value never goes out in clear)"
        )
    if any(c in rest for c in "@?#") or not rest or rest.startswith("/"):
        raise PolicyError(
            source, key, "must be https://host[:port][/path], without user, query or fragment"
        )
    return "https://" + rest.rstrip("/")


def base_url_authority(base_url: str) -> str:
    """``host:port`` of a checked base URL (443 when it names none)."""
    from safe_pip.proxy.addresses import join_host_port
    from safe_pip.proxy.rules import HostRule

    authority = base_url.removeprefix("https://").partition("/")[0]
    rule = HostRule.parse(authority.lower())
    return join_host_port(rule.host, 443 if len(rule.ports) != 1 else rule.ports[0])


def resolve_credentials(
    merged: dict[str, dict[str, object]], *, project_dir: str
) -> tuple[CredentialSpec, ...]:
    """Complete every merged definition (built-in keys under the user's) and check it."""
    specs: list[CredentialSpec] = []
    for name, keys in merged.items():
        where = keys.get(WHERE, ("built-in credentials", name))
        builtin = BUILTIN_CREDENTIALS.get(name, {})
        table = {**_builtin_checked(builtin), **keys}
        env = table.get("env")
        hosts = table.get("hosts")
        if not isinstance(env, str):
            raise _blame(where, "env", "is required: the variable the sandbox sees")
        if not isinstance(hosts, tuple):
            raise _blame(where, "hosts", "is required: where the real value may go")
        base_url = table.get("base-url")
        base_env = table.get("base-url-env")
        if (base_url is None) != (base_env is None):
            raise _blame(where, "base-url", "base-url and base-url-env go together")
        if isinstance(base_url, str) and base_url_authority(base_url) not in hosts:
            raise _blame(where, "base-url", "must name one of the credential's hosts")
        mode = table.get("mode", "base-url" if base_url else "tls")
        if mode == "base-url" and not base_url:
            raise _blame(where, "mode", '"base-url" needs base-url and base-url-env')
        plain_http = table.get("plain-http", False) is True
        if plain_http:
            far = [host for host in hosts if not is_loopback_authority(host)]
            if far:
                raise _blame(
                    where,
                    "plain-http",
                    f"is only for loopback hosts ({', '.join(far)} is not one): anywhere "
                    "else the value would cross the network in clear text",
                )
        kind = table.get("source", "env")
        file = table.get("file")
        if file is not None and kind != "dotenv":
            raise _blame(where, "file", 'is only used with source = "dotenv"')
        if kind == "dotenv" and file is None:
            import os

            file = os.path.join(project_dir, DEFAULT_DOTENV)
        specs.append(
            CredentialSpec(
                name=name,
                env=env,
                hosts=hosts,
                source=kind,  # type: ignore[arg-type]  # checked against SOURCES
                key=str(table.get("key", "")),
                file=file if isinstance(file, str) else None,
                base_url=base_url if isinstance(base_url, str) else None,
                base_url_env=base_env if isinstance(base_env, str) else None,
                mode=mode,  # type: ignore[arg-type]  # checked against MODES
                plain_http=plain_http,
            )
        )
    return tuple(specs)


def is_loopback_authority(authority: str) -> bool:
    """Whether ``host:port`` names this machine: ``localhost`` or a loopback address."""
    from safe_pip.proxy.addresses import canonical_ip, is_loopback

    host = authority.rpartition(":")[0].strip("[]").lower()
    if host == "localhost":
        return True
    address = canonical_ip(host)
    return address is not None and is_loopback(address)


def _blame(where: object, key: str, problem: str) -> PolicyError:
    """The error for ``key`` of the definition last written at ``where``."""
    source, prefix = where if isinstance(where, tuple) else ("credentials", "?")
    return PolicyError(str(source), f"{prefix}.{key}", problem)


def _builtin_checked(builtin: dict[str, object]) -> dict[str, object]:
    """A built-in table in the parsed form (hosts as ``host:port`` tuples)."""
    out = dict(builtin)
    hosts = builtin.get("hosts")
    if isinstance(hosts, list):
        out["hosts"] = tuple(f"{host}:443" for host in hosts)
    return out
