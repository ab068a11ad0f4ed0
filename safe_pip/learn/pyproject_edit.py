"""Add what ``safe-run --learn`` found to the ``[tool.safe-run]`` table of a pyproject.toml.

The file belongs to the user: its comments, blank lines, key order and quoting must
come back exactly as they were, with only the new entries added.  That needs a TOML
parser that keeps the source text of every item, which :mod:`tomllib` does not.
:mod:`tomlkit` does exactly this and is well tested on real pyproject files; a
hand-written round-tripper for the corners of TOML (dotted keys, inline tables, tables
split around other tables, arrays with comments) would be more code and less
correct.  It is imported only on the ``--learn`` path, never by a plain ``safe-run``.

Every edit is checked before it is returned: the result is parsed again with
:mod:`tomllib` and must hold the same data as before outside ``[tool.safe-run]`` and
every added entry inside it, so a surprise in the round trip fails loudly instead of
damaging the user's file.
"""

from __future__ import annotations

import os
import re
import stat
import sys
import tempfile
from collections.abc import MutableMapping
from typing import Any, cast

import tomlkit
from tomlkit.exceptions import TOMLKitError
from tomlkit.items import Array, InlineTable, Table

from safe_pip._records import record
from safe_pip.errors import SafePipError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

#: A TOML table as tomlkit hands it out: a document, a ``[table]``, an inline table,
#: or the proxy tomlkit uses for a table whose parts are split around other tables.
_Table = MutableMapping[str, Any]

_NAME = "pyproject.toml"


@record
class PolicyAdditions:
    """Entries to add to ``[tool.safe-run]``, in the spelling the file should get."""

    read: tuple[str, ...] = ()
    write: tuple[str, ...] = ()
    hosts: tuple[str, ...] = ()  # network allow patterns
    env_pass: tuple[str, ...] = ()  # environment variables to pass through

    def is_empty(self) -> bool:
        """True when there is nothing to add (then nothing is written)."""
        return not (self.read or self.write or self.hosts or self.env_pass)


class InvalidPyproject(SafePipError, ValueError):
    """The file cannot be edited safely; the message says why in one sentence.

    A :class:`ValueError` for library callers, and a :class:`SafePipError` so that
    ``safe-run`` prints it as one line (exit code 125) instead of a traceback.
    """

    def __init__(self, problem: str, source: str = _NAME) -> None:
        super().__init__(f"{source} {problem}")
        self.problem = problem


def merged_table(pyproject_text: str, additions: PolicyAdditions) -> str:
    """The ``[tool.safe-run]`` section after the additions, as standalone TOML text.

    This is what ``safe-run --learn`` shows without ``--write``: the user's own section
    (their comments included) with the new entries, ready to paste in place of the
    old one.  Everything else in the file is left out.  With no ``[tool.safe-run]`` in
    the file (or no file: ``""``) it is just the added keys; ``""`` if that is nothing.
    """
    document = _parse(pyproject_text)
    _apply(document, additions)
    for key in list(document):
        if key != "tool":
            del document[key]
    tool = document.get("tool")
    if tool is None:
        return ""
    for key in list(tool):
        if key != "safe-run":
            del tool[key]
    return _tidy_section(_same_newlines(pyproject_text, document.as_string()))


def apply_additions(pyproject_text: str, additions: PolicyAdditions) -> tuple[str, list[str]]:
    """The whole file with the additions, and one readable line per change.

    Only the arrays that grow and the tables that must be created change; every other
    byte stays as it was.  Entries already present are skipped silently, so running
    ``--learn --write`` twice changes nothing the second time.
    """
    document = _parse(pyproject_text)
    changes = _apply(document, additions)
    if not changes:
        return pyproject_text, []
    new_text = _same_newlines(pyproject_text, document.as_string())
    _check(pyproject_text, new_text, additions)
    return new_text, changes


