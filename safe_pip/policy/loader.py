"""Turn ``[tool.safe-run]``, built-in profiles and command-line flags into a Policy.

Layers merge in a fixed order so that the outcome never depends on where a profile
happens to be named:

1. the built-in ``base`` profile (system read paths and the secrets deny list; it
   cannot be removed, so a policy can never forget to hide ``~/.ssh``);
2. the table's ``extends``, depth first (each profile's own ``extends`` before it);
3. the ``[tool.safe-run]`` table itself;
4. ``--profile`` profiles, each applied after the table even if it already extended it;
5. the remaining command-line flags.

Lists concatenate (first occurrence wins the position), ``env.set`` is last-wins, and
``network = "none"`` clears the hosts allowed by earlier layers.  Everything is
validated strictly: a typo in a sandbox policy must be an error, never a silently
ignored key that leaves the user believing something is allowed or denied.

This module runs on every ``safe-run``, so it imports only what is already loaded
(``os``, ``sys``; paths stay plain strings, never ``pathlib``) and defers ``tomllib``
and ``ipaddress`` to the moment they are needed: built-in profiles are read without
tomllib (see :func:`profiles.parse_builtin`), a pyproject that never mentions
``safe-run`` is not parsed at all, and one whose parse result is in the policy cache
(:mod:`safe_pip.policy.cache`) is not parsed again.
"""

from __future__ import annotations

import os
import sys

from safe_pip._records import record
from safe_pip.errors import PolicyError
from safe_pip.policy import profiles
from safe_pip.policy.cache import MISS, PolicyCache
from safe_pip.policy.model import (
    EnvPolicy,
    FilesystemPolicy,
    NetworkPolicy,
    Policy,
    is_within,
)
from safe_pip.policy.trust import APPROVALS_SUBDIR, POLICY, Approval, ApprovalStore

TYPE_CHECKING = False  # avoid importing typing at start-up
if TYPE_CHECKING:
    from collections.abc import Mapping

    from safe_pip.credentials.spec import CredentialSpec

PYPROJECT = "pyproject.toml"
#: ``PolicyError.source`` for mistakes in command-line flags.
CLI_SOURCE = "command line"
#: ``filesystem.git``: what of a repository in a write grant the program may change.
GIT_MODES = ("read-only", "commit")

#: Every key the loader accepts, by table ("" is the ``[tool.safe-run]`` table itself,
#: or the top level of a profile file).  The JSON schema test checks it against
#: ``schema/safe-run.schema.json``.
ACCEPTED_KEYS: dict[str, tuple[str, ...]] = {
    "": ("extends", "network", "filesystem", "env", "credentials"),
    "filesystem": ("read", "write", "deny", "protect", "git"),
    "network": ("allow",),
    "env": ("pass", "set"),
}

_TABLE_PREFIX = "tool.safe-run."
_MAX_EXTENDS_DEPTH = 32
_ASCII_LOWER = "abcdefghijklmnopqrstuvwxyz"
_DIGITS = "0123456789"
_ENV_FIRST = frozenset(_ASCII_LOWER + _ASCII_LOWER.upper() + "_")
_ENV_REST = _ENV_FIRST | frozenset(_DIGITS)
_HOST_CHARS = frozenset(_ASCII_LOWER + _DIGITS + "-")
_BARE_KEY_CHARS = _ENV_REST | frozenset("-")


@record
class CliOverrides:
    """The policy-related ``safe-run`` flags, already split out of argv by the CLI."""

    allow_read: tuple[str, ...] = ()
    allow_write: tuple[str, ...] = ()
    allow_env: tuple[str, ...] = ()
    allow_host: tuple[str, ...] = ()
    #: ``--profile NAME`` (repeatable): applied after the pyproject's own table.
    profiles: tuple[str, ...] = ()
    no_network: bool = False
    #: ``--credential NAME`` (repeatable): built-in credential definitions.
    credentials: tuple[str, ...] = ()


