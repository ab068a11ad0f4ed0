"""Turn filesystem grants and exclusions into a Landlock rule list ("carving").

A Landlock right on a directory applies to everything beneath it, and rules only
ever add rights (before ABI 8 there is no way to stop inheritance).  So a deny path
or a protected (read-only) path *under* a broader grant cannot be expressed as an
extra rule.  Instead we carve: rather than granting the parent, we grant each child
entry separately and descend only along the ancestors of the excluded path.

    read ~, deny ~/.ssh      ->  ~ READ_DIR, ~/.bashrc READ, ~/src READ, ... (no ~/.ssh)

Rules for the carving:

* The directories between a grant and an excluded path get ``cap | READ_DIR``:
  only ``READ_DIR`` above a deny path (names stay listable: in this fallback mode
  the *names* under an ancestor of a denied path, including the entries of a
  denied directory itself, can be listed; contents cannot be read), and read
  rights above a protected path.
* Symlinks met while scanning are never granted: ``O_PATH`` follows them, so a
  link to ``/`` would grant the whole filesystem.  Access through a link is
  checked against its target's own rules anyway.
* All paths are resolved (``realpath``) first, because Landlock judges the real
  location of an inode: a grant on ``/lib64`` lands on ``/usr/lib64``, and a deny
  on a symlink must protect what it points to.
* Only directories on the way to an exclusion are listed, so the scan stays small.

Missing paths: grants and deny paths that do not exist are skipped (Landlock rules
attach to existing inodes; a deny on a missing path has nothing to hide).  A
missing *protected* path is kept, so its nearest existing ancestor loses the right
to create it (``.git/hooks`` absent must not let code create ``.git/hooks/x``).
A *sealed* directory is carved the same way around a name that cannot exist: it
takes no new entries and loses none, and each entry it holds keeps its rights.
Hard links to a denied file that already exist elsewhere under a grant, and bind
mounts, cannot be detected here.
"""

from __future__ import annotations

import os

from safe_pip._records import record
from safe_pip.policy.model import is_within
from safe_pip.sandbox.landlock import FILE_ONLY, READ, WRITE, AccessFs, fs_access_for_abi

__all__ = ["FsGrants", "Rule", "fs_rules_summary", "landlock_rules", "protected_in_reach"]

Rule = tuple[str, AccessFs]
# An exclusion: a resolved path and the most it may still be granted (its "cap").
_Exclusion = tuple[str, AccessFs]

_DEVICE_RW = AccessFs.READ_FILE | AccessFs.WRITE_FILE | AccessFs.IOCTL_DEV
#: Appended to a sealed directory: an exclusion "inside" it that can never exist.
_SEAL = "/\0sealed"
_WRITE_KINDS = int(WRITE) & ~int(READ)


@record
class FsGrants:
    """Absolute paths (strings) by kind of access; the launcher builds this from the policy."""

    #: read + execute
    read: tuple[str, ...] = ()
    #: every right the ABI offers (read, write, execute, REFER, TRUNCATE, IOCTL_DEV)
    write: tuple[str, ...] = ()
    #: nothing at all; wins over every grant at any nesting
    deny: tuple[str, ...] = ()
    #: read-only even under a write grant
    protected: tuple[str, ...] = ()
    #: device files such as /dev/null: read/write/ioctl, no directory rights
    devices_rw: tuple[str, ...] = ()
    #: directories that take no new entries (and lose none), while what they already
    #: hold keeps its rights: a venv's site-packages, where a new ``.pth`` would run at
    #: every later start of the venv's Python.  Enforced in both modes.
    sealed: tuple[str, ...] = ()


def landlock_rules(grants: FsGrants, abi: int, *, carve_protected: bool) -> list[Rule]:
    """The ``(path, rights)`` rules that enforce ``grants`` on Landlock ABI ``abi``.

    With ``carve_protected=False`` protected paths are left to another layer (the
    mount namespace binds them read-only) and only deny paths and sealed directories
    are carved (no mount can seal a directory).
    """
    everything = fs_access_for_abi(abi)
    exclusions = _exclusions(grants, everything, carve_protected=carve_protected)
    rules: dict[str, AccessFs] = {}
    for path, rights in _grant_rights(grants, everything).items():
        capped = _cap_from_enclosing(path, rights, exclusions)
        if capped:
            _carve(path, capped, _relevant(path, capped, exclusions), rules)
    return list(rules.items())


def fs_rules_summary(rules: list[Rule]) -> list[str]:
    """One readable line per rule for ``--explain``: kind, path, exact rights."""
    return [f"{_kind(rights):<5} {path}  [{_names(rights)}]" for path, rights in rules]


# --------------------------------------------------------------------------- inputs


def _resolve(path: str) -> str:
    """The real location of ``path``; Landlock judges inodes, not spellings."""
    if not os.path.isabs(path):
        raise ValueError(f"filesystem grant paths must be absolute: {path}")
    return os.path.realpath(path)


def _grant_rights(grants: FsGrants, everything: AccessFs) -> dict[str, AccessFs]:
    """Existing granted paths with their combined rights (write beats read)."""
    kinds = (
        (grants.read, READ),
        (grants.write, everything),
        (grants.devices_rw, _DEVICE_RW),
    )
    merged: dict[str, AccessFs] = {}
    for paths, rights in kinds:
        for path in paths:
            real = _resolve(path)
            if os.path.exists(real):
                merged[real] = merged.get(real, AccessFs(0)) | (rights & everything)
    return merged


