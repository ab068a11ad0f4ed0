"""Locate the built-in policy profiles (``policies/*.toml``).

The profiles ship inside the wheel at ``safe_pip/policies/`` (pyproject's
``force-include``) and live at the repository top level in a source checkout or an
editable install.  Exactly one directory is used: the first one that exists.  Merging
both would let any distribution that drops a ``policies/`` folder into site-packages
(the parent of an installed ``safe_pip``) add "built-in" profiles of its own, and a
profile can widen the sandbox.

Only ``os`` is used (no globbing, no pathlib walking) because this runs on every
``safe-run``.  For the same reason the profiles are read with :func:`parse_builtin`, a
strict reader for the small subset of TOML they are written in: importing ``tomllib``
costs more than everything else the loader does, and a run outside any project with a
``[tool.safe-run]`` table needs no other TOML.
"""

from __future__ import annotations

import os

from safe_pip.errors import PolicyError

TYPE_CHECKING = False  # avoid importing typing at start-up
if TYPE_CHECKING:
    from collections.abc import Iterator

_SUFFIX = ".toml"
_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-_")

_profile_dir: str | None = None


def _directory() -> str:
    """The profile directory, found once per process."""
    global _profile_dir
    if _profile_dir is None:
        package_dir = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        candidates = (
            os.path.join(package_dir, "policies"),  # installed wheel
            os.path.join(os.path.dirname(package_dir), "policies"),  # source / editable
        )
        # Fall back to the first candidate so error messages name a sensible place.
        _profile_dir = next((c for c in candidates if os.path.isdir(c)), candidates[0])
    return _profile_dir


def is_profile_name(name: str) -> bool:
    """Whether ``name`` is spelled like a built-in profile name.

    Names are plain lower-case words so that a name can never walk out of the
    profile directory (no ``/``, no ``..``) or collide with a file path.
    """
    return bool(name) and name[0] not in "-_" and all(c in _NAME_CHARS for c in name)


def available_profiles() -> list[str]:
    """The names of every built-in profile, sorted."""
    try:
        entries = os.listdir(_directory())
    except OSError:
        return []
    return sorted(
        entry[: -len(_SUFFIX)]
        for entry in entries
        if entry.endswith(_SUFFIX) and is_profile_name(entry[: -len(_SUFFIX)])
    )


def profile_path(name: str) -> str:
    """The file of the built-in profile ``name``.

    Raises :class:`PolicyError` (source ``profile:NAME``, key ``extends``) naming the
    available profiles when there is no such profile; callers that know which file and
    key asked for it re-raise with their own source and key.
    """
    if is_profile_name(name):
        path = os.path.join(_directory(), name + _SUFFIX)
        if os.path.isfile(path):
            return path
    available = ", ".join(available_profiles()) or "none installed"
    raise PolicyError(
        f"profile:{name}", "extends", f"unknown profile {name!r} (available: {available})"
    )


def parse_builtin(text: str) -> dict[str, object] | None:
    """Parse the TOML subset of the built-in profiles, or None for anything else.

    The subset: blank and ``#`` comment lines, ``[table]`` headers, and ``key = VALUE``
    where VALUE is a string without escapes or an array of such strings (on one line,
    or one item a line ending in a comma).  On None the caller parses with tomllib, so
    an unexpected construct costs time, never correctness; the tests check that every
    shipped profile stays inside the subset and parses exactly as tomllib parses it.
    """
    root: dict[str, object] = {}
    table = root
    lines = iter(text.split("\n"))
    for raw in lines:
        line = _clean_line(raw)
        if line is None:
            return None
        if not line or line[0] == "#":
            continue
        if line[0] == "[":
            name = line[1:-1]
            if line[-1] != "]" or not _is_bare_key(name) or name in root:
                return None
            table = root[name] = {}
            continue
        key, equals, value = line.partition(" = ")
        if not equals or not _is_bare_key(key) or key in table:
            return None
        parsed: str | list[str] | None
        if value == "[":
            parsed = _multiline_array(lines)
        elif value[:1] == "[" and value[-1:] == "]":
            parsed = _inline_array(value[1:-1])
        else:
            parsed = _plain_string(value)
        if parsed is None:
            return None
        table[key] = parsed
    return root


def _clean_line(raw: str) -> str | None:
    """A line without its ending and indentation; None if it holds control characters."""
    line = raw[:-1] if raw.endswith("\r") else raw
    return line.strip(" ") if line.isprintable() else None


def _is_bare_key(key: str) -> bool:
    return bool(key) and all(c in _NAME_CHARS for c in key)


def _plain_string(token: str) -> str | None:
    """The body of ``"..."`` when it needs no unescaping, else None."""
    if len(token) < 2 or token[0] != '"' or token[-1] != '"':
        return None
    body = token[1:-1]
    return None if '"' in body or "\\" in body else body


def _inline_array(inner: str) -> list[str] | None:
    # Strings hold no quotes, so splitting on '"' alternates separators and items.
    parts = inner.split('"')
    if len(parts) % 2 == 0 or parts[0].strip(" ") or parts[-1].strip(" ") not in ("", ","):
        return None
    if any(separator.strip(" ") != "," for separator in parts[2:-1:2]):
        return None
    return parts[1::2] if all("\\" not in item for item in parts[1::2]) else None


def _multiline_array(lines: Iterator[str]) -> list[str] | None:
    items: list[str] = []
    for raw in lines:
        line = _clean_line(raw)
        if line is None:
            return None
        if not line or line[0] == "#":
            continue
        if line == "]":
            return items
        item = _plain_string(line[:-1]) if line[-1] == "," else None
        if item is None:
            return None
        items.append(item)
    return None  # no closing bracket
