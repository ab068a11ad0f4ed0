"""uv's project workflow, confined: ``safe-pip lock``, ``add`` and ``remove``.

``uv lock`` (and ``uv add``, which locks) builds the metadata of every sdist it meets,
so running it bare runs package code unconfined.  Here:

* **lock** — ``uv lock`` runs in the build sandbox on a *copy* of the project (its
  tree without ``.git``, venvs and build output): metadata builds can write only
  there and in private scratch, reach only the indexes, see no home.  The one thing
  that comes back is ``uv.lock``: read without following links, parsed as TOML,
  then written over the project's own atomically.  A sandbox that rewrote
  ``pyproject.toml`` in its copy changes nothing outside.
* **add / remove** — the edit of ``pyproject.toml`` is uv's own (``uv add --frozen``
  / ``uv remove --frozen``: no resolution, no build, no network), also on a copy in
  the sandbox (uv asks an interpreter about itself, and a venv's interpreter runs
  its ``*.pth`` code); the edited file is taken only when nothing but the one
  dependency list changed, and that list gained or lost exactly the names asked
  for.  Only requirements from an index: a path, URL or git requirement would need a
  metadata build to learn its name, so it is refused with a sentence.  Then lock
  (sandboxed, as above), then, as ``uv add`` does, a requirement given without a
  version gets the locked version as its lower bound and the project is locked once
  more; then sync.
"""

from __future__ import annotations

import os
import sys

from safe_pip.errors import SafePipError
from safe_pip.installer.sandboxed_uv import index_arguments, run_uv_sandboxed
from safe_pip.launcher.scratch import make_private_dir, remove_tree

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence

    from safe_pip.credentials.phantom import ArmedCredential

__all__ = ["edit_dependencies", "lock_project", "locked_versions", "registry_requirement"]

LOCK = "uv.lock"
_MAX_LOCK = 64 << 20


def lock_project(
    project_dir: str,
    *,
    python: str,
    index_urls: Sequence[str],
    credentials: Sequence[ArmedCredential] = (),
    extra_hosts: Sequence[str] = (),
    allow_degraded: bool = False,
    check: bool = False,
    uv_flags: Sequence[str] = (),
    quiet: bool = False,
) -> None:
    """Lock ``project_dir`` (``check``: only verify that ``uv.lock`` is up to date);
    raises SafePipError with uv's reason shown above it.  Nothing runs when an earlier
    lock left these very files up to date (installer/fresh_locks.py)."""
    from safe_pip.installer import fresh_locks
    from safe_pip.installer.build import _copy_project
    from safe_pip.policy.trust import state_root

    state = state_root(os.path.expanduser("~"), os.environ)
    inputs = [python, *index_arguments(index_urls), *uv_flags]
    if fresh_locks.is_fresh(state, fresh_locks.digest(project_dir, inputs)):
        return
    private_dir = make_private_dir()
    try:
        copy = _copy_project(project_dir, os.path.join(private_dir, "project"))
        argv = ["lock", "--project", copy, "--python", python, *index_arguments(index_urls)]
        argv += [*uv_flags, *(["--check"] if check else []), *(["--quiet"] if quiet else [])]
        code = run_uv_sandboxed(
            argv,
            python=python,
            private_dir=private_dir,
            reads=(copy,),
            writes=(copy,),
            index_urls=index_urls,
            extra_hosts=extra_hosts,
            allow_degraded=allow_degraded,
            credentials=credentials,
        )
        if check:
            if code != 0:
                raise SafePipError(
                    f"{os.path.join(project_dir, LOCK)} is not up to date with pyproject.toml "
                    "(--locked); run 'safe-pip lock' to update it"
                )
        elif code != 0:
            raise SafePipError("locking failed (see uv's message above)")
        else:
            _take_lock(os.path.join(copy, LOCK), os.path.join(project_dir, LOCK))
        fresh_locks.remember(state, fresh_locks.digest(project_dir, inputs, files_in=copy))
    finally:
        remove_tree(private_dir)


def _take_lock(source: str, target: str) -> None:
    """Copy the sandbox's ``uv.lock`` over the project's, checked, atomically."""
    import tempfile

    data = _read_written(source, _MAX_LOCK, f"the {LOCK} uv wrote")
    parsed = _parse_toml(data)
    if not isinstance(parsed.get("version"), int) or not isinstance(
        parsed.get("package", []), list
    ):
        raise SafePipError(f"the {LOCK} uv wrote does not look like a uv lock file; not taken")
    directory = os.path.dirname(target)
    fd, temporary = tempfile.mkstemp(prefix=".uv.lock.", dir=directory)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(temporary, 0o644)
        os.replace(temporary, target)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise


def _parse_toml(data: bytes) -> dict[str, object]:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - exercised on 3.10 only
        import tomli as tomllib
    try:
        return tomllib.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise SafePipError(f"the {LOCK} uv wrote is not valid TOML ({exc}); not taken") from None


def locked_versions(project_dir: str) -> dict[str, str]:
    """Normalised name → version of every package in the project's ``uv.lock``."""
    from packaging.utils import canonicalize_name

    from safe_pip.bounded import read_regular_file

    parsed = _parse_toml(read_regular_file(os.path.join(project_dir, LOCK), _MAX_LOCK))
    found: dict[str, str] = {}
    packages = parsed.get("package")
    for entry in packages if isinstance(packages, list) else []:
        if isinstance(entry, dict) and isinstance(entry.get("name"), str):
            version = entry.get("version")
            if isinstance(version, str):
                found[str(canonicalize_name(entry["name"]))] = version
    return found


