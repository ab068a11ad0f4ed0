"""Policy trust: configuration from a project takes effect only once the user approved it.

A cloned repository's ``[tool.safe-run]`` table was written by whoever committed it,
and a file the sandbox itself wrote (``scripts/pyproject.toml`` with ``write =
["~"]``, a ``uv.toml`` naming another index) is no better.  So, as direnv does for
``.envrc``, safe-run obeys such a file only after the user has approved *that exact
content*:

* **What needs approval**: a ``[tool.safe-run]`` table that grants more than the safe
  default (reads, writes, hosts, environment variables or credentials beyond the
  built-in ``base``; a table that only adds deny entries or turns the network off
  does not), and the index sources a project's ``uv.toml``/``[tool.uv]`` gives
  ``safe-pip install``.  Command-line flags and ``--profile`` are the user's own words
  and need nothing.
* **What is approved**: the file's content in a canonical form, one ``key = value``
  line per setting, sorted (so a reformatted table stays approved, any changed value
  does not), plus the digest of every profile file the table extends.  Approval is
  per file: the same table in another clone needs its own ``safe-run allow``.
* **Where**: ``$XDG_STATE_HOME/safe-pip/approved/`` (``~/.local/state/...``), one
  file per approved file, written and read by the rules of :mod:`safe_pip.policy.owned`.
  The loader denies that directory to every sandbox and protects its parent, so code
  in a sandbox can neither read what was approved nor approve anything.

Checking an approved policy costs one small read and a string comparison: well under
a millisecond of ``safe-run``'s start (``bench/startup.py`` measures it).
"""

from __future__ import annotations

import os

from safe_pip._records import record
from safe_pip.policy import owned

try:
    from _blake2 import blake2b
except ImportError:  # pragma: no cover - interpreters built without the builtin module
    from hashlib import blake2b

TYPE_CHECKING = False  # avoid importing typing at start-up
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

__all__ = ["APPROVALS_SUBDIR", "Approval", "ApprovalStore", "canonical_lines", "state_root"]

_FORMAT = "safe-pip approval 1"
#: The directory under the store's root that holds the approvals.
APPROVALS_SUBDIR = "approved"
_MAX_RECORD = 1 << 20

#: ``Approval.kind`` values: a ``[tool.safe-run]`` table, and a project's index sources.
POLICY = "policy"
INSTALL = "install"


@record
class Approval:
    """One file's configuration, as it must be approved, and whether it is.

    ``canonical`` is what an approval records and compares; ``grants`` are one human
    line per kind of grant (``write: ./out, ~/data``) for the refusal, the prompt and
    ``safe-run allow``; ``previous`` is the content approved before, when the file has
    ``state`` "changed" since (``--explain`` shows the difference).
    """

    kind: str
    source: str
    canonical: str
    grants: tuple[str, ...]
    state: str  # "approved", "new" or "changed"
    previous: str | None = None

    @property
    def approved(self) -> bool:
        return self.state == "approved"

    def summary(self) -> str:
        """The grants on one line, for error messages."""
        return "; ".join(self.grants) or "nothing beyond the defaults"

    def changes(self) -> list[str]:
        """``+ line`` / ``- line`` against what was approved before (empty when new)."""
        if self.previous is None:
            return []
        old = self.previous.splitlines()
        new = self.canonical.splitlines()
        gone = [f"- {line}" for line in old if line not in new]
        added = [f"+ {line}" for line in new if line not in old]
        return gone + added


def state_root(home: str, variables: Mapping[str, str]) -> str | None:
    """``$XDG_STATE_HOME/safe-pip``, or ``HOME/.local/state/safe-pip``."""
    return owned.xdg_root(home, variables, "XDG_STATE_HOME", ".local/state")