def find_pyproject(start: str | os.PathLike[str]) -> str | None:
    """The nearest ``pyproject.toml`` at or above ``start``.

    A pyproject without ``[tool.safe-run]`` still counts: it marks the project root
    (relative paths, protected files), and its policy is simply the default.
    Symlinks are not resolved, so the answer matches the path the user typed.
    """
    directory = os.path.abspath(start)
    while True:
        candidate = os.path.join(directory, PYPROJECT)
        if os.path.isfile(candidate):
            return candidate
        parent = os.path.dirname(directory)
        if parent == directory:
            return None
        directory = parent


def load_policy(
    *,
    cwd: str | os.PathLike[str],
    project: str | os.PathLike[str] | None,
    overrides: CliOverrides,
    variables: Mapping[str, str],
    home: str | os.PathLike[str],
    builtin_only: bool = False,
) -> Policy:
    """Build the effective policy for one run.

    ``builtin_only`` (the install-time build sandbox): no pyproject is searched or
    read and ``cwd`` is not granted -- only ``base``, ``overrides.profiles`` and the
    override grants apply, so no file anywhere can widen the policy of a build.

    ``project`` is ``--project DIR`` (it must contain a pyproject.toml); without it the
    nearest pyproject above ``cwd`` is used, and without any the project directory is
    ``cwd`` and only the built-in default (``base``) applies.  ``variables`` feeds
    ``$VAR`` expansion in paths (the launcher includes the sandbox's private
    ``TMPDIR``); ``home`` is the caller's real home, which ``~`` expands to.

    The parsed ``[tool.safe-run]`` table is cached under ``home`` (or
    ``$XDG_CACHE_HOME`` from ``variables``; see :mod:`safe_pip.policy.cache`); the cache
    directory is created before the sandbox exists, then denied to it and protected.
    """
    cwd_str = os.path.abspath(cwd)
    pyproject: str | None
    if builtin_only:
        project_dir, pyproject = cwd_str, None
    elif project is not None:
        project_dir = os.path.normpath(os.path.join(cwd_str, project))
        candidate = os.path.join(project_dir, PYPROJECT)
        if not os.path.isfile(candidate):
            raise PolicyError(CLI_SOURCE, "--project", f"{project_dir} contains no {PYPROJECT}")
        pyproject = candidate
    else:
        pyproject = find_pyproject(cwd_str)
        project_dir = cwd_str if pyproject is None else os.path.dirname(pyproject)

    home_str = os.fspath(home)
    cache = PolicyCache(home_str, variables)  # creates the cache directory if needed
    store = ApprovalStore(home_str, variables)  # likewise
    merger = _Merger(project_dir, home_str, variables)
    merger.include("base", source="built-in defaults", key="base", base_dir=None)

    policy_pyproject: str | None = None  # the pyproject that has a [tool.safe-run] table
    approval: Approval | None = None
    if pyproject is not None:
        table = _pyproject_table(pyproject, cache)
        if table is not None:
            policy_pyproject = pyproject
            identity = os.path.realpath(pyproject)
            before = merger.snapshot()
            files_before = len(merger.policy_files)
            merger.merge_unit(identity, pyproject, table, _TABLE_PREFIX, project_dir)
            grants = merger.grants_since(before, project_dir)
            if grants:
                earlier = {*before["read"], *before["write"]}
                paths = [p for p in (*merger.read, *merger.write) if p not in earlier]
                files = merger.policy_files[files_before:]
                canonical = _canonical_policy(table, files, paths)
                approval = store.check(POLICY, pyproject, canonical, grants)

    for name in overrides.profiles:
        merger.include(name, source=CLI_SOURCE, key="--profile", base_dir=cwd_str, force=True)

    cli = _cli_layer(overrides, merger, cwd_str)
    if cli is not None:
        merger.apply(cli, CLI_SOURCE)

    protected = [os.path.join(project_dir, PYPROJECT), *merger.protect]
    if policy_pyproject is not None:
        protected.append(policy_pyproject)
    protected += merger.policy_files
    # The sandbox must not read or write the policy cache (it would widen the next
    # run's policy).  Deny hides the entries; protecting the root pins its ancestors
    # in namespace mode, so the denied directory cannot be renamed away and replaced.
    for root in cache.roots:
        merger.deny.setdefault(root + "/policy")
        # safe-pip's install cache and its cache of built wheels: code that can write
        # them poisons later installs (installer/cache.py, installer/built_wheels.py).
        merger.deny.setdefault(root + "/uv")
        merger.deny.setdefault(root + "/built-wheels")
    protected += cache.roots
    # Approvals likewise: code that could write one would approve its own policy.
    for root in store.roots:
        merger.deny.setdefault(root + "/" + APPROVALS_SUBDIR)
        protected.append(root)
    if not builtin_only and (pyproject is not None or not _holds_everything(project_dir, home_str)):
        merger.read.setdefault(project_dir)

    credentials: tuple[CredentialSpec, ...] = ()
    if merger.credentials:
        from safe_pip.policy.credentials import resolve_credentials

        credentials = resolve_credentials(merger.credentials, project_dir=project_dir)
        for path in _credential_stores(credentials, home_str, variables):
            merger.deny.setdefault(path)
            protected.append(path)
    allow = tuple(merger.allow)
    return Policy(
        filesystem=FilesystemPolicy(
            read=tuple(merger.read),
            write=tuple(merger.write),
            deny=tuple(merger.deny),
            protected=tuple(dict.fromkeys(protected)),
            git=merger.git,
        ),
        network=NetworkPolicy(mode="allowlist" if allow or credentials else "none", allow=allow),
        credentials=credentials,
        env=EnvPolicy(
            pass_names=tuple(merger.env_pass),
            set_values=tuple(merger.env_set.items()),
        ),
        project_dir=project_dir,
        pyproject=policy_pyproject,
        sources=tuple(merger.sources),
        approval=approval,
    )