def registry_requirement(text: str) -> tuple[str, bool]:
    """(normalised name, has a version specifier) of a requirement that comes from an
    index; SafePipError for anything else."""
    from packaging.requirements import InvalidRequirement, Requirement
    from packaging.utils import canonicalize_name

    try:
        requirement = Requirement(text)
    except InvalidRequirement:
        requirement = None
    if requirement is None or requirement.url is not None or text.startswith((".", "/", "~")):
        raise SafePipError(
            f"{text!r}: safe-pip add takes requirements from an index; a path, URL or git "
            "dependency would need a metadata build to be named (add it to pyproject.toml "
            "yourself, then run 'safe-pip lock')"
        )
    return str(canonicalize_name(requirement.name)), bool(requirement.specifier)


def edit_dependencies(
    project_dir: str,
    verb: str,
    requirements: Sequence[str],
    *,
    python: str,
    allow_degraded: bool = False,
    dev: bool = False,
    group: str | None = None,
    optional: str | None = None,
) -> None:
    """``uv add --frozen`` / ``uv remove --frozen`` on a copy of the project, in the
    build sandbox without network: uv edits the copy's pyproject.toml (no resolution,
    no build; but uv asks an interpreter about itself, and a venv's interpreter runs
    its ``*.pth`` code).  The edit is taken only if it changed nothing but the one
    dependency list, and that list gained (or lost) exactly the names asked for."""
    from safe_pip.installer.build import _copy_project

    names = [registry_requirement(r)[0] for r in requirements] if verb == "add" else []
    private_dir = make_private_dir()
    try:
        copy = _copy_project(project_dir, os.path.join(private_dir, "project"))
        argv = [verb, "--frozen", "--offline", "--quiet", "--project", copy, "--python", python]
        if dev:
            argv.append("--dev")
        if group is not None:
            argv += ["--group", group]
        if optional is not None:
            argv += ["--optional", optional]
        code = run_uv_sandboxed(
            [*argv, "--", *requirements],
            python=python,
            private_dir=private_dir,
            reads=(copy,),
            writes=(copy,),
            index_urls=(),  # no network at all
            allow_degraded=allow_degraded,
        )
        if code != 0:
            raise SafePipError(f"uv could not {verb} that (see its message above)")
        original = os.path.join(project_dir, "pyproject.toml")
        with open(original, "rb") as handle:
            before = handle.read()
        after = _read_written(
            os.path.join(copy, "pyproject.toml"), _MAX_LOCK, "uv's pyproject.toml"
        )
        where = (
            ("dependency-groups", group or "dev")
            if dev or group
            else (
                ("project", "optional-dependencies", optional)
                if optional
                else ("project", "dependencies")
            )
        )
        _check_edit(before, after, where, verb, names, requirements)
        _replace(original, after)
    finally:
        remove_tree(private_dir)


def _read_written(path: str, limit: int, what: str) -> bytes:
    """A file the sandbox wrote: a regular file (no link followed) within ``limit``."""
    from safe_pip.bounded import read_regular_file

    try:
        return read_regular_file(path, limit, follow_links=False)
    except OSError as exc:
        raise SafePipError(f"{what} is not usable ({exc.strerror or exc}); not taken") from None


def _dig(data: dict[str, object], path: Sequence[str]) -> object:
    node: object = data
    for key in path:
        node = node.get(key) if isinstance(node, dict) else None
    return node


def _without(data: dict[str, object], path: Sequence[str]) -> dict[str, object]:
    """A deep copy of ``data`` without the entry at ``path`` (and without the tables
    that only existed to hold it)."""
    import copy

    pruned = copy.deepcopy(data)
    parents = [pruned]
    for key in path[:-1]:
        child = parents[-1].get(key)
        if not isinstance(child, dict):
            return pruned
        parents.append(child)
    parents[-1].pop(path[-1], None)
    for depth in range(len(path) - 1, 0, -1):
        if not parents[depth]:
            parents[depth - 1].pop(path[depth - 1], None)
    return pruned


def _names(value: object) -> list[str]:
    from packaging.requirements import InvalidRequirement, Requirement
    from packaging.utils import canonicalize_name

    names = []
    for item in value if isinstance(value, list) else []:
        try:
            names.append(str(canonicalize_name(Requirement(str(item)).name)))
        except InvalidRequirement:
            names.append(f"<unreadable {item!r}>")
    return names


def _check_edit(
    before: bytes,
    after: bytes,
    where: Sequence[str],
    verb: str,
    added: Sequence[str],
    asked: Sequence[str],
) -> None:
    """Refuse an edit that touched more than ``where``, or not the way asked."""
    old, new = _parse_toml(before), _parse_toml(after)
    if _without(old, where) != _without(new, where):
        raise SafePipError(
            f"uv {verb} changed pyproject.toml outside {'.'.join(where)}; the change was not taken"
        )
    old_names, new_names = _names(_dig(old, where)), _names(_dig(new, where))
    if verb == "add":
        expected = set(old_names) | set(added)
        ok = set(new_names) == expected
    else:
        from packaging.utils import canonicalize_name

        gone = {str(canonicalize_name(name)) for name in asked}
        ok = set(new_names) == set(old_names) - gone
    if not ok:
        raise SafePipError(
            f"uv {verb} did not change {'.'.join(where)} as asked; the change was not taken"
        )


def _replace(path: str, data: bytes) -> None:
    import tempfile

    mode = os.stat(path).st_mode & 0o777
    fd, temporary = tempfile.mkstemp(prefix=".pyproject.", dir=os.path.dirname(path))
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise
