"""The path-taking system calls learn mode watches, per architecture.

Only calls whose failure can be the sandbox's doing are listed: Landlock refuses
opens, execs and directory changes (create, remove, rename, link); in namespace
mode a path outside the private root does not exist at all, so ``stat``-like calls
fail too, and a program that checks ``os.path.isdir(data)`` before opening anything
is caught by them.  Everything else runs untouched at full speed.

Each entry says where the path arguments are and what kind of access they stand for:
``read`` (open for reading, stat, readlink, chdir), ``write`` (open for writing,
truncate), ``exec`` and ``entry`` (create or remove a directory entry, which needs
write access to the parent directory).
"""

from __future__ import annotations

from safe_pip._records import record

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping

#: ``dirfd`` value meaning "relative to the working directory".
AT_FDCWD = -100


@record
class PathArg:
    """One path argument: index of the pointer, index of its dirfd (None: cwd)."""

    path: int
    dirfd: int | None
    access: str  # "read" | "write" | "exec" | "entry" | "open" (decided by flags)


@record
class TracedCall:
    """One watched system call: its name, path arguments and, for opens, flags."""

    name: str
    paths: tuple[PathArg, ...]
    #: index of the open flags argument; -1: flags live in ``struct open_how`` (openat2)
    flags: int | None = None
    #: index of an ``AT_*`` flags argument: with ``AT_EMPTY_PATH`` set the call works
    #: on an fd, not a path (glibc's ``fstat`` is ``newfstatat(fd, "", AT_EMPTY_PATH)``),
    #: and the seccomp filter lets it run without a stop
    at_flags: int | None = None


def _p(path: int, dirfd: int | None, access: str) -> PathArg:
    return PathArg(path, dirfd, access)


_OPEN = "open"
_CALLS: tuple[tuple[str, TracedCall], ...] = (
    ("open", TracedCall("open", (_p(0, None, _OPEN),), flags=1)),
    ("openat", TracedCall("openat", (_p(1, 0, _OPEN),), flags=2)),
    ("openat2", TracedCall("openat2", (_p(1, 0, _OPEN),), flags=-1)),
    ("creat", TracedCall("creat", (_p(0, None, "write"),))),
    ("stat", TracedCall("stat", (_p(0, None, "read"),))),
    ("lstat", TracedCall("lstat", (_p(0, None, "read"),))),
    ("newfstatat", TracedCall("newfstatat", (_p(1, 0, "read"),), at_flags=3)),
    ("statx", TracedCall("statx", (_p(1, 0, "read"),), at_flags=2)),
    ("access", TracedCall("access", (_p(0, None, "read"),))),
    ("faccessat", TracedCall("faccessat", (_p(1, 0, "read"),))),
    ("faccessat2", TracedCall("faccessat2", (_p(1, 0, "read"),))),
    ("readlink", TracedCall("readlink", (_p(0, None, "read"),))),
    ("readlinkat", TracedCall("readlinkat", (_p(1, 0, "read"),))),
    ("chdir", TracedCall("chdir", (_p(0, None, "read"),))),
    ("execve", TracedCall("execve", (_p(0, None, "exec"),))),
    ("execveat", TracedCall("execveat", (_p(1, 0, "exec"),), at_flags=4)),
    ("truncate", TracedCall("truncate", (_p(0, None, "write"),))),
    ("mkdir", TracedCall("mkdir", (_p(0, None, "entry"),))),
    ("mkdirat", TracedCall("mkdirat", (_p(1, 0, "entry"),))),
    ("mknod", TracedCall("mknod", (_p(0, None, "entry"),))),
    ("mknodat", TracedCall("mknodat", (_p(1, 0, "entry"),))),
    ("rmdir", TracedCall("rmdir", (_p(0, None, "entry"),))),
    ("unlink", TracedCall("unlink", (_p(0, None, "entry"),))),
    ("unlinkat", TracedCall("unlinkat", (_p(1, 0, "entry"),))),
    ("rename", TracedCall("rename", (_p(0, None, "entry"), _p(1, None, "entry")))),
    ("renameat", TracedCall("renameat", (_p(1, 0, "entry"), _p(3, 2, "entry")))),
    ("renameat2", TracedCall("renameat2", (_p(1, 0, "entry"), _p(3, 2, "entry")))),
    ("link", TracedCall("link", (_p(0, None, "read"), _p(1, None, "entry")))),
    ("linkat", TracedCall("linkat", (_p(1, 0, "read"), _p(3, 2, "entry")))),
    ("symlink", TracedCall("symlink", (_p(1, None, "entry"),))),
    ("symlinkat", TracedCall("symlinkat", (_p(2, 1, "entry"),))),
)

# x86_64: arch/x86/entry/syscalls/syscall_64.tbl; aarch64: the generic table.
_NUMBERS: Mapping[str, Mapping[str, int]] = {
    "x86_64": {
        "open": 2, "stat": 4, "lstat": 6, "access": 21, "execve": 59, "truncate": 76,
        "chdir": 80, "rename": 82, "mkdir": 83, "rmdir": 84, "creat": 85, "link": 86,
        "unlink": 87, "symlink": 88, "readlink": 89, "mknod": 133, "openat": 257,
        "mkdirat": 258, "mknodat": 259, "newfstatat": 262, "unlinkat": 263,
        "renameat": 264, "linkat": 265, "symlinkat": 266, "readlinkat": 267,
        "faccessat": 269, "renameat2": 316, "execveat": 322, "statx": 332,
        "openat2": 437, "faccessat2": 439,
    },
    "aarch64": {
        "mknodat": 33, "mkdirat": 34, "unlinkat": 35, "symlinkat": 36, "linkat": 37,
        "truncate": 45, "faccessat": 48, "chdir": 49, "openat": 56, "readlinkat": 78,
        "newfstatat": 79, "execve": 221, "renameat2": 276, "execveat": 281,
        "statx": 291, "openat2": 437, "faccessat2": 439,
    },
}  # fmt: skip
_ALIASES = {"amd64": "x86_64", "arm64": "aarch64"}


def traced_calls(arch: str) -> dict[int, TracedCall]:
    """Syscall number -> what to read from it, for ``arch`` (``os.uname().machine``).

    Raises KeyError for an architecture we have no table for.
    """
    numbers = _NUMBERS[_ALIASES.get(arch, arch)]
    return {numbers[name]: call for name, call in _CALLS if name in numbers}


def fd_only_flags(calls: Mapping[int, TracedCall]) -> dict[int, int]:
    """Syscall number -> index of its ``AT_*`` flags, for the filter's fd-only shortcut."""
    return {nr: call.at_flags for nr, call in calls.items() if call.at_flags is not None}
