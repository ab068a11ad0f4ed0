"""A cache of parsed ``[tool.safe-run]`` tables, so that repeated runs skip TOML parsing.

Parsing a pyproject needs ``tomllib``, which brings ``re`` and ``typing`` along: about
10 ms of ``safe-run``'s start.  This module keeps, per pyproject, the value of its
``tool.safe-run`` key (the table, or None when there is none) as ``marshal`` data.  It
caches *parsing only*: the loader validates and merges the table on every run exactly
as it does after parsing, so a cached table and a parsed one give the same Policy.

An entry is used only when every check passes; anything else is a miss, the pyproject
is parsed as usual and the entry is rewritten.  A cache problem never fails a run.

* The header names the entry format, the interpreter (``cache_tag``, ``hexversion``)
  and the ``marshal`` version, and a BLAKE2b digest of the payload is checked before
  ``marshal.loads`` sees it: a truncated or foreign file is never unmarshalled.
* The payload repeats the pyproject's absolute path, its ``(st_dev, st_ino, st_size,
  st_mtime_ns, st_ctime_ns)`` (re-checked with ``stat`` on every load: ctime changes on
  every write and user space cannot set it), and a digest of the bytes that were
  parsed, compared with the bytes the loader has just read.  The content digest makes
  a hit exact: no timestamp granularity or racing writer can make a stale entry match.
* The value must be plain TOML data (``dict`` with ``str`` keys, ``list``, ``str``,
  ``int``, ``float``, ``bool``; exact types), or it is rejected.  Tables holding dates
  are never stored (``marshal`` cannot represent them; such a table fails validation
  anyway).
* Files and directories are created, checked and read by the rules of
  :mod:`safe_pip.policy.owned` (ours, not symlinks, writable by nobody else; atomic
  writes), which the approvals of policies share.

Location: ``$XDG_CACHE_HOME/safe-pip/policy/`` (``~/.cache/...`` when XDG_CACHE_HOME is
unset or not absolute), one file per pyproject named by a hash of its absolute path.
``SAFE_PIP_NO_CACHE=1`` stops reading and writing entries.

The sandbox must never reach this directory: an entry written from inside would widen
the policy of the next run.  :class:`PolicyCache` therefore makes sure the directory
exists *before* the sandbox is built (a deny path that does not exist cannot be
enforced, and the sandbox could create it), even when entries are disabled, and lists
the cache roots in :attr:`PolicyCache.roots`; the loader denies ``ROOT/policy`` and
protects ``ROOT``.  Protection matters: in namespace mode a deny overlay alone can be
carried away by renaming an ancestor (``mv ~/.cache x; mkdir -p ~/.cache/...``), while
a protected path's ancestors are pinned as mount points.

Only builtin modules are imported (``marshal``; ``_blake2`` rather than ``hashlib``,
which loads OpenSSL, several milliseconds).
"""

from __future__ import annotations

import marshal
import os
import sys

from safe_pip.policy import owned

try:
    from _blake2 import blake2b
except ImportError:  # pragma: no cover - interpreters built without the builtin module
    from hashlib import blake2b

TYPE_CHECKING = False  # avoid importing typing at start-up
if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ["MISS", "NO_CACHE_ENV", "PolicyCache", "cache_root"]

#: Setting this variable to 1/true/yes disables reading and writing cache entries.
NO_CACHE_ENV = "SAFE_PIP_NO_CACHE"
#: What :meth:`PolicyCache.lookup` returns when there is no usable entry (``None`` is a
#: real cached value: "this pyproject has no ``[tool.safe-run]`` table").
MISS: object = object()

_FORMAT = 1
_HEADER = (
    f"safe-pip policy cache {_FORMAT} {sys.implementation.cache_tag} "
    f"{sys.hexversion:x} marshal {marshal.version}\n"
).encode()
_DIGEST_SIZE = 32
_MAX_ENTRY = 1 << 20  # a [tool.safe-run] table is a few hundred bytes
_MAX_DEPTH = 32
_SUBDIR = "policy"


def cache_root(home: str, variables: Mapping[str, str]) -> str | None:
    """``$XDG_CACHE_HOME/safe-pip``, or ``HOME/.cache/safe-pip``; None without either.

    A relative ``XDG_CACHE_HOME`` is ignored, as the XDG base directory spec says.
    """
    return owned.xdg_root(home, variables, "XDG_CACHE_HOME", ".cache")