class ApprovalStore:
    """The approvals of one user: set up (directories created) when constructed.

    ``roots`` lists the store's root directories that exist, which the loader denies
    (``ROOT/approved``) and protects (``ROOT``) for every sandbox, like the policy cache.
    """

    __slots__ = ("_euid", "_readable", "directory", "roots")

    def __init__(self, home: str, variables: Mapping[str, str]) -> None:
        self.roots: list[str] = []
        self.directory: str | None = None
        self._readable = False
        self._euid = os.geteuid()
        root = state_root(home, variables)
        if root is None:
            return
        entries = root + "/" + APPROVALS_SUBDIR
        usable = owned.prepare(root, entries, self._euid, depth=4)
        for candidate in (root, state_root(home, {})):
            # The default location too, when XDG_STATE_HOME points elsewhere: a run
            # without the variable would trust approvals planted there.
            if candidate and candidate not in self.roots and os.path.lexists(candidate):
                self.roots.append(candidate)
        if usable is not None:
            self.directory = entries
            self._readable = usable

    def _entry(self, kind: str, key: str) -> str:
        assert self.directory is not None
        name = blake2b(os.fsencode(f"{kind}\0{key}"), digest_size=16).hexdigest()
        return f"{self.directory}/{kind}-{name}"

    def approved_content(self, kind: str, key: str) -> str | None:
        """What was approved for the file ``key`` (its real path), or None."""
        if self.directory is None or not self._readable:
            return None
        blob = owned.read_owned(self._entry(kind, key), self._euid, _MAX_RECORD)
        if blob is None:
            return None
        header, _, rest = blob.decode("utf-8", "surrogateescape").partition("\n")
        stored_key, _, content = rest.partition("\n")
        if header != f"{_FORMAT} {kind}" or stored_key != key:
            return None
        return content

    def check(self, kind: str, source: str, canonical: str, grants: Sequence[str]) -> Approval:
        """The approval state of ``source`` whose content is now ``canonical``."""
        previous = self.approved_content(kind, os.path.realpath(source))
        state = "approved" if previous == canonical else "new" if previous is None else "changed"
        return Approval(kind, source, canonical, tuple(grants), state, previous)

    def approve(self, approval: Approval) -> None:
        """Record ``approval.canonical`` as approved for its file."""
        if self.directory is None:
            raise OSError(f"no usable directory for approvals (under {self.roots or '~'})")
        key = os.path.realpath(approval.source)
        text = f"{_FORMAT} {approval.kind}\n{key}\n{approval.canonical}"
        owned.write_atomically(
            self._entry(approval.kind, key), text.encode("utf-8", "surrogateescape")
        )


def canonical_lines(table: Mapping[str, object], prefix: str = "") -> list[str]:
    """``key.sub = value`` lines for every leaf of a TOML table, sorted.

    Values are spelled as TOML (strings quoted and escaped, arrays inline), so two
    tables have the same lines exactly when they mean the same thing.
    """
    lines: list[str] = []
    for name in table:
        value = table[name]
        key = prefix + _key(name)
        if isinstance(value, dict):
            lines += canonical_lines(value, key + ".")
        else:
            lines.append(f"{key} = {_value(value)}")
    return sorted(lines)


def file_line(path: str, data: bytes) -> str:
    """The line that stands for a profile file a table extends: its path and digest."""
    return f"(file) {_value(path)} = {blake2b(data, digest_size=16).hexdigest()}"


def resolved_line(path: str, real: str) -> str:
    """The line that records where a granted path really leads (through symlinks)."""
    return f"(resolves) {_value(path)} = {_value(real)}"


_BARE = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")


def _key(name: str) -> str:
    return name if name and all(c in _BARE for c in name) else _quote(name)


def _quote(text: str) -> str:
    """A TOML basic string that stands for ``text`` alone: every control character
    escaped, so no value can spell a second line."""
    out = ['"']
    for char in text:
        if char in '"\\':
            out.append("\\" + char)
        elif char < " " or char == "\x7f" or not char.isprintable():
            out.append(f"\\u{ord(char):04X}" if ord(char) <= 0xFFFF else f"\\U{ord(char):08X}")
        else:
            out.append(char)
    out.append('"')
    return "".join(out)


def _value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return _quote(value)
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_value(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(line for line in canonical_lines(value)) + "}"
    return ascii(value)
