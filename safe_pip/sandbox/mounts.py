"""Build a private root file system from an allowlist and pivot into it.

The model is bubblewrap's: the new root starts as an empty tmpfs and only what the
plan grants is bind-mounted into it, each path at its own (real) location.  Anything
not granted is not hidden or blocked but simply *absent* — ``stat`` says ENOENT, which
programs cope with far better than EACCES, and nothing about it leaks (not even that
it exists).

How it is built, and why in this order:

1. ``/`` is made recursively private, so none of our mounts propagate back to the
   host's mount namespace.
2. A staging tmpfs is mounted over ``/tmp`` (harmless: it is our own mount namespace)
   and we ``pivot_root`` into it with the host root moved to ``/oldroot``.  From then
   on every host path ``P`` is read as ``/oldroot/P`` — including paths under the
   host's ``/tmp``, which the staging tmpfs no longer shadows after the pivot.  The
   new root is a second tmpfs at ``/newroot``.
3. Operations run in path order (parents first); at one path fresh file systems come
   before binds, write binds before the read-only overlays (protected, deny) that sit
   on top of them.  Mount points are created only inside our own tmpfs areas: a bind
   area is the host's own tree, and creating a directory there would write to the
   host (or fail on a read-only bind).  procfs is mounted here too, while the host's
   /proc is still in the namespace: the kernel refuses a new procfs in a user
   namespace (EPERM) unless a fully visible one already exists there.
4. ``pivot_root(".", ".")`` into ``/newroot`` and a lazy unmount of what lies
   beneath drop the staging tmpfs and the whole host tree in one go.  Finally the
   root tmpfs itself is made read-only, so the sandbox cannot create files in ``/``.

All host lookups (symlinks, existence) happen first, in :func:`prepare_root`, which
the supervisor can call before it forks; the child then only replays mounts.

What holds the denials afterwards: a mount point cannot be unlinked, renamed or
replaced (EBUSY), and a read-only bind refuses writes (EROFS), whatever the uid.
Renaming an *ancestor* of a mount point is allowed, though, and carries the mount
along — so every directory between a protected path and its writable bind is pinned
(made a mount point itself), or ``mv .git x && mkdir -p .git/hooks`` would plant a
writable hooks directory at the path git reads.  A process with CAP_SYS_ADMIN in the
sandbox's user namespace could still unmount the overlays; the launcher therefore
drops every capability (:func:`safe_pip.sandbox.namespaces.drop_capabilities`) and
seccomp forbids mount/umount/pivot_root and new namespaces before the target runs.

``/dev`` is a read-only tmpfs holding binds of the host's null, zero, full, random,
urandom and tty nodes (a tmpfs mounted in a user namespace cannot hold working device
nodes, and mknod is not allowed there anyway), the usual fd/std* symlinks, a
private ``/dev/shm`` and a *new* devpts instance.  The host's ``/dev/pts`` is not
bound: inherited terminal descriptors work without any path, ``/dev/tty`` is resolved
by the tty layer from the process's controlling terminal (not through /dev/pts), and
a bind would let the sandbox open the user's other terminals.  The one loss is that
``ttyname()`` cannot name an inherited host terminal.

Known limits, by design of mounts in general: a path that does not exist when the
root is built cannot be protected (there is nothing to mount over); hard links or
other bind mounts that reach a denied file through another granted path are not
found; pinned directories cannot be renamed or removed by the sandbox; and a
read-only bind does not stop ``connect()`` to a unix socket inside it (the kernel
checks write permission on the socket inode, not on the mount), so socket
directories must stay out of the plan.
"""

from __future__ import annotations

import ctypes
import errno
import os
import stat

from safe_pip._records import record

__all__ = ["MountError", "MountPlan", "PreparedRoot", "enter_private_root", "prepare_root"]

# <linux/mount.h>
_MS_RDONLY = 0x1
_MS_NOSUID = 0x2
_MS_NODEV = 0x4
_MS_NOEXEC = 0x8
_MS_REMOUNT = 0x20
_MS_NOATIME = 0x400
_MS_NODIRATIME = 0x800
_MS_BIND = 0x1000
_MS_REC = 0x4000
_MS_PRIVATE = 0x40000
_MS_RELATIME = 0x200000
_MNT_DETACH = 0x2