def _exclusions(
    grants: FsGrants, everything: AccessFs, *, carve_protected: bool
) -> list[_Exclusion]:
    """Deny paths (cap: nothing) and, if asked, protected paths (cap: read)."""
    caps: dict[str, AccessFs] = {}
    for path in grants.deny:
        real = _resolve(path)
        if os.path.lexists(real):
            caps[real] = AccessFs(0)
    if carve_protected:
        for path in protected_in_reach(grants):
            real = _resolve(path)
            caps[real] = caps.get(real, everything) & READ
    for path in grants.sealed:
        # A name no file can have, protected: carving takes the right to create (and
        # remove, and rename) from the directory that would hold it, and grants each
        # existing entry separately, with its own rights intact.
        real = _resolve(path)
        if os.path.isdir(real):
            caps[real + _SEAL] = READ
    return list(caps.items())


def protected_in_reach(grants: FsGrants) -> list[str]:
    """The protected paths that lie under a write grant: only those need enforcing.

    The protected list is long (``base`` names every shell start-up file) and most
    runs grant no writes beyond their scratch space, so this filter keeps start-up
    from resolving dozens of paths for nothing.  A path counts when it is under a
    grant as spelled, or when its directory really is (symlinks resolved, once per
    directory).
    """
    key = (grants.write, grants.protected)
    cached = _IN_REACH.get(key)
    if cached is not None:
        return cached
    writes = [*grants.write, *(os.path.realpath(w) for w in grants.write if os.path.isabs(w))]
    parents: dict[str, str] = {}
    found: list[str] = []
    for path in grants.protected:
        if any(is_within(path, root) for root in writes):
            found.append(path)
            continue
        parent, _, name = path.rpartition("/")
        real_parent = parents.get(parent)
        if real_parent is None:
            real_parent = parents[parent] = os.path.realpath(parent or "/")
        real = real_parent.rstrip("/") + "/" + name
        if any(is_within(real, root) for root in writes):
            found.append(path)
    _IN_REACH.clear()  # one run, one set of grants: keep the last answer only
    _IN_REACH[key] = found
    return found


#: The last :func:`protected_in_reach` answer: the supervisor asks for the mount plan
#: and for each mode's rules, with the same grants.
_IN_REACH: dict[tuple[tuple[str, ...], tuple[str, ...]], list[str]] = {}


# --------------------------------------------------------------------------- carving


def _strictly_within(path: str, ancestor: str) -> bool:
    return path != ancestor and is_within(path, ancestor)


def _cap_from_enclosing(path: str, rights: AccessFs, exclusions: list[_Exclusion]) -> AccessFs:
    """A grant at or beneath an excluded path gets at most that path's cap."""
    for excluded, cap in exclusions:
        if is_within(path, excluded):
            rights &= cap
    return rights


def _relevant(path: str, rights: AccessFs, exclusions: list[_Exclusion]) -> list[_Exclusion]:
    """Exclusions strictly beneath ``path`` that would take something from ``rights``."""
    return [
        (excluded, cap)
        for excluded, cap in exclusions
        if _strictly_within(excluded, path) and int(rights) & ~int(cap)
    ]


def _carve(
    path: str, rights: AccessFs, below: list[_Exclusion], rules: dict[str, AccessFs]
) -> None:
    """Grant ``rights`` on ``path`` minus what the exclusions ``below`` forbid."""
    is_dir = os.path.isdir(path)
    if not below or not is_dir:
        # Nothing to carve, or a file, under which nothing can exist or be created.
        _emit(rules, path, rights, is_dir=is_dir)
        return
    own = rights
    for _, cap in below:
        own &= cap | AccessFs.READ_DIR
    _emit(rules, path, own, is_dir=True)
    for entry in _entries(path):
        _carve_entry(entry, rights, below, rules)


def _carve_entry(
    entry: os.DirEntry[str], rights: AccessFs, below: list[_Exclusion], rules: dict[str, AccessFs]
) -> None:
    """One child of a carved directory: skip links, cap exclusions, recurse on ancestors."""
    if entry.is_symlink():
        return
    child = entry.path
    for excluded, cap in below:
        if excluded == child:
            rights &= cap
    if not rights:
        return
    deeper = _relevant(child, rights, below)
    if deeper:
        _carve(child, rights, deeper, rules)
    else:
        _emit(rules, child, rights, is_dir=entry.is_dir(follow_symlinks=False))


def _entries(path: str) -> list[os.DirEntry[str]]:
    """The entries of a directory on the way to an exclusion.

    If it cannot be listed, its children get no rule: failing closed costs access,
    never secrecy.
    """
    try:
        with os.scandir(path) as it:
            return list(it)
    except OSError:
        return []


def _emit(rules: dict[str, AccessFs], path: str, rights: AccessFs, *, is_dir: bool) -> None:
    """Record a rule; non-directories only take file rights; same path rules merge."""
    if not is_dir:
        rights &= FILE_ONLY
    if rights:
        rules[path] = rules.get(path, AccessFs(0)) | rights


# --------------------------------------------------------------------------- summary


def _kind(rights: AccessFs) -> str:
    """A one-word class for a rule: write, read, list, or other."""
    if int(rights) & _WRITE_KINDS:
        return "write"
    if rights & (AccessFs.READ_FILE | AccessFs.EXECUTE):
        return "read"
    if rights & AccessFs.READ_DIR:
        return "list"
    return "other"


def _names(rights: AccessFs) -> str:
    """The exact rights, lower-case, in bit order (stable across Python versions)."""
    return ",".join(name.lower() for name in AccessFs(rights).names())