class _Layer:
    """One validated, expanded layer, ready to merge."""

    __slots__ = (
        "allow",
        "credentials",
        "deny",
        "env_pass",
        "env_set",
        "git",
        "no_network",
        "protect",
        "read",
        "write",
    )

    def __init__(self) -> None:
        self.credentials: dict[str, dict[str, object]] = {}
        self.read: list[str] = []
        self.write: list[str] = []
        self.deny: list[str] = []
        self.protect: list[str] = []
        self.git: str | None = None
        self.no_network = False
        self.allow: list[str] = []
        self.env_pass: list[str] = []
        self.env_set: dict[str, str] = {}


class _Merger:
    """Accumulates layers in order; also resolves and parses ``extends`` entries.

    Ordered dicts stand in for ordered sets: de-duplication keeps the first position.
    """

    def __init__(self, project_dir: str, home: str, variables: Mapping[str, str]) -> None:
        self.home = home
        # $PROJECT and $HOME always mean what the loader knows them to be: a caller's
        # environment must not be able to point $PROJECT somewhere else.
        self.variables = {**variables, "PROJECT": project_dir, "HOME": home}
        self.read: dict[str, None] = {}
        self.write: dict[str, None] = {}
        self.deny: dict[str, None] = {}
        self.protect: dict[str, None] = {}
        self.git = "read-only"
        self.allow: dict[str, None] = {}
        self.env_pass: dict[str, None] = {}
        self.env_set: dict[str, str] = {}
        self.credentials: dict[str, dict[str, object]] = {}
        self.sources: list[str] = []
        self.policy_files: list[str] = []
        self._done: set[str] = set()
        self._stack: list[tuple[str, str]] = []  # (identity, label) being merged

    # -- what a layer added ------------------------------------------------------------

    def snapshot(self) -> dict[str, list[str]]:
        """The grants merged so far, by kind, to compare with later (:meth:`grants_since`)."""
        return {
            "read": list(self.read),
            "write": list(self.write),
            "network": list(self.allow),
            "env": list(self.env_pass),
            "env.set": [f"{name}={value}" for name, value in self.env_set.items()],
            "credentials": list(self.credentials),
            "git": [self.git] if self.git != "read-only" else [],
        }

    def grants_since(self, before: dict[str, list[str]], project_dir: str) -> list[str]:
        """One line per kind of grant added since ``before`` (``write: ./out``); empty
        when the layers merged since then only narrowed the policy."""
        lines = []
        for kind, items in self.snapshot().items():
            old = set(before[kind])
            added = [item for item in items if item not in old]
            if kind in ("read", "write"):
                added = [_spell(path, project_dir, self.home) for path in added]
            elif kind == "env.set":
                added = [item.partition("=")[0] for item in added]
            if added:
                lines.append(f"{kind}: {', '.join(added)}")
        return lines

    # -- extends ---------------------------------------------------------------------

    def include(
        self, entry: str, *, source: str, key: str, base_dir: str | None, force: bool = False
    ) -> None:
        """Merge the profile named by one ``extends`` / ``--profile`` entry.

        ``base_dir`` is None inside built-in profiles, which may only name other
        built-in profiles.  ``force`` re-applies a profile that was already merged, so
        that ``--profile`` always takes effect after the table.
        """
        if _is_path_entry(entry):
            if base_dir is None:
                raise PolicyError(
                    source,
                    key,
                    f"built-in profiles can only extend built-in profiles, not {entry!r}",
                )
            path = self.path(entry, source=source, key=key, base_dir=base_dir)
            identity = os.path.realpath(path)
            if self._skip(identity, path, source, key, force):
                return
            data = _read_toml(path, source=source, key=key)
            self.merge_unit(identity, path, data, "", os.path.dirname(path))
            self.policy_files.append(path)
            return
        try:
            path = profiles.profile_path(entry)
        except PolicyError as error:
            raise PolicyError(source, key, error.problem) from None
        label = f"profile:{entry}"
        if self._skip(label, label, source, key, force):
            return
        raw = _read_bytes(path, source=source, key=key)
        try:
            simple = profiles.parse_builtin(raw.decode("utf-8"))
        except UnicodeDecodeError:
            simple = None
        table = simple if simple is not None else _parse_toml(raw, label)
        self.merge_unit(label, label, table, "", None)

    def _skip(self, identity: str, label: str, source: str, key: str, force: bool) -> bool:
        """Whether a profile is already merged; raises on a cycle."""
        if any(identity == seen for seen, _ in self._stack):
            chain = [name for _, name in self._stack] + [label]
            start = next(i for i, (seen, _) in enumerate(self._stack) if seen == identity)
            raise PolicyError(source, key, "extends cycle: " + " -> ".join(chain[start:]))
        return identity in self._done and not force

    def merge_unit(
        self,
        identity: str,
        label: str,
        data: dict[str, object],
        prefix: str,
        base_dir: str | None,
    ) -> None:
        """Validate one table, merge what it extends, then merge the table itself."""
        if len(self._stack) >= _MAX_EXTENDS_DEPTH:
            raise PolicyError(label, prefix + "extends", "profiles nest more than 32 deep")
        self._stack.append((identity, label))
        layer, extends = self._parse(data, label, prefix, base_dir)
        for index, entry in enumerate(extends):
            self.include(entry, source=label, key=f"{prefix}extends[{index}]", base_dir=base_dir)
        self.apply(layer, label)
        self._stack.pop()
        self._done.add(identity)

    def apply(self, layer: _Layer, label: str) -> None:
        """Merge one layer on top of everything merged so far."""
        for target, items in (
            (self.read, layer.read),
            (self.write, layer.write),
            (self.deny, layer.deny),
            (self.protect, layer.protect),
            (self.env_pass, layer.env_pass),
        ):
            for item in items:
                target.setdefault(item)
        if layer.git is not None:
            self.git = layer.git
        if layer.no_network:
            self.allow.clear()
            self.credentials.clear()  # they need the proxy that "none" takes away
        for pattern in layer.allow:
            self.allow.setdefault(pattern)
        self.env_set.update(layer.env_set)
        for name, keys in layer.credentials.items():
            self.credentials.setdefault(name, {}).update(keys)
        self.sources.append(label)

    # -- validation --------------------------------------------------------------------

    def _parse(
        self, data: dict[str, object], source: str, prefix: str, base_dir: str | None
    ) -> tuple[_Layer, list[str]]:
        """Validate a table and expand its paths; returns the layer and its extends."""
        layer = _Layer()
        _check_keys(data, ACCEPTED_KEYS[""], source, prefix)
        extends = _strings(data.get("extends", []), source, prefix + "extends")
        for index, entry in enumerate(extends):
            if not entry:
                raise PolicyError(source, f"{prefix}extends[{index}]", "is an empty string")

        if "network" in data:
            network = data["network"]
            key = prefix + "network"
            if isinstance(network, dict):
                _check_keys(network, ACCEPTED_KEYS["network"], source, key + ".")
                key += ".allow"
                for index, pattern in enumerate(_strings(network.get("allow", []), source, key)):
                    layer.allow.append(_host_pattern(pattern, source, f"{key}[{index}]"))
            elif network == "none":
                layer.no_network = True
            else:
                raise PolicyError(
                    source,
                    key,
                    f'must be the string "none" or a table with "allow", not {_describe(network)}',
                )

        filesystem = _table(data, "filesystem", source, prefix)
        for name, target in (
            ("read", layer.read),
            ("write", layer.write),
            ("deny", layer.deny),
            ("protect", layer.protect),
        ):
            key = f"{prefix}filesystem.{name}"
            for index, raw in enumerate(_strings(filesystem.get(name, []), source, key)):
                target.append(
                    self.path(raw, source=source, key=f"{key}[{index}]", base_dir=base_dir)
                )
        if "git" in filesystem:
            git = filesystem["git"]
            if git not in GIT_MODES:
                modes = " or ".join(f'"{mode}"' for mode in GIT_MODES)
                raise PolicyError(source, f"{prefix}filesystem.git", f"must be {modes}")
            layer.git = str(git)

        env = _table(data, "env", source, prefix)
        key = prefix + "env.pass"
        for index, name in enumerate(_strings(env.get("pass", []), source, key)):
            layer.env_pass.append(_env_name(name, source, f"{key}[{index}]"))
        key = prefix + "env.set"
        values = env.get("set", {})
        if not isinstance(values, dict):
            raise PolicyError(source, key, f"must be a table of strings, not {_describe(values)}")
        for name, value in values.items():
            item_key = _join_key(key + ".", name)
            _env_name(name, source, item_key)
            if not isinstance(value, str):
                raise PolicyError(source, item_key, f"must be a string, not {_describe(value)}")
            layer.env_set[name] = value

        if "credentials" in data:
            from safe_pip.policy.credentials import parse_credentials

            layer.credentials = parse_credentials(
                data["credentials"],
                source=source,
                key=prefix + "credentials",
                expand=lambda raw, key: self.path(raw, source=source, key=key, base_dir=base_dir),
                check_env_name=_env_name,
                check_host=_host_pattern,
            )
        return layer, extends

    def path(self, raw: str, *, source: str, key: str, base_dir: str | None) -> str:
        """Expand ``~`` and ``$VAR``, anchor relative paths at ``base_dir``, normalise.

        Symlinks are deliberately not resolved: the sandbox layers do that when they
        open the path, at the moment it matters.
        """
        if not raw:
            raise PolicyError(source, key, "is an empty path")
        if "\0" in raw:
            raise PolicyError(source, key, "contains a NUL character")
        path = raw
        if path == "~" or path.startswith("~/"):
            if not os.path.isabs(self.home):
                raise PolicyError(
                    source,
                    key,
                    f"cannot expand '~': the home directory {self.home!r} is not absolute",
                )
            path = self.home + path[1:]
        elif path.startswith("~"):
            raise PolicyError(
                source, key, "'~user' is not supported; write '~/...' or an absolute path"
            )
        if "$" in path:
            path = self._substitute(path, source, key)
        if not path.startswith("/"):
            if base_dir is None:
                raise PolicyError(
                    source,
                    key,
                    f"relative path {raw!r} is not allowed in a built-in profile (use $PROJECT)",
                )
            path = os.path.join(base_dir, path)
        path = os.path.normpath(path)
        if path.startswith("//"):  # normpath keeps POSIX's implementation-defined "//"
            path = "/" + path.lstrip("/")
        return path

    def _substitute(self, text: str, source: str, key: str) -> str:
        """Replace ``$NAME`` and ``${NAME}`` from the variables; unknown is an error."""
        out: list[str] = []
        i = 0
        while True:
            dollar = text.find("$", i)
            if dollar < 0:
                out.append(text[i:])
                return "".join(out)
            out.append(text[i:dollar])
            if text.startswith("{", dollar + 1):
                close = text.find("}", dollar + 2)
                if close < 0:
                    raise PolicyError(source, key, "has '${' without a closing '}'")
                name, i = text[dollar + 2 : close], close + 1
            else:
                end = dollar + 1
                while end < len(text) and text[end] in _ENV_REST:
                    end += 1
                name, i = text[dollar + 1 : end], end
            if not _is_env_name(name):
                raise PolicyError(
                    source,
                    key,
                    "has a '$' that is not followed by a variable name ($NAME or ${NAME})",
                )
            value = self.variables.get(name)
            if value is None:
                raise PolicyError(source, key, f"uses unknown variable ${name}")
            if not value:
                raise PolicyError(source, key, f"uses variable ${name}, which is empty")
            out.append(value)