def write_additions(path: str, additions: PolicyAdditions) -> list[str]:
    """Apply the additions to the file at ``path`` in place; return the changes.

    The new text goes to a temporary file in the same directory which then replaces the
    original (``os.replace``), so a crash leaves either the old file or the new one,
    never half of one.  The file keeps its mode (and owner, where allowed); a symlink
    keeps pointing at the file, which is edited.  Nothing is written when nothing
    changes.
    """
    target = os.path.realpath(path)
    try:
        with open(target, "rb") as handle:
            before = os.fstat(handle.fileno())
            raw = handle.read()
    except OSError as error:
        raise SafePipError(f"cannot read {path}: {error.strerror or error}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidPyproject("is not UTF-8 text, so it is not valid TOML", path) from None
    try:
        new_text, changes = apply_additions(text, additions)
    except InvalidPyproject as error:
        raise InvalidPyproject(error.problem, path) from None
    if not changes:
        return []
    _replace_file(path, target, new_text.encode("utf-8"), before)
    return changes


def _parse(text: str) -> tomlkit.TOMLDocument:
    """Parse with tomlkit, after tomllib has agreed the text is valid TOML.

    tomllib is the reference (it is what reads the policy); tomlkit alone has accepted
    a few files that tomllib rejects in the past.
    """
    try:
        tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise InvalidPyproject(f"is not valid TOML ({error}); fix it first") from None
    try:
        return tomlkit.parse(text)
    except TOMLKitError as error:  # pragma: no cover - tomllib accepted it
        raise InvalidPyproject(f"cannot be edited as TOML ({error})") from None


def _apply(document: tomlkit.TOMLDocument, additions: PolicyAdditions) -> list[str]:
    """Add the entries to ``document`` in place; return one line per change.

    Tables are created only for entries that are really new, so additions that are
    all present already leave the document untouched.
    """
    changes: list[str] = []
    tool = _child_table(document, "tool", "tool")
    safe_run = None if tool is None else _child_table(tool, "safe-run", "tool.safe-run")

    def ensure_safe_run() -> _Table:
        nonlocal tool, safe_run
        if tool is None:
            tool = _add_table(document, "tool", super_table=True)
        if safe_run is None:
            safe_run = _add_table(tool, "safe-run", super_table=True)
        return safe_run

    filesystem = (
        None
        if safe_run is None
        else _child_table(safe_run, "filesystem", "tool.safe-run.filesystem")
    )
    kept = [filesystem]  # tables that existed before (identity, not equality)
    for name, entries in (("read", additions.read), ("write", additions.write)):
        key = f"filesystem.{name}"
        existing = None if filesystem is None else _array(filesystem, name, key)
        new = _missing(entries, existing)
        if not new:
            continue
        if filesystem is None:
            filesystem = _add_table(ensure_safe_run(), "filesystem", super_table=False)
        _extend(filesystem, name, existing, new)
        changes += [f"{key}: added {_quoted(entry)}" for entry in new]

    network_value = None if safe_run is None else safe_run.get("network")
    network: _Table | None = None
    if network_value is not None:
        if isinstance(network_value, MutableMapping):
            network = network_value
        elif network_value != "none":
            raise InvalidPyproject('has a tool.safe-run.network that is neither "none" nor a table')
    kept.append(network)
    existing = None if network is None else _array(network, "allow", "network.allow")
    new = _missing(additions.hosts, existing)
    if new:
        if network is None:
            parent = ensure_safe_run()
            if network_value is not None:  # "none": the allow list replaces it
                changes.append('network: replaced "none" with an allow list')
                network = _replace_none(parent)
            else:
                network = _add_table(parent, "network", super_table=False)
        _extend(network, "allow", existing, new)
        changes += [f"network.allow: added {_quoted(entry)}" for entry in new]
    env = None if safe_run is None else _child_table(safe_run, "env", "tool.safe-run.env")
    kept.append(env)
    existing = None if env is None else _array(env, "pass", "env.pass")
    new = _missing(additions.env_pass, existing)
    if new:
        if env is None:
            env = _add_table(ensure_safe_run(), "env", super_table=False)
        _extend(env, "pass", existing, new)
        changes += [f"env.pass: added {_quoted(entry)}" for entry in new]
    for table in (filesystem, network, env):
        created = all(table is not old for old in kept)
        if created and isinstance(table, Table):
            # tomlkit puts no blank line between a new table and whatever follows it;
            # this one is trimmed again at the end of the file by _same_newlines.
            table.add(tomlkit.nl())
    return changes


def _child_table(parent: _Table, key: str, where: str) -> _Table | None:
    """``parent[key]`` if it is a table, None if absent; anything else is an error."""
    value = parent.get(key)
    if value is None:
        return None
    if not isinstance(value, MutableMapping):
        raise InvalidPyproject(f"has a {where} that is not a table")
    return value


def _array(table: _Table, key: str, where: str) -> Array | None:
    """The array at ``table[key]``, None if absent; the policy allows nothing else."""
    value = table.get(key)
    if value is None:
        return None
    if not isinstance(value, Array):
        raise InvalidPyproject(f"has a tool.safe-run.{where} that is not an array")
    return value


def _missing(entries: tuple[str, ...], existing: Array | None) -> list[str]:
    """The entries not in ``existing`` yet, once each, in the order given."""
    seen = {str(item) for item in existing or () if isinstance(item, str)}
    new: list[str] = []
    for entry in entries:
        if entry not in seen:
            seen.add(entry)
            new.append(entry)
    return new


def _add_table(parent: _Table, key: str, *, super_table: bool) -> _Table:
    """A new empty table ``parent[key]``, written as a ``[header]`` where TOML allows.

    A super table (only sub-tables, no keys of its own) gets no header line of its own,
    so a file without ``[tool]`` gains ``[tool.safe-run.filesystem]`` and nothing else.
    Inside an inline table only an inline table is valid TOML.
    """
    if isinstance(parent, InlineTable):
        parent[key] = tomlkit.inline_table()
    else:
        parent[key] = tomlkit.table(is_super_table=super_table)
    return cast(_Table, parent[key])


def _replace_none(safe_run: _Table) -> _Table:
    """Turn ``network = "none"`` into a network table, keeping its trailing comment."""
    comment = safe_run["network"].trivia.comment.lstrip("#").strip()
    del safe_run["network"]
    network = _add_table(safe_run, "network", super_table=False)
    if comment and isinstance(network, Table):
        network.add(tomlkit.comment(f'{comment}  (was: network = "none")'))
    return network


def _extend(table: _Table, key: str, existing: Array | None, new: list[str]) -> None:
    """Append ``new`` to the array (tomlkit keeps its one-line or one-per-line style)."""
    if existing is None:
        existing = tomlkit.array()
        table[key] = existing
        existing = cast(Array, table[key])
    if (
        not existing
        and existing.as_string() == "[]"
        and len(new) > 1
        and not isinstance(table, InlineTable)
    ):
        existing.multiline(True)  # an empty [] has no style to keep: one entry a line
    for entry in new:
        existing.append(entry)


def _quoted(entry: str) -> str:
    """``entry`` as TOML spells it, so the report matches what is in the file."""
    return tomlkit.string(entry).as_string()


def _same_newlines(original: str, new_text: str) -> str:
    """Give the lines tomlkit added the file's own line ending and end-of-file shape.

    tomlkit writes ``\\n`` for new lines even in a CRLF file, and the blank line that
    _add_table puts after a new table is one too many at the end of the file.
    """
    plain = original.replace("\r\n", "\n")
    if "\r\n" in original and "\n" not in original.replace("\r\n", ""):
        new_text = re.sub(r"(?<!\r)\n", "\r\n", new_text)
    if "\n\n\n" not in plain:
        # Where tomlkit put its own blank line before a new header, the one from
        # _apply makes two; a file that never has two gets one.  (Only added entries
        # could be inside strings, and they are one-line basic strings.)
        new_text = re.sub(r"(\r?\n)(?:\r?\n){2,}", r"\1\1", new_text)
    if new_text.replace("\r\n", "\n").endswith("\n\n") and not plain.endswith("\n\n"):
        new_text = new_text.rstrip("\r\n") + ("\r\n" if original.endswith("\r\n") else "\n")
    return new_text


def _check(original: str, new_text: str, additions: PolicyAdditions) -> None:
    """Refuse to hand back an edit that changed more, or less, than it should."""
    try:
        after = tomllib.loads(new_text)
    except tomllib.TOMLDecodeError as error:  # pragma: no cover - a tomlkit bug
        raise InvalidPyproject(f"could not be edited safely ({error}); edit it by hand") from None
    before = tomllib.loads(original)
    policy = after.get("tool", {}).pop("safe-run", {})
    before.get("tool", {}).pop("safe-run", None)
    if not after.get("tool", True):
        after.pop("tool")
    if not before.get("tool", True):
        before.pop("tool")
    network = policy.get("network", {})
    filesystem = policy.get("filesystem", {})
    complete = (
        (not additions.hosts or set(additions.hosts) <= set(network.get("allow", [])))
        and set(additions.read) <= set(filesystem.get("read", []))
        and set(additions.write) <= set(filesystem.get("write", []))
        and set(additions.env_pass) <= set(policy.get("env", {}).get("pass", []))
    )
    if before != after or not complete:  # pragma: no cover - a tomlkit bug
        raise InvalidPyproject("could not be edited safely; add the entries by hand")


def _tidy_section(text: str) -> str:
    """Trim what deleting the rest of the document left around the section.

    Comments before the first key or header belonged to the file, not the section; a
    ``[tool]`` header with no keys left is noise; a comment block after a blank line at
    the very end introduced the table that followed, which is gone.
    """
    lines = text.splitlines()

    def is_filler(line: str) -> bool:
        stripped = line.strip()
        return not stripped or stripped.startswith("#")

    while lines and is_filler(lines[0]):
        del lines[0]
    if lines and lines[0].split("#", 1)[0].strip() == "[tool]":
        rest = [line for line in lines[1:] if not is_filler(line)]
        if not rest or rest[0].lstrip().startswith("["):
            del lines[0]
            while lines and is_filler(lines[0]):
                del lines[0]
    while lines and is_filler(lines[-1]):
        end = len(lines)
        while end and lines[end - 1].strip().startswith("#"):
            end -= 1
        if end == len(lines):  # a blank line at the end
            del lines[-1]
        elif end and not lines[end - 1].strip():  # comments after a blank line
            del lines[end:]
        else:  # comments that end the section's last table: keep them
            break
    return "\n".join(lines) + "\n" if lines else ""


def _replace_file(path: str, target: str, data: bytes, before: os.stat_result) -> None:
    """Write ``data`` over ``target`` atomically, with the original's mode and owner."""
    directory = os.path.dirname(target) or "."
    try:
        fd, temporary = tempfile.mkstemp(prefix=".pyproject-", suffix=".tmp", dir=directory)
    except OSError as error:
        raise SafePipError(f"cannot write {path}: {error.strerror or error}") from None
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temporary, stat.S_IMODE(before.st_mode))
        if (before.st_uid, before.st_gid) != (os.getuid(), os.getgid()):
            try:
                os.chown(temporary, before.st_uid, before.st_gid)
            except OSError:
                pass  # not ours to give away; the mode still matches
        now = os.stat(target)
        if (now.st_mtime_ns, now.st_size) != (before.st_mtime_ns, before.st_size):
            raise SafePipError(f"{path} changed while safe-run was editing it; run again")
        os.replace(temporary, target)
    except BaseException as error:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        if isinstance(error, OSError):
            raise SafePipError(f"cannot write {path}: {error.strerror or error}") from None
        raise
