"""safe-pip's own settings: the extra hosts a build may reach, written down once.

A build that downloads something at build time (a C library's tarball, a git
dependency's host) or a private mirror that is not an index needs more hosts than
the indexes.  ``--allow-host`` says so for one command; these say it for every one:

* the user's ``$XDG_CONFIG_HOME/safe-pip/config.toml`` (``~/.config/...``)::

      allow-hosts = ["artifacts.corp.example", "10.20.0.5:8443"]

  the user's own file, used as it is (every sandbox keeps ``~/.config/safe-pip``
  read-only: base profile's ``protect`` list);
* the project's ``pyproject.toml``::

      [tool.safe-pip]
      allow-hosts = ["downloads.example.org"]

  which comes with the project, so like its index settings it is used only once
  approved (``safe-run allow``; :mod:`safe_pip.policy.trust`).

Patterns are the policy's ``host[:port]`` patterns (docs/network.md); a bad one is
an exit-125 error naming the file.
"""

from __future__ import annotations

import os

from safe_pip.errors import PolicyError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping

    from safe_pip.policy.trust import Approval

__all__ = [
    "PROJECT_KIND",
    "default_exclude_newer",
    "project_hosts",
    "user_config_path",
    "user_hosts",
]

#: The approval kind of a project's ``[tool.safe-pip]`` (policy/trust.py).
PROJECT_KIND = "install-hosts"
_KEY = "allow-hosts"


def user_config_path(env: Mapping[str, str], home: str) -> str:
    """Where the user's safe-pip settings live."""
    config_home = env.get("XDG_CONFIG_HOME") or os.path.join(home, ".config")
    return os.path.join(config_home, "safe-pip", "config.toml")


def user_hosts(env: Mapping[str, str], home: str) -> list[str]:
    """``allow-hosts`` of the user's config file (none when there is no file)."""
    path = user_config_path(env, home)
    data = _load(path)
    return [] if data is None else _patterns(data.get(_KEY), path, _KEY)


def project_hosts(
    project_dir: str | None, home: str, env: Mapping[str, str]
) -> tuple[list[str], Approval | None]:
    """``[tool.safe-pip] allow-hosts`` of the project, and its approval state (None
    when the project sets none).  The hosts count only once approved."""
    if project_dir is None:
        return [], None
    path = os.path.join(project_dir, "pyproject.toml")
    data = _load(path)
    tool = data.get("tool") if data is not None else None
    table = tool.get("safe-pip") if isinstance(tool, dict) else None
    if not isinstance(table, dict) or _KEY not in table:
        return [], None
    hosts = _patterns(table[_KEY], path, f"tool.safe-pip.{_KEY}")
    if not hosts:
        return [], None
    from safe_pip.policy.trust import ApprovalStore, canonical_lines

    canonical = "\n".join(canonical_lines({_KEY: hosts})) + "\n"
    grants = [f"network hosts for builds: {', '.join(hosts)}"]
    approval = ApprovalStore(home, env).check(PROJECT_KIND, path, canonical, grants)
    return hosts, approval


def default_exclude_newer(project_dir: str | None, env: Mapping[str, str]) -> str | None:
    """The cooldown every install uses unless ``--exclude-newer`` says otherwise:
    ``exclude-newer`` of the project's ``[tool.safe-pip]``, else of the user's
    config.toml, else of uv's own configuration (uv runs with ``UV_NO_CONFIG``, so
    safe-pip reads it).  It only narrows what may be installed, so a project's value
    needs no approval."""
    home = env.get("HOME") or os.path.expanduser("~")
    candidates: list[tuple[str, dict[str, object] | None]] = []
    if project_dir is not None:
        path = os.path.join(project_dir, "pyproject.toml")
        data = _load(path)
        tool = data.get("tool") if data is not None else None
        table = tool.get("safe-pip") if isinstance(tool, dict) else None
        candidates.append((path, table if isinstance(table, dict) else None))
    path = user_config_path(env, home)
    candidates.append((path, _load(path)))
    for source, table in candidates:
        value = None if table is None else table.get("exclude-newer")
        if value is None:
            continue
        if not isinstance(value, str) or not value.strip():
            raise PolicyError(source, "exclude-newer", "must be a date or a duration string")
        return value
    from safe_pip.installer.indexes import uv_setting

    found = uv_setting(project_dir, "exclude-newer")
    return found if isinstance(found, str) else None


def _patterns(value: object, source: str, key: str) -> list[str]:
    from safe_pip.policy.loader import _host_pattern

    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise PolicyError(source, key, "must be a list of host[:port] strings")
    return [_host_pattern(pattern, source, key) for pattern in value]


def _load(path: str) -> dict[str, object] | None:
    """The TOML file at ``path``; None when it does not exist; PolicyError if broken."""
    import sys

    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - exercised on 3.10 only
        import tomli as tomllib
    from safe_pip.bounded import UnreadableInput, read_regular_file

    try:
        return tomllib.loads(read_regular_file(path).decode("utf-8"))
    except FileNotFoundError:
        return None
    except UnreadableInput as exc:
        raise PolicyError(path, "", str(exc)) from None
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise PolicyError(path, "", f"cannot be read: {exc}") from None