# mount_setattr(2), Linux 5.12+: same number on x86_64 and aarch64.
_SYS_MOUNT_SETATTR = 442
_MOUNT_ATTR_RDONLY = 0x1
_MOUNT_ATTR_NOSUID = 0x2
_AT_FDCWD = -100
_AT_SYMLINK_NOFOLLOW = 0x100
_AT_NO_AUTOMOUNT = 0x800
_AT_RECURSIVE = 0x8000
_MACHINE = os.uname().machine
_PIVOT_ROOT_NR = {"x86_64": 155, "aarch64": 41}.get(_MACHINE)

# statvfs flag -> mount flag that a read-only remount must carry over.  In a user
# namespace the flags of mounts inherited from the host are locked: a remount that
# would clear nosuid/nodev/noexec (or change atime handling) fails with EPERM.
_CARRIED_FLAGS = (
    (os.ST_NOSUID, _MS_NOSUID),
    (os.ST_NODEV, _MS_NODEV),
    (os.ST_NOEXEC, _MS_NOEXEC),
    (os.ST_NOATIME, _MS_NOATIME),
    (os.ST_NODIRATIME, _MS_NODIRATIME),
    (os.ST_RELATIME, _MS_RELATIME),
)

# Where the staging tmpfs goes: any existing directory works (see the module doc).
_STAGE_CANDIDATES = ("/tmp", "/mnt", "/var/tmp", "/run", "/dev")
_OLD = "/oldroot"
_NEW = "/newroot"
_EMPTY_FILE = "/empty"

# Device nodes bound from the host into the minimal /dev.  tty is the alias for the
# caller's controlling terminal, resolved by the tty layer and not through /dev/pts.
_DEV_NODES = ("null", "zero", "full", "random", "urandom", "tty")
_DEV_LINKS = (
    ("fd", "/proc/self/fd"),
    ("stdin", "/proc/self/fd/0"),
    ("stdout", "/proc/self/fd/1"),
    ("stderr", "/proc/self/fd/2"),
    ("ptmx", "pts/ptmx"),
)
# Parts of a fresh procfs that are still global (sysctls, sysrq, irq affinity, bus
# devices): made read-only, because with the root mapping uid 0 inside is the host's
# uid 0, which owner permissions alone let write many sysctls.
_PROC_READONLY = ("sys", "sysrq-trigger", "irq", "bus")

# Operation ranks: the order of operations that share one path.
_FRESH = 0  # a new file system: tmpfs, proc, devpts
_BIND_RW = 1
_PIN = 2  # writable self-bind of a directory so that it cannot be renamed
_BIND_RO = 3
_PROTECT = 4
_DENY = 5

_SYMLINK_HOPS = 40


class MountError(OSError):
    """Building the private root failed; the message names the path.

    The process is then half-way through the construction and must exit; there is no
    undo, and none is needed since all of it lives in the process's own namespace.
    """


@record
class MountPlan:
    """What the private root contains; host paths appear at their own location.

    ``read``/``write`` are recursive binds (read-only / writable); ``deny`` hides a
    path that lies under one of them (an empty read-only tmpfs over a directory, an
    empty read-only file over anything else) and removes any grant at or below it —
    deny always wins; ``protected`` stays read-only under a writable bind;
    ``tmpfs`` are fresh private writable file systems (``/tmp``); ``proc`` mounts a
    procfs of the sandbox's own pid namespace; ``dev`` builds a minimal ``/dev``;
    ``workdir`` is the directory to start in.  All paths must be absolute; missing
    ones (or ones this user cannot reach) are skipped.
    """

    read: tuple[str, ...] = ()
    write: tuple[str, ...] = ()
    deny: tuple[str, ...] = ()
    protected: tuple[str, ...] = ()
    tmpfs: tuple[str, ...] = ()
    proc: bool = True
    dev: bool = True
    workdir: str | None = None