def _cli_layer(overrides: CliOverrides, merger: _Merger, cwd: str) -> _Layer | None:
    """The flags as one layer (paths relative to ``cwd``), or None when there are none."""
    if overrides.no_network and overrides.allow_host:
        raise PolicyError(CLI_SOURCE, "--no-network", "cannot be combined with --allow-host")
    layer = _Layer()
    for flag, raws, target in (
        ("--allow-read", overrides.allow_read, layer.read),
        ("--allow-write", overrides.allow_write, layer.write),
    ):
        target.extend(merger.path(raw, source=CLI_SOURCE, key=flag, base_dir=cwd) for raw in raws)
    layer.env_pass.extend(
        _env_name(name, CLI_SOURCE, "--allow-env") for name in overrides.allow_env
    )
    layer.allow.extend(
        _host_pattern(host, CLI_SOURCE, "--allow-host") for host in overrides.allow_host
    )
    layer.no_network = overrides.no_network
    if overrides.credentials:
        if overrides.no_network:
            raise PolicyError(CLI_SOURCE, "--no-network", "cannot be combined with --credential")
        from safe_pip.policy.credentials import parse_credentials

        layer.credentials = parse_credentials(
            list(overrides.credentials),
            source=CLI_SOURCE,
            key="--credential",
            expand=lambda raw, key: merger.path(raw, source=CLI_SOURCE, key=key, base_dir=cwd),
            check_env_name=_env_name,
            check_host=_host_pattern,
        )
    if (
        layer.read
        or layer.write
        or layer.env_pass
        or layer.allow
        or layer.no_network
        or layer.credentials
    ):
        return layer
    return None