def _digest(data: bytes) -> bytes:
    return blake2b(data, digest_size=_DIGEST_SIZE).digest()


def _plain(value: object, depth: int) -> bool:
    """Whether ``value`` is TOML data of exactly the types tomllib returns (no dates)."""
    kind = type(value)
    if kind is str or kind is int or kind is float or kind is bool:
        return True
    if depth >= _MAX_DEPTH:
        return False
    if type(value) is list:
        return all(_plain(item, depth + 1) for item in value)
    if type(value) is dict:
        return all(type(name) is str and _plain(item, depth + 1) for name, item in value.items())
    return False


def _stat_key(path: str) -> tuple[int, int, int, int, int]:
    st = os.stat(path)
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


class PolicyCache:
    """The cache for one run: set up (directories created) when constructed.

    ``home`` is the caller's real home (the one ``~`` expands to); ``variables`` is the
    caller's environment (``XDG_CACHE_HOME``, ``SAFE_PIP_NO_CACHE``).
    """

    __slots__ = ("_euid", "_readable", "directory", "roots")

    def __init__(self, home: str, variables: Mapping[str, str]) -> None:
        #: Existing cache roots, which the sandbox must neither read nor write: the
        #: loader denies ``ROOT/policy`` and protects ``ROOT`` for each.
        self.roots: list[str] = []
        #: Where entries are read and written; None when the cache is off or unsafe.
        self.directory: str | None = None
        self._readable = False
        self._euid = os.geteuid()
        root = cache_root(home, variables)
        if root is None:
            return
        entries = root + "/" + _SUBDIR
        usable = owned.prepare(root, entries, self._euid)
        for candidate in (root, cache_root(home, {})):
            # The default location too, when XDG_CACHE_HOME points elsewhere: a run
            # without XDG_CACHE_HOME would trust entries planted there.
            if candidate and candidate not in self.roots and os.path.lexists(candidate):
                self.roots.append(candidate)
        disabled = variables.get(NO_CACHE_ENV, "").strip().lower() in ("1", "true", "yes")
        if usable is not None and not disabled:
            self.directory = entries
            self._readable = usable

    def _entry(self, path: str) -> str:
        assert self.directory is not None
        name = blake2b(os.fsencode(path), digest_size=16).hexdigest()
        return self.directory + "/" + name

    def lookup(self, path: str, data: bytes) -> object:
        """The cached ``tool.safe-run`` value of the pyproject at ``path`` (a dict, or
        None for "no table"), or :data:`MISS`.  ``data`` is the file's content, as the
        loader just read it: the entry must have been made from exactly these bytes.
        """
        if self.directory is None or not self._readable:
            return MISS
        try:
            return self._lookup(path, data)
        except Exception:  # a cache problem must never fail a run
            return MISS

    def _lookup(self, path: str, data: bytes) -> object:
        blob = owned.read_owned(self._entry(path), self._euid, _MAX_ENTRY)
        if blob is None:
            return MISS
        start = len(_HEADER) + _DIGEST_SIZE
        if not blob.startswith(_HEADER):
            return MISS
        payload = blob[start:]
        if _digest(payload) != blob[len(_HEADER) : start]:
            return MISS
        entry = marshal.loads(payload)
        if type(entry) is not tuple or len(entry) != 4:
            return MISS
        stored_path, stored_key, content, value = entry
        if (
            stored_path != path
            or stored_key != _stat_key(path)
            or content != _digest(data)
            or not (value is None or (type(value) is dict and _plain(value, 0)))
        ):
            return MISS
        return value

    def store(self, path: str, data: bytes, value: dict[str, object] | None) -> None:
        """Remember that the pyproject ``path`` with content ``data`` parses to ``value``."""
        if self.directory is None or not (value is None or _plain(value, 0)):
            return
        try:
            self._store(path, data, value)
        except Exception:  # a cache problem must never fail a run
            pass

    def _store(self, path: str, data: bytes, value: dict[str, object] | None) -> None:
        payload = marshal.dumps((path, _stat_key(path), _digest(data), value))
        blob = _HEADER + _digest(payload) + payload
        if len(blob) > _MAX_ENTRY:
            return
        owned.write_atomically(self._entry(path), blob)