class _Op:
    """One mount of the program: where, what kind, from where, inside which area."""

    __slots__ = ("action", "dest", "in_tmpfs", "is_dir", "rank", "source")

    def __init__(self, rank: int, action: str, dest: str, source: str, is_dir: bool) -> None:
        self.rank = rank
        self.action = action  # tmpfs, devtmpfs, shm, proc, devpts, bind, deny-dir, deny-file
        self.dest = dest
        self.source = source
        self.is_dir = is_dir
        self.in_tmpfs = False  # set once the covering mount is known


class PreparedRoot:
    """A plan resolved against the host: the ordered mounts and symlinks to make.

    Made by :func:`prepare_root`; opaque to callers.  Preparing in the supervisor,
    before forking, keeps every host lookup out of the child's start-up path (a fresh
    fork pays copy-on-write faults for each first touch) and resolves paths with the
    host view, before any namespace exists.
    """

    __slots__ = ("dev", "links", "ops", "proc", "workdir")

    def __init__(self) -> None:
        self.ops: list[_Op] = []
        self.links: list[tuple[str, str]] = []
        self.dev = False
        self.proc = False
        self.workdir: str | None = None


class _MountAttr(ctypes.Structure):
    _fields_ = (
        ("attr_set", ctypes.c_uint64),
        ("attr_clr", ctypes.c_uint64),
        ("propagation", ctypes.c_uint64),
        ("userns_fd", ctypes.c_uint64),
    )


class _Calls:
    """The four kernel entry points, bound once with full C prototypes.

    ``syscall(2)`` is variadic, but on the supported ABIs (x86_64, aarch64) variadic
    integer and pointer arguments travel exactly like named ones, so binding it to a
    fixed prototype per use is sound — and saves wrapping every argument in a ctypes
    object on each of the few dozen calls of the start-up path.
    """

    __slots__ = ("mount", "mount_setattr", "nosuid_attr", "pivot_root", "rdonly_attr", "umount2")

    def __init__(self) -> None:
        lib = ctypes.CDLL(None, use_errno=True)
        c_char_p, c_int, c_long = ctypes.c_char_p, ctypes.c_int, ctypes.c_long
        self.mount = ctypes.CFUNCTYPE(
            c_int, c_char_p, c_char_p, c_char_p, ctypes.c_ulong, c_char_p, use_errno=True
        )(("mount", lib))
        self.umount2 = ctypes.CFUNCTYPE(c_int, c_char_p, c_int, use_errno=True)(("umount2", lib))
        self.pivot_root = ctypes.CFUNCTYPE(c_long, c_long, c_char_p, c_char_p, use_errno=True)(
            ("syscall", lib)
        )
        self.mount_setattr = ctypes.CFUNCTYPE(
            c_long,
            c_long,
            c_int,
            c_char_p,
            ctypes.c_uint,
            ctypes.POINTER(_MountAttr),
            ctypes.c_size_t,
            use_errno=True,
        )(("syscall", lib))
        self.rdonly_attr = _MountAttr(_MOUNT_ATTR_RDONLY | _MOUNT_ATTR_NOSUID, 0, 0, 0)
        self.nosuid_attr = _MountAttr(_MOUNT_ATTR_NOSUID, 0, 0, 0)


_calls_cache: _Calls | None = None
#: None until the first read-only remount tells whether mount_setattr(2) exists.
_have_mount_setattr: bool | None = None


def _calls() -> _Calls:
    global _calls_cache
    if _calls_cache is None:
        _calls_cache = _Calls()
    return _calls_cache


def _error(err: int, what: str, path: str) -> MountError:
    """A MountError whose message shows the host/sandbox path, not our staging path."""
    for prefix in (_NEW, _OLD):
        if path.startswith(prefix + "/") or path == prefix:
            path = path[len(prefix) :] or "/"
            break
    return MountError(err, f"{what} {path}: {os.strerror(err)}")


def _mount(
    source: str | None, target: str, fstype: str | None, flags: int, data: str | None, what: str
) -> None:
    result = _calls().mount(
        None if source is None else os.fsencode(source),
        os.fsencode(target),
        None if fstype is None else fstype.encode(),
        flags,
        None if data is None else data.encode(),
    )
    if result != 0:
        raise _error(ctypes.get_errno(), what, target)