def _canonical_policy(table: dict[str, object], files: list[str], paths: list[str]) -> str:
    """The approved form of a ``[tool.safe-run]`` table: its sorted ``key = value``
    lines, one line per profile file it extends (path and content digest), and one per
    granted path that a symlink sends elsewhere (where it lands now).

    The last kind matters because a sandbox that may write the project could replace
    ``data/`` with a link to ``~``: the table would read the same, but grant more.
    """
    from safe_pip.policy.trust import canonical_lines, file_line, resolved_line

    lines = canonical_lines(table)
    for path in files:
        lines.append(file_line(path, _read_bytes(path, source=path, key="(file)")))
    for path in dict.fromkeys(paths):
        real = os.path.realpath(path)
        if real != path:
            lines.append(resolved_line(path, real))
    return "\n".join(lines) + "\n"


def _spell(path: str, project_dir: str, home: str) -> str:
    """``.``, ``./sub``, ``~/x`` or the absolute path: how a user would write it."""
    if path == project_dir:
        return "."
    if is_within(path, project_dir):
        return "./" + path[len(project_dir.rstrip("/")) + 1 :]
    if path == home:
        return "~"
    if is_within(path, home):
        return "~/" + path[len(home.rstrip("/")) + 1 :]
    return path


def _credential_stores(
    credentials: tuple[CredentialSpec, ...], home: str, variables: Mapping[str, str]
) -> list[str]:
    """Files the real values are read from: denied to the sandbox and protected."""
    stores = [spec.file for spec in credentials if spec.file is not None]
    if any(spec.source == "keyring" for spec in credentials):
        from safe_pip.credentials.sources import keyring_store_paths

        stores += keyring_store_paths(home, variables)
    return stores


def _holds_everything(directory: str, home: str) -> bool:
    """True for ``/``, the home directory and its ancestors.

    Without a pyproject the working directory stands in for the project; started from
    ``~`` that would quietly make the whole home readable (the deny list aside).  Such
    a directory is not granted implicitly: the user names it with ``--allow-read``.
    """
    home = os.path.abspath(home)
    return directory == "/" or is_within(home, directory)


# -- reading ------------------------------------------------------------------------------


def _pyproject_table(path: str, cache: PolicyCache | None = None) -> dict[str, object] | None:
    """The ``[tool.safe-run]`` table of a pyproject, or None if it has none.

    A pyproject that never mentions ``safe-run`` is not parsed at all: pyprojects can
    be long and parsing is the slowest step of a load.  The substring test cannot miss
    a table, because a key can only hide its spelling behind ``\\u`` escapes, and a
    file containing those is parsed.  Otherwise the parse result comes from ``cache``
    when it holds an entry made from exactly these bytes.
    """
    data = _read_bytes(path, source=path, key="(file)")
    if b"safe-run" not in data and b"\\u" not in data and b"\\U" not in data:
        return None
    table = MISS if cache is None else cache.lookup(path, data)
    if table is MISS:
        tool = _parse_toml(data, path).get("tool")
        table = tool.get("safe-run") if isinstance(tool, dict) else None  # TOML has no null
        if cache is not None and (table is None or isinstance(table, dict)):
            cache.store(path, data, table)
    if table is None:
        return None
    if not isinstance(table, dict):
        raise PolicyError(path, "tool.safe-run", f"must be a table, not {_describe(table)}")
    return table