def _pivot_root(new_root: str, put_old: str) -> None:
    if _PIVOT_ROOT_NR is None:
        raise MountError(errno.ENOSYS, f"pivot_root: unsupported machine {_MACHINE}")
    result = _calls().pivot_root(_PIVOT_ROOT_NR, new_root.encode(), put_old.encode())
    if result != 0:
        raise _error(ctypes.get_errno(), "pivot_root into", new_root)


def _umount_detach(target: str) -> None:
    if _calls().umount2(os.fsencode(target), _MNT_DETACH) != 0:
        raise _error(ctypes.get_errno(), "detaching", target)


def _carried_flags(path: str) -> int:
    f_flag = os.statvfs(path).f_flag
    flags = 0
    for st_flag, ms_flag in _CARRIED_FLAGS:
        if f_flag & st_flag:
            flags |= ms_flag
    return flags


def _unescape_mountinfo(field: str) -> str:
    """Undo the kernel's octal escapes (``\\040`` for space) in a mountinfo field."""
    if "\\" not in field:
        return field
    out = bytearray()
    raw = os.fsencode(field)
    i = 0
    while i < len(raw):
        if raw[i] == 0x5C and raw[i + 1 : i + 4].isdigit() and len(raw[i + 1 : i + 4]) == 3:
            out.append(int(raw[i + 1 : i + 4], 8))
            i += 4
        else:
            out.append(raw[i])
            i += 1
    return os.fsdecode(bytes(out))


def _submounts(path: str) -> list[str]:
    """Mount points strictly below ``path``, parents first (legacy read-only path)."""
    prefix = path.rstrip("/") + "/"
    found = []
    with open(_OLD + "/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as f:
        for line in f:
            fields = line.split(" ", 5)
            if len(fields) < 5:
                continue
            point = _unescape_mountinfo(fields[4])
            if point.startswith(prefix):
                found.append(point)
    return sorted(set(found), key=lambda p: p.count("/"))


def _make_readonly(path: str, recursive: bool, *, readonly: bool = True) -> None:
    """Make the mount at ``path`` (and, if ``recursive``, every mount below) read-only
    and nosuid; with ``readonly=False`` only nosuid.

    nosuid: a file the sandbox marks setuid must not run setuid through our mounts
    (seccomp already refuses the bit; this is the second wall, bubblewrap's default).

    Preferred: one ``mount_setattr(AT_RECURSIVE, MOUNT_ATTR_RDONLY|MOUNT_ATTR_NOSUID)``,
    which only sets those bits, so the locked nodev/noexec flags of host mounts are
    left alone, and which also reaches submounts that a recursive bind brought along
    (a plain remount would leave those writable).  Kernels before 5.12 lack it: then
    each mount is remounted ``MS_REMOUNT|MS_BIND|MS_RDONLY|MS_NOSUID`` carrying its
    current flags (read with statvfs) — omit one and a user namespace answers EPERM.
    """
    global _have_mount_setattr
    what = "making read-only" if readonly else "making nosuid"
    if _have_mount_setattr is not False:
        calls = _calls()
        flags = _AT_SYMLINK_NOFOLLOW | _AT_NO_AUTOMOUNT | (_AT_RECURSIVE if recursive else 0)
        result = calls.mount_setattr(
            _SYS_MOUNT_SETATTR,
            _AT_FDCWD,
            os.fsencode(path),
            flags,
            calls.rdonly_attr if readonly else calls.nosuid_attr,
            ctypes.sizeof(_MountAttr),
        )
        if result == 0:
            _have_mount_setattr = True
            return
        err = ctypes.get_errno()
        if err != errno.ENOSYS:
            raise _error(err, what, path)
        _have_mount_setattr = False
    targets = [path, *_submounts(path)] if recursive else [path]
    wanted = _MS_NOSUID | (_MS_RDONLY if readonly else 0)
    for target in targets:
        try:
            flags = _MS_REMOUNT | _MS_BIND | wanted | _carried_flags(target)
        except OSError as exc:
            raise _error(exc.errno or errno.EIO, "reading mount flags of", target) from None
        _mount(None, target, None, flags, None, what)


# --------------------------------------------------------------------------- planning


def _key(path: str) -> list[str]:
    """Sort key that puts parents before children and is independent of input order."""
    return path.split("/")


def _parent(path: str) -> str:
    return path[: path.rfind("/")] or "/"


def _absolute(path: str, role: str) -> str:
    if not path.startswith("/"):
        raise MountError(errno.EINVAL, f"mount plan {role} path {path!r} is not absolute")
    return path


def _under(path: str, roots: set[str]) -> bool:
    """Is ``path`` one of ``roots`` or inside one of them?"""
    if not roots:
        return False
    while True:
        if path in roots:
            return True
        if path == "/":
            return False
        path = _parent(path)


def _cover(path: str, mounted: dict[str, _Op]) -> _Op | None:
    """The mount whose area ``path`` lies in, not counting a mount at ``path`` itself.

    None means the root tmpfs.
    """
    while path != "/":
        path = _parent(path)
        op = mounted.get(path)
        if op is not None:
            return op
    return None


class _Resolver:
    """realpath with a memory: one ``lstat`` per distinct host path component.

    Plans repeat prefixes (``/etc/...`` a dozen times), and on the start-up path every
    syscall counts.  Each symlink met is recorded as (location, target) so that the
    requested spelling (``/lib64/...``) can be recreated in the new root, where it is
    a symlink rather than a second bind.
    """

    __slots__ = ("_modes",)

    def __init__(self) -> None:
        self._modes: dict[str, int] = {}  # -1: missing

    def _mode(self, path: str) -> int:
        mode = self._modes.get(path)
        if mode is None:
            try:
                mode = os.lstat(path).st_mode
            except (FileNotFoundError, NotADirectoryError, PermissionError):
                # Unreachable for this user counts as missing: a bind could not reach
                # it either, so nothing is lost — or exposed — by leaving it out.
                mode = -1
            except OSError as exc:
                raise _error(exc.errno or errno.EIO, "looking up", path) from None
            self._modes[path] = mode
        return mode

    def resolve(self, text: str, links: list[tuple[str, str]]) -> tuple[str, bool] | None:
        """(real path, is a directory), or None when the path does not exist."""
        done = "/"
        pending = text.split("/")
        pending.reverse()
        last_mode = stat.S_IFDIR
        hops = 0
        while pending:
            part = pending.pop()
            if not part or part == ".":
                continue
            if part == "..":
                done = _parent(done)
                last_mode = stat.S_IFDIR
                continue
            candidate = "/" + part if done == "/" else done + "/" + part
            mode = self._mode(candidate)
            if mode == -1:
                return None
            if stat.S_ISLNK(mode):
                hops += 1
                if hops > _SYMLINK_HOPS:
                    raise MountError(errno.ELOOP, f"looking up {text}: too many symlinks")
                target = os.readlink(candidate)
                links.append((candidate, target))
                if target.startswith("/"):
                    done = "/"
                extra = target.split("/")
                extra.reverse()
                pending.extend(extra)
                continue
            done = candidate
            last_mode = mode
        return done, stat.S_ISDIR(last_mode)


def prepare_root(plan: MountPlan) -> PreparedRoot:
    """Resolve a plan into the ordered mounts, touching nothing but ``lstat``.

    Every host lookup happens here, before the first mount, while the host tree is
    still at ``/``; :func:`enter_private_root` then replays the result against
    ``/oldroot``.  Raises :class:`MountError` for relative paths, symlink loops and
    I/O errors; missing paths (and paths this user cannot reach) are left out.
    """
    _calls()  # bind the syscalls now, outside the child's start-up path
    program = PreparedRoot()
    if plan.workdir is not None:
        program.workdir = _absolute(plan.workdir, "workdir")
    resolver = _Resolver()

    # Deny first: it removes grants at or below it, whatever the nesting.
    denied: dict[str, bool] = {}
    for path in plan.deny:
        found = resolver.resolve(_absolute(path, "deny"), [])
        if found is not None:
            denied[found[0]] = found[1]
    denied_roots = set(denied)

    # Grants, keyed by real path.  read+write on one path is write (union of rights).
    grants: dict[str, tuple[int, bool, list[tuple[str, str]]]] = {}
    for role, rank, paths in (("write", _BIND_RW, plan.write), ("read", _BIND_RO, plan.read)):
        for path in paths:
            links: list[tuple[str, str]] = []
            found = resolver.resolve(_absolute(path, role), links)
            if found is None or _under(found[0], denied_roots):
                continue
            real, is_dir = found
            previous = grants.get(real)
            if previous is None:
                grants[real] = (rank, is_dir, links)
            else:
                previous[2].extend(links)

    candidates: list[_Op] = []
    for real, (rank, is_dir, _links) in grants.items():
        candidates.append(_Op(rank, "bind", real, real, is_dir))
    for path in plan.protected:
        found = resolver.resolve(_absolute(path, "protected"), [])
        if found is not None and not _under(found[0], denied_roots):
            candidates.append(_Op(_PROTECT, "bind", found[0], found[0], found[1]))
    for real, is_dir in denied.items():
        candidates.append(_Op(_DENY, "deny-dir" if is_dir else "deny-file", real, "", is_dir))
    # The special file systems go first so that, should the plan also list /dev/shm
    # or /proc as plain tmpfs, the special one is kept (first fresh mount at a path wins).
    if plan.proc and "/proc" not in grants:
        program.proc = True
        candidates.append(_Op(_FRESH, "proc", "/proc", "", True))
    if plan.dev and "/dev" not in grants:
        program.dev = True
        candidates.append(_Op(_FRESH, "devtmpfs", "/dev", "", True))
        candidates.append(_Op(_FRESH, "devpts", "/dev/pts", "", True))
        if "/dev/shm" not in grants:
            candidates.append(_Op(_FRESH, "shm", "/dev/shm", "", True))
        for name in _DEV_NODES:
            if "/dev/" + name in grants:
                continue  # granted explicitly: that bind is the one made
            found = resolver.resolve("/dev/" + name, [])
            if found is not None and not found[1]:
                candidates.append(_Op(_BIND_RW, "bind", "/dev/" + name, found[0], False))
    for path in plan.tmpfs:
        dest = os.path.normpath(_absolute(path, "tmpfs"))
        if dest not in grants:  # an explicit grant of the same path wins
            candidates.append(_Op(_FRESH, "tmpfs", dest, "", True))

    program.ops = _select(candidates)
    mounted = {op.dest: op for op in program.ops}

    # Recreate the symlinks of the requested spellings where they fall into our own
    # tmpfs areas (inside a bind they are the host's own links already).
    links_wanted: dict[str, str] = {}
    for _rank, _is_dir, links in grants.values():
        for location, target in links:
            if location in mounted or _under(location, denied_roots):
                continue
            cover = _cover(location, mounted)
            if cover is None or cover.action == "tmpfs":
                links_wanted.setdefault(location, target)
    program.links = sorted(links_wanted.items(), key=lambda item: _key(item[0]))
    return program


def _select(candidates: list[_Op]) -> list[_Op]:
    """Order the candidate mounts and drop those that would change nothing.

    A read bind inside a read-only area, or a write bind inside a writable one, shows
    the same host tree at the same place; a protected path only matters inside a
    writable area; a deny overlay only inside a bind (elsewhere the path is absent).
    Then directories between a protected or denied path and its writable bind are
    pinned: each becomes a mount point so it cannot be renamed away — without that, renaming
    ``.git`` and recreating ``.git/hooks`` would put a fresh, writable ``hooks`` at
    the path the host's git reads.
    """
    candidates.sort(key=lambda op: (_key(op.dest), op.rank))
    top: dict[str, _Op] = {}  # dest -> topmost op selected there
    selected: list[_Op] = []
    pins: set[str] = set()
    for op in candidates:
        if op.rank == _FRESH and op.dest in top:
            continue  # one fresh file system per path (the sort is stable: first wins)
        cover = top.get(op.dest) or _cover(op.dest, top)
        cover_rank = _FRESH if cover is None or cover.action != "bind" else cover.rank
        if op.rank == _BIND_RO and cover_rank in (_BIND_RO, _PROTECT):
            continue
        if op.rank == _BIND_RW and cover_rank in (_BIND_RW, _PIN):
            continue
        if op.rank == _PROTECT:
            if cover is None or cover_rank not in (_BIND_RW, _PIN):
                continue
            parent = op.dest
            while parent != cover.dest:
                parent = _parent(parent)
                if parent != cover.dest:
                    pins.add(parent)
        if op.rank == _DENY and (cover is None or cover.action != "bind"):
            continue
        if op.rank == _DENY and cover is not None and cover_rank in (_BIND_RW, _PIN):
            # Same pinning as for protected paths: renaming ``~/.config`` away and
            # recreating ``~/.config/gh`` would put writable content at a denied path
            # that host tools read later.
            parent = op.dest
            while parent != cover.dest:
                parent = _parent(parent)
                if parent != cover.dest:
                    pins.add(parent)
        selected.append(op)
        top[op.dest] = op
    for parent in pins:
        if parent not in top:
            selected.append(_Op(_PIN, "bind", parent, parent, True))
    if pins:
        selected.sort(key=lambda op: (_key(op.dest), op.rank))
    top = {}
    for op in selected:
        cover = top.get(op.dest) or _cover(op.dest, top)
        op.in_tmpfs = cover is None or cover.action in ("tmpfs", "devtmpfs", "shm")
        top[op.dest] = op
    return selected


# --------------------------------------------------------------------------- building


class _Builder:
    """Replays a program under ``/newroot``, sources read from ``/oldroot``.

    It remembers which directories exist in our own tmpfs areas (it made all of
    them), so mount points are created with one ``mkdir`` each and no probing.
    """

    __slots__ = ("dirs", "files")

    def __init__(self) -> None:
        self.dirs: set[str] = {"/"}  # sandbox paths known to be directories we may use
        self.files: set[str] = set()

    def ensure_dir(self, path: str) -> None:
        missing = []
        while path not in self.dirs:
            missing.append(path)
            path = _parent(path)
        for item in reversed(missing):
            try:
                os.mkdir(_NEW + item, 0o755)
            except OSError as exc:
                raise _error(exc.errno or errno.EIO, "creating directory", _NEW + item) from None
            self.dirs.add(item)

    def mount_point(self, op: _Op) -> str:
        """The staging path for ``op``, its mount point created if it lies in our tmpfs.

        Inside a bind the host path exists already — and must not be created there.
        """
        target = _NEW + op.dest if op.dest != "/" else _NEW
        if not op.in_tmpfs:
            return target
        if op.is_dir:
            self.ensure_dir(op.dest)
        elif op.dest not in self.files:
            self.ensure_dir(_parent(op.dest))
            try:
                os.mknod(target, stat.S_IFREG | 0o444)
            except OSError as exc:
                raise _error(exc.errno or errno.EIO, "creating mount point", target) from None
            self.files.add(op.dest)
        return target

    def run(self, op: _Op) -> None:
        target = self.mount_point(op)
        action = op.action
        if action == "bind":
            _mount(_OLD + op.source, target, None, _MS_BIND | _MS_REC, None, "binding")
            _make_readonly(target, recursive=True, readonly=op.rank >= _BIND_RO)
        elif action in ("tmpfs", "shm"):
            _mount("tmpfs", target, "tmpfs", _MS_NOSUID | _MS_NODEV, "mode=1777", "mounting at")
        elif action == "deny-dir":
            flags = _MS_RDONLY | _MS_NOSUID | _MS_NODEV | _MS_NOEXEC
            _mount("tmpfs", target, "tmpfs", flags, "mode=0555", "hiding")
        elif action == "deny-file":
            _mount(_EMPTY_FILE, target, None, _MS_BIND, None, "hiding")
            _make_readonly(target, recursive=False)
        elif action == "devtmpfs":
            flags = _MS_NOSUID | _MS_NODEV | _MS_NOEXEC
            _mount("tmpfs", target, "tmpfs", flags, "mode=0755", "mounting /dev at")
        elif action == "devpts":
            # A new instance: the sandbox gets ptys of its own and never sees the
            # host's (binding the host /dev/pts would let it open the user's other
            # terminals).  No gid= option: the tty group is not mapped in our userns.
            options = "newinstance,ptmxmode=0666,mode=620"
            _mount("devpts", target, "devpts", _MS_NOSUID | _MS_NOEXEC, options, "mounting at")
        elif action == "proc":
            flags = _MS_NOSUID | _MS_NODEV | _MS_NOEXEC
            _mount("proc", target, "proc", flags, None, "mounting proc at")
            # Only uid 0 can write these by owner permission; for others the binds
            # would cost time and protect nothing.
            for name in _PROC_READONLY if os.geteuid() == 0 else ():
                sub = target + "/" + name
                try:
                    _mount(sub, sub, None, _MS_BIND | _MS_REC, None, "binding")
                except MountError as exc:
                    if exc.errno == errno.ENOENT:  # e.g. no /proc/bus on this kernel
                        continue
                    raise
                _make_readonly(sub, recursive=True)
        else:  # pragma: no cover - prepare_root only emits the actions above
            raise MountError(errno.EINVAL, f"unknown mount action {action}")
        if op.is_dir and op.rank == _FRESH:
            self.dirs.add(op.dest)

    def symlink(self, location: str, target: str) -> None:
        if location in self.dirs or location in self.files:
            return  # collides with something the plan mounted: that wins
        self.ensure_dir(_parent(location))
        try:
            os.symlink(target, _NEW + location)
        except FileExistsError:
            return
        except OSError as exc:
            raise _error(exc.errno or errno.EIO, "creating symlink", _NEW + location) from None
        self.files.add(location)


def _stage_dir() -> str:
    for candidate in _STAGE_CANDIDATES:
        if os.path.isdir(candidate):
            return candidate
    tried = ", ".join(_STAGE_CANDIDATES)
    raise MountError(errno.ENOENT, f"no directory to stage the new root on (tried {tried})")


def enter_private_root(plan: MountPlan | PreparedRoot) -> None:
    """Replace the caller's file system view with the plan's private root.

    The caller must already be in its own user and mount namespaces (and be pid 1 of
    a new pid namespace when ``plan.proc`` is set: a procfs shows the pid namespace
    of whoever mounts it, and mounting one needs that namespace to be ours).  Pass
    the result of :func:`prepare_root` to keep host lookups out of the child.
    """
    program = plan if isinstance(plan, PreparedRoot) else prepare_root(plan)
    if program.proc and os.getpid() != 1:
        raise MountError(
            errno.EINVAL,
            f"plan.proc needs pid 1 of a new pid namespace (this is pid {os.getpid()})",
        )
    stage = _stage_dir()
    _mount(None, "/", None, _MS_REC | _MS_PRIVATE, None, "making private")
    flags = _MS_NOSUID | _MS_NODEV | _MS_NOEXEC
    _mount("tmpfs", stage, "tmpfs", flags, "mode=0700", "mounting the staging tmpfs at")
    try:
        os.mkdir(stage + _OLD)
        os.mkdir(stage + _NEW)
        os.mknod(stage + _EMPTY_FILE, stat.S_IFREG | 0o444)
    except OSError as exc:
        raise _error(exc.errno or errno.EIO, "preparing the staging tmpfs at", stage) from None
    flags = _MS_NOSUID | _MS_NODEV
    _mount("tmpfs", stage + _NEW, "tmpfs", flags, "mode=0755", "mounting the root tmpfs at")
    os.chdir(stage)
    _pivot_root(".", "." + _OLD)
    os.chdir("/")

    builder = _Builder()
    for op in program.ops:
        builder.run(op)
    for location, target in program.links:
        builder.symlink(location, target)
    if program.dev:
        for name, target in _DEV_LINKS:
            builder.symlink("/dev/" + name, target)
        _make_readonly(_NEW + "/dev", recursive=False)

    # The host tree stays reachable until here: procfs may only be mounted while a
    # fully visible procfs exists in the namespace, which it then no longer needs.
    os.chdir(_NEW)
    _pivot_root(".", ".")
    _umount_detach(".")
    os.chdir("/")
    _make_readonly("/", recursive=False)
    if program.workdir is not None:
        try:
            os.chdir(program.workdir)
        except OSError as exc:
            raise _error(exc.errno or errno.EIO, "changing to workdir", program.workdir) from None