def _read_bytes(path: str, *, source: str, key: str) -> bytes:
    """A policy or profile file: a regular file of at most 4 MiB (safe_pip/bounded.py)."""
    from safe_pip.bounded import UnreadableInput, read_regular_file

    try:
        return read_regular_file(path)
    except FileNotFoundError:
        raise PolicyError(source, key, f"{path} does not exist") from None
    except UnreadableInput as error:
        raise PolicyError(source, key, str(error)) from None
    except OSError as error:
        raise PolicyError(source, key, f"cannot read {path} ({error.strerror})") from None


def _read_toml(path: str, *, source: str, key: str) -> dict[str, object]:
    """Parse a profile file; a missing file is blamed on the entry that named it."""
    return _parse_toml(_read_bytes(path, source=source, key=key), path)


def _parse_toml(data: bytes, path: str) -> dict[str, object]:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - exercised on 3.10 only
        import tomli as tomllib

    try:
        return tomllib.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise PolicyError(path, "(file)", "is not valid UTF-8") from None
    except tomllib.TOMLDecodeError as error:
        # tomllib ends its messages with "(at line L, column C)": make that the key.
        message = str(error)
        where = message.rfind(" (at ")
        if where < 0 or not message.endswith(")"):
            raise PolicyError(path, "(file)", f"is not valid TOML: {message}") from None
        raise PolicyError(
            path, message[where + 5 : -1], f"is not valid TOML: {message[:where]}"
        ) from None


# -- value checks -------------------------------------------------------------------------


def _describe(value: object) -> str:
    """The TOML name of a value's type, for error messages."""
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a float"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "a table"
    return "a date/time"


def _join_key(prefix: str, name: str) -> str:
    """A dotted key as the user would write it, quoting names that need quotes."""
    if name and all(c in _BARE_KEY_CHARS for c in name):
        return prefix + name
    return prefix + '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _check_keys(
    table: dict[str, object], allowed: tuple[str, ...], source: str, prefix: str
) -> None:
    for name in table:
        if name not in allowed:
            import difflib

            close = difflib.get_close_matches(name, allowed, n=1)
            hint = f", perhaps a typo for {close[0]!r}" if close else ""
            raise PolicyError(
                source,
                _join_key(prefix, name),
                f"unknown key{hint} (expected one of: {', '.join(allowed)})",
            )


def _table(data: dict[str, object], name: str, source: str, prefix: str) -> dict[str, object]:
    """The sub-table ``name`` (empty if absent), with its keys checked."""
    value = data.get(name, {})
    if not isinstance(value, dict):
        raise PolicyError(source, prefix + name, f"must be a table, not {_describe(value)}")
    _check_keys(value, ACCEPTED_KEYS[name], source, f"{prefix}{name}.")
    return value


def _strings(value: object, source: str, key: str) -> list[str]:
    if not isinstance(value, list):
        raise PolicyError(source, key, f"must be an array of strings, not {_describe(value)}")
    for index, item in enumerate(value):
        if not isinstance(item, str):
            raise PolicyError(source, f"{key}[{index}]", f"must be a string, not {_describe(item)}")
    return value


def _is_env_name(name: str) -> bool:
    return bool(name) and name[0] in _ENV_FIRST and all(c in _ENV_REST for c in name)


def _env_name(name: str, source: str, key: str) -> str:
    if not _is_env_name(name):
        raise PolicyError(
            source,
            key,
            f"{name!r} is not a valid environment variable name ([A-Za-z_][A-Za-z0-9_]*)",
        )
    return name


def _is_path_entry(entry: str) -> bool:
    """Whether an ``extends`` entry names a file rather than a built-in profile."""
    return "/" in entry or entry.endswith(".toml") or entry.startswith(("~", "$", "."))


def _host_pattern(pattern: str, source: str, key: str) -> str:
    """Check one ``network.allow`` pattern's syntax; returns it in lower case."""
    normalised = pattern.lower()
    problem = _host_problem(normalised)
    if problem is not None:
        raise PolicyError(source, key, f"{pattern!r} {problem}")
    return normalised


def _host_problem(pattern: str) -> str | None:
    """Why a lower-cased ``host[:port]`` pattern is malformed, or None if it is fine."""
    if not pattern:
        return "is empty"
    port: str | None = None
    if pattern.startswith("["):
        end = pattern.find("]")
        if end < 0:
            return "has '[' without a closing ']'"
        host, rest = pattern[1:end], pattern[end + 1 :]
        if not _is_ipv6(host):
            return "has brackets around something that is not an IPv6 address"
        if rest:
            if not rest.startswith(":"):
                return "has text after ']' (expected ':PORT')"
            port = rest[1:]
    elif pattern.count(":") > 1:
        if _is_ipv6(pattern):
            return None
        return "is not a valid IPv6 address (with a port, write [ADDRESS]:PORT)"
    else:
        host, _, maybe_port = pattern.partition(":")
        if ":" in pattern:
            port = maybe_port
        problem = _hostname_problem(host)
        if problem is not None:
            return problem
    if port is not None and not (_is_decimal(port) and port[0] != "0" and int(port) <= 65535):
        return f"has port {port!r}, but a port is a number from 1 to 65535"
    return None


def _hostname_problem(host: str) -> str | None:
    wildcard = host.startswith("*.")
    name = host[2:] if wildcard else host
    if "*" in name:
        return "may use '*' only as the whole first label, as in '*.example.com'"
    if not name:
        return "has no host name"
    labels = name.split(".")
    if all(_is_decimal(label) for label in labels):
        if wildcard:
            return "puts a wildcard in front of an IP address"
        return None if _is_ipv4(labels) else "is not a valid IPv4 address"
    if len(name) > 253:
        return "has a host name longer than 253 characters"
    for label in labels:
        if not label:
            return "has an empty label (a dot at either end, or two in a row)"
        if len(label) > 63:
            return "has a label longer than 63 characters"
        if not all(c in _HOST_CHARS for c in label):
            return "is not a host name (use a-z, 0-9, '-' and dots; punycode for others)"
        if label[0] == "-" or label[-1] == "-":
            return "has a label that starts or ends with '-'"
    return None


def _is_decimal(text: str) -> bool:
    return text.isascii() and text.isdigit()


def _is_ipv4(parts: list[str]) -> bool:
    return len(parts) == 4 and all(
        (part == "0" or part[0] != "0") and int(part) <= 255 for part in parts
    )


def _is_ipv6(text: str) -> bool:
    if ":" not in text or "%" in text:  # zone ids ("fe80::1%eth0") name a local interface
        return False
    import ipaddress

    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return False
    return True
